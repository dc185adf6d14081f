"""The emulator's HTTP/1.1 layer: routing, streamed bodies, faults, latency and the request log.

Built on the standard library's threading HTTP server so the emulator has no web-framework
dependency: one thread per connection, keep-alive, request bodies read as streams (by
Content-Length or chunked transfer coding) and response bodies written from iterators, so no
file is ever held whole in memory.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from boxfs.emulator.errors import ApiError, OAuthError, reason
from boxfs.emulator.faults import Fault, FaultInjector, RateLimiter, RequestLog, RequestRecord

log = logging.getLogger("boxfs.emulator")

CHUNK = 1 << 20

# Path prefixes of Box's hosts, as laid out on the emulator's single origin.
HOST_PREFIXES = (("/api/2.0", "upload"), ("/2.0", "api"), ("/oauth2", "oauth2"), ("/download", "download"),
                 ("/preview", "app"), ("/realtime", "realtime"))


#: how far behind its schedule a paced connection may fall and still catch up (seconds of link time)
PACE_SLACK = 0.05


class Pacer:
    """Paces one direction of one TCP connection to ``app.bandwidth`` bytes per second (0: unpaced).

    Why: on loopback every client is bounded by this machine's CPU, so the number of connections a client
    opens and the bytes it moves would not show; a WAN link to Box gives each connection a bounded rate.
    The bytes go out (or are taken in) at once, then the connection waits until they would have crossed
    a link of that rate. A wait that overran (a sleeping thread woken late, as happens with many
    connections on few cores) is made up by the next bytes, up to :data:`PACE_SLACK`: a link does not
    lose capacity because its sender was late; an idle connection earns no burst.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._free_at = 0.0

    def __call__(self, n: int) -> None:
        rate = self._app.bandwidth
        if not rate or n <= 0:
            return
        now = time.monotonic()
        behind = now - self._free_at
        # overran by a little: go on from the schedule (catch up); idle longer: start from now (no burst)
        self._free_at = (self._free_at if 0 < behind <= PACE_SLACK else max(now, self._free_at)) + n / rate
        if self._free_at > now:
            time.sleep(self._free_at - now)


class BodyReader:
    """A file-like reader over a request body that never reads past its end."""

    def __init__(self, rfile: Any, length: int | None, chunked: bool, pace: Callable[[int], None] | None = None) -> None:
        self._pace = pace
        self._rfile = rfile
        self._remaining = length if length is not None else 0
        self._chunked = chunked
        self._chunk_left = 0
        self._done = not chunked and not self._remaining
        self.bytes_read = 0

    def _next_chunk(self) -> None:
        line = self._rfile.readline(65537)
        if not line:
            raise ConnectionError("client closed the connection inside a chunked body")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, up to the blank line
                trailer = self._rfile.readline(65537)
                if trailer in (b"\r\n", b"\n", b""):
                    break
            self._done = True
        self._chunk_left = size

    def _span(self, n: int) -> int:
        """How many of ``n`` bytes the next read may take without passing the body's (or chunk's) end;
        0 at the end of the body."""
        if self._done:
            return 0
        if self._chunked:
            if self._chunk_left == 0:
                self._next_chunk()
                if self._done:
                    return 0
            return min(n, self._chunk_left)
        return min(n, self._remaining)

    def _took(self, n: int) -> None:
        """Account for ``n`` bytes just read from the connection."""
        if not n:
            raise ConnectionError("client closed the connection inside the body")
        if self._chunked:
            self._chunk_left -= n
            if self._chunk_left == 0:
                self._rfile.readline(3)  # the CRLF that ends each chunk
        else:
            self._remaining -= n
            if self._remaining == 0:
                self._done = True
        self.bytes_read += n
        if self._pace is not None:
            self._pace(n)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        span = self._span(n)
        if not span:
            return b""
        data = self._rfile.read(span)
        self._took(len(data))
        return data

    def readinto(self, buf: memoryview) -> int:
        """Read up to ``len(buf)`` bytes into ``buf`` (0 at the end): big bodies go through one reused
        buffer instead of a new ``bytes`` object per read."""
        span = self._span(len(buf))
        if not span:
            return 0
        n = self._rfile.readinto(buf[:span]) or 0
        self._took(n)
        return n

    def readline(self, limit: int = 65536) -> bytes:
        # Only used by the multipart parser on small header lines; a byte at a time is fine.
        out = bytearray()
        while len(out) < limit:
            ch = self.read(1)
            if not ch:
                break
            out += ch
            if ch == b"\n":
                break
        return bytes(out)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def done(self) -> bool:
        return self._done


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any  # email.message.Message: case-insensitive .get()
    body: BodyReader
    host: str
    route: str
    params: dict[str, str]
    request_id: str
    base_url: str
    record: RequestRecord

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def json(self) -> Any:
        raw = self.body.read()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "bad_request", f"Could not parse JSON body: {exc}") from None

    def form(self) -> dict[str, str]:
        raw = self.body.read().decode("utf-8", "replace")
        return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


