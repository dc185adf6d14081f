"""The token file ``boxfs login`` writes: a person's OAuth 2.0 tokens, shared by every process using them.

Box **rotates** refresh tokens: every refresh spends the one used and returns a new one, so a refresh
token must never be used twice and the newest one must never be lost. That is why the tokens live in one
file that every process using it updates only while holding an exclusive ``flock`` on ``<file>.lock``,
re-reading the file first (see :mod:`boxfs.auth.oauth`). The file is rewritten atomically (temporary
file, fsync, rename), 0600, so a crash mid-write cannot leave half a file. What is read back is checked:
an error names the file and what is wrong with it, never a value.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from boxfs.config import BoxConfigError, BoxCredentials

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: single-process use only
    fcntl = None  # type: ignore[assignment]

TOKEN_FILE_VERSION = 1


def default_token_file() -> Path:
    """``$XDG_CONFIG_HOME/boxfs/oauth-token.json`` (``~/.config/...`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "boxfs" / "oauth-token.json"


class TokenFile:
    """The JSON token file: client id and secret, access token with its expiry, and the refresh token."""

    REQUIRED = ("client_id", "client_secret", "access_token", "refresh_token", "expires_at")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.expanduser(os.fspath(path))).absolute()
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def read(self) -> dict[str, Any]:
        """The file's content, checked; BoxConfigError names what is wrong (never a value)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BoxConfigError(f"OAuth token file {self.path} does not exist (run 'boxfs login' first)") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise BoxConfigError(f"OAuth token file {self.path} is not valid JSON (run 'boxfs login' again)") from None
        if not isinstance(data, dict):
            raise BoxConfigError(f"OAuth token file {self.path} is not a JSON object")
        missing = [k for k in self.REQUIRED if data.get(k) in (None, "")]
        if missing:
            raise BoxConfigError(f"OAuth token file {self.path} is missing {', '.join(missing)}")
        return data

    def write(self, data: Mapping[str, Any]) -> None:
        """Replace the file atomically with a 0600 one (the directory is created 0700 when missing)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": TOKEN_FILE_VERSION, **data}, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock every reader-then-writer of the file takes (other processes wait)."""
        self.lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def oauth_credentials(token_file: str | os.PathLike[str]) -> BoxCredentials:
    """BoxCredentials for a token file written by ``boxfs login`` (read and checked now)."""
    tf = TokenFile(token_file)
    data = tf.read()
    return BoxCredentials(kind="oauth", client_id=str(data["client_id"]), token_file=str(tf.path))

