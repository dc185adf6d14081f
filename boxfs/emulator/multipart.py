"""A streaming multipart/form-data reader for Box's upload requests.

Box's upload body is an ``attributes`` JSON part followed by the ``file`` part; the file part
can be gigabytes, so it is written to disk as it arrives, never buffered whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class MultipartError(ValueError):
    pass


@dataclass
class PartHeaders:
    name: str
    filename: str | None
    content_type: str | None


_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))')


def boundary_of(content_type: str | None) -> str:
    """The boundary parameter of a ``multipart/form-data`` Content-Type (quoted or not).

    A regular expression rather than ``email.message.Message``: building a message object per upload
    was a fifth of what parsing a small upload cost the emulator."""
    if not content_type:
        raise MultipartError("Content-Type is missing")
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        raise MultipartError("Content-Type must be multipart/form-data")
    boundary = ""
    for m in _PARAM.finditer(";" + params):  # each value whole, so a quoted value hides what it holds
        if m.group(1).lower() == "boundary":
            boundary = re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3).strip()
            break
    if not boundary:
        raise MultipartError("multipart boundary is missing")
    return boundary


_DISPOSITION = re.compile(r'(\w+)\*?=(?:"((?:[^"\\]|\\.)*)"|([^;]*))')


class MultipartReader:
    """Iterates over the parts of a multipart body read from a stream."""

    def __init__(self, stream: Readable, boundary: str, chunk: int = 1 << 20) -> None:
        self._stream = stream
        self._delim = b"\r\n--" + boundary.encode()
        self._chunk = chunk
        self._buf = b""
        self._eof = False
        self._finished = False
        # The body starts with "--boundary"; treat it as if preceded by CRLF.
        self._buf = b"\r\n"

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._stream.read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _skip_to_first_boundary(self) -> None:
        while True:
            idx = self._buf.find(self._delim)
            if idx >= 0:
                self._buf = self._buf[idx + len(self._delim):]
                return
            if not self._fill():
                raise MultipartError("multipart body has no boundary")

    def _after_boundary(self) -> bool:
        """After a delimiter: True when another part follows, False at the closing ``--``."""
        while len(self._buf) < 2:
            if not self._fill():
                raise MultipartError("multipart body ends inside a boundary")
        if self._buf.startswith(b"--"):
            self._finished = True
            return False
        # Skip transport padding up to CRLF.
        while b"\r\n" not in self._buf:
            if not self._fill():
                raise MultipartError("multipart body ends inside a boundary")
        self._buf = self._buf[self._buf.index(b"\r\n") + 2:]
        return True

    def _read_headers(self) -> PartHeaders:
        while b"\r\n\r\n" not in self._buf:
            if len(self._buf) > 65536 or not self._fill():
                raise MultipartError("multipart part headers are malformed")
        raw, self._buf = self._buf.split(b"\r\n\r\n", 1)
        headers: dict[str, str] = {}
        for line in raw.decode("utf-8", "replace").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3).strip())
                  for m in _DISPOSITION.finditer(disp)}
        if "name" not in params:
            raise MultipartError("multipart part has no name")
        return PartHeaders(params["name"], params.get("filename"), headers.get("content-type"))

    def _body_chunks(self) -> Iterator[bytes]:
        """The current part's bytes, up to (not including) the next delimiter."""
        keep = len(self._delim)
        while True:
            idx = self._buf.find(self._delim)
            if idx >= 0:
                if idx:
                    yield self._buf[:idx]
                self._buf = self._buf[idx + len(self._delim):]
                return
            if len(self._buf) > keep:
                out, self._buf = self._buf[:-keep], self._buf[-keep:]
                yield out
            if not self._fill():
                raise MultipartError("multipart body ends inside a part")

    def parts(self) -> Iterator[tuple[PartHeaders, Callable[[], Iterator[bytes]]]]:
        """Yield (headers, body-iterator factory); each body must be consumed before the next part."""
        self._skip_to_first_boundary()
        while self._after_boundary():
            headers = self._read_headers()
            consumed = False

            def body() -> Iterator[bytes]:
                nonlocal consumed
                consumed = True
                yield from self._body_chunks()

            yield headers, body
            if not consumed:
                for _ in self._body_chunks():
                    pass
