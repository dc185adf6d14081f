"""Make one tree match another (local -> Box, Box -> local, Box -> Box), skipping what is already identical.

Why its own module: ``boxfs sync``, ``boxfs check`` and ``boxfs cp`` share one way of deciding "is this file
already there" and one transfer engine, and code (or a test) may call them without the command line.

Deciding "identical": same size and same SHA-1. Box's listings carry each file's SHA-1, so the Box side
costs no request beyond the listing (one per folder); the local side is hashed once and remembered in a
small cache keyed by path, size and mtime (:class:`HashCache`), so a re-sync does not re-read everything.
``size_only`` compares sizes alone; ``checksum`` re-hashes local files instead of trusting the cache.

Nothing is lost: uploads land as a new Box version in one step (Box keeps the old one), a download
replaces the old file only once complete and checked (``BoxFileSystem.get_file``), a Box ->
Box copy replaces through the filesystem's safe replace, and deletions (``delete=True``) run only after
every copy, with Box deletions going to the owner's trash. A sync that is interrupted and run again
finds what already arrived identical and copies only the rest (large uploads resume their session).

Names: Box compares names case-insensitively, so the two trees are matched by :func:`~boxfs.names.name_key`
when either side is Box. A name Box would refuse (a trailing space, a control character) fails that one
file before any request, with a message saying why; the rest of the sync goes on.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
import shutil
import sqlite3
import stat as statmod
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxfs.frontend.errors import error_reason
from boxfs.localfile import PARTIAL_PREFIX, file_sha1
from boxfs.names import check_path_names, has_magic, name_key, pattern_regex

logger = logging.getLogger(__name__)

__all__ = [
    "Action", "BoxSide", "CheckReport", "Entry", "FileFilter", "HashCache", "LocalSide", "SyncReport",
    "case_clashes", "check", "endpoint", "execute", "plan_sync", "sync",
]

_SHA1 = re.compile(r"[0-9a-f]{40}")


# ------------------------------------------------------------------------------------------ filters
@dataclass(frozen=True)
class FileFilter:
    """``--include``/``--exclude``: which relative paths a sync or check looks at.

    A pattern with a ``/`` is matched against the whole path relative to the sync's root, one without
    against each name along it (``--exclude .git`` leaves out the folder and all it holds). Excludes win;
    with includes given, a file is looked at only when its path or a folder above it matches one.
    Excluded items are neither copied nor deleted.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _inc: tuple[tuple[bool, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)
    _exc: tuple[tuple[bool, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_inc", tuple(("/" in p, pattern_regex(p)) for p in self.include))
        object.__setattr__(self, "_exc", tuple(("/" in p, pattern_regex(p)) for p in self.exclude))

    @staticmethod
    def _hits(rules: Iterable[tuple[bool, re.Pattern[str]]], rel: str) -> bool:
        if not rules:  # no patterns (the usual case): nothing to split for each of the files
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for anchored, regex in rules:
            candidates = prefixes if anchored else parts
            if any(regex.fullmatch(c) for c in candidates):
                return True
        return False

    def excluded(self, rel: str) -> bool:
        return self._hits(self._exc, rel)

    def wants_file(self, rel: str) -> bool:
        if self.excluded(rel):
            return False
        return not self._inc or self._hits(self._inc, rel)


# ------------------------------------------------------------------------------------------ hash cache
def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/boxfs`` (``~/.cache/boxfs``): the user's cache dir, nothing else writes there."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "boxfs"


def _private_db(path: str | os.PathLike[str] | None, schema: str, what: str, without: str) -> sqlite3.Connection | None:
    """An SQLite file of this user's cache, 0600 in a 0700 folder, with ``schema`` applied; in memory for
    ``path=None`` or when the file cannot be made (a read-only home, a symlink planted there), None when
    it is unusable (a warning says so: a cache never stops the command)."""
    target = ":memory:"
    if path is not None:
        try:
            os.makedirs(os.path.dirname(os.fspath(path)) or ".", mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            os.fchmod(fd, 0o600)
            os.close(fd)
            target = os.fspath(path)
        except OSError as exc:
            logger.warning("cannot use %s %s (%s); %s", what, path, exc, without)
    db = None
    try:
        db = sqlite3.connect(target, check_same_thread=False)
        db.execute(schema)
        return db
    except sqlite3.DatabaseError as exc:
        logger.warning("%s %s is unusable (%s); %s", what, target, exc, without)
        if db is not None:
            db.close()
        return None


class HashCache:
    """Local files' SHA-1, remembered by (absolute path, size, mtime in ns); a changed file misses.

    An SQLite file, 0600 in a 0700 folder. What is read back is untrusted: a value that is not a SHA-1
    is ignored, and an unreadable database disables the cache (with a warning) rather than the sync.
    ``path=None`` keeps the cache in memory only. A sync reads the rows below its source folder in one
    query first (:meth:`warm`): a re-sync then looks each file up in memory, not with a query per file.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._pending = 0
        self._warm_prefixes: list[str] = []  # folders whose rows are all in _rows
        self._rows: dict[str, tuple[Any, Any, Any]] = {}
        self._db = _private_db(path, "CREATE TABLE IF NOT EXISTS sha1 (path TEXT PRIMARY KEY, size INTEGER, "
                                     "mtime_ns INTEGER, sha1 TEXT)", "the hash cache", "local files are hashed every time")

    def warm(self, folder: str) -> None:
        """Read every row below the absolute path ``folder`` in one query, for the lookups that follow."""
        if self._db is None:
            return
        prefix = os.path.join(folder, "")
        # every path starting with "<folder>/" sorts between it and "<folder>0" ('0' follows '/')
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        with self._lock:
            rows = self._db.execute("SELECT path, size, mtime_ns, sha1 FROM sha1 WHERE path >= ? AND path < ?",
                                    (prefix, upper)).fetchall()
            self._rows.update((r[0], r[1:]) for r in rows)
            self._warm_prefixes.append(prefix)

    def get(self, path: str, size: int, mtime_ns: int) -> str | None:
        if self._db is None:
            return None
        with self._lock:
            row = self._rows.get(path)
            if row is None and not any(path.startswith(p) for p in self._warm_prefixes):
                row = self._db.execute("SELECT size, mtime_ns, sha1 FROM sha1 WHERE path = ?", (path,)).fetchone()
        if row and row[0] == size and row[1] == mtime_ns and isinstance(row[2], str) and _SHA1.fullmatch(row[2]):
            return row[2]
        return None

    def put(self, path: str, size: int, mtime_ns: int, sha1: str) -> None:
        if self._db is None:
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO sha1 VALUES (?, ?, ?, ?)", (path, size, mtime_ns, sha1))
            self._rows[path] = (size, mtime_ns, sha1)
            self._pending += 1
            if self._pending >= 200:
                self._db.commit()
                self._pending = 0

    def close(self) -> None:
        if self._db is None:
            return
        with self._lock:
            self._db.commit()
            self._db.close()
            self._db = None


class FolderHints:
    """The Box folder id last found at a sync root, by (Box, acting user, root folder, path).

    Why: Box has no lookup by path; reaching ``box://a/b/c`` takes a listing per level, one after another,
    in every run. With the id remembered, a re-sync asks for that folder alone
    (:meth:`~boxfs.core.BoxFileSystem.folder_at`), which also says where it is now: a hint that no longer
    holds (the folder moved, was renamed or deleted, another user) costs that one request and the path is
    walked as before. What is read back is untrusted: anything but digits is ignored.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._db = _private_db(path, "CREATE TABLE IF NOT EXISTS folders (scope TEXT, path TEXT, id TEXT, "
                                     "PRIMARY KEY (scope, path))", "the folder hints", "paths are walked every time")

    def get(self, scope: str, path: str) -> str | None:
        if self._db is None:
            return None
        try:
            with self._lock:
                row = self._db.execute("SELECT id FROM folders WHERE scope = ? AND path = ?",
                                       (scope, name_key(path))).fetchone()
        except sqlite3.Error as exc:  # locked by another sync for too long, damaged: walk the path
            logger.debug("folder hints: %s", exc)
            return None
        return row[0] if row and isinstance(row[0], str) and re.fullmatch(r"[0-9]+", row[0]) else None

    def put(self, scope: str, path: str, folder_id: str) -> None:
        if self._db is None:
            return
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO folders VALUES (?, ?, ?)",
                                 (scope, name_key(path), folder_id))
                self._db.commit()
        except sqlite3.Error as exc:
            logger.debug("folder hints: %s", exc)


# ------------------------------------------------------------------------------------------ sides
@dataclass
class Entry:
    """A file or folder on one side: its full path there, and what comparing it needs."""

    path: str
    kind: str  # "file" or "directory"
    size: int = 0
    sha1: str | None = None  # Box: from the listing; local: filled in when hashed
    mtime_ns: int = 0
    #: Why this file cannot be copied (a FIFO, a symlink loop, a name clash on Box): it fails alone,
    #: is never read, and holds deletions back like any failed copy.
    problem: str = ""


class LocalSide:
    """The local disk. Paths are OS paths; relative paths use ``/``."""

    is_box = False

    def __init__(self, hashes: HashCache | None = None, rehash: bool = False) -> None:
        self.hashes = hashes or HashCache(None)
        self.rehash = rehash

    def show(self, path: str) -> str:
        return path

    def join(self, root: str, rel: str) -> str:
        return os.path.join(root, *rel.split("/")) if rel else root

    def entry(self, path: str) -> Entry | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None  # gone, or a dangling symlink: nothing to copy
        except OSError as exc:  # a symlink loop, a folder we may not enter: this item fails, not the sync
            return Entry(path, "file", problem=exc.strerror or str(exc))
        if statmod.S_ISDIR(st.st_mode):
            return Entry(path, "directory")
        if not statmod.S_ISREG(st.st_mode):  # reading a FIFO blocks forever, a device never ends
            return Entry(path, "file", problem="not a regular file (a pipe, socket or device): not copied")
        return Entry(path, "file", st.st_size, None, st.st_mtime_ns)

    def scan(self, root: str) -> dict[str, Entry]:
        """Every file and folder below ``root`` by relative path (downloads in progress left out)."""
        self.hashes.warm(os.path.abspath(root))
        out: dict[str, Entry] = {}
        for folder, dirs, files in os.walk(root):
            rel_folder = os.path.relpath(folder, root)
            prefix = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
            dirs.sort()
            for d in dirs:
                path = os.path.join(folder, d)
                if os.path.islink(path):  # not followed (loops); never an empty folder that --delete empties
                    out[prefix + d] = Entry(path, "file", problem="a symbolic link to a folder: not followed")
                else:
                    out[prefix + d] = Entry(path, "directory")
            for f in sorted(files):
                if f.startswith(PARTIAL_PREFIX):
                    continue
                found = self.entry(os.path.join(folder, f))
                if found is not None and found.kind == "file":
                    out[prefix + f] = found
        return out

    def sha1(self, entry: Entry) -> str:
        if entry.sha1 is None:
            path = os.path.abspath(entry.path)
            cached = None if self.rehash else self.hashes.get(path, entry.size, entry.mtime_ns)
            if cached is None:
                cached = file_sha1(path)
                self.hashes.put(path, entry.size, entry.mtime_ns, cached)
            entry.sha1 = cached
        return entry.sha1

    def remember(self, path: str, sha1: str | None, expect: Entry | None = None) -> None:
        """Cache ``sha1`` for the file at ``path`` as it is now, so the next sync need not read it;
        with ``expect``, only if the file still has the size and mtime it had then (not changed since)."""
        if not sha1:
            return
        try:
            st = os.stat(path)
        except OSError:
            return
        if expect is not None and (st.st_size, st.st_mtime_ns) != (expect.size, expect.mtime_ns):
            return
        self.hashes.put(os.path.abspath(path), st.st_size, st.st_mtime_ns, sha1)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def remove(self, entry: Entry) -> None:
        if entry.kind == "directory":
            shutil.rmtree(entry.path)
        else:
            os.remove(entry.path)


class BoxSide:
    """Box through a BoxFileSystem. Paths are the filesystem's (``a/b``); names compare case-insensitively."""

    is_box = True

    def __init__(self, fs: Any, hints: FolderHints | None = None) -> None:
        self.fs = fs
        self.hints = hints or FolderHints(None)
        #: whose hints these are: the same path names other folders for another Box, user or root
        self._scope = "\n".join((fs.transport.endpoints.base_url, fs.as_user_id or "", fs.root_folder_id))
        self._reached: set[str] = set()

    def show(self, path: str) -> str:
        return "box://" + path

    def join(self, root: str, rel: str) -> str:
        return posixpath.join(root, rel) if root and rel else (root or rel)

    @staticmethod
    def _entry(info: dict[str, Any]) -> Entry:
        kind = "directory" if info["type"] == "directory" else "file"
        return Entry(info["name"], kind, int(info.get("size") or 0), info.get("sha1"))

    def _reach(self, root: str) -> None:
        """Before ``root`` is first looked up: its folder by the id it had last time, when Box confirms it
        is still there (one request instead of a listing per level of the path)."""
        if root and root not in self._reached:
            self._reached.add(root)
            hinted = self.hints.get(self._scope, root)
            if hinted is not None:
                self.fs.folder_at(root, hinted, listing=True)

    def entry(self, path: str) -> Entry | None:
        self._reach(path)
        try:
            return self._entry(self.fs.info(path))
        except FileNotFoundError:
            return None

    def scan(self, root: str) -> dict[str, Entry]:
        """Everything below ``root``: one listing request per folder, nothing else."""
        self._reach(root)
        info = self.fs.info(root)
        top = info["name"]
        cut = len(top) + 1 if top else 0
        found = self.fs.find(root, withdirs=True, detail=True)
        self._remember(root, info)
        return {name[cut:]: self._entry(info) for name, info in found.items() if name != top}

    def sha1(self, entry: Entry) -> str:
        return entry.sha1 or ""

    def makedirs(self, path: str) -> None:
        self.fs.makedirs(path, exist_ok=True)
        if path in self._reached:  # a root made by this sync: found by its id next time
            self._remember(path, self.fs.info(path))

    def _remember(self, root: str, info: dict[str, Any]) -> None:
        if root and info["type"] == "directory":
            self.hints.put(self._scope, root, str(info["id"]))

    def remove(self, entry: Entry) -> None:
        """Delete exactly this item (to the trash): its ``*?[`` are characters, never a pattern."""
        if entry.kind == "file":
            self.fs.rm_file(entry.path)
        elif not has_magic(entry.path):
            self.fs.rm(entry.path, recursive=True)  # one request for the whole folder
        else:  # fsspec's rm would expand the name: take the folder apart literally, deepest first
            for child in sorted(self.fs.ls(entry.path, detail=True), key=lambda i: i["type"]):
                self.remove(self._entry(child))
            self.fs.rmdir(entry.path)


Side = LocalSide | BoxSide


def endpoint(arg: str, fs: Any = None, hashes: HashCache | None = None) -> tuple[Side, str]:
    """A side and its root from what a user writes: ``box://a/b`` is Box (through ``fs``), anything else
    a local path (hashed through ``hashes``; by default the cache in :func:`default_cache_dir`).

    ``sync(*endpoint("./data"), *endpoint("box://backup/data", fs=fs), delete=True)``
    """
    if arg.startswith("box://"):
        if fs is None:
            raise ValueError(f"{arg} is on Box: pass the BoxFileSystem to use as fs=")
        return BoxSide(fs, FolderHints(default_cache_dir() / "folders.sqlite3")), arg[len("box://"):].strip("/")
    return LocalSide(hashes or HashCache(default_cache_dir() / "sha1.sqlite3")), arg


def same_content(src: Side, s: Entry, dst: Side, d: Entry, size_only: bool = False) -> bool:
    """Whether ``d`` already holds what ``s`` holds: same size and (unless ``size_only``) same SHA-1."""
    if s.kind != "file" or d.kind != "file" or s.problem or d.problem or s.size != d.size:
        return False
    if size_only:
        return True
    try:
        a, b = src.sha1(s), dst.sha1(d)
    except OSError:  # unreadable here: the copy (or check) reports it for this one file
        return False
    return bool(a) and a == b


def case_clashes(items: dict[str, Entry], fold: bool) -> list[str]:
    """The files of one tree whose paths differ only in letter case (``A.txt`` and ``a.txt``): on Box
    they would be one file, so copying both would silently keep only the last one."""
    if not fold:
        return []
    groups: dict[str, list[str]] = {}
    for rel, entry in items.items():
        if entry.kind == "file":
            groups.setdefault(name_key(rel), []).append(rel)
    return sorted(rel for group in groups.values() if len(group) > 1 for rel in group)


# ------------------------------------------------------------------------------------------ plans
@dataclass
class Action:
    """One step of a plan: ``copy`` (``reason`` new/changed), ``skip`` (identical), ``delete``, ``mkdir``."""

    op: str
    rel: str
    src: Entry | None
    dst_path: str
    size: int = 0
    reason: str = ""
    dst: Entry | None = None


@dataclass
class SyncReport:
    """What a sync (or a cp) did, or with ``dry_run`` would do; ``failed`` holds (path, error)."""

    src: str
    dst: str
    dry_run: bool = False
    copied: list[Action] = field(default_factory=list)
    skipped: list[Action] = field(default_factory=list)
    deleted: list[Action] = field(default_factory=list)
    created: list[Action] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_copied: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        def rows(actions: list[Action]) -> list[dict[str, Any]]:
            return [{"path": a.rel, "dst": a.dst_path, "size": a.size, **({"reason": a.reason} if a.reason else {})}
                    for a in actions]

        rate = self.bytes_copied / self.elapsed if self.elapsed > 0 else 0.0
        return {
            "src": self.src, "dst": self.dst, "dry_run": self.dry_run,
            "copied": rows(self.copied), "skipped": rows(self.skipped), "deleted": rows(self.deleted),
            "created_folders": rows(self.created),
            "failed": [{"path": p, "error": e} for p, e in self.failed],
            "summary": {"copied": len(self.copied), "skipped": len(self.skipped), "deleted": len(self.deleted),
                        "failed": len(self.failed), "bytes": self.bytes_copied,
                        "seconds": round(self.elapsed, 3), "bytes_per_second": round(rate)},
        }


def _key(rel: str, fold: bool) -> str:
    return name_key(rel) if fold else rel


def plan_sync(src: Side, src_root: str, dst: Side, dst_root: str, *, delete: bool = False,
              filters: FileFilter | None = None, size_only: bool = False) -> list[Action]:
    """What makes ``dst_root`` match ``src_root``: copies of new and changed files, skips of identical
    ones, folders to create and (``delete``) what ``dst_root`` holds that ``src_root`` lacks."""
    filters = filters or FileFilter()
    fold = src.is_box or dst.is_box
    src_items = src.scan(src_root)
    for rel in case_clashes(src_items, fold):
        src_items[rel].problem = "another file's name differs from it only in letter case; Box keeps one: not copied"
    dst_entry = dst.entry(dst_root)
    if dst_entry is not None and dst_entry.kind != "directory":
        raise NotADirectoryError(f"{dst.show(dst_root)} is a file; sync needs a folder there")
    dst_items = dst.scan(dst_root) if dst_entry is not None else {}
    dst_by_key = {_key(rel, fold): e for rel, e in dst_items.items()}
    plan: list[Action] = []
    wanted_dirs: set[str] = set()
    for rel, s in sorted(src_items.items()):
        if s.kind != "file" or not filters.wants_file(rel):
            continue
        parts = rel.split("/")
        wanted_dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        d = dst_by_key.get(_key(rel, fold))
        target = d.path if d is not None else dst.join(dst_root, rel)
        if d is not None and d.kind == "file" and same_content(src, s, dst, d, size_only):
            plan.append(Action("skip", rel, s, target, s.size, "identical", d))
        else:
            plan.append(Action("copy", rel, s, target, s.size, "new" if d is None else "changed", d))
    if not filters.include:  # without includes, folders (also empty ones) are mirrored too
        wanted_dirs.update(rel for rel, s in src_items.items() if s.kind == "directory" and not filters.excluded(rel))
    for rel in sorted(wanted_dirs, key=lambda r: (r.count("/"), r)):
        existing = dst_by_key.get(_key(rel, fold))
        if existing is None or existing.kind != "directory":
            plan.append(Action("mkdir", rel, None, dst.join(dst_root, rel)))
    if delete:
        src_kinds = {_key(rel, fold): e.kind for rel, e in src_items.items()}
        gone: set[str] = set()  # folders deleted whole: what they hold goes with them
        kept: set[str] = set()  # folders holding something the filters leave alone: never deleted whole
        for rel, d in dst_items.items():
            if filters.excluded(rel) or (d.kind == "file" and not filters.wants_file(rel)):
                parts = rel.split("/")
                kept.update("/".join(parts[:i]) for i in range(1, len(parts)))
        for rel, d in sorted(dst_items.items()):
            parts = rel.split("/")
            if filters.excluded(rel) or any("/".join(parts[:i]) in gone for i in range(1, len(parts))):
                continue
            if (d.kind == "file" and not filters.wants_file(rel)) or rel in kept:
                continue
            if src_kinds.get(_key(rel, fold)) != d.kind:
                if d.kind == "directory":
                    gone.add(rel)
                plan.append(Action("delete", rel, None, d.path, d.size, dst=d))
    return plan


# ------------------------------------------------------------------------------------------ engine
class _Throttle:
    """``--bwlimit``: bytes per second over all transfers, enforced in the progress callbacks."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate if rate and rate > 0 else None
        self._lock = threading.Lock()
        self._free_at = 0.0

    def consume(self, n: int) -> None:
        if self.rate is None or n <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._free_at)
            self._free_at = start + n / self.rate
            wait = self._free_at - now - 1.0  # a second's worth of burst
        if wait > 0:
            time.sleep(wait)


class _FileProgress:
    """The fsspec callback put_file/get_file report bytes to: feeds the shared bar and the throttle."""

    def __init__(self, advance: Callable[[int], None], throttle: _Throttle) -> None:
        self.advance, self.throttle, self.seen = advance, throttle, 0

    def set_size(self, size: int) -> None:  # fsspec callback interface
        pass

    def relative_update(self, inc: int = 1) -> None:
        self.seen += inc
        self.advance(inc)
        self.throttle.consume(inc)


def _copy_one(src: Side, s: Entry, dst: Side, dst_path: str, progress: _FileProgress) -> None:
    """Copy one file; the destination is replaced in one step or left as it was."""
    if s.problem:
        raise OSError(errno.EINVAL, s.problem, src.show(s.path))
    if dst.is_box:
        check_path_names(dst_path)  # refused before any request, with the rule it breaks
    if src.is_box and dst.is_box:
        dst.fs.cp_file(s.path, dst_path)  # server side; an existing target goes through the safe replace
        progress.relative_update(s.size)
    elif dst.is_box:
        dst.fs.put_file(s.path, dst_path, callback=progress)
        # written to while being read, Box may hold bytes of two versions: say so, hold --delete back
        now = src.entry(s.path)
        if now is None or (now.size, now.mtime_ns) != (s.size, s.mtime_ns):
            raise OSError(errno.EAGAIN, "changed while being copied (Box keeps the previous version too): "
                          "sync again", src.show(s.path))
        src.remember(s.path, dst.fs.info(dst_path).get("sha1"), expect=s)  # Box checked it: no re-read next time
    else:
        src.fs.get_file(s.path, dst_path, callback=progress)  # replaced whole, checked against Box's SHA-1
        # remembered only if what it was checked against is still what the listing said (not changed since)
        dst.remember(dst_path, s.sha1 if src.fs.info(s.path).get("sha1") == s.sha1 else None)
    if progress.seen < s.size:  # a transfer that did not report (server side, small file)
        progress.relative_update(s.size - progress.seen)


def describe(exc: BaseException) -> str:
    """One line for a failed operation, for the person at the terminal: the library's message (it names
    the path, Box's code and request id) or, for an exception without one, the reason the frontend
    layer's errno table gives (one table for the mount, the servers and the command line)."""
    _code, reason = error_reason(exc)
    name: Any = None
    if isinstance(exc, OSError) and exc.strerror:
        text, name = exc.strerror, exc.filename
    elif isinstance(exc, OSError) and len(exc.args) == 1:  # FileNotFoundError(path), as fsspec raises them
        text, name = reason, exc.args[0]
    else:
        text = str(exc) or reason
    if name is not None and str(name) not in text:
        text = f"{name if str(name) else '/'}: {text}"
    return " ".join(text.split())


def execute(plan: list[Action], src: Side, dst: Side, report: SyncReport, *, transfers: int = 4,
            bwlimit: float | None = None, advance: Callable[[int], None] | None = None) -> SyncReport:
    """Carry out a plan: folders first (in order), then copies in parallel, then deletions.

    Every item is attempted; failures are collected in ``report.failed`` (a failed folder fails the
    files meant for it without trying them). Deletions run only when every copy succeeded, so a run
    that failed midway never removes what might still be the only copy a user has.
    """
    started = time.monotonic()
    advance = advance or (lambda n: None)
    throttle = _Throttle(bwlimit)
    lock = threading.Lock()
    broken: set[str] = set()
    report.skipped.extend(a for a in plan if a.op == "skip")
    for action in (a for a in plan if a.op == "mkdir"):
        try:
            dst.makedirs(action.dst_path)
            report.created.append(action)
        except Exception as exc:  # noqa: BLE001 - reported per item, the sync goes on
            broken.add(action.rel)
            report.failed.append((dst.show(action.dst_path), describe(exc)))

    def run(action: Action) -> None:
        assert action.src is not None
        parents = action.rel.split("/")[:-1]
        if any("/".join(parents[: i + 1]) in broken for i in range(len(parents))):
            with lock:
                report.failed.append((dst.show(action.dst_path), "its folder could not be created"))
            return
        progress = _FileProgress(advance, throttle)
        try:
            _copy_one(src, action.src, dst, action.dst_path, progress)
        except Exception as exc:  # noqa: BLE001 - reported per item, the sync goes on
            logger.debug("copy of %s failed", action.rel, exc_info=True)
            with lock:
                report.failed.append((dst.show(action.dst_path), describe(exc)))
            return
        with lock:
            report.copied.append(action)
            report.bytes_copied += action.size

    copies = [a for a in plan if a.op == "copy"]
    if copies:
        with ThreadPoolExecutor(max_workers=max(1, transfers)) as pool:
            list(pool.map(run, copies))
    deletions = [a for a in plan if a.op == "delete"]
    if deletions and report.failed:
        report.failed.append((dst.show(report.dst), f"{len(deletions)} deletion(s) not made because copies failed"))
    elif deletions:
        for action in deletions:
            assert action.dst is not None
            try:
                dst.remove(action.dst)
                report.deleted.append(action)
            except FileNotFoundError:
                report.deleted.append(action)  # gone already: what was asked for
            except Exception as exc:  # noqa: BLE001 - reported per item
                report.failed.append((dst.show(action.dst_path), describe(exc)))
    report.copied.sort(key=lambda a: a.rel)
    report.elapsed = time.monotonic() - started
    return report


def dry_report(plan: list[Action], report: SyncReport) -> SyncReport:
    """The report a run of ``plan`` would give if everything succeeded (``--dry-run``)."""
    report.dry_run = True
    for action in plan:
        {"copy": report.copied, "skip": report.skipped, "delete": report.deleted,
         "mkdir": report.created}[action.op].append(action)
    report.bytes_copied = sum(a.size for a in report.copied)
    return report


def sync(src: Side, src_root: str, dst: Side, dst_root: str, *, delete: bool = False, dry_run: bool = False,
         filters: FileFilter | None = None, size_only: bool = False, transfers: int = 4,
         bwlimit: float | None = None, advance: Callable[[int], None] | None = None,
         on_plan: Callable[[list[Action]], None] | None = None) -> SyncReport:
    """Make ``dst_root`` on ``dst`` match ``src_root`` on ``src``; see the module docstring.

    ``src_root`` must be a folder (``FileNotFoundError``/``NotADirectoryError`` otherwise); ``dst_root``
    is created when missing. ``on_plan`` sees the plan before anything is done (to size a progress bar).
    """
    root = src.entry(src_root)
    if root is None:
        raise FileNotFoundError(2, "No such file or directory", src.show(src_root))
    if root.kind != "directory":
        raise NotADirectoryError(20, "sync needs a folder as its source (use cp for one file)", src.show(src_root))
    plan = plan_sync(src, src_root, dst, dst_root, delete=delete, filters=filters, size_only=size_only)
    report = SyncReport(src.show(src_root), dst.show(dst_root))
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        return dry_report(plan, report)
    if dst.entry(dst_root) is None:
        dst.makedirs(dst_root)
    return execute(plan, src, dst, report, transfers=transfers, bwlimit=bwlimit, advance=advance)


# ------------------------------------------------------------------------------------------ check
@dataclass
class CheckReport:
    """``check``: files whose SHA-1 differs, and files only on one side (folders are not compared)."""

    same: int = 0
    differ: list[str] = field(default_factory=list)
    only_src: list[str] = field(default_factory=list)
    only_dst: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.differ or self.only_src or self.only_dst)

    def as_dict(self) -> dict[str, Any]:
        return {"same": self.same, "differ": self.differ, "missing_on_dst": self.only_src,
                "missing_on_src": self.only_dst, "ok": self.ok}


def check(src: Side, src_root: str, dst: Side, dst_root: str, *, filters: FileFilter | None = None) -> CheckReport:
    """Compare two trees file by file by size and SHA-1 (Box's from its listings, local ones hashed)."""
    filters = filters or FileFilter()
    fold = src.is_box or dst.is_box
    for side, root in ((src, src_root), (dst, dst_root)):
        entry = side.entry(root)
        if entry is None:
            raise FileNotFoundError(2, "No such file or directory", side.show(root))
        if entry.kind != "directory":
            raise NotADirectoryError(20, "check compares folders", side.show(root))
    src_items, dst_items = src.scan(src_root), dst.scan(dst_root)
    a = {_key(r, fold): (r, e) for r, e in src_items.items() if e.kind == "file" and filters.wants_file(r)}
    b = {_key(r, fold): (r, e) for r, e in dst_items.items() if e.kind == "file" and filters.wants_file(r)}
    report = CheckReport()
    # names differing only in case: at most one of them can be the file of that name on the other side
    report.differ.extend(r for r in case_clashes(src_items, fold) + case_clashes(dst_items, fold)
                         if filters.wants_file(r))
    for key in {_key(r, fold) for r in report.differ}:
        a.pop(key, None)
        b.pop(key, None)
    for key, (rel, s) in sorted(a.items()):
        if key not in b:
            report.only_src.append(rel)
        elif same_content(src, s, dst, b[key][1]):
            report.same += 1
        else:
            report.differ.append(rel)
    report.only_dst = sorted(rel for key, (rel, _e) in b.items() if key not in a)
    return report
