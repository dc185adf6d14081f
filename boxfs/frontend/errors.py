"""Filesystem exceptions -> POSIX errno, by exception type, once for every frontend.

The filesystem below (BoxFileSystem, or any fsspec filesystem) raises Python's builtin exceptions, mapped
from Box's answers once in :mod:`boxfs.api.errors`. Each frontend speaks a protocol whose errors are
POSIX-shaped (FUSE wants an errno, SFTP a status, FTP a reply code, the CLI an exit status), so the
translation goes through one errno decided here. The errno -> FTP reply and errno -> SFTP status tables
live in each server, written once there.

Why by type and never by message text: messages carry Box's wording, paths and request ids, change
between versions and languages, and a frontend that matches on them silently maps a new message to EIO.
The only attribute read besides the class and ``errno`` is ``box_code`` (Box's machine-readable error
code), for the one refusal Box reports as a plain 400: a name that is too long.

:func:`reason_of` gives a short client-facing text per errno that never contains paths, Box ids or
exception text (a client has no business seeing another user's home prefix or a request id).
"""

from __future__ import annotations

import errno
import logging
import os

from boxfs.api.errors import BoxAPIError

__all__ = [
    "EXIT_BAD_INPUT", "EXIT_FAILED", "PendingLimitError",
    "errno_of", "error_reason", "exit_status_of", "log_failure", "oserror", "reason_of", "upload_errno",
]


class PendingLimitError(OSError):
    """Too many bytes written out of order are waiting for the gap before them (ENOSPC).

    Raised by write handles past their configured cap, so that a client streaming at random offsets
    cannot make the server hold unbounded data; the message says which limit was hit.
    """

    def __init__(self, pending: int, limit: int) -> None:
        super().__init__(
            errno.ENOSPC,
            f"too much out-of-order data: {pending} bytes would wait for earlier bytes (limit {limit})",
        )


# Builtin exception classes that fsspec filesystems raise without an errno (``FileNotFoundError(path)``).
# Order matters only where classes nest: none of these do.
_BY_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (FileNotFoundError, errno.ENOENT),
    (FileExistsError, errno.EEXIST),
    (PermissionError, errno.EACCES),
    (IsADirectoryError, errno.EISDIR),
    (NotADirectoryError, errno.ENOTDIR),
    (TimeoutError, errno.ETIMEDOUT),
    (NotImplementedError, errno.ENOTSUP),  # e.g. Box refusing append mode
    (MemoryError, errno.ENOMEM),
)

#: Box error codes of a 400 that mean the name is too long (the rest of Box's 400s are EINVAL).
_TOO_LONG_CODES = frozenset({"item_name_too_long"})

#: Short texts a client may see; no paths, ids or exception text ever go into them.
_REASONS: dict[int, str] = {
    errno.ENOENT: "No such file or directory",
    errno.EEXIST: "File exists",
    errno.EACCES: "Permission denied",
    errno.EPERM: "Operation not permitted",
    errno.EISDIR: "Is a directory",
    errno.ENOTDIR: "Not a directory",
    errno.ENOTEMPTY: "Directory not empty",
    errno.EINVAL: "Invalid name or argument",
    errno.ENAMETOOLONG: "File name too long",
    errno.ENOSPC: "No space left (storage quota or spool full)",
    errno.EFBIG: "File too large",
    errno.ENOTSUP: "Operation not supported",
    errno.EROFS: "Read-only file system",
    errno.EBADF: "Bad file handle",
    errno.ETIMEDOUT: "Timed out",
    errno.ENOMEM: "Out of memory",
    errno.EIO: "Box request failed",
}


def errno_of(exc: BaseException) -> int:
    """The errno a frontend reports for ``exc`` (EIO for anything unexpected: HTTP failures, bugs).

    * an ``OSError`` carrying a positive errno keeps it (ENOSPC for a full quota or spool, ENOTEMPTY...);
    * the builtin subclasses map by class, since fsspec filesystems often raise them without an errno;
    * a ``ValueError`` is an invalid argument: BoxFileSystem raises it for Box's 400 answers (a name Box
      refuses, a folder moved into itself) and :class:`~boxfs.names.BoxNameError` for names refused
      before any request; Box's ``item_name_too_long`` code is ENAMETOOLONG;
    * :class:`~boxfs.api.errors.BoxAPIError` (5xx/429 after retries) and everything else is EIO.
    """
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc.errno
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, ValueError):
        if getattr(exc, "box_code", None) in _TOO_LONG_CODES:
            return errno.ENAMETOOLONG
        return errno.EINVAL
    return errno.EIO


def reason_of(code: int) -> str:
    """A short client-facing reason for ``code``, safe to put in an FTP reply or SFTP status message."""
    return _REASONS.get(code) or os.strerror(code)


def error_reason(exc: BaseException) -> tuple[int, str]:
    """``(errno, client-facing reason)`` for ``exc``: what FTP/SFTP replies and CLI messages are built from."""
    code = errno_of(exc)
    return code, reason_of(code)


def oserror(code: int, path: str | None = None, detail: str | None = None) -> OSError:
    """An ``OSError`` for ``code`` (Python picks the builtin subclass: ENOENT -> FileNotFoundError...).

    ``detail`` replaces the generic reason in the message (for logs and local users, not for clients).
    """
    text = detail or reason_of(code)
    return OSError(code, text, path) if path is not None else OSError(code, text)


def log_failure(logger: logging.Logger, operation: str, path: str | None, exc: BaseException) -> int:
    """Log a failed frontend operation at the level its errno deserves; return that errno.

    EIO is an error (with the traceback when it is not a Box API failure, i.e. probably a bug), a refused
    name a warning, ENOENT (programs probe for files constantly) debug, the rest info. The full exception
    text goes to the log only, never to the client.
    """
    code = errno_of(exc)
    if code == errno.EIO:
        logger.error(
            "%s %r failed: %s: %s", operation, path, type(exc).__name__, exc,
            exc_info=None if isinstance(exc, (BoxAPIError, OSError)) else exc,
        )
    elif isinstance(exc, ValueError) and code in (errno.EINVAL, errno.ENAMETOOLONG):
        logger.warning("%s %r refused: %s", operation, path, exc)
    elif code == errno.ENOENT:
        logger.debug("%s %r: %s", operation, path, exc)
    else:
        logger.info("%s %r -> %s (%s)", operation, path, errno.errorcode.get(code, code), exc)
    return code


#: What a failed upload may report as itself to a writing program; anything else is an I/O error.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS})


def upload_errno(exc: BaseException) -> int:
    """The errno a ``write``/``fsync``/``close`` reports when the upload behind it failed.

    ``close(2)`` and ``fsync(2)`` answer EIO, ENOSPC, EDQUOT or EFBIG; programs do not expect ENOENT
    from a close (the folder vanished on the server) or EACCES (the share was revoked). Those become
    EIO, with the reason in the log.
    """
    code = errno_of(exc)
    return code if code in _WRITE_ERRNOS else errno.EIO


#: Exit status of a command-line operation that failed because of what the user typed.
EXIT_BAD_INPUT = 2
#: Exit status of any other failed operation.
EXIT_FAILED = 1
_BAD_INPUT_ERRNOS = frozenset({errno.EINVAL, errno.ENAMETOOLONG})


def exit_status_of(exc: BaseException) -> int:
    """Exit status for a command that failed with ``exc``, from the same errno table as every frontend:
    a name or argument refused (EINVAL, ENAMETOOLONG) is the user's input (2), anything else 1."""
    return EXIT_BAD_INPUT if errno_of(exc) in _BAD_INPUT_ERRNOS else EXIT_FAILED
