"""Box item-name rules and case-insensitive name comparison.

Box refuses some names server-side (``item_name_invalid``, ``item_name_too_long``); we check the same rules
locally so that a bad name fails before any request is sent (a request is what Box rate-limits, and a
refused upload may already have spooled gigabytes). Box compares names case-insensitively, so every
lookup by name in this package goes through :func:`name_key`.
"""

from __future__ import annotations

MAX_NAME_LENGTH = 255


class BoxNameError(ValueError):
    """A name Box would refuse; the message names the rule that was broken."""


def check_name(name: str) -> str:
    """Return ``name`` unchanged if Box accepts it as a file or folder name, else raise BoxNameError."""
    if not isinstance(name, str):
        raise BoxNameError(f"Box item names must be str, not {type(name).__name__}")
    if name == "":
        raise BoxNameError("Box item names must not be empty")
    if name in (".", ".."):
        raise BoxNameError(f"Box item names must not be {name!r}")
    if "/" in name or "\\" in name:
        raise BoxNameError(f"Box item names must not contain '/' or '\\': {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise BoxNameError(
            f"Box item names must be at most {MAX_NAME_LENGTH} characters; {name[:40]!r}... has {len(name)}"
        )
    if name != name.strip(" "):
        raise BoxNameError(f"Box item names must not begin or end with a space: {name!r}")
    if any(ord(ch) < 32 for ch in name):
        raise BoxNameError(f"Box item names must not contain control characters: {name!r}")
    return name


def check_path_names(path: str) -> str:
    """Check every component of a slash-separated relative path (already stripped of the protocol)."""
    for part in path.split("/"):
        check_name(part)
    return path


def name_key(name: str) -> str:
    """The key under which Box considers two names equal (case-insensitive, Unicode aware)."""
    return name.casefold()


def same_name(a: str, b: str) -> bool:
    """True if Box treats ``a`` and ``b`` as the same name."""
    return name_key(a) == name_key(b)
