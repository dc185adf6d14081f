"""Expiring embed links (``GET /files/{id}?fields=expiring_embed_link``) and the preview page they open.

Box answers the field with a preview token for the file (its session lasts up to 60 minutes) and an
``https://cloud.app.box.com/preview/expiring_embed/...`` URL that must be opened within 60 seconds. The
emulator serves that URL as ``{url}/preview/expiring_embed/{token}``: a small HTML page naming the file
while the URL lives, 404 once it has expired, so a client can check what it hands to a browser.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from boxfs.emulator.httpserver import Request, Response, Router
from boxfs.emulator.representations import Representer
from boxfs.emulator.state import BoxState, Principal

URL_TTL = 60.0  # an embed URL must be opened within a minute
PREVIEW_SCOPE = "item_preview"


class EmbedLinks:
    """Mints expiring embed links and serves the pages they point at."""

    def __init__(self, state: BoxState, rep: Representer, issue: Callable[..., dict[str, Any]]) -> None:
        self.state = state
        self.rep = rep
        self.issue = issue
        self._urls: dict[str, tuple[str, float]] = {}  # URL token -> (file id, expiry)
        self._lock = threading.Lock()

    def link(self, p: Principal, row: Any) -> dict[str, Any]:
        """The ``expiring_embed_link`` object for a file the principal may preview."""
        p.require(PREVIEW_SCOPE, "base_preview")
        resource = f"{self.state.public_url}/2.0/files/{row['id']}"
        token = self.issue(p.client_id, p.user_id, scopes=[PREVIEW_SCOPE], resource=resource)
        url_token = secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            for key in [k for k, (_, exp) in self._urls.items() if exp < now]:
                del self._urls[key]
            self._urls[url_token] = (row["id"], now + URL_TTL)
        return {
            "access_token": token["access_token"], "expires_in": token["expires_in"], "token_type": "bearer",
            "restricted_to": [{"scope": PREVIEW_SCOPE, "object": self.rep.item(row, None, mini=True)}],
            "url": f"{self.state.public_url}/preview/expiring_embed/{url_token}",
        }

    def expire_all(self) -> None:
        with self._lock:
            self._urls.clear()

    def page(self, req: Request) -> Response:
        with self._lock:
            entry = self._urls.get(req.params["token"])
        item = None
        if entry is not None and entry[1] >= time.time():
            item = self.state.store.one("SELECT name FROM items WHERE id=? AND trashed_at IS NULL", entry[0])
        if item is None:
            return Response(404, b"<!DOCTYPE html><html><body>This embed link is unknown or has expired.</body></html>",
                            {"Content-Type": "text/html; charset=utf-8"})
        name = html.escape(item["name"])
        body = f"<!DOCTYPE html><html><head><title>{name}</title></head><body><h1>Box Preview</h1><p>{name}</p></body></html>"
        return Response(200, body.encode(), {"Content-Type": "text/html; charset=utf-8"})

    def register(self, router: Router) -> None:
        router.add("GET", "app", "/preview/expiring_embed/{token}", self.page)
