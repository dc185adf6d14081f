"""HTTP to Box: one ``requests.Session`` per filesystem, every call through the single retry policy.

Why our own transport rather than box_sdk_gen's managers (which we do use for authentication):

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

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from boxfs.api.errors import BoxAPIError, conflicts_of, error_from_response, request_id_of
from boxfs.api.reach import unreachable
from boxfs.api.tokens import TokenSource
from boxfs.config import BoxEndpoints
from boxfs.retry import CONNECTION_ERRORS, RetryableResponse, RetryPolicy, retrying

logger = logging.getLogger("boxfs")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
DOWNLOAD_CHUNK = 1 << 20

Recovered = dict[str, Any]


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
    ) -> requests.Response:
        """One request, re-sent once with a fresh token when Box says 401 (expired or revoked token)."""
        refreshed = False
        while True:
            token = self.provider.token()
            hdrs = {"Authorization": f"Bearer {token}"}
            if act_as_user and self.as_user_id:
                hdrs["As-User"] = self.as_user_id
            if headers:
                hdrs.update(headers)
            body = data() if callable(data) else data
            started = time.monotonic()
            try:
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
                logger.debug("%s %s -> %s after %.1f ms", method, urlsplit(url).path, type(exc).__name__,
                             (time.monotonic() - started) * 1000)
                raise
            logger.debug(
                "%s %s -> %d (request id %s) %.1f ms",
                method,
                urlsplit(url).path,
                resp.status_code,
                request_id_of(resp, {}) if resp.status_code < 400 else request_id_of(resp),
                (time.monotonic() - started) * 1000,
            )
            if resp.status_code == 401 and self.provider.refreshable and not refreshed:
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
        route = urlsplit(url).path
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
    def download_range(self, url: str, start: int, end: int, *, path: str | None = None) -> bytes:
        """Bytes ``[start, end)`` in one ranged GET (retried as a whole: GET is idempotent)."""
        if end <= start:
            return b""
        resp = self.request("GET", url, headers={"Range": f"bytes={start}-{end - 1}"}, path=path, action="download")
        assert isinstance(resp, requests.Response)
        data = resp.content
        if resp.status_code == 200 and len(data) > end - start:
            data = data[start:end]  # a server that ignored Range
        return data

    def download_to(
        self,
        url: str,
        sink: BinaryIO,
        *,
        start: int = 0,
        end: int | None = None,
        path: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Stream ``[start, end)`` into ``sink``; after a dropped connection resume where it stopped.

        One retry loop covers both the request and the body: an attempt that fails mid-body resumes with
        a ``Range`` from the first byte not yet written.
        """
        written = 0
        describe = f"GET {urlsplit(url).path}"
        acting = self.as_user_id
        try:
            for attempt in retrying(self.policy, describe):
                with attempt:
                    offset = start + written
                    if end is not None and offset >= end:
                        break
                    rng = f"bytes={offset}-" if end is None else f"bytes={offset}-{end - 1}"
                    headers = {"Range": rng} if offset > 0 or end is not None else None
                    resp = self._send_once("GET", url, params=None, json=None, data=None, headers=headers,
                                           stream=True, allow_redirects=True, act_as_user=True)
                    status = resp.status_code
                    if status in (429, 500, 502, 503, 504) or (status == 202 and "Retry-After" in resp.headers):
                        resp.close()
                        raise RetryableResponse(resp, describe)
                    if status >= 400:
                        raise error_from_response(resp, path, "download", acting)
                    with resp:
                        skip = offset if (status == 200 and offset > 0) else 0  # server ignored Range
                        for chunk in resp.iter_content(DOWNLOAD_CHUNK):
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
