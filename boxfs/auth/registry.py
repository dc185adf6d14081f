"""One provider per app and subject per process, and the logins already resolved to user ids.

A file-transfer server builds one filesystem per logged-in user of one app. Those filesystems share one
:class:`~boxfs.auth.provider.TokenProvider` (keyed by app client id, token subject and endpoint): one
service-account token, refreshed before it expires and after a 401, by one thread at a time.

:mod:`boxfs.auth.service` (and with it PyJWT and cryptography, a tenth of a second to import) is imported
only when a JWT or CCG provider is made, so a CLI command run with a token file or a ready-made token never
loads them.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from boxfs.auth.apptoken import AppTokenProvider
from boxfs.auth.oauth import OAuthFileTokenProvider
from boxfs.auth.provider import TokenProvider
from boxfs.auth.static import StaticTokenProvider
from boxfs.auth.tokenfile import oauth_credentials
from boxfs.config import BoxCredentials, BoxEndpoints
from boxfs.retry import RetryPolicy

_registry: dict[tuple[Any, ...], TokenProvider] = {}
_registry_lock = threading.Lock()
_user_ids: dict[tuple[Any, ...], str] = {}


def _make_provider(creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> TokenProvider:
    if creds.kind == "oauth":  # a user's own tokens, kept in the file `boxfs login` wrote
        return OAuthFileTokenProvider(creds, endpoints, policy)
    if creds.kind == "app_token":
        return AppTokenProvider(creds, endpoints, policy)
    if creds.kind == "token":
        return StaticTokenProvider(creds, endpoints, policy)
    from boxfs.auth.service import ServiceTokenProvider  # JWT, CCG: PyJWT loads here, on first use

    return ServiceTokenProvider(creds, endpoints, policy)


def get_provider(creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> TokenProvider:
    """The process-wide provider for these credentials at this endpoint (created on first use).

    Credentials naming a token file are completed from the file first (read and checked on every call,
    so a filesystem is never built on a file that has gone); the provider's ``creds`` are those.
    """
    if creds.kind == "oauth" and creds.token_file:
        creds = oauth_credentials(creds.token_file)
    key = (*creds.registry_key, endpoints.base_url)
    with _registry_lock:
        provider = _registry.get(key)
        if provider is None or provider.creds != creds:
            provider = _registry[key] = _make_provider(creds, endpoints, policy)
        elif policy.max_attempts > provider.policy.max_attempts:
            # The token is shared, so its requests take as many attempts as the most patient filesystem
            # using it allows: one built with retry=1 first must not leave a later default one failing on
            # the first 5xx of a token refresh. Only the count changes (one attribute swap, atomic: a
            # refresh running now reads the old policy or the new one whole).
            provider.policy = dataclasses.replace(provider.policy, max_attempts=policy.max_attempts)
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
