"""Collaborations: one user shares a folder (or file) with another user of the enterprise, with a role.

Why: Box's "another user with access" is a collaborator, not another token of the same user. A
collaboration grants its user access to the item and everything below it, within the limits of its role
(:data:`boxfs.emulator.state.ROLE_CAPS`); the access checks themselves live in
:meth:`BoxState.item <boxfs.emulator.state.BoxState.item>`, so every route applies them alike.

Box's rules followed here (its collaborations guide and API reference): ``POST /collaborations`` takes
``item`` (``folder`` or ``file`` and its ``id``), ``accessible_by`` (a ``user`` by ``id`` or ``login``)
and ``role``; a managed user of the same enterprise is collaborated at once (``status: accepted``,
no invitation to accept); only those who may invite (owner, co-owner, editor) may share, and only the
owner or a co-owner may grant ``co-owner`` or change or remove a co-owner's collaboration; a user already
on the item is ``400 user_already_collaborator``. The collaborated item appears in the collaborator's
"All Files". Removing a collaboration (by whoever may invite, or by the collaborator leaving) takes the
access away at once. Each change is an event (``COLLAB_ADD_COLLABORATOR``, ``COLLAB_ROLE_CHANGE``,
``COLLAB_REMOVE_COLLABORATOR``) in the streams of the item's users, the collaborator's included, with
the item as that user saw it, so their caches learn that what they see changed.
"""

from __future__ import annotations

from typing import Any

from boxfs.emulator.errors import ApiError, bad_request, not_found
from boxfs.emulator.httpserver import Request, Response, Router
from boxfs.emulator.representations import Representer
from boxfs.emulator.state import ROLES, ROOT, BoxState, Principal
from boxfs.emulator.store import now_iso

