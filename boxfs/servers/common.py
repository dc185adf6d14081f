"""Pieces shared by the FTP and SFTP servers: Box filesystem factory, session limits, transfers.

Both servers see a filesystem only through the fsspec ``AbstractFileSystem`` API and the frontend
layer (:mod:`boxfs.frontend`: literal paths, errno by type, stat), so they run unchanged over
``BoxFileSystem`` or any other fsspec filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from boxfs.frontend.cleaning import SpoolCleaner
from boxfs.frontend.errors import PendingLimitError, reason_of
from boxfs.frontend.handles import OpenFiles, WriteHandle
from boxfs.servers.safety import warn_if_loose
from boxfs.servers.users import UserFilesystems

logger = logging.getLogger(__name__)

def enable_server_logging() -> None:
    """Make the servers' audit log (logins, refusals, transfers) visible when run in the foreground.

    A file-transfer server without a login and transfer log is not operable, so ``run_ftp`` and
    ``run_sftp`` turn ``boxfs.servers`` on at INFO unless the application configured that logger
    itself; records then reach whatever handlers the root logger has (one on stderr if none).
    """
    server_logger = logging.getLogger("boxfs.servers")
    if server_logger.level == logging.NOTSET:
        server_logger.setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")


def box_filesystem_factory(
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
    base_urls: Mapping[str, str] | None = None,
    **fs_kwargs: Any,
) -> Callable[[str], Any]:
    """Return ``factory(box_user) -> BoxFileSystem`` acting as that user with one app config.

    The config (JWT JSON text, path or dict) is read once here so that a missing or malformed
    file fails at server start, not at the first login. Without one, the credentials are the
    library's other forms (JWT or CCG fields in ``fs_kwargs``, else the ``BOXFS_*`` environment),
    checked here once for the same reason. Token sharing between the per-user filesystems is the
    filesystem's business (they are all built from the same app config).
    """
    # imported lazily: the servers also run over other filesystems
    from boxfs import BoxFileSystem
    from boxfs.config import resolve_credentials

    if config is None:
        fields = ("client_id", "client_secret", "enterprise_id", "public_key_id", "private_key", "passphrase")
        resolve_credentials(**{key: fs_kwargs[key] for key in fields if key in fs_kwargs})
    elif isinstance(config, os.PathLike) or (isinstance(config, str) and not config.lstrip().startswith("{")):
        warn_if_loose(config, "Box app config (holds the app's private key)")
        with open(config, encoding="utf-8") as fh:
            config = fh.read()

    def factory(box_user: str) -> Any:
        # id paths stay on for homes given as ``id:<folder id>``; a client's own top-level names never
        # become ids (users.backend_path reaches them through the root's id)
        kwargs: dict[str, Any] = {"as_user": box_user, "skip_instance_cache": True}
        if config is not None:
            kwargs["jwt_config"] = config
        if base_urls:
            kwargs["base_urls"] = dict(base_urls)
        kwargs.update(fs_kwargs)
        return BoxFileSystem(**kwargs)

    return factory


def server_filesystems(
    filesystems: UserFilesystems | Callable[[str], Any] | None,
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
    base_urls: Mapping[str, str] | None = None,
) -> UserFilesystems | Callable[[str], Any]:
    """What a ``start_*_server`` serves: the ``filesystems`` given, or Box filesystems from ``config``."""
    if filesystems is not None:
        return filesystems
    if config is None:
        raise ValueError("give filesystems or a Box app config")
    return box_filesystem_factory(config, base_urls)


def set_mtime(fs: Any, path: str, epoch: float) -> None:
    """Set a file's modification time.

    Box only records content_modified_at at upload time, so ``BoxFileSystem.set_modified``
    re-uploads the content with the new time; other filesystems may offer the same method.
    """
    when = datetime.fromtimestamp(epoch, tz=timezone.utc)
    setter = getattr(fs, "set_modified", None)
    if setter is None:
        raise OSError(errno.ENOTSUP, "setting the modification time is not supported here")
    setter(path, when)


class AllUsersSpool:
    """Every Box user's spool a server acts as, cleaned as one (what the layer's cleaner is given).

    :class:`boxfs.frontend.cleaning.SpoolCleaner` cleans one filesystem's spool on a timer; a server
    has one filesystem per Box user that logged in, a set that grows while it runs. A failed large
    upload leaves a full-size spool file (kept so it can resume); on a server that runs for months
    those would pile up until restart.
    """

    def __init__(self, filesystems: UserFilesystems):
        self.filesystems = filesystems

    def __repr__(self) -> str:
        return f"AllUsersSpool({self.filesystems!r})"

    def clean_spool(self, older_than: float | None = None) -> list[str]:
        """``clean_spool`` of each user's filesystem; one user's failure does not stop the others."""
        removed: list[str] = []
        for fs in self.filesystems.all():
            clean = getattr(fs, "clean_spool", None)
            if not callable(clean):
                continue
            try:
                removed += clean(older_than=older_than)
            except Exception as exc:  # noqa: BLE001 - the next pass tries again; serving goes on
                logger.warning("cleaning the spool of %r failed: %s: %s", fs, type(exc).__name__, exc)
        return removed


def spool_cleaner(filesystems: UserFilesystems, interval: float, max_age: float | None) -> SpoolCleaner | None:
    """The layer's periodic cleaner over every user's spool, not started; None when ``interval`` is 0."""
    return SpoolCleaner(AllUsersSpool(filesystems), interval, max_age) if interval > 0 else None


@contextlib.contextmanager
def cleaning(cleaner: SpoolCleaner | None) -> Iterator[None]:
    """Run a server's spool cleaner (None: there is none) for as long as the server serves."""
    if cleaner is not None:
        cleaner.start()
    try:
        yield
    finally:
        if cleaner is not None:
            cleaner.stop()


