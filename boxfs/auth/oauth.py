"""A person's own Box account through OAuth 2.0: tokens from the file ``boxfs login`` wrote, kept fresh.

A process whose access token expired takes the token file's lock, and if another process refreshed
meanwhile it adopts that newer token instead of spending the (already spent) refresh token it
remembers; otherwise it refreshes and writes the new pair back before releasing the lock.
"""

from __future__ import annotations

import logging
import time

from boxfs.api.errors import BoxAuthError
from boxfs.auth.endpoint import expiry, token_request
from boxfs.auth.provider import TokenProvider
from boxfs.auth.tokenfile import TokenFile
from boxfs.config import BoxCredentials, BoxEndpoints
from boxfs.retry import RetryPolicy

logger = logging.getLogger("boxfs")


class OAuthFileTokenProvider(TokenProvider):
    """Tokens from a ``boxfs login`` token file, refreshed and saved back safely across processes."""

    clock = staticmethod(time.time)  # the file's expiry is shared with other processes

    def __init__(self, creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> None:
        if creds.kind != "oauth" or not creds.token_file:
            raise ValueError("OAuthFileTokenProvider needs oauth credentials with a token file")
        super().__init__(creds, endpoints, policy)
        self.file = TokenFile(creds.token_file)
        self._rejected: str | None = None

    def invalidate(self, token: str) -> None:
        with self._lock:
            self._rejected = token
            if self._token == token:
                self._token = None

    def _renew_locked(self) -> None:
        """Adopt the file's token if it is good, else refresh it there (under the file lock)."""
        with self.file.locked():
            data = self.file.read()
            fresh = float(data["expires_at"]) > time.time() and data["access_token"] != self._rejected
            if not fresh:
                started = time.time()
                try:
                    body = token_request(
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
                data.update(access_token=body["access_token"], expires_at=expiry(body, started),
                            refresh_token=body.get("refresh_token") or data["refresh_token"],
                            refreshed_at=time.time())
                self.file.write(data)
                self.refresh_count += 1
                logger.info("refreshed the OAuth access token kept in %s", self.file.path)
            self._token = str(data["access_token"])
            self._expires_at = float(data["expires_at"])

