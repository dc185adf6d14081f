"""The one place where Box API failures become Python exceptions.

Every HTTP error the transport sees goes through :func:`error_from_response`, so callers get the builtin
exception a filesystem user expects (``FileNotFoundError``, ``FileExistsError``, ``PermissionError``...)
and every message carries Box's error ``code``, its ``message`` and the ``request_id`` Box support asks
for. The extra facts are also attributes (``box_status``, ``box_code``, ``box_request_id``,
``box_context_info``) so code such as the idempotency checks can inspect a conflict without parsing text.
"""

from __future__ import annotations

import errno
from typing import Any

import requests


class BoxPreconditionError(OSError):
    """HTTP 412: an ``If-Match`` etag no longer matches (someone changed the item in the meantime)."""


class BoxAPIError(OSError):
    """Any other Box API failure (5xx after retries, 429 after retries, unexpected statuses)."""


class BoxAuthError(PermissionError):
    """Authentication failed: the app, its key or its grants were refused by Box's token endpoint."""


# Box error codes that mean "the name you gave is not acceptable" (HTTP 400).
_NAME_CODES = {"item_name_invalid", "item_name_too_long", "bad_request", "bad_digest"}


def _body(resp: requests.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def request_id_of(resp: requests.Response, body: dict[str, Any] | None = None) -> str | None:
    """Box's request id for a response: from the error body, else from the ``box-request-id`` header."""
    body = _body(resp) if body is None else body
    return body.get("request_id") or resp.headers.get("box-request-id") or resp.headers.get("BOX-REQUEST-ID")


def conflicts_of(exc: BaseException) -> list[dict[str, Any]]:
    """The conflicting items Box reported with a 409 (a list even when Box sent a single object)."""
    info = getattr(exc, "box_context_info", None) or {}
    conflicts = info.get("conflicts") if isinstance(info, dict) else None
    if conflicts is None:
        return []
    if isinstance(conflicts, dict):
        return [conflicts]
    return [c for c in conflicts if isinstance(c, dict)]


def _decorate(exc: OSError | ValueError, status: int, body: dict[str, Any], rid: str | None) -> Any:
    exc.box_status = status  # type: ignore[union-attr]
    exc.box_code = body.get("code") or body.get("error")  # type: ignore[union-attr]
    exc.box_request_id = rid  # type: ignore[union-attr]
    exc.box_context_info = body.get("context_info")  # type: ignore[union-attr]
    return exc


def error_from_response(resp: requests.Response, path: str | None = None, action: str | None = None,
                        as_user: str | None = None) -> Exception:
    """Map a failed Box response to the exception to raise (not raised here, so callers can ``raise ... from``).

    ``as_user``: the id the request impersonated; a 403 then says so, because the usual cause is an app
    without the As-User feature or without enterprise access, not the item.
    """
    body = _body(resp)
    status = resp.status_code
    code = body.get("code") or body.get("error") or "unknown"
    message = body.get("message") or body.get("error_description") or resp.reason or ""
    rid = request_id_of(resp, body)
    where = f"{path}: " if path else ""
    doing = f"{action} failed: " if action else ""
    text = f"{where}{doing}{message} (Box HTTP {status}, code {code}, request id {rid})"
    if status == 403 and code == "insufficient_scope":  # the token's own limits, whoever it acts as
        text += ("; the access token does not hold the scope this needs (a token downscoped with scopes= or an "
                 "App Token allows only what it was given; else see the app's scopes)")
    if status == 403 and as_user:
        text += (f"; the request acted as user {as_user} through the As-User header: either that user's role on "
                 "this item does not allow it (a viewer or previewer collaboration, say), or, when every request "
                 "as that user fails so, the app lacks the 'make API calls using the as-user header' feature or "
                 "enterprise access")
    exc: OSError | ValueError
    if code == "folder_not_empty":
        exc = OSError(errno.ENOTEMPTY, text, path) if path else OSError(errno.ENOTEMPTY, text)
    elif status == 404:
        exc = FileNotFoundError(errno.ENOENT, text, path) if path else FileNotFoundError(text)
    elif status == 409 and code in ("item_name_in_use", "conflict", "name_temporarily_reserved"):
        exc = FileExistsError(errno.EEXIST, text, path) if path else FileExistsError(text)
    elif status == 413 or code in ("storage_limit_exceeded", "file_size_limit_exceeded"):
        # Box answers a full account with 403; it is a space problem, not a permission one.
        exc = OSError(errno.ENOSPC if code != "file_size_limit_exceeded" else errno.EFBIG, text)
    elif status in (401, 403):
        exc = PermissionError(errno.EACCES, text, path) if path else PermissionError(text)
    elif status == 412:
        exc = BoxPreconditionError(text)
    elif status == 400 and code in _NAME_CODES:
        exc = ValueError(text)
    elif status == 400:
        exc = ValueError(text)
    else:
        exc = BoxAPIError(text)
    return _decorate(exc, status, body, rid)


def is_a_directory_error(path: str) -> IsADirectoryError:
    """The error for a file operation aimed at a folder."""
    return IsADirectoryError(errno.EISDIR, "Is a folder on Box, not a file", path)


def not_a_directory_error(path: str) -> NotADirectoryError:
    """The error for a folder operation aimed at a file."""
    return NotADirectoryError(errno.ENOTDIR, "Is a file on Box, not a folder", path)


def not_found_error(path: str) -> FileNotFoundError:
    """The error for a path that does not exist (found locally, from cached listings)."""
    return FileNotFoundError(errno.ENOENT, "No such file or folder on Box", path)


def exists_error(path: str) -> FileExistsError:
    """The error for creating something where an item already is."""
    return FileExistsError(errno.EEXIST, "Already exists on Box", path)
