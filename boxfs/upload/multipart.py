"""The simple upload: one multipart ``POST`` (``/files/content``, or ``/files/{id}/content`` for a new
version), for content up to ``spool_threshold``.

No preflight: one POST per new file, and a 409 naming the file in the way turns into a new version of it
(see :func:`upload_small`). Idempotency: a POST that failed ambiguously (5xx, dropped connection) is
repeated only after checking whether the earlier attempt landed: for a new file a preflight (only then)
that reports a conflicting file with our SHA1 means it did; for a new version, the file's etag having
moved on to content with our SHA1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, BinaryIO

from boxfs.api.errors import conflicts_of, is_a_directory_error
from boxfs.names import check_name
from boxfs.upload.job import UploadJob
from boxfs.upload.preflight import landed

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

logger = logging.getLogger("boxfs")

_READ_BLOCK = 1 << 20
#: A simple upload onto a name the filesystem cannot tell is taken (its folder not listed) sends the body
#: and, on 409, sends it again as a new version. From this size on, listing the folder first (one request,
#: and its siblings are known after) costs less than sending the body twice; below it, the 409 is cheaper.
RELIST_MIN_SIZE = 1 << 20


def box_time(dt: datetime) -> str:
    """RFC 3339 without fractional seconds, the form Box accepts for ``content_modified_at``."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def sha1_of(fileobj: BinaryIO) -> tuple[str, int]:
    """SHA1 hex and size of a seekable file from its current position; the position is restored."""
    start = fileobj.tell()
    digest = hashlib.sha1()
    size = 0
    while True:
        block = fileobj.read(_READ_BLOCK)
        if not block:
            break
        digest.update(block)
        size += len(block)
    fileobj.seek(start)
    return digest.hexdigest(), size


class _MultipartBody:
    """A multipart/form-data body streamed from a file object, with a known length.

    ``attributes`` must come before ``file`` (Box answers 400 ``metadata_after_file_contents`` otherwise).
    """

    def __init__(self, attributes: dict[str, Any], name: str, fileobj: BinaryIO, start: int, size: int,
                 progress: Callable[[int], None] | None = None, boundary: str | None = None) -> None:
        self.boundary = boundary or uuid.uuid4().hex
        safe_name = name.replace("\\", "\\\\").replace('"', '\\"')
        self._head = (
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="attributes"\r\n'
            "Content-Type: application/json\r\n\r\n"
            f"{json.dumps(attributes)}\r\n"
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._file = fileobj
        self._start = start
        self._size = size
        self._progress = progress

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        self._file.seek(self._start)
        left = self._size
        while left > 0:
            block = self._file.read(min(_READ_BLOCK, left))
            if not block:
                raise OSError(f"upload source ended {left} bytes early (was it changed while uploading?)")
            left -= len(block)
            if self._progress is not None:
                self._progress(len(block))
            yield block
        yield self._tail


def upload_small(fs: BoxFileSystem, job: UploadJob) -> dict[str, Any]:
    """One multipart POST (a new file, or a new version of ``job.file_id``); returns Box's file.

    No preflight: a preflight costs a round trip and a call against the user's rate limit for every file,
    while a name already taken is rare and Box's 409 names the file in the way (``context_info.conflicts``,
    one object or a list). With ``overwrite`` the content then becomes that file's new version (a second
    POST); a folder in the way, or ``overwrite=False``, is refused. Other refusals (name rules, quota,
    permissions) come back from the POST itself as the mapped error.
    """
    name, fileobj, file_id = job.name, job.fileobj, job.file_id
    if job.sha1 is None:
        raise ValueError(f"{name}: a simple upload needs the content's SHA-1")
    check_name(name)
    t = fs.transport
    start = fileobj.tell()
    attributes: dict[str, Any] = {"name": name}
    if file_id is None:
        attributes["parent"] = {"id": job.parent_id}
    if job.modified is not None:
        attributes["content_modified_at"] = box_time(job.modified)
    boundary = uuid.uuid4().hex

    def make() -> _MultipartBody:
        # a fresh body per attempt (it re-seeks the source), always with the boundary of the header
        return _MultipartBody(attributes, name, fileobj, start, job.size, job.progress, boundary)

    def recover() -> dict[str, Any] | None:
        item = landed(fs, parent_id=job.parent_id, name=name, size=job.size, sha1=job.sha1, file_id=file_id,
                      etag=job.etag)
        return None if item is None else {"entries": [item]}

    first = make()
    headers = {"Content-Type": first.content_type, "content-md5": job.sha1}
    params = {"fields": fs.FIELDS}
    url = t.upload_api("/files/content" if file_id is None else f"/files/{file_id}/content")
    try:
        data = t.json("POST", url, params=params, data=make, headers=headers, recover=recover,
                      path=name, action="upload")
    except FileExistsError as exc:
        # The name is taken (known to us or not): overwrite semantics make our content its new version
        # (once; a folder in the way is reported as such).
        taken = conflicts_of(exc)
        if file_id is not None or not taken:
            raise
        if taken[0].get("type") != "file":
            raise is_a_directory_error(name) from None
        if not job.overwrite:
            raise
        logger.debug("%s exists on Box as file %s: uploading a new version", name, taken[0].get("id"))
        fileobj.seek(start)
        return upload_small(fs, replace(job, file_id=str(taken[0]["id"]), etag=taken[0].get("etag")))
    entries = data.get("entries") or []
    if not entries:
        raise OSError(f"{name}: Box accepted the upload but returned no file")
    return entries[0]
