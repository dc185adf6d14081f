"""Raw HTTP behaviour the SDK does not expose: connections, the request log, faults, tokens, persistence,
and the 302 download path."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from box_sdk_gen import BoxCCGAuth, BoxClient, CCGConfig, FolderFull, PreflightFileUploadCheckParent
from support import faults_cleared, injected_faults

from boxfs.emulator import BoxEmulator

from .conftest import checked_session, sdk_network_session
from .helpers import TokenFactory, ccg_token, raw_upload, upload
from .openapi_check import load_spec


@pytest.fixture(scope="module")
def private_emu() -> Iterator[BoxEmulator]:
    """An emulator of this module's own: these tests change latency, faults and token lifetimes."""
    with BoxEmulator() as emulator:
        yield emulator


@pytest.fixture
def emu2(private_emu: BoxEmulator) -> Iterator[BoxEmulator]:
    """The private emulator, reset to normal behaviour after each test."""
    with faults_cleared(private_emu):
        yield private_emu
    private_emu.set_latency(0.0)
    private_emu.set_token_ttl(3600)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def records_since(emulator: BoxEmulator, since: float, expected: int, timeout: float = 3.0) -> list:
    """The request-log records of requests that started at or after ``since`` (``time.monotonic()``),
    once there are ``expected`` of them.

    The server adds a record when it has finished sending the response, so a client can hold the
    response a moment before the record exists; ``request_log.clear()`` right after a call can therefore
    be followed by that call's record. Filtering by start time avoids both races.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in emulator.request_log.records if r.started >= since]
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.01)


def test_keep_alive_on_one_connection(emulator: BoxEmulator, token_for: TokenFactory) -> None:
    token = token_for()
    parts = urlsplit(emulator.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        spec = load_spec()
        sockets = []
        for _ in range(5):
            conn.request("GET", "/2.0/users/me", headers=auth(token))
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200 and response.version == 11
            assert (response.getheader("Connection") or "").lower() != "close"
            assert spec.validate("GET", "/users/me", 200, json.loads(body)) == []
            sockets.append(conn.sock)
        assert sockets[0] is not None and all(s is sockets[0] for s in sockets)
        # an error response keeps the connection too
        conn.request("GET", "/2.0/folders/987654321", headers=auth(token))
        response = conn.getresponse()
        assert response.status == 404
        assert spec.validate("GET", "/folders/{folder_id}", 404, json.loads(response.read())) == []
        assert conn.sock is sockets[0]
    finally:
        conn.close()


def test_32_concurrent_connections(emu2: BoxEmulator) -> None:
    with checked_session() as http:
        token = ccg_token(emu2, http)
    emu2.set_latency(0.4)
    since = time.monotonic()
    barrier = threading.Barrier(32)

    def one(_: int) -> int:
        with checked_session() as session:  # a connection of its own
            barrier.wait()
            return session.get(emu2.url + "/2.0/users/me", headers=auth(token), timeout=30).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(one, range(32)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 32
    assert elapsed < 0.4 * 4, f"32 requests with 0.4 s latency took {elapsed:.2f} s: not served concurrently"
    # the server's own records overlap: all 32 were in flight at one moment
    records = [r for r in records_since(emu2, since, 32) if r.route == "/users/me"]
    assert len(records) == 32
    latest_start = max(r.started for r in records)
    assert all(r.finished >= latest_start for r in records)


def test_request_log() -> None:
    with BoxEmulator() as emulator, checked_session() as http:  # its own emulator: the whole log is this test's
        token = ccg_token(emulator, http)
        user_id = http.get(emulator.url + "/2.0/users/me", headers=auth(token)).json()["id"]
        records_since(emulator, 0.0, 2)  # the token request and /users/me are logged
        since = time.monotonic()
        for _ in range(3):
            assert http.get(emulator.url + "/2.0/folders/0/items", headers=auth(token)).status_code == 200
        file = raw_upload(emulator, http, token, "0", "logged.bin", b"z" * 5000)
        content = http.get(emulator.url + f"/2.0/files/{file['id']}/content", headers=auth(token))
        assert content.content == b"z" * 5000
        http.get(emulator.url + "/2.0/folders/987654321", headers=auth(token))

        records = records_since(emulator, since, 7)
        assert len(records) == 7
        log = emulator.request_log
        assert log.count(method="GET", route="/folders/{folder_id}/items") == 3
        items = [r for r in records if r.route == "/folders/{folder_id}/items"]
        assert all(
            r.status == 200 and r.user_id == user_id and r.host == "api" and r.bytes_out > 0 for r in items
        )
        assert all(r.path == "/2.0/folders/0/items" and r.fault is None for r in items)
        (up,) = [r for r in records if r.route == "/files/content"]
        assert up.method == "POST" and up.host == "upload" and up.status == 201 and up.bytes_in >= 5000
        (redirect,) = [r for r in records if r.route == "/files/{file_id}/content"]
        assert redirect.status == 302 and redirect.host == "api"
        (dl,) = [r for r in records if r.host == "download"]
        assert dl.route == "/download/{token}" and dl.status == 200 and dl.bytes_out >= 5000
        assert log.count(status=404) == 1
        assert log.count(route="/oauth2/token") == 1 and log.count() == 9
        assert all(r.request_id and r.finished >= r.started for r in records)
        log.clear()
        assert log.records == [] and log.count() == 0


def test_oauth_requests_are_logged(emu2: BoxEmulator) -> None:
    since = time.monotonic()
    with checked_session() as http:
        ccg_token(emu2, http)
    (record,) = records_since(emu2, since, 1)
    assert record.route == "/oauth2/token" and record.host == "oauth2" and record.status == 200


def test_fault_429_with_retry_after(emu2: BoxEmulator) -> None:
    with checked_session() as http:
        token = ccg_token(emu2, http)
        since = time.monotonic()
        emu2.inject_faults(rate=1.0, kinds=("429",), route=r"/folders/", retry_after=3, count=1, seed=1)
        limited = http.get(emu2.url + "/2.0/folders/0", headers=auth(token))
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "3"
        assert limited.json()["code"] == "rate_limit_exceeded"
        # the route pattern matters: other routes are untouched
        assert http.get(emu2.url + "/2.0/users/me", headers=auth(token)).status_code == 200
        # count=1: the next one goes through
        assert http.get(emu2.url + "/2.0/folders/0", headers=auth(token)).status_code == 200
    assert [r.fault for r in records_since(emu2, since, 3) if r.status == 429] == ["429"]


def test_fault_500_and_drop(emu2: BoxEmulator) -> None:
    with checked_session() as http:
        token = ccg_token(emu2, http)
        emu2.inject_faults(rate=1.0, kinds=("500",), route=r"/users/me", count=1, seed=1)
        failed = http.get(emu2.url + "/2.0/users/me", headers=auth(token))
        assert failed.status_code == 500 and failed.json()["type"] == "error"
        emu2.inject_faults(rate=1.0, kinds=("drop",), route=r"/users/me", count=1, seed=1)
        with pytest.raises(requests.ConnectionError):
            http.get(emu2.url + "/2.0/users/me", headers=auth(token))
        assert http.get(emu2.url + "/2.0/users/me", headers=auth(token)).status_code == 200


def test_faults_are_seeded(emu2: BoxEmulator) -> None:
    def pattern() -> list[int]:
        with (injected_faults(emu2, rate=0.5, kinds=("500", "503"), route=r"/users/me", seed=42),
              checked_session() as session):
            return [
                session.get(emu2.url + "/2.0/users/me", headers=auth(token)).status_code for _ in range(30)
            ]

    with checked_session() as http:
        token = ccg_token(emu2, http)
    first, second = pattern(), pattern()
    assert first == second
    assert {500, 503, 200} <= set(first)
    assert 5 <= first.count(200) <= 25


def sdk_ccg_client(emulator: BoxEmulator) -> tuple[str, BoxClient]:
    """A new CCG app and an SDK client acting as its service account (the SDK's own retry strategy on)."""
    client_id, secret = emulator.create_ccg_app(scopes=("root_readwrite",))
    client = BoxClient(
        auth=BoxCCGAuth(CCGConfig(client_id, secret, enterprise_id=emulator.enterprise_id)),
        network_session=sdk_network_session(emulator),
    )
    return client_id, client


def test_sdk_retries_through_429(emu2: BoxEmulator) -> None:
    _, client = sdk_ccg_client(emu2)
    client.users.get_user_me()
    since = time.monotonic()
    emu2.inject_faults(rate=1.0, kinds=("429",), route=r"/folders/", retry_after=1, count=1, seed=3)
    assert client.folders.get_folder_by_id("0").id == "0"
    assert [r.status for r in records_since(emu2, since, 2)] == [429, 200]


def test_token_ttl_and_expiry(emu2: BoxEmulator) -> None:
    with checked_session() as http:
        emu2.set_token_ttl(60)
        client_id, secret = emu2.create_ccg_app(scopes=("root_readwrite",))
        data = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "box_subject_type": "enterprise",
            "box_subject_id": emu2.enterprise_id,
        }
        issued = http.post(emu2.url + "/oauth2/token", data=data).json()
        assert issued["expires_in"] == 60
        token = issued["access_token"]
        assert http.get(emu2.url + "/2.0/users/me", headers=auth(token)).status_code == 200
        emu2.expire_tokens()
        expired = http.get(emu2.url + "/2.0/users/me", headers=auth(token))
        assert expired.status_code == 401
        assert "invalid_token" in expired.headers.get("WWW-Authenticate", "")
        emu2.set_token_ttl(1)
        short = http.post(emu2.url + "/oauth2/token", data=data).json()
        assert short["expires_in"] == 1
        assert http.get(emu2.url + "/2.0/users/me", headers=auth(short["access_token"])).status_code == 200
        time.sleep(1.2)
        assert http.get(emu2.url + "/2.0/users/me", headers=auth(short["access_token"])).status_code == 401


