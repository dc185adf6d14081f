"""``BoxFileSystem``: Box (box.com) enterprise storage as an fsspec filesystem, ``box://``.

Paths are relative to the acting user's "All Files" folder (folder ``0``), or to ``root_folder_id``;
``box://a/b``, ``a/b`` and ``/a/b`` name the same item. Names compare case-insensitively, as on Box.

Cost model: Box rate-limits API calls per user, so every operation is written to make as few as
possible. Box has no lookup by path, so a path is resolved by listing its parents; everything learned is
kept in a per-filesystem :class:`~boxfs.dircache.BoxDirCache` that every mutation updates in place, so a
warm ``info`` costs no call, ``ls`` of a 2,500-item folder costs 3 (pages of 1,000), ``find`` costs one
listing per folder. Server-side operations are used where Box has them: move/rename (``PUT``), copy
(``POST /files/{id}/copy``), recursive delete, ranged downloads.

Configuration, tokens, the retry policy and error mapping live in :mod:`boxfs.config`,
:mod:`boxfs.auth`, :mod:`boxfs.retry` and :mod:`boxfs.api.errors`; uploads in :mod:`boxfs.upload`.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import inspect
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, BinaryIO

from fsspec.implementations.local import LocalFileSystem, make_path_posix, trailing_sep
from fsspec.spec import AbstractFileSystem, _Cached
from fsspec.utils import other_paths, stringify_path

from boxfs import preview
from boxfs.api.errors import (
    BoxAuthError,
    exists_error,
    is_a_directory_error,
    not_a_directory_error,
    not_found_error,
)
from boxfs.api.fields import ITEM_FIELDS, item_from_entry, root_item
from boxfs.api.transport import PARALLEL_DOWNLOAD_MIN, BoxTransport
from boxfs.auth.downscoped import DownscopedTokenProvider
from boxfs.auth.registry import cached_user_id, get_provider, remember_user_id
from boxfs.config import (
    FSSPEC_OPTIONS,
    BoxConfigError,
    BoxCredentials,
    BoxEndpoints,
    check_block_size,
    check_cache_type,
    check_options,
    env_as_user,
    resolve_credentials,
    resolve_endpoints,
)
from boxfs.dircache import BoxDirCache
from boxfs.file import APPEND_REFUSAL, BoxFile
from boxfs.localfile import replace_when_complete
from boxfs.names import BoxNameError, check_name, check_path_names, has_magic, is_pattern, same_name
from boxfs.retry import RetryPolicy
from boxfs.sign import signed_url
from boxfs.upload import (
    DEFAULT_SPOOL_THRESHOLD,
    RELIST_MIN_SIZE,
    WriteBuffer,
    clean_spool,
    sha1_of,
    upload_file,
)
from boxfs.watch import CacheFeed, ChangeWatcher, enabled_by_default, source_path, trust_of, watcher_for

logger = logging.getLogger("boxfs")


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _split(path: str) -> tuple[str, str]:
    if "/" in path:
        parent, name = path.rsplit("/", 1)
        return parent, name
    return "", path


#: ``box://id:12345``: the first part of a path of this form addresses an item by its Box id
_ID_PREFIX = "id:"
_DIGITS = re.compile(r"[0-9]+")
#: the order in which an ``id:`` path is asked for as a file or a folder (Box's ids are per type): a file
#: first when it is read, a folder first when it is listed, only a folder when a path goes on below it
_FILE_FIRST, _FOLDER_FIRST, _FOLDER_ONLY = ("file", "folder"), ("folder", "file"), ("folder",)


def _id_of(part: str) -> str | None:
    """The Box id ``part`` addresses (``"id:12345"`` -> ``"12345"``), or None for an ordinary name.

    The prefix matches in any case (``ID:12345`` too): Box compares names case-insensitively, so a
    top-level ``ID:5`` would be the same name as ``id:5``, and the cache would confuse the two."""
    if part[:len(_ID_PREFIX)].lower() == _ID_PREFIX and part[len(_ID_PREFIX):].isdigit() and part.isascii():
        return part[len(_ID_PREFIX):]
    return None


def _literal_file(path: Any, is_file: Callable[[], bool]) -> bool:
    """Whether ``path`` holds glob characters yet names one existing file (``is_file()``, asked only
    then): fsspec's ``put``/``get``/``copy`` would take it for a pattern and put the file *inside* the
    target, so it is transferred as the one file it is."""
    return isinstance(path, str) and has_magic(path) and is_file()


def _as_plain_name(sources: list[str], path: str, target: str, maxdepth: int | None,
                   isdir: Callable[[str], bool], target_is_dir: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """``(sources, targets)`` where fsspec puts ``sources`` (``path`` expanded, itself included) when
    ``path`` is a plain name: inside an existing target folder under its own name, else at the target, its
    contents when written with a trailing slash; a depth-limited transfer takes files only. As lists,
    which fsspec's ``put``/``get``/``copy`` take pair by pair without expanding them again. For a path that
    holds glob characters yet names one item, which fsspec would place as a pattern's match."""
    if maxdepth is not None:
        sources = [p for p in sources if not isdir(p)]
    return sources, other_paths(sources, target, exists=target_is_dir(target) and not trailing_sep(path))


def _literal_local_sources(lpath: Any, rpath: Any, recursive: bool, maxdepth: int | None,
                           target_is_dir: Callable[[str], bool]) -> tuple[Any, Any]:
    """``put``'s local sources with every existing path that holds glob characters escaped, so fsspec's
    local glob finds that path and not its look-alikes (``[x] *.txt`` must not upload ``x .txt``).

    A folder given alone (``put("dir [1]", "box/", recursive=True)``) would then be placed as a pattern's
    match is: its contents straight into the target, or, holding no file, one level deep in a new one.
    It lands where a plain name would (:func:`_as_plain_name`).
    """
    def escaped(p: Any) -> Any:
        text = stringify_path(p)
        return glob.escape(text) if has_magic(text) and os.path.lexists(text) else p

    if isinstance(lpath, (list, tuple)):  # a list of targets too is taken pair by pair, never expanded
        return ([escaped(p) for p in lpath] if not isinstance(rpath, (list, tuple)) else lpath), rpath
    text = stringify_path(lpath)
    if not (recursive and isinstance(rpath, str) and has_magic(text) and os.path.isdir(text)):
        return lpath, rpath
    local = LocalFileSystem()  # the folder and what is below it, walked (a glob would take a level of maxdepth)
    found = sorted({make_path_posix(text.rstrip("/" + os.sep)), *local.find(text, maxdepth=maxdepth, withdirs=True)})
    return _as_plain_name(found, text, rpath, maxdepth, os.path.isdir, target_is_dir)


def _rebuild(cls: type, kwargs: dict[str, Any]) -> BoxFileSystem:
    """Unpickling entry point: a filesystem built again from its configuration."""
    return cls(**kwargs)


#: environment variables that can configure a filesystem (see boxfs.config)
_ENV_VARS = ("BOXFS_JWT_CONFIG", "BOXFS_AS_USER", "BOXFS_BASE_URL", "BOXFS_CLIENT_ID", "BOXFS_CLIENT_SECRET",
             "BOXFS_ENTERPRISE_ID", "BOXFS_TOKEN", "BOXFS_OAUTH_TOKEN_FILE", "BOXFS_WATCH_EVENTS")


class _BoxCached(_Cached):
    """fsspec's instance cache keys on the constructor arguments; ``fsspec.filesystem("box")`` configured
    by the environment has none, so the environment's digest is added to the key (a digest: the values
    may be secrets). Otherwise a changed ``BOXFS_AS_USER`` would get the previous user's filesystem.

    The digest is a property of this metaclass, named in ``_extra_tokenize_attributes``, so fsspec reads
    it at each call when it builds the key; it is no constructor argument, so ``storage_options`` holds
    only what the user gave."""

    @property
    def _environment_digest(cls) -> str:
        env = "\0".join(f"{k}={os.environ.get(k, '')}" for k in _ENV_VARS)
        return hashlib.sha256(env.encode()).hexdigest()[:16]


@functools.cache
def _known_options(cls: type) -> frozenset[str]:
    """Every option ``cls(...)`` accepts: its constructor's public parameters and fsspec's generic ones."""
    params = inspect.signature(cls.__init__).parameters.values()
    own = {p.name for p in params if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD}
    return frozenset(n for n in own if n != "self" and not n.startswith("_")) | FSSPEC_OPTIONS


