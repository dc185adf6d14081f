"""Token exchange as Box's guides describe it (File Tokens, ``item_content_upload``, ``invalid_resource``,
annotator tokens), expiring embed links, and App Token apps (Limited Access Apps) with their restrictions.

Raw HTTP: these are the wire behaviours clients depend on (OAuth error codes, ``restricted_to``); every
JSON body is also checked against Box's OpenAPI description by the conftest hook.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
import requests

from boxfs.emulator import BoxEmulator

from .helpers import TokenFactory, client_credentials_token, raw_upload

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
AUDIENCE = "https://api.box.com/oauth2/token"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def exchange(emulator: BoxEmulator, http: requests.Session, subject: str, scope: str, resource: str | None = None,
             **extra: str) -> requests.Response:
    data = {"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ACCESS, "scope": scope}
    if resource is not None:
        data["resource"] = resource
    return http.post(emulator.url + "/oauth2/token", data=data | extra)


def exchanged(emulator: BoxEmulator, http: requests.Session, subject: str, scope: str,
              resource: str | None = None, **extra: str) -> dict[str, Any]:
    response = exchange(emulator, http, subject, scope, resource, **extra)
    assert response.status_code == 200, response.text
    return response.json()


def refused(response: requests.Response, error: str) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == error, body
    return body["error_description"]


def file_url(item_id: str) -> str:
    return f"https://api.box.com/2.0/files/{item_id}"


def actor_token(client_id: str, **overrides: Any) -> str:
    """An annotator's actor token as the Box View guide builds it: an unsigned JWT (``alg: none``)."""
    claims = {"iss": client_id, "sub": "ext-user-1", "box_sub_type": "external", "aud": AUDIENCE,
              "jti": uuid.uuid4().hex, "exp": int(time.time()) + 30, "name": "Ada External"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, None, algorithm="none")


@pytest.fixture
def alice_setup(emulator: BoxEmulator, http: requests.Session, token_for: TokenFactory, alice_id: str,
                workdir: Any) -> dict[str, Any]:
    token = token_for(alice_id)
    file = raw_upload(emulator, http, token, workdir.id, "report.pdf", b"%PDF version one")
    other = raw_upload(emulator, http, token, workdir.id, "other.txt", b"other")
    return {"token": token, "folder": workdir.id, "file": file, "other": other}


# -- scopes and resources ------------------------------------------------------------------------------------


def test_item_content_upload_file_token_uploads_a_version_and_nothing_else(
        emulator: BoxEmulator, http: requests.Session, alice_setup: dict[str, Any]) -> None:
    file = alice_setup["file"]
    body = exchanged(emulator, http, alice_setup["token"], "item_content_upload", file_url(file["id"]))
    assert body["issued_token_type"] == ACCESS and body["token_type"] == "bearer"
    (restriction,) = body["restricted_to"]
    assert restriction["scope"] == "item_content_upload"
    assert restriction["object"]["type"] == "file" and restriction["object"]["id"] == file["id"]
    assert restriction["object"]["sha1"] == file["sha1"] and restriction["object"]["file_version"]["id"]
    token = body["access_token"]
    new = http.post(emulator.url + f"/api/2.0/files/{file['id']}/content", headers=auth(token),
                    files={"attributes": (None, "{}"), "file": ("report.pdf", b"%PDF version two")})
    assert new.status_code == 200, new.text
    # not delete, not another file, not a folder
    assert http.delete(emulator.url + f"/2.0/files/{file['id']}", headers=auth(token)).status_code == 403
    other = alice_setup["other"]
    denied = http.post(emulator.url + f"/api/2.0/files/{other['id']}/content", headers=auth(token),
                       files={"attributes": (None, "{}"), "file": ("other.txt", b"no")})
    assert denied.status_code == 403
    folder = http.post(emulator.url + "/2.0/folders", headers=auth(token),
                       json={"name": "no", "parent": {"id": alice_setup["folder"]}})
    assert folder.status_code == 403


def test_every_scope_the_guides_list_is_accepted(emulator: BoxEmulator, http: requests.Session,
                                                  alice_setup: dict[str, Any]) -> None:
    scopes = "item_preview item_content_upload item_delete item_upload item_download item_rename base_preview"
    body = exchanged(emulator, http, alice_setup["token"], scopes, file_url(alice_setup["file"]["id"]))
    assert sorted(r["scope"] for r in body["restricted_to"]) == sorted(scopes.split())
    assert "Unknown scopes: item_everything" in refused(
        exchange(emulator, http, alice_setup["token"], "item_preview item_everything"), "invalid_scope")


