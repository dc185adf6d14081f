"""Impersonation with As-User: by email and by id, one shared app token, and user isolation."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from boxfs import BoxFileSystem


def since(emulator: Any, start: float) -> list[Any]:
    time.sleep(0.05)
    return [r for r in emulator.request_log.records if r.started >= start]


def test_as_user_by_email_and_by_id_act_as_the_same_user(make_fs: Any, new_user: Any, emulator: Any) -> None:
    uid, login = new_user("who")
    by_email = make_fs(as_user=login.upper())
    by_id = make_fs(as_user=uid)
    assert by_email.as_user_id == by_id.as_user_id == uid
    by_email.pipe_file("hello.txt", b"hi")
    t = time.monotonic()
    assert by_id.cat_file("hello.txt") == b"hi"
    recs = [r for r in since(emulator, t) if r.host == "api"]
    assert recs and all(r.as_user == uid and str(r.user_id) == uid for r in recs)
    assert by_id.user_id == uid


def test_login_is_resolved_once_per_process(make_fs: Any, new_user: Any, emulator: Any) -> None:
    _uid, login = new_user("once")
    make_fs(as_user=login)
    t = time.monotonic()
    for _ in range(3):
        make_fs(as_user=login)
    assert not [r for r in since(emulator, t) if r.route == "/users"]


def test_without_as_user_the_service_account_acts(make_fs: Any, emulator: Any, jwt_config: str) -> None:
    import json

    fs = make_fs()
    client_id = json.loads(jwt_config)["boxAppSettings"]["clientID"]
    assert fs.as_user_id is None
    assert fs.user_id == str(emulator.service_account_id(client_id))


def test_alice_cannot_see_or_touch_bobs_files(alice_fs: BoxFileSystem, bob_fs: BoxFileSystem, unique: str,
                                              make_fs: Any, alice_id: str) -> None:
    bob_fs.pipe_file(f"{unique}/private.txt", b"bob only")
    bob_folder = bob_fs.info(unique)["id"]
    bob_file = bob_fs.info(f"{unique}/private.txt")["id"]
    assert not alice_fs.exists(unique)
    assert unique not in alice_fs.ls("", detail=False)
    # by id, around the path layer: Box refuses alice
    with pytest.raises((PermissionError, FileNotFoundError)):
        alice_fs._read_range(unique, bob_file, 0, 3)
    with pytest.raises((PermissionError, FileNotFoundError)):
        alice_fs.transport.request("DELETE", alice_fs.transport.api(f"/files/{bob_file}"))
    jailed = make_fs(as_user=alice_id, root_folder_id=bob_folder)
    with pytest.raises((PermissionError, FileNotFoundError)):
        jailed.ls("")
    with pytest.raises((PermissionError, FileNotFoundError)):
        jailed.pipe_file("intruder.txt", b"x")
    assert bob_fs.cat_file(f"{unique}/private.txt") == b"bob only"
    assert bob_fs.ls(unique, detail=False, refresh=True) == [f"{unique}/private.txt"]
    bob_fs.rm(unique, recursive=True)


def test_caches_are_per_filesystem_and_token_is_shared(alice_fs: BoxFileSystem, bob_fs: BoxFileSystem,
                                                      unique: str) -> None:
    alice_fs.pipe_file(f"{unique}.txt", b"a")
    assert alice_fs.cache is not bob_fs.cache
    assert bob_fs.cache.get(f"{unique}.txt") is None
    assert not bob_fs.exists(f"{unique}.txt")
    assert alice_fs.provider is bob_fs.provider
    alice_fs.rm(f"{unique}.txt")


def test_many_users_one_token_one_refresh(make_fs: Any, new_user: Any, emulator: Any) -> None:
    users = [new_user("many") for _ in range(8)]
    filesystems = [make_fs(as_user=uid) for uid, _ in users]
    for f in filesystems:
        f.ls("")
    emulator.expire_tokens()
    t = time.monotonic()
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(filesystems))

    def work(f: BoxFileSystem) -> None:
        try:
            barrier.wait()
            f.pipe_file("after-expiry.txt", b"ok")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f,)) for f in filesystems]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    token_requests = [r for r in since(emulator, t) if r.route == "/oauth2/token"]
    assert len(token_requests) == 1, "every filesystem of one app must share one refresh"
    for f in filesystems:
        assert f.cat_file("after-expiry.txt") == b"ok"
