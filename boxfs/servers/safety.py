"""Checks of the server's own files and settings, so that risky setups do not pass in silence.

An operator rarely sees what a server does with its files; these checks say it at start-up:

* the users file decides who may act as which Box user: group- or world-writable (or owned by another
  account), anyone local could add a login acting as an admin, so it is **refused** unless the operator
  explicitly allows it;
* the Box app config (its private key) and the SSH host key are secrets: loose modes are **warned** about;
* the SFTP host key lives in a private state folder (0700, the key 0600), generated once and reused, so
  clients see the same key at every start and never learn to accept a changed one;
* plain FTP on a non-loopback address sends passwords in clear, and a certificate without
  ``tls_required`` still accepts plain logins: both are **warned** about (they have legitimate uses,
  e.g. a trusted LAN or a migration to FTPS, so they are not refused).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "UnsafeSetupError",
    "check_users_file",
    "default_state_dir",
    "private_dir",
    "warn_ftp_setup",
    "warn_if_loose",
]


class UnsafeSetupError(PermissionError):
    """A server file whose permissions let another local account change who logs in as whom."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/boxfs`` (default ``~/.local/state/boxfs``): where the SFTP host key is kept."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "boxfs"


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` 0700 if missing, and make sure it is a real folder of this account, private.

    A symlink or a folder owned by another account is refused (it could hand our key to them); a
    folder of ours that others can enter is tightened to 0700, with a warning.
    """
    folder = Path(path)
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeSetupError(f"{folder} must be a folder, not a symlink or a file")
    if st.st_uid != os.geteuid():
        raise UnsafeSetupError(f"{folder} belongs to another account (uid {st.st_uid}): not using it")
    if st.st_mode & 0o077:
        logger.warning("%s was accessible to other accounts (mode %o): now 0700", folder, st.st_mode & 0o777)
        os.chmod(folder, 0o700)
    return folder


def warn_if_loose(path: str | os.PathLike[str], what: str) -> bool:
    """Warn when the secret file ``path`` is readable or writable by other accounts; True if it is."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return False  # reading it will fail with a clear error of its own
    if mode & 0o077:
        logger.warning(
            "%s %s is accessible to other accounts (mode %o): chmod 600 %s", what, path, mode, path
        )
        return True
    return False


def check_users_file(path: str | os.PathLike[str], allow_loose: bool = False) -> None:
    """Refuse a users file other local accounts could change (unless ``allow_loose``: then warn)."""
    st = os.stat(path)
    problems = []
    if st.st_mode & 0o022:
        problems.append(f"writable by {'everyone' if st.st_mode & 0o002 else 'its group'} (mode {st.st_mode & 0o777:o})")
    if st.st_uid not in (os.geteuid(), 0):
        problems.append(f"owned by another account (uid {st.st_uid})")
    if not problems:
        return
    message = (
        f"users file {path} is {' and '.join(problems)}: another local account could add a login "
        f"acting as any Box user. Fix it with: chmod go-w {path}"
    )
    if allow_loose:
        logger.warning("%s (allowed by the operator)", message)
        return
    raise UnsafeSetupError(message + "; or allow it explicitly (--allow-loose-users-file)")


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def warn_ftp_setup(host: str, certfile: object, tls_required: bool) -> list[str]:
    """Warn about FTP settings that expose passwords; returns the warnings (for tests and callers)."""
    warnings = []
    if not certfile and not _is_loopback(host):
        warnings.append(
            f"FTP on {host} without TLS: passwords and files cross the network in clear "
            "(give --cert/--key and --tls-required, or use SFTP)"
        )
    if certfile and not tls_required:
        warnings.append("FTPS certificate given without --tls-required: clients may still log in in clear")
    for text in warnings:
        logger.warning("%s", text)
    return warnings
