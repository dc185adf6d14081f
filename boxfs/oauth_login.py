"""A person's own Box account through OAuth 2.0 (``boxfs login``), and downscoped tokens (token exchange).

OAuth 2.0 with a user (Box's "User Authentication" apps, seed 000): the user grants access in a browser,
Box redirects to our local callback with a short-lived ``code``, and we exchange it for an access token
(about an hour) and a refresh token (60 days). Box **rotates** refresh tokens: every refresh spends the
one used and returns a new one, so a refresh token must never be used twice and the newest one must never
be lost. That is why the tokens live in one file that every process using it updates only while holding
an exclusive ``flock`` on ``<file>.lock``, re-reading the file first: a process whose access token expired
takes the lock, and if another process refreshed meanwhile it adopts that newer token instead of spending
the (already spent) refresh token it remembers. The file is rewritten atomically (temporary file, fsync,
rename), 0600, so a crash mid-write cannot leave half a file.

Token exchange (seed 003): :class:`DownscopedTokenProvider` trades the filesystem's token for one limited
to some scopes (``item_preview``, ``item_download``...) and optionally one file or folder, and trades
again whenever it expires (a downscoped token itself cannot be refreshed).

Nothing here logs or puts in an exception a secret: tokens, the client secret and the code stay out.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import os
import secrets
import tempfile
import time
import webbrowser
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from boxfs.api.errors import BoxAPIError, BoxAuthError
from boxfs.auth import REFRESH_MARGIN, TokenProvider
from boxfs.config import BoxConfigError, BoxCredentials, BoxEndpoints
from boxfs.retry import RetryPolicy, parse_retry_after, retrying

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: single-process use only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("boxfs")

TOKEN_FILE_VERSION = 1
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "DownscopedTokenProvider",
    "OAuthFileTokenProvider",
    "TokenFile",
    "authorize_url",
    "default_token_file",
    "login",
    "oauth_credentials",
    "signed_url",
]


def default_token_file() -> Path:
    """``$XDG_CONFIG_HOME/boxfs/oauth-token.json`` (``~/.config/...`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "boxfs" / "oauth-token.json"


class _TransientTokenError(Exception):
    """Box answered a token request with 429 or 5xx: worth another attempt."""

    retry_after: float | None = None  # seconds from the answer's Retry-After, honoured by boxfs.retry


# ------------------------------------------------------------------------------------------ token file
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
    """BoxCredentials for a token file written by :func:`login` (read and checked now)."""
    tf = TokenFile(token_file)
    data = tf.read()
    return BoxCredentials(kind="oauth", client_id=str(data["client_id"]), token_file=str(tf.path))


# ------------------------------------------------------------------------------------------ token endpoint
def _token_request(endpoints: BoxEndpoints, form: dict[str, str], policy: RetryPolicy, describe: str) -> dict[str, Any]:
    """POST to Box's token endpoint through the retry policy; refusals become BoxAuthError (no secrets)."""
    url = f"{endpoints.base_url}/oauth2/token"
    try:
        return _token_request_attempts(url, form, policy, describe)
    except _TransientTokenError as exc:  # still failing after the last attempt: an OSError, with context
        raise BoxAPIError(f"{describe} failed after {policy.max_attempts} attempts: {exc}") from None


def _token_request_attempts(url: str, form: dict[str, str], policy: RetryPolicy, describe: str) -> dict[str, Any]:
    """The attempts of :func:`_token_request` (apart, so it can turn the last transient failure into an OSError)."""
    for attempt in retrying(policy, describe, extra=(_TransientTokenError,)):
        with attempt:
            resp = requests.post(url, data=form, timeout=(policy.connect_timeout, policy.read_timeout))
            if resp.status_code == 429 or resp.status_code >= 500:
                transient = _TransientTokenError(f"HTTP {resp.status_code}")
                transient.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raise transient
            try:
                body = resp.json()
            except ValueError:
                body = {}
            if resp.status_code >= 400 or "access_token" not in body:
                code = body.get("error") or "unknown"
                text = body.get("error_description") or resp.reason or ""
                err = BoxAuthError(f"{describe} refused: {code}: {text} (HTTP {resp.status_code})")
                err.box_status, err.box_code = resp.status_code, code  # type: ignore[attr-defined]
                raise err
            return body
    raise AssertionError("unreachable")  # pragma: no cover


def _expiry(body: Mapping[str, Any], started: float) -> float:
    """Wall-clock time (shared between processes) after which the token should be replaced."""
    lifetime = float(body.get("expires_in") or 3600)
    return started + lifetime - min(REFRESH_MARGIN, lifetime / 4)


# ------------------------------------------------------------------------------------------ providers
class OAuthFileTokenProvider(TokenProvider):
    """Tokens from a ``boxfs login`` token file, refreshed and saved back safely across processes."""

    def __init__(self, creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> None:
        if creds.kind != "oauth" or not creds.token_file:
            raise ValueError("OAuthFileTokenProvider needs oauth credentials with a token file")
        super().__init__(creds, endpoints, policy)
        self.file = TokenFile(creds.token_file)
        self._rejected: str | None = None

    def _make_auth(self) -> Any:  # no box_sdk_gen auth object: the token file is the source
        return None

    @property
    def refreshable(self) -> bool:
        return True

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at:
                self._sync_locked()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            self._rejected = token
            if self._token == token:
                self._token = None

    def _sync_locked(self) -> None:
        """Adopt the file's token if it is good, else refresh it there (under the file lock)."""
        with self.file.locked():
            data = self.file.read()
            fresh = float(data["expires_at"]) > time.time() and data["access_token"] != self._rejected
            if not fresh:
                started = time.time()
                try:
                    body = _token_request(
                        self.endpoints,
                        {"grant_type": "refresh_token", "refresh_token": str(data["refresh_token"]),
                         "client_id": str(data["client_id"]), "client_secret": str(data["client_secret"])},
                        self.policy, f"refreshing the OAuth token of {self.file.path}",
                    )
                except BoxAuthError as exc:
                    if getattr(exc, "box_code", "") != "invalid_grant":
                        raise
                    # Box's refresh tokens work once: one revoked, unused for 60 days, or spent by a
                    # refresh whose answer was lost in transit cannot be recovered by any retry.
                    raise BoxAuthError(
                        f"the Box login kept in {self.file.path} is no longer valid (Box refused its refresh "
                        "token: invalid_grant); run 'boxfs login' again"
                    ) from exc
                data.update(access_token=body["access_token"], expires_at=_expiry(body, started),
                            refresh_token=body.get("refresh_token") or data["refresh_token"],
                            refreshed_at=time.time())
                self.file.write(data)
                self.refresh_count += 1
                logger.info("refreshed the OAuth access token kept in %s", self.file.path)
            self._token = str(data["access_token"])
            self._expires_at = float(data["expires_at"])


class DownscopedTokenProvider(TokenProvider):
    """A token limited to ``scopes`` (and ``resource``), exchanged from another provider's token.

    Box's downscoped tokens cannot be refreshed; when one expires (or Box answers 401) a new one is
    exchanged from the parent's current token, so it behaves like any refreshable provider.
    """

    def __init__(self, parent: TokenProvider, scopes: Sequence[str], resource: str | None = None) -> None:
        if isinstance(scopes, str):
            scopes = scopes.split()
        if not scopes:
            raise BoxConfigError("scopes must name at least one Box scope (e.g. ['item_preview'])")
        self.parent = parent
        self.scopes = tuple(scopes)
        self.resource = resource
        super().__init__(parent.creds, parent.endpoints, parent.policy)

    def _make_auth(self) -> Any:
        return None

    @property
    def refreshable(self) -> bool:
        return self.parent.refreshable

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at:
                self._exchange_locked()
            assert self._token is not None
            return self._token

    def _exchange_locked(self) -> None:
        form = {"grant_type": EXCHANGE_GRANT, "subject_token_type": ACCESS_TOKEN_TYPE,
                "scope": " ".join(self.scopes)}
        if self.resource:
            form["resource"] = self.resource
        describe = f"exchanging the token of app {self.creds.client_id} for scopes {' '.join(self.scopes)}"
        for attempt in range(2):
            subject = self.parent.token()
            started = time.time()
            try:
                body = _token_request(self.endpoints, {**form, "subject_token": subject}, self.policy, describe)
                break
            except BoxAuthError as exc:
                # the parent's token may have expired a moment ago: refresh it once and exchange again
                if attempt == 0 and getattr(exc, "box_code", "") == "invalid_grant" and self.parent.refreshable:
                    self.parent.invalidate(subject)
                    continue
                raise
        self._token = str(body["access_token"])
        self._expires_at = _expiry(body, started)
        self.refresh_count += 1


# ------------------------------------------------------------------------------------------ signed URLs
#: How long Box keeps a download URL valid (its documentation says about 15 minutes).
DOWNLOAD_URL_LIFETIME = 15 * 60


def signed_url(fs: Any, path: str, expiration: int) -> str:
    """``BoxFileSystem.sign``: a credential-free download URL valid at least ``expiration`` seconds.

    Up to :data:`DOWNLOAD_URL_LIFETIME`: Box's download URL, the ``Location`` of the 302 that
    ``GET /files/{id}/content`` answers (no change to the file). Longer: an open shared link on the file
    with ``unshared_at`` = now + ``expiration`` (Box removes it then), and its ``download_url``; that
    changes the file's sharing, and needs a token allowed to share (``item_share``).
    """
    from datetime import datetime, timedelta, timezone

    from boxfs.api.errors import BoxAPIError, is_a_directory

    if expiration < 1:
        raise ValueError("expiration must be a positive number of seconds")
    info = fs.info(path)
    if info["type"] != "file":
        raise is_a_directory(path)
    if expiration <= DOWNLOAD_URL_LIFETIME:
        resp = fs.transport.request("GET", fs.transport.api(f"/files/{info['id']}/content"),
                                    allow_redirects=False, stream=True, path=path, action="sign")
        with resp:
            location = resp.headers.get("Location")
        if resp.status_code not in (301, 302, 303, 307) or not location:
            raise BoxAPIError(f"{path}: sign failed: Box answered HTTP {resp.status_code} without a download URL")
        return str(location)
    until = (datetime.now(timezone.utc) + timedelta(seconds=expiration)).replace(microsecond=0)
    entry = fs.transport.json(
        "PUT", fs.transport.api(f"/files/{info['id']}"), params={"fields": "shared_link"},
        json={"shared_link": {"access": "open", "unshared_at": until.isoformat(),
                              "permissions": {"can_download": True}}},
        path=path, action="share with an expiry",
    )
    link = entry.get("shared_link") or {}
    if not link.get("download_url"):
        raise BoxAPIError(f"{path}: sign failed: Box returned no shared link download URL")
    return str(link["download_url"])


# ------------------------------------------------------------------------------------------ login
def authorize_url(endpoints: BoxEndpoints, client_id: str, redirect_uri: str, state: str) -> str:
    """Box's authorize page for this app (``https://account.box.com/api/oauth2/authorize?...``)."""
    query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                       "state": state})
    return f"{endpoints.oauth2_url}/authorize?{query}"


class _CallbackServer(HTTPServer):
    """Receives the one redirect Box sends after the user granted (or denied) access."""

    def __init__(self, host: str, port: int, path: str, state: str) -> None:
        self.expected_path = path or "/"
        self.expected_state = state
        self.result: dict[str, str] | None = None
        super().__init__((host, port), _CallbackHandler)


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        if parts.path != self.server.expected_path:
            self._answer(404, "Not the boxfs login callback.")
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if not secrets.compare_digest(query.get("state", ""), self.server.expected_state):
            # not the answer to our request (a stale tab, or a forged link): ignore it, keep waiting
            self._answer(400, "This login link is not the one boxfs is waiting for.")
            return
        self.server.result = query
        if "code" in query:
            self._answer(200, "boxfs is now logged in to Box. You can close this window.")
        else:
            self._answer(400, f"Box did not grant access: {query.get('error', 'unknown error')}.")

    def _answer(self, status: int, text: str) -> None:
        body = f"<html><body><p>{html.escape(text)}</p></body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the query holds the code
        logger.debug("login callback answered %s", self.command)


def login(
    client_id: str,
    client_secret: str,
    token_file: str | os.PathLike[str] | None = None,
    *,
    endpoints: BoxEndpoints | None = None,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    open_browser: bool = True,
    timeout: float = 300.0,
    show_url: Callable[[str], None] | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Run the OAuth 2.0 authorization-code flow and save the tokens; return the logged-in user.

    Listens on the host and port of ``redirect_uri`` (which must be the redirect URI configured for
    the app in the developer console, byte for byte), shows the authorize URL with ``show_url`` (and
    opens it in a browser when ``open_browser``), waits up to ``timeout`` seconds for Box's redirect,
    exchanges the code and writes ``token_file`` (default :func:`default_token_file`) 0600.
    """
    endpoints = endpoints or BoxEndpoints()
    policy = policy or RetryPolicy()
    target = TokenFile(token_file or default_token_file())
    parts = urlsplit(redirect_uri)
    if parts.scheme != "http" or not parts.hostname or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise BoxConfigError("redirect_uri must be an http:// address on this machine (127.0.0.1 or localhost)")
    port = parts.port or 80
    state = secrets.token_urlsafe(24)
    server = _CallbackServer(parts.hostname, port, parts.path, state)
    server.timeout = 0.5
    url = authorize_url(endpoints, client_id, redirect_uri, state)
    try:
        (show_url or (lambda u: logger.warning("open this URL to log in to Box: %s", u)))(url)
        if open_browser:
            with contextlib.suppress(Exception):
                webbrowser.open(url)
        deadline = time.monotonic() + timeout
        while server.result is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from Box's login page within {timeout:.0f}s")
            server.handle_request()
    finally:
        server.server_close()
    result = server.result
    if "code" not in result:
        raise BoxAuthError(f"Box did not grant access: {result.get('error', 'unknown')}: "
                           f"{result.get('error_description', '')}".rstrip(": "))
    started = time.time()
    body = _token_request(
        endpoints,
        {"grant_type": "authorization_code", "code": result["code"], "client_id": client_id,
         "client_secret": client_secret, "redirect_uri": redirect_uri},
        policy, "exchanging the authorization code",
    )
    me_resp = requests.get(f"{endpoints.base_url}/2.0/users/me", params={"fields": "id,login,name"},
                           headers={"Authorization": f"Bearer {body['access_token']}"},
                           timeout=(policy.connect_timeout, policy.read_timeout))
    me = me_resp.json() if me_resp.ok else {}
    with target.locked():
        target.write({
            "client_id": client_id, "client_secret": client_secret, "access_token": body["access_token"],
            "refresh_token": body["refresh_token"], "expires_at": _expiry(body, started),
            "user_id": me.get("id"), "login": me.get("login"), "refreshed_at": time.time(),
        })
    logger.info("saved OAuth tokens for %s in %s", me.get("login") or "the user", target.path)
    return {"id": me.get("id"), "login": me.get("login"), "name": me.get("name"), "token_file": str(target.path)}

