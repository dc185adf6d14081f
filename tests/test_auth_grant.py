"""boxfs's own JWT and CCG grants (:mod:`boxfs.auth.service`) against the emulator's token endpoint.

The assertion carries what Box requires (checked by decoding it with the app's public key), each attempt
signs a new one (Box accepts a ``jti`` once: a grant whose answer was lost is retried with a fresh one), a
machine whose clock is minutes off still gets its token with one more request (Box's ``Date``), refusals
carry Box's code, status and request id and never a secret. tests/test_startup.py checks that a JWT process loads no box_sdk_gen module.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from boxfs.api.errors import BoxAuthError
from boxfs.auth import clear_registry
from boxfs.auth.service import BOX_TOKEN_AUDIENCE, ServiceTokenProvider
from boxfs.config import resolve_credentials, resolve_endpoints
from boxfs.emulator import BoxEmulator
from boxfs.retry import RetryPolicy
from tests.support import injected_faults

FAST = RetryPolicy(max_attempts=3, backoff_base=0.005, backoff_max=0.02, max_retry_after=0.1)


@pytest.fixture(autouse=True)
def _cold_registry() -> Iterator[None]:
    clear_registry()
    yield
    clear_registry()


def _provider(emulator: BoxEmulator, policy: RetryPolicy = FAST, **creds: Any) -> ServiceTokenProvider:
    credentials, _ = resolve_credentials(**creds, environ={})
    return ServiceTokenProvider(credentials, resolve_endpoints(emulator.base_urls), policy)


def _token_requests(emulator: BoxEmulator, start: int) -> list[Any]:
    return [r for r in emulator.request_log.records[start:] if r.route == "/oauth2/token"]


def _whoami(emulator: BoxEmulator, token: str) -> str:
    """The user id Box says ``token`` belongs to (GET /users/me, over HTTP)."""
    resp = requests.get(f"{emulator.url}/2.0/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    resp.raise_for_status()
    return str(resp.json()["id"])


def test_jwt_assertion_has_the_claims_box_requires(emulator: BoxEmulator, jwt_config: str) -> None:
    provider = _provider(emulator, jwt_config=jwt_config)
    settings = json.loads(jwt_config)
    public = provider.creds.decrypted_key().public_key()
    forms = [provider._jwt_form() for _ in range(2)]
    before = time.time()
    header = jwt.get_unverified_header(forms[0]["assertion"])
    claims = [jwt.decode(f["assertion"], public, algorithms=["RS256"], audience=BOX_TOKEN_AUDIENCE) for f in forms]
    assert header["alg"] == "RS256" and header["kid"] == settings["boxAppSettings"]["appAuth"]["publicKeyID"]
    assert claims[0]["iss"] == settings["boxAppSettings"]["clientID"]
    assert (claims[0]["sub"], claims[0]["box_sub_type"]) == (settings["enterpriseID"], "enterprise")
    assert 0 < claims[0]["exp"] - before <= 60
    assert claims[0]["jti"] != claims[1]["jti"] and len(claims[0]["jti"]) >= 16
    assert forms[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert forms[0]["client_secret"] == settings["boxAppSettings"]["clientSecret"]


def test_jwt_grant_for_the_service_account_and_for_a_user(emulator: BoxEmulator, jwt_config: str,
                                                           new_user: Any) -> None:
    client_id = json.loads(jwt_config)["boxAppSettings"]["clientID"]
    start = len(emulator.request_log)
    service = _provider(emulator, jwt_config=jwt_config)
    assert _whoami(emulator, service.token()) == emulator.service_account_id(client_id)
    uid, _ = new_user("grant")
    settings = json.loads(jwt_config)
    del settings["enterpriseID"]  # a config for a user's token: no enterprise, user_id= names the subject
    user = _provider(emulator, jwt_config=json.dumps(settings), user_id=uid)
    assert user.creds.subject == ("user", uid)
    assert _whoami(emulator, user.token()) == uid
    assert [r.status for r in _token_requests(emulator, start)] == [200, 200]
    assert service.token() and user.token() and len(_token_requests(emulator, start)) == 2  # both cached


def test_ccg_grant_for_the_enterprise_and_for_a_user(emulator: BoxEmulator, new_user: Any) -> None:
    client_id, secret = emulator.create_ccg_app()
    start = len(emulator.request_log)
    service = _provider(emulator, client_id=client_id, client_secret=secret, enterprise_id=emulator.enterprise_id)
    assert _whoami(emulator, service.token()) == emulator.service_account_id(client_id)
    uid, _ = new_user("ccg")
    user = _provider(emulator, client_id=client_id, client_secret=secret, user_id=uid)
    assert _whoami(emulator, user.token()) == uid
    assert [r.status for r in _token_requests(emulator, start)] == [200, 200]


def test_a_grant_whose_answer_was_lost_is_retried_with_a_new_jti(emulator: BoxEmulator, jwt_config: str) -> None:
    """Box took the first assertion (its jti is spent) but the answer never came: the retry must not
    resend it, or Box refuses it as a replay."""
    provider = _provider(emulator, jwt_config=jwt_config)
    start = len(emulator.request_log)
    with injected_faults(emulator, rate=1.0, kinds=("drop_after",), route=r"/oauth2/token$", count=1) as rule:
        token = provider.token()
    assert rule.fired == 1
    assert [r.status for r in _token_requests(emulator, start)] == [200, 200]
    assert _whoami(emulator, token) == emulator.service_account_id(provider.creds.client_id)


@pytest.mark.parametrize("offset", [+600.0, -600.0], ids=["clock ahead", "clock behind"])
def test_a_skewed_clock_costs_one_more_request_once(emulator: BoxEmulator, jwt_config: str, offset: float,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Ten minutes off: Box (the emulator, on the true clock) refuses the assertion's exp, the refusal's
    Date header gives Box's time, the grant is sent once more and later refreshes use the offset."""
    provider = _provider(emulator, jwt_config=jwt_config)
    provider.wall_clock = lambda: time.time() + offset  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="boxfs")
    start = len(emulator.request_log)
    token = provider.token()
    assert [r.status for r in _token_requests(emulator, start)] == [400, 200]
    assert _whoami(emulator, token) == emulator.service_account_id(provider.creds.client_id)
    assert any("clock" in r.getMessage() and "NTP" in r.getMessage() for r in caplog.records)
    provider.invalidate(token)
    provider.token()
    assert [r.status for r in _token_requests(emulator, start)] == [400, 200, 200]  # the offset was kept


