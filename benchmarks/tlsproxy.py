"""A TLS front for the emulator: a throw-away CA and an HTTP CONNECT proxy for Box's host names.

Some Box clients (rclone's Box backend, for one) have Box's URLs compiled in: ``https://api.box.com``,
``https://upload.box.com``, ``https://account.box.com``. They can still be run against the emulator
without touching DNS: they honour ``HTTPS_PROXY`` and accept an extra CA (rclone: ``--ca-cert``).
Benchmark and test support only (the rclone benchmark, tests/test_rclone.py): it is not in the wheel.

:class:`ConnectProxy` makes a throw-away CA with ``trustme`` (only its certificate is written, as
``ca.pem``; no key touches the disk), accepts ``CONNECT host:443`` for those names, terminates TLS with
a certificate that CA issued and forwards the decrypted HTTP/1.1 requests to the emulator. Only the
``Host`` header is rewritten (to the emulator's address, so the download URLs it hands out point back
at itself) and ``account.box.com``'s ``/api/oauth2/...`` becomes ``/oauth2/...`` (the emulator's
layout). A ``CONNECT`` to any other host is refused with 403: nothing leaves the machine.

Requests and responses are framed (``Content-Length``, chunked coding) so that keep-alive connections
carrying several exchanges are rewritten request by request; bodies are relayed byte for byte.

Usage::

    with BoxEmulator() as emu, ConnectProxy(emu.url, workdir) as proxy:
        env = {"HTTPS_PROXY": proxy.url}          # and --ca-cert proxy.ca_path for rclone
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme

log = logging.getLogger("benchmarks.tlsproxy")

BOX_HOSTS = ("api.box.com", "upload.box.com", "account.box.com", "dl.boxcloud.com")
MAX_HEAD = 64 * 1024
BUF = 256 * 1024


class _Conn:
    """A buffered reader over a socket (plain or TLS) that hands out heads, lines and exact byte counts."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(BUF)
        if not data:
            return False
        self.buf += data
        return True

    def head(self) -> bytes | None:
        """Bytes up to and including the blank line ending a message head; None at a clean EOF."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise ConnectionError("request head too large")
            if not self._fill():
                if self.buf:
                    raise ConnectionError("connection closed inside a request head")
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head + b"\r\n\r\n"

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("connection closed inside a chunked body")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def copy(self, n: int, out: socket.socket) -> None:
        """Send exactly ``n`` body bytes to ``out``."""
        while n > 0:
            if not self.buf and not self._fill():
                raise ConnectionError("connection closed inside a request body")
            part, self.buf = self.buf[:n], self.buf[n:]
            out.sendall(part)
            n -= len(part)

    def copy_to_eof(self, out: socket.socket) -> None:
        while self.buf or self._fill():
            out.sendall(self.buf)
            self.buf = b""


def _rewrite_head(head: bytes, target_host: str, sni_host: str) -> tuple[bytes, int | None, bool, str]:
    """The head with Host (and account.box.com's path) rewritten; plus body length, chunked flag, method."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    if target.startswith(("http://", "https://")):  # absolute form
        parts = urlsplit(target)
        sni_host = parts.hostname or sni_host
        target = parts.path + (f"?{parts.query}" if parts.query else "")
    if sni_host == "account.box.com" and target.startswith("/api/oauth2/"):
        target = target[len("/api"):]
    out = [f"{method} {target} {version}"]
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key in ("host", "expect"):
            continue
        if key == "content-length":
            length = int(value.strip())
        elif key == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        out.append(line)
    out.insert(1, f"Host: {target_host}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1"), length, chunked, method.upper()


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        client = _Conn(self.request)
        try:
            head = client.head()
            if head is None:
                return
            first = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = (first.split(" ", 2) + ["", ""])[:3]
            if method.upper() != "CONNECT":
                self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host = target.rsplit(":", 1)[0].strip("[]").lower()
            if host not in self.server.hosts:
                log.warning("refusing CONNECT to %s (not a Box host)", target)
                self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            tls = self.server.context.wrap_socket(self.request, server_side=True)
            self._relay(_Conn(tls), host)
        except (OSError, ConnectionError, ssl.SSLError, ValueError) as exc:
            log.debug("proxy connection ended: %s", exc)

    def _relay(self, client: _Conn, host: str) -> None:
        """Forward one request, then relay its whole response, until either side closes.

        Strictly one exchange at a time (HTTP/1.1 without pipelining), so the TLS socket is only ever
        used from this thread. ``Expect: 100-continue`` is dropped from requests: the body is sent at
        once, which the emulator accepts as Box does.
        """
        upstream = socket.create_connection(self.server.target)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = _Conn(upstream)
        try:
            while True:
                head = client.head()
                if head is None:
                    return
                new_head, length, chunked, method = _rewrite_head(head, self.server.target_host, host)
                upstream.sendall(new_head)
                if chunked:
                    _copy_chunked(client, upstream)
                elif length:
                    client.copy(length, upstream)
                if not self._response(up, client.sock, method):
                    return
        finally:
            upstream.close()

    @staticmethod
    def _response(up: _Conn, out: socket.socket, method: str) -> bool:
        """Relay one response (skipping past 1xx); False when the connection must close after it."""
        while True:
            head = up.head()
            if head is None:
                return False
            out.sendall(head)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            if 100 <= status < 200:
                continue
            break
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        keep = headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304):
            return keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            _copy_chunked(up, out)
        elif "content-length" in headers:
            up.copy(int(headers["content-length"]), out)
        else:  # delimited by close
            up.copy_to_eof(out)
            return False
        return keep


def _copy_chunked(src: _Conn, out: socket.socket) -> None:
    """Copy one chunked-coded body (chunks, last chunk, trailers) unchanged."""
    while True:
        line = src.line()
        out.sendall(line)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:
                trailer = src.line()
                out.sendall(trailer)
                if trailer == b"\r\n":
                    return
        src.copy(size + 2, out)  # the chunk and its CRLF


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: ConnectProxy) -> None:
        self.hosts = set(proxy.hosts)
        self.target = proxy.target
        self.target_host = f"{proxy.target[0]}:{proxy.target[1]}"
        self.context = proxy.context
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 routing Box's host names to the emulator over TLS."""

    def __init__(self, emulator_url: str, workdir: str | Path, hosts: tuple[str, ...] = BOX_HOSTS) -> None:
        parts = urlsplit(emulator_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.hosts = tuple(h.lower() for h in hosts)
        ca = trustme.CA(organization_name="boxfs emulator test CA")
        self.ca_path = Path(workdir) / "ca.pem"
        self.ca_path.parent.mkdir(parents=True, exist_ok=True)
        ca.cert_pem.write_to_path(str(self.ca_path))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*self.hosts, "127.0.0.1").configure_cert(self.context)
        self._server: _ProxyServer | None = None

    def start(self) -> ConnectProxy:
        self._server = _ProxyServer(self)
        threading.Thread(target=self._server.serve_forever, name="box-tls-proxy", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
