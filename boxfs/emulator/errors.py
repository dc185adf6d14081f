"""Errors the emulator answers with, in Box's two wire shapes.

API routes answer Box's JSON error object (``type: error``, ``status``, ``code``, ``message``,
``request_id``, ``context_info``, ``help_url``); the OAuth2 routes answer the OAuth shape
(``error``, ``error_description``). Handlers raise these and the server renders them, so no
route formats an error by hand.
"""

from __future__ import annotations

from typing import Any

HELP_URL = "https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/"

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Payload Too Large",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """A Box API error (JSON ``type: error`` body)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str | None = None,
        context_info: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message or _REASONS.get(status, "Error")
        self.context_info = context_info
        self.headers = headers or {}

    def body(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "error",
            "status": self.status,
            "code": self.code,
            "help_url": HELP_URL,
            "message": self.message,
            "request_id": request_id,
        }
        if self.context_info is not None:
            body["context_info"] = self.context_info
        return body


class OAuthError(Exception):
    """An OAuth 2.0 error from the token endpoint (``error``, ``error_description``)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def reason(status: int) -> str:
    return _REASONS.get(status, "Error")


def not_found(what: str = "item") -> ApiError:
    return ApiError(404, "not_found", f"Not Found: the {what} could not be found or you have no access to it")


def bad_request(message: str, code: str = "bad_request", **context: Any) -> ApiError:
    return ApiError(400, code, message, context or None)