def test_a_clock_days_off_is_not_signed_on(emulator: BoxEmulator, jwt_config: str) -> None:
    """Three days off: the refusal's Date is not taken as the time to sign on (an answer that far off is
    broken, and assertions for a time far ahead would become usable then): one request, a clear error."""
    provider = _provider(emulator, jwt_config=jwt_config)
    provider.wall_clock = lambda: time.time() - 3 * 86400  # type: ignore[method-assign]
    start = len(emulator.request_log)
    with pytest.raises(BoxAuthError):
        provider.token()
    assert [r.status for r in _token_requests(emulator, start)] == [400]


def test_a_refusal_on_a_right_clock_is_not_retried(emulator: BoxEmulator, jwt_config: str) -> None:
    settings = json.loads(jwt_config)
    settings["boxAppSettings"]["appAuth"]["publicKeyID"] = "nokey123"
    provider = _provider(emulator, jwt_config=json.dumps(settings))
    start = len(emulator.request_log)
    with pytest.raises(BoxAuthError) as info:
        provider.token()
    sent = _token_requests(emulator, start)
    assert [r.status for r in sent] == [400]
    exc = info.value
    assert (exc.box_status, exc.box_code, exc.box_request_id) == (400, "invalid_grant", sent[0].request_id)  # type: ignore[attr-defined]
    assert f"Box refused the JWT credentials of app {settings['boxAppSettings']['clientID']}: invalid_grant" in str(exc)
    assert "'kid'" in str(exc) and sent[0].request_id in str(exc)


def test_secrets_and_the_assertion_are_in_no_error_or_log_line(emulator: BoxEmulator,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A refused grant (wrong client secret): neither the secret, the key, the passphrase nor the signed
    assertion appears in the exception or in any log record, DEBUG included."""
    settings = json.loads(emulator.create_jwt_app(passphrase="pass-phrase-words"))
    settings["boxAppSettings"]["clientSecret"] = "wrong-secret-0123456789"
    provider = _provider(emulator, jwt_config=json.dumps(settings))
    sent: list[str] = []
    make_form = provider._jwt_form
    provider._jwt_form = lambda: (form := make_form(), sent.append(form["assertion"]))[0]  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BoxAuthError) as info:
        provider.token()
    assert len(sent) == 1 and getattr(info.value, "box_code", None) == "invalid_client"
    shown = [str(info.value), repr(info.value), repr(provider.creds), *(r.getMessage() for r in caplog.records)]
    auth = settings["boxAppSettings"]["appAuth"]
    key_body = auth["privateKey"].splitlines()[1]
    for secret in ("wrong-secret-0123456789", auth["passphrase"], key_body, sent[0], sent[0].split(".")[2]):
        assert not [line for line in shown if secret in line], secret


def test_transient_answers_are_retried_honouring_retry_after(emulator: BoxEmulator, jwt_config: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Retry-After: 1 is waited (not the policy's 5 ms backoff) before each next attempt."""
    provider = _provider(emulator, RetryPolicy(max_attempts=3, backoff_base=0.005, backoff_max=0.02),
                         jwt_config=jwt_config)
    caplog.set_level(logging.INFO, logger="boxfs")
    start = len(emulator.request_log)
    with injected_faults(emulator, rate=1.0, kinds=("429", "503"), route=r"/oauth2/token$", count=2, retry_after=1):
        provider.token()
    assert [r.status for r in _token_requests(emulator, start)][2:] == [200]
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waits) == 2 and all("waiting 1.00s" in w for w in waits), waits
