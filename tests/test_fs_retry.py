"""The single retry policy and the token seams (issue 6), exercised with the emulator's seeded faults."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import pytest
from support import faults_cleared, injected_faults

from boxfs import BoxFileSystem
from boxfs.api.errors import BoxAPIError

FAST = {"max_attempts": 12, "backoff_base": 0.005, "backoff_max": 0.05, "max_retry_after": 0.05}


def since(emulator: Any, start: float) -> list[Any]:
    time.sleep(0.05)
    return [r for r in emulator.request_log.records if r.started >= start]


def test_429_waits_for_retry_after(make_fs: Any, fs_user: Any, emulator: Any, faults: Any) -> None:
    fs = make_fs(as_user=fs_user[0])
    fs.pipe_file("x.txt", b"x")
    fs.invalidate_cache()
    faults(rate=1.0, kinds=("429",), route=r"/folders/0/items", method="GET", retry_after=1, count=1)
    t = time.monotonic()
    assert fs.ls("", detail=False) == ["x.txt"]
    assert time.monotonic() - t >= 0.95
    statuses = [r.status for r in since(emulator, t) if r.route == "/folders/{folder_id}/items"]
    assert statuses == [429, 200]


def test_workload_under_faults_is_exact(make_fs: Any, fs_user: Any, emulator: Any, tmp_path: Any) -> None:
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    files = {f"w/d{i % 4}/f{i}.bin": hashlib.sha256(str(i).encode()).digest() * (i + 1) for i in range(24)}
    # a 401 is retried exactly once, after a refresh: tokens are expired between phases instead of
    # mixing "expire" faults (two in a row would rightly fail a request)
    with injected_faults(emulator, rate=0.25, kinds=("500", "502", "503", "504", "429", "drop", "drop_after"),
                         seed=7, retry_after=0):
        for path, data in files.items():
            fs.pipe_file(path, data)
        emulator.expire_tokens()
        for path, data in files.items():
            assert fs.cat_file(path) == data
        assert fs.cat_file("w/d1/f5.bin", 3, 40) == files["w/d1/f5.bin"][3:40]
        emulator.expire_tokens()
        fs.mv("w/d0", "w/moved")
        fs.cp_file("w/d1/f1.bin", "w/copy.bin")
        fs.get("w/d2", str(tmp_path / "d2"), recursive=True)
        fs.rm("w/d3", recursive=True)
        fs.mkdir("w/empty")
    clean = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                          skip_instance_cache=True)
    expected = {p.replace("w/d0/", "w/moved/"): d for p, d in files.items() if not p.startswith("w/d3/")}
    expected["w/copy.bin"] = files["w/d1/f1.bin"]
    found = clean.find("w", detail=True)
    assert sorted(found) == sorted(expected), "a duplicate, partial or missing file"
    for path, data in expected.items():
        assert found[path]["sha1"] == hashlib.sha1(data).hexdigest()
    assert clean.isdir("w/empty") and clean.ls("w/empty") == []
    assert sorted(clean.ls("w", detail=False)) == ["w/copy.bin", "w/d1", "w/d2", "w/empty", "w/moved"]
    for local in (tmp_path / "d2").iterdir():
        assert local.read_bytes() == files[f"w/d2/{local.name}"]
    assert sorted(p.name for p in (tmp_path / "d2").iterdir()) == sorted(
        p.rsplit("/", 1)[1] for p in files if p.startswith("w/d2/"))


def test_dropped_folder_create_is_checked_not_duplicated(make_fs: Any, fs_user: Any, emulator: Any,
                                                         faults: Any) -> None:
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    fs.ls("")
    faults(rate=1.0, kinds=("drop_after",), route=r"/folders$", method="POST", count=1)
    fs.mkdir("once")
    assert fs.isdir("once")
    fresh = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                          skip_instance_cache=True)
    assert fresh.ls("", detail=False) == ["once"]


def test_dropped_upload_is_checked_by_sha1(make_fs: Any, fs_user: Any, emulator: Any, faults: Any) -> None:
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    fs.ls("")
    faults(rate=1.0, kinds=("drop_after",), route=r"/files/content$", method="POST", count=1)
    t = time.monotonic()
    fs.pipe_file("up.txt", b"uploaded once")
    posts = [r for r in since(emulator, t) if r.method == "POST" and r.route == "/files/content"]
    assert len(posts) == 1, "the upload that landed must not be sent again"
    assert fs.cat_file("up.txt") == b"uploaded once"
    faults(rate=1.0, kinds=("drop_after",), route=r"/files/\d+/content$", method="POST", count=1)
    fs.pipe_file("up.txt", b"second version")
    fs.invalidate_cache()
    assert fs.cat_file("up.txt") == b"second version"


def test_unsafe_post_without_a_check_is_not_repeated(fs: BoxFileSystem, emulator: Any, faults: Any) -> None:
    faults(rate=1.0, kinds=("drop",), route=r"/folders$", method="POST", count=1)
    t = time.monotonic()
    with pytest.raises(BoxAPIError, match="not repeated"):
        fs.transport.request("POST", fs.transport.api("/folders"), json={"name": "n", "parent": {"id": "0"}})
    assert len([r for r in since(emulator, t) if r.route == "/folders"]) == 1


def test_401_gets_exactly_one_retry_after_a_refresh(make_fs: Any, fs_user: Any, emulator: Any,
                                                    faults: Any) -> None:
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    fs.ls("")
    faults(rate=1.0, kinds=("expire",), route=r"/folders/0/items", method="GET")
    t = time.monotonic()
    with pytest.raises(PermissionError):
        fs.ls("", refresh=True)
    recs = since(emulator, t)
    assert [r.status for r in recs if r.route == "/folders/{folder_id}/items"] == [401, 401]
    assert len([r for r in recs if r.route == "/oauth2/token"]) == 1


def test_a_ready_token_is_not_refreshed(emulator: Any, jwt_config: str, faults: Any) -> None:
    client_id = json.loads(jwt_config)["boxAppSettings"]["clientID"]
    fs = BoxFileSystem(token=emulator.developer_token(client_id), base_urls=emulator.base_urls,
                       skip_instance_cache=True)
    faults(rate=1.0, kinds=("expire",), route=r"/folders/0/items", method="GET", count=1)
    with pytest.raises(PermissionError):
        fs.ls("")


def test_tokens_are_refreshed_before_they_expire(emulator: Any) -> None:
    cfg = emulator.create_jwt_app()  # a new app: a provider of its own
    emulator.set_token_ttl(2)
    try:
        fs = BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls, skip_instance_cache=True)
        t = time.monotonic()
        fs.ls("")
        time.sleep(1.7)
        fs.ls("", refresh=True)
    finally:
        emulator.set_token_ttl(3600)
    recs = since(emulator, t)
    assert len([r for r in recs if r.route == "/oauth2/token"]) == 2
    assert not [r for r in recs if r.status == 401]


def test_logs_name_requests_and_never_secrets(make_fs: Any, fs_user: Any, emulator: Any,
                                              jwt_config: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="boxfs")
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    with faults_cleared(emulator) as inject:
        inject(rate=1.0, kinds=("expire",), count=1)
        inject(rate=0.3, kinds=("503",), seed=3, retry_after=0)
        fs.pipe_file("log/me.txt", b"x")
        fs.cat_file("log/me.txt")
    emulator.expire_tokens()
    fs.ls("log", refresh=True)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.DEBUG and "/folders/" in r.getMessage() and "request id" in r.getMessage()
               for r in caplog.records)
    assert any(r.levelno == logging.INFO and "token" in r.getMessage() for r in caplog.records)
    app = json.loads(jwt_config)["boxAppSettings"]
    for secret in (app["clientSecret"], app["appAuth"]["passphrase"], app["appAuth"]["privateKey"][60:100],
                   fs.provider.token()):
        assert secret not in text


def test_get_file_resumes_after_a_cut_download(make_fs: Any, fs_user: Any, emulator: Any, faults: Any,
                                               tmp_path: Any) -> None:
    import os

    fs = make_fs(as_user=fs_user[0], retry=FAST)
    data = os.urandom(3 * 2**20 + 11)
    fs.pipe_file("cut.bin", data)
    faults(rate=1.0, kinds=("drop_after",), route=r"^/download/", method="GET", count=1)
    t = time.monotonic()
    fs.get_file("cut.bin", str(tmp_path / "cut.bin"))
    assert (tmp_path / "cut.bin").read_bytes() == data
    downloads = [r for r in since(emulator, t) if r.route == "/download/{token}"]
    assert len(downloads) == 2
    assert sum(r.bytes_out for r in downloads) < len(data) * 1.2, "the second attempt resumed, not restarted"


def test_a_shared_token_follows_the_most_patient_filesystem(emulator: Any, faults: Any) -> None:
    """Filesystems of one app share one token provider; one built with ``retry=1`` first used to leave the
    provider failing every later filesystem's token refresh on its first 5xx."""
    cfg = emulator.create_jwt_app()  # a new app: a provider of its own
    impatient = BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls, skip_instance_cache=True, retry=1)
    impatient.ls("")
    patient = BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls, skip_instance_cache=True, retry=FAST)
    faults(rate=1.0, kinds=("expire",), route=r"/folders/0/items", method="GET", count=1)  # forces a refresh
    faults(rate=1.0, kinds=("503",), route=r"/oauth2/token", count=2)  # which fails twice, then works
    t = time.monotonic()
    assert patient.ls("", refresh=True) == []
    recs = since(emulator, t)
    assert [r.status for r in recs if r.route == "/oauth2/token"] == [503, 503, 200]
