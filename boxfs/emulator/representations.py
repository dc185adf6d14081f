"""Box's JSON representations of users, folders, files and versions.

Box answers a standard representation by default and, when ``fields`` is given, only the base
fields (``type``, ``id``, ``etag``) plus those asked for; nested items are minis. Building every
representation here keeps the routes from drifting apart.
"""

from __future__ import annotations

from typing import Any

from boxfs.emulator.state import MAX_UPLOAD_SIZE, ROLE_CAPS, ROOT, BoxState

FILE_STANDARD = (
    "type", "id", "file_version", "sequence_id", "etag", "sha1", "name", "description", "size",
    "path_collection", "created_at", "modified_at", "trashed_at", "purged_at", "content_created_at",
    "content_modified_at", "created_by", "modified_by", "owned_by", "shared_link", "parent", "item_status",
)
FOLDER_STANDARD = (
    "type", "id", "sequence_id", "etag", "name", "created_at", "modified_at", "description", "size",
    "path_collection", "created_by", "modified_by", "trashed_at", "purged_at", "content_created_at",
    "content_modified_at", "owned_by", "shared_link", "folder_upload_email", "parent", "item_status",
)
FILE_MINI = ("type", "id", "file_version", "sequence_id", "etag", "sha1", "name")
FOLDER_MINI = ("type", "id", "sequence_id", "etag", "name")
BASE = ("type", "id", "etag")
USER_STANDARD = (
    "type", "id", "name", "login", "created_at", "modified_at", "language", "timezone", "space_amount",
    "space_used", "max_upload_size", "status", "job_title", "phone", "address", "avatar_url",
)


def parse_fields(raw: str | None) -> list[str] | None:
    if raw is None or raw == "":
        return None
    return [f.strip() for f in raw.split(",") if f.strip()]


def pick(default: tuple[str, ...], fields: list[str] | None) -> list[str]:
    if fields is None:
        return list(default)
    return list(BASE) + [f for f in fields if f not in BASE]


