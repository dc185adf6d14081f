"""Box's user event stream: ``GET /events``, ``OPTIONS /events`` and the long-poll (real-time) server.

Why here, apart from the item routes: every route that changes what a user can see (create, upload,
new version, move, rename, copy, trash) reports the change with one call, :meth:`EventLog.record`, and
everything about streams lives in this module. Events are rows in the emulator's SQLite database, so
every token and every process talking to the emulator produces them and a restarted emulator keeps its
stream. An event goes to the stream of each user who can see the item (:meth:`BoxState.audience`: the
owner and the collaborators on it or a folder above it), whoever caused it (another app, another token,
``As-User``), with the item rendered as that user sees it (a collaborator's ``path_collection`` starts
at their own "All Files").

Stream positions are the events' row numbers: ``stream_position=P`` answers the events after ``P``
(``0``: from the first, ``now``: none, just the current position) and ``next_stream_position`` is where
the next call continues. The long-poll URL (``OPTIONS /events``) names a channel bound to the user; a
``GET`` on it answers ``{"message": "new_change"}`` as soon as the user's stream has an event after the
given position, else ``{"message": "reconnect"}`` after the hold (Box holds about ten minutes; tests may
shorten it with :meth:`EventLog.set_hold`). A channel serves ``max_retries`` polls within its ``ttl``
minutes; after that it answers ``{"message": "max_retries"}`` and the client asks ``OPTIONS`` again.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from boxfs.emulator.errors import ApiError, bad_request
from boxfs.emulator.httpserver import Request, Response, Router
from boxfs.emulator.representations import Representer
from boxfs.emulator.state import BoxState, Principal
from boxfs.emulator.store import now_iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, user_id TEXT NOT NULL,
    event_type TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL, source TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id, position);
"""

#: event types a user stream carries (all of them change the file tree, so ``all`` = ``changes`` here)
EVENT_TYPES = frozenset({"ITEM_CREATE", "ITEM_UPLOAD", "ITEM_MOVE", "ITEM_RENAME", "ITEM_COPY", "ITEM_TRASH",
                         "ITEM_UNDELETE_VIA_TRASH", "ITEM_MODIFY", "COLLAB_ADD_COLLABORATOR",
                         "COLLAB_REMOVE_COLLABORATOR", "COLLAB_ROLE_CHANGE"})
STREAM_TYPES = ("all", "changes", "sync")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
#: what Box's OPTIONS /events announces: minutes a channel lives, polls it serves, seconds to wait at most
CHANNEL_TTL_MINUTES = 10
CHANNEL_MAX_RETRIES = 10
RETRY_TIMEOUT = 610
DEFAULT_HOLD = 600.0


@dataclass
class _Channel:
    user_id: str
    expires: float
    polls: int = 0


