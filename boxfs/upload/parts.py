"""The parts of a chunked upload: read once into a worker's buffer, hashed and sent from it.

Every byte is read once: each worker reads its part whole into its own buffer (``os.preadv``, no ``bytes``
objects in between), hashes it for the part's ``Digest`` and sends it from that buffer (a retried PUT
sends the same buffer). When the whole file's SHA1 is not known yet (``put_file`` of a large file: no
pass over the file before the session), it is folded from the same buffers, in file order, as parts are
read (:class:`PartFeed`). Memory is bounded by the workers' buffers (see :mod:`boxfs.upload.session`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

_BLOCK = 1 << 20


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


class PartFeed:
    """Hands the parts to the workers in offset order, each read once into the asking worker's buffer.

    Why one feed: Box needs the whole file's SHA-1 at commit, and SHA-1 can only be folded in order. The
    part a worker is given is read (and, when the whole SHA-1 is still unknown, folded into it) under
    the feed's lock, so the reads happen in file order while the other workers hash and send their parts
    from their own buffers. A part Box already has (a resumed session) is read only when the whole SHA-1
    needs it, and must then match the digest Box reports for it.
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

    def next_part(self, buf: bytearray) -> tuple[int, memoryview] | None:
        """The next part to send, read into ``buf``; None when every part is handed out."""
        with self._lock:
            for offset in self._offsets:
                known = self._done.get(offset)
                if known is not None and self.whole is None:
                    continue  # on Box already, and not needed for the whole SHA-1
                view = memoryview(buf)[: min(self._part_size, self._size - offset)]
                self._source.readinto(offset, view)
                if self.whole is not None:
                    self.whole.update(view)
                if known is None:
                    return offset, view
                if hashlib.sha1(view).hexdigest() != known.get("sha1"):
                    raise ResumedPartDiffers(f"the part at {offset} is not the one the interrupted upload sent")
            return None


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
    """One part as a request body with a known length (requests sends Content-Length), sent from the
    worker's buffer in 1 MiB slices (no copies) so that progress and cancellation stay fine-grained."""

    def __init__(self, view: memoryview, offset: int, progress: Progress, stop: threading.Event) -> None:
        self._view = view
        self._offset = offset
        self._progress = progress
        self._stop = stop

    def __len__(self) -> int:
        return len(self._view)

    def __iter__(self) -> Iterator[memoryview]:
        for sent in range(0, len(self._view), _BLOCK):
            if self._stop.is_set():
                raise Cancelled("another part failed")
            block = self._view[sent:sent + _BLOCK]
            yield block
            self._progress.advance(self._offset, sent + len(block))

