"""The per-user spool folder: where large writes wait on disk, and where resumable uploads keep state.

Why a spool at all: a writer (``fs.open(path, "wb")``, an FTP ``STOR``, a FUSE ``write``) does not know the
final size, but a Box chunked upload session must be created with the size, takes parts of a size Box
chooses, and wants the whole file's SHA1 at commit. So a writer keeps its bytes in memory up to
``fs.spool_threshold`` and, past it, spills everything to a spool file; the upload starts on ``close``.

Layout: ``<spool_dir>/<acting user id>/`` (``spool_dir`` defaults to the platform temp dir + ``boxfs``),
created 0700 and refused if another local account owns it; every file in it is 0600. In it:

* ``<random>.spool``: the content of one writer. The writer holds an exclusive ``flock`` on it for as
  long as it is open, so a cleaner (in this or any process) can tell a live spool from an orphan.
* ``<key>.json``: the resume state of one large upload (session id and endpoints, size, part size, SHA1
  of the content, parts done, where the content is). ``<key>`` is derived from the destination and the
  content's SHA1, so running the same upload again finds it.
* ``<key>.lock``: held (``flock``) by the process running that upload; nothing is deleted under it.

Locks are ``fcntl.flock`` locks, which the kernel drops when their owner dies (even by SIGKILL), so no pid
files can go stale. On platforms without ``fcntl`` the locks are no-ops and cleaning is by age only.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

try:  # POSIX; elsewhere the spool works without cross-process locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from boxfs.upload import WriteBuffer

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

logger = logging.getLogger("boxfs")

#: Files in the spool folder untouched for this long (seconds) and not in use are removed automatically.
DEFAULT_SPOOL_MAX_AGE = 24 * 3600.0
STATE_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"
SPOOL_SUFFIX = ".spool"

_auto_cleaned: set[str] = set()
_auto_lock = threading.Lock()


def _opener_0600(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


# ------------------------------------------------------------------------------------------- folders
def spool_root(fs: BoxFileSystem) -> Path:
    """``fs.spool_dir``, or the platform temp dir + ``boxfs``."""
    return Path(fs.spool_dir) if fs.spool_dir else Path(tempfile.gettempdir()) / "boxfs"


def _ensure_private_dir(path: Path) -> None:
    """Create ``path`` 0700, or check an existing one is a real folder of ours, and make it 0700."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"the boxfs spool folder {path} is not a folder (a symlink or file is in the way)")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(errno.EACCES, f"the boxfs spool folder {path} belongs to another local account; "
                                            "set spool_dir to a folder of your own")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def user_spool_dir(fs: BoxFileSystem) -> Path:
    """``<spool_dir>/<acting user id>/``, created 0700 when missing.

    Keyed by the Box user the filesystem acts as, so two users served by one process (an FTP server)
    never share a folder and never see each other's data.
    """
    root = spool_root(fs)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = root / str(fs.user_id)
    _ensure_private_dir(folder)
    return folder


# --------------------------------------------------------------------------------------------- locks
def try_lock_fd(fd: int) -> bool:
    """Take an exclusive, non-blocking flock on ``fd``; False when another open file description has it."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class PathLock:
    """An exclusive lock owned by one upload, as a ``<key>.lock`` file with a flock on it.

    The file holds the owner's pid for people looking at the folder; the lock itself is the flock, so a
    killed owner never leaves a lock that blocks anyone. Released by deleting the file while still
    holding it; :meth:`acquire` re-checks the inode so a lock taken on a just-deleted file is not trusted.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when this process now owns the lock; False when a live process does."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            if not try_lock_fd(fd):
                os.close(fd)
                return False
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return True
            os.close(fd)  # the file was deleted by its previous owner as we locked it: try again

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, remove: bool = True) -> None:
        if self._fd is None:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self._fd)
        self._fd = None


# ----------------------------------------------------------------------------------------- state files
def state_key(*, user_id: str, parent_id: str, name: str, file_id: str | None, size: int, sha1: str) -> str:
    """The name of an upload's state file: same destination and same content give the same key."""
    ident = f"{user_id}|{parent_id}|{name.casefold()}|{file_id or ''}|{size}|{sha1}"
    return hashlib.sha1(ident.encode()).hexdigest()[:32]


def write_state(folder: Path, key: str, state: dict[str, Any]) -> Path:
    """Atomically replace ``<key>.json`` (written 0600 next to it, then renamed)."""
    target = folder / f"{key}{STATE_SUFFIX}"
    tmp = folder / f"{key}.{secrets.token_hex(4)}.tmp"
    with open(tmp, "x", encoding="utf-8", opener=_opener_0600) as fh:
        json.dump(state, fh)
    os.replace(tmp, target)
    return target


def read_state(folder: Path, key: str) -> dict[str, Any] | None:
    path = folder / f"{key}{STATE_SUFFIX}"
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable upload state %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def remove_state(folder: Path, key: str) -> None:
    try:
        os.unlink(folder / f"{key}{STATE_SUFFIX}")
    except FileNotFoundError:
        pass


def _inside(folder: Path, candidate: str | None) -> Path | None:
    """``candidate`` as a path when it is a file directly in ``folder`` (never delete anything else)."""
    if not candidate:
        return None
    path = Path(candidate)
    return path if path.parent == folder else None


