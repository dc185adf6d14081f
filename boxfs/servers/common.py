"""Pieces shared by the FTP and SFTP servers: Box filesystem factory, stat translation, uploads.

Both servers see a filesystem only through the fsspec ``AbstractFileSystem`` API, so they run
unchanged over ``BoxFileSystem`` or any other fsspec filesystem (tests use a local one first).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat as statmod
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from boxfs.api.fields import epoch_seconds

logger = logging.getLogger(__name__)

FILE_MODE = statmod.S_IFREG | 0o644
DIR_MODE = statmod.S_IFDIR | 0o755
READONLY_FILE_MODE = statmod.S_IFREG | 0o444
READONLY_DIR_MODE = statmod.S_IFDIR | 0o555


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
        with open(config, encoding="utf-8") as fh:
            config = fh.read()

    def factory(box_user: str) -> Any:
        # id_paths off: a name a client gives is a name (``RETR id:5`` must not read item 5 elsewhere)
        kwargs: dict[str, Any] = {"jwt_config": config, "as_user": box_user, "skip_instance_cache": True,
                                  "id_paths": False}
        if base_urls:
            kwargs["base_urls"] = dict(base_urls)
        kwargs.update(fs_kwargs)
        return BoxFileSystem(**kwargs)

    return factory


def info_is_dir(info: Mapping[str, Any]) -> bool:
    """True when an fsspec info dict describes a directory."""
    return info.get("type") == "directory"


def info_mtime(info: Mapping[str, Any]) -> float:
    """Modification time (epoch seconds) from an fsspec info dict.

    BoxFileSystem reports ``modified`` as a UTC datetime (Box's content_modified_at); local
    filesystems report ``mtime`` as a float. Folders in Box may have no time at all: 0 then.
    """
    for key in ("modified", "mtime", "content_modified_at", "modified_at", "LastModified", "created"):
        seconds = epoch_seconds(info.get(key))
        if seconds is not None:
            return seconds
    return 0.0


def info_inode(info: Mapping[str, Any]) -> int:
    """A stable inode-like number: from the Box id when there is one, else from the name."""
    ident = info.get("id")
    if ident is not None:
        try:
            return int(ident)
        except (TypeError, ValueError):
            pass
    digest = hashlib.blake2b(str(ident or info.get("name", "")).encode("utf-8"), digest_size=7).digest()
    return int.from_bytes(digest, "big")


def info_to_stat(info: Mapping[str, Any], read_only: bool = False) -> os.stat_result:
    """Translate an fsspec info dict into an ``os.stat_result`` for the protocol libraries."""
    is_dir = info_is_dir(info)
    if is_dir:
        mode = READONLY_DIR_MODE if read_only else DIR_MODE
    else:
        mode = READONLY_FILE_MODE if read_only else FILE_MODE
    size = 0 if is_dir else int(info.get("size") or 0)
    mtime = info_mtime(info)
    ns = int(mtime * 1_000_000_000)
    extra = {"st_atime_ns": ns, "st_mtime_ns": ns, "st_ctime_ns": ns, "st_atime": mtime, "st_mtime": mtime}
    return os.stat_result(
        (mode, info_inode(info), 0, 1, 0, 0, size, int(mtime), int(mtime), int(mtime)), extra
    )


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


_GLOB_CHARS = frozenset("*?[")


def move(fs: Any, src: str, dst: str) -> None:
    """Rename/move exactly ``src`` to ``dst`` (which the caller has checked does not exist).

    fsspec's ``mv`` expands glob characters, so a file literally named ``report [1].pdf`` would not
    be found. For such names BoxFileSystem's single-request move is used directly.
    """
    if _GLOB_CHARS.intersection(src + dst) and callable(getattr(fs, "_move", None)):
        fs._move(src, dst)
        return
    fs.mv(src, dst)


def error_reason(exc: BaseException) -> tuple[int, str]:
    """Map a filesystem exception to (errno, short client-facing reason) without internal details.

    Messages never echo backend paths or exception text from the HTTP layer: those can contain
    the user's home prefix, Box ids or request details a client has no business seeing.
    """
    if isinstance(exc, FileNotFoundError):
        return errno.ENOENT, "No such file or directory"
    if isinstance(exc, FileExistsError):
        return errno.EEXIST, "File exists"
    if isinstance(exc, PermissionError):
        return errno.EACCES, "Permission denied"
    if isinstance(exc, IsADirectoryError):
        return errno.EISDIR, "Is a directory"
    if isinstance(exc, NotADirectoryError):
        return errno.ENOTDIR, "Not a directory"
    if isinstance(exc, OSError) and exc.errno == errno.ENOTEMPTY:
        return errno.ENOTEMPTY, "Directory not empty"
    if isinstance(exc, NotImplementedError) or (isinstance(exc, OSError) and exc.errno == errno.ENOTSUP):
        return errno.ENOTSUP, "Operation not supported"
    return errno.EIO, "Box request failed"


class UploadFile:
    """A write-only file that uploads to the filesystem when closed.

    Wraps ``fs.open(path, "wb")`` (the filesystem spools large files and uploads on close).
    Tracks its own ``closed`` state and the failure of the final upload so that the protocol
    layers can tell the client the transfer failed instead of reporting success. Writes at
    out-of-order offsets (pipelined SFTP clients) are held until the gap is filled.
    """

    def __init__(self, fs: Any, path: str, name: str, **open_kwargs: Any):
        self.name = name  # the client-visible path: what the protocol libraries log
        self.path = path
        self._fs = fs
        self._fh = fs.open(path, "wb", **open_kwargs)
        self._lock = threading.Lock()
        self._pos = 0
        self._pending: dict[int, bytes] = {}
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
            if offset < self._pos:
                raise OSError(errno.ENOTSUP, "Box uploads are sequential: cannot rewrite earlier bytes")
            if offset > self._pos:
                self._pending[offset] = bytes(data)
                if sum(len(b) for b in self._pending.values()) > 256 * 1024 * 1024:
                    raise OSError(errno.ENOTSUP, "too much out-of-order data in one upload")
                return len(data)
            self._fh.write(data)
            self._pos += len(data)
            self.bytes_written += len(data)
            while self._pos in self._pending:
                chunk = self._pending.pop(self._pos)
                self._fh.write(chunk)
                self._pos += len(chunk)
                self.bytes_written += len(chunk)
            return len(data)

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
                self.discard()
                raise

    def discard(self) -> None:
        """Abandon the upload without creating the file (best effort).

        fsspec writers upload when closed, even from ``__del__``; after asking the writer to
        discard its buffer it is marked closed so that garbage collection cannot store a
        partial file.
        """
        self.closed = True
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

    def __init__(self, fs: Any, path: str, name: str):
        self.name = name
        self.path = path
        # The file may have a new version uploaded outside this server since it was last listed:
        # a cached (older) size would truncate the download. One folder listing buys certainty.
        fs.invalidate_cache(path)
        self._fh = fs.open(path, "rb")
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
        with self._lock:
            return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._fh.close()
