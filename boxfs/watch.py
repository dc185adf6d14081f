"""One change watcher per (app, acting user) per process: Box's event stream, long-polled.

Why: a filesystem caches what it learned from Box (:mod:`boxfs.dircache`), and other processes, other
tokens and people in Box's web app change the same folders. Box tells each user what changed in their
view through the user event stream; one long poll per user wakes us when something did, and one
``GET /events`` fetches what. Every filesystem of that user in this process subscribes to the same
watcher (a server with many logins holds at most one long poll per active Box user), which starts on
first use and stops once no filesystem uses it any more.

Trust. :attr:`ChangeWatcher.trusted_since` is the moment (``time.monotonic()``) from which every change
on Box is guaranteed to reach the subscribers: set when the watcher learned its starting stream position,
kept while the stream is unbroken, None while the watcher is failing or disabled (for example a token
downscoped to some items, which Box does not let read the stream). What a filesystem learned after that
moment stays valid until an event says otherwise; everything else expires after a short time (see
:class:`~boxfs.dircache.BoxDirCache`).

Cost, per user and process: ``GET /events?stream_position=now`` once at start, one held long poll
(re-sent when Box answers ``reconnect``, about every ten minutes), ``OPTIONS /events`` once per
``max_retries`` polls or ``ttl``, and one ``GET /events`` per burst of changes (changes made within
:data:`COALESCE` seconds share it, at most one a :data:`CATCH_UP_INTERVAL`). The process's own changes are
part of the stream too: while it keeps writing, the fetch waits for its writes to pause, up to
:data:`BURST_WAIT_MAX` (see there). An idle watcher makes no request beyond its long poll.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

import requests

from boxfs.api.errors import BoxAuthError
from boxfs.api.transport import BoxTransport, last_write
from boxfs.auth.provider import TokenProvider
from boxfs.config import BoxEndpoints
from boxfs.dircache import UNWATCHED_EXPIRY, BoxDirCache
from boxfs.names import name_key
from boxfs.retry import CONNECTION_ERRORS, RetryPolicy

logger = logging.getLogger("boxfs")

#: seconds to wait after a long poll says "new_change", so that a burst of changes costs one GET /events
COALESCE = 0.2
#: at most one GET /events per this many seconds while changes keep coming from elsewhere
CATCH_UP_INTERVAL = 1.0
#: while this process itself keeps writing (each write is an event that ends the long poll), the GET /events
#: waits until its writes pause for COALESCE, but at most this long; while they go on, the next fetch comes
#: this long after (a long poll would end at once): a burst of 1,000 uploads then costs a few watcher
#: requests instead of two a second. A change made elsewhere during such a burst is seen within this bound,
#: which is what a cache without a watcher guarantees anyway (:data:`boxfs.dircache.UNWATCHED_EXPIRY`)
BURST_WAIT_MAX = UNWATCHED_EXPIRY
#: events fetched per GET /events (Box's maximum)
PAGE = 500
#: after a failure, wait this long (doubling up to BACKOFF_MAX) before trying again
BACKOFF = 1.0
BACKOFF_MAX = 30.0
#: attempts per watcher request (the loop itself retries for ever, with BACKOFF)
WATCH_ATTEMPTS = 3
#: a watcher Box refused (no right to read the stream) is not tried again for this long
DISABLED_FOR = 600.0


class Subscriber(Protocol):
    def on_events(self, entries: list[dict[str, Any]]) -> None:
        """Called on the watcher's thread with each batch of Box events, in stream order."""


