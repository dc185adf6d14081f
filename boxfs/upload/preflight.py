"""The preflight (``OPTIONS /files/content``): asking Box whether an upload can succeed, sending no content.

Used where a doomed upload would cost most: a writer the moment it spills to disk (:func:`preflight_writer`),
a chunked upload before it opens a session, and the idempotency checks that ask whether an earlier attempt
landed. A small upload sends none (its 409 names the file in the way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boxfs.api.errors import conflicts_of, error_from_response, is_a_directory_error
from boxfs.names import check_name, same_name

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem


def preflight(fs: BoxFileSystem, *, parent_id: str, name: str, size: int, file_id: str | None) -> dict[str, Any] | None:
    """``OPTIONS /files/content``: None when Box would accept the upload, else the conflicting item.

    Other refusals (name rules, quota, permissions) raise the mapped error right away, before any data
    is sent.
    """
    t = fs.transport
    if file_id is None:
        body: dict[str, Any] = {"name": name, "parent": {"id": parent_id}, "size": size}
        route = "/files/content"
    else:
        body = {"size": size}
        route = f"/files/{file_id}/content"
    resp = t.request("OPTIONS", t.api(route), json=body, ok_statuses=(409,), path=name, action="upload preflight")
    assert not isinstance(resp, dict)
    if resp.status_code != 409:
        return None
    exc = error_from_response(resp, name, "upload preflight")
    found = conflicts_of(exc)
    if not found:
        raise exc
    return found[0]


def landed(fs: BoxFileSystem, *, parent_id: str, name: str, size: int, sha1: str | None, file_id: str | None,
           etag: str | None) -> dict[str, Any] | None:
    """After the last request of an upload (a POST, a commit) failed ambiguously: Box's file when that
    attempt landed nevertheless, else None (then sending again creates no duplicate).

    A new file landed when a preflight finds a file of that name carrying our SHA-1; a new version of
    ``file_id`` when the file's etag moved on from ``etag`` to content with our SHA-1.
    """
    if file_id is None:
        again = preflight(fs, parent_id=parent_id, name=name, size=size, file_id=None)
        if again is None or again.get("type") != "file" or not same_name(again.get("name", name), name):
            return None
        item = fs._get_item("file", str(again["id"]))
        return item if item.get("sha1") == sha1 else None
    item = fs._get_item("file", str(file_id))
    return item if item.get("sha1") == sha1 and item.get("etag") != etag else None



def preflight_writer(fs: BoxFileSystem, path: str, size: int) -> None:
    """The preflight of a writer at the moment it spills to disk (size so far; the final size is unknown).

    Name rules, a folder in the way, permissions and quota are refused here, before anything is spooled.
    When the parent folder does not exist yet (``auto_mkdir`` creates it at upload time), Box is asked
    about the first missing folder's name in the deepest existing one: that still checks permission and
    quota, and no conflict is possible for a name just found missing.
    """
    path = fs._strip_protocol(path)
    parts = path.split("/")
    check_name(parts[-1])
    for depth in range(len(parts) - 1, -1, -1):
        info = fs._try_info("/".join(parts[:depth]))
        if info is None:
            continue
        if info["type"] != "directory":
            return  # a file where a folder should be: the upload reports it
        conflict = preflight(fs, parent_id=info["id"], name=parts[depth], size=size, file_id=None)
        if conflict is not None and conflict.get("type") != "file" and depth == len(parts) - 1:
            raise is_a_directory_error(path)
        return

