"""Why a host could not be reached, in words a person can act on.

requests reports an unreachable server as ``ConnectionError`` wrapping urllib3's ``MaxRetryError``
wrapping a ``NewConnectionError`` wrapping the socket error: the class name alone ("ConnectionError")
says nothing about which host, or whether the name did not resolve, nothing listened, or a firewall
swallowed the packets. This module digs the cause out of that chain and says what to check, so that the
transport (API calls) and the token provider (token requests) word the same failure the same way.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests

#: Hosts that mean "a server on this machine": a refusal there is almost always a server not started.
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (``__cause__``, ``__context__``, urllib3's ``reason``, args)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for inner in (e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())):
            if isinstance(inner, BaseException):
                todo.append(inner)


def host_of(url: str) -> str:
    """``host:port`` of a URL, the port only when the URL names one (``api.box.com``, ``127.0.0.1:8090``)."""
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


def cause_of(exc: BaseException, *, connect_timeout: float | None = None,
             read_timeout: float | None = None) -> tuple[str, str]:
    """(what happened, what to check) for a failed connection, from the innermost cause that says so."""
    chain = list(_chain(exc))
    names = {type(e).__name__ for e in chain}
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names:
        return ("the host name does not resolve (DNS lookup failed)",
                "the spelling of the URL, this machine's DNS and network connection")
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return ("connection refused: nothing is listening on that port",
                "that the server is running and the URL's port is right")
    if any(isinstance(e, ssl.SSLError) for e in chain) or any(isinstance(e, requests.exceptions.SSLError)
                                                             for e in chain):
        return ("the TLS handshake failed (certificate or protocol)",
                "the server's certificate and REQUESTS_CA_BUNDLE / SSL_CERT_FILE if a proxy re-signs TLS")
    if any(isinstance(e, requests.exceptions.ProxyError) for e in chain):
        return ("the HTTP proxy refused or failed the connection", "HTTPS_PROXY / HTTP_PROXY / NO_PROXY")
    if any(isinstance(e, requests.exceptions.ConnectTimeout) for e in chain):
        within = f" within {connect_timeout:g} s" if connect_timeout else ""
        return (f"no answer to the connection attempt{within} (a firewall or an unreachable network)",
                "the network path to the host, a firewall or a required proxy (HTTPS_PROXY); --timeout")
    if any(isinstance(e, requests.exceptions.ReadTimeout) for e in chain):
        within = f" within {read_timeout:g} s" if read_timeout else ""
        return (f"the server accepted the connection but sent no answer{within}",
                "the server's health; a larger --timeout for slow operations")
    if any(isinstance(e, (ConnectionResetError, BrokenPipeError)) for e in chain) or "RemoteDisconnected" in names:
        return ("the connection was cut by the other end", "the server and any proxy between here and it")
    return (f"the connection failed ({type(exc).__name__})", "the network connection and the URL")


def unreachable(url: str, exc: BaseException, *, attempts: int, what: str = "", configured: bool = True,
                connect_timeout: float | None = None, read_timeout: float | None = None) -> str:
    """One sentence naming the host, the cause and the fix, e.g. for a refused token request::

        cannot reach 127.0.0.1:9 (token request, 8 attempts): connection refused: nothing is
        listening on that port [ConnectionError]; check that the server is running and the URL's port is right (for the
        local emulator: boxfs emulator); the URL http://127.0.0.1:9 comes from base_urls=, --base-url or
        BOXFS_BASE_URL

    ``configured``: the URL is one of the configured API roots (not, say, a download host Box
    redirected to), so the message says where it was set.
    """
    host = host_of(url)
    cause, check = cause_of(exc, connect_timeout=connect_timeout, read_timeout=read_timeout)
    local = (urlsplit(url).hostname or "") in _LOCAL_HOSTS
    if local and "refused" in cause:
        check += " (for the local emulator: boxfs emulator)"
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}"
    doing = f"{what}, " if what else ""
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    where = f"; the URL {root} comes from base_urls=, --base-url or BOXFS_BASE_URL" if configured else ""
    kind = type(exc).__name__
    cause = cause if kind in cause else f"{cause} [{kind}]"
    return f"cannot reach {host} ({doing}{tries}): {cause}; check {check}{where}"
