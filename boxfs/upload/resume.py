"""Resume state: what a chunked upload writes down so that running it again continues where it stopped.

One ``<key>.json`` per upload in the acting user's spool folder (:mod:`boxfs.upload.spoolfolder`): session
id, the upload host it was made on, expiry, size, part size, the content's SHA-1 (or :data:`FOLDED`), the
destination, the parts done and the name of the writer's spool file. ``<key>`` is derived from the
destination and the size (:func:`state_key`), so the same upload run again finds it.

What is read back is untrusted: it is size-capped, must be a regular file of ours, and the session it
names is only ever contacted at the configured upload host, at a URL built here from the session id
(:func:`session_url`), never at a URL read from disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from typing import TYPE_CHECKING, Any

from boxfs.upload.spoolfolder import SpoolFolder, is_spool_name

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

logger = logging.getLogger("boxfs")

STATE_SUFFIX = ".json"
#: The resume-state format; a state of another version is not resumed (it is cleaned by age).
STATE_VERSION = 2
#: A state file larger than this is not ours (a real one is a few KiB even for thousands of parts).
MAX_STATE_BYTES = 4 << 20
#: A resume state is found by destination and size (the whole SHA-1 may not be known before the parts are
#: read); this stands for the SHA-1 in its key, and in a state whose upload folds it from the parts.
FOLDED = "folded-from-parts"

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def state_key(*, user_id: str, parent_id: str, name: str, file_id: str | None, size: int, sha1: str) -> str:
    """The name of an upload's state file: same destination and same content give the same key."""
    ident = f"{user_id}|{parent_id}|{name.casefold()}|{file_id or ''}|{size}|{sha1}"
    return hashlib.sha1(ident.encode()).hexdigest()[:32]


def write_state(folder: SpoolFolder, key: str, state: dict[str, Any]) -> str:
    """Atomically replace ``<key>.json`` (written 0600 next to it under a new name, then renamed)."""
    tmp = f"{key}.{secrets.token_hex(4)}.tmp"
    fd = folder.create(tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        folder.replace(tmp, f"{key}{STATE_SUFFIX}")
    except BaseException:
        folder.unlink(tmp)
        raise
    return folder.show(f"{key}{STATE_SUFFIX}")


def read_state(folder: SpoolFolder, key: str) -> dict[str, Any] | None:
    """The state ``<key>.json`` as a dict, or None when missing or not a state file of ours.

    Untrusted: a caller checks every field it uses (:func:`session_of`, :func:`spool_name_of`).
    """
    name = f"{key}{STATE_SUFFIX}"
    try:
        fd = folder.open_file(name)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
        data = json.loads(raw)
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
        logger.warning("ignoring unreadable upload state %s: %s", folder.show(name), exc)
        return None
    return data if isinstance(data, dict) else None


def remove_state(folder: SpoolFolder, key: str) -> None:
    """Remove ``<key>.json`` and any ``<key>.*.tmp`` a process killed inside :func:`write_state` left."""
    folder.unlink(f"{key}{STATE_SUFFIX}")
    for name in folder.names():
        if name.startswith(f"{key}.") and name.endswith(".tmp"):
            folder.unlink(name)


def session_url(fs: BoxFileSystem, session_id: str, tail: str = "") -> str:
    """The URL of an upload session (``tail``: ``/commit``, ``/parts``), at the configured upload host.

    Built here and only here from the session id, so a token is never sent to a URL read from a file.
    """
    if not _SESSION_ID.fullmatch(session_id):
        raise ValueError(f"not an upload session id: {session_id[:40]!r}")
    return fs.transport.upload_api(f"/files/upload_sessions/{session_id}{tail}")


def session_of(fs: BoxFileSystem, state: dict[str, Any]) -> str | None:
    """The session id a state names, when it may be contacted: the state's format is current, it was
    made against the upload host configured now, and the id has the form of one. Else None (the state
    is not resumed, and its session is never contacted)."""
    sid = state.get("session_id")
    if state.get("version") != STATE_VERSION or not isinstance(sid, str) or not _SESSION_ID.fullmatch(sid):
        return None
    if state.get("upload_url") != fs.transport.endpoints.upload_url:
        return None
    return sid


def spool_name_of(state: dict[str, Any]) -> str | None:
    """The spool file a state keeps its content in, when it has the form of one of ours."""
    name = state.get("spool")
    return name if is_spool_name(name) else None

