"""Mount any fsspec filesystem (Box in particular) as a read-write local folder through FUSE.

fsspec ships ``fsspec.fuse``, but it is read-mostly in practice: buffered writes need seeks,
``O_RDWR`` opens read-only, there is no rename and errors raised while closing a file are
swallowed.  Tools that only know files (``cp``, ``rsync``, editors) need all of that, so this
module brings the FUSE callbacks, standing on the frontend layer (:mod:`boxfs.frontend`) like the
FTP/SFTP servers and the CLI, and works over any fsspec filesystem (the tests also run it over a
local directory).

Design, and why:

* libfuse3 through ``mfusepy`` (the maintained successor of ``fusepy``; it supports FUSE 3).
  The binding is imported lazily so that ``import boxfs.mount`` works where libfuse is absent.
* Names are literal (:class:`~boxfs.frontend.paths.Namespace`): ``rm "report [1].pdf"`` removes that
  file, never what the name would match as a pattern; a rename onto an existing file goes through the
  filesystem's safe replace (the new file is in place before the old one goes).
* Every file opened for writing gets a private spool file shared by all handles open on the same
  path (:class:`~boxfs.frontend.handles.OpenFiles`). Random-offset writes, ``O_RDWR``, ``O_APPEND``
  and truncation therefore all work, and the whole file is uploaded in one request stream when it
  is flushed (``close``), fsynced or released - never chunk by chunk, so Box gets one version.
* The upload happens in ``flush`` because that is the only callback whose result reaches
  ``close(2)``. A failed upload leaves the file dirty: every later ``fsync``/``close`` on it, from
  any handle, uploads again and fails again until the data has landed; never 0 with nothing in Box.
* Errors become errnos once, by type (:func:`~boxfs.frontend.errors.errno_of`): a name Box refuses is
  EINVAL before any request, a full account ENOSPC, a Box failure EIO.
* Reads keep one open ``rb`` file object per handle, with fsspec's read-ahead cache, so a
  sequential read is a few large ranged GETs rather than one request per 128 KiB FUSE read.
* No global lock is held around I/O: a dictionary lock guards only the handle table; each spool
  file and each read handle has its own lock.  A slow upload of one file never blocks reads or
  writes of another.
* ``getattr`` answers from the filesystem's cached listings (BoxFileSystem lists a folder once), so
  ``ls -la`` of a folder costs one listing, not one request per name.
* A background thread cleans old upload spool state (``BoxFileSystem.clean_spool``) while mounted.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, TypeVar

from boxfs.frontend.cleaning import DEFAULT_CLEAN_INTERVAL, SpoolCleaner
from boxfs.frontend.errors import errno_of, log_failure, oserror, upload_errno
from boxfs.frontend.handles import OpenFiles, WriteHandle
from boxfs.frontend.paths import Namespace, basename
from boxfs.frontend.stat import info_to_stat

log = logging.getLogger(__name__)

__all__ = ["BoxFuseOperations", "MountHandle", "mount", "unmount"]

#: Read-ahead block for downloads: large enough that sequential reads are a handful of
#: ranged requests, small enough that a random 4 KiB read does not fetch much waste.
READ_BLOCK_SIZE = 4 * 1024 * 1024
#: statfs total reported when the filesystem cannot tell its quota (or the quota is unlimited).
DEFAULT_TOTAL_BYTES = 1 << 50
#: statfs block size.
BLOCK = 4096
#: How long a quota answer is reused, so that repeated ``df`` calls do not each hit the API
#: (changes made through the mount drop it at once).
QUOTA_TTL = 30.0
#: ``rename`` flags of renameat2(2) (``mv -n`` asks for NOREPLACE).
RENAME_NOREPLACE = 1

_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2

F = TypeVar("F", bound=Callable[..., Any])


def _operation(func: F) -> F:
    """Wrap a FUSE callback so every exception becomes an ``OSError`` with the right errno.

    mfusepy turns unknown exceptions into ``EINVAL``, which misleads tools; here the layer's one
    mapping applies and the failure is logged at the level it deserves (a traceback for anything
    unexpected), so that a failure is never silent.
    """

    @functools.wraps(func)
    def wrapper(self: BoxFuseOperations, *args: Any) -> Any:
        try:
            return func(self, *args)
        except Exception as exc:
            code = errno_of(exc)
            if type(exc) is OSError and exc.errno == code and exc.filename is None:
                raise  # already a bare errno from this module
            log_failure(log, func.__name__, args[0] if args else None, exc)
            raise OSError(code, os.strerror(code)) from exc

    return wrapper  # type: ignore[return-value]


def _quota_of(fs: Any) -> tuple[int | None, int | None]:
    """``(used, total)`` bytes of the acting user from ``fs.quota()`` (BoxFileSystem has it); else unknown."""
    quota = getattr(fs, "quota", None)
    if callable(quota):
        used, total = quota()
        return used, total
    return None, None


class _Handle:
    """One open file handle: a reader over the remote file, or a handle on the path's spool."""

    def __init__(self, path: str, flags: int, writer: WriteHandle | None = None, reader: Any = None) -> None:
        self.path = path
        self.flags = flags
        self.writer = writer
        self.reader = reader
        self.lock = threading.Lock()


