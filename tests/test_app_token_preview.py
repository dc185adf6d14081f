"""App Token auth (``app_token=``, the secondary token taking over when the primary is revoked), embed URLs
(``fs.embed_url``) and annotator tokens (``fs.annotator_token``), against the emulator over real HTTP.

API calls are counted from the emulator's request log: an embed URL is one request, a refused input none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from boxfs import BoxFileSystem
from boxfs.config import BoxConfigError
from boxfs.emulator import BoxEmulator


def upload_as(emu: BoxEmulator, token: str, name: str, data: bytes, parent: str = "0") -> str:
    """What an App Token app does to put content in Box: Upload File, into its service account's root."""
    resp = requests.post(emu.url + "/api/2.0/files/content", headers={"Authorization": f"Bearer {token}"},
                         files={"attributes": (None, json.dumps({"name": name, "parent": {"id": parent}})),
                                "file": (name, data)})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["entries"][0]["id"])


@pytest.fixture
def app(emulator: BoxEmulator) -> dict[str, Any]:
    client_id, primary, secondary = emulator.create_app_token_app()
    file_id = upload_as(emulator, primary, "manual.pdf", b"%PDF the manual")
    return {"client_id": client_id, "primary": primary, "secondary": secondary, "file_id": file_id}


def user_subject_fs(emulator: BoxEmulator, make_fs: Callable[..., BoxFileSystem], user_id: str) -> BoxFileSystem:
    """A filesystem whose token's subject is the user (CCG, ``user_id=``): As-User tokens cannot be exchanged."""
    client_id, secret = emulator.create_ccg_app(scopes=("root_readwrite",), as_user_header=False,
                                                enterprise_access=True)
    return make_fs(client_id=client_id, client_secret=secret, user_id=user_id)


def app_fs(emulator: BoxEmulator, app: dict[str, Any], **options: Any) -> BoxFileSystem:
    return BoxFileSystem(app_token=(app["primary"], app["secondary"]), client_id=app["client_id"],
                         base_urls=emulator.base_urls, skip_instance_cache=True, **options)


# -- embed URLs ----------------------------------------------------------------------------------------------


def test_embed_url_by_path_is_one_request_and_opens_the_preview(fs: BoxFileSystem, emulator: BoxEmulator) -> None:
    fs.pipe_file("/docs/[draft] report?.pdf", b"%PDF draft")
    fs.info("/docs/[draft] report?.pdf")
    emulator.request_log.clear()
    url = fs.embed_url("box://docs/[draft] report?.pdf")
    assert emulator.request_log.count() == 1
    assert emulator.request_log.count(method="GET", route="/files/{file_id}") == 1
    page = requests.get(url)
    assert page.status_code == 200 and "[draft] report?.pdf" in page.text


def test_embed_url_refusals(fs: BoxFileSystem, emulator: BoxEmulator) -> None:
    fs.mkdir("/folder")
    with pytest.raises(IsADirectoryError):
        fs.embed_url("/folder")
    with pytest.raises(FileNotFoundError):
        fs.embed_url("/folder/missing.pdf")
    emulator.request_log.clear()
    with pytest.raises(BoxConfigError, match="not both"):
        fs.embed_url("/folder", file_id="123")
    with pytest.raises(BoxConfigError, match="digits"):
        fs.embed_url(file_id="../123")
    assert emulator.request_log.count() == 0


# -- annotator tokens ----------------------------------------------------------------------------------------


def test_annotator_token_previews_one_file_as_the_external_user(
        make_fs: Callable[..., BoxFileSystem], new_user: Callable[..., tuple[str, str]], emulator: BoxEmulator) -> None:
    user_id, _ = new_user("annot")
    fs = user_subject_fs(emulator, make_fs, user_id)
    assert fs.as_user_id is None and fs.credentials.user_id == user_id
    fs.pipe_file("/plan.pdf", b"%PDF plan")
    fs.pipe_file("/other.pdf", b"%PDF other")
    external = "customer-" + "9" * 39  # 48 characters, Box's longest
    token = fs.annotator_token("/plan.pdf", external_id=external, display_name="Grace Customer")
    plan, other = fs.info("/plan.pdf")["id"], fs.info("/other.pdf")["id"]
    auth = {"Authorization": f"Bearer {token}"}
    link = requests.get(emulator.url + f"/2.0/files/{plan}", params={"fields": "expiring_embed_link"}, headers=auth)
    assert link.status_code == 200 and link.json()["expiring_embed_link"]["url"]
    assert requests.get(emulator.url + f"/2.0/files/{other}", headers=auth).status_code == 403
    assert requests.get(emulator.url + f"/2.0/files/{plan}/content", headers=auth,
                        allow_redirects=False).status_code == 403  # preview, not download
    assert emulator.annotator_of(token) == (external, "Grace Customer")


