"""Box's token endpoint: the one retry loop every token request goes through, and the plain form POST.

Every token request boxfs sends (JWT and CCG grants, :mod:`boxfs.auth.service`; OAuth refresh, token
exchange, annotator tokens) is a form POST that fails the same ways: a 429 or 5xx or a dropped connection
is worth another attempt under :mod:`boxfs.retry`'s policy (:class:`TransientTokenError`,
:func:`retry_token_request`), anything else is a refusal (:class:`BoxAuthError`, with Box's code, status,
request id and the time Box's ``Date`` header gave, for a JWT assertion refused on a skewed clock).

Nothing here logs or puts in an exception a secret: the form holds them, and it is never shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from boxfs.api.errors import BoxAPIError, BoxAuthError, request_id_of
from boxfs.api.reach import unreachable
from boxfs.config import BoxEndpoints
from boxfs.retry import RetryPolicy, parse_retry_after, retrying

T = TypeVar("T")
logger = logging.getLogger("boxfs")

#: Refresh this many seconds before Box says the token expires (clock skew, long requests in flight);
#: for short-lived tokens a quarter of their lifetime instead.
REFRESH_MARGIN = 60.0
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class TransientTokenError(Exception):
    """A token request that failed in a way worth retrying (connection, 429, 5xx)."""

    retry_after: float | None = None  # seconds from the answer's Retry-After, honoured by boxfs.retry
    connection_error: BaseException | None = None  # the requests exception, when nothing answered
    url: str = ""  # where the request went (named in the final error: host, cause and fix)

    @classmethod
    def unanswered(cls, url: str, cause: BaseException) -> TransientTokenError:
        """Nothing answered ``url`` (refused, unresolvable, timed out...): ``cause`` says why."""
        transient = cls(type(cause).__name__)
        transient.connection_error, transient.url = cause, url
        return transient


def retry_token_request(policy: RetryPolicy, describe: str, request: Callable[[], T], *,
                        failure: str | None = None) -> T:
    """``request()`` under the retry policy; a transient failure after the last attempt is an OSError.

    ``describe`` names the request in retry log lines; ``failure`` starts the final error's message
    (default: "<describe> failed"). When nothing ever answered, the message names the host, the cause and
    the fix (:func:`boxfs.api.reach.unreachable`) instead of a bare exception name.
    """
    try:
        for attempt in retrying(policy, describe, extra=(TransientTokenError,)):
            with attempt:
                return request()
    except TransientTokenError as exc:
        failure = failure or f"{describe} failed"
        if exc.connection_error is not None:
            why = unreachable(exc.url, exc.connection_error, attempts=policy.max_attempts, what="token request",
                              connect_timeout=policy.connect_timeout, read_timeout=policy.read_timeout)
            raise BoxAPIError(f"{failure}: {why}") from None
        raise BoxAPIError(f"{failure} after {policy.max_attempts} attempts: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def token_request(endpoints: BoxEndpoints, form: Mapping[str, str] | Callable[[], Mapping[str, str]],
                  policy: RetryPolicy, describe: str, *, refused: str | None = None,
                  failure: str | None = None) -> dict[str, Any]:
    """POST ``form`` to Box's token endpoint; refusals become BoxAuthError (no secrets in it).

    ``form`` may be a function building the form: it is called for every attempt, so a JWT assertion
    (whose ``jti`` Box accepts once) is new each time. ``refused`` starts a refusal's message (default:
    "<describe> refused"); ``failure`` the message when no attempt got an answer (as in
    :func:`retry_token_request`).
    """
    url = f"{endpoints.base_url}/oauth2/token"
    route = urlsplit(url).path

    def once() -> dict[str, Any]:
        data = dict(form() if callable(form) else form)
        started = time.monotonic()
        try:
            resp = requests.post(url, data=data, timeout=(policy.connect_timeout, policy.read_timeout))
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            logger.debug("POST %s -> %s after %.1f ms", route, type(exc).__name__, (time.monotonic() - started) * 1000)
            raise TransientTokenError.unanswered(url, exc) from None
        # the same DEBUG line as every API request (transport.py), never the form
        logger.debug("POST %s -> %d (request id %s) %.1f ms", route, resp.status_code, request_id_of(resp, {}),
                     (time.monotonic() - started) * 1000)
        if resp.status_code == 429 or resp.status_code >= 500:
            transient = TransientTokenError(f"HTTP {resp.status_code}")
            transient.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            raise transient
        try:
            body = resp.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if resp.status_code >= 400 or "access_token" not in body:
            raise _refusal(resp, body, refused or f"{describe} refused")
        return body

    return retry_token_request(policy, describe, once, failure=failure)


def _refusal(resp: requests.Response, body: dict[str, Any], refused: str) -> BoxAuthError:
    """The BoxAuthError for a token request Box answered with a refusal (never echoes the form)."""
    code = body.get("error") or "unknown"
    text = body.get("error_description") or body.get("message") or resp.reason or ""
    rid = request_id_of(resp, body)
    err = BoxAuthError(f"{refused}: {code}: {text} (HTTP {resp.status_code}, request id {rid})")
    err.box_status, err.box_code, err.box_request_id = resp.status_code, code, rid  # type: ignore[attr-defined]
    err.box_server_time = server_time(resp)  # type: ignore[attr-defined]
    return err


def server_time(resp: requests.Response) -> float | None:
    """Box's clock (epoch seconds) from a response's ``Date`` header, or None without a readable one."""
    try:
        return parsedate_to_datetime(resp.headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def expiry(body: Mapping[str, Any], started: float) -> float:
    """When a token Box granted at ``started`` (same clock) should be replaced, from its ``expires_in``."""
    lifetime = float(body.get("expires_in") or 3600)
    # never refresh more often than every few seconds even if Box hands out very short tokens
    return started + lifetime - min(REFRESH_MARGIN, lifetime / 4)
