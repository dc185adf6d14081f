"""Cleaning the spool folder: what failed uploads and dead writers left behind goes, what is alive stays.

``fs.clean_spool()`` runs :func:`clean_spool`; :func:`auto_clean` runs it by age the first time a process
spools or starts a large upload for a user, and again at most every :data:`AUTO_CLEAN_INTERVAL` (a server
or a mount runs for weeks). Nothing locked by a live writer or upload, in any process, is touched.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from boxfs.upload.resume import STATE_SUFFIX, read_state, remove_state, session_of, session_url, spool_name_of
from boxfs.upload.spoolfolder import (
    LOCK_SUFFIX,
    SPOOL_SUFFIX,
    PathLock,
    SpoolFolder,
    remove_spool_file,
    spool_root,
    user_spool_dir,
)

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

logger = logging.getLogger("boxfs")

#: Files in the spool folder untouched for this long (seconds) and not in use are removed automatically.
DEFAULT_SPOOL_MAX_AGE = 24 * 3600.0
#: How often (seconds) a process that keeps spooling cleans a user's folder by age again: a server or a
#: mount runs for weeks, and the spool files its failed uploads keep must not stay until it restarts.
AUTO_CLEAN_INTERVAL = 3600.0

_auto_cleaned: dict[str, float] = {}
_auto_lock = threading.Lock()


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


