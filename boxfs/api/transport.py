"""HTTP to Box: one ``requests.Session`` per filesystem, every call through the single retry policy.

Why our own transport rather than box_sdk_gen's managers:

* one tenacity retry policy (:mod:`boxfs.retry`) that also knows when a POST may be repeated;
* streamed and ranged downloads that resume after a dropped connection;
* connection-pool sizing (``max_connections``) for parallel listings and transfers;
* raw JSON instead of SDK object deserialisation, which matters for 10,000-item listings;
* per-request logging with Box's request id and without secrets;
* ``As-User`` is sent here, per request, because the token is shared by every user of an app
  (box_sdk_gen's ``with_as_user_header`` would just add the same header).

Idempotency. GET/HEAD/OPTIONS/PUT/DELETE are repeated as they are. A non-idempotent request (POST: create
folder, upload, copy, commit) is repeated after an *ambiguous* failure (5xx or a dropped connection: it may
or may not have taken effect) only if the caller made repeating it safe: ``recover`` is called first and
may return the result of the earlier attempt that did succeed (for uploads: the SHA1 check), and
``conflict_ok`` lets a 409 that names the very item we were creating count as that success (folder create,
copy). Without either, an ambiguous failure of a POST is reported, never blindly repeated.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from boxfs.api.errors import BoxAPIError, conflicts_of, error_from_response, request_id_of
from boxfs.api.reach import unreachable
from boxfs.api.tokens import TokenSource
from boxfs.config import BoxEndpoints
from boxfs.retry import CONNECTION_ERRORS, RetryableResponse, RetryPolicy, retrying

logger = logging.getLogger("boxfs")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: methods that change nothing on Box (any other request may be an event in the user's stream)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DOWNLOAD_CHUNK = 1 << 20
#: Box documents its download URLs as valid for about 15 minutes; one is reused for at most this long
DOWNLOAD_URL_REUSE = 600.0
#: what a download host answers for a URL that expired or was withdrawn: fetch a new URL and try once more
URL_REFUSALS = frozenset({401, 403, 404, 410})
_REDIRECTS = (301, 302, 303, 307, 308)

#: ``get_file`` of a file this large runs ranged downloads on several connections at once, each range
#: at least PARALLEL_PART_MIN (a WAN link gives each TCP connection a bounded share of its bandwidth)
PARALLEL_DOWNLOAD_MIN = 64 << 20
PARALLEL_PART_MIN = 16 << 20
#: the largest range of a parallel download: smaller ranges taken in order keep the written part of the
#: file growing from its start (hashed while the rest arrives), at one more download request each
PARALLEL_RANGE_MAX = 32 << 20

Recovered = dict[str, Any]
T = TypeVar("T")
#: a download URL's key: file id and the version it serves (a pinned version id, or the content's SHA-1)
URLKey = tuple[str, str]


class WriteActivity:
    """When this process last wrote to Box as each user, counting a write in flight as writing now.

    Why: every write is an event in the user's stream, which ends the change watcher's long poll; the
    watcher (:mod:`boxfs.watch`) waits for a burst of the process's own writes to pause before it reads
    the events. Keyed by (API base URL, acting user); the watcher asks :func:`last_write`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, str | None], int] = {}
        self._last: dict[tuple[str, str | None], float] = {}

    @contextmanager
    def writing(self, key: tuple[str, str | None]) -> Iterator[None]:
        with self._lock:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key] -= 1
                self._last[key] = time.monotonic()

    def last(self, key: tuple[str, str | None]) -> float:
        """Now while a write is in flight, else when the last one ended (-inf: never)."""
        with self._lock:
            if self._in_flight.get(key):
                return time.monotonic()
            return self._last.get(key, float("-inf"))


_writes = WriteActivity()


def last_write(base_url: str, as_user_id: str | None) -> float:
    """When (``time.monotonic()``) this process last wrote to this Box as this user: now while a request
    that may change something is in flight, -inf if none ever was."""
    return _writes.last((base_url, as_user_id))


def shown_path(url: str, anonymous: bool = False) -> str:
    """The path of ``url`` as logs and error messages show it. A download URL (sent ``anonymous``) is a
    credential: whoever holds it can read the file until it expires, so only its host is shown."""
    parts = urlsplit(url)
    return f"<download URL on {parts.hostname}>" if anonymous else parts.path