@pytest.mark.parametrize("resource", [
    "https://api.box.com/2.0/files/999999999",       # names nothing
    "https://app.box.com/file/{file}",               # the web app's URL, not the API's
    "https://api.box.com/2.0/folders/{file}",        # a file named as a folder
    "https://api.box.com/2.0/files/abc",             # malformed id
])
def test_a_resource_that_is_not_a_viewable_item_is_invalid_resource(
        emulator: BoxEmulator, http: requests.Session, alice_setup: dict[str, Any], resource: str) -> None:
    response = exchange(emulator, http, alice_setup["token"], "item_preview",
                        resource.format(file=alice_setup["file"]["id"]))
    assert "resource is invalid" in refused(response, "invalid_resource")


def test_someone_elses_or_a_trashed_file_is_invalid_resource(
        emulator: BoxEmulator, http: requests.Session, token_for: TokenFactory, bob_id: str,
        alice_setup: dict[str, Any]) -> None:
    bob_token = token_for(bob_id)
    refused(exchange(emulator, http, bob_token, "item_preview", file_url(alice_setup["file"]["id"])), "invalid_resource")
    other = alice_setup["other"]
    assert http.delete(emulator.url + f"/2.0/files/{other['id']}", headers=auth(alice_setup["token"])).status_code == 204
    refused(exchange(emulator, http, alice_setup["token"], "item_preview", file_url(other["id"])), "invalid_resource")


def test_a_file_token_cannot_be_exchanged_for_another_file(emulator: BoxEmulator, http: requests.Session,
                                                           alice_setup: dict[str, Any]) -> None:
    file_token = exchanged(emulator, http, alice_setup["token"], "item_preview",
                           f"https://api.box.com/2.0/folders/{alice_setup['folder']}")["access_token"]
    narrower = exchanged(emulator, http, file_token, "item_preview", file_url(alice_setup["file"]["id"]))
    assert narrower["restricted_to"][0]["object"]["id"] == alice_setup["file"]["id"]
    single = narrower["access_token"]
    refused(exchange(emulator, http, single, "item_preview", file_url(alice_setup["other"]["id"])), "invalid_resource")


# -- annotator tokens -----------------------------------------------------------------------------------------


@pytest.fixture
def app_setup(emulator: BoxEmulator, http: requests.Session) -> dict[str, Any]:
    """An App Token app with a file in its service account's root."""
    client_id, primary, secondary = emulator.create_app_token_app()
    name = f"doc-{uuid.uuid4().hex[:8]}.pdf"
    file = raw_upload(emulator, http, primary, "0", name, b"%PDF app content")
    return {"client_id": client_id, "primary": primary, "secondary": secondary, "file": file}


def test_annotator_token_for_an_external_user(emulator: BoxEmulator, http: requests.Session,
                                              app_setup: dict[str, Any]) -> None:
    file = app_setup["file"]
    actor = actor_token(app_setup["client_id"], sub="x" * 48)  # 48 characters: the longest allowed
    body = exchanged(emulator, http, app_setup["primary"], "item_preview", file_url(file["id"]),
                     actor_token=actor, actor_token_type=ID_TOKEN)
    assert body["restricted_to"] == [{"scope": "item_preview", "object": body["restricted_to"][0]["object"]}]
    assert body["restricted_to"][0]["object"]["id"] == file["id"] and body["expires_in"] <= 3600
    annotator = body["access_token"]
    assert emulator.annotator_of(annotator) == ("x" * 48, "Ada External")
    assert emulator.annotator_of(app_setup["primary"]) is None
    embed = http.get(emulator.url + f"/2.0/files/{file['id']}", params={"fields": "expiring_embed_link"},
                     headers=auth(annotator))
    assert embed.status_code == 200 and embed.json()["expiring_embed_link"]["url"]
    # the actor token is single-use
    again = exchange(emulator, http, app_setup["primary"], "item_preview", file_url(file["id"]),
                     actor_token=actor, actor_token_type=ID_TOKEN)
    assert "already used" in refused(again, "invalid_request")


