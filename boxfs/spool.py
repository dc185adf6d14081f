"""The per-user spool folder: where large writes wait on disk, and where resumable uploads keep state.

Why a spool at all: a writer (``fs.open(path, "wb")``, an FTP ``STOR``, a FUSE ``write``) does not know the
final size, but a Box chunked upload session must be created with the size, takes parts of a size Box
chooses, and wants the whole file's SHA1 at commit. So a writer keeps its bytes in memory up to
``fs.spool_threshold`` and, past it, spills everything to a spool file; the upload starts on ``close``.

Layout: ``<root>/<acting user id>/``. The root is ``spool_dir`` when given, else the platform temp dir +
``boxfs-<local uid>``: named after the local account, so the first account to spool never locks the others
out. In it:

* ``<random>.spool``: the content of one writer. The writer holds an exclusive ``flock`` on it for as
  long as it is open, so a cleaner (in this or any process) can tell a live spool from an orphan.
* ``<key>.json``: the resume state of one large upload (session id, the upload host it belongs to, size,
  part size, SHA1 of the content, parts done, the name of its spool file). ``<key>`` is derived from the
  destination and the content's SHA1, so running the same upload again finds it.
* ``<key>.lock``: held (``flock``) by the process running that upload; nothing is deleted under it.

Why so careful: ``/tmp`` is shared with every local account. The root must be a real folder (not a
symlink) owned by this account and writable by no one else, else it is refused with a message saying what
is wrong; the user folder is opened once, without following links, and everything in it is reached
relative to that descriptor (``dir_fd``, ``O_NOFOLLOW``, ``O_EXCL`` when creating), never by looking a
path up again. What is read back (state files) is untrusted: it is size-capped, must be a regular file
of ours, and the session it names is only ever contacted at the configured upload host (see
:func:`session_url`), never at a URL read from disk.

Locks are ``fcntl.flock`` locks, which the kernel drops when their owner dies (even by SIGKILL), so no pid
files can go stale. On platforms without ``fcntl`` the locks are no-ops and cleaning is by age only.
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import io
import json
import logging
import os
import re
import secrets
import stat
import tempfile
import threading
import time
import weakref
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
#: The resume-state format; a state of another version is not resumed (it is cleaned by age).
STATE_VERSION = 2
#: A state file larger than this is not ours (a real one is a few KiB even for thousands of parts).
MAX_STATE_BYTES = 4 << 20

_SPOOL_NAME = re.compile(r"[0-9a-f]{24}\.spool")
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_OPEN_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)

#: How often (seconds) a process that keeps spooling cleans a user's folder by age again: a server or a
#: mount runs for weeks, and the spool files its failed uploads keep must not stay until it restarts.
AUTO_CLEAN_INTERVAL = 3600.0

_auto_cleaned: dict[str, float] = {}
_auto_lock = threading.Lock()


def _local_account() -> str:
    """What names this local account in the default root: the uid (POSIX), else the login."""
    return str(os.getuid()) if hasattr(os, "getuid") else getpass.getuser()


def _refused(path: Path | str, why: str, code: int = errno.EACCES) -> OSError:
    return OSError(code, f"the boxfs spool folder {path} {why}; boxfs does not use it. Remove it, or set "
                         "spool_dir to a folder of your own")


# ------------------------------------------------------------------------------------------- folders
def spool_root(fs: BoxFileSystem) -> Path:
    """``fs.spool_dir``, or the platform temp dir + ``boxfs-<local account>``."""
    return Path(fs.spool_dir) if fs.spool_dir else Path(tempfile.gettempdir()) / f"boxfs-{_local_account()}"


def _open_private_dir(name: str | Path, *, dir_fd: int | None, shown: Path, shared_parent: bool) -> int:
    """Create (0700) or open the folder ``name``, without following a link, and check it is ours.

    ``shared_parent``: the folder sits where other accounts may write (the root in ``/tmp``), so a mode
    that lets others write in it is refused; below a checked root, only we could have loosened it, and
    it is tightened to 0700 instead.
    """
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        created = True
    except FileExistsError:
        created = False
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refused(shown, "is a symbolic link or not a folder", errno.ENOTDIR) from None
        raise
    try:
        st = os.fstat(fd)
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise _refused(shown, f"belongs to another local account (uid {st.st_uid}), not to this one "
                                  f"(uid {os.getuid()})")
        mode = stat.S_IMODE(st.st_mode)
        if shared_parent and not created and mode & 0o022:
            raise _refused(shown, f"can be written by other local accounts (mode {mode:04o}; it must be 0700)")
        if mode != 0o700 and (created or not shared_parent):
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


class SpoolFolder:
    """One user's spool folder, held open: every entry is reached relative to its descriptor.

    The descriptor is closed when the last holder (a writer, an upload, a cleaning) lets go, so an
    entry is never opened relative to a descriptor that was closed and reused. ``path`` is for
    messages and for callers that hand a path to a person; it is never used to reach an entry.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self._ident = (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
        self._close = weakref.finalize(self, os.close, fd)

    def close(self) -> None:
        """Let go of the folder (once; also done when the object is collected)."""
        self._close()

    def __enter__(self) -> SpoolFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SpoolFolder({str(self.path)!r})"

    def show(self, name: str) -> str:
        """The path of entry ``name``, for messages and errors."""
        return str(self.path / name)

    def create(self, name: str) -> int:
        """A new file, 0600, that must not exist yet (``O_EXCL``: never a planted file or link)."""
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600, dir_fd=self.fd)

    def open_file(self, name: str, flags: int = os.O_RDONLY, *, create: bool = False) -> int | None:
        """An existing regular file of ours (or created 0600 with ``create``); None when missing.

        A link, a FIFO, a device or a file of another account raises: nothing of that kind is ours. So
        does a hard link (a file with more than one name): writing to it (a lock writes its pid) would
        change the file it shares its content with, somewhere else.
        """
        if create:
            flags |= os.O_CREAT
        try:
            fd = os.open(name, flags | _OPEN_FLAGS, 0o600, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, f"{self.show(name)} is a symbolic link; boxfs never follows links "
                                           "in its spool folder") from None
            raise
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1
                or (hasattr(os, "getuid") and st.st_uid != os.getuid())):
            os.close(fd)
            raise OSError(errno.EPERM, f"{self.show(name)} is not a regular file of this account with one name; "
                                       "boxfs leaves it alone")
        return fd

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def unlink(self, name: str) -> None:
        """Remove the entry itself (a link is removed, never what it points to)."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def name_of(self, path: str | os.PathLike[str] | None) -> str | None:
        """The entry name when ``path`` (a file a caller gave us) lies directly in this folder, else None."""
        if not path:
            return None
        parent, name = os.path.split(os.path.abspath(path))
        try:
            st = os.stat(parent)
        except OSError:
            return None
        return name if (st.st_dev, st.st_ino) == self._ident else None


def _make_parents(path: Path) -> None:
    """Create the missing folders above a ``spool_dir`` 0700, whatever the umask: ``mkdir -p`` semantics
    (``Path.mkdir(parents=True)``) made them ``0777 & ~umask``, world-writable under umask 000, and in a
    folder others can write in, another account can rename the spool root away or put a link in its place."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass


