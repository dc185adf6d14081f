"""State in SQLite, file contents on disk addressed by SHA1.

One connection guarded by one lock: the emulator's handlers hold it only for metadata, never
while bytes move, so transfers on many connections proceed in parallel.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, login TEXT NOT NULL, name TEXT NOT NULL, enterprise_id TEXT,
    kind TEXT NOT NULL, app_client_id TEXT, created_at TEXT NOT NULL, modified_at TEXT NOT NULL,
    space_amount INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'active');
CREATE UNIQUE INDEX IF NOT EXISTS users_login ON users (login COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS apps (
    client_id TEXT PRIMARY KEY, client_secret TEXT NOT NULL, enterprise_id TEXT NOT NULL,
    auth_type TEXT NOT NULL, scopes TEXT NOT NULL, as_user_header INTEGER NOT NULL,
    enterprise_access INTEGER NOT NULL, service_account_id TEXT NOT NULL, redirect_uri TEXT,
    revoked INTEGER NOT NULL DEFAULT 0, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS app_keys (kid TEXT PRIMARY KEY, client_id TEXT NOT NULL, public_pem TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS token_actors (token TEXT PRIMARY KEY, external_id TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jtis (jti TEXT PRIMARY KEY, client_id TEXT NOT NULL, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, client_id TEXT NOT NULL, user_id TEXT NOT NULL,
    expires_at REAL NOT NULL, scopes TEXT, resource TEXT, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS auth_codes (
    code TEXT PRIMARY KEY, client_id TEXT NOT NULL, user_id TEXT NOT NULL, redirect_uri TEXT,
    expires_at REAL NOT NULL, used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, owner_id TEXT NOT NULL, parent_id TEXT NOT NULL,
    name TEXT NOT NULL, name_key TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL, modified_at TEXT NOT NULL, content_created_at TEXT,
    content_modified_at TEXT, created_by TEXT NOT NULL, modified_by TEXT NOT NULL,
    sequence_id INTEGER NOT NULL DEFAULT 0, version_id TEXT, trashed_at TEXT, trash_root INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS items_parent ON items (owner_id, parent_id, trashed_at);
CREATE INDEX IF NOT EXISTS items_name ON items (owner_id, parent_id, name_key);
CREATE INDEX IF NOT EXISTS items_in_folder ON items (parent_id, name_key);
CREATE TABLE IF NOT EXISTS versions (
    id TEXT PRIMARY KEY, file_id TEXT NOT NULL, sha1 TEXT NOT NULL, size INTEGER NOT NULL,
    name TEXT NOT NULL, created_at TEXT NOT NULL, modified_at TEXT NOT NULL, uploader_id TEXT NOT NULL,
    content_modified_at TEXT);
CREATE INDEX IF NOT EXISTS versions_file ON versions (file_id);
CREATE TABLE IF NOT EXISTS upload_sessions (
    id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, folder_id TEXT, file_id TEXT, file_name TEXT NOT NULL,
    file_size INTEGER NOT NULL, part_size INTEGER NOT NULL, total_parts INTEGER NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, committed_file_id TEXT, commit_polls INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS shared_links (
    item_id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, access TEXT NOT NULL, unshared_at TEXT,
    can_download INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, download_count INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS collaborations (
    id TEXT PRIMARY KEY, item_id TEXT NOT NULL, item_type TEXT NOT NULL, user_id TEXT NOT NULL,
    role TEXT NOT NULL, status TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL, acknowledged_at TEXT);
CREATE INDEX IF NOT EXISTS collaborations_item ON collaborations (item_id, user_id);
CREATE INDEX IF NOT EXISTS collaborations_user ON collaborations (user_id, status);
CREATE TABLE IF NOT EXISTS upload_parts (
    session_id TEXT NOT NULL, part_id TEXT NOT NULL, offset INTEGER NOT NULL, size INTEGER NOT NULL,
    sha1 TEXT NOT NULL, sha512 TEXT NOT NULL, PRIMARY KEY (session_id, offset));
-- the bytes of every version ever recorded, never decreased: a bound on any user's used space (Store.stored_bytes)
CREATE TRIGGER IF NOT EXISTS versions_bytes_insert AFTER INSERT ON versions BEGIN
    UPDATE counters SET value = value + NEW.size WHERE name = 'version_bytes'; END;
CREATE TRIGGER IF NOT EXISTS versions_bytes_update AFTER UPDATE OF size ON versions WHEN NEW.size > OLD.size BEGIN
    UPDATE counters SET value = value + NEW.size - OLD.size WHERE name = 'version_bytes'; END;
"""


def now_iso(ts: float | None = None) -> str:
    """Box's timestamp format: RFC 3339 with an explicit offset, to the second."""
    dt = datetime.fromtimestamp(ts, timezone.utc) if ts is not None else datetime.now(timezone.utc)
    return dt.replace(microsecond=0).isoformat()


class Store:
    """The emulator's persistent state: SQLite for metadata, a content-addressed blob folder."""

    def __init__(self, data_dir: str | os.PathLike[str] | None) -> None:
        self._owns_dir = data_dir is None
        self.root = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="box-emulator-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.session_dir = self.root / "sessions"
        for d in (self.blob_dir, self.tmp_dir, self.session_dir):
            d.mkdir(exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.root / "state.sqlite3", check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        # a data dir made before the triggers: start the bound from what is there
        self.db.execute("INSERT OR IGNORE INTO counters (name, value) "
                        "SELECT 'version_bytes', COALESCE(SUM(size), 0) FROM versions")
        self._blob_dirs: set[str] = set()  # blob folders known to exist (a mkdir per upload is a syscall)

    def close(self) -> None:
        with self.lock:
            self.db.close()
        if self._owns_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- SQL helpers -------------------------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction under the store lock."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")

    def one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self.lock:
            return self.db.execute(sql, args).fetchone()

    def all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def execute(self, sql: str, *args: Any) -> None:
        with self.lock:
            self.db.execute(sql, args)

    def next_id(self, name: str, start: int) -> str:
        """Box ids are numeric strings; each kind counts up from its own start."""
        with self.lock:
            rows = self.db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                                   "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
                                   (name, start)).fetchall()
            return str(rows[0]["value"])

    def stored_bytes(self) -> int:
        """The bytes of every file version ever recorded (kept by triggers, never decreased): no user's
        used space exceeds it, so content that fits within a quota beside it fits without summing."""
        row = self.one("SELECT value FROM counters WHERE name='version_bytes'")
        return int(row["value"]) if row else 0

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key=?", key)
        return row["value"] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", key, value)

    # -- blobs ---------------------------------------------------------------------------------------
    def blob_path(self, sha1: str) -> Path:
        return self.blob_dir / sha1[:2] / sha1

    def new_temp(self) -> tuple[IO[bytes], Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp_dir)
        return os.fdopen(fd, "wb"), Path(name)

    def adopt_blob(self, temp: Path, sha1: str) -> None:
        """Move a fully written temp file into the blob store under its SHA1."""
        target = self.blob_path(sha1)
        if target.parent.name not in self._blob_dirs:
            target.parent.mkdir(exist_ok=True)
            self._blob_dirs.add(target.parent.name)
        if target.exists():
            temp.unlink()
        else:
            os.replace(temp, target)

    def read_blob(self, sha1: str, start: int = 0, end: int | None = None, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Stream bytes [start, end) of a blob."""
        with open(self.blob_path(sha1), "rb") as f:
            f.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                data = f.read(chunk if remaining is None else min(chunk, remaining))
                if not data:
                    break
                if remaining is not None:
                    remaining -= len(data)
                yield data

