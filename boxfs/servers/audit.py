"""The servers' audit trail: one JSON line per action a login made, whichever protocol it used.

An administrator asks "who deleted this, from where, and did Box take it?". Python logging to
stderr answers that only in prose; this log answers it as data::

    {"time": "2026-12-01T22:50:01.123Z", "protocol": "sftp", "login": "alice", "box_user": "alice@example.com",
     "remote": "10.0.0.7:51234", "action": "delete", "path": "/reports/q3.pdf", "bytes": null,
     "result": "ok", "box_request_id": null}

``result`` is ``ok`` or the errno's short reason (``Permission denied``, ``No such file or directory``);
``box_request_id`` is Box's id of the failed request when Box refused it (what Box support asks for).
Paths are the client's virtual paths (never the home prefix in Box). Never a secret: no password,
token or key ever reaches a record (a record is built only from the fields above).

The target is a file (appended, created 0600, one ``write`` per line so several processes may share
it) or ``-`` for stdout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

from boxfs.frontend import errno_of, reason_of

logger = logging.getLogger(__name__)

__all__ = ["Actor", "AuditLog", "box_request_id"]


def _chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, outermost first.

    Each protocol turns the filesystem's exception into its own (an FTP reply, an SFTP status, a
    DAVError) and raises that from or during the original: the original is the last of the chain.
    """
    chain: list[BaseException] = []
    while exc is not None and len(chain) < 8:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def box_request_id(exc: BaseException | None) -> str | None:
    """Box's request id carried by ``exc`` or the exceptions it was raised from, if any."""
    for item in _chain(exc):
        rid = getattr(item, "box_request_id", None)
        if rid:
            return str(rid)
    return None


def result_of(exc: BaseException | None) -> str:
    """``ok``, or the client-facing reason of the errno the original exception maps to."""
    if exc is None:
        return "ok"
    return reason_of(errno_of(_chain(exc)[-1]))


@dataclass(frozen=True)
class Actor:
    """Who acts: the protocol, the login, the Box user it acts as, and the client's address."""

    protocol: str
    login: str
    box_user: str
    remote: str


class AuditLog:
    """JSON lines to a file or stdout; ``AuditLog(None)`` writes nothing (auditing off)."""

    def __init__(self, target: str | os.PathLike[str] | None):
        self.target = None if target is None else os.fspath(target)
        self._lock = threading.Lock()
        self._stream: IO[str] | None = None
        if self.target == "-":
            self._stream = sys.stdout
        elif self.target is not None:
            fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._stream = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def __repr__(self) -> str:
        return f"AuditLog({self.target!r})"

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def record(self, actor: Actor, action: str, path: str, *, nbytes: int | None = None,
               error: BaseException | None = None) -> None:
        """Write one line for one action (``error``: the exception it failed with)."""
        if self._stream is None:
            return
        entry: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "protocol": actor.protocol,
            "login": actor.login,
            "box_user": actor.box_user,
            "remote": actor.remote,
            "action": action,
            "path": path,
            "bytes": nbytes,
            "result": result_of(error),
            "box_request_id": box_request_id(error),
        }
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError) as exc:  # a full disk must not stop the transfer it records
                logger.error("audit log %s: writing failed: %s", self.target, exc)

    @contextmanager
    def action(self, actor: Actor, action: str, path: str) -> Iterator[dict[str, Any]]:
        """Record the enclosed action with its result; the yielded dict may set ``bytes``."""
        facts: dict[str, Any] = {"bytes": None}
        try:
            yield facts
        except BaseException as exc:
            self.record(actor, action, path, nbytes=facts["bytes"], error=exc)
            raise
        self.record(actor, action, path, nbytes=facts["bytes"])

    def close(self) -> None:
        with self._lock:
            if self._stream is not None and self._stream is not sys.stdout:
                self._stream.close()
            self._stream = None