class BoxFuseOperations:
    """FUSE callbacks (in mfusepy's ``Operations`` shape) over an fsspec filesystem.

    Paths handed in by FUSE are absolute within the mount ("/a/b"); they are mapped under
    ``root`` on the filesystem.  The object does not subclass ``mfusepy.Operations`` so that it
    can be created (and its helpers used) without libfuse being installed; mfusepy only looks
    the callbacks up by name.
    """

    use_ns = True  # utimens receives nanoseconds (mfusepy's non-deprecated mode)

    def __init__(
        self,
        fs: Any,
        root: str = "",
        *,
        read_only: bool = False,
        spool_dir: str | None = None,
        read_block_size: int = READ_BLOCK_SIZE,
        uid: int | None = None,
        gid: int | None = None,
        ready: threading.Event | None = None,
        max_pending: int | None = None,
        clean_interval: float = DEFAULT_CLEAN_INTERVAL,
        clean_max_age: float | None = None,
    ) -> None:
        self.fs = fs
        self.root = root
        self.read_only = read_only
        self.read_block_size = read_block_size
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.ready = ready
        self.mounted_at = time.time()
        self.names = Namespace(fs)
        # the spool is on disk: a sparse write (``dd seek=``) is no reason to refuse, unless asked
        self.files = OpenFiles(fs, spool_dir=spool_dir, max_pending=max_pending, on_upload=self._uploaded)
        self.cleaner = SpoolCleaner(fs, interval=clean_interval, max_age=clean_max_age)
        self._lock = threading.Lock()  # guards the handle table, never held during I/O
        self._handles: dict[int, _Handle] = {}
        self._next_fh = 1
        self._quota: tuple[float, int, int] | None = None

    # ----------------------------------------------------------------- helpers
    def remote(self, path: str) -> str:
        """Filesystem path of the mount path ``path``."""
        rel = path.strip("/")
        root = self.root.rstrip("/")
        if not rel:
            return self.root
        return f"{root}/{rel}" if root else rel

    def _changed(self) -> None:
        """A change made through the mount may have moved the space used: ``df`` asks again.

        Listings need nothing here: the filesystem records its own changes in its cache, and
        changes made elsewhere reach it through Box's event stream (docs/coherence.md).
        """
        self._quota = None

    def _uploaded(self, remote: str) -> None:
        self._changed()

    def _lookup(self, path: str) -> dict[str, Any]:
        """Info of the mount path ``path`` (literal; Box compares names case-insensitively)."""
        return self.names.info(self.remote(path))

    def _new_fh(self, handle: _Handle) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = handle
        return fh

    def _handle(self, fh: int) -> _Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from None

    def _check_writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    def _attrs(self, info: dict[str, Any]) -> dict[str, Any]:
        """FUSE attributes (nanosecond times) of an fsspec info dict."""
        st = info_to_stat(info, self.read_only, uid=self.uid, gid=self.gid, default_mtime=self.mounted_at)
        return {
            "st_mode": st.st_mode,
            "st_nlink": st.st_nlink,
            "st_size": st.st_size,
            "st_blocks": st.st_blocks,
            "st_blksize": st.st_blksize,
            "st_uid": st.st_uid,
            "st_gid": st.st_gid,
            "st_mtime": st.st_mtime_ns,
            "st_atime": st.st_atime_ns,
            "st_ctime": st.st_ctime_ns,
        }

    @staticmethod
    def _sync(writer: WriteHandle, why: str) -> None:
        """Upload the handle's file if dirty; a failure (logged by the spool) becomes the errno a
        ``close``/``fsync`` may answer, and the file stays dirty for the next attempt."""
        try:
            writer.spool.sync(why)
        except Exception as exc:
            code = upload_errno(exc)
            raise OSError(code, os.strerror(code)) from exc

    def _spool_attrs(self, size: int, mtime: float) -> dict[str, Any]:
        return self._attrs({"type": "file", "size": size, "mtime": mtime})

    # -------------------------------------------------------------- lifecycle
    def init(self, path: str) -> None:
        """Called by libfuse once the kernel has answered INIT: the mount is usable."""
        log.info("mounted %r (root %r)", self.fs, self.root)
        self.cleaner.start()
        if self.ready is not None:
            self.ready.set()

    def destroy(self, path: str) -> None:
        """Unmounting: upload whatever is still dirty (files open when the mount goes away)."""
        self.cleaner.stop()
        for spool in self.files.all():
            with contextlib.suppress(Exception):  # logged by the spool
                spool.sync("unmount")

    # ------------------------------------------------------------- metadata
    @_operation
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        if path is None:
            # an open file that was unlinked (hard_remove): only its handle is left
            handle = self._handles.get(fh) if fh is not None else None
            if handle is None or handle.writer is None or not handle.writer.spool.loaded:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
            spool = handle.writer.spool
            return self._spool_attrs(spool.size(), spool.mtime or spool.changed_at)
        if path == "/":
            return self._attrs({"type": "directory", "name": self.root})
        spool = self.files.get(self.remote(path))
        if spool is not None and not spool.unlinked:
            if spool.loaded:
                return self._spool_attrs(spool.size(), spool.mtime or spool.changed_at)
            info = dict(self._lookup(path))
            if spool.mtime is not None:
                info.pop("modified", None)
                info["mtime"] = spool.mtime
            return self._attrs(info)
        return self._attrs(self._lookup(path))

    @_operation
    def readdir(self, path: str, fh: int) -> list[str]:
        """List a folder from the filesystem, whose cache Box's event stream keeps true (or which
        expires in seconds without it): ``ls`` shows changes made elsewhere with no rule of its own."""
        remote = self.remote(path)
        entries = self.names.list(remote)
        names = [basename(str(e["name"])) for e in entries]
        seen = {self.files.key(n) for n in names}  # a file being written may already be on Box
        names.extend(n for n in (basename(s.path) for s in self.files.children(remote)) if self.files.key(n) not in seen)
        return [".", "..", *names]

    @_operation
    def statfs(self, path: str) -> dict[str, int]:
        now = time.monotonic()
        if self._quota is None or now - self._quota[0] > QUOTA_TTL:
            used, total = 0, DEFAULT_TOTAL_BYTES
            q_used, q_total = _quota_of(self.fs)
            used = int(q_used or 0)
            if q_total and 0 < int(q_total) < (1 << 62):  # Box reports "unlimited" as a huge number
                total = int(q_total)
            total = max(total, used)
            self._quota = (now, used, total)
        _, used, total = self._quota
        free = (total - used) // BLOCK
        return {
            "f_bsize": BLOCK,
            "f_frsize": BLOCK,
            "f_blocks": total // BLOCK,
            "f_bfree": free,
            "f_bavail": free,
            "f_files": 1 << 32,
            "f_ffree": 1 << 31,
            "f_favail": 1 << 31,
            "f_namemax": 255,
        }

    @_operation
    def chmod(self, path: str, mode: int) -> int:
        """Box has no POSIX modes; accepted (so ``cp -p``/``rsync -a`` work) and ignored."""
        self._check_writable()
        return 0

    @_operation
    def chown(self, path: str, uid: int, gid: int) -> int:
        """Box has no POSIX owners; accepted and ignored."""
        self._check_writable()
        return 0

    @_operation
    def utimens(self, path: str, times: tuple[int | None, int | None] | None = None) -> int:
        """Set the modification time, which Box keeps as ``content_modified_at``.

        A file open for writing remembers the time and sends it with its upload (on close); a
        closed file is re-uploaded by ``fs.set_modified`` (Box has no other way to change it).
        Folders have no time Box lets a client set: accepted and ignored.
        """
        self._check_writable()
        if path is None:  # futimens of an unlinked file: nothing left on Box to stamp
            return 0
        mtime_ns = time.time_ns() if times is None else times[1]
        if mtime_ns is None:
            return 0
        mtime = mtime_ns / 1e9
        spool = self.files.get(self.remote(path))
        if spool is not None:
            spool.set_mtime(mtime)
            return 0
        if path == "/" or self._lookup(path).get("type") == "directory":
            # Box keeps no settable time on folders; refusing would make ``rsync -a`` and
            # ``cp -a`` fail (exit 23) for a time nobody can store.  Accepted, like chmod.
            return 0
        set_modified = getattr(self.fs, "set_modified", None)
        if set_modified is None:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM))
        set_modified(self.remote(path), datetime.fromtimestamp(mtime, tz=timezone.utc))
        self._changed()
        return 0

    # ------------------------------------------------------- namespace changes
    @_operation
    def mkdir(self, path: str, mode: int) -> int:
        self._check_writable()
        try:
            self.names.mkdir(self.remote(path))
        finally:
            self._changed()
        return 0

    @_operation
    def rmdir(self, path: str) -> int:
        self._check_writable()
        try:
            self.names.remove_folder(self.remote(path))
        finally:
            self._changed()
        return 0

    @_operation
    def unlink(self, path: str) -> int:
        """Delete exactly this file; one still being written uploads nothing any more."""
        self._check_writable()
        remote = self.remote(path)
        try:
            self.names.remove_file(remote)
        except FileNotFoundError:
            if self.files.removed(remote) is None:  # neither remote nor pending: a real ENOENT
                raise
        else:  # gone from Box: a handle still writing it uploads nothing any more (a failed delete keeps it)
            self.files.removed(remote)
        finally:
            self._changed()
        return 0

    @_operation
    def rename(self, old: str, new: str, flags: int = 0) -> int:
        """POSIX rename through the layer: a replaced file is swapped safely, never deleted first.

        ``RENAME_NOREPLACE`` (``mv -n``) answers EEXIST without touching anything; other flags
        (``RENAME_EXCHANGE``) are not supported (EINVAL, as the kernel expects).
        """
        self._check_writable()
        if flags & ~RENAME_NOREPLACE:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        src, dst = self.remote(old), self.remote(new)
        overwrite = not flags & RENAME_NOREPLACE
        pending = self.files.get(src)
        if not overwrite and self.files.key(src) != self.files.key(dst) and self.files.get(dst) is not None:
            raise oserror(errno.EEXIST, dst)  # a file being created there, not uploaded yet
        try:
            if pending is not None and self.names.try_info(src) is None:
                # only pending locally (created, not uploaded yet): the upload goes to the new name
                self.names.check_new_name(dst)
                target = self.names.try_info(dst)
                if target is not None and not overwrite:
                    raise oserror(errno.EEXIST, dst)
                if target is not None and target.get("type") == "directory":
                    raise oserror(errno.EISDIR, dst)
            else:
                self.names.rename(src, dst, overwrite=overwrite)
        finally:
            self._changed()
        self.files.renamed(src, dst)
        return 0

    # --------------------------------------------------------------- file data
    @_operation
    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        """A new file: an empty spool, uploaded on close even if nothing is written (``touch``)."""
        self._check_writable()
        remote = self.remote(path)
        self.names.check_new_name(remote)
        writer = self.files.open(remote, truncate=True)
        return self._new_fh(_Handle(path, flags, writer=writer))

    @_operation
    def open(self, path: str, flags: int) -> int:
        remote = self.remote(path)
        if (flags & os.O_ACCMODE) != os.O_RDONLY:
            self._check_writable()
            writer = self.files.open(remote, truncate=bool(flags & os.O_TRUNC), append=bool(flags & os.O_APPEND))
            return self._new_fh(_Handle(path, flags, writer=writer))
        spool = self.files.attach_existing(remote)
        if spool is not None:  # being written here: read what was written
            return self._new_fh(_Handle(path, flags, writer=WriteHandle(self.files, spool)))
        reader = self.fs.open(remote, "rb", block_size=self.read_block_size, cache_type="readahead")
        return self._new_fh(_Handle(path, flags, reader=reader))

    @_operation
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        handle = self._handle(fh)
        if handle.writer is not None:
            return handle.writer.pread(size, offset)
        with handle.lock:
            handle.reader.seek(offset)
            return handle.reader.read(size)

    @_operation
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        handle = self._handle(fh)
        if handle.writer is None or (handle.flags & os.O_ACCMODE) == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return handle.writer.pwrite(data, offset)

    @_operation
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self._check_writable()
        if path is None:  # ftruncate of an unlinked file: mfusepy does not pass its handle
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        remote = self.remote(path)
        spool = self.files.attach_existing(remote)
        if spool is not None:
            try:
                spool.truncate(length)
            finally:
                self.files.detach(spool)
            return 0
        # Not open anywhere: ``truncate -s`` on a closed file rewrites it right away.
        writer = self.files.open(remote)
        try:
            writer.truncate(length)
            self._sync(writer, "truncate")
        finally:
            writer.discard()
        return 0

    @_operation
    def flush(self, path: str, fh: int) -> int:
        """Called on every ``close(2)``: upload now so that a failure reaches the application."""
        handle = self._handle(fh)
        if handle.writer is not None and not self._empty_until_written(handle.writer):
            self._sync(handle.writer, "close")
        return 0

    def _empty_until_written(self, writer: WriteHandle) -> bool:
        """True for an existing file emptied by ``O_TRUNC`` and not written since: its upload waits.

        ``echo x > f`` and ``dd of=f`` open ``f`` with ``O_TRUNC`` and close a duplicate of the
        descriptor before writing (``dup2``); uploading then would make an empty current version
        of a file that had content, and if the writes that follow fail (a full spool disk), Box
        would be left with the empty one. The upload happens at the next flush after a write, or
        on release (``: > f`` truncates on release).
        """
        spool = writer.spool
        if not spool.emptied or spool.size():
            return False
        existing = self.names.try_info(spool.path)
        return existing is not None and existing.get("type") == "file" and bool(existing.get("size"))

    @_operation
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        handle = self._handle(fh)
        if handle.writer is not None:
            self._sync(handle.writer, "fsync")
        return 0

    @_operation
    def release(self, path: str, fh: int) -> int:
        """The last close of a handle: upload what is still dirty (tried again), then let go."""
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if handle.reader is not None:
            with handle.lock, contextlib.suppress(Exception):
                handle.reader.close()
            return 0
        assert handle.writer is not None
        try:
            self._sync(handle.writer, "release")
        finally:
            handle.writer.discard()  # let go; the upload above is the last attempt for this handle
        return 0


