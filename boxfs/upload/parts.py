"""The parts of a chunked upload: read into a worker's buffer, hashed and sent from it.

Every byte is read once within the memory budget (:data:`PART_MEMORY`): each of those workers reads its
part whole into its own buffer (``os.preadv``, no ``bytes`` objects in between), hashes it for the
part's ``Digest`` and sends it from that buffer (a retried PUT sends the same buffer). Workers past the
budget read their part twice, in 1 MiB pieces: to hash it, then to send it. When the whole file's SHA1
is not known yet (``put_file`` of a large file: no pass over the file before the session), it is folded
from the same reads, in file order (:class:`PartFeed`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

_BLOCK = 1 << 20
#: Bytes of whole-part buffers one upload holds (``fs.upload_memory`` overrides it): 3 parts of the
#: 8 MiB Box picks for files under 1 GiB, so a 1 GB upload on 8 workers keeps a process of ~60 MiB of
#: Python under 100 MiB. Workers past it get a 1 MiB buffer and read their part twice (hashed, then
#: sent, from the page cache), so ``upload_workers`` no longer multiplies the part size: an upload holds
#: at most this plus 1 MiB a worker, whatever the part size Box picks.
PART_MEMORY = 24 << 20
#: The buffer of a worker past the budget: its parts go through it piece by piece.
SMALL_BUFFER = _BLOCK


def digest_header(sha1_hex: str) -> str:
    return "sha=" + base64.b64encode(bytes.fromhex(sha1_hex)).decode()


class PartSource:
    """Random access to ``size`` bytes of a file object from ``start``, safe to use from many threads.

    A real file is read with ``os.pread`` (each worker at its own offset, no shared position);
    anything else (a BytesIO) through one lock around seek + read.
    """

    def __init__(self, fileobj: BinaryIO, start: int, size: int) -> None:
        self._fileobj = fileobj
        self.start = start
        self.size = size
        self._fd: int | None = None
        self._lock = threading.Lock()
        if hasattr(os, "pread"):
            try:
                fd = fileobj.fileno()
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    self._fd = fd
            except (AttributeError, OSError, ValueError):
                self._fd = None

    def readinto(self, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the bytes at ``offset`` (relative to ``start``); OSError when the source ends
        early. One copy, from the page cache into the caller's buffer: no ``bytes`` objects in between."""
        pos = self.start + offset
        length = len(view)
        got = 0
        if self._fd is not None:
            while got < length:
                n = os.preadv(self._fd, [view[got:]], pos + got)
                if not n:
                    break
                got += n
        else:
            with self._lock:
                self._fileobj.seek(pos)
                while got < length:
                    block = self._fileobj.read(length - got)
                    if not block:
                        break
                    view[got:got + len(block)] = block
                    got += len(block)
        if got != length:
            raise OSError(f"upload source ended {length - got} bytes early (was it changed while uploading?)")


class ResumedPartDiffers(ValueError):
    """A part Box holds from the interrupted upload is not what the source holds now: start over."""


@dataclass(frozen=True)
class Part:
    """One part handed to a worker. ``view``: the whole part, in the worker's buffer (hashed outside the
    feed's lock, ``sha1`` None); None for a part too large for the worker's buffer, hashed piece by piece
    as it was read (``sha1``) and read again piece by piece to be sent (:class:`PartBody`)."""

    offset: int
    length: int
    view: memoryview | None
    sha1: str | None

    def digest(self) -> str:
        """The part's SHA-1 (hex), for its ``Digest`` header and for comparing with Box's."""
        if self.sha1 is not None:
            return self.sha1
        assert self.view is not None
        return hashlib.sha1(self.view).hexdigest()


class PartFeed:
    """Hands the parts to the workers in offset order, each read into the asking worker's buffer.

    Why one feed: Box needs the whole file's SHA-1 at commit, and SHA-1 can only be folded in order. The
    part a worker is given is read (and, when the whole SHA-1 is still unknown, folded into it) under
    the feed's lock, so the reads happen in file order while the other workers hash and send their parts
    from their own buffers. A part Box already has (a resumed session) is read only when the whole SHA-1
    needs it, and must then match the digest Box reports for it.

    A worker whose buffer holds a whole part reads it once and sends it from there. A worker with a small
    buffer (past the upload's memory budget, see :data:`PART_MEMORY`) hashes the part piece by piece here
    and reads it again, piece by piece, from the page cache while sending it: Box checks every part
    against the digest sent with it, so a source changed in between is refused, never stored.
    """

    def __init__(self, source: PartSource, part_size: int, size: int, done: dict[int, dict[str, Any]],
                 whole: Any | None) -> None:
        self._source = source
        self._part_size = part_size
        self._size = size
        self._done = done
        self.whole = whole
        self._offsets = iter(range(0, size, part_size))
        self._lock = threading.Lock()

    def next_part(self, buf: bytearray) -> Part | None:
        """The next part to send, read into ``buf``; None when every part is handed out."""
        with self._lock:
            for offset in self._offsets:
                known = self._done.get(offset)
                if known is not None and self.whole is None:
                    continue  # on Box already, and not needed for the whole SHA-1
                part = self._read(offset, buf)
                if known is None:
                    return part
                if part.digest() != known.get("sha1"):
                    raise ResumedPartDiffers(f"the part at {offset} is not the one the interrupted upload sent")
            return None

    def _read(self, offset: int, buf: bytearray) -> Part:
        length = min(self._part_size, self._size - offset)
        if len(buf) >= length:
            view = memoryview(buf)[:length]
            self._source.readinto(offset, view)
            if self.whole is not None:
                self.whole.update(view)
            return Part(offset, length, view, None)
        digest = hashlib.sha1()
        for done in range(0, length, len(buf)):
            piece = memoryview(buf)[: min(len(buf), length - done)]
            self._source.readinto(offset + done, piece)
            digest.update(piece)
            if self.whole is not None:
                self.whole.update(piece)
        return Part(offset, length, None, digest.hexdigest())


class Progress:
    """Byte-granular progress from many workers; a part re-sent after a failure is not counted twice."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._reported: dict[int, int] = {}

    def advance(self, part: int, sent: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            before = self._reported.get(part, 0)
            if sent > before:
                self._reported[part] = sent
                self._progress(sent - before)


class Cancelled(Exception):
    """Raised inside a part's body when another part failed: not an OSError, so no layer retries it."""


class PartBody:
    """One part as a request body with a known length (requests sends Content-Length), in slices of at
    most 1 MiB so that progress and cancellation stay fine-grained: from the worker's buffer when it holds
    the whole part (no copies, and a retried PUT sends the same buffer), else read again into the worker's
    small buffer slice by slice (the buffer is reused: the connection has sent a slice before it asks
    for the next)."""

    def __init__(self, part: Part, source: PartSource, buf: bytearray, progress: Progress,
                 stop: threading.Event) -> None:
        self._part = part
        self._source = source
        self._buf = buf
        self._progress = progress
        self._stop = stop

    def __len__(self) -> int:
        return self._part.length

    def __iter__(self) -> Iterator[memoryview]:
        part = self._part
        step = _BLOCK if part.view is not None else min(_BLOCK, len(self._buf))
        for sent in range(0, part.length, step):
            if self._stop.is_set():
                raise Cancelled("another part failed")
            if part.view is not None:
                block = part.view[sent:sent + step]
            else:
                block = memoryview(self._buf)[: min(step, part.length - sent)]
                self._source.readinto(part.offset + sent, block)
            yield block
            self._progress.advance(part.offset, sent + len(block))
