"""Shared emulator state: settings, who is acting (tokens, scopes, As-User) and item access.

Every API route starts by asking :meth:`BoxState.principal` who is calling and then reads or
changes items only through the acting user's view, which is how Box keeps each user's root
folder private. A user sees an item they own, or one at or below an item shared with them by an
accepted collaboration; the collaboration's role limits what they may do there (:data:`ROLE_CAPS`).

Why a context variable for the viewer: Box renders an item differently for each user who sees it
(``path_collection`` starts at the viewer's own "All Files", ``permissions`` follow the viewer's role).
:meth:`BoxState.principal` sets the acting user for the request's thread, and the event log renders the
same item once per user it tells (:meth:`BoxState.viewing`), so no route passes the viewer around.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from boxfs.emulator.errors import ApiError, bad_request, not_found
from boxfs.emulator.httpserver import Request
from boxfs.emulator.store import Store

ROOT = "0"
DEFAULT_SPACE = 10 * 1024**4  # 10 TiB, an enterprise user's usual quota
MAX_UPLOAD_SIZE = 150 * 1024**3

#: What a collaborator may do, by role (Box's collaborator permission levels); ``owner`` is the item's owner.
#: ``list`` = see a folder's content, ``edit`` = rename, move, upload a new version, ``invite`` = share the
#: folder with others (collaborations).
ALL_CAPS = frozenset({"list", "preview", "download", "upload", "edit", "delete", "share", "invite"})
ROLE_CAPS: dict[str, frozenset[str]] = {
    "owner": ALL_CAPS,
    "co-owner": ALL_CAPS,
    "editor": ALL_CAPS,
    "viewer uploader": frozenset({"list", "preview", "download", "upload", "edit", "share"}),
    "previewer uploader": frozenset({"list", "preview", "upload"}),
    "viewer": frozenset({"list", "preview", "download", "share"}),
    "previewer": frozenset({"list", "preview"}),
    "uploader": frozenset({"upload"}),
}
#: the roles a collaboration may be created with (``owner`` only comes with the item)
ROLES = tuple(r for r in ROLE_CAPS if r != "owner")

_VIEWER: ContextVar[str | None] = ContextVar("box_emulator_viewer", default=None)

# Scopes a downscoped token may carry, and which an operation needs.
READ_SCOPES = {"item_preview", "item_read", "item_download", "base_preview", "base_explorer", "item_share",
               "item_upload", "item_content_upload", "item_delete", "item_rename", "base_upload", "item_comment", "annotation_edit",
               "root_readonly", "root_readwrite"}


#: What an App Token app (a Limited Access App) may call, as Box's App Token guide lists it: Upload File,
#: Download File, Delete File and Get Embed Link (``GET /files/{id}?fields=expiring_embed_link``).
APP_TOKEN_ROUTES = {
    ("POST", "/files/content"), ("POST", "/files/{file_id}/content"), ("GET", "/files/{file_id}/content"),
    ("DELETE", "/files/{file_id}"), ("GET", "/files/{file_id}"),
}


def app_token_hash(token: str) -> str:
    """What the emulator keeps of an App Token: Box stores only a one-way hash of it."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Principal:
    """Who a request acts as, and with what rights."""

    client_id: str
    token_user_id: str  # the user the token was issued to
    user_id: str  # the acting user (differs when As-User is used)
    scopes: frozenset[str]
    resource: str | None  # a downscoped token's resource URL
    downscoped: bool

    def require(self, *scopes: str, write: bool = False) -> None:
        """Refuse an operation the token's scopes do not allow (403 insufficient_scope); a downscoped
        token needs one of ``scopes``."""
        if self.downscoped:
            if not self.scopes & set(scopes) and not ("read" in scopes and self.scopes & READ_SCOPES):
                raise ApiError(403, "insufficient_scope", "The request requires higher privileges than provided by the access token.")
            return
        if write and "root_readwrite" not in self.scopes:
            raise ApiError(403, "insufficient_scope", "The request requires higher privileges than provided by the access token.")