def test_sdk_refreshes_expired_token(emu2: BoxEmulator) -> None:
    _, client = sdk_ccg_client(emu2)
    me = client.users.get_user_me().id
    emu2.expire_tokens()
    since = time.monotonic()
    assert client.users.get_user_me().id == me
    assert [(r.route, r.status) for r in records_since(emu2, since, 3)] == [
        ("/users/me", 401),
        ("/oauth2/token", 200),
        ("/users/me", 200),
    ]


def test_revoked_app(emu2: BoxEmulator) -> None:
    with checked_session() as http:
        client_id, secret = emu2.create_ccg_app(scopes=("root_readwrite",))
        data = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "box_subject_type": "enterprise",
            "box_subject_id": emu2.enterprise_id,
        }
        token = http.post(emu2.url + "/oauth2/token", data=data).json()["access_token"]
        emu2.revoke_app(client_id)
        assert http.get(emu2.url + "/2.0/users/me", headers=auth(token)).status_code == 401
        refused = http.post(emu2.url + "/oauth2/token", data=data)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"


def test_download_redirect_and_ranges(
    emulator: BoxEmulator, http: requests.Session, token_for: TokenFactory
) -> None:
    token = token_for()
    data = bytes(range(256)) * 64
    file = raw_upload(emulator, http, token, "0", f"ranges-{time.monotonic_ns()}.bin", data)
    redirect = http.get(
        emulator.url + f"/2.0/files/{file['id']}/content", headers=auth(token), allow_redirects=False
    )
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert urlsplit(location).path.startswith("/download/")
    # the download URL is pre-authorized, like dl.boxcloud.com's
    whole = requests.get(location)
    assert whole.status_code == 200 and whole.content == data
    assert int(whole.headers["Content-Length"]) == len(data)
    part = requests.get(location, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    assert int(part.headers["Content-Length"]) == 1000
    tail = http.get(
        emulator.url + f"/2.0/files/{file['id']}/content", headers=auth(token) | {"Range": "bytes=-10"}
    )
    assert tail.status_code == 206 and tail.content == data[-10:]
    beyond = requests.get(location, headers={"Range": f"bytes={len(data) + 5}-"})
    assert beyond.status_code == 416
    # a made-up download token is not a way in
    assert requests.get(emulator.url + "/download/not-a-token").status_code in (403, 404)


def test_persistence_across_restart(tmp_path: Path) -> None:
    data = b"persist me\n" * 1000
    with BoxEmulator(data_dir=tmp_path) as first, checked_session() as http:
        user_id = first.create_user("persist@example.com", name="Persist")
        client_id, secret = first.create_ccg_app(scopes=("root_readwrite",))
        token = ccg_token(first, http, user_id=user_id)
        file = raw_upload(first, http, token, "0", "kept.txt", data)
    with BoxEmulator(data_dir=tmp_path) as second, checked_session() as http:
        assert second.enterprise_id == first.enterprise_id
        token = ccg_token(second, http, user_id=user_id)
        me = http.get(second.url + "/2.0/users/me", headers=auth(token)).json()
        assert me["id"] == user_id and me["login"] == "persist@example.com"
        info = http.get(second.url + f"/2.0/files/{file['id']}", headers=auth(token)).json()
        assert info["name"] == "kept.txt" and info["sha1"] == hashlib.sha1(data).hexdigest()
        assert http.get(second.url + f"/2.0/files/{file['id']}/content", headers=auth(token)).content == data
        # apps persist too: the app made before the restart still gets tokens
        response = http.post(
            second.url + "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "box_subject_type": "enterprise",
                "box_subject_id": second.enterprise_id,
            },
        )
        assert response.status_code == 200


