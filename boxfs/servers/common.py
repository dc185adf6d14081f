"""Pieces shared by the FTP and SFTP servers: Box filesystem factory, session limits, transfers.

Both servers see a filesystem only through the fsspec ``AbstractFileSystem`` API and the frontend
layer (:mod:`boxfs.frontend`: literal paths, errno by type, stat), so they run unchanged over
``BoxFileSystem`` or any other fsspec filesystem.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from boxfs.frontend.cleaning import SpoolCleaner
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
    config: str | os.PathLike[str] | Mapping[str, Any],
    base_urls: Mapping[str, str] | None = None,
    **fs_kwargs: Any,
) -> Callable[[str], Any]:
    """Return ``factory(box_user) -> BoxFileSystem`` acting as that user with one app config.

    The config (JWT JSON text, path or dict) is read once here so that a missing or malformed
    file fails at server start, not at the first login. Token sharing between the per-user
    filesystems is the filesystem's business (they are all built from the same app config).
    """
    from boxfs import BoxFileSystem  # imported lazily: the servers also run over other filesystems

    if isinstance(config, os.PathLike) or (isinstance(config, str) and not config.lstrip().startswith("{")):
        warn_if_loose(config, "Box app config (holds the app's private key)")
        with open(config, encoding="utf-8") as fh:
            config = fh.read()

    def factory(box_user: str) -> Any:
        kwargs: dict[str, Any] = {"jwt_config": config, "as_user": box_user, "skip_instance_cache": True}
        if base_urls:
            kwargs["base_urls"] = dict(base_urls)
        kwargs.update(fs_kwargs)
        return BoxFileSystem(**kwargs)

    return factory


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


# os.SEEK_DATA/SEEK_HOLE are Linux/BSD-only names; the values are the same everywhere they exist.
SEEK_DATA = getattr(os, "SEEK_DATA", 3)
SEEK_HOLE = getattr(os, "SEEK_HOLE", 4)

class SessionLimitError(OSError):
    """A session went past one of its :class:`SessionLimits`; the message says which and how to raise it."""


@dataclass(frozen=True)
class SessionLimits:
    """What one logged-in session may hold in the server's memory.

    Every logged-in user can otherwise grow the server without bound: thousands of open upload
    handles, or writes sent far ahead of a gap that is never filled (held in memory until it is).
    """

    max_open_files: int = 64
    max_pending_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_open_files < 1 or self.max_pending_bytes < 0:
            raise ValueError("session limits must be positive")


class SessionResources:
    """The running totals of one session, checked against its :class:`SessionLimits`."""

    def __init__(self, limits: SessionLimits | None = None):
        self.limits = limits or SessionLimits()
        self._lock = threading.Lock()
        self.open_files = 0
        self.pending_bytes = 0

    def __repr__(self) -> str:
        return f"SessionResources(open_files={self.open_files}, pending_bytes={self.pending_bytes})"

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

    def hold_pending(self, size: int) -> None:
        """Account ``size`` bytes received ahead of a gap, or refuse them past ``max_pending_bytes``."""
        with self._lock:
            if self.pending_bytes + size > self.limits.max_pending_bytes:
                raise SessionLimitError(
                    errno.ENOBUFS,
                    "too much data written ahead of a gap in this session "
                    f"(limit {self.limits.max_pending_bytes} bytes): write files in order",
                )
            self.pending_bytes += size

    def release_pending(self, size: int) -> None:
        with self._lock:
            self.pending_bytes = max(0, self.pending_bytes - size)


class UploadFile:
    """A write-only file that uploads to the filesystem when closed.

    Wraps ``fs.open(path, "wb")`` (the filesystem spools large files and uploads on close).
    Tracks its own ``closed`` state and the failure of the final upload so that the protocol
    layers can tell the client the transfer failed instead of reporting success. Writes at
    out-of-order offsets (pipelined SFTP clients) are held until the gap is filled, within the
    session's ``max_pending_bytes``; a running total keeps each write O(1).
    """

    def __init__(
        self, fs: Any, path: str, name: str, resources: SessionResources | None = None, **open_kwargs: Any
    ):
        self.name = name  # the client-visible path: what the protocol libraries log
        self.path = path
        self._fs = fs
        self._resources = resources or SessionResources()
        self._resources.open_file()
        try:
            self._fh = fs.open(path, "wb", **open_kwargs)
        except BaseException:
            self._resources.close_file()
            raise
        self._lock = threading.Lock()
        self._pos = 0
        self._pending: dict[int, bytes] = {}
        self._pending_bytes = 0
        self.closed = False
        self.bytes_written = 0
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return f"UploadFile(name={self.name!r}, bytes={self.bytes_written}, closed={self.closed})"

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        """Append at the current position (FTP streams)."""
        return self.pwrite(data, self._pos)

    def pwrite(self, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset``; offsets beyond the end wait for the gap to be filled."""
        with self._lock:
            if self.closed:
                raise OSError(errno.EBADF, "upload already closed")
            if offset < self._pos:
                raise OSError(errno.ENOTSUP, "Box uploads are sequential: cannot rewrite earlier bytes")
            if offset > self._pos:
                previous = self._pending.get(offset)
                self._resources.hold_pending(len(data))
                if previous is not None:  # the same range sent again: the newer bytes win
                    self._drop_pending(len(previous))
                self._pending[offset] = bytes(data)
                self._pending_bytes += len(data)
                return len(data)
            self._fh.write(data)
            self._pos += len(data)
            self.bytes_written += len(data)
            while self._pos in self._pending:
                chunk = self._pending.pop(self._pos)
                self._drop_pending(len(chunk))
                self._fh.write(chunk)
                self._pos += len(chunk)
                self.bytes_written += len(chunk)
            return len(data)

    def _drop_pending(self, size: int) -> None:
        self._pending_bytes -= size
        self._resources.release_pending(size)

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        """Finish the upload; raises (once) if the upload failed or the file has holes."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                if self._pending:
                    raise OSError(errno.EIO, "upload has missing byte ranges")
                self._fh.close()
            except BaseException as exc:
                self.error = exc
                self._discard()
                raise
            finally:
                self._release()

    def discard(self) -> None:
        """Abandon the upload without creating the file (best effort)."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._release()
            self._discard()

    def _release(self) -> None:
        """Give the session back this file's slot and held bytes (once: only on the closing path)."""
        self._resources.close_file()
        self._resources.release_pending(self._pending_bytes)
        self._pending_bytes = 0
        self._pending.clear()

    def _discard(self) -> None:
        """fsspec writers upload when closed, even from ``__del__``; after asking the writer to
        discard its buffer it is marked closed so that garbage collection cannot store a
        partial file."""
        self._pending.clear()
        method = getattr(self._fh, "discard", None)
        if callable(method):
            try:
                method()
            except Exception:  # noqa: BLE001 - cleanup must not mask the original problem
                logger.debug("discarding upload of %s failed", self.name, exc_info=True)
        try:
            self._fh.closed = True
        except (AttributeError, TypeError):
            logger.debug("writer of %s cannot be marked closed", self.name)


class DownloadFile:
    """A read-only file wrapper exposing ``name`` (the client-visible path) and positional reads."""

    def __init__(self, fs: Any, path: str, name: str, resources: SessionResources | None = None):
        self.name = name
        self.path = path
        self._resources = resources or SessionResources()
        # The file may have a new version uploaded outside this server since it was last listed:
        # a cached (older) size would truncate the download. One folder listing buys certainty.
        fs.invalidate_cache(path)
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