class EventLog:
    """Records events and serves the event routes; one per emulator."""

    def __init__(self, state: BoxState, rep: Representer) -> None:
        self.state = state
        self.store = state.store
        self.rep = rep
        with self.store.lock:
            self.store.db.executescript(SCHEMA)
        self.hold = DEFAULT_HOLD
        self._cond = threading.Condition()
        self._closing = False
        self._channels: dict[str, _Channel] = {}

    # -- recording (the hooks at the mutation points call this) -----------------------------------------
    def sources(self, row: Any, users: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The item as each of ``users`` sees it now (an event's ``source``, rendered before a change
        that takes it out of their sight)."""
        out: dict[str, dict[str, Any]] = {}
        for user_id in users:
            with self.state.viewing(user_id):
                out[user_id] = self.rep.item(row, None)
        return out

    def record(self, p: Principal, event_type: str, row: Any, *, also: Iterable[str] = (),
               sources: dict[str, dict[str, Any]] | None = None) -> None:
        """Append an event about ``row`` (as it is now) to the stream of everyone who can see it, and of
        ``also`` (those who saw it before the change: a move out of a shared folder tells them too, with
        a source they cannot place). ``sources`` overrides the rendering for some users."""
        assert event_type in EVENT_TYPES, event_type
        users = list(dict.fromkeys([*self.state.audience(row), *also, *(sources or {})]))
        rendered = self.sources(row, [u for u in users if u not in (sources or {})]) | (sources or {})
        now = now_iso()
        with self.store.tx() as db:
            for user_id in users:
                source = rendered[user_id]
                if event_type == "ITEM_TRASH":
                    source["item_status"] = "trashed"
                db.execute(
                    "INSERT INTO events (event_id, user_id, event_type, created_at, created_by, source) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (uuid.uuid4().hex, user_id, event_type, now, p.user_id, json.dumps(source)))
        with self._cond:
            self._cond.notify_all()

    def set_hold(self, seconds: float) -> None:
        """How long a long poll is held open without news before it answers ``reconnect``."""
        self.hold = float(seconds)

    def close(self) -> None:
        """Answer every held long poll now (the server is stopping)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    # -- reading -------------------------------------------------------------------------------------------
    def _latest(self, user_id: str | None = None) -> int:
        row = self.store.one("SELECT MAX(position) AS p FROM events" + (" WHERE user_id=?" if user_id else ""),
                             *([user_id] if user_id else []))
        return int(row["p"] or 0) if row else 0

    @staticmethod
    def _position(raw: str | None) -> int | None:
        """``now`` -> None; a number -> that number; anything else is refused."""
        if raw is None or raw == "" or raw == "0":
            return 0
        if raw == "now":
            return None
        if not raw.isdigit():
            raise bad_request(f"Invalid value for stream_position: {raw!r}; a position or 'now' is required",
                              "invalid_parameter")
        return int(raw)

    def _principal(self, req: Request) -> Principal:
        p = self.state.principal(req)
        if p.downscoped:  # a token downscoped to some items cannot read the user's whole stream
            raise ApiError(403, "insufficient_scope",
                           "The request requires higher privileges than provided by the access token.")
        return p

    def get_events(self, req: Request) -> Response:
        p = self._principal(req)
        stream_type = req.query.get("stream_type", "all")
        if stream_type in ("admin_logs", "admin_logs_streaming"):
            raise bad_request(f"stream_type {stream_type} (enterprise events) is not provided by the emulator",
                              "invalid_parameter")
        if stream_type not in STREAM_TYPES:
            raise bad_request(f"Invalid value for stream_type: {stream_type!r}; one of {', '.join(STREAM_TYPES)}",
                              "invalid_parameter")
        try:
            limit = int(req.query.get("limit", str(DEFAULT_LIMIT)))
        except ValueError:
            raise bad_request("limit must be an integer", "invalid_parameter") from None
        if limit < 1:
            raise bad_request("limit must be a positive integer", "invalid_parameter")
        limit = min(limit, MAX_LIMIT)
        position = self._position(req.query.get("stream_position"))
        if position is None:
            return Response.json({"chunk_size": 0, "next_stream_position": self._latest(), "entries": []})
        rows = self.store.all("SELECT * FROM events WHERE user_id=? AND position>? ORDER BY position LIMIT ?",
                              p.user_id, position, limit)
        entries = [self._event(r) for r in rows]
        nxt = rows[-1]["position"] if rows else max(position, self._latest())
        return Response.json({"chunk_size": len(entries), "next_stream_position": nxt, "entries": entries})

    def _event(self, row: Any) -> dict[str, Any]:
        return {
            "type": "event", "event_id": row["event_id"], "event_type": row["event_type"],
            "created_at": row["created_at"], "recorded_at": row["created_at"],
            "created_by": self.rep.user_mini(row["created_by"]),
            "source": json.loads(row["source"]),
        }

    # -- long polling --------------------------------------------------------------------------------------
    def options_events(self, req: Request) -> Response:
        p = self._principal(req)
        channel = secrets.token_hex(10)
        now = time.monotonic()
        with self._cond:
            for k in [k for k, c in self._channels.items() if c.expires < now]:
                del self._channels[k]
            self._channels[channel] = _Channel(p.user_id, now + CHANNEL_TTL_MINUTES * 60)
        url = f"{req.base_url}/realtime/subscribe?channel={channel}&stream_type=all"
        return Response.json({"chunk_size": 1, "entries": [{
            "type": "realtime_server", "url": url, "ttl": str(CHANNEL_TTL_MINUTES),
            "max_retries": str(CHANNEL_MAX_RETRIES), "retry_timeout": RETRY_TIMEOUT,
        }]})

    def subscribe(self, req: Request) -> Response:
        """The real-time server: hold the request until the user's stream moves past the position."""
        with self._cond:
            if self._closing:  # the server is stopping (its database may be closed already)
                return Response.json({"message": "reconnect"})
            channel = self._channels.get(req.query.get("channel", ""))
            if channel is None or channel.expires < time.monotonic() or channel.polls >= CHANNEL_MAX_RETRIES:
                return Response.json({"message": "max_retries"})
            channel.polls += 1
        raw = req.query.get("stream_position")
        position = self._position(raw) if raw not in (None, "") else None
        if position is None:
            position = self._latest(channel.user_id)
        deadline = time.monotonic() + self.hold
        with self._cond:
            while True:
                if self._closing:
                    return Response.json({"message": "reconnect"})
                if self._latest(channel.user_id) > position:
                    return Response.json({"message": "new_change"})
                left = deadline - time.monotonic()
                if left <= 0:
                    return Response.json({"message": "reconnect"})
                self._cond.wait(min(left, 1.0))

    def register(self, router: Router) -> None:
        router.add("GET", "api", "/events", self.get_events)
        router.add("OPTIONS", "api", "/events", self.options_events)
        router.add("GET", "realtime", "/subscribe", self.subscribe)
