"""Authentication through box_sdk_gen (JWT, CCG, developer token) and Box's OAuth errors over raw HTTP."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
import pytest
import requests
from box_sdk_gen import (
    BoxAPIError,
    BoxCCGAuth,
    BoxClient,
    BoxDeveloperTokenAuth,
    BoxJWTAuth,
    CCGConfig,
    JWTConfig,
    NetworkSession,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from boxfs.emulator import BoxEmulator

from .helpers import TokenFactory

AUDIENCE = "https://api.box.com/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _client_id(config_text: str) -> str:
    return json.loads(config_text)["boxAppSettings"]["clientID"]


def test_config_is_in_developer_console_format(emulator: BoxEmulator, jwt_config: str) -> None:
    config = json.loads(jwt_config)
    settings = config["boxAppSettings"]
    assert set(settings) >= {"clientID", "clientSecret", "appAuth"}
    assert set(settings["appAuth"]) >= {"publicKeyID", "privateKey", "passphrase"}
    assert config["enterpriseID"] == emulator.enterprise_id
    assert "ENCRYPTED PRIVATE KEY" in settings["appAuth"]["privateKey"]
    # the key really is encrypted with the passphrase: without it, it cannot be loaded
    pem = settings["appAuth"]["privateKey"].encode()
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(pem, password=None)
    serialization.load_pem_private_key(pem, password=settings["appAuth"]["passphrase"].encode())


def test_jwt_enterprise_subject_is_the_service_account(
    emulator: BoxEmulator, admin_client: BoxClient, jwt_config: str
) -> None:
    me = admin_client.users.get_user_me()
    assert me.id == emulator.service_account_id(_client_id(jwt_config))
    assert me.type.value == "user"


def test_jwt_user_subject(
    emulator: BoxEmulator, jwt_config: str, network_session: NetworkSession, alice_id: str
) -> None:
    auth = BoxJWTAuth(config=JWTConfig.from_config_json_string(jwt_config)).with_user_subject(alice_id)
    client = BoxClient(auth=auth, network_session=network_session)
    me = client.users.get_user_me()
    assert me.id == alice_id
    assert me.login == "alice@example.com"


def test_ccg_enterprise_and_user(emulator: BoxEmulator, network_session: NetworkSession, bob_id: str) -> None:
    client_id, client_secret = emulator.create_ccg_app(
        scopes=("root_readwrite", "manage_managed_users"), as_user_header=True, enterprise_access=True
    )
    enterprise = BoxClient(
        auth=BoxCCGAuth(CCGConfig(client_id, client_secret, enterprise_id=emulator.enterprise_id)),
        network_session=network_session,
    )
    assert enterprise.users.get_user_me().id == emulator.service_account_id(client_id)
    as_bob = BoxClient(
        auth=BoxCCGAuth(CCGConfig(client_id, client_secret, user_id=bob_id)),
        network_session=network_session,
    )
    assert as_bob.users.get_user_me().id == bob_id


def test_ccg_wrong_secret_is_an_oauth_error(emulator: BoxEmulator, network_session: NetworkSession) -> None:
    client_id, _ = emulator.create_ccg_app(scopes=("root_readwrite",))
    client = BoxClient(
        auth=BoxCCGAuth(CCGConfig(client_id, "not-the-secret", enterprise_id=emulator.enterprise_id)),
        network_session=network_session,
    )
    with pytest.raises(BoxAPIError) as info:
        client.users.get_user_me()
    assert info.value.response_info.status_code == 400
    assert info.value.response_info.body["error"] == "invalid_client"
    assert "not-the-secret" not in str(info.value.response_info.body)


def test_developer_token(
    emulator: BoxEmulator, network_session: NetworkSession, token_for: TokenFactory, alice_id: str
) -> None:
    client_id, _ = emulator.create_ccg_app(scopes=("root_readwrite",))
    service = BoxClient(
        auth=BoxDeveloperTokenAuth(token=emulator.developer_token(client_id)), network_session=network_session
    )
    assert service.users.get_user_me().id == emulator.service_account_id(client_id)
    client = BoxClient(auth=BoxDeveloperTokenAuth(token=token_for(alice_id)), network_session=network_session)
    assert client.users.get_user_me().id == alice_id
    bad = BoxClient(auth=BoxDeveloperTokenAuth(token="not-a-token"), network_session=network_session)
    with pytest.raises(Exception) as info:  # noqa: B017 - 401, then the SDK cannot refresh a developer token
        bad.users.get_user_me()
    assert "Developer token has expired" in str(info.value)


# -- OAuth errors on raw HTTP, with assertions built by hand -------------------------------------------------


def _app_key(config_text: str) -> tuple[dict[str, Any], Any]:
    config = json.loads(config_text)
    app_auth = config["boxAppSettings"]["appAuth"]
    key = serialization.load_pem_private_key(
        app_auth["privateKey"].encode(), password=app_auth["passphrase"].encode()
    )
    return config, key


def _assertion(config: dict[str, Any], key: Any, **overrides: Any) -> str:
    claims = {
        "iss": config["boxAppSettings"]["clientID"],
        "sub": config["enterpriseID"],
        "box_sub_type": "enterprise",
        "aud": AUDIENCE,
        "jti": uuid.uuid4().hex,
        "exp": int(time.time()) + 30,
    }
    claims.update(overrides)
    kid = config["boxAppSettings"]["appAuth"]["publicKeyID"]
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def _token_request(
    http: requests.Session, emulator: BoxEmulator, config: dict[str, Any], assertion: str, **overrides: str
) -> requests.Response:
    data = {
        "grant_type": JWT_GRANT,
        "assertion": assertion,
        "client_id": config["boxAppSettings"]["clientID"],
        "client_secret": config["boxAppSettings"]["clientSecret"],
    }
    data.update(overrides)
    return http.post(emulator.url + "/oauth2/token", data=data)


def _oauth_error(response: requests.Response, error: str, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert isinstance(body.get("error_description"), str) and body["error_description"]
    assert "type" not in body  # the OAuth shape, not the API's error object
    return body["error_description"]


def test_hand_made_assertion_is_accepted(
    emulator: BoxEmulator, http: requests.Session, jwt_config: str
) -> None:
    config, key = _app_key(jwt_config)
    response = _token_request(http, emulator, config, _assertion(config, key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 3600
    me = http.get(emulator.url + "/2.0/users/me", headers={"Authorization": "Bearer " + body["access_token"]})
    assert me.status_code == 200
    assert me.json()["id"] == emulator.service_account_id(config["boxAppSettings"]["clientID"])


def test_oauth_errors(emulator: BoxEmulator, http: requests.Session, jwt_config: str) -> None:
    config, key = _app_key(jwt_config)
    # not a JWT at all
    _oauth_error(_token_request(http, emulator, config, "not.a.jwt"), "invalid_grant")
    # signed by a key the app never registered (same kid)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _oauth_error(_token_request(http, emulator, config, _assertion(config, stranger)), "invalid_grant")
    # expired, and too far in the future (Box allows at most 60 s)
    _oauth_error(
        _token_request(http, emulator, config, _assertion(config, key, exp=int(time.time()) - 30)), "invalid_grant"
    )
    _oauth_error(
        _token_request(http, emulator, config, _assertion(config, key, exp=int(time.time()) + 600)),
        "invalid_grant",
    )
    # wrong audience, wrong subject type
    _oauth_error(_token_request(http, emulator, config, _assertion(config, key, aud="https://x")), "invalid_grant")
    _oauth_error(
        _token_request(http, emulator, config, _assertion(config, key, box_sub_type="galaxy")), "invalid_grant"
    )
    # a jti can be used once
    once = _assertion(config, key)
    assert _token_request(http, emulator, config, once).status_code == 200
    _oauth_error(_token_request(http, emulator, config, once), "invalid_grant")
    # unknown client, and a known client with a wrong secret
    unknown = _assertion(config, key, iss="no-such-client")
    _oauth_error(_token_request(http, emulator, config, unknown, client_id="no-such-client"), "invalid_client")
    _oauth_error(
        _token_request(http, emulator, config, _assertion(config, key), client_secret="wrong"), "invalid_client"
    )
    # a grant type Box does not know
    response = http.post(emulator.url + "/oauth2/token", data={"grant_type": "password"})
    _oauth_error(response, "unsupported_grant_type")


def test_secrets_never_echoed_in_oauth_errors(
    emulator: BoxEmulator, http: requests.Session, jwt_config: str
) -> None:
    config, key = _app_key(jwt_config)
    response = _token_request(http, emulator, config, _assertion(config, key), client_secret="wrong-secret-xyz")
    assert "wrong-secret-xyz" not in response.text
    assert config["boxAppSettings"]["clientSecret"] not in response.text


def test_bearer_errors(emulator: BoxEmulator, http: requests.Session) -> None:
    """No token or a bad token: 401 with Box's WWW-Authenticate header."""
    for headers in ({}, {"Authorization": "Bearer nonsense"}):
        response = http.get(emulator.url + "/2.0/users/me", headers=headers)
        assert response.status_code == 401
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
