"""Mount any fsspec filesystem (Box in particular) as a read-write local folder through FUSE.

fsspec ships ``fsspec.fuse``, but it is read-mostly in practice: buffered writes need seeks,
``O_RDWR`` opens read-only, there is no rename and errors raised while closing a file are
swallowed.  Tools that only know files (``cp``, ``rsync``, editors) need all of that, so this
module brings its own layer, written against the plain ``AbstractFileSystem`` API so that it
works over any fsspec filesystem (the tests also run it over a local directory).

Design, and why:

* libfuse3 through ``mfusepy`` (the maintained successor of ``fusepy``; it supports FUSE 3).
  The binding is imported lazily so that ``import boxfs.mount`` works where libfuse is absent.
* Every file opened for writing gets a local spool file (an anonymous temporary file), shared
  by all handles open on the same path.  Random-offset writes, ``O_RDWR``, ``O_APPEND`` and
  truncation therefore all work, and the whole file is uploaded in one request stream when it
  is flushed (``close``), fsynced or released - never chunk by chunk, so Box gets one version.
* The upload happens in ``flush`` because that is the only callback whose result reaches
  ``close(2)``: a failed upload becomes ``EIO`` for the application and is logged with the
  reason.  ``release`` uploads again only if something was written after the last flush.
* Reads keep one open ``rb`` file object per handle, with fsspec's read-ahead cache, so a
  sequential read is a few large ranged GETs rather than one request per 128 KiB FUSE read.
* No global lock is held around I/O: a dictionary lock guards only the handle tables; each
  spool file and each read handle has its own lock.  A slow upload of one file never blocks
  reads or writes of another.
* ``getattr`` answers from the parent folder's listing (``fs.ls(parent, detail=True)``), which
  the filesystem caches, so ``ls -la`` of a folder costs one listing, not one request per name.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import posixpath
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, TypeVar

from boxfs.api.fields import epoch_seconds
from boxfs.names import MAX_NAME_LENGTH, BoxNameError, check_name, name_key

log = logging.getLogger(__name__)

__all__ = ["BoxFuseOperations", "MountHandle", "mount", "unmount", "errno_for"]

#: Read-ahead block for downloads: large enough that sequential reads are a handful of
#: ranged requests, small enough that a random 4 KiB read does not fetch much waste.
READ_BLOCK_SIZE = 4 * 1024 * 1024
#: Copy chunk used when filling a spool file from the remote file and when uploading it.
COPY_CHUNK = 8 * 1024 * 1024
#: statfs total reported when the filesystem cannot tell its quota (or the quota is unlimited).
DEFAULT_TOTAL_BYTES = 1 << 50
#: statfs block size.
BLOCK = 4096
#: A folder is re-listed from the server by ``readdir`` at most this often (seconds).
LISTING_TTL = 10.0
#: How long a quota answer is reused, so that repeated ``df`` calls do not each hit the API
#: (changes made through the mount drop it at once).
QUOTA_TTL = 30.0

_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2

F = TypeVar("F", bound=Callable[..., Any])


def errno_for(exc: BaseException) -> int:
    """Map an exception raised by the filesystem to the errno FUSE should return.

    An ``OSError`` carrying an errno keeps it; the builtin subclasses are mapped by class because
    fsspec implementations often raise them without one (``FileNotFoundError(path)``); a
    ``ValueError`` (what BoxFileSystem raises for Box's 400 answers) is an invalid argument;
    everything else (HTTP errors after retries, bugs) is an I/O error.
    """
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc.errno
    for cls, code in (
        (FileNotFoundError, errno.ENOENT),
        (FileExistsError, errno.EEXIST),
        (PermissionError, errno.EACCES),
        (IsADirectoryError, errno.EISDIR),
        (NotADirectoryError, errno.ENOTDIR),
        # Box's 400s (a name it refuses, a folder moved into itself...) arrive as ValueError
        (ValueError, errno.EINVAL),
    ):
        if isinstance(exc, cls):
            return code
    return errno.EIO


def _fuse_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _operation(func: F) -> F:
    """Wrap a FUSE callback so every exception becomes an ``OSError`` with the right errno.

    mfusepy turns unknown exceptions into ``EINVAL``, which misleads tools; here the mapping of
    :func:`errno_for` applies and anything unexpected is logged with its traceback, so that a
    failure is never silent.
    """

    @functools.wraps(func)
    def wrapper(self: BoxFuseOperations, *args: Any) -> Any:
        try:
            return func(self, *args)
        except Exception as exc:
            code = errno_for(exc)
            if isinstance(exc, OSError) and exc.errno == code and type(exc) is OSError:
                raise  # already a deliberate errno from this module
            if code == errno.EIO:
                log.error(
                    "%s%r failed: %s: %s", func.__name__, args[:1], type(exc).__name__, exc, exc_info=True
                )
            elif code == errno.EINVAL:
                log.warning("%s%r refused: %s", func.__name__, args[:1], exc)
            elif code != errno.ENOENT:
                log.info("%s%r -> %s (%s)", func.__name__, args[:1], errno.errorcode.get(code, code), exc)
            raise _fuse_error(code) from exc

    return wrapper  # type: ignore[return-value]


def _keeps_own_cache(fs: Any) -> bool:
    try:
        from boxfs.core import BoxFileSystem
    except ImportError:  # pragma: no cover - client extras missing
        return False
    return isinstance(fs, BoxFileSystem)


def _quota_of(fs: Any) -> tuple[int | None, int | None]:
    """``(used, total)`` bytes of the acting user from ``fs.quota()`` (BoxFileSystem has it); else unknown."""
    quota = getattr(fs, "quota", None)
    if callable(quota):
        used, total = quota()
        return used, total
    return None, None


class _Spool:
    """Local copy of a file being written, shared by every handle open on that path.

    ``lock`` serialises writes, truncation and the upload of this one file; other files are
    unaffected.
    """

    def __init__(self, path: str, spool_dir: str | None) -> None:
        self.path = path
        # named, so that ``fs.put_file`` can stream it from disk (deleted when closed)
        self.file = tempfile.NamedTemporaryFile(dir=spool_dir, prefix="boxfs-mount-")
        self.fd = self.file.fileno()
        self.lock = threading.RLock()
        self.refs = 1
        self.loaded = False  # existing remote content copied in (or deliberately discarded)
        self.dirty = False  # changed since the last successful upload
        self.unlinked = False  # removed while open: nothing to upload any more
        self.mtime: float | None = None  # time to send as the modification time of the upload
        self.changed_at = time.time()

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


class _Handle:
    """One open file handle: either a reader over the remote file or a view of a spool."""

    def __init__(self, path: str, flags: int, spool: _Spool | None = None, reader: Any = None) -> None:
        self.path = path
        self.flags = flags
        self.spool = spool
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
        listing_ttl: float = LISTING_TTL,
    ) -> None:
        self.fs = fs
        self.root = root
        self.read_only = read_only
        self.spool_dir = spool_dir
        self.read_block_size = read_block_size
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.ready = ready
        self.mounted_at = time.time()
        self._lock = threading.Lock()  # guards the two tables below, never held during I/O
        self._handles: dict[int, _Handle] = {}
        self._spools: dict[str, _Spool] = {}
        self._next_fh = 1
        self._quota: tuple[float, int, int] | None = None
        self._listed_at: dict[str, float] = {}
        self.listing_ttl = listing_ttl
        # BoxFileSystem updates its listing cache in place on every change it makes; dropping it
        # after each change would only cost a re-listing.  Other filesystems get invalidated.
        self._fs_keeps_cache = _keeps_own_cache(fs)

    # ----------------------------------------------------------------- helpers
    def remote(self, path: str) -> str:
        """Filesystem path of the mount path ``path``."""
        rel = path.strip("/")
        root = self.root.rstrip("/")
        if not rel:
            return self.root
        return f"{root}/{rel}" if root else rel

    def _invalidate(self, *paths: str) -> None:
        """Forget cached listings of ``paths`` and their parents after a change made here."""
        self._quota = None  # the change may have moved the space used
        inval = getattr(self.fs, "invalidate_cache", None)
        if inval is None or self._fs_keeps_cache:
            return
        seen: set[str] = set()
        for path in paths:
            for p in (path, posixpath.dirname(path.rstrip("/")) or "/"):
                if p not in seen:
                    seen.add(p)
                    inval(self.remote(p))

    def _listing(self, path: str, refresh: bool = False) -> list[dict[str, Any]]:
        if refresh:
            return list(self.fs.ls(self.remote(path), detail=True, refresh=True))
        return list(self.fs.ls(self.remote(path), detail=True))

    def _lookup(self, path: str) -> dict[str, Any]:
        """Info of ``path`` taken from its parent's (cached) listing."""
        parent, name = posixpath.split(path.rstrip("/"))
        folded = None
        for entry in self._listing(parent or "/"):
            entry_name = posixpath.basename(str(entry["name"]).rstrip("/"))
            if entry_name == name:
                return entry
            if folded is None and self._fs_keeps_cache and name_key(entry_name) == name_key(name):
                folded = entry
        if folded is not None:
            # Box compares names case-insensitively: "A.txt" *is* "a.txt" there, so say so here
            # rather than let a create collide with the existing item on upload.
            return folded
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

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
            raise _fuse_error(errno.EBADF) from None

    def _check_writable(self) -> None:
        if self.read_only:
            raise _fuse_error(errno.EROFS)

    def _check_new_name(self, path: str) -> None:
        """Refuse a name Box would refuse *now* (EINVAL / ENAMETOOLONG), not as EIO when the
        upload is finally sent on close."""
        if not self._fs_keeps_cache:  # only Box's rules are known here
            return
        name = posixpath.basename(path)
        try:
            check_name(name)
        except BoxNameError as exc:
            log.info("refusing name %r: %s", name, exc)
            raise _fuse_error(errno.ENAMETOOLONG if len(name) > MAX_NAME_LENGTH else errno.EINVAL) from None

    def _attach_spool(self, path: str) -> tuple[_Spool, bool]:
        """Return the spool of ``path`` (new or shared) with a reference taken, and whether it is new."""
        with self._lock:
            spool = self._spools.get(path)
            if spool is not None:
                spool.refs += 1
                return spool, False
            spool = _Spool(path, self.spool_dir)
            self._spools[path] = spool
            return spool, True

    def _detach_spool(self, spool: _Spool) -> None:
        with self._lock:
            spool.refs -= 1
            if spool.refs > 0:
                return
            if self._spools.get(spool.path) is spool:
                del self._spools[spool.path]
        spool.close()

    def _load(self, spool: _Spool) -> None:
        """Copy the current remote content into the spool, the first time it is needed.

        Done lazily (first read, write, non-zero truncate or upload) so that opening a file for
        writing and closing it untouched (``touch``) downloads nothing."""
        with spool.lock:
            if spool.loaded:
                return
            try:
                with self.fs.open(self.remote(spool.path), "rb", block_size=COPY_CHUNK) as src:
                    offset = 0
                    while chunk := src.read(COPY_CHUNK):
                        os.pwrite(spool.fd, chunk, offset)
                        offset += len(chunk)
            except FileNotFoundError:
                spool.dirty = True  # nothing there yet: the (empty) file must be created
            spool.loaded = True

    def _upload(self, spool: _Spool, why: str) -> None:
        """Upload the spool if it changed; raise ``EIO`` (after logging the reason) on failure."""
        with spool.lock:
            if not spool.dirty or spool.unlinked:
                return
            target = self.remote(spool.path)
            if not spool.loaded:  # only the time changed: send the current content again
                try:
                    self._load(spool)
                except Exception as exc:
                    spool.dirty = False
                    log.error(
                        "upload of %s (on %s) failed reading it back: %s: %s",
                        target,
                        why,
                        type(exc).__name__,
                        exc,
                    )
                    raise _fuse_error(errno.EIO) from exc
            kwargs: dict[str, Any] = {}
            if spool.mtime is not None:
                kwargs["modified"] = datetime.fromtimestamp(spool.mtime, tz=timezone.utc)
            size = spool.size()
            started = time.monotonic()
            try:
                # put_file streams from disk (Box: one upload, chunked above its threshold) and,
                # without ``modified``, sends the spool's mtime: the time of the last write.
                self.fs.put_file(spool.file.name, target, **kwargs)
            except Exception as exc:
                # The data written since the last upload did not reach the server; the caller
                # gets EIO.  Not retried on release: close(2) already reported the failure.
                spool.dirty = False
                log.error(
                    "upload of %s (%d bytes, on %s) failed: %s: %s",
                    target,
                    size,
                    why,
                    type(exc).__name__,
                    exc,
                )
                raise _fuse_error(errno.EIO) from exc
            finally:
                self._invalidate(spool.path)
            spool.dirty = False
            log.debug("uploaded %s (%d bytes, on %s) in %.2fs", target, size, why, time.monotonic() - started)

    def _file_attrs(self, size: int, mtime: float, ctime: float | None = None) -> dict[str, Any]:
        mode = 0o444 if self.read_only else 0o644
        ns = int(mtime * 1e9)
        return {
            "st_mode": stat.S_IFREG | mode,
            "st_nlink": 1,
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_blksize": BLOCK,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_mtime": ns,
            "st_atime": ns,
            "st_ctime": int((ctime or mtime) * 1e9),
        }

    def _dir_attrs(self, mtime: float) -> dict[str, Any]:
        mode = 0o555 if self.read_only else 0o755
        ns = int(mtime * 1e9)
        return {
            "st_mode": stat.S_IFDIR | mode,
            "st_nlink": 2,
            "st_size": 0,
            "st_blksize": BLOCK,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_mtime": ns,
            "st_atime": ns,
            "st_ctime": ns,
        }

    def _attrs_of(self, info: dict[str, Any]) -> dict[str, Any]:
        mtime = None
        for key in ("modified", "mtime", "LastModified", "last_modified", "created"):
            mtime = epoch_seconds(info.get(key))
            if mtime is not None:
                break
        if mtime is None:
            mtime = self.mounted_at
        if info.get("type") == "directory":
            return self._dir_attrs(mtime)
        return self._file_attrs(int(info.get("size") or 0), mtime)

    # -------------------------------------------------------------- lifecycle
    def init(self, path: str) -> None:
        """Called by libfuse once the kernel has answered INIT: the mount is usable."""
        log.info("mounted %r (root %r)", self.fs, self.root)
        if self.ready is not None:
            self.ready.set()

    def destroy(self, path: str) -> None:
        """Unmounting: upload whatever is still dirty (files open when the mount goes away)."""
        with self._lock:
            spools = list(self._spools.values())
        for spool in spools:
            with contextlib.suppress(OSError):
                self._upload(spool, "unmount")

    # ------------------------------------------------------------- metadata
    @_operation
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        if path is None:
            # an open file that was unlinked (hard_remove): only its handle is left
            handle = self._handles.get(fh) if fh is not None else None
            if handle is None or handle.spool is None or not handle.spool.loaded:
                raise _fuse_error(errno.ENOENT)
            return self._file_attrs(handle.spool.size(), handle.spool.mtime or handle.spool.changed_at)
        if path == "/":
            return self._dir_attrs(self.mounted_at)
        with self._lock:
            spool = self._spools.get(path)
        if spool is not None and not spool.unlinked:
            if spool.loaded:
                return self._file_attrs(spool.size(), spool.mtime or spool.changed_at)
            attrs = self._attrs_of(self._lookup(path))
            if spool.mtime is not None:
                attrs["st_mtime"] = attrs["st_atime"] = int(spool.mtime * 1e9)
            return attrs
        return self._attrs_of(self._lookup(path))

    @_operation
    def readdir(self, path: str, fh: int) -> list[str]:
        """List a folder: from the cache, but re-listed from the server at most every ``listing_ttl``
        seconds, so that ``ls`` shows changes made elsewhere (lookups never re-list)."""
        now = time.monotonic()
        refresh = now - self._listed_at.get(path, -1e9) > self.listing_ttl
        entries = self._listing(path, refresh=refresh)
        if refresh:
            self._listed_at[path] = now
        names = [posixpath.basename(str(e["name"]).rstrip("/")) for e in entries]
        with self._lock:
            pending = [
                posixpath.basename(p)
                for p, s in self._spools.items()
                if posixpath.dirname(p) == path.rstrip("/") or (path == "/" and posixpath.dirname(p) == "/")
                if not s.unlinked
            ]
        seen = set(names)
        names.extend(n for n in pending if n not in seen)
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
        with self._lock:
            spool = self._spools.get(path)
        if spool is not None:
            with spool.lock:
                spool.mtime = mtime
                spool.dirty = True
            return 0
        if path == "/" or self._lookup(path).get("type") == "directory":
            # Box keeps no settable time on folders; refusing would make ``rsync -a`` and
            # ``cp -a`` fail (exit 23) for a time nobody can store.  Accepted, like chmod.
            return 0
        set_modified = getattr(self.fs, "set_modified", None)
        if set_modified is None:
            raise _fuse_error(errno.EPERM)
        set_modified(self.remote(path), datetime.fromtimestamp(mtime, tz=timezone.utc))
        self._invalidate(path)
        return 0

    # ------------------------------------------------------- namespace changes
    @_operation
    def mkdir(self, path: str, mode: int) -> int:
        self._check_writable()
        self._check_new_name(path)
        try:
            self.fs.mkdir(self.remote(path), create_parents=False)
        finally:
            self._invalidate(path)
        return 0

    @_operation
    def rmdir(self, path: str) -> int:
        self._check_writable()
        try:
            self.fs.rmdir(self.remote(path))
        finally:
            self._invalidate(path)
        return 0

    @_operation
    def unlink(self, path: str) -> int:
        self._check_writable()
        with self._lock:
            spool = self._spools.get(path)
            if spool is not None:
                spool.unlinked = True
                del self._spools[path]
        try:
            self.fs.rm(self.remote(path))
        except FileNotFoundError:
            if spool is None:  # neither remote nor pending: a real ENOENT
                raise
        finally:
            self._invalidate(path)
        return 0

    @_operation
    def rename(self, old: str, new: str) -> int:
        """Server-side move; a POSIX rename replaces an existing target (an empty folder is removed first)."""
        self._check_writable()
        self._check_new_name(new)
        with self._lock:
            spool = self._spools.get(old)
        try:
            src = self._lookup(old)
        except FileNotFoundError:
            if spool is None:
                raise
            src = None  # only pending locally: the upload will go to the new name
        if src is not None:
            is_dir = src.get("type") == "directory"
            try:
                dst = self._lookup(new)
            except FileNotFoundError:
                dst = None
            if dst is not None and dst.get("name") == src.get("name"):
                dst = None  # the same item under another case ("a.txt" -> "A.txt" on Box)
            if dst is not None:
                dst_dir = dst.get("type") == "directory"
                if dst_dir and not is_dir:
                    raise _fuse_error(errno.EISDIR)
                if is_dir and not dst_dir:
                    raise _fuse_error(errno.ENOTDIR)
                if dst_dir:
                    self.fs.rmdir(self.remote(new))  # ENOTEMPTY when it holds anything
                # a file target is replaced by fs.mv itself (BoxFileSystem puts the new file beside the
                # old one before deleting it, so a failure never loses both)
            try:
                if is_dir:
                    self.fs.mv(self.remote(old), self.remote(new), recursive=True)
                else:
                    self.fs.mv(self.remote(old), self.remote(new))
            finally:
                self._invalidate(old, new)
        with self._lock:
            replaced = self._spools.pop(new, None)
            if replaced is not None and replaced is not spool:
                replaced.unlinked = True  # a file being written at the target was replaced
            if spool is not None and self._spools.get(old) is spool:
                del self._spools[old]
                spool.path = new
                self._spools[new] = spool
        if src is not None and src.get("type") == "directory":
            self._rename_spools_under(old, new)
        return 0

    def _rename_spools_under(self, old: str, new: str) -> None:
        """Files open for writing inside a renamed folder upload to their new place."""
        prefix = old.rstrip("/") + "/"
        with self._lock:
            for path in [p for p in self._spools if p.startswith(prefix)]:
                spool = self._spools.pop(path)
                spool.path = new.rstrip("/") + "/" + path[len(prefix) :]
                self._spools[spool.path] = spool

    # --------------------------------------------------------------- file data
    @_operation
    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        """A new file: an empty spool, uploaded on close even if nothing is written (``touch``)."""
        self._check_writable()
        self._check_new_name(path)
        spool, _ = self._attach_spool(path)
        with spool.lock:
            os.ftruncate(spool.fd, 0)
            spool.loaded = True
            spool.dirty = True
            spool.unlinked = False
            spool.changed_at = time.time()
        return self._new_fh(_Handle(path, flags, spool=spool))

    @_operation
    def open(self, path: str, flags: int) -> int:
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writing:
            self._check_writable()
            spool, _ = self._attach_spool(path)
            try:
                if flags & os.O_TRUNC:
                    with spool.lock:
                        os.ftruncate(spool.fd, 0)
                        spool.loaded = True
                        spool.dirty = True
                        spool.changed_at = time.time()
            except BaseException:
                self._detach_spool(spool)
                raise
            return self._new_fh(_Handle(path, flags, spool=spool))
        with self._lock:
            spool = self._spools.get(path)
            if spool is not None:
                spool.refs += 1
        if spool is not None:
            return self._new_fh(_Handle(path, flags, spool=spool))
        reader = self.fs.open(
            self.remote(path), "rb", block_size=self.read_block_size, cache_type="readahead"
        )
        return self._new_fh(_Handle(path, flags, reader=reader))

    @_operation
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        handle = self._handle(fh)
        if handle.spool is not None:
            spool = handle.spool
            with spool.lock:
                if not spool.loaded:
                    self._load(spool)
                return os.pread(spool.fd, size, offset)
        with handle.lock:
            handle.reader.seek(offset)
            return handle.reader.read(size)

    @_operation
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        handle = self._handle(fh)
        spool = handle.spool
        if spool is None:
            raise _fuse_error(errno.EBADF)
        with spool.lock:
            if not spool.loaded:
                self._load(spool)
            if handle.flags & os.O_APPEND:
                offset = spool.size()
            view = memoryview(data)
            while view:
                written = os.pwrite(spool.fd, view, offset)
                view = view[written:]
                offset += written
            spool.dirty = True
            spool.changed_at = time.time()
        return len(data)

    @_operation
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self._check_writable()
        if path is None:  # ftruncate of an unlinked file: mfusepy does not pass its handle
            raise _fuse_error(errno.ENOENT)
        with self._lock:
            spool = self._spools.get(path)
            if spool is not None:
                spool.refs += 1
        if spool is None:
            # Not open anywhere: ``truncate -s`` on a closed file rewrites it right away.
            spool, _ = self._attach_spool(path)
            try:
                if length:
                    self._load(spool)
                with spool.lock:
                    os.ftruncate(spool.fd, length)
                    spool.loaded = True
                    spool.dirty = True
                self._upload(spool, "truncate")
            finally:
                self._detach_spool(spool)
            return 0
        try:
            if length:
                self._load(spool)
            with spool.lock:
                os.ftruncate(spool.fd, length)
                spool.loaded = True
                spool.dirty = True
                spool.changed_at = time.time()
        finally:
            self._detach_spool(spool)
        return 0

    @_operation
    def flush(self, path: str, fh: int) -> int:
        """Called on every ``close(2)``: upload now so that a failure reaches the application."""
        handle = self._handle(fh)
        if handle.spool is not None:
            self._upload(handle.spool, "close")
        return 0

    @_operation
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        handle = self._handle(fh)
        if handle.spool is not None:
            self._upload(handle.spool, "fsync")
        return 0

    @_operation
    def release(self, path: str, fh: int) -> int:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is None:
            raise _fuse_error(errno.EBADF)
        if handle.reader is not None:
            with handle.lock, contextlib.suppress(Exception):
                handle.reader.close()
            return 0
        spool = handle.spool
        assert spool is not None
        try:
            self._upload(spool, "release")
        finally:
            self._detach_spool(spool)
        return 0


# ------------------------------------------------------------------ mounting
def _fuse_class() -> type:
    """mfusepy's FUSE class, with a ``utimens`` that understands ``UTIME_NOW``/``UTIME_OMIT``.

    mfusepy folds the timespec into one number, which loses these two markers (``touch`` of
    an existing file sends ``UTIME_NOW``); this subclass hands ``(atime_ns, mtime_ns)`` with
    ``None`` for "leave unchanged" instead.
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
    listing_ttl: float = LISTING_TTL,
    timeout: float = 30.0,
    **fuse_options: Any,
) -> MountHandle | None:
    """Mount ``fs`` (below ``root``) at ``mountpoint``.

    ``foreground=True`` serves in the calling thread until the mount is unmounted
    (``fusermount3 -u`` / :func:`unmount` / Ctrl-C) and returns ``None``.  ``foreground=False``
    serves from a daemon thread of this process and returns a :class:`MountHandle` once the
    mount is usable (the Python process is never forked: that would break the filesystem's
    threads and connections).  ``ready`` is set as soon as the kernel has accepted the mount.
    ``spool_dir`` holds files being written until they are uploaded (default: the temp dir);
    ``listing_ttl`` is how often (seconds) ``ls`` of a folder re-lists it from the server.
    Extra keyword arguments are libfuse ``-o`` options (e.g. ``allow_other=True``).
    """
    mountpoint = os.path.abspath(mountpoint)
    if not os.path.isdir(mountpoint):
        raise NotADirectoryError(errno.ENOTDIR, "mount point is not a directory", mountpoint)
    ready = ready or threading.Event()
    ops = BoxFuseOperations(
        fs, root, read_only=read_only, spool_dir=spool_dir, ready=ready, listing_ttl=listing_ttl
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