def test_fault_drop_after_truncates_the_body(emu2: BoxEmulator) -> None:
    data = bytes(range(256)) * 2048  # 512 KiB
    with checked_session() as http:
        token = ccg_token(emu2, http)
        file = raw_upload(emu2, http, token, "0", "truncated.bin", data)
        emu2.inject_faults(rate=1.0, kinds=("drop_after",), route=r"^/download/", count=1, seed=1)
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
            http.get(emu2.url + f"/2.0/files/{file['id']}/content", headers=auth(token)).raise_for_status()
        again = http.get(emu2.url + f"/2.0/files/{file['id']}/content", headers=auth(token))
        assert again.status_code == 200 and again.content == data


def test_fault_503_and_expire(emu2: BoxEmulator) -> None:
    with checked_session() as http:
        token = ccg_token(emu2, http)
        emu2.inject_faults(rate=1.0, kinds=("503",), route=r"/users/me", count=1, retry_after=2, seed=1)
        busy = http.get(emu2.url + "/2.0/users/me", headers=auth(token))
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
    client_id, client = sdk_ccg_client(emu2)
    client.users.get_user_me()
    since = time.monotonic()
    emu2.inject_faults(rate=1.0, kinds=("expire",), route=r"/users/me", count=1, seed=1)
    assert client.users.get_user_me().id == emu2.service_account_id(client_id)
    assert [(r.route, r.status) for r in records_since(emu2, since, 3)] == [
        ("/users/me", 401),
        ("/oauth2/token", 200),
        ("/users/me", 200),
    ]