def _fallback_root(fs: BoxFileSystem, refused: OSError) -> Path | None:
    """Where to spool when the default root in the shared temp dir is refused (another account made
    ``<tmp>/boxfs-<uid>`` first, as a folder or a link: in a sticky ``/tmp`` this account cannot remove
    it, and would be locked out of large uploads for good): the account's own cache folder,
    ``$XDG_CACHE_HOME/boxfs/spool`` or ``~/.cache/boxfs/spool``. None when ``spool_dir`` was given (the
    operator's choice is refused, not replaced) or for other failures."""
    if fs.spool_dir or refused.errno not in (errno.EACCES, errno.EPERM, errno.ENOTDIR):
        return None
    try:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except (KeyError, RuntimeError):  # no home directory to fall back to
        return None
    return cache / "boxfs" / "spool" if cache.is_absolute() else None


def user_spool_dir(fs: BoxFileSystem) -> SpoolFolder:
    """``<root>/<acting user id>/``, created 0700 when missing, checked, and held open.

    Keyed by the Box user the filesystem acts as, so two users served by one process (an FTP server)
    never share a folder and never see each other's data. Each operation (a writer, an upload, a
    cleaning) opens the folder once and reaches everything through that descriptor; nothing holds it
    open after (a spool folder on a removable or tmpfs mount stays unmountable).
    """
    root = spool_root(fs)
    user = str(fs.user_id)
    if not _FOLDER_NAME.fullmatch(user) or user in (".", ".."):
        raise ValueError(f"unexpected Box user id {user!r} for a spool folder name")
    try:
        _make_parents(root.parent)
        root_fd = _open_private_dir(root, dir_fd=None, shown=root, shared_parent=True)
    except OSError as exc:
        fallback = _fallback_root(fs, exc)
        if fallback is None:
            raise
        try:
            _make_parents(fallback.parent)
            root_fd = _open_private_dir(fallback, dir_fd=None, shown=fallback, shared_parent=True)
        except OSError:
            raise exc from None  # the refusal of the default root is what the user must read
        logger.warning("%s; spooling in %s instead", exc, fallback)
        root = fallback
    try:
        fd = _open_private_dir(user, dir_fd=root_fd, shown=root / user, shared_parent=False)
    finally:
        os.close(root_fd)
    return SpoolFolder(fd, root / user)


