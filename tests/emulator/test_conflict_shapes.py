"""The shape of ``context_info.conflicts`` in 409 ``item_name_in_use``, per endpoint, as Box answers it.

Why raw HTTP: the shape is what real clients decode (rclone unmarshals the preflight's conflict into one
struct; code written against Box's older Python SDK reads ``context_info['conflicts']['id']``), so the test
reads the JSON as sent, not an SDK's model of it. Every body is also validated against the OpenAPI
description by the conftest hook.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from boxfs.emulator import BoxEmulator

from .helpers import TokenFactory, raw_upload


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def setup(emulator: BoxEmulator, http: requests.Session, token_for: TokenFactory, alice_id: str,
          workdir: Any) -> dict[str, Any]:
    """A token for Alice, her work folder, a file ``taken.txt`` and a folder ``Docs`` in it."""
    token = token_for(alice_id)
    existing = raw_upload(emulator, http, token, workdir.id, "taken.txt", b"first version")
    folder = http.post(emulator.url + "/2.0/folders", headers=auth(token),
                       json={"name": "Docs", "parent": {"id": workdir.id}})
    assert folder.status_code == 201, folder.text
    return {"token": token, "parent": workdir.id, "file": existing, "folder": folder.json()}


def conflict_of(response: requests.Response) -> Any:
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "item_name_in_use"
    return body["context_info"]["conflicts"]


def test_preflight_conflict_is_one_object_naming_the_existing_file(emulator: BoxEmulator, http: requests.Session,
                                                                   setup: dict[str, Any]) -> None:
    response = http.options(emulator.url + "/2.0/files/content", headers=auth(setup["token"]),
                            json={"name": "TAKEN.txt", "parent": {"id": setup["parent"]}, "size": 3})
    conflict = conflict_of(response)
    assert isinstance(conflict, dict)
    existing = setup["file"]
    # what rclone reads from it to update the file in place: type, id, etag, sha1 and the version
    assert conflict["type"] == "file" and conflict["id"] == existing["id"]
    assert conflict["etag"] == existing["etag"] and conflict["sha1"] == existing["sha1"]
    assert conflict["file_version"]["id"] == existing["file_version"]["id"]
    assert conflict["name"] == "taken.txt"


def test_preflight_conflict_with_a_folder_is_one_folder_object(emulator: BoxEmulator, http: requests.Session,
                                                               setup: dict[str, Any]) -> None:
    response = http.options(emulator.url + "/2.0/files/content", headers=auth(setup["token"]),
                            json={"name": "docs", "parent": {"id": setup["parent"]}})
    conflict = conflict_of(response)
    assert isinstance(conflict, dict) and conflict["type"] == "folder" and conflict["id"] == setup["folder"]["id"]


def test_upload_conflicts_are_one_object(emulator: BoxEmulator, http: requests.Session, setup: dict[str, Any]) -> None:
    token, parent, existing = setup["token"], setup["parent"], setup["file"]
    multipart = http.post(
        emulator.url + "/api/2.0/files/content", headers=auth(token),
        files={"attributes": (None, json.dumps({"name": "taken.txt", "parent": {"id": parent}})),
               "file": ("taken.txt", b"second", "application/octet-stream")})
    conflict = conflict_of(multipart)
    assert isinstance(conflict, dict) and conflict["id"] == existing["id"]
    session = http.post(emulator.url + "/api/2.0/files/upload_sessions", headers=auth(token),
                        json={"folder_id": parent, "file_name": "Taken.TXT", "file_size": 30_000_000})
    conflict = conflict_of(session)
    assert isinstance(conflict, dict) and conflict["id"] == existing["id"]
    # nothing was replaced: the file still has its first content
    assert http.get(emulator.url + f"/2.0/files/{existing['id']}/content", headers=auth(token)).content == b"first version"


def test_folder_creation_conflict_is_a_list(emulator: BoxEmulator, http: requests.Session, setup: dict[str, Any]) -> None:
    response = http.post(emulator.url + "/2.0/folders", headers=auth(setup["token"]),
                         json={"name": "DOCS", "parent": {"id": setup["parent"]}})
    conflicts = conflict_of(response)
    assert isinstance(conflicts, list) and [c["id"] for c in conflicts] == [setup["folder"]["id"]]


def test_rename_conflict_is_a_list(emulator: BoxEmulator, http: requests.Session, setup: dict[str, Any]) -> None:
    other = raw_upload(emulator, http, setup["token"], setup["parent"], "other.txt", b"o")
    response = http.put(emulator.url + f"/2.0/files/{other['id']}", headers=auth(setup["token"]), json={"name": "Taken.txt"})
    conflicts = conflict_of(response)
    assert isinstance(conflicts, list) and [c["id"] for c in conflicts] == [setup["file"]["id"]]


def test_conflicts_and_listings_at_once_never_hang_the_emulator(emulator: BoxEmulator, setup: dict[str, Any],
                                                               token_for: TokenFactory, alice_id: str) -> None:
    """A 409 is rendered inside the store's transaction, a file's GET outside it; when each waited for a lock
    the other held (functools.cached_property's one lock per class, before Python 3.12), two SFTP
    sessions renaming onto one name hung the emulator for good. Every request here must be answered."""
    from concurrent.futures import ThreadPoolExecutor

    token, parent = setup["token"], setup["parent"]
    files = []
    for i in range(6):  # files to rename onto taken.txt (each refused with a conflict)
        files.append(raw_upload(emulator, requests.Session(), token, parent, f"mover{i}.txt", b"x")["id"])

    def hammer(k: int) -> list[int]:
        with requests.Session() as s:
            codes = []
            for _ in range(25):
                if k % 2:
                    r = s.put(f"{emulator.url}/2.0/files/{files[k]}", headers=auth(token),
                              json={"name": "taken.txt"}, timeout=20)
                else:  # a file rendered outside any transaction: its version and path looked up
                    r = s.get(f"{emulator.url}/2.0/files/{files[k]}", headers=auth(token),
                              params={"fields": "name,size,sha1,file_version,path_collection"}, timeout=20)
                codes.append(r.status_code)
            return codes

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(hammer, range(6)))
    for k, codes in enumerate(results):
        assert set(codes) == ({409} if k % 2 else {200}), (k, codes)