@dataclass
class _KeyLock:
    """One key's fetch lock and how many threads hold or wait for it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class DownloadURLs:
    """Download URLs by file and version, reused within :data:`DOWNLOAD_URL_REUSE` seconds.

    Why: every read through the API costs two requests (``GET /files/{id}/content`` answers with a
    redirect, then the download host serves the bytes), and the first counts against the user's rate
    limit. The URL serves one version, so the key names the version; a URL older than the reuse window,
    or refused by the download host, is fetched again. Bounded (least recently used first out).
    """

    def __init__(self, reuse: float = DOWNLOAD_URL_REUSE, limit: int = 4096) -> None:
        self.reuse = reuse
        self.limit = limit
        self._urls: OrderedDict[URLKey, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._fetching: dict[URLKey, _KeyLock] = {}

    def get(self, key: URLKey) -> str | None:
        with self._lock:
            hit = self._urls.get(key)
            if hit is None:
                return None
            if time.monotonic() - hit[1] >= self.reuse:
                del self._urls[key]
                return None
            self._urls.move_to_end(key)
            return hit[0]

    def put(self, key: URLKey, url: str) -> None:
        with self._lock:
            self._urls[key] = (url, time.monotonic())
            self._urls.move_to_end(key)
            while len(self._urls) > self.limit:
                self._urls.popitem(last=False)

    def drop(self, key: URLKey, url: str) -> None:
        """Forget ``url`` for ``key`` (unless another thread already replaced it)."""
        with self._lock:
            hit = self._urls.get(key)
            if hit is not None and hit[0] == url:
                del self._urls[key]

    @contextmanager
    def fetching(self, key: URLKey) -> Iterator[None]:
        """Held while fetching the URL of ``key``: threads reading one file together fetch its URL once.

        The per-key lock lives only while some thread holds or waits for it (a count of its users), so a
        long-lived filesystem reading many files keeps no lock per file it ever read.
        """
        with self._lock:
            entry = self._fetching.get(key)
            if entry is None:
                entry = self._fetching[key] = _KeyLock()
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._lock:
                entry.users -= 1
                if not entry.users:
                    del self._fetching[key]

    def fetches_in_flight(self) -> int:
        """Keys whose URL some thread is fetching or waiting for (what :meth:`fetching` holds)."""
        with self._lock:
            return len(self._fetching)

    def clear(self) -> None:
        with self._lock:
            self._urls.clear()


class BoxTransport:
    """Authenticated, retried, logged requests to one Box endpoint on behalf of one acting user."""

    def __init__(
        self,
        endpoints: BoxEndpoints,
        provider: TokenSource,
        policy: RetryPolicy,
        *,
        max_connections: int = 16,
        as_user_id: str | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.provider = provider
        self.policy = policy
        self.as_user_id = as_user_id
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=max_connections, pool_maxsize=max_connections, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "boxfs"
        self.download_urls = DownloadURLs()
        #: range fetches in flight over all downloads: several large files fetched at once (``fs.get`` of a
        #: folder) share the pool's connections and the 1 MiB buffers instead of multiplying them
        self._range_slots = threading.BoundedSemaphore(max(1, max_connections))

    def _unreachable(self, url: str, exc: BaseException, describe: str) -> str:
        """The words for a connection failure that outlasted every attempt (host, cause, what to check)."""
        roots = (self.endpoints.base_url, self.endpoints.upload_url, self.endpoints.oauth2_url)
        return unreachable(url, exc, attempts=self.policy.max_attempts, what=describe,
                           configured=url.startswith(roots), connect_timeout=self.policy.connect_timeout,
                           read_timeout=self.policy.read_timeout)

    # ---------------------------------------------------------------------------------------- URLs
    def api(self, route: str) -> str:
        """``/folders/0`` -> ``https://api.box.com/2.0/folders/0``."""
        return f"{self.endpoints.base_url}/2.0{route}"

    def upload_api(self, route: str) -> str:
        """``/files/content`` -> ``https://upload.box.com/api/2.0/files/content``."""
        return f"{self.endpoints.upload_url}/2.0{route}"

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------------------------- sending
    def _send_once(
        self,
        method: str,
        url: str,
        *,
        params: Any,
        json: Any,
        data: Any,
        headers: dict[str, str] | None,
        stream: bool,
        allow_redirects: bool,
        act_as_user: bool,
        anonymous: bool = False,
    ) -> requests.Response:
        """One request, re-sent once with a fresh token when Box says 401 (expired or revoked token).

        ``anonymous``: no credentials at all (a download URL carries its own authorisation, and the token
        must not travel to another host).
        """
        refreshed = False
        while True:
            token = "" if anonymous else self.provider.token()
            hdrs = {} if anonymous else {"Authorization": f"Bearer {token}"}
            if act_as_user and self.as_user_id and not anonymous:
                hdrs["As-User"] = self.as_user_id
            if headers:
                hdrs.update(headers)
            body = data() if callable(data) else data
            started = time.monotonic()
            writes: AbstractContextManager[None] = nullcontext() if method in READ_METHODS or anonymous \
                else _writes.writing((self.endpoints.base_url, self.as_user_id))
            try:
                with writes:
                    resp = self.session.request(
                        method,
                        url,
                        params=params,
                        json=json,
                        data=body,
                        headers=hdrs,
                        stream=stream,
                        allow_redirects=allow_redirects,
                        timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                    )
            except CONNECTION_ERRORS as exc:
                logger.debug("%s %s -> %s after %.1f ms", method, shown_path(url, anonymous), type(exc).__name__,
                             (time.monotonic() - started) * 1000)
                raise
            logger.debug(
                "%s %s -> %d (request id %s) %.1f ms",
                method,
                shown_path(url, anonymous),
                resp.status_code,
                request_id_of(resp, {}) if resp.status_code < 400 else request_id_of(resp),
                (time.monotonic() - started) * 1000,
            )
            if resp.status_code == 401 and not anonymous and self.provider.refreshable and not refreshed:
                resp.close()
                logger.info("HTTP 401 from %s %s: refreshing the access token once", method, urlsplit(url).path)
                self.provider.invalidate(token)
                refreshed = True
                continue
            return resp

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        json: Any = None,
        data: bytes | Callable[[], Any] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        idempotent: bool | None = None,
        recover: Callable[[], Recovered | None] | None = None,
        conflict_ok: Callable[[dict[str, Any]], bool] | None = None,
        ok_statuses: Iterable[int] = (),
        allow_redirects: bool = True,
        act_as_user: bool = True,
        anonymous: bool = False,
        path: str | None = None,
        action: str | None = None,
    ) -> requests.Response | Recovered:
        """Send with retries; return the successful response, or what ``recover``/``conflict_ok`` found.

        ``data`` may be a callable returning a fresh body for every attempt (a re-seekable stream).
        ``ok_statuses``: error statuses the caller wants back instead of an exception (e.g. 409 on a
        preflight). Failures are raised as the exceptions of :mod:`boxfs.api.errors`.
        """
        method = method.upper()
        safe = idempotent if idempotent is not None else method in IDEMPOTENT_METHODS
        repeatable = safe or recover is not None or conflict_ok is not None
        ok = set(ok_statuses)
        route = shown_path(url, anonymous)
        describe = f"{method} {route}"
        ambiguous = False
        acting = self.as_user_id if act_as_user else None
        try:
            for attempt in retrying(self.policy, describe):
                with attempt:
                    if ambiguous and recover is not None:
                        found = recover()
                        if found is not None:
                            logger.info("%s: an earlier attempt had succeeded; not repeating it", describe)
                            return found
                    try:
                        resp = self._send_once(
                            method, url, params=params, json=json, data=data, headers=headers,
                            stream=stream, allow_redirects=allow_redirects, act_as_user=act_as_user,
                            anonymous=anonymous,
                        )
                    except CONNECTION_ERRORS as exc:
                        if not repeatable:
                            raise BoxAPIError(
                                f"{path + ': ' if path else ''}{action or describe} failed: connection lost "
                                f"({type(exc).__name__}); not repeated because it may have taken effect"
                            ) from None
                        ambiguous = ambiguous or not safe
                        raise
                    status = resp.status_code
                    if status == 429 or (status == 202 and method == "GET" and "Retry-After" in resp.headers):
                        resp.close()
                        raise RetryableResponse(resp, describe)
                    if status >= 500:
                        if status in (500, 502, 503, 504) and repeatable:
                            ambiguous = ambiguous or not safe
                            resp.close()
                            raise RetryableResponse(resp, describe)
                        raise error_from_response(resp, path, action, acting)
                    if status >= 400 and status not in ok:
                        if status == 409 and ambiguous and conflict_ok is not None:
                            exc409 = error_from_response(resp, path, action, acting)
                            for conflict in conflicts_of(exc409):
                                if conflict_ok(conflict):
                                    logger.info("%s: 409 names our own earlier attempt; taking it as success", describe)
                                    return conflict
                            raise exc409
                        raise error_from_response(resp, path, action, acting)
                    if not stream:
                        _ = resp.content  # read inside the attempt: a body cut short is retried too
                    return resp
        except RetryableResponse as exc:
            raise error_from_response(exc.response, path, action, acting) from None
        except CONNECTION_ERRORS as exc:
            raise BoxAPIError(
                f"{path + ': ' if path else ''}{action or describe} failed: {self._unreachable(url, exc, describe)}"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """:meth:`request`, returning the JSON body (``{}`` for 204) or the recovered item."""
        result = self.request(method, url, **kwargs)
        if isinstance(result, dict):
            return result
        if result.status_code == 204 or not result.content:
            return {}
        data = result.json()
        return data if isinstance(data, dict) else {"entries": data}

    # ----------------------------------------------------------------------------------- downloads
    def download_range(self, url: str, start: int, end: int, *, path: str | None = None,
                       anonymous: bool = False) -> bytes:
        """Bytes ``[start, end)`` in one ranged GET (retried as a whole: GET is idempotent)."""
        if end <= start:
            return b""
        resp = self.request("GET", url, headers={"Range": f"bytes={start}-{end - 1}"}, anonymous=anonymous,
                            path=path, action="download")
        assert isinstance(resp, requests.Response)
        data = resp.content
        if resp.status_code == 200 and len(data) > end - start:
            data = data[start:end]  # a server that ignored Range
        return data

    def content_url(self, file_id: str, version: str | None = None) -> str:
        """The API URL of a file's content (Box answers it with a redirect to a download URL)."""
        url = self.api(f"/files/{file_id}/content")
        return f"{url}?{urlencode({'version': version})}" if version else url

    def read_content(self, file_id: str, start: int | None = None, end: int | None = None, *,
                     version: str | None = None, tag: str | None = None, path: str | None = None) -> bytes:
        """Bytes ``[start, end)`` of a file (all of it when ``start`` is None), through a reused download URL.

        ``version`` pins a file version (Box's ``?version=``); without it ``tag`` (the content's SHA-1 as
        the caller knows it) names the version a reused URL must serve. With neither, nothing is reused:
        the read goes through the API's redirect as before.
        """
        def fetch(url: str, anonymous: bool) -> bytes:
            if start is None or end is None:
                resp = self.request("GET", url, anonymous=anonymous, path=path, action="download")
                assert isinstance(resp, requests.Response)
                return resp.content
            return self.download_range(url, start, end, path=path, anonymous=anonymous)

        return self.through_download_url(file_id, fetch, version=version, tag=tag, path=path)

    def through_download_url(self, file_id: str, fetch: Callable[[str, bool], T], *, version: str | None = None,
                             tag: str | None = None, path: str | None = None) -> T:
        """``fetch(url, anonymous)`` on the file's reused download URL; once more on a fresh one if the
        download host refuses it (expired, withdrawn); through the API's redirect when none can be had."""
        api_url = self.content_url(file_id, version)
        if not (version or tag):
            return fetch(api_url, False)
        key: URLKey = (str(file_id), f"version:{version}" if version else f"sha1:{tag}")
        url = self._download_url(key, file_id, version, path)
        if url is None:
            return fetch(api_url, False)
        try:
            return fetch(url, True)
        except Exception as exc:
            if getattr(exc, "box_status", None) not in URL_REFUSALS:
                raise
            logger.debug("the download URL of file %s was refused (HTTP %s): fetching a new one", file_id,
                         getattr(exc, "box_status", None))
            self.download_urls.drop(key, url)
        url = self._download_url(key, file_id, version, path)
        return fetch(api_url, False) if url is None else fetch(url, True)

    def _download_url(self, key: URLKey, file_id: str, version: str | None, path: str | None) -> str | None:
        """The reusable download URL for ``key``: known, else asked of the API (one request per key even
        when threads ask together); None when the API serves the content itself instead of redirecting."""
        known = self.download_urls.get(key)
        if known is not None:
            return known
        with self.download_urls.fetching(key):
            known = self.download_urls.get(key)
            if known is not None:
                return known
            api_url = self.content_url(file_id, version)
            resp = self.request("GET", api_url, allow_redirects=False, stream=True, path=path, action="download")
            assert isinstance(resp, requests.Response)
            with resp:
                location = resp.headers.get("Location") if resp.status_code in _REDIRECTS else None
                if location:
                    _ = resp.content  # the redirect's small body read: its connection goes back to the pool
            if not location:
                return None
            url = urljoin(api_url, location)
            self.download_urls.put(key, url)
            return url

    def download_ranges(self, file_id: str, fd: int, size: int, *, streams: int, version: str | None = None,
                        tag: str | None = None, path: str | None = None,
                        progress: Callable[[int], None] | None = None,
                        done: Callable[[int, int], None] | None = None) -> None:
        """All ``size`` bytes of a file into the regular file ``fd``, in ranges on ``streams`` connections.

        Each range is written where it belongs (``os.pwrite``), resumes on its own after a dropped
        connection, and comes from the file's one reused download URL. Every response must describe a
        file of ``size`` bytes: a file that changed on Box since its size was learned is an error, not a
        mix of two versions. The ranges (at most :data:`PARALLEL_RANGE_MAX` each) are taken in file order
        by the ``streams`` threads, so the written part grows from the start: ``done(start, end)``, called
        as each range is complete, lets the caller hash the file while the rest is still arriving.
        """
        step = max(PARALLEL_PART_MIN, min(PARALLEL_RANGE_MAX, -(-size // max(1, streams))))
        ranges = [(o, min(o + step, size)) for o in range(0, size, step)]
        lock = threading.Lock()
        writing = threading.Lock()

        def report(n: int) -> None:
            assert progress is not None
            with lock:
                progress(n)

        def one(rng: tuple[int, int]) -> None:
            def fetch(url: str, anonymous: bool) -> int:
                return self.download_to(url, _OffsetSink(fd, rng[0], writing), start=rng[0], end=rng[1], path=path,
                                        progress=report if progress is not None else None, anonymous=anonymous,
                                        total=size)
            with self._range_slots:
                self.through_download_url(file_id, fetch, version=version, tag=tag, path=path)
            if done is not None:
                done(*rng)

        with ThreadPoolExecutor(max_workers=min(len(ranges), max(1, streams)),
                                thread_name_prefix="boxfs-range") as pool:
            futures = [pool.submit(one, r) for r in ranges]  # the pool's queue hands them out in order
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:  # a failed range ends the download: the queued ones are not sent
                    future.cancel()
                raise

    def download_to(
        self,
        url: str,
        sink: BinaryIO,
        *,
        start: int = 0,
        end: int | None = None,
        path: str | None = None,
        progress: Callable[[int], None] | None = None,
        anonymous: bool = False,
        total: int | None = None,
    ) -> int:
        """Stream ``[start, end)`` into ``sink``; after a dropped connection resume where it stopped.

        One retry loop covers both the request and the body: an attempt that fails mid-body resumes with
        a ``Range`` from the first byte not yet written. The body is read into one reused buffer
        (:func:`_body_into`), not as a ``bytes`` object per chunk. ``total``: the file's size the caller
        expects; a ranged answer for another size is refused (the file changed on Box).
        """
        written = 0
        describe = f"GET {shown_path(url, anonymous)}"
        acting = self.as_user_id
        buf = bytearray(DOWNLOAD_CHUNK)
        try:
            for attempt in retrying(self.policy, describe):
                with attempt:
                    offset = start + written
                    if end is not None and offset >= end:
                        break
                    rng = f"bytes={offset}-" if end is None else f"bytes={offset}-{end - 1}"
                    headers = {"Range": rng} if offset > 0 or end is not None else None
                    resp = self._send_once("GET", url, params=None, json=None, data=None, headers=headers,
                                           stream=True, allow_redirects=True, act_as_user=True, anonymous=anonymous)
                    status = resp.status_code
                    if status in (429, 500, 502, 503, 504) or (status == 202 and "Retry-After" in resp.headers):
                        resp.close()
                        raise RetryableResponse(resp, describe)
                    if status >= 400:
                        raise error_from_response(resp, path, "download", acting)
                    with resp:
                        if total is not None and status == 206:
                            _check_total(resp, total, path)
                        skip = offset if (status == 200 and offset > 0) else 0  # server ignored Range
                        for chunk in _body_into(resp, buf):
                            if skip:
                                cut = min(skip, len(chunk))
                                chunk, skip = chunk[cut:], skip - cut
                            if end is not None:
                                chunk = chunk[: max(0, end - (start + written))]
                            if chunk:
                                sink.write(chunk)
                                written += len(chunk)
                                if progress is not None:
                                    progress(len(chunk))
        except RetryableResponse as exc:
            raise error_from_response(exc.response, path, "download", acting) from None
        except CONNECTION_ERRORS as exc:
            raise BoxAPIError(
                f"{path + ': ' if path else ''}download failed: {self._unreachable(url, exc, describe)}"
            ) from None
        return written


class _OffsetSink:
    """A ``write``-able view of a file descriptor from ``offset`` on (``os.pwrite``: no shared position,
    so the ranges of one download are written by several threads).

    ``lock``, shared by the sinks of one file, lets one write in at a time: the kernel serialises writes
    to a file anyway (its inode lock), and threads waiting there spin on the CPU (``rwsem_spin_on_owner``:
    13% of a 1 GB download's CPU samples on 8 streams), while threads waiting on a Python lock sleep."""

    def __init__(self, fd: int, offset: int, lock: threading.Lock | None = None) -> None:
        self._fd = fd
        self._offset = offset
        self._lock = lock or threading.Lock()

    def write(self, data: Any) -> int:
        view = memoryview(data)
        done = 0
        with self._lock:
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], self._offset + done)
        self._offset += done
        return done


def _check_total(resp: requests.Response, total: int, path: str | None) -> None:
    """Refuse a ranged answer (``Content-Range: bytes a-b/N``) for a file of another size than ``total``."""
    found = resp.headers.get("Content-Range", "").rpartition("/")[2]
    if found.isdigit() and int(found) != total:
        raise BoxAPIError(f"{path + ': ' if path else ''}the file changed on Box during the download "
                          f"(now {int(found):,} bytes, expected {total:,}); none of its bytes were written: try again")


def _body_into(resp: requests.Response, buf: bytearray) -> Iterator[memoryview]:
    """A streamed response's body as views of ``buf``, refilled for each (valid until the next one).

    Why: ``iter_content`` makes a new ``bytes`` per chunk and urllib3 copies each block two or three times
    on its way; an uncompressed body (Box's downloads are) is read straight from the socket into one
    buffer with ``readinto`` of the standard library's response under urllib3's. A body cut short, by
    its Content-Length, is a connection error (the caller resumes it). Anything else goes through urllib3.
    """
    raw = resp.raw
    fp = getattr(raw, "_fp", None)
    encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if encoded or not hasattr(fp, "readinto"):
        for chunk in resp.iter_content(len(buf)):
            yield memoryview(chunk)
        return
    expected = resp.headers.get("Content-Length")
    view = memoryview(buf)
    got = 0
    while True:
        try:
            n = fp.readinto(view)  # type: ignore[union-attr]
        except (OSError, http.client.HTTPException) as exc:
            raise requests.exceptions.ConnectionError(f"download cut after {got} bytes: {exc}") from exc
        if not n:
            break
        got += n
        yield view[:n]
    if expected is not None and expected.isdigit() and got < int(expected):
        raise requests.exceptions.ChunkedEncodingError(f"download cut after {got} of {expected} bytes")
    # read to its end behind urllib3's back, so urllib3 would close the connection with the response: hand
    # it back to the pool instead (the next range or file then skips a TCP and TLS handshake)
    raw.release_conn()
