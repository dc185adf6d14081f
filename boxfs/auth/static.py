"""A ready-made access token (``token=``, ``BOXFS_TOKEN``, a developer token), used as it is.

Nothing to request and nothing to refresh: a 401 to it reaches the caller as an authentication error.
Kept apart from :mod:`boxfs.auth.service` so that a process holding such a token never imports PyJWT
and cryptography (a tenth of a second of every short CLI command).
"""

from __future__ import annotations

import math

from boxfs.auth.provider import TokenProvider


class StaticTokenProvider(TokenProvider):
    """The configured token, for as long as Box accepts it."""

    @property
    def refreshable(self) -> bool:
        """False: nothing can be done about a 401 but to report it."""
        return False

    def _renew_locked(self) -> None:
        assert self.creds.token is not None
        self._token, self._expires_at = self.creds.token, math.inf
