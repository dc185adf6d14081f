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


# --------------------------------------------------------------------------- token values as given
@pytest.fixture
def dev_token(emulator: BoxEmulator, new_user: Any) -> str:
    user_id, _login = new_user("tok")
    client_id, _secret = emulator.create_ccg_app()
    return emulator.developer_token(client_id, user_id)


def test_a_token_from_the_environment_with_a_trailing_newline_works(
        emulator: BoxEmulator, dev_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kubernetes secret or an env file made from a file ends in a newline."""
    from boxfs import BoxFileSystem

    monkeypatch.setenv("BOXFS_TOKEN", dev_token + "\n")
    monkeypatch.setenv("BOXFS_BASE_URL", emulator.url)
    for name in ("BOXFS_JWT_CONFIG", "BOXFS_CLIENT_ID", "BOXFS_CLIENT_SECRET", "BOXFS_OAUTH_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    start = len(emulator.request_log)
    assert BoxFileSystem(skip_instance_cache=True).ls("") == []  # the user's empty All Files
    assert [r.status for r in emulator.request_log.records[start:]] == [200]


@pytest.mark.parametrize("where", ["token", "BOXFS_TOKEN", "app_token"])
@pytest.mark.parametrize("bad", ["\r\nX-Injected: 1", " inner space", "\x00", "\u00e9"])
def test_a_token_holding_what_a_header_cannot_carry_is_refused_without_showing_it(
        emulator: BoxEmulator, dev_token: str, monkeypatch: pytest.MonkeyPatch, where: str, bad: str) -> None:
    """Before, requests refused the header with ``InvalidHeader: ... 'Bearer <the whole token>'``."""
    from boxfs import BoxFileSystem
    from boxfs.config import BoxConfigError

    if where == "BOXFS_TOKEN" and "\x00" in bad:
        pytest.skip("an environment variable cannot hold a NUL")
    token = dev_token[:8] + bad + dev_token[8:]
    options: dict[str, Any] = {"skip_instance_cache": True}
    if where == "BOXFS_TOKEN":
        monkeypatch.setenv("BOXFS_TOKEN", token)
        monkeypatch.setenv("BOXFS_BASE_URL", emulator.url)
        for name in ("BOXFS_JWT_CONFIG", "BOXFS_CLIENT_ID", "BOXFS_CLIENT_SECRET", "BOXFS_OAUTH_TOKEN_FILE"):
            monkeypatch.delenv(name, raising=False)
    else:
        options |= {where: token, "base_urls": emulator.base_urls}
    start = len(emulator.request_log)
    with pytest.raises(BoxConfigError) as info:
        BoxFileSystem(**options).ls("")
    assert dev_token[8:] not in str(info.value) and dev_token[:8] not in str(info.value)
    assert where.split(":")[0] in str(info.value)
    assert len(emulator.request_log) == start


def test_a_downscoped_token_used_beyond_its_scopes_says_so_not_as_user(emulator: BoxEmulator,
                                                                        make_fs: Any, fs_user: Any) -> None:
    """A 403 ``insufficient_scope`` blamed only the As-User header (an app setting), sending the operator
    to the wrong place when the token itself is limited; it now names the token's scopes first."""
    make_fs(as_user=fs_user[0]).pipe("kept.txt", b"kept")
    limited = make_fs(as_user=fs_user[0], scopes=["item_download", "item_preview"])
    assert limited.cat("kept.txt") == b"kept"
    for write in (lambda: limited.pipe("new.txt", b"x"), lambda: limited.rm("kept.txt"),
                  lambda: limited.mv("kept.txt", "moved.txt")):
        with pytest.raises(PermissionError) as info:
            write()
        text = str(info.value)
        assert "insufficient_scope" in text and "scopes=" in text
        assert text.index("scopes=") < text.index("As-User")
    assert make_fs(as_user=fs_user[0]).ls("", detail=False) == ["kept.txt"]


@pytest.mark.parametrize("bad", [{"file_id": "\u0665"}, {"file_id": "5 OR 1"}, {"external_id": "   "},
                                 {"external_id": "x" * 49}, {"display_name": " "}])
def test_annotator_token_bad_input_is_refused_before_any_request(emulator: BoxEmulator, app: dict[str, Any],
                                                                 bad: dict[str, Any]) -> None:
    from boxfs import BoxFileSystem
    from boxfs.config import BoxConfigError

    fs = BoxFileSystem(app_token=app["primary"], client_id=app["client_id"], base_urls=emulator.base_urls,
                       skip_instance_cache=True)
    args: dict[str, Any] = {"file_id": app["file_id"], "external_id": "ext-1", "display_name": "Ada", **bad}
    start = len(emulator.request_log)
    with pytest.raises(BoxConfigError, match=next(iter(bad))):
        fs.annotator_token(**args)
    assert len(emulator.request_log) == start
    token = fs.annotator_token(file_id=app["file_id"], external_id="ext-1", display_name="Ada")
    assert emulator.annotator_of(token) == ("ext-1", "Ada")


@pytest.mark.parametrize("urls", [{"base_url": "https://gateway-user:s3cr3t-pw@box.example.com"},
                                  {"base_url": "https://box.example.com", "upload_url": "https://:s3cr3t-pw@up.example.com"},
                                  {"BOXFS_BASE_URL": "http://svc:s3cr3t-pw@127.0.0.1:1"}])
def test_a_password_in_an_api_url_is_refused_without_showing_it(dev_token: str, urls: dict[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, it was kept: in ``repr(fs)`` and every error message, and requests would have sent it as
    Basic auth in place of the Bearer token."""
    from boxfs import BoxFileSystem
    from boxfs.config import BoxConfigError

    if "BOXFS_BASE_URL" in urls:
        monkeypatch.setenv("BOXFS_BASE_URL", urls["BOXFS_BASE_URL"])
        monkeypatch.setenv("BOXFS_TOKEN", dev_token)
        for name in ("BOXFS_JWT_CONFIG", "BOXFS_CLIENT_ID", "BOXFS_CLIENT_SECRET", "BOXFS_OAUTH_TOKEN_FILE"):
            monkeypatch.delenv(name, raising=False)
        make = lambda: BoxFileSystem(skip_instance_cache=True)  # noqa: E731
    else:
        make = lambda: BoxFileSystem(token=dev_token, base_urls=urls, skip_instance_cache=True)  # noqa: E731
    with pytest.raises(BoxConfigError, match="user name or password") as info:
        make()
    assert "s3cr3t-pw" not in str(info.value) and "gateway-user" not in str(info.value)


@pytest.mark.parametrize("url", ["ftp://box.example.com", "box.example.com", "https://box.example.com?x=1"])
def test_an_api_url_that_is_not_http_is_refused(dev_token: str, url: str) -> None:
    from boxfs import BoxFileSystem
    from boxfs.config import BoxConfigError

    with pytest.raises(BoxConfigError, match="http:// or https://"):
        BoxFileSystem(token=dev_token, base_urls={"base_url": url}, skip_instance_cache=True)
