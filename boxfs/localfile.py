"""A local file replaced in one step: what a download writes into.

Why its own module: ``BoxFileSystem.get_file`` (and so ``fs.get``, ``boxfs cp`` and ``boxfs sync``) must
never leave a truncated file where a user expects one, nor destroy the previous version when a
download fails. So the bytes go to a temporary name beside the target (same folder: the final rename
stays on one filesystem and is atomic), are checked against Box's SHA-1 when one is known, reach the
disk (fsync), and only then replace the target with ``os.replace``. On any failure the temporary file
is removed and the target is as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO

__all__ = ["PARTIAL_PREFIX", "PartialFile", "file_sha1", "replace_when_complete"]

#: Downloads in progress are written under this prefix in the target's folder (sync's scans skip them).
PARTIAL_PREFIX = ".boxfs-partial-"
_READ_BLOCK = 1 << 20


def file_sha1(path: str | os.PathLike[str]) -> str:
    """The SHA-1 of a local file's content, read in blocks (never the whole file in memory)."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class PartialFile:
    """The file being written: ``write`` appends and hashes as it goes; ``fileno`` is for writers at
    offsets (``os.pwrite`` from several threads). Their ranges are hashed as soon as they join the part
    already hashed (``written(start, end)``, read back while the page cache still holds them and other
    ranges are still arriving); whatever is left is read back at the end."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._digest: Any = hashlib.sha1()
        self._hashed = 0  # the first _hashed bytes of the file are folded into _digest, in order
        self._ranges: dict[int, int] = {}  # start -> end of ranges written at offsets, not hashed yet
        self._lock = threading.Lock()
        self._folding = threading.Lock()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._digest.update(data)
        self._hashed += len(data)
        return self._fh.write(data)

    def fileno(self) -> int:
        """The descriptor, for writes at offsets: from here on only ranges reported through ``written``
        (or read back at the end) count towards the SHA-1."""
        self._fh.flush()
        with self._lock:
            self._digest, self._hashed, self._ranges = hashlib.sha1(), 0, {}
        return self._fh.fileno()

    def written(self, start: int, end: int) -> None:
        """``[start, end)`` is written (with ``os.pwrite``): fold what now follows on from the hashed part."""
        with self._lock:
            self._ranges[start] = end
        if not self._folding.acquire(blocking=False):
            return  # the thread folding now takes this range too, or the end reads it back
        try:
            while True:
                with self._lock:
                    end = self._ranges.pop(self._hashed, None)
                if end is None:
                    return
                self._fold(end)
        finally:
            self._folding.release()

    def _fold(self, end: int) -> None:
        fd = self._fh.fileno()
        while self._hashed < end:
            block = os.pread(fd, min(_READ_BLOCK, end - self._hashed), self._hashed)
            if not block:
                return  # shorter than said: the final check reads it and fails
            self._digest.update(block)
            self._hashed += len(block)

    def sha1(self, path: str) -> str:
        """The content's SHA-1: what was hashed as it was written, then the rest of ``path`` read back."""
        with self._folding, open(path, "rb") as fh:
            fh.seek(self._hashed)
            while block := fh.read(_READ_BLOCK):
                self._digest.update(block)
                self._hashed += len(block)
        return self._digest.hexdigest()


@contextlib.contextmanager
def replace_when_complete(path: str, sha1: str | None = None, shown: str | None = None) -> Iterator[PartialFile]:
    """Yield a new file beside ``path``; when the block ends without error, put it at ``path``.

    ``sha1``: what the content must hash to (Box's SHA-1 of the file); a mismatch is ``OSError(EIO)``
    naming ``shown`` (the source, for the message) and the target stays as it was. The temporary name
    has a fixed short length, so a 255-byte target name still fits, and is unique, so two downloads
    to one target never write into each other's bytes.

    What ``open(path, "wb")`` would have kept is kept: a symbolic link at ``path`` is followed (the file it
    names is replaced, the link stays), and an existing file's mode (and, for root, its owner) carry over
    to the new one; a new file gets the umask's mode. A hard link to the old file keeps the old content
    (the price of never truncating it in place). The folder is synced after the rename, so the new name
    survives a crash.
    """
    if os.path.islink(path):
        path = os.path.realpath(path)
    folder = os.path.dirname(os.path.abspath(path))
    partial = os.path.join(folder, PARTIAL_PREFIX + uuid.uuid4().hex[:16])
    try:
        # read and write: ranges written at offsets are read back to be hashed (PartialFile.written)
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except PermissionError as exc:
        raise PermissionError(exc.errno, f"cannot create a temporary file in {folder} (a download is written "
                              f"there, then renamed over the target): {exc.strerror}", shown or path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            _keep_mode_of(path, fh.fileno())
            writer = PartialFile(fh)
            yield writer
            fh.flush()
            os.fsync(fh.fileno())
        if sha1:
            got = writer.sha1(partial)
            if got != sha1:  # every byte checked: a bad download never replaces a file
                raise OSError(errno.EIO, f"downloaded content does not match Box's SHA-1 ({got} != {sha1})",
                              shown or path)
        os.replace(partial, path)
        _sync_folder(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise


def _keep_mode_of(path: str, fd: int) -> None:
    """Give the new file the mode (and, when run as root, the owner) of the file it will replace."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.fchown(fd, st.st_uid, st.st_gid)


def _sync_folder(folder: str) -> None:
    """fsync a folder (POSIX), so a rename into it is on the disk; where folders cannot be opened, skip."""
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename itself has happened
        pass
    finally:
        os.close(dfd)