@pytest.mark.parametrize("change, why", [
    ({"sub": "x" * 49}, "'sub'"),
    ({"box_sub_type": "user"}, "'box_sub_type'"),
    ({"name": None}, "'name'"),
    ({"exp": int(time.time()) + 3600}, "'exp'"),
    ({"exp": int(time.time()) - 10}, "expired"),
    ({"aud": "https://example.com/token"}, "'aud'"),
    ({"iss": "not-the-app"}, "'iss'"),
    ({"jti": "short"}, "'jti'"),
])
def test_annotator_token_refusals(emulator: BoxEmulator, http: requests.Session, app_setup: dict[str, Any],
                                  change: dict[str, Any], why: str) -> None:
    actor = actor_token(app_setup["client_id"], **change)
    response = exchange(emulator, http, app_setup["primary"], "item_preview", file_url(app_setup["file"]["id"]),
                        actor_token=actor, actor_token_type=ID_TOKEN)
    assert why in refused(response, "invalid_request")


def test_annotator_token_needs_an_unsigned_id_token_and_a_file(emulator: BoxEmulator, http: requests.Session,
                                                               app_setup: dict[str, Any]) -> None:
    file = file_url(app_setup["file"]["id"])
    actor = actor_token(app_setup["client_id"])
    wrong_type = exchange(emulator, http, app_setup["primary"], "item_preview", file, actor_token=actor,
                          actor_token_type=ACCESS)
    assert "actor_token_type" in refused(wrong_type, "invalid_request")
    claims = jwt.decode(actor, options={"verify_signature": False})
    signed = jwt.encode(claims, "a-shared-secret-of-enough-length", algorithm="HS256")
    assert "'alg'" in refused(exchange(emulator, http, app_setup["primary"], "item_preview", file, actor_token=signed,
                                       actor_token_type=ID_TOKEN), "invalid_request")
    assert "not a JWT" in refused(exchange(emulator, http, app_setup["primary"], "item_preview", file,
                                           actor_token="garbage", actor_token_type=ID_TOKEN), "invalid_request")
    assert "resource" in refused(exchange(emulator, http, app_setup["primary"], "item_preview", actor_token=actor,
                                          actor_token_type=ID_TOKEN), "invalid_request")


# -- expiring embed links -------------------------------------------------------------------------------------