def create_spool_file(fs: BoxFileSystem) -> tuple[SpoolFolder, str, BinaryIO]:
    """A new spool file (0600, random name) in the acting user's folder, locked for as long as it is open.

    Returns the folder (held open: unlink the entry through it, then close both), the entry's name and
    the file. The lock tells cleaners in every process that a writer still owns it; once its process is
    gone (even killed), ``clean_spool`` and the periodic cleaners remove it by age.
    """
    folder = user_spool_dir(fs)
    name = f"{secrets.token_hex(12)}{SPOOL_SUFFIX}"
    try:
        fh = os.fdopen(folder.create(name), "w+b")
    except BaseException:
        folder.close()
        raise
    if not try_lock_fd(fh.fileno()):  # pragma: no cover - a fresh random name
        fh.close()
        folder.close()
        raise OSError(errno.EBUSY, f"spool file {folder.show(name)} is locked by another process")
    return folder, name, fh


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
    The file is opened in the folder without following links: a link planted in its place is refused.
    """

    def __init__(self, folder: SpoolFolder, name: str) -> None:
        self.folder = folder
        self.name = name
        self._fd: int | None = None

    @property
    def path(self) -> str:
        return self.folder.show(self.name)

    def acquire(self) -> bool:
        """True when this process now owns the lock; False when a live process does."""
        bad_entries = 0
        while True:
            try:
                fd = self.folder.open_file(self.name, os.O_RDWR, create=True)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.EPERM) or bad_entries >= 2:
                    raise
                # not a lock of ours (a link, a FIFO, another account's file): remove the entry itself
                logger.warning("removing %s: %s", self.path, exc)
                self.folder.unlink(self.name)
                bad_entries += 1
                continue
            assert fd is not None
            if not try_lock_fd(fd):
                os.close(fd)
                return False
            now = self.folder.lstat(self.name)
            if now is not None and now.st_ino == os.fstat(fd).st_ino:
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
            self.folder.unlink(self.name)
        os.close(self._fd)
        self._fd = None


# ----------------------------------------------------------------------------------------- state files
def state_key(*, user_id: str, parent_id: str, name: str, file_id: str | None, size: int, sha1: str) -> str:
    """The name of an upload's state file: same destination and same content give the same key."""
    ident = f"{user_id}|{parent_id}|{name.casefold()}|{file_id or ''}|{size}|{sha1}"
    return hashlib.sha1(ident.encode()).hexdigest()[:32]


