"""What one filesystem knows about its Box tree: path -> item, and folder listings.

Box has no lookup by path, so resolving ``a/b/c`` means listing ``""``, ``a`` and ``a/b``. Every call is
rate-limited per user, so we remember: each item we have seen (id, type, etag, size, sha1, times) under its
path, and each folder listing we have fetched completely. A path missing from a complete listing is known
not to exist, also without a call.

The cache belongs to one filesystem instance (one acting user) and is never shared. Every mutation the
filesystem makes reports itself here through one of :meth:`added`, :meth:`removed`, :meth:`moved`,
:meth:`changed`, which is the one place that keeps the cache true. Keys are case-folded because Box names
are case-insensitive; the items keep Box's own spelling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from boxfs.names import name_key

Item = dict[str, Any]

#: seconds a listing is kept when no change watcher vouches for it (watcher off, failing, or refused)
UNWATCHED_EXPIRY = 5.0


def _key(path: str) -> str:
    return name_key(path)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _self_and_above(k: str) -> list[str]:
    """``a/b/c`` -> ``a/b/c``, ``a/b``, ``a``, ``""``."""
    out = [k]
    while k:
        k = _parent(k)
        out.append(k)
    return out


class BoxDirCache:
    """Thread-safe path -> item cache plus complete folder listings, with case-insensitive keys."""

    def __init__(self, expiry: float | None = None) -> None:
        """``expiry``: seconds after which what was learned from Box is asked again (None: kept until
        invalidated; 0: nothing is kept). fsspec's ``listings_expiry_time``/``use_listings_cache``."""
        self._lock = threading.RLock()
        self.expiry = expiry
        self._items: dict[str, Item] = {}
        #: folder key -> {child name key: child path key}; present only for completely listed folders
        self._listings: dict[str, dict[str, str]] = {}
        #: key -> monotonic time it was learned (items and listings), used only when expiry is set
        self._stamps: dict[str, float] = {}
        self._listing_stamps: dict[str, float] = {}
        #: folders whose listing we assumed (we created them empty) rather than fetched from Box
        self._assumed: set[str] = set()
        #: our own changes, with when they happened, so that a listing fetched while they happened does
        #: not undo them: folder key -> {child name key: (child key, time)} for additions, and
        #: item key -> time for removals
        self._recent: dict[str, dict[str, tuple[str, float]]] = {}
        self._gone: dict[str, float] = {}
        #: key -> when a change made elsewhere was reported there (see changed_elsewhere)
        self._dirty: dict[str, float] = {}
        #: set by a filesystem with a change watcher (boxfs.watch): the moment from which every change made
        #: on Box is reported here, or None while nothing is; None (no callable): kept until invalidated
        self.trust: Callable[[], float | None] | None = None
        self.unwatched_expiry = UNWATCHED_EXPIRY

    def _fresh(self, stamps: dict[str, float], k: str) -> bool:
        """An explicit ``expiry`` always applies. Otherwise what was learned since the watcher vouches for
        the stream is kept until a change is reported; anything else only ``unwatched_expiry`` seconds."""
        stamp = stamps.get(k, float("-inf"))
        if self.expiry is not None:
            return time.monotonic() - stamp < self.expiry
        if self.trust is None:
            return True
        since = self.trust()
        if since is not None and stamp >= since:
            return True
        return time.monotonic() - stamp < self.unwatched_expiry

    def _live_item(self, k: str) -> Item | None:
        """The item under key ``k`` unless expired (an expired one is dropped). Under the lock."""
        item = self._items.get(k)
        if item is not None and not self._fresh(self._stamps, k):
            self._items.pop(k, None)
            self._stamps.pop(k, None)
            return None
        return item

    def _live_listing(self, k: str) -> dict[str, str] | None:
        """The listing of folder key ``k`` unless expired (an expired one is dropped). Under the lock."""
        children = self._listings.get(k)
        if children is not None and not self._fresh(self._listing_stamps, k):
            self._listings.pop(k, None)
            self._listing_stamps.pop(k, None)
            return None
        return children

    # ------------------------------------------------------------------------------------- reading
    def get(self, path: str) -> Item | None:
        """The item at ``path`` if known."""
        with self._lock:
            return self._live_item(_key(path))

    def listing(self, path: str) -> list[Item] | None:
        """The complete listing of folder ``path`` if it was fetched, in Box's order, else None.

        A listing assumed rather than fetched (a folder we created, taken as empty) is not answered here:
        other writers (dask workers filling the folder the client made) may have filled it, so ``ls``
        asks Box once. It still answers :meth:`known_missing` (free name checks while writing there)."""
        with self._lock:
            if _key(path) in self._assumed:
                return None
            children = self._live_listing(_key(path))
            if children is None:
                return None
            return [self._items[k] for k in children.values() if k in self._items]

    def known_missing(self, path: str) -> bool:
        """True when the parent's complete listing is cached and has no such name."""
        with self._lock:
            children = self._live_listing(_key(_parent(path)))
            return children is not None and name_key(_basename(path)) not in children

    def __len__(self) -> int:
        return len(self._items)

    # ------------------------------------------------------------------------------------- filling
    def put(self, path: str, item: Item) -> None:
        """Remember an item learned from a read (info of one item)."""
        with self._lock:
            self._items[_key(path)] = item
            self._stamps[_key(path)] = time.monotonic()

    def set_listing(self, path: str, children: list[Item], started: float | None = None) -> None:
        """Remember a complete folder listing (children carry their full paths in ``name``).

        ``started``: when (``time.monotonic()``) the listing was requested. What this filesystem changed
        in the folder since then is newer than the listing and wins: an item we added or changed stays,
        an item we removed does not come back. Other threads keep working while a listing is in flight.
        A change made elsewhere and reported (:meth:`changed_elsewhere`) in the folder or above it since
        then makes the listing possibly stale: it is not kept. Listings are stamped with ``started``.
        """
        now = time.monotonic()
        since = now if started is None else started
        with self._lock:
            folder = _key(path)
            if self._dirty and any(self._dirty.get(k, float("-inf")) >= since for k in _self_and_above(folder)):
                return
            old = self._listings.get(folder, {})
            new: dict[str, str] = {}
            for child in children:
                ck = _key(child["name"])
                nk = name_key(_basename(child["name"]))
                if self._gone.get(ck, float("-inf")) >= since:
                    continue  # we deleted or moved it while the listing was on its way
                previous = self._items.get(ck)
                if previous is not None and self._stamps.get(ck, float("-inf")) >= since:
                    new[nk] = ck  # we changed it meanwhile: our version is the newer one
                    continue
                if previous is not None and previous.get("id") != child.get("id"):
                    self._forget_listing_and_below(ck)
                self._items[ck] = child
                self._stamps[ck] = since
                new[nk] = ck
            recent = self._recent.get(folder, {})
            for nk, (ck, when) in list(recent.items()):
                if when >= since:
                    if nk not in new and ck in self._items:
                        new[nk] = ck  # we added it while the listing was on its way
                else:
                    del recent[nk]  # the listing reflects it
            if not recent:
                self._recent.pop(folder, None)
            # children no longer listed are gone (changed by someone else): forget them and below
            for nk, ck in old.items():
                if nk not in new:
                    self._forget(ck)
            self._listings[folder] = new
            self._listing_stamps[folder] = since
            self._assumed.discard(folder)
            if len(self._gone) > 10_000:
                self._gone = {k: t for k, t in self._gone.items() if t >= since}
            if len(self._dirty) > 10_000:
                self._dirty = {k: t for k, t in self._dirty.items() if t >= now - 600}

    # ------------------------------------------------------------------------------------ mutations
    def added(self, path: str, item: Item, *, empty: bool = True) -> None:
        """We created ``path`` (folder, upload, copy): record it and add it to the parent's listing.

        ``empty``: a folder we just created has no children, so its listing is known without a call;
        pass False for a folder that arrived with content (a server-side folder copy).
        """
        with self._lock:
            k = _key(path)
            previous = self._items.get(k)
            if previous is not None and previous.get("id") != item.get("id"):
                self._forget_listing_and_below(k)
            self._items[k] = item
            self._stamps[k] = time.monotonic()
            if not empty:
                self._listings.pop(k, None)
            elif item.get("type") == "directory" and (previous is None or previous.get("id") != item.get("id")):
                self._listings[k] = {}  # a folder we just created is empty: list it without a call
                self._listing_stamps[k] = time.monotonic()
                self._assumed.add(k)
            parent_key = _key(_parent(path))
            parent = self._listings.get(parent_key)
            if parent is not None:
                parent[name_key(_basename(path))] = k
            self._recent.setdefault(parent_key, {})[name_key(_basename(path))] = (k, time.monotonic())
            self._gone.pop(k, None)

    def changed(self, path: str, item: Item) -> None:
        """The item at ``path`` changed in place (new version, new times)."""
        self.added(path, item)

    def removed(self, path: str) -> None:
        """``path`` (and, for a folder, everything below it) no longer exists."""
        with self._lock:
            k = _key(path)
            self._forget(k)
            parent_key = _key(_parent(path))
            parent = self._listings.get(parent_key)
            if parent is not None:
                parent.pop(name_key(_basename(path)), None)
            self._recent.get(parent_key, {}).pop(name_key(_basename(path)), None)
            self._gone[k] = time.monotonic()

    def moved(self, src: str, dst: str, item: Item) -> None:
        """``src`` is now ``dst`` (server-side move or rename); below a moved folder is re-learned lazily."""
        with self._lock:
            self.removed(src)
            self.added(dst, item)
            if item.get("type") == "directory":
                self._listings.pop(_key(dst), None)  # its children's cached paths were under src

    def invalidate(self, path: str | None = None) -> None:
        """Forget ``path`` and below (everything when None): for changes made outside this filesystem."""
        with self._lock:
            if path is None or path == "":
                self._forget_below("")
                return
            self._forget(_key(path))
            self._listings.pop(_key(_parent(path)), None)

    def changed_elsewhere(self, path: str) -> None:
        """Box reported a change at ``path`` made elsewhere: forget it (and below) and its parent's listing,
        and keep listings already in flight there from landing (they may predate the change)."""
        with self._lock:
            k, parent = _key(path), _key(_parent(path))
            self._forget(k)
            self._listings.pop(parent, None)
            self._listing_stamps.pop(parent, None)
            self._assumed.discard(parent)
            now = time.monotonic()
            self._dirty[k] = self._dirty[parent] = now

    def paths_by_id(self) -> dict[str, str]:
        """Box id -> cached path of every cached item: one pass, for a batch of events to look up."""
        with self._lock:
            return {str(item.get("id")): str(item["name"]) for item in self._items.values()}

    def forget_assumed_listings_above(self, path: str) -> bool:
        """Drop the listings above ``path`` that we assumed rather than fetched (folders we created, taken
        as empty); True if there was one. Other writers (a dask worker, another session) may have filled
        such a folder since, so a read that misses there asks Box before failing."""
        with self._lock:
            parts = path.split("/") if path else []
            dropped = False
            for i in range(len(parts)):
                k = _key("/".join(parts[:i]))
                if k in self._assumed:
                    self._assumed.discard(k)
                    self._listings.pop(k, None)
                    self._listing_stamps.pop(k, None)
                    dropped = True
            return dropped

    def clear(self) -> None:
        self.invalidate(None)

    # ------------------------------------------------------------------------------------- helpers
    def _forget(self, k: str) -> None:
        self._assumed.discard(k)
        self._items.pop(k, None)
        self._listings.pop(k, None)
        self._stamps.pop(k, None)
        self._listing_stamps.pop(k, None)
        self._forget_below(k)

    def _forget_listing_and_below(self, k: str) -> None:
        """``k`` now names another item: its old listing and everything below are not its."""
        self._listings.pop(k, None)
        self._listing_stamps.pop(k, None)
        self._forget_below(k)

    def _forget_below(self, k: str) -> None:
        prefix = k + "/" if k else ""
        if not prefix:
            for table in (self._items, self._listings, self._stamps, self._listing_stamps):
                table.clear()
            self._assumed.clear()
            self._recent.clear()
            return
        self._assumed = {key for key in self._assumed if not key.startswith(prefix)}
        for table in (self._items, self._listings, self._stamps, self._listing_stamps):
            for key in [key for key in table if key.startswith(prefix)]:
                del table[key]
