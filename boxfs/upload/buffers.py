"""Write buffers: what a writer (``fs.open(path, "wb")``, an FTP ``STOR``, a FUSE ``write``) writes into
until ``close`` uploads it.

Why a spool file at all: a writer does not know its final size, but a Box chunked upload session must be
created with the size, takes parts of a size Box chooses, and wants the whole file's SHA1 at commit. So a
:class:`SpoolingBuffer` keeps its bytes in memory up to ``fs.spool_threshold`` and, past it, spills all of
them to a *spool file* in the acting user's spool folder (:mod:`boxfs.upload.spoolfolder`). The SHA1 is
computed as bytes arrive (:class:`WriteBuffer`), never by reading the content again.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from boxfs.upload.cleaning import auto_clean
from boxfs.upload.preflight import preflight_writer
from boxfs.upload.spoolfolder import SpoolFolder, create_spool_file, spool_root

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

logger = logging.getLogger("boxfs")

DEFAULT_SPOOL_THRESHOLD = 26_214_400  # 25 MiB, Box's limit for single-request uploads is 50 MB


class WriteBuffer:
    """Collects what a writer writes, with its SHA1 computed on the way in.

    In memory; :class:`SpoolingBuffer`, what :func:`make_write_buffer` gives writers, spills past the
    threshold.
    """

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._sha1 = hashlib.sha1()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._buf.write(data)
        self._sha1.update(data)
        self.size += len(data)
        return len(data)

    @property
    def sha1(self) -> str:
        return self._sha1.hexdigest()

    def reader(self) -> BinaryIO:
        """The buffered content, positioned at its start."""
        self._buf.seek(0)
        return self._buf

    def close(self) -> None:
        self._buf = io.BytesIO()



class SpoolReader:
    """What a :class:`SpoolingBuffer` hands to the upload: its content as a seekable file.

    Knows its buffer, so a failed upload can ask for the spool file to be kept for resume
    (:meth:`keep_for_resume`) rather than deleted when the writer closes. When the writer has an fsspec
    ``callback``, reading reports progress (by the highest position read, so a body re-sent after a
    failure is not counted twice), and :attr:`progress` gives the chunked path, which reads parts with
    ``pread``, the same callback.
    """

    def __init__(self, buffer: SpoolingBuffer, fh: BinaryIO, name: str | None) -> None:
        self._buffer = buffer
        self._fh = fh
        #: the spool file's path, for messages (``None`` for a memory buffer)
        self.name = name
        #: the entry name the upload reaches the spool file by in the user's folder (never by ``name``)
        self.spool_name = buffer.spool_name
        self._callback = buffer.callback
        self._high = 0

    @property
    def progress(self) -> Any:
        return self._callback.relative_update if self._callback is not None else None

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if self._callback is not None and data:
            pos = self._fh.tell()
            if pos > self._high:
                self._callback.relative_update(pos - self._high)
                self._high = pos
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def fileno(self) -> int:
        return self._fh.fileno()

    def keep_for_resume(self) -> None:
        self._buffer.keep = True


class SpoolingBuffer(WriteBuffer):
    """What a writer writes: in memory up to ``fs.spool_threshold``, then all of it in a spool file.

    The SHA1 is computed as bytes arrive (Box wants it at commit; re-reading gigabytes would double the
    disk traffic). The moment the buffer first spills, a preflight (``OPTIONS /files/content``) asks
    Box whether the upload can succeed, so a doomed upload fails before gigabytes are spooled. A full
    local disk raises ``OSError(ENOSPC)`` naming the spool folder; the partial spool is removed.
    """

    def __init__(self, fs: BoxFileSystem, path: str) -> None:
        super().__init__()
        self.fs = fs
        self.target = path
        self.threshold = fs.spool_threshold
        self._mem: io.BytesIO | None = self._buf
        self.path: Path | None = None
        self.folder: SpoolFolder | None = None
        self.spool_name: str | None = None
        self._fh: BinaryIO | None = None
        self.keep = False
        #: set when a write failed part-way: the content is incomplete and must never be uploaded
        self._broken: BaseException | None = None
        #: an fsspec Callback told of the bytes uploaded (``fs.open(path, "wb", callback=cb)``)
        self.callback: Any = None

    @property
    def spilled(self) -> bool:
        return self.path is not None

    def _check(self) -> None:
        if self._broken is not None:
            raise OSError(errno.EIO, f"{self.target}: an earlier write failed ({self._broken}); "
                                     "the content is incomplete and will not be uploaded")

    def write(self, data: bytes) -> int:
        self._check()
        if not data:
            return 0
        try:
            if self._fh is None and self.size + len(data) > self.threshold:
                self._spill(self.size + len(data))
            if self._fh is not None:
                try:
                    self._fh.write(data)
                except OSError as exc:
                    self._disk_failed(exc)
            else:
                assert self._mem is not None
                self._mem.write(data)
        except BaseException as exc:
            self._broken = exc
            raise
        self._sha1.update(data)
        self.size += len(data)
        return len(data)

    def _spill(self, size_so_far: int) -> None:
        preflight_writer(self.fs, self.target, size_so_far)
        auto_clean(self.fs)
        folder, name, fh = create_spool_file(self.fs)  # the file lives as long as the writer
        self.folder, self.spool_name, self.path = folder, name, folder.path / name
        self._fh = fh
        logger.debug("%s: more than %d bytes written; spooling to %s", self.target, self.threshold, self.path)
        assert self._mem is not None
        try:
            fh.write(self._mem.getbuffer())
        except OSError as exc:
            self._disk_failed(exc)
        # the memory part is on disk now: let it go (a writer may go on for gigabytes)
        self._mem = None
        self._buf = io.BytesIO()

    def _disk_failed(self, exc: OSError) -> None:
        where = self.path
        self._discard_file()
        raise OSError(
            exc.errno or errno.EIO,
            f"{self.target}: cannot spool the upload to {where.parent if where else spool_root(self.fs)} "
            f"({exc.strerror or exc}); free local disk space or set spool_dir. Nothing was sent to Box",
        ) from exc

    def reader(self) -> Any:
        """The content, positioned at its start: a :class:`SpoolReader` over the spool file, or over the
        memory part (a bare BytesIO when there is no callback to report to)."""
        self._check()
        if self.callback is not None:
            self.callback.set_size(self.size)
        if self._fh is None:
            assert self._mem is not None
            self._mem.seek(0)
            return self._mem if self.callback is None else SpoolReader(self, self._mem, None)
        try:
            self._fh.flush()
        except OSError as exc:
            self._broken = exc
            self._disk_failed(exc)
        self._fh.seek(0)
        return SpoolReader(self, self._fh, str(self.path))

    def _discard_file(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        if self.folder is not None and self.spool_name is not None:
            self.folder.unlink(self.spool_name)  # while still holding the lock
        try:
            fh.close()
        except OSError:  # flushing what a full disk refused: the file is gone anyway
            pass
        self._release_folder()

    def _release_folder(self) -> None:
        if self.folder is not None:
            self.folder.close()

    def close(self) -> None:
        """Drop the content; a spool file kept for resume (after a failed upload) stays on disk."""
        if self._fh is not None and self.keep:
            logger.info("%s: spool file %s kept for resume", self.target, self.path)
            self._fh.close()
            self._fh = None
            self._release_folder()
        else:
            self._discard_file()
        self._mem = None
        self._buf = io.BytesIO()


def make_write_buffer(fs: BoxFileSystem, path: str) -> WriteBuffer:
    """The buffer a writer for ``path`` uses: memory up to the threshold, then a spool file."""
    return SpoolingBuffer(fs, path)