def write_state(folder: SpoolFolder, key: str, state: dict[str, Any]) -> str:
    """Atomically replace ``<key>.json`` (written 0600 next to it under a new name, then renamed)."""
    tmp = f"{key}.{secrets.token_hex(4)}.tmp"
    fd = folder.create(tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        folder.replace(tmp, f"{key}{STATE_SUFFIX}")
    except BaseException:
        folder.unlink(tmp)
        raise
    return folder.show(f"{key}{STATE_SUFFIX}")


def read_state(folder: SpoolFolder, key: str) -> dict[str, Any] | None:
    """The state ``<key>.json`` as a dict, or None when missing or not a state file of ours.

    Untrusted: a caller checks every field it uses (:func:`session_of`, :func:`spool_name_of`).
    """
    name = f"{key}{STATE_SUFFIX}"
    try:
        fd = folder.open_file(name)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
        data = json.loads(raw)
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
        logger.warning("ignoring unreadable upload state %s: %s", folder.show(name), exc)
        return None
    return data if isinstance(data, dict) else None


def remove_state(folder: SpoolFolder, key: str) -> None:
    """Remove ``<key>.json`` and any ``<key>.*.tmp`` a process killed inside :func:`write_state` left."""
    folder.unlink(f"{key}{STATE_SUFFIX}")
    for name in folder.names():
        if name.startswith(f"{key}.") and name.endswith(".tmp"):
            folder.unlink(name)


def session_url(fs: BoxFileSystem, session_id: str, tail: str = "") -> str:
    """The URL of an upload session (``tail``: ``/commit``, ``/parts``), at the configured upload host.

    Built here and only here from the session id, so a token is never sent to a URL read from a file.
    """
    if not _SESSION_ID.fullmatch(session_id):
        raise ValueError(f"not an upload session id: {session_id[:40]!r}")
    return fs.transport.upload_api(f"/files/upload_sessions/{session_id}{tail}")


def session_of(fs: BoxFileSystem, state: dict[str, Any]) -> str | None:
    """The session id a state names, when it may be contacted: the state's format is current, it was
    made against the upload host configured now, and the id has the form of one. Else None (the state
    is not resumed, and its session is never contacted)."""
    sid = state.get("session_id")
    if state.get("version") != STATE_VERSION or not isinstance(sid, str) or not _SESSION_ID.fullmatch(sid):
        return None
    if state.get("upload_url") != fs.transport.endpoints.upload_url:
        return None
    return sid


def spool_name_of(state: dict[str, Any]) -> str | None:
    """The spool file a state keeps its content in, when it has the form of one of ours."""
    name = state.get("spool")
    return name if isinstance(name, str) and _SPOOL_NAME.fullmatch(name) else None


def remove_spool_file(folder: SpoolFolder, name: str) -> bool:
    """Delete a spool file unless a live writer holds it; True when it is gone.

    Anything but a regular file of ours (a link, a FIFO) is simply unlinked: that removes the entry,
    never what it points to.
    """
    try:
        fd = folder.open_file(name)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EPERM):  # out of descriptors, I/O error...: the lock
            return False  # cannot be checked, so a live writer's file is kept
        folder.unlink(name)  # not ours (a link, a FIFO, another account's file): the entry goes
        return True
    if fd is None:
        return True
    try:
        if not try_lock_fd(fd):
            return False
        folder.unlink(name)
        return True
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- cleaning
def _expiry(state: dict[str, Any]) -> float:
    try:
        return float(state.get("expires_at") or 0)
    except (TypeError, ValueError):
        return 0.0


