"""Box item-name rules and case-insensitive name comparison.

Box refuses some names server-side (``item_name_invalid``, ``item_name_too_long``); we check the same rules
locally so that a bad name fails before any request is sent (a request is what Box rate-limits, and a
refused upload may already have spooled gigabytes). Box compares names case-insensitively, so every
lookup by name in this package goes through :func:`name_key`.

The rules, from Box's documentation (developer.box.com "File limitations", the folder create/rename/copy
descriptions of its OpenAPI spec and the 400 ``item_name_invalid`` error) and what real clients found:

* at most 255 characters, not empty;
* no ``/`` and no ``\\``;
* not ``.`` or ``..``;
* no non-printable ASCII character: the controls U+0000-U+001F and DEL (U+007F);
* no trailing space. A *leading* space is accepted by Box (rclone's Box backend found so by testing,
  though one error description lists it), so it is accepted here too;
* valid Unicode: a lone surrogate (what Python makes of bytes that are not UTF-8) cannot be sent as
  UTF-8 JSON at all.

A broken rule raises :class:`BoxNameError`, a :class:`ValueError`: frontends map exactly this type to
their "invalid argument" answer (``EINVAL`` in the mount, ``553`` in FTP).

Wildcards live here too, the one definition every layer shares (the filesystem, the frontends, sync and
the command line): ``* ? [`` make a pattern (:data:`GLOB_CHARS`), a name is a pattern only when no item
has exactly that name (:func:`is_pattern`: a name a program gives is a literal name), and a pattern
matches case-insensitively because Box compares names that way (:func:`pattern_regex`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fsspec.utils import glob_translate

__all__ = ["GLOB_CHARS", "MAX_NAME_LENGTH", "BoxNameError", "check_name", "check_path_names", "has_magic",
           "is_pattern", "name_key", "pattern_regex", "same_name"]

#: Characters that make a path a wildcard pattern (fsspec's and the shell's).
GLOB_CHARS = frozenset("*?[")

MAX_NAME_LENGTH = 255

#: ASCII's non-printable characters: C0 controls and DEL
_NON_PRINTABLE = frozenset(chr(c) for c in (*range(0x20), 0x7F))


class BoxNameError(ValueError):
    """A name Box would refuse; the message names the rule that was broken and quotes the name."""


def _describe(ch: str) -> str:
    return "DEL (0x7f)" if ch == "\x7f" else f"control character 0x{ord(ch):02x}"


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
    if name.endswith(" "):
        raise BoxNameError(f"Box item names must not end with a space: {name!r}")
    bad = next((ch for ch in name if ch in _NON_PRINTABLE), None)
    if bad is not None:
        raise BoxNameError(
            f"Box item names must not contain control characters (non-printable ASCII, here {_describe(bad)}): "
            f"{name!r}"
        )
    if any("\ud800" <= ch <= "\udfff" for ch in name):
        raise BoxNameError(
            f"Box item names must be valid Unicode (this one holds bytes that are not UTF-8): {name!r}"
        )
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


def has_magic(text: str) -> bool:
    """Whether ``text`` holds a wildcard character (it may still be a literal name: :func:`is_pattern`)."""
    return any(c in GLOB_CHARS for c in text)


def is_pattern(path: str, exists: Callable[[str], bool]) -> bool:
    """Whether ``path`` is a pattern: it holds ``* ? [`` and no item has exactly that path (``exists``
    is asked only then). ``rm("t/[a]*?")`` deletes the file called ``[a]*?``, never ``t/ab``."""
    return has_magic(path) and not exists(path)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A pattern's regular expression: shell-style ``* ? [..]``, ``**`` across folders, matched
    case-insensitively as Box compares names (``re.error`` for a malformed pattern)."""
    return re.compile(glob_translate(pattern.strip("/")), re.IGNORECASE | re.DOTALL)
