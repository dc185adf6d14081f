"""Errors: one mapping from Box to Python, messages with Box's code and request id; bad inputs refused
before any request where that is possible."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from boxfs import BoxFileSystem
from boxfs.api.errors import BoxAuthError
from boxfs.names import BoxNameError, check_name


def since(emulator: Any, start: float) -> list[Any]:
    time.sleep(0.05)
    return [r for r in emulator.request_log.records if r.started >= start]


def twin(fs: BoxFileSystem) -> BoxFileSystem:
    return BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                         skip_instance_cache=True)


def test_conflict_maps_to_file_exists_with_code_and_request_id(fs: BoxFileSystem, emulator: Any) -> None:
    fs.ls("")  # fs now believes the root is empty
    twin(fs).mkdir("taken")
    t = time.monotonic()
    with pytest.raises(FileExistsError) as info:
        fs._create_folder("", "0", "taken")
    err = info.value
    rec = [r for r in since(emulator, t) if r.route == "/folders" and r.status == 409][-1]
    assert err.box_code == "item_name_in_use" and err.box_status == 409
    assert err.box_request_id == rec.request_id
    assert "item_name_in_use" in str(err) and rec.request_id in str(err)


def test_stale_item_maps_to_file_not_found_with_request_id(fs: BoxFileSystem, emulator: Any) -> None:
    fs.pipe_file("gone.txt", b"soon gone")
    twin(fs).rm("gone.txt")
    with pytest.raises(FileNotFoundError) as info:
        fs.cat_file("gone.txt")
    assert info.value.box_code == "not_found" and info.value.box_request_id
    assert info.value.box_request_id in str(info.value)


def test_foreign_folder_maps_to_permission_or_not_found(alice_fs: BoxFileSystem, bob_fs: BoxFileSystem,
                                                        unique: str) -> None:
    bob_fs.mkdir(unique)
    folder = bob_fs.info(unique)["id"]
    with pytest.raises((PermissionError, FileNotFoundError)) as info:
        alice_fs._fetch_listing("x", folder)
    assert info.value.box_request_id and info.value.box_code
    bob_fs.rm(unique, recursive=True)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("back\\slash", "must not contain '/' or"),
        ("..", "must not be '..'"),
        (".", "must not be '.'"),
        ("trailing ", "space"),
        ("del\x7fhere", "control"),
        ("x" * 256, "at most 255"),
        ("tab\there", "control"),
    ],
)
def test_bad_names_refused_before_any_request(name: str, rule: str, fs: BoxFileSystem, emulator: Any) -> None:
    fs.ls("")
    fs.pipe_file("ok.txt", b"x")
    t = time.monotonic()
    for action in (
        lambda: fs.pipe_file(f"dir/{name}", b"x"),
        lambda: fs.mkdir(name),
        lambda: fs.makedirs(f"a/{name}/b"),
        lambda: fs.mv("ok.txt", name),
        lambda: fs.cp_file("ok.txt", name),
        lambda: fs.open(name, "wb"),
    ):
        with pytest.raises(ValueError) as info:
            action()
        assert isinstance(info.value, BoxNameError)
        assert rule in str(info.value)
    assert since(emulator, t) == []


def test_empty_name_and_slash_in_a_name() -> None:
    with pytest.raises(BoxNameError, match="empty"):
        check_name("")
    with pytest.raises(BoxNameError, match="'/'"):
        check_name("a/b")
    assert check_name("x" * 255) == "x" * 255


def test_rm_of_the_root_and_mkdir_of_an_existing_path(fs: BoxFileSystem, emulator: Any) -> None:
    fs.mkdir("exists")
    t = time.monotonic()
    with pytest.raises(PermissionError, match="root"):
        fs.rm("", recursive=True)
    with pytest.raises(PermissionError, match="root"):
        fs.rm("box://", recursive=True)
    with pytest.raises(FileExistsError):
        fs.mkdir("exists")
    assert since(emulator, t) == []


def test_revoked_app_is_a_clear_auth_error(emulator: Any) -> None:
    cfg = emulator.create_jwt_app()
    fs = BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls, skip_instance_cache=True)
    fs.ls("")
    client_id = json.loads(cfg)["boxAppSettings"]["clientID"]
    emulator.revoke_app(client_id)
    with pytest.raises(PermissionError) as info:
        fs.ls("", refresh=True)
    assert client_id in str(info.value) or "401" in str(info.value)
    secret = json.loads(cfg)["boxAppSettings"]["clientSecret"]
    assert secret not in str(info.value)


def test_unknown_client_is_refused_by_box(emulator: Any) -> None:
    cfg = json.loads(emulator.create_jwt_app())
    cfg["boxAppSettings"]["clientID"] = "0" * 32
    fs = BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls, skip_instance_cache=True)
    with pytest.raises(BoxAuthError) as info:
        fs.ls("")
    assert "0" * 32 in str(info.value) and info.value.box_code


def test_key_not_matching_the_registered_public_key(emulator: Any) -> None:
    mine = json.loads(emulator.create_jwt_app())
    other = json.loads(emulator.create_jwt_app())
    mine["boxAppSettings"]["appAuth"]["privateKey"] = other["boxAppSettings"]["appAuth"]["privateKey"]
    mine["boxAppSettings"]["appAuth"]["passphrase"] = other["boxAppSettings"]["appAuth"]["passphrase"]
    fs = BoxFileSystem(jwt_config=mine, base_urls=emulator.base_urls, skip_instance_cache=True)
    with pytest.raises(BoxAuthError) as info:
        fs.ls("")
    assert mine["boxAppSettings"]["clientID"] in str(info.value)


def test_app_without_as_user_feature(emulator: Any, alice_id: str) -> None:
    cfg = emulator.create_jwt_app(as_user_header=False)
    fs = BoxFileSystem(jwt_config=cfg, as_user=alice_id, base_urls=emulator.base_urls, skip_instance_cache=True)
    with pytest.raises(PermissionError) as info:
        fs.ls("")
    assert info.value.box_code


def test_app_without_enterprise_access_cannot_look_up_logins(emulator: Any, alice_id: str) -> None:
    cfg = emulator.create_jwt_app(enterprise_access=False)
    with pytest.raises((PermissionError, ValueError)):
        BoxFileSystem(jwt_config=cfg, as_user="alice@example.com", base_urls=emulator.base_urls,
                      skip_instance_cache=True)


def test_exists_raises_refused_credentials_instead_of_saying_false(emulator: Any) -> None:
    cfg = emulator.create_jwt_app()
    fs = BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls, skip_instance_cache=True)
    assert fs.exists("") and not fs.exists("nothing-here")
    emulator.revoke_app(json.loads(cfg)["boxAppSettings"]["clientID"])
    fs.invalidate_cache()
    with pytest.raises(BoxAuthError):
        fs.exists("nothing-here")