def clean_spool(fs: BoxFileSystem, older_than: float | None = None, abort_sessions: bool = True) -> list[str]:
    """Remove from the acting user's spool folder what no live upload owns and nothing can resume.

    * state files whose Box session has expired, with the spool file they keep;
    * anything (state, spool, lock, temp) untouched for ``older_than`` seconds (default
      ``DEFAULT_SPOOL_MAX_AGE``; ``0`` means everything not in use). An unexpired session given up this
      way is aborted on Box (``abort_sessions``), at the configured upload host only, so its parts do not
      linger there either.

    Files locked by a running upload or an open writer, in any process, are never touched.
    Returns the paths removed.
    """
    max_age = DEFAULT_SPOOL_MAX_AGE if older_than is None else float(older_than)
    with user_spool_dir(fs) as folder:
        return _clean(fs, folder, max_age, abort_sessions)


def _clean(fs: BoxFileSystem, folder: SpoolFolder, max_age: float, abort_sessions: bool) -> list[str]:
    now = time.time()
    removed: list[str] = []
    referenced: set[str] = set()

    def age(name: str) -> float:
        st = folder.lstat(name)
        return -1.0 if st is None else now - st.st_mtime

    for name in folder.names():
        if not name.endswith(STATE_SUFFIX):
            continue
        key = name[: -len(STATE_SUFFIX)]
        lock = PathLock(folder, f"{key}{LOCK_SUFFIX}")
        if not lock.acquire():
            spool = spool_name_of(read_state(folder, key) or {})
            if spool is not None:
                referenced.add(spool)
            continue
        try:
            state = read_state(folder, key) or {}
            session = session_of(fs, state)
            expired = session is not None and _expiry(state) <= now
            stale = age(name) >= max_age
            spool = spool_name_of(state)
            if not (expired or stale):
                if spool is not None:
                    referenced.add(spool)
                continue
            if session is not None and not expired and abort_sessions:
                _abort_quietly(fs, session)
            if spool is not None:
                if remove_spool_file(folder, spool):
                    removed.append(folder.show(spool))
                else:
                    referenced.add(spool)
            remove_state(folder, key)
            removed.append(folder.show(name))
            logger.info("removed %s upload state %s", "expired" if expired else "stale", folder.show(name))
        finally:
            lock.release(remove=True)

    for name in folder.names():
        if name in referenced or name.endswith(STATE_SUFFIX) or age(name) < max_age:
            continue
        if name.endswith(SPOOL_SUFFIX):
            if remove_spool_file(folder, name):
                removed.append(folder.show(name))
        elif name.endswith(LOCK_SUFFIX):
            lock = PathLock(folder, name)
            if lock.acquire():
                lock.release(remove=True)
                removed.append(folder.show(name))
        elif name.endswith(".tmp"):
            folder.unlink(name)
            removed.append(folder.show(name))
    return removed


def _abort_quietly(fs: BoxFileSystem, session_id: str) -> None:
    try:
        fs.transport.request("DELETE", session_url(fs, session_id), action="abort upload session")
    except (OSError, ValueError) as exc:  # gone already or unreachable: it expires on its own
        logger.debug("aborting upload session %s: %s", session_id, exc)


def auto_clean(fs: BoxFileSystem) -> None:
    """Clean the user's spool folder by age when a process first spools for that user, and again at most
    every ``AUTO_CLEAN_INTERVAL`` seconds while it keeps spooling (cheap: one directory listing)."""
    max_age = float(getattr(fs, "spool_max_age", DEFAULT_SPOOL_MAX_AGE))
    folder = str(spool_root(fs) / str(fs.user_id))
    now = time.monotonic()
    with _auto_lock:
        last = _auto_cleaned.get(folder)
        if last is not None and now - last < AUTO_CLEAN_INTERVAL:
            return
        _auto_cleaned[folder] = now
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
        from boxfs.chunked import preflight_writer

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