class Representer:
    """Renders rows of the store as Box JSON for one emulator state."""

    def __init__(self, state: BoxState) -> None:
        self.state = state

    # -- users -----------------------------------------------------------------------------------------
    def user_mini(self, user_id: str) -> dict[str, Any]:
        if not user_id:
            return {"type": "user", "id": "", "name": "", "login": ""}
        u = self.state.store.one("SELECT id, name, login FROM users WHERE id=?", user_id)
        if u is None:
            return {"type": "user", "id": user_id, "name": "", "login": ""}
        return {"type": "user", "id": u["id"], "name": u["name"], "login": u["login"]}

    def user(self, row: Any, fields: list[str] | None = None) -> dict[str, Any]:
        values = {
            "type": "user", "id": row["id"], "name": row["name"], "login": row["login"],
            "created_at": row["created_at"], "modified_at": row["modified_at"], "language": "en",
            "timezone": "UTC", "space_amount": row["space_amount"], "space_used": self.state.space_used(row["id"]),
            "max_upload_size": MAX_UPLOAD_SIZE, "status": row["status"], "job_title": "", "phone": "",
            "address": "", "avatar_url": "", "enterprise": {"type": "enterprise", "id": row["enterprise_id"] or "", "name": "Emulated Enterprise"},
            "role": "admin" if row["kind"] == "service" else "user",
            "is_platform_access_only": row["kind"] == "app",
        }
        keys = pick(USER_STANDARD, fields)
        return {k: values[k] for k in keys if k in values}

    # -- items -----------------------------------------------------------------------------------------
    def folder_mini(self, row: Any) -> dict[str, Any]:
        if row["id"] == ROOT:
            return {"type": "folder", "id": ROOT, "sequence_id": None, "etag": None, "name": "All Files"}
        return {"type": "folder", "id": row["id"], "sequence_id": str(row["sequence_id"]),
                "etag": str(row["sequence_id"]), "name": row["name"]}

    def version_mini(self, version: Any) -> dict[str, Any]:
        return {"type": "file_version", "id": version["id"], "sha1": version["sha1"]}

    def file_mini(self, row: Any) -> dict[str, Any]:
        return self.item(row, list(FILE_MINI[1:]))

    def items(self, rows: list[Any], fields: list[str] | None = None) -> list[dict[str, Any]]:
        """A listing's entries (minis): the files' current versions read in one query, not one each."""
        ids = [r["version_id"] for r in rows if r["type"] == "file" and r["version_id"]]
        versions: dict[Any, Any] = {}
        for at in range(0, len(ids), 500):  # SQLite before 3.32 binds at most 999 parameters
            chunk = ids[at:at + 500]
            versions.update((v["id"], v) for v in self.state.store.all(
                f"SELECT * FROM versions WHERE id IN ({','.join('?' * len(chunk))})", *chunk))
        out = []
        for row in rows:
            view = _ItemView(self, row)
            if view.is_file:
                view.version = versions.get(row["version_id"])
            out.append(self.item(row, fields, mini=True, view=view))
        return out

    def item(self, row: Any, fields: list[str] | None = None, *, mini: bool = False,
             view: _ItemView | None = None) -> dict[str, Any]:
        """A file or folder; ``mini`` selects the representation nested in listings."""
        view = view or _ItemView(self, row)
        default = (FILE_MINI if mini else FILE_STANDARD) if view.is_file else (FOLDER_MINI if mini else FOLDER_STANDARD)
        return {k: v for k in pick(default, fields) if (v := self._field(view, k)) is not _MISSING}

    def _field(self, view: _ItemView, key: str) -> Any:
        state = self.state
        row, is_file = view.row, view.is_file
        root = row["id"] == ROOT
        if key == "type":
            return row["type"]
        if key == "id":
            return row["id"]
        if key in ("etag", "sequence_id"):
            return None if root else str(row["sequence_id"])
        if key == "name":
            return row["name"]
        if key == "description":
            return row["description"]
        if key in ("created_at", "modified_at", "content_created_at", "content_modified_at"):
            return row[key]
        if key in ("trashed_at", "purged_at"):
            return None
        if key == "item_status":
            return "active"
        if key == "shared_link":
            return self.shared_link(row)
        if key == "folder_upload_email":
            return None if not is_file else _MISSING
        if key in ("created_by", "modified_by"):
            return self.user_mini(row[key])
        if key == "owned_by":
            return self.user_mini(row["owner_id"])
        if key == "parent":
            chain = view.ancestors
            return self.folder_mini(chain[-1]) if chain else None
        if key == "path_collection":
            chain = view.ancestors
            return {"total_count": len(chain), "entries": [self.folder_mini(r) for r in chain]}
        if key == "size":
            version = view.version
            return (int(version["size"]) if version else 0) if is_file else self._size(row, False)
        if key == "has_collaborations":
            return not root and state.store.one("SELECT 1 FROM collaborations WHERE item_id=?", row["id"]) is not None
        if key == "permissions":
            return self.permissions(row, is_file)
        if is_file:
            version = view.version
            if key == "sha1":
                return version["sha1"] if version else ""
            if key == "file_version":
                return self.version_mini(version) if version else None
            if key == "extension":
                return row["name"].rsplit(".", 1)[-1] if "." in row["name"] else ""
            if key == "version_number":
                n = state.store.one("SELECT COUNT(*) AS n FROM versions WHERE file_id=?", row["id"])
                return str(n["n"])
            if key == "is_package":
                return False
            if key == "comment_count":
                return 0
        elif key == "item_collection":
            return _MISSING  # rendered by the folder route, which knows the paging parameters
        return _MISSING

    def permissions(self, row: Any, is_file: bool) -> dict[str, bool]:
        """What the viewer may do with the item, from their role (all of it for the owner)."""
        viewer = self.state.viewer() or row["owner_id"]
        role = "owner" if row["id"] == ROOT else self.state.role_of(viewer, row)
        caps = ROLE_CAPS[role] if role is not None else frozenset()
        perms = {"can_delete": "delete" in caps, "can_download": "download" in caps,
                 "can_invite_collaborator": "invite" in caps, "can_rename": "edit" in caps,
                 "can_set_share_access": "invite" in caps, "can_share": "share" in caps}
        if is_file:
            seen = "preview" in caps
            perms.update(can_annotate=seen, can_comment=seen, can_preview=seen, can_upload="edit" in caps,
                         can_view_annotations_all=seen, can_view_annotations_self=seen)
        else:
            perms.update(can_upload="upload" in caps)
        return perms

    def shared_link(self, row: Any) -> dict[str, Any] | None:
        link = self.state.store.one("SELECT * FROM shared_links WHERE item_id=?", row["id"])
        if link is None or self.state.link_expired(link):
            return None
        base = self.state.public_url
        is_file = row["type"] == "file"
        return {
            "url": f"{base}/download/s/{link['token']}",
            "download_url": f"{base}/download/static/{link['token']}" if is_file else None,
            "vanity_url": None, "vanity_name": None, "access": link["access"], "effective_access": link["access"],
            "effective_permission": "can_download" if link["can_download"] else "can_preview",
            "unshared_at": link["unshared_at"], "is_password_enabled": False,
            "permissions": {"can_download": bool(link["can_download"]), "can_preview": True, "can_edit": False},
            "download_count": link["download_count"], "preview_count": 0,
        }

    def _version(self, row: Any) -> Any:
        if not row["version_id"]:
            return None
        return self.state.store.one("SELECT * FROM versions WHERE id=?", row["version_id"])

    def _size(self, row: Any, is_file: bool) -> int:
        if is_file:
            version = self._version(row)
            return int(version["size"]) if version else 0
        # A folder's size is the sum of the current versions of every file below it.
        owner = row["owner_id"]
        total = 0
        stack = [row["id"]]
        while stack:
            fid = stack.pop()
            for child in self.state.store.all(
                "SELECT i.id, i.type, COALESCE(v.size, 0) AS size FROM items i LEFT JOIN versions v ON v.id = i.version_id "
                "WHERE i.owner_id=? AND i.parent_id=? AND i.trashed_at IS NULL", owner, fid):
                if child["type"] == "folder":
                    stack.append(child["id"])
                else:
                    total += int(child["size"])
        return total

    def version(self, v: Any, fields: list[str] | None = None) -> dict[str, Any]:
        """A file version; with ``fields``, its base fields plus those asked for."""
        values = {
            "type": "file_version", "id": v["id"], "sha1": v["sha1"], "name": v["name"], "size": v["size"],
            "created_at": v["created_at"], "modified_at": v["modified_at"],
            "modified_by": self.user_mini(v["uploader_id"]), "trashed_at": None, "restored_at": None,
            "purged_at": None, "uploader_display_name": self.user_mini(v["uploader_id"])["name"],
        }
        keys = list(values)
        if fields is not None:
            keys = ["type", "id", "sha1"] + [k for k in fields if k not in ("type", "id", "sha1")]
        return {k: values[k] for k in keys if k in values}