class BoxFileSystem(AbstractFileSystem, metaclass=_BoxCached):
    """Box storage as an fsspec filesystem.

    Credentials (one form; see :mod:`boxfs.config`): ``jwt_config`` (JSON text, path or dict), or
    ``client_id`` + ``client_secret`` + ``enterprise_id``/``user_id`` with ``public_key_id`` +
    ``private_key`` (+ ``passphrase``) for JWT or without them for Client Credentials Grant, or ``token``;
    with none of them, the ``BOXFS_*`` environment.

    Options: ``as_user`` (login email or user id: act as that user through ``As-User``),
    ``base_urls`` (``{"base_url", "upload_url", "oauth2_url"}``, e.g. ``BoxEmulator.base_urls``),
    ``root_folder_id`` (confine the filesystem to a folder; default ``"0"``, All Files),
    ``max_connections`` (HTTP pool size and parallelism of listings/transfers; 16), ``retry``
    (:class:`~boxfs.retry.RetryPolicy` fields), ``spool_threshold`` (bytes uploaded in one request;
    26,214,400), ``spool_dir`` and ``upload_workers`` (large uploads), ``auto_mkdir`` (create missing
    parent folders on write; True), ``watch_events`` (follow Box's event stream so that changes made
    elsewhere reach the cache; True), ``default_block_size``/``default_cache_type`` (for ``open``), and
    fsspec's generic options (``listings_expiry_time``, ``use_listings_cache``, ``skip_instance_cache``...,
    :data:`boxfs.config.FSSPEC_OPTIONS`). An unknown option is refused, naming the closest valid one.

    Semantics worth knowing: names compare case-insensitively; ``info``/``exists``/``ls`` answer from
    what this instance learned, kept true by Box's event stream (see docs/coherence.md; without it,
    listings expire after a few seconds); reads are pinned to the version current when they started;
    writes upload on close (a new version when the file exists); ``ab`` is refused (Box cannot
    append); ``set_modified`` re-uploads the content with the new time.
    """

    protocol = "box"
    root_marker = ""
    _extra_tokenize_attributes = ("_environment_digest",)
    #: fields requested for every item; only what the detail dicts use
    FIELDS = ITEM_FIELDS
    LIST_PAGE = 1000

    def __init__(
        self,
        jwt_config: Any = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        enterprise_id: str | None = None,
        user_id: str | None = None,
        public_key_id: str | None = None,
        private_key: str | None = None,
        passphrase: str | None = None,
        token: str | None = None,
        app_token: str | tuple[str, ...] | list[str] | None = None,
        as_user: str | int | None = None,
        base_urls: dict[str, str] | BoxEndpoints | None = None,
        root_folder_id: str | int = "0",
        max_connections: int = 16,
        retry: RetryPolicy | dict[str, Any] | int | None = None,
        spool_threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | None = None,
        upload_workers: int = 8,
        auto_mkdir: bool = True,
        watch_events: bool | None = None,
        credentials: BoxCredentials | None = None,
        oauth_token_file: str | None = None,
        scopes: list[str] | tuple[str, ...] | str | None = None,
        resource: str | None = None,
        default_block_size: int | None = None,
        default_cache_type: str = "readahead",
        id_paths: bool = True,
        **kwargs: Any,
    ) -> None:
        """Configure a filesystem; see :mod:`boxfs.config` for every credential form.

        ``as_user``: a login email (resolved once to an id) or a user id; requests then act as that user
        through the ``As-User`` header. ``spool_threshold`` (bytes): uploads up to it go in one request.
        ``auto_mkdir``: writing ``a/b/c`` creates the folders ``a`` and ``a/b`` if missing (object-store
        semantics fsspec users expect). ``retry``: a :class:`~boxfs.retry.RetryPolicy` or a dict of its
        fields. ``oauth_token_file``: a user's own tokens, from ``boxfs login``. ``app_token``: App Token
        auth, the primary App Token or ``(primary, secondary)``. ``scopes`` (+ ``resource``,
        a Box API URL of a file or folder): act with a token downscoped to these scopes (token exchange).
        ``default_block_size``/``default_cache_type``: what ``open`` uses when not told (fsspec's 5 MiB and
        ``"readahead"``). ``id_paths``: a path whose first part is ``id:<digits>`` addresses the item with
        that Box id (``box://id:12345``, ``box://id:678/sub/file.csv``); False makes every path literal.
        ``watch_events``: False turns the change watcher off (cached listings then expire after a few
        seconds instead of being kept until Box reports a change); default: on unless the environment
        variable ``BOXFS_WATCH_EVENTS`` is ``0``.
        Any other option is refused (:class:`~boxfs.config.BoxOptionError`).
        """
        check_options(kwargs, _known_options(type(self)))
        super().__init__(**kwargs)
        self.default_block_size = check_block_size(default_block_size)
        self.default_cache_type = check_cache_type(default_cache_type)
        self.id_paths = bool(id_paths)
        creds, from_env = resolve_credentials(
            jwt_config=jwt_config, client_id=client_id, client_secret=client_secret,
            enterprise_id=enterprise_id, user_id=user_id, public_key_id=public_key_id,
            private_key=private_key, passphrase=passphrase, token=token, credentials=credentials,
            oauth_token_file=oauth_token_file, app_token=app_token,
        )
        if as_user is None and from_env:
            as_user = env_as_user()
        self.credentials = creds
        self.endpoints = resolve_endpoints(base_urls)
        self.policy = RetryPolicy.from_option(retry)
        self.root_folder_id = str(root_folder_id)
        self.max_connections = int(max_connections)
        if int(spool_threshold) < 1:
            raise BoxConfigError("spool_threshold must be a positive number of bytes")
        self.spool_threshold = int(spool_threshold)
        self.spool_dir = spool_dir
        self.upload_workers = int(upload_workers)
        self.auto_mkdir = bool(auto_mkdir)
        self.provider = get_provider(creds, self.endpoints, self.policy)
        self.credentials = self.provider.creds  # completed from the token file for oauth
        self.transport = BoxTransport(self.endpoints, self.provider, self.policy, max_connections=self.max_connections)
        # fsspec's standard listing-cache options: how long what we learned from Box is trusted
        expiry = kwargs.get("listings_expiry_time")
        if kwargs.get("use_listings_cache", True) is False:
            expiry = 0.0
        self.cache = BoxDirCache(expiry=None if expiry is None else float(expiry))
        self.watch_events = enabled_by_default() if watch_events is None else bool(watch_events)
        self._watcher: ChangeWatcher | None = None
        self._watch_lock = threading.Lock()
        self._feed = CacheFeed(self.cache, self.root_folder_id)
        self.cache.trust = trust_of(self._feed)  # no reference back to the filesystem: it can be freed
        self._acting_user_id: str | None = None
        self._listing_locks: dict[str, threading.Lock] = {}
        self._listing_locks_guard = threading.Lock()
        self._transfers = threading.local()  # put/get collect their file pairs here (see _in_parallel)
        self.as_user_id = self._resolve_as_user(as_user) if as_user not in (None, "") else None
        self.transport.as_user_id = self.as_user_id
        self.scopes = tuple(scopes.split() if isinstance(scopes, str) else scopes) if scopes else None
        self.resource = resource
        if self.scopes:  # token exchange, after as_user was resolved with the full token
            self.provider = self.transport.provider = DownscopedTokenProvider(self.provider, self.scopes, resource)

    # ------------------------------------------------------------------------------ identity, repr
    def _resolve_as_user(self, as_user: str | int) -> str:
        """A user id for ``as_user``: ids are used as they are, logins are looked up once per process."""
        value = str(as_user).strip()
        if value.isdigit():
            return value
        if "@" not in value:
            raise BoxConfigError(f"as_user must be a Box user id or a login email, not {value!r}")
        known = cached_user_id(self.provider, value)
        if known:
            return known
        data = self.transport.json(
            "GET", self.transport.api("/users"), params={"filter_term": value, "fields": "id,login,name", "limit": 1000},
            act_as_user=False, action=f"looking up the Box user {value}",
        )
        for entry in data.get("entries", []):
            if str(entry.get("login", "")).casefold() == value.casefold():
                remember_user_id(self.provider, value, str(entry["id"]))
                return str(entry["id"])
        raise BoxConfigError(f"as_user: no Box user has the login {value!r} (looked up with GET /users)")

    @property
    def user_id(self) -> str:
        """The id of the acting user: the impersonated one, else the app's service account (one call)."""
        if self.as_user_id:
            return self.as_user_id
        if self._acting_user_id is None:
            me = self.transport.json("GET", self.transport.api("/users/me"), params={"fields": "id,login"})
            self._acting_user_id = str(me["id"])
        return self._acting_user_id

    def quota(self) -> tuple[int, int]:
        """``(space_used, space_amount)`` in bytes of the acting user, as Box reports them (one call)."""
        me = self.transport.json("GET", self.transport.api("/users/me"), params={"fields": "space_used,space_amount"},
                                 action="reading the user's quota")
        return int(me.get("space_used") or 0), int(me.get("space_amount") or 0)

    def __repr__(self) -> str:
        who = f"as_user={self.as_user_id}" if self.as_user_id else "service account"
        return (f"<BoxFileSystem {self.credentials.kind} app={self.credentials.client_id} {who} "
                f"root={self.root_folder_id} at {self.endpoints.base_url}>")

    __str__ = __repr__

    def _config(self) -> dict[str, Any]:
        """Everything needed to rebuild this filesystem elsewhere; never a token or a session."""
        return {
            "credentials": self.credentials,
            "base_urls": self.endpoints.as_dict(),
            "as_user": self.as_user_id,
            "root_folder_id": self.root_folder_id,
            "max_connections": self.max_connections,
            "retry": self.policy.as_dict(),
            "spool_threshold": self.spool_threshold,
            "spool_dir": self.spool_dir,
            "upload_workers": self.upload_workers,
            "auto_mkdir": self.auto_mkdir,
            "watch_events": self.watch_events,
            "listings_expiry_time": self.cache.expiry,
            "scopes": self.scopes,
            "resource": self.resource,
            "default_block_size": self.default_block_size,
            "default_cache_type": self.default_cache_type,
            "id_paths": self.id_paths,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self._config())

    # ----------------------------------------------------------------------------------- paths
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, (list, tuple)):
            return type(path)(cls._strip_protocol(p) for p in path)
        path = stringify_path(path)
        if path.startswith("box://"):
            path = path[len("box://"):]
        elif path.startswith("box::"):
            path = path[len("box::"):]
        while "//" in path:
            path = path.replace("//", "/")
        return path.strip("/")

    @classmethod
    def _parent(cls, path: str) -> str:
        """A classmethod as in fsspec: universal-pathlib calls it on the class (``UPath.parent``)."""
        return _split(cls._strip_protocol(path))[0]

    # ------------------------------------------------------------------------------------ items
    def _item(self, path: str, entry: dict[str, Any]) -> dict[str, Any]:
        """An fsspec detail dict from Box's JSON for the item at ``path``."""
        return item_from_entry(path, entry)

    def _root_item(self) -> dict[str, Any]:
        return root_item(self.root_folder_id)

    def _get_item(self, box_type: str, item_id: str) -> dict[str, Any]:
        """Box's JSON for one item by id (used by the idempotency checks)."""
        route = f"/{'folders' if box_type == 'folder' else 'files'}/{item_id}"
        return self.transport.json("GET", self.transport.api(route), params={"fields": self.FIELDS})

    def _fetch_listing(self, path: str, folder_id: str) -> list[dict[str, Any]]:
        """All children of a folder, in pages of 1,000 with marker pagination; cached as complete."""
        self._ensure_watching()  # before the listing, so that what it returns is covered by the stream
        started = time.monotonic()  # our own changes from now on are newer than this listing
        return self._remember_listing(path, self._list_entries(path, folder_id), started)

    def _remember_listing(self, path: str, entries: list[dict[str, Any]], started: float) -> list[dict[str, Any]]:
        items = [self._item(self._child_path(path, e["name"]), e) for e in entries]
        self.cache.set_listing(path, items, started=started)
        merged = self.cache.listing(path)  # with our own changes made while the listing was on its way
        return items if merged is None else merged

    def _list_entries(self, path: str, folder_id: str) -> list[dict[str, Any]]:
        """Box's JSON of every child of a folder (``path``: for messages and the cache's invalidation)."""
        entries: list[dict[str, Any]] = []
        marker: str | None = None
        url = self.transport.api(f"/folders/{folder_id}/items")
        while True:
            # Box serves at most 1,000 entries a page; never ask for more, follow the marker instead
            limit = max(1, min(int(self.LIST_PAGE), 1000))
            params: dict[str, Any] = {"fields": self.FIELDS, "limit": limit, "usemarker": "true"}
            if marker:
                params["marker"] = marker
            try:
                data = self.transport.json("GET", url, params=params, path=path or "/", action="list")
            except FileNotFoundError:
                self.cache.invalidate(path)
                raise
            entries.extend(data.get("entries") or [])
            marker = data.get("next_marker")
            if not marker:
                return entries

    def _listing(self, path: str, info: dict[str, Any]) -> list[dict[str, Any]]:
        """The folder's children from the cache, else listed once even when threads ask together."""
        cached = self.cache.listing(path)
        if cached is not None:
            return cached
        key = path.casefold()
        self._ensure_watching()  # its first request outside the lock: other threads' listings do not wait for it
        with self._listing_locks_guard:
            lock = self._listing_locks.setdefault(key, threading.Lock())
        with lock:  # single flight: a second thread waits for the first one's listing
            cached = self.cache.listing(path)
            if cached is not None:
                return cached
            try:
                return self._fetch_listing(info["name"], info["id"])  # Box's spelling of the path
            finally:
                with self._listing_locks_guard:
                    self._listing_locks.pop(key, None)

    def _info(self, path: str, _kinds: tuple[str, ...] = _FILE_FIRST) -> dict[str, Any]:
        """The cached or freshly listed detail dict for a stripped path (``_kinds``: see _FILE_FIRST)."""
        if path == "":
            return self._root_item()
        hit = self.cache.get(path)
        if hit is not None:
            return hit
        item_id = self._id_anchor(path)
        if item_id is not None:
            return self._info_by_id(path, item_id, _kinds)
        if self.cache.known_missing(path):
            raise not_found_error(path)
        parent, name = _split(path)
        pinfo = self._info(parent, _FOLDER_ONLY)
        if pinfo["type"] != "directory":
            raise not_found_error(path)
        for child in self._listing(parent, pinfo):
            if same_name(_split(child["name"])[1], name):
                return child
        raise not_found_error(path)

    def _info_for_read(self, path: str) -> dict[str, Any]:
        """``_info`` for operations that need the item (open for reading, cat, get).

        A miss in a folder this filesystem created (whose listing it assumed empty rather than fetched)
        is checked with Box once more: other writers (dask workers writing into the folder the client
        made, another session) put files there that this cache cannot know. So is a miss while the change
        watcher holds announced changes it has not read yet (it lets a burst of this process's writes
        settle first, up to 5 s). Otherwise a miss in a listing fetched from Box is trusted, as in
        ``info``/``exists``: that keeps refusals free of requests.
        """
        try:
            return self._info(path)
        except FileNotFoundError:
            if not path:
                raise
            if self.cache.forget_assumed_listings_above(path):
                logger.debug("%s is not in a folder we created: asking Box whether another writer added it", path)
            elif self._feed.unread_news():
                # Box said things changed and the watcher has not read them yet (it lets a burst of
                # writes settle): the listing may miss a file another process has just written
                logger.debug("%s is not in a listing with changes pending: asking Box again", path)
                self.cache.invalidate(path)
            else:
                raise
            return self._info(path)

    def _id_anchor(self, path: str) -> str | None:
        """The Box id when ``path`` is exactly ``id:<digits>`` (and ``id_paths`` is on), else None."""
        return _id_of(path) if self.id_paths and "/" not in path else None

    def _child_path(self, parent: str, name: str) -> str:
        """The path of a listed child. A top-level item literally named like ``id:5`` gets the path that
        reaches it, ``id:<root id>/id:5``: its plain name would address item 5, another item (a listing
        must never hand out a path that ``rm`` or ``open`` takes to a different item)."""
        if parent == "" and self._id_anchor(name) is not None:
            return f"{_ID_PREFIX}{self.root_folder_id}/{name}"
        return _join(parent, name)

    def _info_by_id(self, path: str, item_id: str, kinds: tuple[str, ...]) -> dict[str, Any]:
        """The item ``path`` (``id:<digits>``) addresses, from Box by id: ``GET /files/{id}`` or
        ``/folders/{id}``, in the order ``kinds`` gives (one request when the first is right).

        Box needs no listing for this, so it works with a token limited to one file (``resource=``). The
        item is remembered under ``path`` without entering the root's listing (it is not a child there).
        """
        for kind in kinds:
            try:
                entry = self._get_item(kind, item_id)
            except FileNotFoundError:
                continue
            item = self._item(path, entry)
            self.cache.put(path, item)
            return item
        raise not_found_error(path)

    def folder_at(self, path: str, folder_id: str, listing: bool = False) -> dict[str, Any] | None:
        """The folder at ``path`` if Box says folder ``folder_id`` is there now, else None (nothing learnt).

        Why: Box has no lookup by path, so reaching ``a/b/c`` costs a listing of the root, ``a`` and
        ``a/b``, one after another, in every new process. A caller that remembers the id from an earlier
        run (``boxfs sync`` does) asks for that folder alone: one request, whose ``path_collection`` says
        where the folder is now. A folder moved, renamed, deleted or not visible to this user gives None,
        and the caller walks the path as usual; so does one that is not the folder a walk would reach (in
        All Files, a folder shared with the user beside one of theirs of the same name). The folder is
        remembered under ``path`` without its parent's listing (as items reached by id are). ``listing``: list the folder at the same time (on a
        second connection: no round trip more), for a caller about to read it whole.
        """
        path = self._strip_protocol(path)
        folder_id = str(folder_id)
        if not path or not _DIGITS.fullmatch(folder_id) or self._id_anchor(path.split("/")[0]) is not None:
            return None
        hit = self.cache.get(path)
        if hit is not None:
            return hit if hit["type"] == "directory" and str(hit.get("id")) == folder_id else None
        self._ensure_watching()  # before the requests, so that what they return is covered by the stream
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="boxfs-list") as pool:
            # its listing meanwhile, kept only if the folder is where the caller thinks (else one wasted request)
            listed = pool.submit(self._list_entries, path, folder_id) if listing else None
            # All Files holds a user's own folders and the ones shared with them, so two may share a name
            # there: the path means the one a walk finds, which the root's listing (meanwhile) says
            top = pool.submit(self._listing, "", self._root_item()) if self.root_folder_id == "0" else None
            try:
                entry = self.transport.json("GET", self.transport.api(f"/folders/{folder_id}"),
                                            params={"fields": self.FIELDS + ",path_collection,item_status"},
                                            path=path, action="look up")
            except (FileNotFoundError, PermissionError):
                return None
            where = source_path(entry, self.root_folder_id)
            if entry.get("type") != "folder" or entry.get("item_status", "active") != "active" or where is None \
                    or not same_name(where, path):
                return None
            if top is not None:
                chain = [str(e.get("id")) for e in entry["path_collection"]["entries"]]
                first = (chain[chain.index(self.root_folder_id) + 1:] + [folder_id])[0]
                name = path.split("/")[0]
                walked = next((c for c in top.result() if same_name(_split(c["name"])[1], name)), None)
                if walked is None or str(walked.get("id")) != first:
                    return None
            item = self._item(where, entry)  # Box's spelling of the path
            self.cache.put(path, item)
            if listed is not None:
                with contextlib.suppress(FileNotFoundError, PermissionError):  # gone since: listed again on use
                    self._remember_listing(where, listed.result(), started)
        return item

    def _is_pattern(self, path: Any) -> bool:
        """Whether ``path`` is a glob pattern: it holds ``*``, ``?`` or ``[`` and no item has exactly that
        path. A name that exists is that item, never a pattern: ``rm("t/[a]*?")`` deletes the file called
        ``[a]*?``, not ``t/ab`` and ``t/abc`` (a name a program gives is a literal name)."""
        return is_pattern(self._strip_protocol(path), lambda p: self._try_info(p) is not None)

    def _one_file_target(self, path2: str, name: str) -> str:
        """Where one file called ``name`` lands when uploaded or copied to ``path2``: inside it when it is
        a folder or ends with a slash (fsspec's rule), else at ``path2`` itself."""
        dst = self._strip_protocol(path2)
        dinfo = self._try_info(dst)
        if str(path2).endswith("/") or (dinfo is not None and dinfo["type"] == "directory"):
            return _join(dst, name)
        return dst

    def _literal_sources(self, path: Any, target: Any, recursive: bool, maxdepth: int | None,
                         target_is_dir: Callable[[str], bool]) -> tuple[Any, Any]:
        """``get``/``copy``'s ``(sources, targets)`` for a Box path that holds glob characters yet names an
        existing item, taken recursively (``put``'s counterpart is :func:`_literal_local_sources`).

        fsspec would place it as a pattern's match: a folder's contents straight into an existing target
        folder, an empty folder or a file nested under its name in a new target. It lands where a plain
        name would: inside an existing target folder (``target_is_dir``: or one ending with a slash) under
        its own name, else at the target itself; written ``dir [1]/``, its contents go into the target.
        The pairs come back as lists, which fsspec takes one by one without expanding them again (the
        listing is the one fsspec would have made); anything else comes back as given.
        """
        if not (recursive and isinstance(path, str) and isinstance(target, str) and has_magic(path)
                and not self._is_pattern(path)):
            return path, target
        return _as_plain_name(self.expand_path(path, recursive=True, maxdepth=maxdepth), path, target, maxdepth,
                              self.isdir, target_is_dir)

    def _remote_file(self, path: str) -> bool:
        info = self._try_info(self._strip_protocol(path))
        return info is not None and info["type"] != "directory"

    def expand_path(self, path: Any, recursive: bool = False, maxdepth: int | None = None,
                    assume_literal: bool = False, **kwargs: Any) -> list[str]:
        """fsspec's, except that a path naming an existing item is that item even when it holds glob
        characters (see :meth:`_is_pattern`); ``cat``, ``get``, ``copy`` and ``rm`` expand through it.
        (Done here rather than with fsspec's ``assume_literal``, which fsspec 2024.6 does not have.)"""
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        named = [self._strip_protocol(p) for p in paths
                 if has_magic(str(p)) and (assume_literal or not self._is_pattern(p))]
        out = set(named)
        for p in named:
            if recursive and self.isdir(p):
                out.update(self.find(p, maxdepth=maxdepth, withdirs=True, detail=False))
        rest = [p for p in paths if self._strip_protocol(p) not in named]
        if rest:
            try:
                out.update(super().expand_path(rest, recursive, maxdepth, **kwargs))
            except FileNotFoundError:  # the patterns match nothing; the named paths still stand
                if not out:
                    raise
        return sorted(out)

    def _check_new_name(self, parent: str, name: str) -> None:
        """Box's name rules for an item about to be created at ``parent/name``; at the top level an
        ``id:<digits>`` name would address an item by id when read back, so it is not created there."""
        check_name(name)
        if parent == "" and self._id_anchor(name) is not None:
            raise BoxNameError(
                f"box://{name} addresses an existing item by its Box id: it cannot name a new one or be "
                f"written, moved or copied onto; write below a folder id (box://{name}/file) or give "
                f"id_paths=False for literal top-level names"
            )

    def _try_info(self, path: str) -> dict[str, Any] | None:
        try:
            return self._info(path)
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------------------ fsspec: reading
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return dict(self._info(self._strip_protocol(path)))

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Like fsspec's, False for anything that cannot be found, but refused *credentials* are raised:
        "the app's key was revoked" must not read as "the file is not there"."""
        try:
            self._info(self._strip_protocol(path))
            return True
        except BoxAuthError:
            raise
        except Exception:  # noqa: BLE001 - fsspec semantics: any other failure means "not there"
            return False

    def ls(self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        info = self._info(path, _FOLDER_FIRST)
        if info["type"] != "directory":
            return [dict(info)] if detail else [info["name"]]
        if refresh:
            children = self._fetch_listing(info["name"], info["id"])
        else:
            children = self._listing(path, info)
        if detail:
            return [dict(c) for c in children]
        return [c["name"] for c in children]

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        """All items below ``path``; one listing per folder, folders of one level listed in parallel."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        path = self._strip_protocol(path)
        out: dict[str, dict[str, Any]] = {}
        try:
            top = self._info(path, _FOLDER_FIRST)
        except FileNotFoundError:
            return out if detail else []
        if top["type"] != "directory":
            out[path] = dict(top)
        else:
            if withdirs and path != "":
                out[path] = dict(top)
            level = [top]
            depth = 1
            with ThreadPoolExecutor(max_workers=max(1, self.max_connections)) as pool:  # one per connection
                while level and (maxdepth is None or depth <= maxdepth):
                    listings = list(pool.map(lambda d: self._listing(d["name"], d), level))
                    nxt = []
                    for children in listings:
                        for child in children:
                            if child["type"] == "directory":
                                nxt.append(child)
                                if withdirs:
                                    out[child["name"]] = dict(child)
                            else:
                                out[child["name"]] = dict(child)
                    level = nxt
                    depth += 1
        names = sorted(out)
        if detail:
            return {n: out[n] for n in names}
        return names

    def modified(self, path: str) -> datetime:
        """Box's ``content_modified_at`` (what uploads and :meth:`set_modified` set), UTC-aware."""
        value = self.info(path)["modified"]
        if value is None:
            raise NotImplementedError(f"{path}: Box reports no modification time for this item")
        return value

    def created(self, path: str) -> datetime:
        value = self.info(path)["created"]
        if value is None:
            raise NotImplementedError(f"{path}: Box reports no creation time for this item")
        return value

    def checksum(self, path: str) -> int:
        """From Box's SHA1 for files (changes exactly when the content does); from id+etag for folders."""
        info = self.info(path)
        if info["type"] == "file" and info.get("sha1"):
            return int(info["sha1"], 16)
        return int(hashlib.sha1(f"{info['id']}:{info.get('etag')}".encode()).hexdigest(), 16)

    def ukey(self, path: str) -> str:
        info = self.info(path)
        if info["type"] == "file" and info.get("sha1"):
            return str(info["sha1"])
        return f"{info['id']}-{info.get('etag')}"

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Bytes of a file, or of ``[start, end)``, in one (ranged) GET."""
        path = self._strip_protocol(path)
        info = self._info_for_read(path)
        if info["type"] != "file":
            raise is_a_directory_error(path)
        size = info["size"]
        start = 0 if start is None else (max(0, size + start) if start < 0 else min(start, size))
        end = size if end is None else (max(0, size + end) if end < 0 else min(end, size))
        if end <= start:
            return b""
        return self._read_range(path, info["id"], start, end, whole=(start == 0 and end == size),
                                version=info.get("version"), tag=info.get("sha1"))

    def _content_url(self, file_id: str, version: str | None) -> str:
        """The download URL of a file, pinned to one version when known: a read that takes several
        requests (ranges, a resumed download) then never mixes the bytes of two versions."""
        return self.transport.content_url(file_id, version)

    def _read_range(self, path: str, file_id: str, start: int, end: int, whole: bool = False,
                    version: str | None = None, tag: str | None = None) -> bytes:
        """Bytes ``[start, end)`` in one GET on the file's download URL, reused for the same version
        (``version`` pinned, else ``tag``: the content's SHA-1 the caller knows); see
        BoxTransport.read_content."""
        if whole:
            return self.transport.read_content(file_id, version=version, tag=tag, path=path)
        return self.transport.read_content(file_id, start, end, version=version, tag=tag, path=path)

    def cat_ranges(self, paths: list[str], starts: Any, ends: Any, max_gap: int | None = None,
                   on_error: str = "return", **kwargs: Any) -> list[Any]:
        """Byte ranges of files, fetched on ``max_connections`` threads.

        fsspec's own ``cat_ranges`` reads one range after another, so 1,000 ranges (zarr chunks, parquet
        column pages) pay Box's latency 1,000 times. Here they go out together; each file's download URL
        is fetched once and reused, so a range costs one request to the download host. Arguments and
        ``on_error`` as in fsspec.
        """
        if max_gap is not None:
            raise NotImplementedError("max_gap is not supported: every range is fetched on its own")
        if not isinstance(paths, list):
            raise TypeError(f"paths must be a list, not {type(paths).__name__}")
        starts = starts if isinstance(starts, list) else [starts] * len(paths)
        ends = ends if isinstance(ends, list) else [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError(f"cat_ranges: {len(paths)} paths but {len(starts)} starts and {len(ends)} ends")

        def one(job: tuple[str, int | None, int | None]) -> bytes | Exception:
            try:
                return self.cat_file(*job, **kwargs)
            except Exception as exc:
                if on_error == "return":
                    return exc
                raise

        jobs = list(zip(paths, starts, ends, strict=True))
        if len(jobs) <= 1:
            return [one(job) for job in jobs]
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_connections, len(jobs)))) as pool:
            return list(pool.map(one, jobs))

    def cat(self, path: Any, recursive: bool = False, on_error: str = "raise", **kwargs: Any) -> Any:
        """Contents of several files, downloaded concurrently (at most ``max_connections`` at a time).

        fsspec's synchronous ``cat`` fetches one file after another, so many small files (dask tasks,
        parquet fragments, ``fs.cat([...])``) pay Box's latency once per file. Here paths resolve through
        the shared cache (one listing per folder, single flight), then downloads run in a thread pool no
        larger than the HTTP connection pool. 429s from Box's per-user rate limit are retried by the
        transport as for any request. Results and ``on_error`` behave as in fsspec.
        """
        paths = self.expand_path(path, recursive=recursive)
        if recursive:  # fsspec: "get all the contained files"; the expansion's folders (cached) are skipped
            paths = [p for p in paths if self._info(p)["type"] != "directory"]
        elif len(paths) == 1 and not isinstance(path, list) and paths[0] == self._strip_protocol(path):
            return self.cat_file(paths[0], **kwargs)

        def fetch(p: str) -> bytes | Exception:
            try:
                return self.cat_file(p, **kwargs)
            except Exception as exc:
                if on_error == "raise":
                    raise
                return exc

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_connections, len(paths)))) as pool:
            results = list(pool.map(fetch, paths))
        return {p: r for p, r in zip(paths, results, strict=True)
                if not (on_error == "omit" and isinstance(r, Exception))}

    # ------------------------------------------------------------------ fsspec: parallel transfers
    def _collecting(self) -> list[tuple[Any, ...]] | None:
        return getattr(self._transfers, "jobs", None)

    @contextlib.contextmanager
    def planned_transfers(self) -> Iterator[list[tuple[str, str, str, dict[str, Any]]]]:
        """Inside the block, ``put``, ``get`` and ``copy`` (in this thread) transfer nothing: they list
        what they would do, by fsspec's path rules, as ``(kind, source, destination, kwargs)`` jobs;
        kind ``dir`` (a folder to make), ``file``, or ``tree`` (``copy``: a whole folder to a new name,
        one server-side request). Listings are still read. For callers that check a whole plan before
        the first write (the command line's ``cp``: colliding names, unchanged content), then hand the
        pairs back as lists: ``fs.put([sources], [destinations])``."""
        if self._collecting() is not None:
            raise RuntimeError("transfers are already being planned in this thread")
        self._transfers.jobs = jobs = []
        try:
            yield jobs
        finally:
            self._transfers.jobs = None

    def _in_parallel(self, run: Any, plan: Any, check: Any = None, prepare: Any = None) -> None:
        """Let fsspec's ``put``/``get`` work out the path pairs (``plan``), but instead of transferring
        one file after the other, collect the pairs and run them on ``max_connections`` threads.

        Folders are made first, in order, then ``prepare(files)`` (``put``: the files' parent folders,
        each once, so that the threads do not race to create them); files then go in parallel. Every
        transfer is attempted; the first failure is raised at the end. ``check(dst)``, when given, sees
        every destination before the first transfer: a tree holding one name Box would refuse is refused
        whole, nothing half-copied.
        """
        if self._collecting() is not None:  # already collecting (nested): plan directly
            plan()
            return
        self._transfers.jobs = jobs = []
        try:
            plan()
        finally:
            self._transfers.jobs = None
        for _kind, _src, dst, _kwargs in jobs if check is not None else ():
            check(dst)
        folders = [j for j in jobs if j[0] == "dir"]
        files = [j for j in jobs if j[0] != "dir"]
        for _kind, src, dst, kwargs in folders:
            run(src, dst, **kwargs)
        if prepare is not None and files:
            prepare(files)
        errors: list[BaseException] = []
        if files:
            with ThreadPoolExecutor(max_workers=max(1, min(8, self.max_connections))) as pool:
                futures = [pool.submit(run, src, dst, **kwargs) for _kind, src, dst, kwargs in files]
                for (_kind, src, dst, _kw), future in zip(files, futures, strict=True):
                    exc = future.exception()
                    if exc is not None:
                        errors.append(exc)
                        logger.warning("transfer failed: %s -> %s: %s", src, dst, exc)
        if errors:
            if len(errors) > 1:  # the first is raised (its type maps to the caller's error); all are logged
                logger.warning("%d of %d transfers failed; the first is raised", len(errors), len(files))
            raise errors[0]

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, callback: Any = None,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """fsspec's ``put`` (same path rules), with the files uploaded in parallel."""
        from fsspec.callbacks import DEFAULT_CALLBACK

        cb = DEFAULT_CALLBACK if callback is None else callback
        if isinstance(rpath, str) and not recursive and _literal_file(lpath, lambda: os.path.isfile(lpath)):
            return self.put_file(lpath, self._one_file_target(rpath, os.path.basename(lpath)), callback=cb,
                                 **kwargs)
        lpath, rpath = _literal_local_sources(lpath, rpath, recursive, maxdepth,
                                              lambda t: trailing_sep(t) or self.isdir(t))
        self._in_parallel(
            lambda src, dst, **kw: self.put_file(src, dst, **kw),
            lambda: super(BoxFileSystem, self).put(lpath, rpath, recursive=recursive, callback=cb,
                                                   maxdepth=maxdepth, **kwargs),
            check=lambda dst: check_path_names(self._strip_protocol(dst)),
            prepare=self._ensure_parents,
        )

    def _ensure_parents(self, files: list[tuple[Any, ...]]) -> None:
        """Create the distinct parent folders of ``put``'s destinations once, before the threads start.

        A parent that cannot be made is left to each file's own upload to report (with its path).
        """
        parents = sorted({_split(self._strip_protocol(dst))[0] for _kind, _src, dst, _kw in files},
                         key=lambda p: (p.count("/"), p))
        for parent in parents:
            try:
                self._ensure_folder(parent)
            except Exception as exc:  # noqa: BLE001 - reported by the files' uploads
                logger.debug("%s: parent folder not prepared (%s); left to the uploads", parent, exc)

    def get(self, rpath: Any, lpath: Any, recursive: bool = False, callback: Any = None,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """fsspec's ``get`` (same path rules), with the files downloaded in parallel."""
        from fsspec.callbacks import DEFAULT_CALLBACK

        cb = DEFAULT_CALLBACK if callback is None else callback
        if isinstance(rpath, str) and isinstance(lpath, str) and not recursive and _literal_file(
                rpath, lambda: self._remote_file(rpath)):
            target = os.path.join(lpath, _split(self._strip_protocol(rpath))[1]) if (
                lpath.endswith(os.sep) or os.path.isdir(lpath)) else lpath
            return self.get_file(rpath, target, callback=cb, **kwargs)
        if isinstance(lpath, str):
            lpath = make_path_posix(lpath)  # as fsspec's get takes it
        rpath, lpath = self._literal_sources(rpath, lpath, recursive, maxdepth,
                                             lambda t: trailing_sep(t) or os.path.isdir(t))
        self._in_parallel(
            lambda src, dst, **kw: self.get_file(src, dst, **kw),
            lambda: super(BoxFileSystem, self).get(rpath, lpath, recursive=recursive, callback=cb,
                                                   maxdepth=maxdepth, **kwargs),
        )

    def get_file(self, rpath: str, lpath: str, callback: Any = None, outfile: Any = None, **kwargs: Any) -> None:
        """Stream a file to a local path (resuming by range after a dropped connection).

        The path is replaced only by the whole file, checked against Box's SHA-1
        (:func:`~boxfs.localfile.replace_when_complete`): a failed download leaves the old file as it was.
        """
        jobs = self._collecting()
        if jobs is not None and outfile is None:
            kind = "dir" if self._info_for_read(self._strip_protocol(rpath))["type"] == "directory" else "file"
            jobs.append((kind, rpath, lpath, dict(kwargs, callback=callback)))
            return
        rpath = self._strip_protocol(rpath)
        info = self._info_for_read(rpath)
        if info["type"] == "directory":
            os.makedirs(lpath, exist_ok=True)
            return
        if callback is not None:
            callback.set_size(info["size"])
        progress = callback.relative_update if callback is not None else None
        url = self._content_url(info["id"], info.get("version"))
        if outfile is not None:
            self.transport.download_to(url, outfile, path=rpath, progress=progress)
            return
        from fsspec.utils import isfilelike

        if isfilelike(lpath):
            self.transport.download_to(url, lpath, path=rpath, progress=progress)
            return
        parent = os.path.dirname(os.path.abspath(lpath))
        os.makedirs(parent, exist_ok=True)
        with replace_when_complete(lpath, info.get("sha1"), shown=f"box://{rpath}") as fh:
            if info["size"] >= PARALLEL_DOWNLOAD_MIN:  # ranges on several connections at once
                self.transport.download_ranges(info["id"], fh.fileno(), info["size"], version=info.get("version"),
                                               tag=info.get("sha1"), streams=max(1, self.max_connections), path=rpath,
                                               progress=progress, done=fh.written)
                return
            self.transport.download_to(url, fh, path=rpath, progress=progress)

    # ------------------------------------------------------------------------------ fsspec: writing
    def _ensure_folder(self, path: str) -> dict[str, Any]:
        """The folder at ``path``, created with its parents when missing and ``auto_mkdir`` is on."""
        info = self._try_info(path)
        if info is None:
            if not self.auto_mkdir:
                raise not_found_error(path)
            self.makedirs(path, exist_ok=True)
            info = self._info(path)
        if info["type"] != "directory":
            raise not_a_directory_error(path)
        return info

    def _check_writable(self, path: str, exclusive: bool = False) -> None:
        """Local checks before a writer accepts data: name rules, not a folder, parent usable."""
        path = self._strip_protocol(path)
        if path == "":
            raise is_a_directory_error("")
        check_path_names(path)
        self._check_new_name(*_split(path))
        existing = self.cache.get(path)
        if existing is not None:
            if existing["type"] == "directory":
                raise is_a_directory_error(path)
            if exclusive:
                    raise exists_error(path)
        if not self.auto_mkdir:
            parent = self._info(_split(path)[0])
            if parent["type"] != "directory":
                raise not_a_directory_error(parent["name"])

    def _upload(self, path: str, fileobj: BinaryIO, size: int, sha1: str | None, *, modified: datetime | None = None,
                exclusive: bool = False, progress: Any = None) -> dict[str, Any]:
        """Upload content to ``path`` (new file or new version) and record the result in the cache."""
        path = self._strip_protocol(path)
        if path == "":
            raise is_a_directory_error("")
        check_path_names(path)
        parent, name = _split(path)
        self._check_new_name(parent, name)
        pinfo = self._ensure_folder(parent)
        existing = self.cache.get(path)
        if existing is None and RELIST_MIN_SIZE <= size <= self.spool_threshold and self.cache.listing(parent) is None:
            existing = self._try_info(path)  # one listing of the folder: cheaper than sending the body twice
        if existing is not None and existing["type"] == "directory":
            raise is_a_directory_error(path)
        if existing is not None and exclusive:
            raise exists_error(path)
        kwargs = dict(parent_id=pinfo["id"], name=name, fileobj=fileobj, size=size, sha1=sha1,
                      file_id=existing["id"] if existing else None, etag=existing.get("etag") if existing else None,
                      modified=modified, overwrite=not exclusive, progress=progress)
        start = fileobj.tell()
        try:
            entry = upload_file(self, **kwargs)
        except FileNotFoundError:
            if existing is None:
                raise
            # our cache knew a file that someone else deleted: upload it as a new file instead, from the
            # same start (the refused attempt may have read the source to its end)
            self.cache.removed(path)
            fileobj.seek(start)
            kwargs.update(file_id=None, etag=None)
            entry = upload_file(self, **kwargs)
        item = self._item(_join(pinfo["name"], entry.get("name") or name), entry)
        self.cache.added(item["name"], item)
        return item

    def _upload_buffer(self, path: str, buffer: WriteBuffer, *, modified: datetime | None = None,
                       exclusive: bool = False) -> dict[str, Any]:
        """Called by BoxFile.close: upload what a writer collected."""
        return self._upload(path, buffer.reader(), buffer.size, buffer.sha1, modified=modified, exclusive=exclusive)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        import io

        if self._intrans:  # inside fs.transaction: deferred like a file opened for writing
            with self.open(path, "xb" if mode == "create" else "wb", modified=kwargs.get("modified")) as f:
                f.write(value)
            return
        data = bytes(value)
        self._upload(path, io.BytesIO(data), len(data), hashlib.sha1(data).hexdigest(),
                     modified=kwargs.get("modified"), exclusive=(mode == "create"))

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kwargs: Any) -> None:
        """Upload a local file (streamed from disk; ``content_modified_at`` is its mtime)."""
        jobs = self._collecting()
        if jobs is not None:
            jobs.append(("dir" if os.path.isdir(lpath) else "file", lpath, rpath,
                         dict(kwargs, mode=mode, callback=callback)))
            return
        if os.path.isdir(lpath):
            self.makedirs(rpath, exist_ok=True)
            return
        modified = kwargs.get("modified") or datetime.fromtimestamp(os.stat(lpath).st_mtime, tz=timezone.utc)
        with open(lpath, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            # a large file's SHA-1 is folded from its parts as they are sent: the file is read once
            sha1 = sha1_of(fh)[0] if size <= self.spool_threshold else None
            if callback is not None:
                callback.set_size(size)
            progress = callback.relative_update if callback is not None else None
            self._upload(rpath, fh, size, sha1, modified=modified, exclusive=(mode == "create"), progress=progress)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> BoxFile:
        if "a" in mode:
            raise NotImplementedError(APPEND_REFUSAL)
        if kwargs.get("cache_type") is None:
            kwargs["cache_type"] = self.default_cache_type
        return BoxFile(self, self._strip_protocol(path), mode, block_size or self.default_block_size or "default",
                       autocommit, cache_options=cache_options, **kwargs)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        """Create an empty file; on an existing file without ``truncate``, set its modification time."""
        path = self._strip_protocol(path)
        if truncate or self._try_info(path) is None:
            self.pipe_file(path, b"", modified=kwargs.get("modified"))
        else:
            self.set_modified(path, kwargs.get("modified") or datetime.now(timezone.utc))

    def set_modified(self, path: str, mtime: datetime) -> None:
        """Set a file's ``content_modified_at``.

        Box sets ``content_modified_at`` only with an upload, so this uploads the same content again as a
        new version carrying that time (one download and one upload; the version history grows by one).
        """
        path = self._strip_protocol(path)
        info = self._info(path)
        if info["type"] != "file":
            raise is_a_directory_error(path)
        with tempfile.TemporaryFile() as tmp:
            url = self.transport.api(f"/files/{info['id']}/content")
            self.transport.download_to(url, tmp, path=path)
            tmp.seek(0)
            sha1, size = sha1_of(tmp)
            self._upload(path, tmp, size, sha1, modified=mtime)

    # -------------------------------------------------------------------------- fsspec: folders
    def _create_folder(self, parent_path: str, parent_id: str, name: str) -> dict[str, Any]:
        self._check_new_name(parent_path, name)

        def ours(conflict: dict[str, Any]) -> bool:
            return conflict.get("type") == "folder" and same_name(str(conflict.get("name", "")), name)

        entry = self.transport.json(
            "POST", self.transport.api("/folders"), params={"fields": self.FIELDS},
            json={"name": name, "parent": {"id": parent_id}}, conflict_ok=ours,
            path=_join(parent_path, name), action="create folder",
        )
        from_conflict = "etag" not in entry or "created_at" not in entry
        if from_conflict:  # a conflict stub: fetch the full item
            entry = self._get_item("folder", str(entry["id"]))
        item = self._item(_join(parent_path, entry.get("name") or name), entry)
        # a folder taken from a 409 may have been created, and filled, by someone else: not known empty
        self.cache.added(item["name"], item, empty=not from_conflict)
        return item

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if path != "":
            check_path_names(path)  # a name Box would refuse is refused before any request
            self._check_new_name(*_split(path))
        if path == "" or self._try_info(path) is not None:
            raise exists_error(path)
        parent, name = _split(path)
        if create_parents:
            self.makedirs(parent, exist_ok=True)
        pinfo = self._info(parent)
        if pinfo["type"] != "directory":
            raise not_a_directory_error(parent)
        self._create_folder(pinfo["name"], pinfo["id"], name)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        if path == "":
            if exist_ok:
                return
            raise exists_error("")
        check_path_names(path)
        parts = path.split("/")
        current, start = self._root_item(), 0
        if self._id_anchor(parts[0]) is not None:  # a folder by id: it exists, or nothing is created
            current, start = self._info(parts[0], _FOLDER_FIRST), 1
            if current["type"] != "directory":
                raise not_a_directory_error(parts[0])
            if len(parts) == 1 and not exist_ok:
                raise exists_error(path)
        for i, part in enumerate(parts[start:], start):
            sub = "/".join(parts[: i + 1])
            info = self._try_info(sub)
            if info is None:
                try:
                    info = self._create_folder(current["name"], current["id"], part)
                except FileExistsError:
                    # created meanwhile (another thread or process): learn it from a fresh listing
                    self._fetch_listing(current["name"], current["id"])
                    info = self._info(sub)
                    if info["type"] != "directory" or (i == len(parts) - 1 and not exist_ok):
                        raise
            elif info["type"] != "directory":
                raise not_a_directory_error(sub)
            elif i == len(parts) - 1 and not exist_ok:
                    raise exists_error(path)
            current = info

    def rmdir(self, path: str) -> None:
        """Delete an empty folder (Box refuses a non-empty one: ``OSError`` ENOTEMPTY)."""
        path = self._strip_protocol(path)
        if path == "":
            raise PermissionError(f"refusing to delete the root folder (id {self.root_folder_id})")
        info = self._info(path)
        if info["type"] != "directory":
            raise not_a_directory_error(path)
        try:
            self.transport.request("DELETE", self.transport.api(f"/folders/{info['id']}"),
                                   params={"recursive": "false"}, path=path, action="delete folder")
        except FileNotFoundError:
            # gone already: deleted by a retried attempt of ours whose answer was lost, or by someone else
            logger.debug("%s was already gone when deleted", path)
        self.cache.removed(path)

    def _delete(self, path: str, info: dict[str, Any]) -> None:
        kind = "folders" if info["type"] == "directory" else "files"
        params = {"recursive": "true"} if kind == "folders" else None
        try:
            self.transport.request("DELETE", self.transport.api(f"/{kind}/{info['id']}"), params=params,
                                   path=path, action="delete")
        except FileNotFoundError:
            # gone already: deleted by a retried attempt of ours whose answer was lost, or by someone else
            logger.debug("%s was already gone when deleted", path)
        self.cache.removed(path)

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        info = self._info(path)
        if info["type"] == "directory":
            raise is_a_directory_error(path)
        self._delete(path, info)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Delete files and, with ``recursive``, folders with all they hold (one request per folder)."""
        if isinstance(path, (list, tuple)):
            for p in path:
                self.rm(p, recursive=recursive, maxdepth=maxdepth)
            return
        path = self._strip_protocol(path)
        if path == "":
            raise PermissionError(f"refusing to delete the root folder (id {self.root_folder_id})")
        if self._is_pattern(path) or maxdepth is not None:
            targets = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
            # deepest first; a folder deleted recursively takes its listed children with it
            for p in sorted(targets, key=lambda p: (-p.count("/"), p)):
                info = self._try_info(p)
                if info is None:
                    continue
                if info["type"] == "directory" and not recursive:
                    raise is_a_directory_error(p)
                self._delete(p, info)
            return
        info = self._info(path)
        if info["type"] == "directory" and not recursive:
            raise is_a_directory_error(path)
        self._delete(path, info)

    # ------------------------------------------------------------------------- server-side ops
    def _move(self, src: str, dst: str) -> dict[str, Any]:
        """One ``PUT`` that moves and/or renames ``src`` to exactly ``dst`` (which must not exist)."""
        sinfo = self._info(src)
        parent, name = _split(dst)
        self._check_new_name(parent, name)
        pinfo = self._ensure_folder(parent)
        kind = "folders" if sinfo["type"] == "directory" else "files"
        entry = self.transport.json(
            "PUT", self.transport.api(f"/{kind}/{sinfo['id']}"), params={"fields": self.FIELDS},
            json={"name": name, "parent": {"id": pinfo["id"]}}, path=src, action=f"move to {dst}",
        )
        item = self._item(_join(pinfo["name"], entry.get("name") or name), entry)
        self.cache.moved(src, item["name"], item)
        return item

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:
        """Server-side move/rename of a file or a whole folder (one request); overwrites a file target."""
        if isinstance(path1, (list, tuple)) or self._is_pattern(path1):
            return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
        self.mv_literal(path1, path2)
        return None

    def mv_literal(self, path1: str, path2: str) -> None:
        """``mv`` of exactly the item named ``path1``: its ``*?[`` are characters, never a pattern.

        What frontends (mount, FTP/SFTP, CLI) use to move a name a program gave them. A file target is
        replaced safely (:meth:`_replace_file`); an existing folder target receives the item.
        """
        src = self._strip_protocol(path1)
        dst = self._strip_protocol(path2)
        if src == "":
            raise PermissionError("cannot move the root folder")
        if dst:
            check_path_names(dst)  # a target Box would refuse is refused before any request
        sinfo = self._info(src)
        dinfo = self._try_info(dst)
        if dinfo is not None and dinfo["id"] != sinfo["id"] and dinfo["type"] == "directory":
            dst = _join(dst, _split(src)[1])
            dinfo = self._try_info(dst)
        if dinfo is not None and dinfo["id"] != sinfo["id"]:
            if dinfo["type"] == "directory":
                    raise exists_error(dst)
            if sinfo["type"] == "directory":
                raise not_a_directory_error(dst)
            # fsspec semantics: a file target is replaced
            self._replace_file(dst, dinfo, lambda beside: self._move(src, beside),
                               undo=lambda beside: self._move(beside, src))
            return
        if dst == "":
            raise PermissionError("cannot replace the root folder")
        self._move(src, dst)

    def _replace_file(self, dst: str, dinfo: dict[str, Any], place: Any, undo: Any) -> None:
        """Replace the file ``dst`` with one that ``place(path)`` puts at ``path``, never losing either.

        Box cannot move or copy onto an existing name, so the new file goes beside the old one under a
        temporary name first; only then is the old one deleted and the new one renamed. A failed delete
        leaves ``dst`` as it was and ``undo(path)`` takes the new one back (a moved source goes home, a
        copy is removed). When the last rename finds the name taken by another client's file (two
        replaces racing), that file stays and ours is taken back the same way (FileExistsError). Any other
        failure of the last rename leaves the new content under the temporary name, logged, never thrown
        away. An old file already gone is what the delete was for (``_delete`` takes that as done).
        """
        parent, name = _split(dst)
        beside = _join(parent, f".boxfs-{uuid.uuid4().hex[:12]}-{name}"[:255].rstrip(" "))
        place(beside)

        def take_back() -> None:
            try:
                undo(beside)
            except Exception:  # the delete's or move's own error is the one to report
                logger.warning("%s: the replacing file was left at %s after a failed replace", dst, beside)

        try:
            self._delete(dst, dinfo)
        except BaseException:
            take_back()
            raise
        try:
            self._move(beside, dst)
        except FileExistsError:
            take_back()
            raise
        except BaseException:
            logger.warning("%s: the new content is at %s: the last rename of a replace failed", dst, beside)
            raise

    def copy(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
             on_error: str | None = None, **kwargs: Any) -> None:
        """Copy; a whole folder (``recursive=True``) to a new name is one server-side folder copy.

        Everything else (globs, lists, ``maxdepth``, copying a folder's contents with a trailing slash,
        merging into an existing folder) goes through fsspec's file-by-file logic, still server-side per
        file (:meth:`cp_file`), the files in parallel as in ``put``/``get``.
        """
        if isinstance(path2, str) and not recursive and _literal_file(path1, lambda: self._remote_file(path1)):
            # a file literally named like a pattern: fsspec would take it for a glob and copy it *into*
            # path2; it is one file, copied as any other
            src = self._strip_protocol(path1)
            return self.cp_file(src, self._one_file_target(path2, _split(src)[1]), **kwargs)
        whole = (isinstance(path1, str) and isinstance(path2, str) and recursive and maxdepth is None
                 and not trailing_sep(path1) and not self._is_pattern(path1))
        if whole:
            src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
            if dst:
                check_path_names(dst)
            sinfo = self._try_info(src)
            if sinfo is not None and sinfo["type"] == "directory" and src != "":
                dinfo = self._try_info(dst)
                if trailing_sep(path2) or (dinfo is not None and dinfo["type"] == "directory"):
                    dst = _join(dst, _split(src)[1])
                    dinfo = self._try_info(dst)
                if dinfo is None and dst != "":
                    jobs = self._collecting()
                    if jobs is not None:  # planned (see planned_transfers): one job for the whole tree
                        jobs.append(("tree", src, dst, kwargs))
                        return None
                    self._copy_folder(src, sinfo, dst)
                    return None
        path1, path2 = self._literal_sources(path1, path2, recursive, maxdepth,
                                             lambda t: trailing_sep(t) or self.isdir(t))
        ignore_missing = on_error == "ignore" or (on_error is None and recursive)  # fsspec's default

        def run(src: str, dst: str, **kw: Any) -> None:
            try:
                self.cp_file(src, dst, **kw)
            except FileNotFoundError:
                if not ignore_missing:
                    raise

        self._in_parallel(run, lambda: super(BoxFileSystem, self).copy(
            path1, path2, recursive=recursive, maxdepth=maxdepth, on_error=on_error, **kwargs),
            prepare=self._ensure_parents)
        return None

    def _copy_folder(self, src: str, sinfo: dict[str, Any], dst: str) -> dict[str, Any]:
        """``POST /folders/{id}/copy``: the whole tree in one request."""
        parent, name = _split(dst)
        self._check_new_name(parent, name)
        pinfo = self._ensure_folder(parent)

        def ours(conflict: dict[str, Any]) -> bool:
            return conflict.get("type") == "folder" and same_name(str(conflict.get("name", "")), name)

        entry = self.transport.json(
            "POST", self.transport.api(f"/folders/{sinfo['id']}/copy"), params={"fields": self.FIELDS},
            json={"parent": {"id": pinfo["id"]}, "name": name}, conflict_ok=ours, path=src,
            action=f"copy to {dst}",
        )
        if "etag" not in entry or "created_at" not in entry:
            entry = self._get_item("folder", str(entry["id"]))
        item = self._item(_join(pinfo["name"], entry.get("name") or name), entry)
        self.cache.added(item["name"], item, empty=False)
        return item

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Server-side copy (``POST /files/{id}/copy``); folders are created, not copied, here."""
        src = self._strip_protocol(path1)
        dst = self._strip_protocol(path2)
        jobs = self._collecting()
        if jobs is not None:
            jobs.append(("dir" if self._info(src)["type"] == "directory" else "file", src, dst, kwargs))
            return
        if dst:
            check_path_names(dst)  # a target Box would refuse is refused before any request
        sinfo = self._info(src)
        if sinfo["type"] == "directory":
            self.makedirs(dst, exist_ok=True)
            return
        dinfo = self._try_info(dst)
        if dinfo is not None and dinfo["type"] == "directory":
            dst = _join(dst, _split(src)[1])
            dinfo = self._try_info(dst)
        if dinfo is not None:
            if dinfo["id"] == sinfo["id"]:
                return
            if dinfo["type"] == "directory":
                raise is_a_directory_error(dst)
            self._replace_file(dst, dinfo, lambda beside: self._copy_file(src, sinfo, beside),
                               undo=lambda beside: self._delete(beside, self._info(beside)))
            return
        self._copy_file(src, sinfo, dst)

    def cp_file_exclusive(self, path1: str, path2: str) -> None:
        """Server-side copy of the file ``path1`` to exactly ``path2``, which must be free: FileExistsError
        when it is taken (Box's 409), whoever took it and however recently, and never a replace. For a
        frontend whose login may not overwrite: a check then :meth:`cp_file` would replace a file another
        client created between the two."""
        src = self._strip_protocol(path1)
        dst = self._strip_protocol(path2)
        if dst:
            check_path_names(dst)
        sinfo = self._info(src)
        if sinfo["type"] == "directory":
            raise is_a_directory_error(src)
        self._copy_file(src, sinfo, dst)

    def _copy_file(self, src: str, sinfo: dict[str, Any], dst: str) -> None:
        """``POST /files/{id}/copy`` to ``dst``, a name not taken."""
        parent, name = _split(dst)
        self._check_new_name(parent, name)
        pinfo = self._ensure_folder(parent)

        def ours(conflict: dict[str, Any]) -> bool:
            return (conflict.get("type") == "file" and same_name(str(conflict.get("name", "")), name)
                    and (conflict.get("sha1") in (None, sinfo.get("sha1"))))

        entry = self.transport.json(
            "POST", self.transport.api(f"/files/{sinfo['id']}/copy"), params={"fields": self.FIELDS},
            json={"parent": {"id": pinfo["id"]}, "name": name}, conflict_ok=ours, path=src,
            action=f"copy to {dst}",
        )
        if "etag" not in entry or "sha1" not in entry:
            entry = self._get_item("file", str(entry["id"]))
        item = self._item(_join(pinfo["name"], entry.get("name") or name), entry)
        self.cache.added(item["name"], item)

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """A URL that downloads the file with no credentials, for a limited time.

        Up to 15 minutes it is Box's own download URL (what ``GET /files/{id}/content`` redirects to;
        Box keeps it valid about 15 minutes whatever is asked). For a longer ``expiration`` (seconds) the
        file gets an open shared link that Box removes after that time, and its direct download URL is
        returned. See :func:`boxfs.sign.signed_url`.
        """
        return signed_url(self, self._strip_protocol(path), int(expiration))

    def embed_url(self, path: str | None = None, *, file_id: str | int | None = None) -> str:
        """The file's expiring Box Embed URL, for an ``iframe`` (open it within 60 seconds). The file is
        named by path or, where paths cannot be resolved (App Token auth), by ``file_id``."""
        return preview.embed_url(self, path, file_id=file_id)

    def annotator_token(self, path: str | None = None, *, external_id: str, display_name: str,
                        file_id: str | int | None = None) -> str:
        """A token that previews and annotates one file as ``external_id`` (a user of your application,
        at most 48 characters, shown as ``display_name``): Box View's annotator token."""
        return preview.annotator_token(self, path, external_id=external_id, display_name=display_name,
                                       file_id=file_id)

    # --------------------------------------------------------------------------------- coherence
    def _ensure_watching(self, wait: bool = False) -> ChangeWatcher | None:
        """Subscribe this filesystem to its user's change watcher (shared by the process) and start it
        (outside our lock: see ChangeWatcher.start for ``wait``)."""
        if not self.watch_events:
            return None
        with self._watch_lock:
            if self._watcher is None:
                self._watcher = self._feed.watcher = watcher_for(self.endpoints, self.provider, self.policy,
                                                                 self.as_user_id)
            watcher = self._watcher
        watcher.subscribe(self._feed)  # idempotent; again if it stopped for lack of users
        watcher.start(wait=wait)
        return watcher

    def watch(self, path: str = "", timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """An iterator of the changes made on Box at or below ``path`` from now on, by anyone who changes
        what this user sees (other processes, tokens, apps, Box's web app; this filesystem too).

        Each change is a dict: ``type`` (``created``, ``uploaded``, ``copied``, ``moved``, ``deleted``,
        ``restored``, ``modified``), ``path`` (for ``moved`` the new one, ``old_path`` the old one when it
        was known), ``kind`` (``file``/``directory``), ``id``, ``size``, ``sha1``, ``etag``, ``event_type``
        (Box's), ``event_id``, ``by`` (the login that made it) and ``time``. Iteration ends after
        ``timeout`` seconds without a change (None: never). Raises OSError when the event stream cannot be
        read (``watch_events=False``, or a token Box does not let read it).
        """
        path = self._strip_protocol(path)
        watcher = self._ensure_watching(wait=True)
        if watcher is None:
            raise OSError("fs.watch needs the change watcher: this filesystem was made with watch_events=False")
        if watcher.trusted_since is None:
            raise OSError(f"Box's event stream cannot be read with this token: {watcher.error or 'unavailable'}")
        return self._feed.listen(path, timeout)

    # --------------------------------------------------------------------------------- caching
    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget what is known about ``path`` (everything when None); for changes made elsewhere."""
        if path is None:
            self.cache.clear()
        else:
            self.cache.invalidate(self._strip_protocol(path))
        super().invalidate_cache(path)

    # ------------------------------------------------------------------------------- large uploads
    def clean_spool(self, older_than: float | None = None) -> list[str]:
        """Remove the acting user's expired upload state and orphaned spool files; returns their paths.

        Files of uploads or writers still running (in any process) are never touched; ``older_than``
        (seconds, default one day, ``0`` for everything not in use) also gives up resumable uploads
        that old. See :mod:`boxfs.upload.cleaning`.
        """
        return clean_spool(self, older_than=older_than)