class ChangeWatcher:
    """Long-polls one user's event stream and hands every event to its subscribers."""

    def __init__(self, key: tuple[Any, ...], endpoints: BoxEndpoints, provider: TokenProvider,
                 policy: RetryPolicy, as_user_id: str | None) -> None:
        self.key = key
        # few attempts per request: while Box fails, the loop must soon say so (caches then expire) rather
        # than stay trusted through a long retry
        policy = replace(policy, max_attempts=min(policy.max_attempts, WATCH_ATTEMPTS))
        self.policy = policy
        self.transport = BoxTransport(endpoints, provider, policy, max_connections=2, as_user_id=as_user_id)
        self._poll_session = requests.Session()  # the real-time server needs no credentials: none sent
        self._poll_session.headers["User-Agent"] = "boxfs"
        self._subscribers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._starting = False  # a thread is learning the stream position (see start)
        self._started = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._position: Any = None
        self._healthy = False
        self._caught_up_at = 0.0  # monotonic time of the last complete catch-up (paces GET /events)
        self._news = False  # a long poll announced changes not fetched yet (see unread_news)
        self._since: float | None = None
        self.disabled_until = 0.0
        self.error: str | None = None

    # ------------------------------------------------------------------------------------ state
    @property
    def trusted_since(self) -> float | None:
        """Changes made on Box after this monotonic time reach the subscribers; None: nothing is trusted."""
        return self._since if self._healthy else None

    @property
    def unread_news(self) -> bool:
        """Box announced changes this watcher has not fetched yet (it waits for a burst to settle, up to
        BURST_WAIT_MAX): a name missing from a cached listing may exist by now."""
        return self._news

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Deliver events to ``subscriber`` (held weakly: a collected filesystem unsubscribes itself)."""
        with self._lock:
            self._subscribers.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def start(self, wait: bool = False) -> None:
        """Learn the current stream position (one request, so that trust starts now), then long-poll on a
        daemon thread. Does nothing when already running or recently refused.

        No lock is held over the request: a listing of another folder, or another filesystem subscribing,
        does not wait for it. A caller that finds another thread starting the watcher returns at once
        (what it lists meanwhile is not yet vouched for and expires as without a watcher), unless ``wait``
        (``fs.watch()``, which needs to know whether the stream can be read).
        """
        with self._lock:
            if self._starting:
                if wait:
                    self._started.wait_for(lambda: not self._starting)
                return
            if self.running or time.monotonic() < self.disabled_until:
                return
            self._starting = True
        try:
            with _registry_lock:  # a watcher that stopped for lack of users and is wanted again
                _registry.setdefault(self.key, self)
            try:
                data = self.transport.json("GET", self.transport.api("/events"),
                                           params={"stream_position": "now", "stream_type": "changes"},
                                           action="reading the event stream position")
            except (BoxAuthError, PermissionError) as exc:
                self._disable(exc)
                return
            except Exception as exc:  # noqa: BLE001 - no watcher: the caches fall back to expiry
                self.error = str(exc)
                logger.warning("change watcher unavailable (caches will expire instead): %s", exc)
                self.disabled_until = time.monotonic() + BACKOFF_MAX
                return
            with self._lock:
                self._position = data.get("next_stream_position")
                self._since = time.monotonic()
                self._healthy = True
                self.error = None
                self._thread = threading.Thread(target=self._run, name=f"boxfs-watch-{self.transport.as_user_id}",
                                                daemon=True)
                self._thread.start()
        finally:
            with self._lock:
                self._starting = False
                self._started.notify_all()

    def _disable(self, exc: BaseException) -> None:
        self._healthy = False
        self.error = str(exc)
        self.disabled_until = time.monotonic() + DISABLED_FOR
        logger.info("change watcher disabled: this token cannot read Box's event stream (%s); "
                    "cached listings expire instead", exc)

    # ------------------------------------------------------------------------------------- loop
    def _run(self) -> None:
        server: dict[str, Any] | None = None
        polls = 0
        expires = 0.0
        backoff = BACKOFF
        while True:
            with self._lock:
                if not self._subscribers:
                    _forget(self)  # no filesystem uses this watcher any more: stop
                    self._healthy = False
                    return
            try:
                if server is None or polls >= int(server.get("max_retries") or 10) or time.monotonic() > expires:
                    server = self._realtime_server()
                    polls = 0
                    expires = time.monotonic() + 60 * float(server.get("ttl") or 10)
                polls += 1
                message = self._long_poll(server)
                if message == "new_change":
                    self._news = True
                    try:
                        self._settle()
                        fetched = self._catch_up()
                        while fetched and self._writing():  # a poll would end at our next write: fetch again
                            self._settle()
                            fetched = self._catch_up()
                    finally:
                        self._news = False
                elif message == "reconnect":
                    pass
                else:  # "max_retries" or anything unknown: ask for a new server
                    server = None
                if not self._healthy:
                    self._catch_up()  # a poll that works again: fetch what was missed, then trust again
                backoff = BACKOFF
            except (BoxAuthError, PermissionError) as exc:
                self._disable(exc)
                with self._lock:
                    _forget(self)
                return
            except Exception as exc:  # noqa: BLE001 - keep watching; meanwhile caches expire
                self._healthy = False
                self.error = str(exc)
                server = None
                logger.info("change watcher: %s; retrying in %.0f s (cached listings expire meanwhile)",
                            exc, backoff)
                time.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)

    def _writing(self) -> bool:
        """Whether this process is writing as this user (a write in flight, or one within COALESCE)."""
        return time.monotonic() < last_write(self.transport.endpoints.base_url, self.transport.as_user_id) + COALESCE

    def _settle(self) -> None:
        """Wait, after a long poll announced changes, for the burst they belong to: COALESCE seconds (at most
        one fetch a CATCH_UP_INTERVAL), and while this process keeps writing as this user until its writes
        pause for COALESCE, but no longer than BURST_WAIT_MAX in all."""
        begun = time.monotonic()
        time.sleep(max(COALESCE, self._caught_up_at + CATCH_UP_INTERVAL - begun))
        until = begun + BURST_WAIT_MAX
        while True:
            now = time.monotonic()
            quiet_at = last_write(self.transport.endpoints.base_url, self.transport.as_user_id) + COALESCE
            if now >= quiet_at or now >= until:
                return
            time.sleep(min(quiet_at, until, now + COALESCE) - now)  # a write in flight reads as "now"

    def _realtime_server(self) -> dict[str, Any]:
        data = self.transport.json("OPTIONS", self.transport.api("/events"), action="finding the long-poll server")
        for entry in data.get("entries") or []:
            if entry.get("type") == "realtime_server" and entry.get("url"):
                return dict(entry)
        raise ValueError("Box offered no long-poll server (OPTIONS /events)")

    def _long_poll(self, server: dict[str, Any]) -> str:
        url = str(server["url"])
        url += ("&" if "?" in url else "?") + f"stream_position={self._position}"
        hold = float(server.get("retry_timeout") or 610)
        try:
            resp = self._poll_session.get(url, timeout=(self.policy.connect_timeout, hold))
        except CONNECTION_ERRORS as exc:
            raise ConnectionError(f"long poll failed: {type(exc).__name__}") from None
        if resp.status_code >= 400:
            raise ConnectionError(f"long poll answered HTTP {resp.status_code}")
        try:
            return str(resp.json().get("message", ""))
        except ValueError:
            return ""

    def _catch_up(self) -> int:
        """Fetch every event after our position and hand them out; trusted again once caught up. Returns
        how many events there were (none: whatever this process is writing makes no events, e.g. the
        parts of a large upload, and the long poll can wait for the next one)."""
        count = 0
        while True:
            data = self.transport.json(
                "GET", self.transport.api("/events"),
                params={"stream_position": self._position, "stream_type": "changes", "limit": PAGE},
                action="reading the event stream",
            )
            entries = data.get("entries") or []
            count += len(entries)
            if entries:
                self._deliver(entries)
            self._position = data.get("next_stream_position", self._position)
            if len(entries) < PAGE:
                break
        self._caught_up_at = time.monotonic()
        self._healthy = True
        return count

    def _deliver(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.on_events(entries)
            except Exception:  # one subscriber's bug must not stop the others' coherence
                logger.exception("change watcher: a subscriber failed to apply %d events", len(entries))


# ---------------------------------------------------------------------------------- one filesystem's view
#: Box event type -> the ``type`` of a change as fs.watch() reports it
CHANGE_TYPES = {"ITEM_CREATE": "created", "ITEM_UPLOAD": "uploaded", "ITEM_COPY": "copied", "ITEM_MOVE": "moved",
                "ITEM_RENAME": "moved", "ITEM_TRASH": "deleted", "ITEM_UNDELETE_VIA_TRASH": "restored"}
KINDS = {"file": "file", "folder": "directory"}
#: events that change who sees an item (a collaboration added, changed, removed), not the item: its etag
#: stays the same, so the cache forgets the place whatever etag it holds
ACCESS_EVENTS = frozenset({"COLLAB_ADD_COLLABORATOR", "COLLAB_ROLE_CHANGE", "COLLAB_REMOVE_COLLABORATOR"})
KNOWN_PATHS = 10_000


def source_path(source: dict[str, Any], root_folder_id: str) -> str | None:
    """The path of an event's item relative to a filesystem's root folder, from its ``path_collection``;
    None when the item is not below that root (or Box gave no path)."""
    entries = (source.get("path_collection") or {}).get("entries") or []
    ids = [str(e.get("id")) for e in entries]
    if root_folder_id not in ids or not source.get("name"):
        return None
    names = [str(e.get("name")) for e in entries[ids.index(root_folder_id) + 1:]]
    return "/".join([*names, str(source["name"])])


def _under(path: str | None, prefix: str) -> bool:
    if path is None:
        return False
    return not prefix or name_key(path) == name_key(prefix) or name_key(path).startswith(name_key(prefix) + "/")


def _sequence(etag: Any) -> int | None:
    return int(etag) if isinstance(etag, (str, int)) and str(etag).isdigit() else None


class CacheFeed:
    """Applies one user's Box events to one filesystem's cache and hands them to its ``fs.watch()`` iterators.

    A change the cache already shows (the same item at the same path, with this etag or a newer one: most
    often this filesystem's own write) costs nothing; any other makes the cache forget the places it
    touches (old and new path, their parents' listings), so the next look asks Box once. Forgetting rather
    than patching keeps late or reordered events from ever making the cache wrong.
    """

    def __init__(self, cache: BoxDirCache, root_folder_id: str) -> None:
        self.cache = cache
        self.root_folder_id = root_folder_id
        self._listeners: weakref.WeakSet[Changes] = weakref.WeakSet()
        self._lock = threading.Lock()
        #: where the stream last put each item (most recent KNOWN_PATHS): a move's old path when the
        #: cache never held the item
        self._paths: OrderedDict[str, str] = OrderedDict()
        self.watcher: ChangeWatcher | None = None  # set by the filesystem when it starts watching

    def trusted_since(self) -> float | None:
        """See :attr:`ChangeWatcher.trusted_since`; None before the filesystem started watching."""
        return None if self.watcher is None else self.watcher.trusted_since

    def unread_news(self) -> bool:
        """See :attr:`ChangeWatcher.unread_news` (also True while the watcher is failing: nothing vouches
        for a listing then); False before the filesystem started watching."""
        return self.watcher is not None and (self.watcher.trusted_since is None or self.watcher.unread_news)

    def on_events(self, entries: list[dict[str, Any]]) -> None:
        # where the cache holds each item, once per batch (what the batch itself forgets stays listed:
        # forgetting a forgotten path again is harmless)
        known = self.cache.paths_by_id()
        for event in entries:
            change = self.change(event, known)
            if change is None:
                continue
            with self._lock:
                listeners = list(self._listeners)
            for listener in listeners:
                listener.offer(change)
            self._apply(change, known.get(change["id"]))

    def change(self, event: dict[str, Any], known: dict[str, str]) -> dict[str, Any] | None:
        """What an event means for this filesystem (paths relative to its root), or None if nothing."""
        source = event.get("source") or {}
        kind = KINDS.get(str(source.get("type")))
        if kind is None:
            return None
        item_id = str(source.get("id"))
        old = known.get(item_id) or self._paths.get(item_id)
        at = source_path(source, self.root_folder_id)
        if at is None:  # Box gave no usable path (e.g. a trashed item's): try the parent we know
            parent_id = str((source.get("parent") or {}).get("id"))
            parent = "" if parent_id == self.root_folder_id else known.get(parent_id)
            at = None if parent is None else "/".join(p for p in (parent, str(source.get("name") or "")) if p)
        if at is None and old is None:
            return None
        event_type = str(event.get("event_type"))
        change_type = CHANGE_TYPES.get(event_type, "modified")
        path = (old or at) if change_type == "deleted" else (at or old)
        self._paths.pop(item_id, None)
        if change_type != "deleted" and path is not None:
            self._paths[item_id] = path
            if len(self._paths) > KNOWN_PATHS:
                self._paths.popitem(last=False)
        by = event.get("created_by") or {}
        return {
            "type": change_type, "path": path, "old_path": old if change_type == "moved" else None,
            "kind": kind, "id": item_id, "size": source.get("size"), "sha1": source.get("sha1"),
            "etag": source.get("etag"), "event_type": event_type, "event_id": event.get("event_id"),
            "by": by.get("login") or by.get("id"), "time": event.get("created_at"),
        }

    def _apply(self, change: dict[str, Any], old: str | None) -> None:
        """Make the cache forget what ``change`` touched; ``old``: where the cache held the item."""
        path = change["path"]
        if change["type"] == "deleted":
            if old is not None:
                self.cache.changed_elsewhere(old)
            return
        if old is not None and name_key(old) == name_key(path) and change["event_type"] not in ACCESS_EVENTS:
            cached = self.cache.get(old) or {}
            have, new = _sequence(cached.get("etag")), _sequence(change["etag"])
            if cached.get("id") == change["id"] and have is not None and new is not None and have >= new:
                return  # already known (our own change, or a newer state)
        if old is not None:
            self.cache.changed_elsewhere(old)
        if path is not None and (old is None or name_key(old) != name_key(path)):
            self.cache.changed_elsewhere(path)

    def listen(self, path: str, timeout: float | None) -> Changes:
        """An iterator of the changes at or below ``path`` from now on; it ends after ``timeout`` seconds
        without one (None: never). Registered at once, so nothing between this call and the first
        ``next()`` is lost; held weakly, so an iterator dropped unstarted or half-way stops collecting."""
        changes = Changes(self, path, timeout)
        with self._lock:
            self._listeners.add(changes)
        return changes

    def forget(self, changes: Changes) -> None:
        with self._lock:
            self._listeners.discard(changes)

    def listening(self) -> int:
        """How many ``fs.watch()`` iterators receive this filesystem's changes."""
        with self._lock:
            return len(self._listeners)


class Changes(Iterator[dict[str, Any]]):
    """What ``fs.watch()`` returns: the changes under one path, queued from the moment it was made.

    Why a class rather than a generator: a generator's clean-up runs only once it has started, so an
    iterator made and dropped unstarted would stay registered and queue every change for ever. The feed
    holds this weakly instead; :meth:`close` (or the timeout) unregisters it at once.
    """

    def __init__(self, feed: CacheFeed, prefix: str, timeout: float | None) -> None:
        self.prefix = prefix
        self._feed = feed
        self._timeout = timeout
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._closed = False

    def offer(self, change: dict[str, Any]) -> None:
        """Queue ``change`` if it touches this iterator's path (its new or its old one)."""
        if _under(change["path"], self.prefix) or _under(change.get("old_path"), self.prefix):
            self._queue.put(change)

    def __next__(self) -> dict[str, Any]:
        if self._closed:
            raise StopIteration
        try:
            return self._queue.get(timeout=self._timeout)
        except queue.Empty:
            self.close()
            raise StopIteration from None

    def close(self) -> None:
        """Stop receiving changes (what was queued is dropped)."""
        self._closed = True
        self._feed.forget(self)


def trust_of(feed: CacheFeed) -> Callable[[], float | None]:
    """The cache's ``trust`` callable for a feed, holding it weakly (no cycle keeps a filesystem alive,
    and so its watcher running, after its last user dropped it)."""
    ref = weakref.ref(feed)

    def trusted_since() -> float | None:
        alive = ref()
        return None if alive is None else alive.trusted_since()

    return trusted_since


# ------------------------------------------------------------------------------------------ registry
def enabled_by_default() -> bool:
    """``watch_events`` when not given: on, unless ``BOXFS_WATCH_EVENTS`` is 0/false/no/off."""
    return os.environ.get("BOXFS_WATCH_EVENTS", "1").strip().lower() not in ("0", "false", "no", "off")


_registry: dict[tuple[Any, ...], ChangeWatcher] = {}
_registry_lock = threading.Lock()


def _forget(watcher: ChangeWatcher) -> None:
    """Drop a stopping watcher from the registry (called with the watcher's lock held)."""
    with _registry_lock:
        if _registry.get(watcher.key) is watcher:
            del _registry[watcher.key]


def watcher_for(endpoints: BoxEndpoints, provider: TokenProvider, policy: RetryPolicy,
                as_user_id: str | None) -> ChangeWatcher:
    """The process's watcher for this app (its token provider) acting as this user, created if needed."""
    key = (id(provider), endpoints.base_url, as_user_id)
    with _registry_lock:
        watcher = _registry.get(key)
        if watcher is None or watcher.transport.provider is not provider:
            watcher = _registry[key] = ChangeWatcher(key, endpoints, provider, policy, as_user_id)
        return watcher


def active_watchers() -> list[ChangeWatcher]:
    """Watchers of this process (one per app and acting user in use); for servers and tests."""
    with _registry_lock:
        return list(_registry.values())


def _after_fork() -> None:
    """A forked child has none of the parent's threads: it starts watchers of its own."""
    global _registry_lock
    _registry.clear()
    _registry_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