class BoxState:
    """State and rules shared by the route modules."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.token_ttl = 3600.0
        self.commit_retry_after: int | None = None  # when set, commits first answer 202 + Retry-After
        self.session_ttl = 7 * 24 * 3600.0
        self.auto_approve_login: str | None = None
        self.public_url = ""  # the emulator's root URL, for links it hands out (set on start)
        self.events: Any = None  # the EventLog (boxfs.emulator.events) every mutation reports to
        ent = store.meta("enterprise_id")
        if ent is None:
            ent = store.next_id("enterprise", 900001)
            store.set_meta("enterprise_id", ent)
        self.enterprise_id = ent

    # -- principals ----------------------------------------------------------------------------------
    def principal(self, req: Request) -> Principal:
        auth = req.header("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else req.query.get("access_token")
        if not token:
            raise ApiError(401, "unauthorized", "Unauthorized", headers={"WWW-Authenticate": 'Bearer realm="Service"'})
        row = self.token_row(token)
        if row is None or row["revoked"]:
            raise ApiError(401, "unauthorized", "Unauthorized",
                           headers={"WWW-Authenticate": 'Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid."'})
        if row["expires_at"] <= time.time():
            raise ApiError(401, "unauthorized", "Unauthorized",
                           headers={"WWW-Authenticate": 'Bearer realm="Service", error="invalid_token", error_description="The access token provided has expired."'})
        app = self.store.one("SELECT * FROM apps WHERE client_id=?", row["client_id"])
        if app is None or app["revoked"]:
            raise ApiError(401, "unauthorized", "Unauthorized")
        if app["auth_type"] == "app_token":
            self._app_token_route(req)
        downscoped = row["scopes"] is not None
        scopes = frozenset(json.loads(row["scopes"])) if downscoped else frozenset(json.loads(app["scopes"]))
        user_id = row["user_id"]
        as_user = req.header("As-User")
        if as_user:
            user_id = self._as_user(app, row["user_id"], as_user.strip())
        req.record.user_id = user_id
        _VIEWER.set(user_id)
        return Principal(row["client_id"], row["user_id"], user_id, scopes, row["resource"], downscoped)

    def token_row(self, token: str) -> Any:
        """The row of an access token, or of an App Token (found by its hash); None when unknown."""
        row = self.store.one("SELECT * FROM tokens WHERE token=? AND kind='access'", token)
        if row is None and token:
            row = self.store.one("SELECT * FROM tokens WHERE token=? AND kind='app'", app_token_hash(token))
        return row

    @staticmethod
    def _app_token_route(req: Request) -> None:
        """Refuse what an App Token app's tokens (App Tokens and the file tokens exchanged from them) may
        not call: only :data:`APP_TOKEN_ROUTES`, and a file's information only as its embed link."""
        allowed = (req.method, req.route) in APP_TOKEN_ROUTES
        if allowed and req.route == "/files/{file_id}" and req.method == "GET":
            allowed = "expiring_embed_link" in (req.query.get("fields") or "").split(",")
        if not allowed:
            raise ApiError(403, "insufficient_scope",
                           "App Token auth allows only Upload File, Download File, Delete File and Get Embed Link",
                           headers={"WWW-Authenticate": 'Bearer realm="Service", error="insufficient_scope", '
                                    'error_description="The request requires higher privileges than provided by the access token."'})

    def can_act_as(self, client_id: str, token_user: str, target: str) -> bool:
        """Whether a token of this app and user may act as ``target`` through ``As-User``."""
        app = self.store.one("SELECT * FROM apps WHERE client_id=?", client_id)
        try:
            return app is not None and self._as_user(app, token_user, target) == target
        except ApiError:
            return False

    def _as_user(self, app: Any, token_user: str, target: str) -> str:
        """Box's As-User preconditions: the app has the "perform actions as users" feature (scope
        ``admin_on_behalf_of``), the caller is an admin (the service account), and the target is a user
        the app may reach (its own app users; managed users only with App + Enterprise access)."""
        denied = ApiError(403, "access_denied_insufficient_permissions", "Access denied - insufficient permission")
        if not app["as_user_header"] and "admin_on_behalf_of" not in json.loads(app["scopes"]):
            raise ApiError(403, "insufficient_scope",
                           "The request requires higher privileges than provided by the access token.",
                           headers={"WWW-Authenticate": 'Bearer realm="Service", error="insufficient_scope", '
                                    'error_description="The request requires higher privileges than provided by the access token."'})
        caller = self.store.one("SELECT * FROM users WHERE id=?", token_user)
        if caller is None or caller["kind"] != "service":
            raise denied
        user = self.store.one("SELECT * FROM users WHERE id=?", target)
        if user is None:
            raise ApiError(400, "invalid_parameter", "Invalid value for As-User header: no such user")
        if user["kind"] == "app":
            if user["app_client_id"] != app["client_id"] and not app["enterprise_access"]:
                raise denied
        elif user["kind"] == "managed":
            if not app["enterprise_access"] or user["enterprise_id"] != app["enterprise_id"]:
                raise denied
        else:  # service accounts cannot be named in As-User
            raise denied
        return target

    # -- items ------------------------------------------------------------------------------------------
    def item(self, p: Principal, item_id: str, kind: str | None = None, need: str | None = None) -> Any:
        """The item as the acting user sees it; 404 when absent, trashed, neither theirs nor shared with
        them, or inside a folder their role may not look into (:meth:`_sees`); 403 ``access_denied_insufficient_permissions`` when their role lacks ``need`` (a capability of
        :data:`ROLE_CAPS`)."""
        if item_id == ROOT and kind in (None, "folder"):
            return self.root_row(p.user_id)
        row = self.store.one("SELECT * FROM items WHERE id=? AND trashed_at IS NULL", item_id)
        if row is None or (kind is not None and row["type"] != kind):
            raise not_found(kind or "item")
        role = self.role_of(p.user_id, row)
        if role is None or not self._sees(p.user_id, role, row):
            raise not_found(kind or "item")
        if p.resource and not self.within(p.resource, row):
            raise ApiError(403, "access_denied_insufficient_permissions", "Access denied - insufficient permission")
        if need is not None and need not in ROLE_CAPS[role]:
            raise ApiError(403, "access_denied_insufficient_permissions",
                           f"Access denied - insufficient permission: the {role} role may not {need} here")
        return row

    def _sees(self, user_id: str, role: str, row: Any) -> bool:
        """Whether a role that may neither list nor preview (``uploader``) sees the item: only the item
        shared with them, not what is in it (Box's uploader drops files into a folder it cannot look
        into), so the folder's items are 404 to them, as Box hides what one cannot see."""
        if ROLE_CAPS[role] & {"list", "preview"}:
            return True
        return self.store.one("SELECT 1 FROM collaborations WHERE item_id=? AND user_id=? AND status='accepted'",
                              row["id"], user_id) is not None

    # -- collaborations -----------------------------------------------------------------------------------
    def role_of(self, user_id: str, row: Any) -> str | None:
        """``owner``, the role of the user's nearest accepted collaboration on the item or a folder above
        it, or None when the user cannot see the item."""
        if row["id"] == ROOT or row["owner_id"] == user_id:
            return "owner" if row["owner_id"] == user_id else None
        current: Any = row
        while current is not None:
            grant = self.store.one("SELECT role FROM collaborations WHERE item_id=? AND user_id=? AND status='accepted'",
                                   current["id"], user_id)
            if grant is not None:
                return str(grant["role"])
            if current["parent_id"] in (ROOT, ""):
                return None
            current = self.store.one("SELECT * FROM items WHERE id=?", current["parent_id"])
        return None

    def audience(self, row: Any) -> list[str]:
        """Every user who sees the item: its owner, then the collaborators on it or a folder above it."""
        ids = [row["id"]] + [r["id"] for r in self._owner_chain(row)]
        marks = ",".join("?" * len(ids))
        users = self.store.all(f"SELECT DISTINCT user_id FROM collaborations WHERE status='accepted' AND item_id IN ({marks}) "
                               "ORDER BY user_id", *ids)
        return [row["owner_id"], *(u["user_id"] for u in users if u["user_id"] != row["owner_id"])]

    @staticmethod
    def viewer() -> str | None:
        """The user the current request acts as (whose view items are rendered in)."""
        return _VIEWER.get()

    @staticmethod
    @contextmanager
    def viewing(user_id: str) -> Iterator[None]:
        """Render items as ``user_id`` sees them within the block (an event told to each of its users)."""
        token = _VIEWER.set(user_id)
        try:
            yield
        finally:
            _VIEWER.reset(token)

    def within(self, resource: str, row: Any) -> bool:
        """Whether an item is the resource (a file or folder API URL) or below it."""
        target = resource.rstrip("/").rsplit("/", 1)[-1]
        current: Any = row
        while current is not None:
            if current["id"] == target:
                return True
            if current["parent_id"] == ROOT:
                return target == ROOT
            current = self.store.one("SELECT * FROM items WHERE id=?", current["parent_id"])
        return False

    def root_row(self, user_id: str) -> dict[str, Any]:
        user = self.store.one("SELECT * FROM users WHERE id=?", user_id)
        return {
            "id": ROOT, "type": "folder", "owner_id": user_id, "parent_id": "", "name": "All Files",
            "name_key": "all files", "description": "", "created_at": None, "modified_at": None,
            "content_created_at": None, "content_modified_at": None,
            "created_by": "", "modified_by": user_id, "sequence_id": None, "version_id": None,
            "trashed_at": None, "trash_root": 0, "_user": user,
        }

    def _owner_chain(self, row: Any) -> list[Any]:
        """The folders above an item in its owner's tree, nearest first (the root not included)."""
        chain: list[Any] = []
        parent = row["parent_id"]
        while parent and parent != ROOT:
            r = self.store.one("SELECT * FROM items WHERE id=?", parent)
            if r is None:
                break
            chain.append(r)
            parent = r["parent_id"]
        return chain

    def ancestors(self, row: Any, viewer: str | None = None) -> list[Any]:
        """Parent folders from the root down as ``viewer`` (default: the acting user) sees them: Box's
        path_collection. A collaborator's path starts at their own "All Files" and goes on from the
        highest folder shared with them; [] when the viewer cannot place the item (no longer shared)."""
        if row["id"] == ROOT:
            return []
        chain = self._owner_chain(row)
        chain.reverse()
        viewer = viewer or self.viewer()
        if viewer is None or viewer == row["owner_id"]:
            return [self.root_row(row["owner_id"]), *chain]
        ids = [r["id"] for r in chain] + [row["id"]]
        marks = ",".join("?" * len(ids))
        shared = {c["item_id"] for c in self.store.all(
            f"SELECT item_id FROM collaborations WHERE user_id=? AND status='accepted' AND item_id IN ({marks})",
            viewer, *ids)}
        for i, item_id in enumerate(ids):
            if item_id in shared:
                return [self.root_row(viewer), *chain[i:]]
        return []

    def children(self, owner: str, folder_id: str) -> list[Any]:
        """A folder's items; in a user's root (``owner``'s), also the highest items shared with them."""
        if folder_id != ROOT:
            return self.store.all("SELECT * FROM items WHERE parent_id=? AND trashed_at IS NULL", folder_id)
        own = self.store.all("SELECT * FROM items WHERE owner_id=? AND parent_id=? AND trashed_at IS NULL", owner, ROOT)
        shared = self.store.all(
            "SELECT i.* FROM items i JOIN collaborations c ON c.item_id = i.id WHERE c.user_id=? AND c.status='accepted' "
            "AND i.owner_id != ? AND i.trashed_at IS NULL", owner, owner)
        return own + [r for r in shared if len(self.ancestors(r, owner)) == 1]

    def conflict(self, owner: str, folder_id: str, name: str, exclude: str | None = None) -> Any:
        """The item already named ``name`` in the folder (in ``owner``'s root when the folder is the
        root); a folder shared by two users is one folder, so names clash across them."""
        if folder_id != ROOT:
            return self.store.one("SELECT * FROM items WHERE parent_id=? AND name_key=? AND trashed_at IS NULL AND id != ?",
                                  folder_id, name_key(name), exclude or "")
        return self.store.one(
            "SELECT * FROM items WHERE owner_id=? AND parent_id=? AND name_key=? AND trashed_at IS NULL AND id != ?",
            owner, folder_id, name_key(name), exclude or "",
        )

    @staticmethod
    def link_expired(link: Any) -> bool:
        if not link["unshared_at"]:
            return False
        try:
            until = datetime.fromisoformat(link["unshared_at"].replace("Z", "+00:00"))
        except ValueError:
            return False
        return until <= datetime.now(timezone.utc)

    def space_used(self, user_id: str) -> int:
        row = self.store.one(
            "SELECT COALESCE(SUM(v.size), 0) AS used FROM items i JOIN versions v ON v.id = i.version_id "
            "WHERE i.owner_id=? AND i.type='file' AND i.trashed_at IS NULL", user_id)
        return int(row["used"]) if row else 0


