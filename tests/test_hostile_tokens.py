"""Hostile tokens (red team, issue 18): annotator actor tokens at and past their limits, over real HTTP.

Box's annotator-token guide: ``sub`` is a String (the external user id, at most 48 characters), ``jti``
a unique string of 16 to 128 characters, ``exp`` a NumericDate at most 60 seconds ahead. Malformed
claims (``exp`` of NaN, an ``iat`` that is a string or a list) made the emulator answer 500; an ``int``
or a list as ``sub`` (or as ``jti``) was accepted and recorded as its ``str()``. A refusal is an OAuth
``400 invalid_request`` naming the claim.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
import pytest
import requests

from boxfs.emulator import BoxEmulator

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
AUDIENCE = "https://api.box.com/oauth2/token"


@pytest.fixture(scope="module")
def app(emulator: BoxEmulator) -> dict[str, Any]:
    """An App Token app with one file in its service account's root."""
    client_id, primary, _secondary = emulator.create_app_token_app()
    name = f"doc-{uuid.uuid4().hex[:8]}.pdf"
    response = requests.post(
        emulator.url + "/api/2.0/files/content", headers={"Authorization": f"Bearer {primary}"},
        files={"attributes": (None, json.dumps({"name": name, "parent": {"id": "0"}})),
               "file": (name, b"%PDF hostile", "application/octet-stream")}, timeout=30)
    assert response.status_code == 201, response.text
    return {"client_id": client_id, "primary": primary, "file_id": response.json()["entries"][0]["id"]}


def _exchange(emulator: BoxEmulator, app: dict[str, Any], **overrides: Any) -> requests.Response:
    claims = {"iss": app["client_id"], "sub": "ext-user", "box_sub_type": "external", "aud": AUDIENCE,
              "jti": uuid.uuid4().hex, "exp": int(time.time()) + 30, "name": "Ada External"}
    claims.update(overrides)
    actor = jwt.encode(claims, None, algorithm="none")
    return requests.post(emulator.url + "/oauth2/token", timeout=30, data={
        "grant_type": EXCHANGE, "subject_token": app["primary"], "subject_token_type": ACCESS,
        "scope": "item_preview", "resource": f"https://api.box.com/2.0/files/{app['file_id']}",
        "actor_token": actor, "actor_token_type": ID_TOKEN})


@pytest.mark.parametrize("claims, named", [
    ({"exp": "NaN"}, "'exp'"),
    ({"exp": "1e20"}, "'exp'"),
    ({"exp": True}, "'exp'"),
    ({"iat": "yesterday"}, "'iat'"),
    ({"nbf": [1]}, "'nbf'"),
    ({"sub": 12345}, "'sub'"),
    ({"sub": ["ext-user"]}, "'sub'"),
    ({"sub": "   "}, "'sub'"),
    ({"sub": "x" * 49}, "'sub'"),
    ({"jti": 10**20}, "'jti'"),
    ({"jti": "j" * 129}, "'jti'"),
    ({"jti": "j" * 15}, "'jti'"),
])
def test_malformed_actor_claims_are_a_400_naming_the_claim(emulator: BoxEmulator, app: dict[str, Any],
                                                           claims: dict[str, Any], named: str) -> None:
    response = _exchange(emulator, app, **claims)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_request" and named in body["error_description"]


@pytest.mark.parametrize("claims", [
    {"sub": "x" * 48},  # the longest external id
    {"sub": "\u00e9" * 48},  # 48 characters (96 bytes of UTF-8): the limit counts characters
    {"jti": "j" * 16},
    {"jti": "j" * 128},
    {"iat": int(time.time()), "nbf": int(time.time())},
])
def test_actor_claims_at_their_limits_are_accepted(emulator: BoxEmulator, app: dict[str, Any],
                                                  claims: dict[str, Any]) -> None:
    if "jti" in claims:  # single use: a fixed jti must be new to this run
        claims = {"jti": (uuid.uuid4().hex + claims["jti"])[: len(claims["jti"])]}
    response = _exchange(emulator, app, **claims)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert emulator.annotator_of(token) == (claims.get("sub", "ext-user"), "Ada External")


def test_exp_sixty_seconds_ahead_is_the_limit(emulator: BoxEmulator, app: dict[str, Any]) -> None:
    assert _exchange(emulator, app, exp=time.time() + 58).status_code == 200
    late = _exchange(emulator, app, exp=time.time() + 62)
    assert late.status_code == 400 and "'exp'" in late.json()["error_description"]
