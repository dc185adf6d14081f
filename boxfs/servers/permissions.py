"""What a login may do, as a set of actions, checked in this one place for FTP, SFTP and WebDAV.

``read_only`` alone could not describe an upload-only drop box (a supplier sends files and may
not see what others sent), a no-delete share or a no-rename one. The users file gives a login a set
of actions or a preset::

    permissions = "upload_only"                       # a preset
    permissions = ["list", "download", "upload"]      # a set: no overwrite, delete, rename, mkdir
    permissions = ["read_only", "upload"]             # presets and actions combine

Actions: ``list`` (folder listings), ``download`` (reading a file), ``upload`` (a new file),
``overwrite`` (replacing an existing file), ``delete`` (a file or an empty folder), ``rename``
(a move or rename) and ``mkdir``. Looking up one name (stat, PROPFIND depth 0, CWD) is always
allowed: clients check that their target folder exists before uploading, and a lookup reveals
no more than the answer of the upload itself would.

Each server calls :func:`require` before the operation (never after a request was made), and maps
the :class:`ActionDenied` it raises like any other EACCES.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["ACTIONS", "PRESETS", "WRITE_ACTIONS", "ActionDenied", "allows", "parse_permissions", "require"]

#: Every action a login can be allowed.
ACTIONS: frozenset[str] = frozenset({"list", "download", "upload", "overwrite", "delete", "rename", "mkdir"})
#: The actions that change something in Box.
WRITE_ACTIONS: frozenset[str] = frozenset({"upload", "overwrite", "delete", "rename", "mkdir"})
#: Named sets.
PRESETS: dict[str, frozenset[str]] = {
    "full": ACTIONS,
    "read_only": frozenset({"list", "download"}),
    "upload_only": frozenset({"upload"}),
}


class ActionDenied(PermissionError):
    """The login's permissions do not include the action (EACCES); the message names the action."""

    def __init__(self, login: str, action: str, path: str):
        super().__init__(errno.EACCES, f"login {login!r} may not {action}", path)
        self.action = action


def parse_permissions(value: Any, where: str = "permissions") -> frozenset[str]:
    """A preset name, or a list of actions and presets, as the set of actions; anything else refused."""
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{where} must be a preset {sorted(PRESETS)} or a non-empty list of actions")
    allowed: set[str] = set()
    for item in items:
        if item in PRESETS:
            allowed |= PRESETS[item]
        elif item in ACTIONS:
            allowed.add(item)
        else:
            raise ValueError(
                f"{where}: unknown action or preset {item!r}; actions: {sorted(ACTIONS)}, presets: {sorted(PRESETS)}"
            )
    return frozenset(allowed)


def allows(user: Any, action: str) -> bool:
    """Whether ``user`` (a :class:`~boxfs.servers.users.User`) may do ``action``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return action in user.permissions


def require(user: Any, action: str, path: str, protocol: str) -> None:
    """Raise :class:`ActionDenied` (logged) unless ``user`` may do ``action`` on ``path``."""
    if allows(user, action):
        return
    logger.info("%s %s: %s %r refused (not in the login's permissions)", protocol, user.login, action, path)
    raise ActionDenied(user.login, action, path)