def test_log_routes_are_the_spec_templates(emulator: BoxEmulator, alice_client: BoxClient, workdir: FolderFull) -> None:
    """The request log's ``route`` is the OpenAPI path template of the request (docs/emulator.md)."""
    since = time.monotonic()
    file = upload(alice_client, workdir.id, "routes.txt", b"r")
    alice_client.folders.get_folder_items(workdir.id)
    alice_client.files.get_file_by_id(file.id)
    alice_client.downloads.download_file(file.id).read()
    alice_client.uploads.preflight_file_upload_check(
        name="p.txt", size=1, parent=PreflightFileUploadCheckParent(id=workdir.id)
    )
    session = alice_client.chunked_uploads.create_file_upload_session(workdir.id, 20_000_000, "r.bin")
    alice_client.chunked_uploads.get_file_upload_session_parts(session.id)
    alice_client.chunked_uploads.delete_file_upload_session_by_id(session.id)
    alice_client.users.get_user_me()
    records = records_since(emulator, since, 10)
    spec = load_spec()
    checked = 0
    for record in records:
        if record.host == "download":
            assert record.route == "/download/{token}"
            continue
        assert record.route == spec.match_path(record.path), record
        assert record.route in spec.document["paths"], record
        checked += 1
    assert checked >= 9
