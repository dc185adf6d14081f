"""``boxfs login``: the OAuth 2.0 authorization-code flow in the user's browser, saved to the token file.

The user grants access in a browser, Box redirects to our local callback with a short-lived ``code``
(checked against the ``state`` we sent), and we exchange it for an access token (about an hour) and a
refresh token (60 days), written to :class:`~boxfs.auth.tokenfile.TokenFile`. Nothing here logs or puts
in an exception a secret: tokens, the client secret and the code stay out.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import secrets
import time
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from boxfs.api.errors import BoxAuthError
from boxfs.auth.endpoint import expiry, token_request
from boxfs.auth.tokenfile import TokenFile, default_token_file
from boxfs.config import BoxConfigError, BoxEndpoints
from boxfs.retry import RetryPolicy

logger = logging.getLogger("boxfs")

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"


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
    body = token_request(
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
            "refresh_token": body["refresh_token"], "expires_at": expiry(body, started),
            "user_id": me.get("id"), "login": me.get("login"), "refreshed_at": time.time(),
        })
    logger.info("saved OAuth tokens for %s in %s", me.get("login") or "the user", target.path)
    return {"id": me.get("id"), "login": me.get("login"), "name": me.get("name"), "token_file": str(target.path)}