@dataclass
class FileSlice:
    """A streamed body that is bytes ``[start, end)`` of a file on disk: sent with ``sendfile`` (the kernel
    copies it, so the emulator's CPU, shared with the clients under test, is not spent on download bodies).
    Iterating it yields the bytes in chunks, for paths that need them (a connection cut midway)."""

    path: Path
    start: int
    end: int

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            left = self.end - self.start
            while left > 0 and (data := f.read(min(CHUNK, left))):
                left -= len(data)
                yield data


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list → JSON; bytes; or None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterable[bytes] | None = None  # streamed body; needs Content-Length in headers

    @classmethod
    def json(cls, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status=status, body=body, headers=dict(headers or {}))


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    host: str
    template: str
    regex: re.Pattern[str]
    handler: Handler


class Router:
    """Maps (method, host, path) to handlers; templates are Box's OpenAPI path templates."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, hosts: str | tuple[str, ...], template: str, handler: Handler) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        regex = re.compile("^" + pattern + "$")
        for host in (hosts,) if isinstance(hosts, str) else hosts:
            self.routes.append(Route(method, host, template, regex, handler))

    def match(self, method: str, host: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """Return (route, params, path_known); path_known tells a 405 from a 404.

        A trailing slash is ignored, as Box ignores it (rclone asks for ``/files/content/``)."""
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        known = False
        for route in self.routes:
            if route.host != host:
                continue
            m = route.regex.match(path)
            if not m:
                continue
            known = True
            if route.method == method:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}, True
        return None, {}, known


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], app: HttpApp) -> None:
        self.app = app
        self.active: set[socket.socket] = set()
        self._active_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            self.active.add(request)
            self.app.connections_accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._active_lock:
            self.active.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open keep-alive connection, as a server going down would."""
        with self._active_lock:
            sockets = list(self.active)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _DropConnection(Exception):
    """Raised to cut the connection without a (complete) response."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate sends; with Nagle's algorithm the second waits for the
    # client's delayed ACK (~40 ms a request). Latency is the emulator's to inject, not TCP's.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # The request line may carry secrets (an access_token query, a download URL's token): log the
        # method and the path without its query, the download token masked.
        path = urlsplit(self.path).path
        if path.startswith("/download/"):
            path = "/download/<token>"
        log.debug("%s %s %s -> %s", self.address_string(), self.command, path, code)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, _DropConnection):
            self.close_connection = True

    def _dispatch(self) -> None:
        if not hasattr(self, "pace_in"):  # one pair per connection (this handler lives as long as it)
            self.pace_in, self.pace_out = Pacer(self.server.app), Pacer(self.server.app)
        self.server.app.handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = do_PATCH = _dispatch


class HttpApp:
    """The server: owns the router, fault injector and request log, and runs handlers."""

    def __init__(self, router: Router, faults: FaultInjector, request_log: RequestLog) -> None:
        self.router = router
        self.faults = faults
        self.request_log = request_log
        self.latency = 0.0
        self.jitter = 0.0
        self.bandwidth = 0.0  # bytes per second per connection and direction; 0: unlimited (see Pacer)
        #: TCP connections accepted since start: tests check that clients reuse their pooled connections
        self.connections_accepted = 0
        self.rate_limiter = RateLimiter()
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.identify: Callable[[Request], None] | None = None  # fills record.user_id where possible
        # (Authorization, As-User) -> the acting user's id, whose budget a request spends; None: not limited
        self.rate_key: Callable[[str, str | None], str | None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="box-emulator", daemon=True)
        self._thread.start()
        return self._server.server_address[:2]  # type: ignore[return-value]

    def serve_forever(self, host: str, port: int, ready: Callable[[tuple[str, int]], None]) -> None:
        self._server = _Server((host, port), self)
        ready(self._server.server_address[:2])  # type: ignore[arg-type]
        self._server.serve_forever()

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, cut every connection, and wait (up to ``grace`` s) for handlers in flight,
        so none of them touches state that is being closed."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            with self._inflight_cond:
                self._inflight_cond.wait_for(lambda: self._inflight == 0, timeout=grace)
            self._server = None

    # -- request handling ----------------------------------------------------------------------
    def handle(self, h: _Handler) -> None:
        with self._inflight_cond:
            self._inflight += 1
        try:
            self._handle(h)
        finally:
            with self._inflight_cond:
                self._inflight -= 1
                self._inflight_cond.notify_all()

    def _handle(self, h: _Handler) -> None:
        started = time.monotonic()
        split = urlsplit(h.path)
        raw_path = split.path
        host, path = "api", raw_path
        for prefix, name in HOST_PREFIXES:
            if raw_path == prefix or raw_path.startswith(prefix + "/"):
                host, path = name, raw_path[len(prefix):] or "/"
                break
        else:
            host = "unknown"
        if host == "oauth2":
            path = "/oauth2" + path
        elif host == "download":
            path = "/download" + path
        elif host == "app":  # the web app's pages (cloud.app.box.com/preview/...)
            path = "/preview" + path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        te = (h.headers.get("Transfer-Encoding") or "").lower()
        length_header = h.headers.get("Content-Length")
        body = BodyReader(h.rfile, int(length_header) if length_header else None, "chunked" in te, h.pace_in)
        request_id = secrets.token_hex(8)
        route, params, known = self.router.match(h.command, host, path)
        template = route.template if route else path
        record = RequestRecord(
            method=h.command,
            path=raw_path,
            route=template,
            host=host,
            status=0,
            user_id=None,
            as_user=h.headers.get("As-User"),
            bytes_in=0,
            bytes_out=0,
            request_id=request_id,
            started=started,
            finished=started,
        )
        # Logged on arrival and completed in place, so a client that has its answer finds it counted.
        self.request_log.add(record)
        host_header = h.headers.get("Host") or "{}:{}".format(*h.server.server_address[:2])
        req = Request(
            method=h.command,
            path=path,
            query=query,
            headers=h.headers,
            body=body,
            host=host,
            route=template,
            params=params,
            request_id=request_id,
            base_url=f"http://{host_header}",
            record=record,
        )
        if h.headers.get("Expect", "").lower() == "100-continue":
            h.send_response_only(100)
            h.end_headers()
        fault = self.faults.pick(h.command, raw_path)
        if fault is None and self.rate_limiter.rate and host in ("api", "upload") and self.rate_key is not None:
            who = self.rate_key(h.headers.get("Authorization") or "", h.headers.get("As-User"))
            wait = self.rate_limiter.admit(who, started) if who else 0.0
            if wait > 0:
                fault = Fault("429", max(1, math.ceil(wait)))
        record.fault = fault.kind if fault else None
        try:
            if self.latency or self.jitter:
                time.sleep(max(0.0, self.latency + self.faults.jitter(self.jitter)))
            if fault is not None and fault.kind == "drop":
                # Cut the connection before the request is processed: read part of the body first,
                # as a connection that dies mid-upload would.
                body.read(min(CHUNK, 64 * 1024))
                raise _DropConnection()
            if fault is not None and fault.kind in ("429", "500", "502", "503", "504"):
                status = int(fault.kind)
                headers = {"Retry-After": str(fault.retry_after)} if status in (429, 503) else {}
                code = {429: "rate_limit_exceeded", 503: "unavailable"}.get(status, "internal_server_error")
                resp = self._error_response(ApiError(status, code, reason(status), headers=headers), req)
            elif fault is not None and fault.kind == "expire" and host != "oauth2":
                resp = self._error_response(ApiError(401, "unauthorized", "Unauthorized"), req)
                resp.headers["WWW-Authenticate"] = (
                    'Bearer realm="Service", error="invalid_token", error_description="The access token provided has expired"'
                )
            elif route is None:
                if known:
                    resp = self._error_response(ApiError(405, "method_not_allowed", "Method Not Allowed"), req)
                else:
                    resp = self._error_response(ApiError(404, "not_found", f"Not Found: {raw_path}"), req)
            else:
                try:
                    resp = route.handler(req)
                except ApiError as exc:
                    resp = self._error_response(exc, req)
                except OAuthError as exc:
                    resp = Response.json(exc.body(), exc.status)
                except (ConnectionError, TimeoutError):
                    raise
                except Exception:  # a bug in the emulator: answer 500 and log it loudly
                    log.exception("emulator handler failed for %s %s", h.command, raw_path)
                    resp = self._error_response(ApiError(500, "internal_server_error", "Internal Server Error"), req)
            if self.identify is not None and record.user_id is None:
                try:
                    self.identify(req)
                except Exception:  # identification is best effort, for the log only
                    pass
            # A response sent before the body was read whole: read the rest so the connection stays usable.
            if not body.done:
                try:
                    body.drain()
                except ConnectionError:
                    h.close_connection = True
            cut = fault is not None and fault.kind == "drop_after"
            self._send(h, req, resp, cut=cut)
        except _DropConnection:
            if fault is None or fault.kind != "drop_after":
                record.status = 0  # not processed; after "drop_after" the status says what was done
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        finally:
            record.bytes_in = body.bytes_read
            record.finished = time.monotonic()

    def _error_response(self, exc: ApiError, req: Request) -> Response:
        return Response.json(exc.body(req.request_id), exc.status, exc.headers)

    def _send(self, h: _Handler, req: Request, resp: Response, cut: bool) -> None:
        record = req.record
        headers = dict(resp.headers)
        payload: bytes | None = None
        if resp.stream is None:
            if resp.body is None:
                payload = b""
            elif isinstance(resp.body, (bytes, bytearray)):
                payload = bytes(resp.body)
            else:
                payload = json.dumps(resp.body).encode()
                headers.setdefault("Content-Type", "application/json")
            headers["Content-Length"] = str(len(payload))
        headers.setdefault("box-request-id", req.request_id)
        record.status = resp.status
        if cut and (payload == b"" or req.method == "HEAD"):
            # Nothing to cut in half: the work is done, the answer is lost whole (no status line).
            raise _DropConnection()
        if cut:
            headers["Connection"] = "close"
        h.send_response(resp.status, reason(resp.status) if resp.status >= 400 else None)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if req.method == "HEAD":
            return
        if cut:
            # Send part of the body, then cut the connection: the client sees a truncated response.
            if payload is not None:
                h.wfile.write(payload[: len(payload) // 2])
            elif resp.stream is not None:
                for chunk in resp.stream:
                    h.wfile.write(chunk[: len(chunk) // 2])
                    break
            h.wfile.flush()
            raise _DropConnection()
        if payload is not None:
            h.wfile.write(payload)
            record.bytes_out = len(payload)
            h.pace_out(len(payload))
        elif isinstance(resp.stream, FileSlice):
            record.bytes_out = _send_file_slice(h, resp.stream)
        else:
            assert resp.stream is not None
            sent = 0
            iterator: Iterator[bytes] = iter(resp.stream)
            try:
                for chunk in iterator:
                    h.wfile.write(chunk)
                    sent += len(chunk)
                    h.pace_out(len(chunk))
            finally:
                close = getattr(iterator, "close", None)
                if close:
                    close()
                record.bytes_out = sent


def _send_file_slice(h: Any, body: FileSlice) -> int:
    """``body`` to the client with ``socket.sendfile``, a chunk at a time so the connection's pacing
    (``--bandwidth``) applies as it does to other bodies; the bytes sent."""
    h.wfile.flush()
    sent = 0
    with open(body.path, "rb") as f:
        while sent < body.end - body.start:
            n = h.connection.sendfile(f, body.start + sent, min(CHUNK, body.end - body.start - sent))
            if not n:
                break
            sent += n
            h.pace_out(n)
    return sent
