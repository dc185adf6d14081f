"""Downscoped tokens (token exchange): a token limited to some scopes and optionally one item.

Box's downscoped tokens cannot be refreshed; when one expires (or Box answers 401) a new one is
exchanged from the parent provider's current token, so it behaves like any refreshable provider.
"""

from __future__ import annotations

from collections.abc import Sequence

from boxfs.api.errors import BoxAuthError
from boxfs.auth.endpoint import ACCESS_TOKEN_TYPE, EXCHANGE_GRANT, expiry, token_request
from boxfs.auth.provider import TokenProvider
from boxfs.config import BoxConfigError


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

    @property
    def refreshable(self) -> bool:
        return self.parent.refreshable

    def _renew_locked(self) -> None:
        form = {"grant_type": EXCHANGE_GRANT, "subject_token_type": ACCESS_TOKEN_TYPE,
                "scope": " ".join(self.scopes)}
        if self.resource:
            form["resource"] = self.resource
        describe = f"exchanging the token of app {self.creds.client_id} for scopes {' '.join(self.scopes)}"
        for attempt in range(2):
            subject = self.parent.token()
            started = self.clock()
            try:
                body = token_request(self.endpoints, {**form, "subject_token": subject}, self.policy, describe)
                break
            except BoxAuthError as exc:
                # the parent's token may have expired a moment ago: refresh it once and exchange again
                if attempt == 0 and getattr(exc, "box_code", "") == "invalid_grant" and self.parent.refreshable:
                    self.parent.invalidate(subject)
                    continue
                raise
        self._token = str(body["access_token"])
        self._expires_at = expiry(body, started)
        self.refresh_count += 1

