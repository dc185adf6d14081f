"""Uploads to Box: what the filesystem calls to write a file, and the one place that picks how.

:func:`upload_file` is the entry point (``pipe_file``, ``put_file``, writers, ``set_modified``): up to
``spool_threshold`` one multipart request (:mod:`.multipart`), above it a chunked upload session
(:mod:`.session`). Writers collect their bytes through :func:`make_write_buffer` (:mod:`.buffers`).

One concern a module, each importing only those below it (checked by import-linter, see pyproject.toml):

* :mod:`.session`     the chunked upload session: create, parts in parallel, commit, abort, resume, races
* :mod:`.buffers`     what a writer writes into: memory, then a spool file, with the SHA1 on the way in
* :mod:`.multipart`   the simple upload: one multipart POST, a 409 turned into a new version
* :mod:`.parts`       a session's parts: read into a worker's buffer, hashed and sent from it
* :mod:`.cleaning`    removing what failed uploads and dead writers left in the spool folder
* :mod:`.job`         what the filesystem asks of an upload (one value passed down the layers)
* :mod:`.preflight`   ``OPTIONS /files/content``: will Box take this upload?
* :mod:`.resume`      the resume state of a session (untrusted when read back) and the session's URLs
* :mod:`.spoolfolder` the private per-user folder, spool files and locks, reached by descriptor only
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from boxfs.upload.buffers import DEFAULT_SPOOL_THRESHOLD, WriteBuffer, make_write_buffer
from boxfs.upload.cleaning import clean_spool
from boxfs.upload.job import UploadJob
from boxfs.upload.multipart import RELIST_MIN_SIZE, sha1_of, upload_small
from boxfs.upload.session import MIN_SESSION_SIZE, UploadIncomplete, upload_large

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

__all__ = [
    "DEFAULT_SPOOL_THRESHOLD",
    "MIN_SESSION_SIZE",
    "RELIST_MIN_SIZE",
    "UploadIncomplete",
    "UploadJob",
    "WriteBuffer",
    "clean_spool",
    "make_write_buffer",
    "sha1_of",
    "upload_file",
]


def upload_file(fs: BoxFileSystem, **job: Any) -> dict[str, Any]:
    """Upload by the path the size calls for; the keyword arguments are the fields of :class:`UploadJob`
    (``parent_id``, ``name``, ``fileobj``, ``size``, ``sha1``, ``file_id``, ``etag``, ``modified``,
    ``overwrite``, ``progress``). Returns Box's file."""
    upload = UploadJob(**job)
    if upload.size > fs.spool_threshold:
        return upload_large(fs, upload)
    return upload_small(fs, upload)