def test_expiring_embed_link(emulator: BoxEmulator, http: requests.Session, alice_setup: dict[str, Any]) -> None:
    file = alice_setup["file"]
    response = http.get(emulator.url + f"/2.0/files/{file['id']}", headers=auth(alice_setup["token"]),
                        params={"fields": "expiring_embed_link,name"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "report.pdf" and "size" not in body  # only the fields asked for
    link = body["expiring_embed_link"]
    assert link["token_type"] == "bearer" and 0 < link["expires_in"] <= 3600
    assert link["restricted_to"][0]["scope"] == "item_preview"
    assert link["restricted_to"][0]["object"]["id"] == file["id"]
    page = http.get(link["url"])
    assert page.status_code == 200 and "report.pdf" in page.text and "text/html" in page.headers["Content-Type"]
    # the link's token previews this file only: not a download, not another file
    preview = link["access_token"]
    assert http.get(emulator.url + f"/2.0/files/{file['id']}/content", headers=auth(preview),
                    allow_redirects=False).status_code == 403
    assert http.get(emulator.url + f"/2.0/files/{alice_setup['other']['id']}",
                    headers=auth(preview)).status_code == 403
    # a token without a preview scope gets no embed link
    uploader = exchanged(emulator, http, alice_setup["token"], "item_upload", file_url(file["id"]))["access_token"]
    denied = http.get(emulator.url + f"/2.0/files/{file['id']}", headers=auth(uploader),
                      params={"fields": "expiring_embed_link"})
    assert denied.status_code == 403 and denied.json()["code"] == "insufficient_scope"


def test_an_expired_embed_link_opens_nothing(http: requests.Session) -> None:
    with BoxEmulator() as emulator:  # expire_tokens() affects every token: an emulator of this test's own
        user = emulator.create_user("embed@example.com")
        client_id, _ = emulator.create_ccg_app()
        token = emulator.developer_token(client_id, user)
        file = raw_upload(emulator, http, token, "0", "x.txt", b"x")
        link = http.get(emulator.url + f"/2.0/files/{file['id']}", headers=auth(token),
                        params={"fields": "expiring_embed_link"}).json()["expiring_embed_link"]
        emulator.expire_tokens()
        assert http.get(link["url"]).status_code == 404
        assert http.get(emulator.url + "/2.0/users/me", headers=auth(link["access_token"])).status_code == 401


# -- App Token apps -------------------------------------------------------------------------------------------


def test_app_tokens_upload_download_delete_and_embed(emulator: BoxEmulator, http: requests.Session,
                                                     app_setup: dict[str, Any]) -> None:
    primary, file = app_setup["primary"], app_setup["file"]
    content = http.get(emulator.url + f"/2.0/files/{file['id']}/content", headers=auth(primary))
    assert content.status_code == 200 and content.content == b"%PDF app content"
    version = http.post(emulator.url + f"/api/2.0/files/{file['id']}/content", headers=auth(primary),
                        files={"attributes": (None, "{}"), "file": ("x", b"%PDF two")})
    assert version.status_code == 200
    embed = http.get(emulator.url + f"/2.0/files/{file['id']}", headers=auth(primary),
                     params={"fields": "expiring_embed_link"})
    assert embed.status_code == 200 and embed.json()["expiring_embed_link"]["url"]
    # App Tokens do not expire with access tokens
    assert http.delete(emulator.url + f"/2.0/files/{file['id']}", headers=auth(primary)).status_code == 204


@pytest.mark.parametrize("method, path, kwargs", [
    ("GET", "/2.0/folders/0/items", {}),
    ("GET", "/2.0/files/{file}", {}),                         # file information, not an embed link
    ("GET", "/2.0/users/me", {}),
    ("POST", "/2.0/folders", {"json": {"name": "f", "parent": {"id": "0"}}}),
    ("OPTIONS", "/2.0/files/content", {"json": {"name": "n.txt", "parent": {"id": "0"}}}),
    ("PUT", "/2.0/files/{file}", {"json": {"name": "renamed.pdf"}}),
    ("POST", "/2.0/files/{file}/copy", {"json": {"parent": {"id": "0"}, "name": "c.pdf"}}),
])
def test_app_tokens_may_not_do_anything_else(emulator: BoxEmulator, http: requests.Session, app_setup: dict[str, Any],
                                             method: str, path: str, kwargs: dict[str, Any]) -> None:
    response = http.request(method, emulator.url + path.format(file=app_setup["file"]["id"]),
                            headers=auth(app_setup["primary"]), **kwargs)
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"


def test_file_tokens_from_app_tokens_and_the_secondary_token(emulator: BoxEmulator, http: requests.Session,
                                                             app_setup: dict[str, Any]) -> None:
    file = app_setup["file"]
    file_token = exchanged(emulator, http, app_setup["primary"], "item_preview", file_url(file["id"]))["access_token"]
    # a file token is still an App Token app's token: only what the app may do
    assert http.get(emulator.url + "/2.0/folders/0/items", headers=auth(file_token)).status_code == 403
    assert http.get(emulator.url + f"/2.0/files/{file['id']}", headers=auth(file_token),
                    params={"fields": "expiring_embed_link"}).status_code == 200
    # the primary is revoked (rollover): it stops at once, the secondary keeps working
    emulator.revoke_app_token(app_setup["primary"])
    assert http.get(emulator.url + f"/2.0/files/{file['id']}/content", headers=auth(app_setup["primary"])).status_code == 401
    refused(exchange(emulator, http, app_setup["primary"], "item_preview", file_url(file["id"])), "invalid_grant")
    content = http.get(emulator.url + f"/2.0/files/{file['id']}/content", headers=auth(app_setup["secondary"]))
    assert content.status_code == 200 and content.content == b"%PDF app content"
    # a new primary can be generated
    fresh = emulator.generate_app_token(app_setup["client_id"])
    assert http.get(emulator.url + f"/2.0/files/{file['id']}/content", headers=auth(fresh)).status_code == 200


def test_a_service_account_may_name_an_item_of_a_user_it_acts_as(
        emulator: BoxEmulator, http: requests.Session, token_for: TokenFactory, alice_setup: dict[str, Any]) -> None:
    """An app with the As-User feature and enterprise access: its service account's token may be exchanged
    for a user's file (the As-User header applies when the new token is used); without them it may not."""
    service = token_for()  # the enterprise subject: the app's service account
    body = exchanged(emulator, http, service, "item_download", file_url(alice_setup["file"]["id"]))
    assert body["restricted_to"][0]["object"]["id"] == alice_setup["file"]["id"]
    client_id, secret = emulator.create_ccg_app(scopes=("root_readwrite",), as_user_header=False, enterprise_access=False)
    app_only = client_credentials_token(emulator, http, client_id, secret)
    refused(exchange(emulator, http, app_only, "item_download", file_url(alice_setup["file"]["id"])), "invalid_resource")
