"""Files open for writing: a private spool file per path, shared by its handles, dirty until it lands.

Every frontend writes the same way: bytes go into a local spool file (never memory), at any offset and
in any order, and the whole file is uploaded in one stream when a handle is flushed, fsynced or closed,
so Box gets one version per save, not one per chunk. The rules every frontend relies on:

* **Dirty until it has landed.** A spool changed since its last successful upload is *dirty*. Every
  ``flush``/``fsync``/``close`` of any handle on that path uploads a dirty spool; a failed upload leaves it
  dirty and raises, so the next ``flush``/``fsync``/``close`` (of this handle or any other on the path)
  tries again and raises again until an upload succeeds. Nothing ever answers success while Box lacks
  the data; the error is the filesystem's own exception (map it with :func:`~boxfs.frontend.errors.errno_of`:
  EIO for a Box failure, ENOSPC for a full account...).
* **Out-of-order writes are cheap and bounded.** Bytes written past a hole (pipelined SFTP writes) are
  tracked as ranges (:class:`~boxfs.frontend.ranges.RangeSet`), not re-summed; more than ``max_pending``
  such bytes is refused with :class:`~boxfs.frontend.errors.PendingLimitError` (ENOSPC) before anything
  is written. ``holes_allowed=False`` makes an upload with a hole left fail (EIO) instead of sending
  zeros: a streaming client that lost a write must not store a file with a zero-filled gap.
* **Existing content is fetched lazily**: opening for writing and closing untouched downloads nothing;
  the first read, write or non-zero truncate of a file not truncated on open copies the remote file into
  the spool.
* **A failed write is never uploaded as if it had worked**: when writing into the spool fails (a full
  spool disk: ENOSPC), the file refuses to upload (raising that error) until the failed range has been
  written again or truncated away; an incomplete file never replaces the previous version.
* **Only what a handle flushes is uploaded**: :meth:`WriteHandle.discard` lets go without uploading (an
  aborted FTP transfer must not store a truncated file); when the last handle lets go the spool is
  deleted.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from boxfs.core import BoxFileSystem
from boxfs.frontend.errors import PendingLimitError, oserror
from boxfs.frontend.ranges import RangeSet
from boxfs.names import name_key
from boxfs.upload.spoolfolder import SpoolFolder, create_spool_file

log = logging.getLogger(__name__)

__all__ = ["COPY_CHUNK", "DEFAULT_MAX_PENDING", "OpenFiles", "Spool", "WriteHandle"]

#: Chunk used when filling a spool from the remote file.
COPY_CHUNK = 8 * 1024 * 1024
#: Default cap on bytes written past a hole (waiting for the bytes before them).
DEFAULT_MAX_PENDING = 256 * 1024 * 1024


class Spool:
    """The local copy of one file being written, shared by every handle open on its path.

    ``lock`` serialises writes, truncation and the upload of this one file; other files are not
    affected. ``dirty`` is True from the first change until an upload of it succeeded; ``error`` is the
    exception of the last failed upload (None once one succeeds).
    """

    def __init__(self, files: OpenFiles, path: str) -> None:
        self.files = files
        self.path = path  # the filesystem path it uploads to (moved by OpenFiles.renamed)
        # named, so that ``fs.put_file`` can stream it from disk; private (0600), deleted when closed
        self._folder: SpoolFolder | None = None
        self._entry = ""
        self.file: Any
        if files.spool_dir is None and isinstance(files.fs, BoxFileSystem):
            # in the acting user's private spool folder, locked while open: what a killed process
            # leaves there is removed by clean_spool and the periodic cleaners (boxfs.upload.cleaning)
            self._folder, self._entry, self.file = create_spool_file(files.fs)
            self.name = self._folder.show(self._entry)
        else:  # a folder the caller chose (or another filesystem's): the caller's to clean
            self.file = tempfile.NamedTemporaryFile(dir=files.spool_dir, prefix="boxfs-spool-")
            self.name = self.file.name
        self.fd = self.file.fileno()
        self.lock = threading.RLock()
        self.refs = 0
        self.loaded = False  # remote content copied in (or deliberately discarded)
        self.dirty = False
        self.unlinked = False  # removed (or replaced) while open: nothing to upload any more
        self.error: BaseException | None = None
        self.uploads = 0  # successful uploads
        self.failures = 0  # failed uploads
        self.mtime: float | None = None  # modification time to send with the upload
        self.create_only = False  # the first upload must create the file, never replace one (EEXIST)
        self.changed_at = time.time()
        self.complete = 0  # bytes [0, complete) are all written (or loaded)
        self.pending = RangeSet()  # bytes written past ``complete``, with a hole before them
        self.lost: tuple[int, int, OSError] | None = None  # a write that failed: (start, end, error)
        self.emptied = False  # emptied by reset() and not changed since (a frontend may wait to upload)

    def __repr__(self) -> str:
        return f"Spool(path={self.path!r}, dirty={self.dirty}, refs={self.refs})"

    # ------------------------------------------------------------------ content
    def size(self) -> int:
        """Current size of the spool (meaningful once ``loaded``)."""
        return os.fstat(self.fd).st_size

    def holes(self) -> bool:
        """True when some byte before the end was never written (a lost or still missing write)."""
        return self.complete < self.size()

    def load(self) -> None:
        """Copy the current remote content in, the first time it is needed (a missing file is new)."""
        with self.lock:
            if self.loaded:
                return
            offset = 0
            try:
                with self.files.fs.open(self.path, "rb", block_size=COPY_CHUNK) as src:
                    while chunk := src.read(COPY_CHUNK):
                        os.pwrite(self.fd, chunk, offset)
                        offset += len(chunk)
            except FileNotFoundError:
                self.dirty = True  # nothing there yet: the (empty) file must be created
            os.ftruncate(self.fd, offset)
            self.complete = offset
            self.pending = RangeSet()
            self.loaded = True

    def reset(self) -> None:
        """Empty the file without fetching the old content (create, ``O_TRUNC``)."""
        with self.lock:
            os.ftruncate(self.fd, 0)
            self.loaded = True
            self.complete = 0
            self.pending = RangeSet()
            self.lost = None
            self._changed()
            self.emptied = True

    def _changed(self) -> None:
        # ``unlinked`` stays: writing to a file deleted while open must not bring it back
        self.emptied = False
        self.dirty = True
        self.changed_at = time.time()

    def _record(self, start: int, end: int) -> None:
        """Note that ``[start, end)`` now holds data."""
        if start > self.complete:
            self.pending.add(start, end)
            return
        self.complete = max(self.complete, end)
        while (first := self.pending.first()) is not None and first[0] <= self.complete:
            self.complete = max(self.complete, self.pending.pop_first()[1])

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        """Write ``data`` at ``offset`` (any order; past the end leaves a hole); returns its length."""
        if offset < 0:
            raise oserror(errno.EINVAL, self.path, "negative write offset")
        with self.lock:
            self.load()
            end = offset + len(data)
            limit = self.files.max_pending
            if limit is not None and offset > self.complete:
                after = self.pending.total + (end - offset) - self.pending.covered(offset, end)
                if after > limit:
                    raise PendingLimitError(after, limit)
            view = memoryview(data)
            at = offset
            try:
                while view:
                    written = os.pwrite(self.fd, view, at)
                    view = view[written:]
                    at += written
            except OSError as exc:
                self.lost = (offset, end, exc)  # part of it may be in the spool: the file is incomplete
                self._changed()
                raise
            if self.lost is not None and offset <= self.lost[0] and end >= self.lost[1]:
                self.lost = None  # the failed range was written again
            self._record(offset, end)
            self._changed()
        return len(data)

    def pread(self, size: int, offset: int) -> bytes:
        with self.lock:
            self.load()
            return os.pread(self.fd, size, offset)

    def truncate(self, length: int) -> None:
        if length < 0:
            raise oserror(errno.EINVAL, self.path, "negative length")
        with self.lock:
            if length:
                self.load()
            else:
                self.loaded = True
            old = self.size()
            os.ftruncate(self.fd, length)
            self.pending.cut(length)
            self.complete = min(self.complete, length)
            if self.lost is not None and length <= self.lost[0]:
                self.lost = None  # the failed range was cut off
            if length > old:
                self._record(old, length)  # the zeros of an extension are data the caller asked for
            self._changed()

    def set_mtime(self, mtime: float) -> None:
        """Send ``mtime`` as the modification time with the next upload (which this makes due)."""
        with self.lock:
            self.mtime = mtime
            self.emptied = False
            self.dirty = True

    # ------------------------------------------------------------------ upload
    def sync(self, why: str = "flush") -> bool:
        """Upload if dirty; True if an upload was made. Raises the upload's exception, staying dirty."""
        with self.lock:
            if self.unlinked or not self.dirty:
                return False
            kwargs: dict[str, Any] = {}
            if self.mtime is not None:
                kwargs["modified"] = datetime.fromtimestamp(self.mtime, tz=timezone.utc)
            if self.create_only and not self.uploads:
                kwargs["mode"] = "create"  # a name taken since the open is refused, never replaced
            started = time.monotonic()
            try:
                self.load()  # when only the time changed, the current content is sent again
                if self.lost is not None:
                    start, end, error = self.lost
                    raise oserror(error.errno or errno.EIO, self.path,
                                  f"not uploading an incomplete file: writing bytes {start}-{end} failed ({error})")
                if not self.files.holes_allowed and self.holes():
                    raise oserror(errno.EIO, self.path, "the file has byte ranges that were never written")
                # put_file streams from disk (Box: one upload, chunked above its threshold)
                self.files.fs.put_file(self.name, self.path, **kwargs)
            except BaseException as exc:
                self.error = exc
                self.failures += 1
                log.error(
                    "upload of %s (%d bytes, on %s) failed, still pending: %s: %s",
                    self.path, self.size(), why, type(exc).__name__, exc,
                )
                raise
            finally:
                if self.files.on_upload is not None:
                    self.files.on_upload(self.path)
            self.dirty = False
            self.error = None
            self.uploads += 1
            log.debug("uploaded %s (%d bytes, on %s) in %.2fs", self.path, self.size(), why,
                      time.monotonic() - started)
            return True

    def close(self) -> None:
        """Delete the spool file (its entry first, while the lock still says it is in use)."""
        if self._folder is not None:
            self._folder.unlink(self._entry)
        with contextlib.suppress(OSError):
            self.file.close()
        if self._folder is not None:
            self._folder.close()


