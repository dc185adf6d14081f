"""The one retry policy of boxfs (issue 6), built on tenacity.

Every request the package makes, API calls and token requests alike, is attempted through
:func:`retrying` (token requests through :func:`boxfs.auth.endpoint.retry_token_request`), so there is no
second loop anywhere. What is retried:

* HTTP 429, waiting what ``Retry-After`` says (capped by ``max_retry_after``);
* HTTP 202 with ``Retry-After`` on downloads (Box: "not ready yet");
* HTTP 500/502/503/504 and connection failures (refused, reset, dropped mid-body, read timeout), with
  exponential backoff and full jitter between ``backoff_base`` and ``backoff_max``.

Whether a failed request may be *repeated* is the transport's decision (idempotency, see
:mod:`boxfs.api.transport`); this module only knows which failures are transient and how long to wait.
A 401 is not handled here: it gets exactly one re-send after a token refresh, inside one attempt.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import requests
import tenacity

logger = logging.getLogger("boxfs")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Exceptions from requests that mean "the server may not have answered": retried with backoff.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Limits and waits; pass ``retry={"max_attempts": 3, ...}`` to the filesystem to change them."""

    max_attempts: int = 8
    backoff_base: float = 0.2
    backoff_max: float = 20.0
    max_retry_after: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    @classmethod
    def from_option(cls, value: RetryPolicy | Mapping[str, Any] | int | None) -> RetryPolicy:
        """Accept a RetryPolicy, a dict of its fields, an int (max attempts) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool):
            return cls() if value else cls(max_attempts=1)
        if isinstance(value, int):
            return cls(max_attempts=max(1, value))
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown retry options {sorted(unknown)}; known: {sorted(known)}")
        return replace(cls(), **dict(value))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class RetryableResponse(Exception):
    """A response whose status says "try again" (429, 5xx, 202 + Retry-After); carries the response."""

    def __init__(self, response: requests.Response, describe: str = "") -> None:
        super().__init__(f"{describe}: HTTP {response.status_code}")
        self.response = response
        self.retry_after = parse_retry_after(response.headers.get("Retry-After"))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (Box sends integer seconds); None when absent or unparsable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    """True for failures worth another attempt."""
    return isinstance(exc, (RetryableResponse, *CONNECTION_ERRORS))


def _wait(policy: RetryPolicy):
    def wait(retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)  # a RetryableResponse, or a token request's 429/503
        if retry_after is not None:
            return min(retry_after, policy.max_retry_after)
        ceiling = min(policy.backoff_max, policy.backoff_base * (2 ** (retry_state.attempt_number - 1)))
        # "Full jitter": spread clients that failed together over the whole window.
        return random.uniform(ceiling / 2, ceiling)

    return wait


def _log_retry(describe: str):
    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        what = type(exc).__name__ if not isinstance(exc, RetryableResponse) else f"HTTP {exc.response.status_code}"
        wait = retry_state.next_action.sleep if retry_state.next_action else 0.0
        logger.info("retrying %s after %s (attempt %d, waiting %.2fs)", describe, what, retry_state.attempt_number, wait)

    return before_sleep


def retrying(policy: RetryPolicy, describe: str, *, extra: tuple[type[BaseException], ...] = ()) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for one logical request: iterate over it and run the attempt in ``with``."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception(lambda e: is_transient(e) or isinstance(e, extra)),
        before_sleep=_log_retry(describe),
        reraise=True,
    )
