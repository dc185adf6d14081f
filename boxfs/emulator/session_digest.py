"""The whole-file SHA-1 of a chunked upload session, folded in while its parts arrive.

Why: a commit must check the whole file's ``Digest``. Hashing the assembled file at commit is a
serial re-read of every byte after the last part, a fixed cost on every big upload, paid on the
same CPUs as the client under test. Parts arrive in any order and in parallel, so the digest is
folded in file order instead: each recorded part may extend the contiguous prefix hashed so far,
and whichever request extends it also hashes the recorded parts that follow (read back from the
session's data file, which the page cache still holds). By the commit the digest is usually whole;
the commit folds whatever is left.

The state lives in memory only: after a restart it is rebuilt from the recorded parts on first
use (the data file holds their bytes), so nothing needs persisting and nothing can go stale.

A recorded part's bytes must never change, or the digest would vouch for bytes that are no longer
there: :meth:`SessionDigest.writing` lets one request at a time write a given part's range, and
the part routes check under it that the range is not recorded yet.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger("boxfs.emulator")

READ_CHUNK = 1 << 20


class Digest(Protocol):
    def update(self, data: memoryview, /) -> None: ...


def hash_range(path: str, start: int, size: int, digest: Digest) -> None:
    """Feed bytes ``[start, start + size)`` of ``path`` to ``digest`` through one reused buffer.

    (Through a file object's ``readinto``, not ``os.preadv``: the client's tests count the client's
    reads by wrapping ``os.preadv``, and the emulator shares their process.)"""
    buf = memoryview(bytearray(min(READ_CHUNK, size)))
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        done = 0
        while done < size:
            n = f.readinto(buf[: min(len(buf), size - done)])
            if not n:
                raise OSError(f"{path} ends at {start + done}, inside a recorded part")
            digest.update(buf[:n])
            done += n


class SessionDigest:
    """One session's running whole-file SHA-1 and its per-part write locks."""

    def __init__(self, path: str, parts: Mapping[int, int]) -> None:
        self.path = path
        self._sha1 = hashlib.sha1()
        self._upto = 0  # bytes [0, _upto) are in _sha1
        self._parts = dict(parts)  # offset -> size of every recorded part
        self._fold_lock = threading.Lock()
        self._pending = False  # a part was recorded since the folder last looked
        self._locks_lock = threading.Lock()
        self._writers: dict[int, threading.Lock] = {}
        #: held around each write into the data file: the kernel lets one write into a file at a time
        #: anyway, and requests waiting there spin on the CPU (a tenth of a 1 GB upload's samples)
        self.file_lock = threading.Lock()

    @property
    def folded(self) -> int:
        """How many bytes from the start of the file the digest holds."""
        return self._upto

    @contextmanager
    def writing(self, offset: int) -> Iterator[None]:
        """Hold the part at ``offset``: a retried part waits for the first attempt, then finds it recorded."""
        with self._locks_lock:
            lock = self._writers.setdefault(offset, threading.Lock())
        with lock:
            yield

    def recorded(self, offset: int, size: int) -> None:
        """A part is recorded: fold what it makes contiguous, unless another request is folding (that
        one sees the part before it lets go). Never raises: the part is recorded whatever happens here."""
        self._parts[offset] = size
        self._pending = True
        while self._pending:
            if not self._fold_lock.acquire(blocking=False):
                return
            try:
                self._pending = False
                self._advance()
            except OSError as exc:  # the session went away (aborted, committed) under us
                log.debug("folding session data %s stopped: %s", self.path, exc)
                return
            finally:
                self._fold_lock.release()

    def _advance(self) -> None:
        """Hash the recorded parts that continue the prefix; a part goes in whole or not at all."""
        while (size := self._parts.get(self._upto)) is not None:
            extended = self._sha1.copy()
            hash_range(self.path, self._upto, size, extended)
            self._sha1, self._upto = extended, self._upto + size

    def hexdigest(self, file_size: int, parts: Mapping[int, int]) -> str:
        """The whole file's SHA-1 at commit, ``parts`` being every recorded part; folds what is left."""
        with self._fold_lock:
            self._parts.update(parts)
            self._advance()
            if self._upto != file_size:
                raise RuntimeError(f"the recorded parts cover {self._upto} of {file_size} bytes")
            return self._sha1.hexdigest()


class SessionDigests:
    """The running digests of the sessions in use, made on first use from the parts recorded so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, SessionDigest] = {}

    def get(self, session_id: str, path: str, recorded: Callable[[], Mapping[int, int]]) -> SessionDigest:
        """The session's digest; ``recorded`` (offset -> size of its parts) is asked only to make one."""
        with self._lock:
            digest = self._by_id.get(session_id)
            if digest is None:
                digest = self._by_id[session_id] = SessionDigest(path, recorded())
            return digest

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)