class WriteHandle:
    """One open of a file for writing (FTP ``STOR``/``APPE``, SFTP open for write, a mount ``open``).

    Contract:

    * ``write`` appends at the handle's position (or the end, with ``append``), ``pwrite`` writes at an
      offset; both may go past the end and in any order (see the module docstring for the cap).
    * ``flush``/``fsync`` upload the file if it is dirty and raise if that fails; the file stays dirty,
      so every later ``flush``/``fsync``/``close`` of any handle on the path tries again and raises
      again until an upload succeeds. They never return normally while Box lacks data written through
      any handle on the path.
    * ``close`` = ``flush`` then let go of the spool (also when the flush raised: the error is the
      answer to the close). ``discard`` lets go without uploading. Both are idempotent.
    """

    def __init__(self, files: OpenFiles, spool: Spool, *, append: bool = False) -> None:
        self.files = files
        self.spool = spool
        self.append = append
        self.position = 0
        self.closed = False
        self.bytes_written = 0

    @property
    def path(self) -> str:
        return self.spool.path

    def __repr__(self) -> str:
        return f"WriteHandle(path={self.path!r}, bytes={self.bytes_written}, closed={self.closed})"

    def _check_open(self) -> None:
        if self.closed:
            raise oserror(errno.EBADF, self.path, "the file handle is closed")

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        self._check_open()
        with self.spool.lock:
            if self.append:
                self.spool.load()
                offset = self.spool.size()
            written = self.spool.pwrite(data, offset)
        self.bytes_written += written
        self.position = offset + written
        return written

    def write(self, data: bytes | memoryview) -> int:
        return self.pwrite(data, self.position)

    def pread(self, size: int, offset: int) -> bytes:
        self._check_open()
        return self.spool.pread(size, offset)

    def read(self, size: int = -1) -> bytes:
        self._check_open()
        if size < 0:
            size = max(0, self.size() - self.position)
        data = self.spool.pread(size, self.position)
        self.position += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check_open()
        if whence == os.SEEK_SET:
            target = offset
        elif whence == os.SEEK_CUR:
            target = self.position + offset
        elif whence == os.SEEK_END:
            target = self.size() + offset
        else:
            raise oserror(errno.EINVAL, self.path, f"unsupported whence {whence}")
        if target < 0:
            raise oserror(errno.EINVAL, self.path, "negative position")
        self.position = target
        return target

    def tell(self) -> int:
        return self.position

    def size(self) -> int:
        self.spool.load()
        return self.spool.size()

    def truncate(self, length: int) -> None:
        self._check_open()
        self.spool.truncate(length)

    def flush(self, why: str = "flush") -> None:
        """Upload now if the file is dirty; raise (and stay dirty) if that fails."""
        self._check_open()
        self.spool.sync(why)

    def fsync(self) -> None:
        self.flush("fsync")

    def close(self) -> None:
        """Flush, then let go of the spool; raises the flush's error (the handle is closed anyway)."""
        if self.closed:
            return
        try:
            self.spool.sync("close")
        finally:
            self._let_go()

    def discard(self) -> None:
        """Let go without uploading (an aborted transfer). The last handle out deletes the spool."""
        if not self.closed:
            self._let_go()

    def _let_go(self) -> None:
        self.closed = True
        self.files.detach(self.spool)