class _Missing:
    pass


_MISSING: Any = _Missing()

__all__ = ["Representer", "parse_fields"]


class _ItemView:
    """One item being rendered: its path and current version are looked up once, when the first field
    needing them asks (a listing entry's ``size``, ``sha1`` and ``file_version`` share one version row).

    Plain attributes filled on first use, not ``functools.cached_property``: before Python 3.12 that holds
    one lock for every instance of the class while it computes, so a request rendering an item inside a
    store transaction (a 409's conflict) and another rendering outside one each held what the other
    waited for, and the emulator hung."""

    _UNSET: Any = object()

    def __init__(self, rep: Representer, row: Any) -> None:
        self.rep = rep
        self.row = row
        self.is_file = row["type"] == "file"
        self._ancestors: Any = self._UNSET
        self._version: Any = self._UNSET

    @property
    def ancestors(self) -> list[Any]:
        """The viewer's path to the item."""
        if self._ancestors is self._UNSET:
            self._ancestors = [] if self.row["id"] == ROOT else self.rep.state.ancestors(self.row)
        return self._ancestors

    @property
    def version(self) -> Any:
        if self._version is self._UNSET:
            self._version = self.rep._version(self.row)
        return self._version

    @version.setter
    def version(self, row: Any) -> None:
        self._version = row