def _remove_spool_file(path: Path) -> bool:
    """Delete a spool file unless a live writer holds it; True when it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        if not try_lock_fd(fd):
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- cleaning
def clean_spool(fs: BoxFileSystem, older_than: float | None = None, abort_sessions: bool = True) -> list[str]:
    """Remove from the acting user's spool folder what no live upload owns and nothing can resume.

    * state files whose Box session has expired, with the spool file they keep;
    * anything (state, spool, lock, temp) untouched for ``older_than`` seconds (default
      ``DEFAULT_SPOOL_MAX_AGE``; ``0`` means everything not in use). An unexpired session given up this
      way is aborted on Box (``abort_sessions``) so its parts do not linger there either.

    Files locked by a running upload or an open writer, in any process, are never touched.
    Returns the paths removed.
    """
    max_age = DEFAULT_SPOOL_MAX_AGE if older_than is None else float(older_than)
    folder = user_spool_dir(fs)
    now = time.time()
    removed: list[str] = []
    referenced: set[Path] = set()

    def age(path: Path) -> float:
        try:
            return now - path.stat().st_mtime
        except FileNotFoundError:
            return -1.0

    for state_path in sorted(folder.glob(f"*{STATE_SUFFIX}")):
        key = state_path.name[: -len(STATE_SUFFIX)]
        lock = PathLock(folder / f"{key}{LOCK_SUFFIX}")
        if not lock.acquire():
            st = read_state(folder, key) or {}
            spool = _inside(folder, st.get("spool"))
            if spool is not None:
                referenced.add(spool)
            continue
        try:
            state = read_state(folder, key) or {}
            expired = bool(state.get("session_id")) and float(state.get("expires_at") or 0) <= now
            stale = age(state_path) >= max_age
            spool = _inside(folder, state.get("spool"))
            if not (expired or stale):
                if spool is not None:
                    referenced.add(spool)
                continue
            if state.get("session_id") and not expired and abort_sessions:
                _abort_quietly(fs, state)
            if spool is not None:
                if _remove_spool_file(spool):
                    removed.append(str(spool))
                else:
                    referenced.add(spool)
            remove_state(folder, key)
            removed.append(str(state_path))
            logger.info("removed %s upload state %s", "expired" if expired else "stale", state_path)
        finally:
            lock.release(remove=True)

    for path in sorted(folder.iterdir()):
        if path in referenced or path.suffix == STATE_SUFFIX or age(path) < max_age:
            continue
        if path.suffix == SPOOL_SUFFIX:
            if _remove_spool_file(path):
                removed.append(str(path))
        elif path.suffix == LOCK_SUFFIX:
            lock = PathLock(path)
            if lock.acquire():
                lock.release(remove=True)
                removed.append(str(path))
        elif path.suffix == ".tmp":
            path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed


def _abort_quietly(fs: BoxFileSystem, state: dict[str, Any]) -> None:
    url = (state.get("session_endpoints") or {}).get("abort")
    if not url:
        return
    try:
        fs.transport.request("DELETE", url, action="abort upload session")
    except (OSError, ValueError) as exc:  # gone already or unreachable: it expires on its own
        logger.debug("aborting upload session %s: %s", state.get("session_id"), exc)


def auto_clean(fs: BoxFileSystem) -> None:
    """Clean the user's spool folder by age once per process (cheap: one directory listing)."""
    max_age = float(getattr(fs, "spool_max_age", DEFAULT_SPOOL_MAX_AGE))
    folder = str(spool_root(fs) / str(fs.user_id))
    with _auto_lock:
        if folder in _auto_cleaned:
            return
        _auto_cleaned.add(folder)
    try:
        removed = clean_spool(fs, older_than=max_age)
    except OSError as exc:
        logger.warning("could not clean the spool folder %s: %s", folder, exc)
        return
    if removed:
        logger.info("spool cleanup removed %d old files from %s", len(removed), folder)


# ------------------------------------------------------------------------------------ writer buffers
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
        self.name = name
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
        from boxfs.chunked import preflight_writer

        preflight_writer(self.fs, self.target, size_so_far)
        auto_clean(self.fs)
        folder = user_spool_dir(self.fs)
        self.path = folder / f"{secrets.token_hex(12)}{SPOOL_SUFFIX}"
        fh = open(self.path, "x+b", opener=_opener_0600)  # noqa: SIM115 - lives as long as the writer
        if not try_lock_fd(fh.fileno()):  # pragma: no cover - a fresh random name
            fh.close()
            raise OSError(errno.EBUSY, f"spool file {self.path} is locked by another process")
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
        if self.path is not None:
            try:
                os.unlink(self.path)  # while still holding the lock
            except FileNotFoundError:
                pass
        try:
            fh.close()
        except OSError:  # flushing what a full disk refused: the file is gone anyway
            pass

    def close(self) -> None:
        """Drop the content; a spool file kept for resume (after a failed upload) stays on disk."""
        if self._fh is not None and self.keep:
            logger.info("%s: spool file %s kept for resume", self.target, self.path)
            self._fh.close()
            self._fh = None
        else:
            self._discard_file()
        self._mem = None
        self._buf = io.BytesIO()
