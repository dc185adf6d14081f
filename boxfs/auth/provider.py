"""The shape every token provider shares: one cached token, renewed under a lock by one thread at a time.

A file-transfer server builds one filesystem per logged-in user of one app; those filesystems share one
provider (see :mod:`boxfs.auth.registry`), so ``token()`` must be safe between threads and must not send
two token requests where one does. Subclasses say only how a token is obtained (``_renew_locked``) and
on which clock its expiry is measured. Impersonation is not part of the token: the transport adds
``As-User`` per request. Providers are never pickled; an unpickled filesystem finds its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from boxfs.config import BoxCredentials, BoxEndpoints
from boxfs.retry import RetryPolicy


class TokenProvider:
    """A refreshable access token for one app and subject, safe to share between threads."""

    #: The clock ``_expires_at`` is measured on: monotonic, or wall-clock where the expiry is shared
    #: with other processes (the token file).
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> None:
        self.creds = creds
        self.endpoints = endpoints
        self.policy = policy
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.refresh_count = 0

    @property
    def refreshable(self) -> bool:
        """False where nothing can be done about a 401 but to report it."""
        return True

    def token(self) -> str:
        """The current access token, renewed first when missing or about to expire."""
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at:
                self._renew_locked()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after Box answered 401 to it (unless another thread already replaced it)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _renew_locked(self) -> None:
        """Set ``_token`` and ``_expires_at`` (the lock is held)."""
        raise NotImplementedError
