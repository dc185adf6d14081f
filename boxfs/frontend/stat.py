"""fsspec info dicts -> POSIX ``stat`` results, the same for the mount and the FTP/SFTP servers.

Box has no POSIX modes, owners or inodes: files are ``0644`` (``0444`` read-only), folders ``0755``
(``0555``), the inode is the Box id (stable across renames, which clients such as ``rsync`` like), and
the times are Box's ``content_modified_at``. Folders may carry no time at all; the caller says what to
show then (the servers show 0, the mount the time it was mounted).
"""

from __future__ import annotations

import hashlib
import os
import stat as statmod
from collections.abc import Mapping
from typing import Any

from boxfs.api.fields import epoch_seconds

__all__ = [
    "BLOCK_SIZE", "DIR_MODE", "FILE_MODE", "READONLY_DIR_MODE", "READONLY_FILE_MODE",
    "info_inode", "info_is_dir", "info_mtime", "info_to_stat",
]

FILE_MODE = statmod.S_IFREG | 0o644
DIR_MODE = statmod.S_IFDIR | 0o755
READONLY_FILE_MODE = statmod.S_IFREG | 0o444
READONLY_DIR_MODE = statmod.S_IFDIR | 0o555
#: ``st_blksize`` reported: what tools use as their preferred I/O size.
BLOCK_SIZE = 4096

_TIME_KEYS = ("modified", "mtime", "content_modified_at", "modified_at", "LastModified", "last_modified", "created")


def info_is_dir(info: Mapping[str, Any]) -> bool:
    """True when an fsspec info dict describes a directory."""
    return info.get("type") == "directory"


def info_mtime(info: Mapping[str, Any], default: float = 0.0) -> float:
    """Modification time (epoch seconds) from an fsspec info dict, ``default`` when it has none.

    BoxFileSystem reports ``modified`` as a UTC datetime (Box's content_modified_at); local filesystems
    report ``mtime`` as a float.
    """
    for key in _TIME_KEYS:
        seconds = epoch_seconds(info.get(key))
        if seconds is not None:
            return seconds
    return default


def info_inode(info: Mapping[str, Any]) -> int:
    """A stable inode-like number: the Box id when there is one, else a hash of the name."""
    ident = info.get("id")
    if ident is not None:
        try:
            return int(ident)
        except (TypeError, ValueError):
            pass
    digest = hashlib.blake2b(str(ident or info.get("name", "")).encode("utf-8"), digest_size=7).digest()
    return int.from_bytes(digest, "big")


def info_to_stat(
    info: Mapping[str, Any],
    read_only: bool = False,
    *,
    uid: int = 0,
    gid: int = 0,
    default_mtime: float = 0.0,
) -> os.stat_result:
    """Translate an fsspec info dict into an ``os.stat_result`` (times also in nanoseconds)."""
    is_dir = info_is_dir(info)
    if is_dir:
        mode = READONLY_DIR_MODE if read_only else DIR_MODE
    else:
        mode = READONLY_FILE_MODE if read_only else FILE_MODE
    size = 0 if is_dir else int(info.get("size") or 0)
    mtime = info_mtime(info, default_mtime)
    ns = int(mtime * 1_000_000_000)
    extra = {
        "st_atime": mtime, "st_mtime": mtime, "st_ctime": mtime,
        "st_atime_ns": ns, "st_mtime_ns": ns, "st_ctime_ns": ns,
        "st_blksize": BLOCK_SIZE, "st_blocks": (size + 511) // 512,
    }
    nlink = 2 if is_dir else 1
    return os.stat_result(
        (mode, info_inode(info), 0, nlink, uid, gid, size, int(mtime), int(mtime), int(mtime)), extra
    )