#: the roles that may grant ``co-owner``, or change or remove a co-owner's collaboration
CO_OWNER_MANAGERS = ("owner", "co-owner")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class CollaborationRoutes:
    """``/collaborations`` and the item collaboration listings; one per emulator."""

    def __init__(self, state: BoxState, rep: Representer) -> None:
        self.state = state
        self.store = state.store
        self.rep = rep

    # -- representation ------------------------------------------------------------------------------------
    def render(self, c: Any) -> dict[str, Any]:
        """Box's collaboration object."""
        item = self.store.one("SELECT * FROM items WHERE id=?", c["item_id"])
        user = self.store.one("SELECT * FROM users WHERE id=?", c["user_id"])
        grantee = {"type": "user", "id": c["user_id"], "name": user["name"] if user else "",
                   "login": user["login"] if user else "", "is_active": bool(user) and user["status"] == "active"}
        return {
            "type": "collaboration", "id": c["id"],
            "item": self.rep.item(item, None, mini=True) if item is not None else None,
            "accessible_by": grantee, "invite_email": None, "role": c["role"], "expires_at": None,
            "is_access_only": False, "status": c["status"], "acknowledged_at": c["acknowledged_at"],
            "created_by": self.rep.user_mini(c["created_by"]), "created_at": c["created_at"],
            "modified_at": c["modified_at"],
        }

    # -- helpers -------------------------------------------------------------------------------------------
    @staticmethod
    def _role(value: Any) -> str:
        if value == "owner":
            raise bad_request("Transferring ownership (role owner) is not provided by the emulator", "bad_request")
        if value not in ROLES:  # Box's shape: bad_request, the field named in context_info.errors
            raise bad_request(f"Invalid value for role: {value!r}; one of {', '.join(ROLES)}", "bad_request",
                              errors=[{"reason": "invalid_parameter", "name": "role", "message": f"Invalid value '{value}'."}])
        return str(value)

    def _grantee(self, accessible_by: Any) -> Any:
        """The user a new collaboration is for, named by ``id`` or ``login``."""
        if not isinstance(accessible_by, dict):
            raise bad_request("accessible_by is required: {\"type\": \"user\", \"id\" or \"login\": ...}")
        kind = accessible_by.get("type")
        if kind == "group":
            raise bad_request("Group collaborations are not provided by the emulator (it has no groups)")
        if kind != "user":
            raise bad_request("accessible_by.type must be user or group")
        if accessible_by.get("id") not in (None, ""):
            user = self.store.one("SELECT * FROM users WHERE id=?", str(accessible_by["id"]))
        elif isinstance(accessible_by.get("login"), str) and accessible_by["login"]:
            user = self.store.one("SELECT * FROM users WHERE login=? COLLATE NOCASE", accessible_by["login"])
        else:
            raise bad_request("accessible_by needs the user's id or login")
        if user is None or user["kind"] == "service":
            raise not_found("user")
        return user

    def _collaboration(self, p: Principal, collaboration_id: str, *, self_ok: bool) -> Any:
        """The collaboration, for its own user when ``self_ok`` (reading it, leaving) and for those who may
        invite on its item; 404 for whoever cannot see the item, as Box hides what one cannot see."""
        c = self.store.one("SELECT * FROM collaborations WHERE id=?", collaboration_id)
        if c is None:
            raise not_found("collaboration")
        if self_ok and c["user_id"] == p.user_id:
            return c
        item = self.store.one("SELECT * FROM items WHERE id=? AND trashed_at IS NULL", c["item_id"])
        if item is None or self.state.role_of(p.user_id, item) is None:
            raise not_found("collaboration")
        self.state.item(p, c["item_id"], None, "invite")
        return c

    def _may_touch_co_owner(self, p: Principal, item: Any, *roles: str) -> None:
        """Refuse an editor who grants ``co-owner`` or changes a co-owner's collaboration (``roles``: the
        roles the change involves): on Box only the owner or a co-owner may, else an editor (who may
        invite) could make itself co-owner. 403 as Box answers."""
        if "co-owner" in roles and self.state.role_of(p.user_id, item) not in CO_OWNER_MANAGERS:
            raise ApiError(403, "access_denied_insufficient_permissions",
                           "Access denied - insufficient permission: only the owner or a co-owner may grant "
                           "or change the co-owner role")

    def _change(self, req: Request) -> tuple[Principal, dict[str, Any]]:
        """Who asks to create or change a collaboration (a write needing ``item_share``), and the JSON
        object they sent."""
        p = self.state.principal(req)
        p.require("item_share", write=True)
        body = req.json()
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object")
        return p, body

    # -- routes --------------------------------------------------------------------------------------------
    def create(self, req: Request) -> Response:
        p, body = self._change(req)
        target = body.get("item")
        if not isinstance(target, dict) or target.get("type") not in ("folder", "file") or not target.get("id"):
            raise bad_request("item is required: {\"type\": \"folder\" or \"file\", \"id\": ...}", "invalid_collaboration_item")
        if body.get("is_access_only") or body.get("can_view_path"):
            raise bad_request("is_access_only and can_view_path are not provided by the emulator")
        role = self._role(body.get("role"))
        user = self._grantee(body.get("accessible_by"))
        if str(target["id"]) == ROOT:
            raise bad_request("Root folder cannot be collaborated", "collaborations_not_available_on_root_folder")
        item = self.state.item(p, str(target["id"]), str(target["type"]), "invite")
        self._may_touch_co_owner(p, item, role)
        now = now_iso()
        with self.store.tx() as db:
            taken = db.execute("SELECT 1 FROM collaborations WHERE item_id=? AND user_id=?", (item["id"], user["id"])).fetchone()
            if taken is not None or user["id"] == item["owner_id"]:
                raise bad_request("User is already a collaborator", "user_already_collaborator")
            cid = self.store.next_id("collaboration", 700000001)
            # Managed users of one enterprise are collaborated at once (no invitation to accept).
            db.execute(
                "INSERT INTO collaborations (id, item_id, item_type, user_id, role, status, created_by, created_at, "
                "modified_at, acknowledged_at) VALUES (?, ?, ?, ?, ?, 'accepted', ?, ?, ?, ?)",
                (cid, item["id"], item["type"], user["id"], role, p.user_id, now, now, now))
        self.state.events.record(p, "COLLAB_ADD_COLLABORATOR", item)
        row = self.store.one("SELECT * FROM collaborations WHERE id=?", cid)
        return Response.json(self.render(row), 201)

    def get(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("read")
        return Response.json(self.render(self._collaboration(p, req.params["collaboration_id"], self_ok=True)))

    def update(self, req: Request) -> Response:
        p, body = self._change(req)
        unknown = set(body) - {"role", "status"}
        if unknown:
            raise bad_request(f"Not provided by the emulator: {', '.join(sorted(unknown))}")
        if body.get("status", "accepted") != "accepted":
            raise bad_request("You can change the status only if the collaboration is pending", "invalid_status")
        c = self._collaboration(p, req.params["collaboration_id"], self_ok="role" not in body)
        if "role" in body and body["role"] != c["role"]:
            role = self._role(body["role"])
            item = self.store.one("SELECT * FROM items WHERE id=?", c["item_id"])
            self._may_touch_co_owner(p, item, role, c["role"])
            self.store.execute("UPDATE collaborations SET role=?, modified_at=? WHERE id=?", role, now_iso(), c["id"])
            self.state.events.record(p, "COLLAB_ROLE_CHANGE", item)
        return Response.json(self.render(self.store.one("SELECT * FROM collaborations WHERE id=?", c["id"])))

    def delete(self, req: Request) -> Response:
        """Remove a collaboration: its user's access ends now. Their event carries the item as they saw
        it (rendered before the removal), so their cache forgets the right place."""
        p = self.state.principal(req)
        p.require("item_share", write=True)
        c = self._collaboration(p, req.params["collaboration_id"], self_ok=True)
        item = self.store.one("SELECT * FROM items WHERE id=?", c["item_id"])
        if item is not None and c["user_id"] != p.user_id:  # leaving is always allowed
            self._may_touch_co_owner(p, item, c["role"])
        before = self.state.events.sources(item, self.state.audience(item)) if item is not None else {}
        self.store.execute("DELETE FROM collaborations WHERE id=?", c["id"])
        if item is not None:
            self.state.events.record(p, "COLLAB_REMOVE_COLLABORATOR", item, sources=before)
        return Response(204)

    def list_for_item(self, req: Request) -> Response:
        """``GET /folders/{id}/collaborations`` and ``GET /files/{id}/collaborations``: the collaborations
        on that item itself (not those inherited from folders above it), marker-paged."""
        p = self.state.principal(req)
        p.require("read")
        kind = "folder" if "folder_id" in req.params else "file"
        item = self.state.item(p, req.params[f"{kind}_id"], kind)
        try:
            limit = min(int(req.query.get("limit", str(DEFAULT_LIMIT))), MAX_LIMIT)
            start = int(req.query.get("marker") or "0")
        except ValueError:
            raise bad_request("limit must be an integer and marker one this route handed out", "invalid_parameter") from None
        if limit < 1 or start < 0:
            raise bad_request("limit must be positive and marker one this route handed out", "invalid_parameter")
        rows = self.store.all("SELECT * FROM collaborations WHERE item_id=? ORDER BY CAST(id AS INTEGER)", item["id"])
        page = rows[start:start + limit]
        nxt = str(start + limit) if start + limit < len(rows) else None
        return Response.json({"entries": [self.render(c) for c in page], "limit": limit, "next_marker": nxt,
                              "prev_marker": None})

    def pending(self, req: Request) -> Response:
        """``GET /collaborations?status=pending``: the invitations awaiting the user. Every emulated user is
        a managed user of the one enterprise, collaborated at once, so there are none."""
        p = self.state.principal(req)
        p.require("read")
        if req.query.get("status") != "pending":
            raise bad_request("status=pending is required", "bad_request")
        try:
            offset = int(req.query.get("offset", "0"))
            limit = min(int(req.query.get("limit", str(DEFAULT_LIMIT))), MAX_LIMIT)
        except ValueError:
            raise bad_request("offset and limit must be integers", "invalid_parameter") from None
        rows = self.store.all("SELECT * FROM collaborations WHERE user_id=? AND status='pending' ORDER BY CAST(id AS INTEGER)",
                              p.user_id)
        return Response.json({"total_count": len(rows), "entries": [self.render(c) for c in rows[offset:offset + limit]],
                              "offset": offset, "limit": limit})

    def register(self, router: Router) -> None:
        router.add("GET", "api", "/collaborations", self.pending)
        router.add("POST", "api", "/collaborations", self.create)
        router.add("GET", "api", "/collaborations/{collaboration_id}", self.get)
        router.add("PUT", "api", "/collaborations/{collaboration_id}", self.update)
        router.add("DELETE", "api", "/collaborations/{collaboration_id}", self.delete)
        router.add("GET", "api", "/folders/{folder_id}/collaborations", self.list_for_item)
        router.add("GET", "api", "/files/{file_id}/collaborations", self.list_for_item)
