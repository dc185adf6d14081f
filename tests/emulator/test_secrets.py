"""Secrets (client secrets, private keys, passphrases, access tokens) never reach the emulator's logs or its
objects' reprs, even at DEBUG level (a project rule: logs get pasted into issues and CI output)."""

from __future__ import annotations

import json
import logging

import pytest
from box_sdk_gen import BoxClient, BoxJWTAuth, JWTConfig

from boxfs.emulator import BoxEmulator

from .conftest import checked_session, sdk_network_session


def emulator_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the emulator itself logged (urllib3 on the client side logs URLs too, which is not ours)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("boxfs.emulator"))


def assert_absent(secrets: dict[str, str], text: str, where: str) -> None:
    for what, value in secrets.items():
        assert value not in text, f"{what} appears in {where}"


def test_no_secrets_in_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with BoxEmulator() as emulator, checked_session() as http:
        config_text = emulator.create_jwt_app(scopes=("root_readwrite",), passphrase="pass-phrase-123")
        config = json.loads(config_text)
        client_id, secret = emulator.create_ccg_app(scopes=("root_readwrite",))
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "box_subject_type": "enterprise",
            "box_subject_id": emulator.enterprise_id,
        }
        token = http.post(emulator.url + "/oauth2/token", data=form).json()["access_token"]
        http.post(emulator.url + "/oauth2/token", data=form | {"client_secret": "wrong-" + secret})
        headers = {"Authorization": f"Bearer {token}"}
        http.get(emulator.url + "/2.0/users/me", headers=headers)
        http.get(emulator.url + "/2.0/folders/987654321", headers=headers)
        jwt_client = BoxClient(
            auth=BoxJWTAuth(config=JWTConfig.from_config_json_string(config_text)),
            network_session=sdk_network_session(emulator),
        )
        jwt_client.users.get_user_me()
        jwt_token = jwt_client.auth.retrieve_token().access_token
        reprs = repr(emulator) + repr(emulator.request_log.records)

    secrets = {
        "client secret": secret,
        "JWT app secret": config["boxAppSettings"]["clientSecret"],
        "passphrase": "pass-phrase-123",
        "private key": config["boxAppSettings"]["appAuth"]["privateKey"].splitlines()[1],
        "access token": token,
        "JWT access token": jwt_token,
    }
    logged = emulator_log(caplog)
    assert "/users/me" in logged, "the emulator logged no requests at DEBUG: the check would be vacuous"
    assert_absent(secrets, logged, "the emulator's log")
    assert_absent(secrets, reprs, "a repr")


def test_access_token_query_parameter_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with BoxEmulator() as emulator, checked_session() as http:
        client_id, _ = emulator.create_ccg_app(scopes=("root_readwrite",))
        token = emulator.developer_token(client_id)
        file = http.post(
            emulator.url + "/api/2.0/files/content",
            headers={"Authorization": f"Bearer {token}"},
            files={
                "attributes": (None, json.dumps({"name": "s.txt", "parent": {"id": "0"}})),
                "file": ("s", b"s"),
            },
        ).json()["entries"][0]
        response = http.get(emulator.url + f"/2.0/files/{file['id']}/content", params={"access_token": token})
        assert response.status_code == 200 and response.content == b"s"
    logged = emulator_log(caplog)
    assert "/content" in logged
    assert_absent({"access token": token}, logged, "the emulator's log")
