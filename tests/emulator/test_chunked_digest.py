"""The whole-file digest of a chunked session, folded in while parts arrive: the commit still checks
every byte, whatever order, retries, races and restarts the parts went through."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from boxfs.emulator import BoxEmulator
from boxfs.emulator.session_digest import SessionDigest

from .conftest import checked_session
from .helpers import TokenFactory, ccg_token

SIZE = 2 * 8 * 1024 * 1024 + 4_000_000  # three parts of Box's 8 MiB part size, the last one short


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def digest_header(data: bytes) -> str:
    return "sha=" + base64.b64encode(hashlib.sha1(data).digest()).decode()


class Session:
    """One upload session driven over raw HTTP, so each request is exactly the one a test means."""

    def __init__(self, url: str, http: requests.Session, token: str, folder_id: str, name: str, size: int) -> None:
        self.http, self.auth = http, {"Authorization": f"Bearer {token}"}
        r = http.post(url + "/api/2.0/files/upload_sessions", headers=self.auth,
                      json={"folder_id": folder_id, "file_name": name, "file_size": size})
        assert r.status_code == 201, r.text
        self.info = r.json()
        self.part_size, self.size = self.info["part_size"], size
        self.endpoints = self.info["session_endpoints"]

    def moved_to(self, url: str, token: str) -> None:
        """The same session on a restarted emulator (a new port, a new token)."""
        old = self.endpoints["upload_part"].split("/api/2.0/")[0]
        self.endpoints = {k: v.replace(old, url) for k, v in self.endpoints.items()}
        self.auth = {"Authorization": f"Bearer {token}"}

    def put(self, index: int, data: bytes, body: Any = None, http: requests.Session | None = None) -> requests.Response:
        """Part ``index`` of ``data``; ``body`` sends other bytes under its digest (an iterator: chunked)."""
        first = index * self.part_size
        chunk = data[first:first + self.part_size]
        headers = self.auth | {"Digest": digest_header(chunk),
                               "Content-Range": f"bytes {first}-{first + len(chunk) - 1}/{self.size}"}
        return (http or self.http).put(self.endpoints["upload_part"], headers=headers,
                                       data=chunk if body is None else body)

    def parts(self) -> list[dict[str, Any]]:
        r = self.http.get(self.endpoints["list_parts"], headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()["entries"]

    def commit(self, whole: bytes) -> requests.Response:
        return self.http.post(self.endpoints["commit"], headers=self.auth | {"Digest": digest_header(whole)},
                              json={"parts": self.parts()})


@pytest.fixture
def alice(emulator: BoxEmulator, token_for: TokenFactory, alice_id: str) -> Iterator[tuple[requests.Session, str]]:
    with checked_session() as http:
        yield http, token_for(alice_id)


def folder(emulator: BoxEmulator, http: requests.Session, token: str) -> str:
    r = http.post(emulator.url + "/2.0/folders", headers={"Authorization": f"Bearer {token}"},
                  json={"name": f"digest-{time.monotonic_ns()}", "parent": {"id": "0"}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def downloaded(url: str, http: requests.Session, token: str, file_id: str) -> bytes:
    r = http.get(url + f"/2.0/files/{file_id}/content", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    return r.content


def test_parts_out_of_order_and_a_wrong_digest(emulator: BoxEmulator, alice: tuple[requests.Session, str]) -> None:
    http, token = alice
    data = payload(SIZE, seed=40)
    session = Session(emulator.url, http, token, folder(emulator, http, token), "order.bin", SIZE)
    for index in (2, 0, 1):
        assert session.put(index, data).status_code == 200
    wrong = session.commit(data[:-1] + b"\0")
    assert wrong.status_code == 400 and wrong.json()["code"] == "digest_mismatch"
    # the refused commit leaves the session usable: its parts are all there and the right digest commits
    assert len(session.parts()) == 3
    done = session.commit(data)
    assert done.status_code == 201, done.text
    entry = done.json()["entries"][0]
    assert entry["sha1"] == hashlib.sha1(data).hexdigest()
    assert downloaded(emulator.url, http, token, entry["id"]) == data


def test_a_retried_part_is_refused_and_changes_nothing(emulator: BoxEmulator, alice: tuple[requests.Session, str]) -> None:
    http, token = alice
    data = payload(SIZE, seed=41)
    session = Session(emulator.url, http, token, folder(emulator, http, token), "retried.bin", SIZE)
    assert session.put(0, data).status_code == 200
    # the same part again, and other bytes for its range with their own valid digest: both 409
    for again in (data, payload(SIZE, seed=42)):
        r = session.put(0, again)
        assert r.status_code == 409 and r.json()["code"] == "range_overlaps_existing_part"
    # a part whose body does not match its digest is refused and leaves no part behind
    wrong = session.put(1, data, body=b"x" * session.part_size)
    assert wrong.status_code == 412 and wrong.json()["code"] == "sha1_mismatch"
    for index in (1, 2):
        assert session.put(index, data).status_code == 200
    assert session.commit(payload(SIZE, seed=42)).json()["code"] == "digest_mismatch"
    done = session.commit(data)
    assert done.status_code == 201
    assert downloaded(emulator.url, http, token, done.json()["entries"][0]["id"]) == data


def test_a_commit_refused_after_the_digest_check_leaves_the_session_usable(
        emulator: BoxEmulator, alice: tuple[requests.Session, str]) -> None:
    """The digest is checked, then the name is found taken (409): the session, its data and its digest stay."""
    http, token = alice
    auth = {"Authorization": f"Bearer {token}"}
    data = payload(SIZE, seed=48)
    parent = folder(emulator, http, token)
    session = Session(emulator.url, http, token, parent, "taken-later.bin", SIZE)
    for index in (1, 0, 2):
        assert session.put(index, data).status_code == 200
    squatter = http.post(emulator.url + "/api/2.0/files/content", headers=auth, files={
        "attributes": (None, json.dumps({"name": "taken-later.bin", "parent": {"id": parent}})), "file": ("f", b"s")})
    assert squatter.status_code == 201
    refused = session.commit(data)
    assert refused.status_code == 409 and refused.json()["code"] == "item_name_in_use"
    assert http.delete(emulator.url + f"/2.0/files/{squatter.json()['entries'][0]['id']}", headers=auth).status_code == 204
    assert session.commit(data[:-1] + b"!").json()["code"] == "digest_mismatch"
    done = session.commit(data)
    assert done.status_code == 201, done.text
    assert downloaded(emulator.url, http, token, done.json()["entries"][0]["id"]) == data


def test_two_requests_racing_for_one_part(emulator: BoxEmulator, alice: tuple[requests.Session, str]) -> None:
    """Two clients send different bytes for the same part at once: one is recorded, the other refused,
    and the committed file holds the recorded part's bytes only (never a mix of the two)."""
    http, token = alice
    mine, theirs = payload(SIZE, seed=43), payload(SIZE, seed=44)
    session = Session(emulator.url, http, token, folder(emulator, http, token), "race.bin", SIZE)
    part = session.part_size
    started = threading.Barrier(2, timeout=60)

    def slow_body(data: bytes) -> Iterator[bytes]:
        started.wait()
        for start in range(0, part, 1 << 20):  # in slices, so both bodies are on the wire together
            yield data[start:start + (1 << 20)]
            time.sleep(0.01)

    answers: dict[int, requests.Response] = {}

    def send(seed: int, data: bytes) -> None:
        with checked_session() as own:  # a connection each: the two requests run side by side
            answers[seed] = session.put(0, data, body=slow_body(data), http=own)

    threads = [threading.Thread(target=send, args=(i, d)) for i, d in ((43, mine), (44, theirs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers.values())
    assert statuses == [200, 409], [r.text for r in answers.values()]
    winner = mine if answers[43].status_code == 200 else theirs
    loser = theirs if winner is mine else mine
    assert session.parts()[0]["sha1"] == hashlib.sha1(winner[:part]).hexdigest()
    expected = winner[:part] + mine[part:]
    for index in (1, 2):
        assert session.put(index, mine).status_code == 200
    assert session.commit(loser[:part] + mine[part:]).json()["code"] == "digest_mismatch"
    done = session.commit(expected)
    assert done.status_code == 201
    assert downloaded(emulator.url, http, token, done.json()["entries"][0]["id"]) == expected


def test_plan_finds_parts_by_sha512(emulator: BoxEmulator, alice: tuple[requests.Session, str]) -> None:
    http, token = alice
    data = payload(SIZE, seed=45)
    session = Session(emulator.url, http, token, folder(emulator, http, token), "plan.bin", SIZE)
    for index in (0, 2):
        assert session.put(index, data).status_code == 200
    part = session.part_size
    wanted = [
        {"offset": 0, "size": part, "sha_512": hashlib.sha512(data[:part]).hexdigest().upper()},
        {"offset": part, "size": part, "sha_512": hashlib.sha512(data[part:2 * part]).hexdigest()},  # not sent
        {"offset": 2 * part, "size": SIZE - 2 * part, "sha_512": hashlib.sha512(b"other").hexdigest()},
    ]
    for _ in range(2):  # the second answer comes from the stored SHA-512, and is the same
        r = http.post(session.endpoints["plan"], headers=session.auth, json={"parts": wanted})
        assert r.status_code == 200, r.text
        plan = r.json()
        assert [h["offset"] for h in plan["hits"]] == [0] and plan["misses"] == wanted[1:]
        assert plan["hits"][0]["part_id"] == session.parts()[0]["part_id"]


def test_restart_mid_session(tmp_path: Path) -> None:
    """The running digest is memory only: a restarted emulator rebuilds it from the recorded parts."""
    data = payload(SIZE, seed=46)
    with BoxEmulator(data_dir=tmp_path) as first, checked_session() as http:
        user_id = first.create_user("restart@example.com")
        session = Session(first.url, http, ccg_token(first, http, user_id=user_id), "0", "restart.bin", SIZE)
        for index in (0, 2):
            assert session.put(index, data).status_code == 200
    with BoxEmulator(data_dir=tmp_path) as second, checked_session() as http:
        token = ccg_token(second, http, user_id=user_id)
        session.http = http
        session.moved_to(second.url, token)
        assert session.put(0, data).status_code == 409  # what was recorded stays recorded
        assert session.put(1, data).status_code == 200
        assert session.commit(data[::-1]).json()["code"] == "digest_mismatch"
        done = session.commit(data)
        assert done.status_code == 201, done.text
        assert downloaded(second.url, http, token, done.json()["entries"][0]["id"]) == data


def test_the_digest_folds_as_the_prefix_grows(tmp_path: Path) -> None:
    """Parts recorded out of order are hashed once the prefix reaches them, so a commit has nothing
    left to read; the commit's digest is the whole file's."""
    data = payload(5 * 1000 + 7, seed=47)
    path = tmp_path / "session.data"
    path.write_bytes(data)
    parts = {offset: min(1000, len(data) - offset) for offset in range(0, len(data), 1000)}
    digest = SessionDigest(str(path), {})
    folded = []
    for offset in (3000, 1000, 0, 5000, 2000, 4000):
        digest.recorded(offset, parts[offset])
        folded.append(digest.folded)
    assert folded == [0, 0, 2000, 2000, 4000, len(data)]
    path.write_bytes(b"\0" * len(data))  # the commit reads nothing more: the digest is of what was recorded
    assert digest.hexdigest(len(data), parts) == hashlib.sha1(data).hexdigest()
    # a digest rebuilt from the parts recorded so far (an emulator restarted) reads the file again
    path.write_bytes(data)
    rebuilt = SessionDigest(str(path), parts)
    assert rebuilt.folded == 0
    assert rebuilt.hexdigest(len(data), parts) == hashlib.sha1(data).hexdigest()
    # a commit before every part is in cannot produce a digest
    with pytest.raises(RuntimeError):
        SessionDigest(str(path), {0: 1000}).hexdigest(len(data), {0: 1000, 2000: 1000})