def name_key(name: str) -> str:
    """Box compares names case-insensitively within a folder."""
    return name.casefold()


def _name_is_invalid(name: str) -> bool:
    """Box's ``item_name_invalid`` rules: ``/`` or ``\\``, ``.``/``..``, a trailing space, non-printable
    ASCII (controls and DEL), text that is not valid Unicode. A leading space is accepted (docs/emulator.md)."""
    return ("/" in name or "\\" in name or name in (".", "..") or name.endswith(" ")
            or any(ord(c) < 32 or c == "\x7f" or "\ud800" <= c <= "\udfff" for c in name))


def check_name(name: Any, what: str = "item") -> str:
    """Box's name rules; 400 item_name_invalid / item_name_too_long as Box answers them."""
    if not isinstance(name, str) or name == "":
        raise ApiError(400, "bad_request", f"The {what} name must be a non-empty string")
    if len(name) > 255:
        raise ApiError(400, "item_name_too_long", "Item name too long")
    if _name_is_invalid(name):
        raise ApiError(400, "item_name_invalid", "Item name invalid")
    return name


def parse_time(value: Any, field: str) -> str | None:
    """An RFC 3339 timestamp as Box stores it (to the second, with offset)."""
    if value in (None, ""):
        return None
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid value for {field}: {value!r}; an RFC 3339 date-time is required", "bad_request") from None
    if dt.tzinfo is None:
        raise bad_request(f"Invalid value for {field}: a time zone offset is required", "bad_request")
    return dt.replace(microsecond=0).isoformat()
