"""What the filesystem asks of an upload: where the content goes, what it is, and what it replaces.

One value passed down the upload's layers (the simple request, the chunked session) instead of the same
ten keyword arguments repeated at each; a step that changes course (a name found taken: upload a new
version instead) makes a changed copy with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO


@dataclass(frozen=True)
class UploadJob:
    """One upload. ``file_id``/``etag``: the file it becomes a new version of (None: a new file in
    ``parent_id``). ``sha1`` None: not known yet, folded from the parts as they are sent (chunked path).
    ``overwrite`` False: a name found taken is refused rather than given a new version."""

    parent_id: str
    name: str
    fileobj: BinaryIO
    size: int
    sha1: str | None
    file_id: str | None = None
    etag: str | None = None
    modified: datetime | None = None
    overwrite: bool = True
    progress: Callable[[int], None] | None = None