def test_annotator_token_refusals_come_before_any_request(
        fs: BoxFileSystem, make_fs: Callable[..., BoxFileSystem], new_user: Callable[..., tuple[str, str]],
        emulator: BoxEmulator) -> None:
    user_id, _ = new_user("annot")
    subject_fs = user_subject_fs(emulator, make_fs, user_id)
    subject_fs.pipe_file("/a.pdf", b"%PDF")
    subject_fs.info("/a.pdf")
    emulator.request_log.clear()
    with pytest.raises(BoxConfigError, match="at most 48"):
        subject_fs.annotator_token("/a.pdf", external_id="x" * 49, display_name="Too Long")
    with pytest.raises(BoxConfigError, match="display_name"):
        subject_fs.annotator_token("/a.pdf", external_id="u1", display_name=" ")
    with pytest.raises(BoxConfigError, match="control characters"):
        subject_fs.annotator_token("/a.pdf", external_id="u1\x7f", display_name="Del")
    with pytest.raises(BoxConfigError, match="As-User"):
        fs.annotator_token("/a.pdf", external_id="u1", display_name="Via As-User")
    assert emulator.request_log.count() == 0


# -- App Token auth ------------------------------------------------------------------------------------------


def test_app_token_embed_and_annotator_by_file_id(emulator: BoxEmulator, app: dict[str, Any]) -> None:
    fs = app_fs(emulator, app)
    assert requests.get(fs.embed_url(file_id=app["file_id"])).status_code == 200
    token = fs.annotator_token(file_id=app["file_id"], external_id="reader-7", display_name="Reader Seven")
    assert emulator.annotator_of(token) == ("reader-7", "Reader Seven")
    # what App Token auth may not do is refused by Box and reported as a permission error
    with pytest.raises(PermissionError, match="App Token"):
        fs.ls("/")


def test_secondary_app_token_takes_over_when_the_primary_is_revoked(emulator: BoxEmulator,
                                                                    app: dict[str, Any]) -> None:
    fs = app_fs(emulator, app)
    fs.embed_url(file_id=app["file_id"])
    emulator.revoke_app_token(app["primary"])  # the console's rollover
    emulator.request_log.clear()
    assert fs.embed_url(file_id=app["file_id"])
    statuses = [r.status for r in emulator.request_log.records]
    assert statuses == [401, 200]  # one refusal of the primary, then the secondary
    emulator.request_log.clear()
    fs.embed_url(file_id=app["file_id"])
    assert [r.status for r in emulator.request_log.records] == [200]  # the primary is not tried again
    emulator.revoke_app_token(app["secondary"])
    with pytest.raises(PermissionError):
        fs.embed_url(file_id=app["file_id"])


@pytest.mark.parametrize("value, message", [
    (("a", "b", "c"), "primary App Token, or"),
    (("primary", ""), "secondary App Token must be"),
    ("with space", "primary App Token must be"),
    (42, "primary App Token, or"),
])
def test_app_token_option_refusals(emulator: BoxEmulator, value: Any, message: str) -> None:
    with pytest.raises(BoxConfigError, match=message):
        BoxFileSystem(app_token=value, base_urls=emulator.base_urls, skip_instance_cache=True)


def test_app_tokens_never_appear_in_repr_or_errors(emulator: BoxEmulator, app: dict[str, Any]) -> None:
    fs = app_fs(emulator, app)
    with pytest.raises(PermissionError) as info:
        fs.ls("/")
    for text in (repr(fs), repr(fs.credentials), str(info.value)):
        assert app["primary"] not in text and app["secondary"] not in text
