"""Folder and file routes: get, list, create, update (rename/move), copy, delete, versions.

Every mutation bumps the item's ``sequence_id``/``etag`` and honours ``If-Match`` as Box does,
so clients can rely on etags to detect change.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from boxfs.emulator.embed import EmbedLinks
from boxfs.emulator.errors import ApiError, bad_request, not_found
from boxfs.emulator.httpserver import Request, Response, Router
from boxfs.emulator.representations import Representer, parse_fields
from boxfs.emulator.state import ROOT, BoxState, Principal, check_name, name_key, parse_time
from boxfs.emulator.store import now_iso

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
SORTS = ("id", "name", "date", "size")


def truthy(value: str | None) -> bool:
    """Query booleans: Box's SDKs send ``true`` and ``True`` alike."""
    return (value or "").strip().lower() in ("true", "1")


def check_if_match(req: Request, row: Any) -> None:
    expected = req.header("If-Match")
    if expected is not None and row["id"] != ROOT and expected.strip('"') != str(row["sequence_id"]):
        raise ApiError(412, "precondition_failed", "The resource has been modified. Please retrieve the resource again and retry")


def not_modified(req: Request, row: Any) -> bool:
    """``If-None-Match`` names the item's current etag: Box answers 304 with no body."""
    expected = req.header("If-None-Match")
    return expected is not None and row["id"] != ROOT and expected.strip('"') == str(row["sequence_id"])


def conflict_error(rep: Representer, row: Any, *, single: bool = False) -> ApiError:
    """409 ``item_name_in_use`` naming the item in the way.

    Box's shape differs by endpoint, and clients depend on it: uploads (preflight, multipart, upload
    sessions) and folder copies answer ``context_info.conflicts`` as one object (rclone reads the existing
    file's id from it), the other routes (folder creation, rename, move, file copy) as a list.
    """
    conflict = rep.item(row, None, mini=True)
    return ApiError(409, "item_name_in_use", "Item with the same name already exists",
                    {"conflicts": conflict if single else [conflict]})


