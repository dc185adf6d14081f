"""JWT and Client Credentials Grant tokens: the two grants of a Box app's service account, sent by us.

Each is one form POST to Box's token endpoint (:func:`boxfs.auth.endpoint.token_request`, the one retry
policy of token requests). A JWT grant carries an assertion (RFC 7523 as Box does it) signed RS256 with the
key :class:`~boxfs.config.BoxCredentials` decrypted and checked at configuration time: header ``kid`` the
app's public key id; claims ``iss`` the client id, ``sub`` the enterprise or user id with ``box_sub_type``
saying which, ``aud`` Box's token URL, a random ``jti`` (Box accepts each once, so every attempt makes a new
assertion) and ``exp`` 30 s ahead (Box refuses more than 60 s).

Box refuses an assertion (400 ``invalid_grant``) when this machine's clock is off by more than that
margin; the refusal's ``Date`` header gives Box's time, so the grant is sent once more on it, and later
assertions keep the measured offset. box_sdk_gen did this work before, but importing it cost 0.3-0.8 s in
every process holding a JWT config; PyJWT and cryptography (loaded only here and in :mod:`boxfs.config`'s
key check, so a process with a ready-made token or a token file loads neither) cost a third of that.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt

from boxfs.api.errors import BoxAuthError
from boxfs.auth.endpoint import expiry, token_request
from boxfs.auth.provider import TokenProvider
from boxfs.config import BoxCredentials, BoxEndpoints
from boxfs.retry import RetryPolicy

logger = logging.getLogger("boxfs")

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: The ``aud`` Box requires in every assertion, whatever host the token request goes to.
BOX_TOKEN_AUDIENCE = "https://api.box.com/oauth2/token"
#: Seconds an assertion is valid; Box refuses an ``exp`` more than 60 s ahead of its clock.
ASSERTION_LIFETIME = 30
#: A clock this far from Box's (seconds, from the refusal's ``Date``) is worth one more try on Box's time.
SKEW_WORTH_RETRYING = 5.0
#: ... but not farther: a ``Date`` a day away is a broken answer, not a clock to sign on (assertions signed
#: for a time far ahead would become usable then)
SKEW_BELIEVED = 24 * 3600.0


class ServiceTokenProvider(TokenProvider):
    """A JWT or CCG service token (enterprise service account or a user), from our own grant requests."""

    #: Wall clock the assertion's ``exp`` is computed on (a test skews it to play a machine with a bad clock).
    wall_clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self, creds: BoxCredentials, endpoints: BoxEndpoints, policy: RetryPolicy) -> None:
        if creds.kind not in ("jwt", "ccg"):
            raise ValueError(f"ServiceTokenProvider needs JWT or CCG credentials, not {creds.kind!r}")
        super().__init__(creds, endpoints, policy)
        self._skew = 0.0  # Box's clock minus ours, learnt from a refused assertion's Date header

    def _renew_locked(self) -> None:
        c = self.creds
        started = self.clock()
        refused = f"Box refused the {c.kind.upper()} credentials of app {c.client_id}"
        form = self._jwt_form if c.kind == "jwt" else self._ccg_form

        def grant() -> dict[str, Any]:
            return token_request(self.endpoints, form, self.policy, f"token request for app {c.client_id}",
                                 refused=refused, failure=f"could not obtain an access token for app {c.client_id}")

        try:
            body = grant()
        except BoxAuthError as exc:
            if not self._learn_skew(exc):
                raise
            body = grant()
        self._token = str(body["access_token"])
        self._expires_at = expiry(body, started)
        self.refresh_count += 1
        logger.info("obtained a %s access token for app %s (valid %ss)", c.kind, c.client_id,
                    body.get("expires_in") or 3600)

    def _learn_skew(self, exc: BoxAuthError) -> bool:
        """True when ``exc`` is a JWT refusal on a clock far from Box's (then the offset is kept)."""
        box_time = getattr(exc, "box_server_time", None)
        if self.creds.kind != "jwt" or getattr(exc, "box_code", None) != "invalid_grant" or box_time is None:
            return False
        skew = box_time - self.wall_clock()
        if abs(skew - self._skew) < SKEW_WORTH_RETRYING:
            return False
        if abs(skew) > SKEW_BELIEVED:
            logger.warning("the token endpoint's clock is %+.0f s off this machine's: not believed", skew)
            return False
        logger.warning("this machine's clock is %+.0f s off Box's: JWT assertions now use Box's time "
                       "(run NTP to fix the clock)", -skew)
        self._skew = skew
        return True

    def _ccg_form(self) -> dict[str, str]:
        c = self.creds
        kind, subject = c.subject
        return {"grant_type": "client_credentials", "client_id": c.client_id or "",
                "client_secret": c.client_secret or "", "box_subject_type": kind, "box_subject_id": subject}

    def _jwt_form(self) -> dict[str, str]:
        """The grant's form with a freshly signed assertion (a new ``jti`` every time)."""
        c = self.creds
        kind, subject = c.subject
        claims = {
            "iss": c.client_id, "sub": subject, "box_sub_type": kind, "aud": BOX_TOKEN_AUDIENCE,
            "jti": secrets.token_urlsafe(32),
            "exp": int(self.wall_clock() + self._skew) + ASSERTION_LIFETIME,
        }
        assertion = jwt.encode(claims, c.decrypted_key(), algorithm="RS256", headers={"kid": c.public_key_id})
        return {"grant_type": JWT_GRANT, "assertion": assertion, "client_id": c.client_id or "",
                "client_secret": c.client_secret or ""}
