"""OAuth 2.0 authorization code + refresh, and downscoped tokens (token exchange), through box_sdk_gen."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from box_sdk_gen import (
    BoxAPIError,
    BoxClient,
    BoxDeveloperTokenAuth,
    BoxJWTAuth,
    BoxOAuth,
    CreateFolderParent,
    FolderFull,
    GetAuthorizeUrlOptions,
    JWTConfig,
    NetworkSession,
    OAuthConfig,
)

from boxfs.emulator import BoxEmulator

from .helpers import api_error, upload

REDIRECT = "http://127.0.0.1:9/callback"


def authorize_url(emulator: BoxEmulator, auth: BoxOAuth, state: str) -> str:
    """The SDK builds its authorize URL on account.box.com; the same query goes to the emulator's page."""
    sdk_url = auth.get_authorize_url(options=GetAuthorizeUrlOptions(redirect_uri=REDIRECT, state=state))
    return emulator.url + "/oauth2/authorize?" + urlsplit(sdk_url).query


def test_authorization_code_and_refresh(
    emulator: BoxEmulator, http: requests.Session, network_session: NetworkSession, alice_id: str
) -> None:
    client_id, client_secret = emulator.create_oauth_app(REDIRECT, scopes=("root_readwrite",))
    auth = BoxOAuth(OAuthConfig(client_id=client_id, client_secret=client_secret))
    emulator.set_auto_approve("alice@example.com")
    try:
        approved = http.get(authorize_url(emulator, auth, "xyz"), allow_redirects=False)
    finally:
        emulator.set_auto_approve(None)
    assert approved.status_code == 302
    location = urlsplit(approved.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    code = query["code"][0]

    token = auth.get_tokens_authorization_code_grant(code, network_session=network_session)
    assert token.access_token and token.refresh_token
    client = BoxClient(auth=auth, network_session=network_session)
    assert client.users.get_user_me().id == alice_id
    # a code is single-use
    with pytest.raises(BoxAPIError) as info:
        auth.get_tokens_authorization_code_grant(code, network_session=network_session)
    assert info.value.response_info.body["error"] == "invalid_grant"

    refreshed = auth.refresh_token(network_session=network_session)
    assert refreshed.access_token != token.access_token and refreshed.refresh_token != token.refresh_token
    assert client.users.get_user_me().id == alice_id
    # refresh tokens rotate: the spent one is refused
    spent = http.post(
        emulator.url + "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token.refresh_token,
            "client_id": client_id,
            "client_secret": client_secret,
        },
    )
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"


def test_authorize_page_without_auto_approve_is_a_form(emulator: BoxEmulator, http: requests.Session) -> None:
    client_id, _ = emulator.create_oauth_app(REDIRECT)
    auth = BoxOAuth(OAuthConfig(client_id=client_id, client_secret="unused"))
    page = http.get(authorize_url(emulator, auth, "s"), allow_redirects=False)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "<form" in page.text


@pytest.fixture(scope="module")
def alice_jwt(jwt_config: str, alice_id: str) -> BoxJWTAuth:
    """Alice's own token (JWT user subject): As-User tokens cannot be exchanged, a user's can."""
    return BoxJWTAuth(config=JWTConfig.from_config_json_string(jwt_config)).with_user_subject(alice_id)


def downscoped_client(
    auth: BoxJWTAuth, network_session: NetworkSession, scopes: list[str], resource: str | None = None
) -> tuple[BoxClient, dict]:
    BoxClient(auth=auth, network_session=network_session).users.get_user_me()  # make sure a token exists
    token = auth.downscope_token(scopes, resource=resource, network_session=network_session)
    client = BoxClient(auth=BoxDeveloperTokenAuth(token=token.access_token), network_session=network_session)
    return client, token.to_dict()


def test_downscoped_tokens(
    emulator: BoxEmulator, alice_jwt: BoxJWTAuth, network_session: NetworkSession, workdir: FolderFull
) -> None:
    folder_url = f"{emulator.url}/2.0/folders/{workdir.id}"
    reader, token = downscoped_client(alice_jwt, network_session, ["item_preview"], folder_url)
    assert token["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert {r["scope"] for r in token["restricted_to"]} == {"item_preview"}
    assert all(r["object"]["id"] == workdir.id for r in token["restricted_to"])
    assert reader.folders.get_folder_items(workdir.id).total_count == 0
    api_error(lambda: upload(reader, workdir.id, "no.txt", b"x"), 403, "insufficient_scope")
    api_error(
        lambda: reader.folders.create_folder("no", CreateFolderParent(id=workdir.id)),
        403,
        "insufficient_scope",
    )

    uploader, _ = downscoped_client(alice_jwt, network_session, ["item_upload", "item_preview"], folder_url)
    file = upload(uploader, workdir.id, "yes.txt", b"uploaded with a downscoped token")
    api_error(lambda: uploader.files.delete_file_by_id(file.id), 403, "insufficient_scope")
    deleter, _ = downscoped_client(alice_jwt, network_session, ["item_delete"], folder_url)
    deleter.files.delete_file_by_id(file.id)

    # a token for one folder does not reach a sibling
    other = BoxClient(auth=alice_jwt, network_session=network_session).folders.create_folder(
        workdir.name + "-other", CreateFolderParent(id="0")
    )
    with pytest.raises(BoxAPIError) as info:
        reader.folders.get_folder_items(other.id)
    assert info.value.response_info.status_code in (403, 404)


def test_downscope_errors(
    emulator: BoxEmulator, http: requests.Session, alice_jwt: BoxJWTAuth, network_session: NetworkSession
) -> None:
    with pytest.raises(BoxAPIError) as info:
        downscoped_client(alice_jwt, network_session, ["root_everything"])
    assert info.value.response_info.status_code == 400
    assert info.value.response_info.body["error"] == "invalid_scope"
    # a downscoped token cannot be exchanged for more than it holds
    _, token = downscoped_client(alice_jwt, network_session, ["item_preview"])
    response = http.post(
        emulator.url + "/oauth2/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": token["access_token"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "scope": "item_upload",
        },
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


def test_revoked_token(emulator: BoxEmulator, jwt_config: str, network_session: NetworkSession) -> None:
    auth = BoxJWTAuth(config=JWTConfig.from_config_json_string(jwt_config))
    client = BoxClient(auth=auth, network_session=network_session)
    client.users.get_user_me()
    old = auth.retrieve_token(network_session=network_session).access_token
    auth.revoke_token(network_session=network_session)
    stale = BoxClient(auth=BoxDeveloperTokenAuth(token=old), network_session=network_session)
    with pytest.raises(Exception, match="Developer token has expired"):  # 401, and it cannot be refreshed
        stale.users.get_user_me()
    assert client.users.get_user_me().id  # the JWT auth simply gets a new token
