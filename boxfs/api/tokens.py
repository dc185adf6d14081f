"""What the transport needs of a token provider, so that the API layer sits below :mod:`boxfs.auth`.

Every provider in :mod:`boxfs.auth` has this shape; the transport depends on the shape only.
"""

from __future__ import annotations

from typing import Protocol


class TokenSource(Protocol):
    """An access token that can be renewed after Box answers 401 to it."""

    @property
    def refreshable(self) -> bool:
        """Whether a 401 is worth one re-send with a renewed token."""
        ...

    def token(self) -> str:
        """The current access token."""
        ...

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after Box refused it."""
        ...
