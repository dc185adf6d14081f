"""App Token auth: the developer console's primary and secondary App Tokens, used as they are.

App Tokens do not expire (unless made to), so there is nothing to refresh; a rollover revokes the
primary, and Box then answers 401 to it: from that moment the secondary is used (once switched, for
good). With no token left, the 401 reaches the caller as an authentication error.
"""

from __future__ import annotations

import logging
import math

from boxfs.auth.provider import TokenProvider
from boxfs.config import BoxCredentials, BoxEndpoints
from boxfs.retry import RetryPolicy

logger = logging.getLogger("boxfs")


class AppTokenProvider(TokenProvider):
    """The primary App Token until Box refuses it, then the secondary."""

    def __init__(self, creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> None:
        super().__init__(creds, endpoints, policy)
        self._index = 0

    @property
    def refreshable(self) -> bool:
        with self._lock:
            return self._index + 1 < len(self.creds.app_tokens)

    def _renew_locked(self) -> None:
        self._token, self._expires_at = self.creds.app_tokens[self._index], math.inf

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self.creds.app_tokens[self._index] == token and self._index + 1 < len(self.creds.app_tokens):
                self._index += 1
                self._token = None
                self.refresh_count += 1
                logger.warning("Box refused the primary App Token (revoked?): using the secondary App Token")