# ------------------------------------------------------------------ mounting
def _fuse_class() -> type:
    """mfusepy's FUSE class, with a ``utimens`` that understands ``UTIME_NOW``/``UTIME_OMIT``.

    mfusepy folds the timespec into one number, which loses these two markers (``touch`` of
    an existing file sends ``UTIME_NOW``); this subclass hands ``(atime_ns, mtime_ns)`` with
    ``None`` for "leave unchanged" instead.  It also passes ``rename``'s flags on.
    """
    import mfusepy

    class _FUSE(mfusepy.FUSE):  # type: ignore[misc,name-defined]
        def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
            decoded = None if path is None else path.decode(self.encoding, self.errors)
            if not buf:
                return self.operations.utimens(decoded, None)

            def ns(ts: Any) -> int | None:
                if ts.tv_nsec == _UTIME_OMIT:
                    return None
                if ts.tv_nsec == _UTIME_NOW:
                    return time.time_ns()
                return ts.tv_sec * 10**9 + ts.tv_nsec

            return self.operations.utimens(decoded, (ns(buf.contents.actime), ns(buf.contents.modtime)))

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            # mfusepy drops renameat2's flags; ``mv -n`` relies on RENAME_NOREPLACE being honoured
            return self.operations.rename(old.decode(self.encoding, self.errors),
                                          new.decode(self.encoding, self.errors), flags)

    return _FUSE


