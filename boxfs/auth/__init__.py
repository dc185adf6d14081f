"""Access tokens for boxfs: one module per concern.

* :mod:`~boxfs.auth.provider`: the shared shape (a cached token renewed under a lock);
* :mod:`~boxfs.auth.service` (JWT, CCG), :mod:`~boxfs.auth.static` (a ready-made
  token), :mod:`~boxfs.auth.apptoken` (App Tokens), :mod:`~boxfs.auth.oauth` (a person's tokens from the token file),
  :mod:`~boxfs.auth.downscoped` (token exchange): the providers;
* :mod:`~boxfs.auth.endpoint`: Box's token endpoint and the one retry loop of token requests;
* :mod:`~boxfs.auth.tokenfile`: the file ``boxfs login`` writes; :mod:`~boxfs.auth.login`: that login;
* :mod:`~boxfs.auth.registry`: one provider per app and subject per process.

The names below are what users import from ``boxfs.auth``; boxfs itself imports from the modules.
``ServiceTokenProvider`` (also under its old name ``SDKTokenProvider``) is resolved on first access
(PEP 562), so importing this package does not import PyJWT.
"""

from __future__ import annotations

from typing import Any

from boxfs.auth.apptoken import AppTokenProvider
from boxfs.auth.downscoped import DownscopedTokenProvider
from boxfs.auth.endpoint import REFRESH_MARGIN
from boxfs.auth.login import DEFAULT_REDIRECT_URI, login
from boxfs.auth.oauth import OAuthFileTokenProvider
from boxfs.auth.provider import TokenProvider
from boxfs.auth.registry import clear_registry, get_provider
from boxfs.auth.static import StaticTokenProvider
from boxfs.auth.tokenfile import TokenFile, default_token_file
from boxfs.retry import RetryableResponse

__all__ = [
    "AppTokenProvider",
    "DEFAULT_REDIRECT_URI",
    "DownscopedTokenProvider",
    "OAuthFileTokenProvider",
    "REFRESH_MARGIN",
    "RetryableResponse",
    "SDKTokenProvider",
    "ServiceTokenProvider",
    "StaticTokenProvider",
    "TokenFile",
    "TokenProvider",
    "clear_registry",
    "default_token_file",
    "get_provider",
    "login",
]


def __getattr__(name: str) -> Any:
    """``ServiceTokenProvider`` on first use: its module imports PyJWT, which most processes never need."""
    if name in ("ServiceTokenProvider", "SDKTokenProvider"):
        from boxfs.auth.service import ServiceTokenProvider

        return ServiceTokenProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