class ItemRoutes:
    def __init__(self, state: BoxState, rep: Representer, embed: EmbedLinks) -> None:
        self.state = state
        self.store = state.store
        self.rep = rep
        self.embed = embed

    # -- shared helpers -------------------------------------------------------------------------------
    def bump(self, db: Any, item_id: str, **changes: Any) -> None:
        """Apply changes to an item and advance its sequence id (its etag)."""
        sets = ", ".join(f"{k}=?" for k in changes)
        args = list(changes.values())
        db.execute(f"UPDATE items SET {sets}{', ' if sets else ''}sequence_id=sequence_id+1 WHERE id=?", (*args, item_id))

    def touch_folder(self, db: Any, folder_id: str) -> None:
        if folder_id != ROOT:
            db.execute("UPDATE items SET modified_at=? WHERE id=?", (now_iso(), folder_id))

    def ensure_no_conflict(self, p: Principal, folder_id: str, name: str, exclude: str | None = None, *,
                           single: bool = False) -> None:
        row = self.state.conflict(p.user_id, folder_id, name, exclude)
        if row is not None:
            raise conflict_error(self.rep, row, single=single)

    def parent_of(self, p: Principal, body: dict[str, Any], required: bool = True, need: str = "upload") -> Any:
        parent = body.get("parent")
        if parent is None and not required:
            return None
        if not isinstance(parent, dict) or not isinstance(parent.get("id"), (str, int)):
            raise bad_request("parent.id is required", "bad_request")
        try:
            return self.state.item(p, str(parent["id"]), "folder", need)
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(404, "not_found", "Not Found: the parent folder could not be found") from None
            raise

    def is_within(self, folder_id: str, ancestor_id: str) -> bool:
        current = folder_id
        while current and current != ROOT:
            if current == ancestor_id:
                return True
            row = self.store.one("SELECT parent_id FROM items WHERE id=?", current)
            current = row["parent_id"] if row else ""
        return ancestor_id == ROOT

    def descendants(self, owner: str, folder_id: str) -> list[str]:
        out: list[str] = []
        stack = [folder_id]
        while stack:
            fid = stack.pop()
            for child in self.store.all(
                "SELECT id, type FROM items WHERE owner_id=? AND parent_id=? AND trashed_at IS NULL", owner, fid
            ):
                out.append(child["id"])
                if child["type"] == "folder":
                    stack.append(child["id"])
        return out

    def _check_owner_change(self, row: Any) -> None:
        """Box refuses to move shared content into another user's tree without naming a new owner."""
        ids = [row["id"], *self.descendants(row["owner_id"], row["id"])]
        marks = ",".join("?" * len(ids))
        if self.store.one(f"SELECT 1 FROM collaborations WHERE item_id IN ({marks})", *ids) is not None:
            raise bad_request("Cannot move a collaborated subfolder to a private folder unless the new owner is "
                              "explicitly specified", "cannot_make_collaborated_subfolder_private")

    # -- folders ----------------------------------------------------------------------------------------
    def get_folder(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("read")
        fields = parse_fields(req.query.get("fields"))
        listing = fields is None or "item_collection" in fields
        row = self.state.item(p, req.params["folder_id"], "folder", "list" if listing else None)
        if not_modified(req, row):
            return Response(304)
        body = self.rep.item(row, fields)
        if listing:
            offset, limit = self._paging(req)
            entries, total = self._sorted_children(p, row["id"], req)
            body["item_collection"] = {
                "total_count": total, "entries": [self.rep.item(r, None, mini=True) for r in entries[offset:offset + limit]],
                "offset": offset, "limit": limit,
                "order": [{"by": "type", "direction": "ASC"}, {"by": "name", "direction": "ASC"}],
            }
        return Response.json(body)

    def _paging(self, req: Request) -> tuple[int, int]:
        try:
            offset = int(req.query.get("offset", "0"))
            limit = int(req.query.get("limit", str(DEFAULT_LIMIT)))
        except ValueError:
            raise bad_request("offset and limit must be integers") from None
        if offset < 0 or limit < 0:
            raise bad_request("offset and limit must not be negative")
        return offset, min(limit, MAX_LIMIT)

    def _sorted_children(self, p: Principal, folder_id: str, req: Request) -> tuple[list[Any], int]:
        sort = req.query.get("sort", "name")
        if sort not in SORTS:
            raise bad_request(f"Invalid sort {sort!r}; one of {', '.join(SORTS)}")
        direction = req.query.get("direction", "ASC").upper()
        if direction not in ("ASC", "DESC"):
            raise bad_request("direction must be ASC or DESC")
        rows = self.state.children(p.user_id, folder_id)
        if sort == "size":
            sizes = {r["id"]: self.rep._size(r, r["type"] == "file") for r in rows}
            key: Any = lambda r: (sizes[r["id"]], int(r["id"]))  # noqa: E731
        elif sort == "date":
            key = lambda r: (r["modified_at"], int(r["id"]))  # noqa: E731
        elif sort == "id":
            key = lambda r: int(r["id"])  # noqa: E731
        else:
            key = lambda r: (r["name_key"], int(r["id"]))  # noqa: E731
        folders = sorted((r for r in rows if r["type"] == "folder"), key=key, reverse=direction == "DESC")
        files = sorted((r for r in rows if r["type"] != "folder"), key=key, reverse=direction == "DESC")
        ordered = folders + files
        return ordered, len(ordered)

    def list_items(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("read")
        folder = self.state.item(p, req.params["folder_id"], "folder", "list")
        fields = parse_fields(req.query.get("fields"))
        ordered, total = self._sorted_children(p, folder["id"], req)
        _, limit = self._paging(req)
        if truthy(req.query.get("usemarker")):
            start = 0
            marker = req.query.get("marker")
            if marker:
                start = self._decode_marker(marker, ordered)
            page = ordered[start:start + limit]
            nxt = None
            if start + limit < total:
                nxt = self._encode_marker(ordered[start + limit]["id"], start + limit)
            return Response.json({
                "entries": self.rep.items(page, fields),
                "limit": limit, "next_marker": nxt, "prev_marker": None,
            })
        if req.query.get("marker"):
            raise bad_request("marker requires usemarker=true")
        offset, limit = self._paging(req)
        direction = req.query.get("direction", "ASC").upper()
        return Response.json({
            "total_count": total,
            "entries": self.rep.items(ordered[offset:offset + limit], fields),
            "offset": offset, "limit": limit,
            "order": [{"by": "type", "direction": "ASC"}, {"by": req.query.get("sort", "name"), "direction": direction}],
        })

    @staticmethod
    def _encode_marker(item_id: str, position: int) -> str:
        return base64.urlsafe_b64encode(json.dumps([item_id, position]).encode()).decode().rstrip("=")

    @staticmethod
    def _decode_marker(marker: str, ordered: list[Any]) -> int:
        try:
            item_id, position = json.loads(base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4)))
        except (ValueError, TypeError):
            raise bad_request("Invalid marker", "invalid_parameter") from None
        # Resume at the item the marker names, wherever it now is; else at the old position.
        for i, r in enumerate(ordered):
            if r["id"] == item_id:
                return i
        return min(int(position), len(ordered))

    def create_folder(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_upload", write=True)
        body = req.json()
        name = check_name(body.get("name"), "folder")
        parent = self.parent_of(p, body)
        now = now_iso()
        with self.store.tx() as db:
            self.ensure_no_conflict(p, parent["id"], name)
            fid = self.store.next_id("item", 100000001)
            db.execute(
                "INSERT INTO items (id, type, owner_id, parent_id, name, name_key, created_at, modified_at, "
                "content_created_at, content_modified_at, created_by, modified_by) VALUES (?, 'folder', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (fid, parent["owner_id"], parent["id"], name, name_key(name), now, now, now, now, p.user_id, p.user_id),
            )
            self.touch_folder(db, parent["id"])
        row = self.state.item(p, fid, "folder")
        self.state.events.record(p, "ITEM_CREATE", row)
        return Response.json(self.rep.item(row, parse_fields(req.query.get("fields"))), 201)

    def _update(self, req: Request, kind: str) -> Response:
        p = self.state.principal(req)
        item_id = req.params[f"{kind}_id"]
        if item_id == ROOT:
            raise ApiError(403, "access_denied_insufficient_permissions", "The root folder cannot be changed")
        body = req.json()
        edits = {"parent", "name", "description"} & set(body) if isinstance(body, dict) else set()
        row = self.state.item(p, item_id, kind, "edit" if edits else ("share" if "shared_link" in body else None))
        check_if_match(req, row)
        audience_before = self.state.audience(row)
        changes: dict[str, Any] = {}
        new_parent = row["parent_id"]
        if "parent" in body:
            p.require("item_rename", write=True)
            parent = self.parent_of(p, body)
            if kind == "folder" and (parent["id"] == row["id"] or (parent["id"] != ROOT and self.is_within(parent["id"], row["id"]))):
                raise bad_request("A folder cannot be moved into itself or one of its subfolders", "bad_request")
            new_parent = parent["id"]
            changes["parent_id"] = new_parent
            new_owner = parent["owner_id"]
            if new_owner != row["owner_id"]:
                self._check_owner_change(row)
        else:
            new_owner = row["owner_id"]
        new_name = row["name"]
        if "name" in body:
            p.require("item_rename", write=True)
            new_name = check_name(body["name"], kind)
            changes["name"] = new_name
            changes["name_key"] = name_key(new_name)
        if "description" in body:
            p.require("item_rename", write=True)
            changes["description"] = str(body["description"])[:255]
        if "shared_link" in body:
            p.require("item_share", write=True)
            self._set_shared_link(row, body["shared_link"])
        if changes:
            changes["modified_at"] = now_iso()
            changes["modified_by"] = p.user_id
            with self.store.tx() as db:
                self.ensure_no_conflict(p, new_parent, new_name, exclude=row["id"])
                self.bump(db, row["id"], **changes)
                if new_owner != row["owner_id"]:  # Box: an item belongs to the owner of the folder it is in
                    moved_ids = [row["id"], *self.descendants(row["owner_id"], row["id"])]
                    db.executemany("UPDATE items SET owner_id=? WHERE id=?", [(new_owner, i) for i in moved_ids])
                if new_parent != row["parent_id"]:
                    self.touch_folder(db, row["parent_id"])
                    self.touch_folder(db, new_parent)
        moved = changes.get("parent_id", row["parent_id"]) != row["parent_id"]
        renamed = changes.get("name", row["name"]) != row["name"]
        row = self.state.item(p, item_id, kind)
        if moved or renamed:
            self.state.events.record(p, "ITEM_MOVE" if moved else "ITEM_RENAME", row, also=audience_before)
        return Response.json(self.rep.item(row, parse_fields(req.query.get("fields"))))

    def _set_shared_link(self, row: Any, link: Any) -> None:
        """Create, change or (with null) remove an item's shared link."""
        if link is None:
            self.store.execute("DELETE FROM shared_links WHERE item_id=?", row["id"])
            return
        if not isinstance(link, dict):
            raise bad_request("shared_link must be an object or null")
        access = link.get("access", "open")
        if access not in ("open", "company", "collaborators"):
            raise bad_request("shared_link.access must be open, company or collaborators")
        unshared_at = link.get("unshared_at")
        if unshared_at is not None:
            unshared_at = parse_time(unshared_at, "shared_link.unshared_at")
        can_download = bool((link.get("permissions") or {}).get("can_download", True))
        existing = self.store.one("SELECT token FROM shared_links WHERE item_id=?", row["id"])
        token = existing["token"] if existing else secrets.token_hex(16)
        self.store.execute(
            "INSERT OR REPLACE INTO shared_links (item_id, token, access, unshared_at, can_download, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", row["id"], token, access, unshared_at, int(can_download), now_iso())

    def update_folder(self, req: Request) -> Response:
        return self._update(req, "folder")

    def update_file(self, req: Request) -> Response:
        return self._update(req, "file")

    def delete_folder(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_delete", write=True)
        folder_id = req.params["folder_id"]
        if folder_id == ROOT:
            raise ApiError(403, "access_denied_insufficient_permissions", "The root folder cannot be deleted")
        row = self.state.item(p, folder_id, "folder", "delete")
        check_if_match(req, row)
        with self.store.tx() as db:
            below = self.descendants(row["owner_id"], row["id"])
            if below and not truthy(req.query.get("recursive")):
                raise bad_request("Folder is not empty; use recursive=true to delete it with its content", "folder_not_empty")
            now = now_iso()
            db.execute("UPDATE items SET trashed_at=?, trash_root=1, sequence_id=sequence_id+1 WHERE id=?", (now, row["id"]))
            db.executemany("UPDATE items SET trashed_at=? WHERE id=?", [(now, i) for i in below])
            self.touch_folder(db, row["parent_id"])
        self.state.events.record(p, "ITEM_TRASH", self.store.one("SELECT * FROM items WHERE id=?", row["id"]))
        return Response(204)

    def copy_folder(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_upload", write=True)
        src = self.state.item(p, req.params["folder_id"], "folder", "download")
        if src["id"] == ROOT:
            raise ApiError(403, "access_denied_insufficient_permissions", "The root folder cannot be copied")
        body = req.json()
        parent = self.parent_of(p, body)
        if parent["id"] == src["id"] or (parent["id"] != ROOT and self.is_within(parent["id"], src["id"])):
            raise bad_request("A folder cannot be copied into itself or one of its subfolders")
        name = check_name(body["name"], "folder") if "name" in body else src["name"]
        with self.store.tx() as db:
            self.ensure_no_conflict(p, parent["id"], name, single=True)
            new_id = self._copy_tree(db, p, src, parent, name)
        row = self.state.item(p, new_id, "folder")
        self.state.events.record(p, "ITEM_COPY", row)
        return Response.json(self.rep.item(row, parse_fields(req.query.get("fields"))), 201)

    def _copy_tree(self, db: Any, p: Principal, src: Any, parent: Any, name: str) -> str:
        """Copy ``src`` (and what is below it) into ``parent``: the copy belongs to the parent's owner."""
        now = now_iso()
        new_id = self.store.next_id("item", 100000001)
        version_id = None
        if src["type"] == "file":
            v = self.store.one("SELECT * FROM versions WHERE id=?", src["version_id"])
            version_id = self.store.next_id("version", 500000001)
            db.execute(
                "INSERT INTO versions (id, file_id, sha1, size, name, created_at, modified_at, uploader_id, content_modified_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (version_id, new_id, v["sha1"], v["size"], name, now, now, p.user_id, v["content_modified_at"]),
            )
        db.execute(
            "INSERT INTO items (id, type, owner_id, parent_id, name, name_key, description, created_at, modified_at, "
            "content_created_at, content_modified_at, created_by, modified_by, version_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id, src["type"], parent["owner_id"], parent["id"], name, name_key(name), src["description"], now, now,
             src["content_created_at"], src["content_modified_at"], p.user_id, p.user_id, version_id),
        )
        if src["type"] == "folder":
            for child in self.state.children(src["owner_id"], src["id"]):
                self._copy_tree(db, p, child, {"id": new_id, "owner_id": parent["owner_id"]}, child["name"])
        return new_id

    # -- files ------------------------------------------------------------------------------------------
    def get_file(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("read")
        row = self.state.item(p, req.params["file_id"], "file")
        if not_modified(req, row):
            return Response(304)
        fields = parse_fields(req.query.get("fields"))
        body = self.rep.item(row, fields)
        if fields is not None and "expiring_embed_link" in fields:
            body["expiring_embed_link"] = self.embed.link(p, row)
        return Response.json(body)

    def delete_file(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_delete", write=True)
        row = self.state.item(p, req.params["file_id"], "file", "delete")
        check_if_match(req, row)
        with self.store.tx() as db:
            db.execute("UPDATE items SET trashed_at=?, trash_root=1, sequence_id=sequence_id+1 WHERE id=?", (now_iso(), row["id"]))
            self.touch_folder(db, row["parent_id"])
        self.state.events.record(p, "ITEM_TRASH", self.store.one("SELECT * FROM items WHERE id=?", row["id"]))
        return Response(204)

    def copy_file(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_upload", write=True)
        src = self.state.item(p, req.params["file_id"], "file", "download")
        body = req.json()
        parent = self.parent_of(p, body)
        name = check_name(body["name"], "file") if "name" in body else src["name"]
        if body.get("version"):
            v = self.store.one("SELECT * FROM versions WHERE id=? AND file_id=?", str(body["version"]), src["id"])
            if v is None:
                raise not_found("file version")
            src = dict(src)
            src["version_id"] = v["id"]
        with self.store.tx() as db:
            self.ensure_no_conflict(p, parent["id"], name)
            new_id = self._copy_tree(db, p, src, parent, name)
            self.touch_folder(db, parent["id"])
        row = self.state.item(p, new_id, "file")
        self.state.events.record(p, "ITEM_COPY", row)
        return Response.json(self.rep.item(row, parse_fields(req.query.get("fields"))), 201)

    def list_versions(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("read")
        row = self.state.item(p, req.params["file_id"], "file", "preview")
        offset, limit = self._paging(req)
        # Box lists the previous versions, newest first; the current version is on the file itself.
        older = self.store.all(
            "SELECT * FROM versions WHERE file_id=? AND id != ? ORDER BY CAST(id AS INTEGER) DESC", row["id"], row["version_id"] or ""
        )
        return Response.json({
            "total_count": len(older),
            "entries": [self.rep.version(v, parse_fields(req.query.get("fields"))) for v in older[offset:offset + limit]],
            "offset": offset, "limit": limit, "order": [{"by": "created_at", "direction": "DESC"}],
        })

    def register(self, router: Router) -> None:
        router.add("GET", "api", "/folders/{folder_id}", self.get_folder)
        router.add("PUT", "api", "/folders/{folder_id}", self.update_folder)
        router.add("DELETE", "api", "/folders/{folder_id}", self.delete_folder)
        router.add("GET", "api", "/folders/{folder_id}/items", self.list_items)
        router.add("POST", "api", "/folders", self.create_folder)
        router.add("POST", "api", "/folders/{folder_id}/copy", self.copy_folder)
        router.add("GET", "api", "/files/{file_id}", self.get_file)
        router.add("PUT", "api", "/files/{file_id}", self.update_file)
        router.add("DELETE", "api", "/files/{file_id}", self.delete_file)
        router.add("POST", "api", "/files/{file_id}/copy", self.copy_file)
        router.add("GET", "api", "/files/{file_id}/versions", self.list_versions)
