"""Access tokens for boxfs, obtained through box_sdk_gen, one provider per app and subject per process.

box_sdk_gen does the OAuth 2 work (signing the JWT assertion, the CCG client-credentials exchange); we
call its ``refresh_token`` with a ``NetworkSession`` whose base URLs point at the configured endpoint and
whose retry strategy is switched off, because :mod:`boxfs.retry` wraps token requests with the same
single tenacity policy as every other request.

A file-transfer server builds one filesystem per logged-in user of one app. Those filesystems share one
:class:`TokenProvider` (the module-level registry is keyed by app client id and token subject): one
service-account token, refreshed before it expires and after a 401, by one thread at a time. Impersonation
is not part of the token: the transport adds ``As-User`` per request.

Providers are never pickled; an unpickled filesystem finds or creates its own in the new process.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from box_sdk_gen import (
    BaseUrls,
    BoxCCGAuth,
    BoxDeveloperTokenAuth,
    BoxJWTAuth,
    CCGConfig,
    JWTConfig,
    NetworkSession,
)
from box_sdk_gen.box.errors import BoxAPIError as SDKAPIError
from box_sdk_gen.box.errors import BoxSDKError
from box_sdk_gen.internal.utils import PrivateKeyDecryptor
from box_sdk_gen.networking.retries import RetryStrategy

from boxfs.api.errors import BoxAPIError, BoxAuthError
from boxfs.api.reach import unreachable
from boxfs.config import BoxCredentials, BoxEndpoints
from boxfs.retry import RetryableResponse, RetryPolicy, parse_retry_after, retrying

logger = logging.getLogger("boxfs")

#: Refresh this many seconds before Box says the token expires (clock skew, long requests in flight);
#: for short-lived tokens a quarter of their lifetime instead.
REFRESH_MARGIN = 60.0


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


class _TransientTokenError(Exception):
    """A token request that failed in a way worth retrying (connection, 429, 5xx)."""

    retry_after: float | None = None  # seconds from the answer's Retry-After, honoured by boxfs.retry
    connection_error: BaseException | None = None  # the requests exception, when nothing answered


class TokenProvider:
    """A refreshable access token for one app and subject, safe to share between threads."""

    def __init__(self, creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> None:
        self.creds = creds
        self.endpoints = endpoints
        self.policy = policy
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.refresh_count = 0
        self._session = NetworkSession(
            base_urls=BaseUrls(
                base_url=endpoints.base_url, upload_url=endpoints.upload_url, oauth_2_url=endpoints.oauth2_url
            ),
            retry_strategy=_NoRetry(),
        )
        self._auth = self._make_auth()

    def _make_auth(self) -> Any:
        c = self.creds
        if c.kind == "token":
            return BoxDeveloperTokenAuth(token=c.token)
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

    @property
    def refreshable(self) -> bool:
        """False for a ready-made token: nothing can be done about a 401 but to report it."""
        return self.creds.kind != "token"

    def token(self) -> str:
        """The current access token, refreshed first when missing or about to expire."""
        with self._lock:
            if self.creds.kind == "token":
                assert self.creds.token is not None
                return self.creds.token
            if self._token is None or time.monotonic() >= self._expires_at:
                self._refresh_locked()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after Box answered 401 to it (unless another thread already replaced it)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _refresh_locked(self) -> None:
        describe = f"token request for app {self.creds.client_id}"
        started = time.monotonic()
        try:
            for attempt in retrying(self.policy, describe, extra=(_TransientTokenError,)):
                with attempt:
                    access = self._request_token()
        except _TransientTokenError as exc:  # still failing after the last attempt: an OSError, with context
            if exc.connection_error is not None:
                why = unreachable(f"{self.endpoints.base_url}/oauth2/token", exc.connection_error,
                                  attempts=self.policy.max_attempts, what="token request",
                                  connect_timeout=self.policy.connect_timeout, read_timeout=self.policy.read_timeout)
                raise BoxAPIError(f"could not obtain an access token for app {self.creds.client_id}: {why}") from None
            raise BoxAPIError(f"could not obtain an access token for app {self.creds.client_id} after "
                              f"{self.policy.max_attempts} attempts: {exc}") from None
        self._token = access.access_token
        lifetime = float(access.expires_in or 3600)
        # Never refresh more often than every few seconds even if Box hands out very short tokens.
        margin = min(REFRESH_MARGIN, lifetime / 4)
        self._expires_at = started + lifetime - margin
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
                transient = _TransientTokenError(f"HTTP {status}")
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
                transient = _TransientTokenError(type(cause).__name__)
                transient.connection_error = cause
                raise transient from None
            raise BoxAuthError(f"could not obtain a token for app {self.creds.client_id}: {exc.message}") from None
        logger.debug("POST %s -> 200 (request id %s) %.1f ms", route, None, (time.monotonic() - started) * 1000)
        return access


class AppTokenProvider(TokenProvider):
    """App Token auth: the developer console's primary and secondary App Tokens, used as they are.

    App Tokens do not expire (unless made to), so there is nothing to refresh; a rollover revokes the
    primary, and Box then answers 401 to it: from that moment the secondary is used (once switched, for
    good). With no token left, the 401 reaches the caller as an authentication error.
    """

    def __init__(self, creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> None:
        super().__init__(creds, endpoints, policy)
        self._index = 0

    def _make_auth(self) -> Any:
        return None

    @property
    def refreshable(self) -> bool:
        with self._lock:
            return self._index + 1 < len(self.creds.app_tokens)

    def token(self) -> str:
        with self._lock:
            return self.creds.app_tokens[self._index]

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self.creds.app_tokens[self._index] == token and self._index + 1 < len(self.creds.app_tokens):
                self._index += 1
                self.refresh_count += 1
                logger.warning("Box refused the primary App Token (revoked?): using the secondary App Token")


_registry: dict[tuple[Any, ...], TokenProvider] = {}
_registry_lock = threading.Lock()
_user_ids: dict[tuple[Any, ...], str] = {}


def get_provider(creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> TokenProvider:
    """The process-wide provider for these credentials at this endpoint (created on first use)."""
    key = (*creds.registry_key, endpoints.base_url)
    with _registry_lock:
        provider = _registry.get(key)
        if provider is None or provider.creds != creds:
            if creds.kind == "oauth":  # a user's own tokens, kept in the file `boxfs login` wrote
                from boxfs.oauth_login import OAuthFileTokenProvider

                provider = OAuthFileTokenProvider(creds, endpoints, policy)
            elif creds.kind == "app_token":
                provider = AppTokenProvider(creds, endpoints, policy)
            else:
                provider = TokenProvider(creds, endpoints, policy)
            _registry[key] = provider
        return provider


def cached_user_id(provider: TokenProvider, login: str) -> str | None:
    """A login already resolved to a user id in this process (``as_user`` emails are resolved once)."""
    return _user_ids.get((*provider.creds.registry_key, provider.endpoints.base_url, login.casefold()))


def remember_user_id(provider: TokenProvider, login: str, user_id: str) -> None:
    _user_ids[(*provider.creds.registry_key, provider.endpoints.base_url, login.casefold())] = user_id


def clear_registry() -> None:
    """Forget every provider and resolved login (tests use it to start from a cold process state)."""
    with _registry_lock:
        _registry.clear()
        _user_ids.clear()


__all__ = ["AppTokenProvider", "TokenProvider", "get_provider", "clear_registry", "REFRESH_MARGIN", "RetryableResponse"]