class OpenFiles:
    """The spools of the paths open for writing on one filesystem (paths are filesystem paths).

    ``spool_dir``: where spool files live (default: the acting user's private spool folder on a
    BoxFileSystem, see :mod:`boxfs.upload.spoolfolder`; the temp dir for other filesystems). ``max_pending``: cap on bytes held
    past a hole per file (None: no cap, the spool is on disk). ``holes_allowed``: whether a file with a
    never-written range may be uploaded (zeros) or fails. ``on_upload(path)``: called after every upload
    attempt (the mount forgets its quota there). ``case_insensitive`` (default: on a BoxFileSystem): two
    spellings of a name are one file, so ``A.txt`` and ``a.txt`` share one spool, as on Box.
    """

    def __init__(
        self,
        fs: Any,
        *,
        spool_dir: str | None = None,
        max_pending: int | None = DEFAULT_MAX_PENDING,
        holes_allowed: bool = True,
        on_upload: Callable[[str], None] | None = None,
        case_insensitive: bool | None = None,
    ) -> None:
        self.fs = fs
        self.spool_dir = spool_dir
        self.max_pending = max_pending
        self.holes_allowed = holes_allowed
        self.on_upload = on_upload
        self._lock = threading.Lock()  # guards the table, never held during I/O
        self._spools: dict[str, Spool] = {}  # by key(path)
        self.case_insensitive = isinstance(fs, BoxFileSystem) if case_insensitive is None else case_insensitive

    def key(self, path: str) -> str:
        """The table key of ``path``: Box's case-insensitive name key where names compare that way."""
        path = path.rstrip("/")
        return name_key(path) if self.case_insensitive else path

    # -------------------------------------------------------------- opening
    def open(self, path: str, *, truncate: bool = False, append: bool = False,
             create_only: bool = False) -> WriteHandle:
        """A write handle on ``path`` (its spool shared with the other handles open on it).

        ``truncate`` empties the file (nothing fetched); otherwise the existing content is fetched when
        first needed. Opening alone changes nothing; a new file is created by the first flush after a
        write or truncate (``touch``: open with ``truncate`` and close). ``create_only``: that first upload
        is the filesystem's create-only put (``mode="create"``), so a file another client created under
        the name meanwhile is refused (FileExistsError) and left as it is; later uploads are new
        versions of the file it created.
        """
        spool = self.attach(path)
        try:
            if create_only:
                spool.create_only = True
            if truncate:
                spool.reset()
        except BaseException:
            self.detach(spool)
            raise
        return WriteHandle(self, spool, append=append)

    def attach(self, path: str) -> Spool:
        """The spool of ``path`` (new or shared) with a reference taken: release it with :meth:`detach`."""
        with self._lock:
            spool = self._spools.get(self.key(path))
            if spool is None:
                spool = self._spools[self.key(path)] = Spool(self, path)
            spool.refs += 1
            return spool

    def attach_existing(self, path: str) -> Spool | None:
        """The spool of ``path`` with a reference taken, if the path is open for writing; else None."""
        with self._lock:
            spool = self._spools.get(self.key(path))
            if spool is not None:
                spool.refs += 1
            return spool

    def detach(self, spool: Spool) -> None:
        """Drop one reference; the last one deletes the spool file (uploaded or not)."""
        with self._lock:
            spool.refs -= 1
            if spool.refs > 0:
                return
            if self._spools.get(self.key(spool.path)) is spool:
                del self._spools[self.key(spool.path)]
        if spool.dirty and not spool.unlinked:
            log.warning("%s: let go with changes that did not reach the server (%s)", spool.path,
                        "upload failed" if spool.error is not None else "never flushed")
        spool.close()

    # -------------------------------------------------------------- lookups
    def get(self, path: str) -> Spool | None:
        with self._lock:
            return self._spools.get(self.key(path))

    def all(self) -> list[Spool]:
        with self._lock:
            return list(self._spools.values())

    def children(self, folder: str) -> list[Spool]:
        """Spools of files directly inside ``folder`` (files being created show up in listings)."""
        prefix = self.key(folder) + "/" if folder.rstrip("/") else ""
        with self._lock:
            return [
                s for k, s in self._spools.items()
                if k.startswith(prefix) and "/" not in k[len(prefix):] and not s.unlinked
            ]

    # -------------------------------------------------------------- namespace changes
    def removed(self, path: str) -> Spool | None:
        """``path`` was deleted: its open spool (if any) uploads nothing any more."""
        with self._lock:
            spool = self._spools.pop(self.key(path), None)
            if spool is not None:
                spool.unlinked = True
            return spool

    def renamed(self, old: str, new: str) -> None:
        """``old`` became ``new``: spools of the item (and, for a folder, of everything under it) follow.

        A spool open at ``new`` belonged to the file the rename replaced: it uploads nothing any more.
        """
        old_key, new_key = self.key(old), self.key(new)
        depth = len(old.rstrip("/").split("/"))
        with self._lock:
            if old_key != new_key:
                replaced = self._spools.pop(new_key, None)
                if replaced is not None:
                    replaced.unlinked = True
            for key in [k for k in self._spools if k == old_key or k.startswith(old_key + "/")]:
                spool = self._spools.pop(key)
                spool.path = "/".join([new.rstrip("/"), *spool.path.rstrip("/").split("/")[depth:]])
                self._spools[self.key(spool.path)] = spool
