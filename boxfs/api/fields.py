"""Box's wire format, kept apart from the filesystem logic: which fields we ask for and how an item's
JSON becomes an fsspec detail dict.

Only the fields the detail dicts use are requested (``fields=`` also makes Box skip the rest of its
standard representation, which matters for 10,000-item listings).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

#: the ``fields`` query parameter for every item we read (listings, uploads, copies, moves)
ITEM_FIELDS = "type,id,name,size,sha1,etag,file_version,created_at,modified_at,content_created_at,content_modified_at"

#: Box item type -> fsspec ``type``
KINDS = {"folder": "directory", "file": "file"}


def parse_time(value: str | None) -> datetime | None:
    """Box's RFC 3339 time (``2012-12-12T10:53:43-08:00``) as an aware UTC datetime; None if absent."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def epoch_seconds(value: Any) -> float | None:
    """A ``modified``-like fsspec info value (datetime, RFC 3339 text or epoch number) as epoch seconds;
    None when there is none. Local filesystems give floats, Box aware datetimes; naive means UTC."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        value = parse_time(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return None


def item_from_entry(path: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The fsspec detail dict for Box's JSON ``entry`` of the item at ``path``.

    ``modified``/``created`` are the *content* times (what uploads set and what users mean), falling back
    to Box's own record times. Folders report size 0 (Box's folder size is the sum of its content, which
    would make ``du`` count twice). Web links and other types are ``type="other"``.
    """
    box_type = entry.get("type")
    kind = KINDS.get(box_type or "", "other")
    return {
        "name": path,
        "size": int(entry.get("size") or 0) if kind == "file" else 0,
        "type": kind,
        "id": str(entry.get("id")),
        "sha1": entry.get("sha1"),
        "etag": entry.get("etag"),
        "modified": parse_time(entry.get("content_modified_at") or entry.get("modified_at")),
        "created": parse_time(entry.get("content_created_at") or entry.get("created_at")),
        "box_type": box_type,
        # the file version these details describe: reads download exactly it (never mixed versions)
        "version": (entry.get("file_version") or {}).get("id") if kind == "file" else None,
    }


def root_item(folder_id: str) -> dict[str, Any]:
    """The detail dict of a filesystem's root (known without a request)."""
    return {"name": "", "size": 0, "type": "directory", "id": folder_id, "sha1": None, "etag": None,
            "modified": None, "created": None, "box_type": "folder", "version": None}