_Handle = TypeVar("_Handle", bound="ServerHandle")


class ServerHandle:
    """A server running in a background thread (tests, embedding): :meth:`stop` it, or use the handle as
    a context manager. Each server's handle says how it stops; the rest is this one piece."""

    def stop(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def __enter__(self: _Handle) -> _Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# os.SEEK_DATA/SEEK_HOLE are Linux/BSD-only names; the values are the same everywhere they exist.
SEEK_DATA = getattr(os, "SEEK_DATA", 3)
SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)

class SessionLimitError(OSError):
    """A session went past one of its :class:`SessionLimits`; the message says which and how to raise it."""


def client_reason(exc: BaseException, code: int) -> str:
    """The reason a client is told for ``exc`` (errno ``code``): a session limit's own message, which
    says which limit and what to do, else the errno's short generic text (never a path or a Box id)."""
    if isinstance(exc, (SessionLimitError, PendingLimitError)):
        return str(exc.strerror)
    return reason_of(code)


@dataclass(frozen=True)
class SessionLimits:
    """What one logged-in session may hold on the server.

    Every logged-in user could otherwise grow the server without bound: thousands of open handles,
    or writes sent far ahead of a gap that is never filled (kept on the spool disk until it is).
    ``max_pending_bytes`` applies to each file the session writes.
    """

    max_open_files: int = 64
    max_pending_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_open_files < 1 or self.max_pending_bytes < 0:
            raise ValueError("session limits must be positive")


class SessionResources:
    """One session's open files, counted against its :class:`SessionLimits`."""

    def __init__(self, limits: SessionLimits | None = None):
        self.limits = limits or SessionLimits()
        self._lock = threading.Lock()
        self.open_files = 0

    def __repr__(self) -> str:
        return f"SessionResources(open_files={self.open_files})"

    def open_file(self) -> None:
        """Count one more open file, or refuse it past ``max_open_files``."""
        with self._lock:
            if self.open_files >= self.limits.max_open_files:
                raise SessionLimitError(
                    errno.EMFILE,
                    f"too many open files in this session (limit {self.limits.max_open_files}): close some first",
                )
            self.open_files += 1

    def close_file(self) -> None:
        with self._lock:
            self.open_files = max(0, self.open_files - 1)

    def open_files_for(self, fs: Any) -> OpenFiles:
        """The layer's write spools for one session: in the acting user's private spool folder (on the
        filesystem's spool disk, cleaned of what a killed server left), out-of-order bytes capped per
        file, and a file with a never-written range refused rather than stored with zeros."""
        return OpenFiles(
            fs,
            max_pending=self.limits.max_pending_bytes,
            holes_allowed=False,
        )


