"""The spool folder: one private folder per local account and Box user, where large uploads keep files.

What lives there: a writer's *spool file* (``<random>.spool``, its content past ``spool_threshold``,
:mod:`boxfs.upload.buffers`), an upload's *resume state* (``<key>.json``, :mod:`boxfs.upload.resume`) and
the *lock* of a running upload (``<key>.lock``, :class:`PathLock`). Cleaning them is
:mod:`boxfs.upload.cleaning`.

Layout: ``<root>/<acting user id>/``. The root is ``spool_dir`` when given, else the platform temp dir +
``boxfs-<local uid>``: named after the local account, so the first account to spool never locks the others
out. A writer holds an exclusive ``flock`` on its spool file for as long as it is open, and a running
upload one on ``<key>.lock``, so a cleaner (in this or any process) can tell live files from orphans.

Why so careful: ``/tmp`` is shared with every local account. The root must be a real folder (not a
symlink) owned by this account and writable by no one else, else it is refused with a message saying what
is wrong; the user folder is opened once, without following links, and everything in it is reached
relative to that descriptor (``dir_fd``, ``O_NOFOLLOW``, ``O_EXCL`` when creating), never by looking a
path up again.

Locks are ``fcntl.flock`` locks, which the kernel drops when their owner dies (even by SIGKILL), so no pid
files can go stale. On platforms without ``fcntl`` the locks are no-ops and cleaning is by age only.
"""

from __future__ import annotations

import errno
import getpass
import logging
import os
import re
import secrets
import stat
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

try:  # POSIX; elsewhere the spool works without cross-process locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

logger = logging.getLogger("boxfs")

LOCK_SUFFIX = ".lock"
SPOOL_SUFFIX = ".spool"

_SPOOL_NAME = re.compile(r"[0-9a-f]{24}\.spool")
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_OPEN_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def is_spool_name(name: object) -> bool:
    """Whether ``name`` has the form boxfs gives spool files (a name read back from disk is untrusted)."""
    return isinstance(name, str) and _SPOOL_NAME.fullmatch(name) is not None


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

