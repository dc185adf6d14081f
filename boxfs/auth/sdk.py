"""JWT and Client Credentials Grant tokens, obtained through box_sdk_gen.

box_sdk_gen does the OAuth 2 work (signing the JWT assertion, the CCG client-credentials exchange); we
call its ``refresh_token`` with a ``NetworkSession`` whose base URLs point at the configured endpoint and
whose retry strategy is switched off, because :mod:`boxfs.retry` wraps token requests with the same
single tenacity policy as every other request (:func:`boxfs.auth.endpoint.retry_token_request`).

Importing box_sdk_gen takes a third of a second (more on a loaded machine), so nothing imports this module
until a JWT or CCG token is wanted (:mod:`boxfs.auth.registry`); a ready-made token is
:mod:`boxfs.auth.static`'s.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from box_sdk_gen import (
    BaseUrls,
    BoxCCGAuth,
    BoxJWTAuth,
    CCGConfig,
    JWTConfig,
    NetworkSession,
)
from box_sdk_gen.box.errors import BoxAPIError as SDKAPIError
from box_sdk_gen.box.errors import BoxSDKError
from box_sdk_gen.internal.utils import PrivateKeyDecryptor
from box_sdk_gen.networking.retries import RetryStrategy

from boxfs.api.errors import BoxAuthError
from boxfs.auth.endpoint import TransientTokenError, expiry, retry_token_request
from boxfs.auth.provider import TokenProvider
from boxfs.config import BoxCredentials, BoxEndpoints
from boxfs.retry import RetryPolicy, parse_retry_after

logger = logging.getLogger("boxfs")


class _NoRetry(RetryStrategy):
    """Switches box_sdk_gen's retry loop off: boxfs.retry is the only retry policy."""

    def should_retry(self, fetch_options: Any, fetch_response: Any, attempt_number: int) -> bool:
        return False

    def retry_after(self, fetch_options: Any, fetch_response: Any, attempt_number: int) -> float:
        return 0.0


class _PreDecryptedKey(PrivateKeyDecryptor):
    """Hands box_sdk_gen the key we decrypted (and validated) once, at configuration time.

    box_sdk_gen would otherwise decrypt the PEM on every refresh and could not read an unencrypted key
    given together with a passphrase.
    """

    def __init__(self, creds: BoxCredentials) -> None:
        self._creds = creds

    def decrypt_private_key(self, encryptedPrivateKey: str, passphrase: str) -> Any:  # noqa: N803 (SDK name)
        return self._creds.decrypted_key()


class SDKTokenProvider(TokenProvider):
    """A JWT or CCG service token refreshed through box_sdk_gen."""

    def __init__(self, creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> None:
        super().__init__(creds, endpoints, policy)
        self._session = NetworkSession(
            base_urls=BaseUrls(
                base_url=endpoints.base_url, upload_url=endpoints.upload_url, oauth_2_url=endpoints.oauth2_url
            ),
            retry_strategy=_NoRetry(),
        )
        self._auth = self._make_auth()

    def _make_auth(self) -> Any:
        c = self.creds
        if c.kind == "ccg":
            return BoxCCGAuth(
                CCGConfig(client_id=c.client_id, client_secret=c.client_secret,
                          enterprise_id=c.enterprise_id, user_id=c.user_id)
            )
        if c.kind == "jwt":
            return BoxJWTAuth(
                JWTConfig(
                    client_id=c.client_id,
                    client_secret=c.client_secret,
                    jwt_key_id=c.public_key_id,
                    private_key=c.private_key,
                    private_key_passphrase=c.passphrase or "",
                    enterprise_id=c.enterprise_id,
                    user_id=c.user_id,
                    private_key_decryptor=_PreDecryptedKey(c),
                )
            )
        raise ValueError(f"unknown credentials kind {c.kind!r}")

    def _renew_locked(self) -> None:
        started = self.clock()
        access = retry_token_request(self.policy, f"token request for app {self.creds.client_id}",
                                     self._request_token,
                                     failure=f"could not obtain an access token for app {self.creds.client_id}")
        self._token = access.access_token
        lifetime = float(access.expires_in or 3600)
        self._expires_at = expiry({"expires_in": lifetime}, started)
        self.refresh_count += 1
        logger.info("obtained a %s access token for app %s (valid %ds)", self.creds.kind, self.creds.client_id, lifetime)

    def _request_token(self) -> Any:
        # box_sdk_gen sends token requests, so their DEBUG line (as for every request) is written here
        route = urlsplit(f"{self.endpoints.base_url}/oauth2/token").path
        started = time.monotonic()
        try:
            access = self._auth.refresh_token(network_session=self._session)
        except SDKAPIError as exc:
            info = exc.response_info
            status = info.status_code
            logger.debug("POST %s -> %d (request id %s) %.1f ms", route, status, info.request_id,
                         (time.monotonic() - started) * 1000)
            body = info.body if isinstance(info.body, dict) else {}
            if status in (429, 500, 502, 503, 504):
                transient = TransientTokenError(f"HTTP {status}")
                transient.retry_after = parse_retry_after(
                    next((v for k, v in (info.headers or {}).items() if k.lower() == "retry-after"), None))
                raise transient from None
            code = body.get("error") or info.code or "unknown"
            text = body.get("error_description") or body.get("message") or ""
            rid = info.request_id or body.get("request_id")
            err = BoxAuthError(
                f"Box refused the {self.creds.kind.upper()} credentials of app {self.creds.client_id}: "
                f"{code}: {text} (HTTP {status}, request id {rid})"
            )
            err.box_status, err.box_code, err.box_request_id = status, code, rid  # type: ignore[attr-defined]
            raise err from None
        except BoxSDKError as exc:
            cause = exc.error
            logger.debug("POST %s -> %s after %.1f ms", route, type(cause).__name__, (time.monotonic() - started) * 1000)
            if isinstance(cause, requests.exceptions.RequestException):
                raise TransientTokenError.unanswered(f"{self.endpoints.base_url}/oauth2/token", cause) from None
            raise BoxAuthError(f"could not obtain a token for app {self.creds.client_id}: {exc.message}") from None
        logger.debug("POST %s -> 200 (request id %s) %.1f ms", route, None, (time.monotonic() - started) * 1000)
        return access