class MountHandle:
    """A mount served from a background thread of this process (``mount(..., foreground=False)``)."""

    def __init__(self, mountpoint: str, thread: threading.Thread, operations: BoxFuseOperations) -> None:
        self.mountpoint = mountpoint
        self.thread = thread
        self.operations = operations
        self.error: BaseException | None = None

    def unmount(self, timeout: float = 30.0) -> None:
        """Unmount and wait for the serving thread to finish."""
        if os.path.ismount(self.mountpoint):
            unmount(self.mountpoint)
        self.thread.join(timeout)

    def __enter__(self) -> MountHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()


def mount(
    fs: Any,
    mountpoint: str,
    *,
    foreground: bool = True,
    read_only: bool = False,
    threads: bool = True,
    ready: threading.Event | None = None,
    root: str = "",
    spool_dir: str | None = None,
    read_block_size: int = READ_BLOCK_SIZE,
    timeout: float = 30.0,
    max_pending: int | None = None,
    clean_interval: float = DEFAULT_CLEAN_INTERVAL,
    clean_max_age: float | None = None,
    **fuse_options: Any,
) -> MountHandle | None:
    """Mount ``fs`` (below ``root``) at ``mountpoint``.

    ``foreground=True`` serves in the calling thread until the mount is unmounted
    (``fusermount3 -u`` / :func:`unmount` / Ctrl-C) and returns ``None``.  ``foreground=False``
    serves from a daemon thread of this process and returns a :class:`MountHandle` once the
    mount is usable (the Python process is never forked: that would break the filesystem's
    threads and connections).  ``ready`` is set as soon as the kernel has accepted the mount.
    ``spool_dir`` holds files being written until they are uploaded (default: the acting user's
    private spool folder on a BoxFileSystem, see :mod:`boxfs.upload.spoolfolder`; the temp dir otherwise);
    ``read_block_size`` is the read-ahead of a file open for reading (each block one ranged GET of
    the version the handle opened);
    ``max_pending`` caps the bytes a file may hold past a hole (default: no cap, they are on disk);
    every ``clean_interval`` seconds upload spool state older than ``clean_max_age`` (default one
    day) is removed (``BoxFileSystem.clean_spool``).
    Extra keyword arguments are libfuse ``-o`` options (e.g. ``allow_other=True``).
    """
    mountpoint = os.path.abspath(mountpoint)
    if not os.path.isdir(mountpoint):
        raise NotADirectoryError(errno.ENOTDIR, "mount point is not a directory", mountpoint)
    ready = ready or threading.Event()
    ops = BoxFuseOperations(
        fs, root, read_only=read_only, spool_dir=spool_dir, ready=ready,
        read_block_size=read_block_size, max_pending=max_pending, clean_interval=clean_interval, clean_max_age=clean_max_age,
    )
    options: dict[str, Any] = {
        "fsname": "boxfs",
        "subtype": "boxfs",
        "hard_remove": True,  # unlink of an open file must not turn into a rename to .fuse_hidden*
    }
    if threads:
        # libfuse 3.14.0 passes this value as the *maximum* number of worker threads (and
        # warns "Ignoring invalid max threads value 4294967295" with its default); in other
        # versions it is the number of idle workers kept.  16 is sound for both readings.
        options["max_idle_threads"] = 16
    if read_only:
        options["ro"] = True
    options.update(fuse_options)
    fuse_cls = _fuse_class()

    def serve() -> None:
        try:
            fuse_cls(ops, mountpoint, foreground=True, nothreads=not threads, **options)
        except RuntimeError as exc:
            # fuse_main returns 8 when its loop ends with an error, and libfuse records the
            # signal number as that error when SIGINT/SIGTERM/SIGHUP stops the loop: after a
            # mount that worked this is the normal way to stop ``boxfs mount``, not a failure.
            if ready.is_set() and exc.args == (8,):
                log.info("FUSE loop for %s stopped (signal or session end)", mountpoint)
                return
            raise

    if foreground:
        serve()
        return None

    handle: MountHandle

    def run() -> None:
        try:
            serve()
        except BaseException as exc:  # reported to the caller of mount() below
            handle.error = exc
            log.error("FUSE mount at %s ended with an error: %s", mountpoint, exc)

    thread = threading.Thread(target=run, name=f"boxfs-mount:{mountpoint}", daemon=True)
    handle = MountHandle(mountpoint, thread, ops)
    thread.start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if not thread.is_alive() or time.monotonic() > deadline:
            if os.path.ismount(mountpoint):
                unmount(mountpoint)
            raise RuntimeError(f"mounting {mountpoint} failed: {handle.error or 'timed out'}")
    return handle


def unmount(mountpoint: str, *, lazy_fallback: bool = True) -> None:
    """Unmount a FUSE mount: ``fusermount3 -u``, then ``-uz`` (lazy) if it is busy.

    Raises ``RuntimeError`` with fusermount's message if the mount could not be removed.
    """
    mountpoint = os.path.abspath(mountpoint)
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    commands: list[list[str]] = []
    if tool:
        commands.append([tool, "-u", mountpoint])
        if lazy_fallback:
            commands.append([tool, "-u", "-z", mountpoint])
    else:
        commands.append(["umount", mountpoint])
        if lazy_fallback:
            commands.append(["umount", "-l", mountpoint])
    errors = []
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    raise RuntimeError("could not unmount " + mountpoint + ": " + "; ".join(errors))


def iter_mounts() -> Iterator[str]:
    """Mount points of boxfs FUSE mounts currently in /proc/mounts (for cleanup tooling)."""
    with contextlib.suppress(OSError), open("/proc/mounts") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "fuse.boxfs":
                yield parts[1].replace("\\040", " ")