class UploadFile:
    """One upload (FTP STOR, SFTP open for writing): the layer's write handle, as the protocol
    libraries want a file object.

    The bytes go to a private spool file (any order, within the session's limits) and reach Box in
    one upload at :meth:`close`, which raises when that fails (nothing is then stored);
    :meth:`discard` abandons the upload (an aborted transfer, a client gone). ``create_only`` (a login
    without ``overwrite``, an SFTP ``O_EXCL`` open): the upload creates the file or fails with
    FileExistsError, leaving a file another client created under the name meanwhile untouched; the
    check at open alone would let the upload land as a new version of that file.
    """

    def __init__(self, files: OpenFiles, path: str, name: str, resources: SessionResources, *,
                 create_only: bool = False):
        self.name = name  # the client-visible path: what the protocol libraries log
        self.path = path
        self._resources = resources
        resources.open_file()
        try:
            self._handle: WriteHandle = files.open(path, truncate=True, create_only=create_only)
        except BaseException:
            resources.close_file()
            raise
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return f"UploadFile(name={self.name!r}, bytes={self.bytes_written}, closed={self.closed})"

    @property
    def closed(self) -> bool:
        return self._handle.closed

    @property
    def bytes_written(self) -> int:
        return self._handle.bytes_written

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        """Append at the current position (FTP streams)."""
        return self._handle.write(data)

    def pwrite(self, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset`` (SFTP; past a gap is held until the gap is filled)."""
        return self._handle.pwrite(data, offset)

    def tell(self) -> int:
        return self._handle.tell()

    def set_mtime(self, mtime: float) -> None:
        """Send ``mtime`` as the file's modification time with the upload (no extra request)."""
        self._handle.spool.set_mtime(mtime)

    def fsync(self) -> None:
        """Upload now; raises if Box does not take it (the data stays pending for the next try)."""
        self._handle.fsync()

    def close(self) -> None:
        """Upload and let go; raises if the upload failed (then nothing was stored). Idempotent."""
        if self.closed:
            return
        try:
            self._handle.close()
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self._resources.close_file()

    def discard(self) -> None:
        """Abandon the upload without creating the file; the spool file is deleted."""
        if self.closed:
            return
        self._handle.discard()
        self._resources.close_file()


class DownloadFile:
    """A read-only file wrapper exposing ``name`` (the client-visible path) and positional reads."""

    def __init__(self, fs: Any, path: str, name: str, resources: SessionResources | None = None):
        self.name = name
        self.path = path
        self._resources = resources or SessionResources()
        # No invalidate_cache(): the handle reads exactly the version its details name (size and
        # bytes of one version, docs/coherence.md), and forgetting a listing fetched while an upload
        # was landing could make a file this process just wrote read as missing (issue 17).
        self._resources.open_file()
        try:
            self._fh = fs.open(path, "rb")
        except BaseException:
            self._resources.close_file()
            raise
        self._lock = threading.Lock()
        self.closed = False
        self.bytes_read = 0

    def __repr__(self) -> str:
        return f"DownloadFile(name={self.name!r}, bytes={self.bytes_read}, closed={self.closed})"

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        with self._lock:
            data = self._fh.read(size)
            self.bytes_read += len(data)
            return data

    def pread(self, size: int, offset: int) -> bytes:
        with self._lock:
            self._fh.seek(offset)
            data = self._fh.read(size)
            self.bytes_read += len(data)
            return data

    def seek(self, offset: int, whence: int = 0) -> int:
        """``os.lseek`` semantics, SEEK_DATA and SEEK_HOLE included.

        A Box file has no holes: data runs from 0 to the size, with the one implicit hole at the
        end. asyncssh answers its clients' sparse-range request (``get()``) with these two seeks.
        """
        with self._lock:
            if whence in (SEEK_DATA, SEEK_HOLE):
                size = int(self._fh.size)
                if offset < 0 or offset >= size:
                    raise OSError(errno.ENXIO, "no data at or after this offset")
                offset, whence = (offset if whence == SEEK_DATA else size), os.SEEK_SET
            return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._resources.close_file()
                self._fh.close()
