"""The quota check skips summing a user's files when everything ever stored fits beside the upload;
the bound it uses survives restarts and is rebuilt for a data dir made before it existed."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from boxfs.emulator import BoxEmulator

from .conftest import checked_session
from .helpers import ccg_token


def upload(emu: BoxEmulator, http: requests.Session, token: str, name: str, data: bytes) -> requests.Response:
    attributes = json.dumps({"name": name, "parent": {"id": "0"}})
    return http.post(emu.url + "/api/2.0/files/content", headers={"Authorization": f"Bearer {token}"},
                     files={"attributes": (None, attributes), "file": ("f", data)})


def test_quota_holds_across_restarts_and_old_data_dirs(tmp_path: Path) -> None:
    with BoxEmulator(data_dir=tmp_path) as emu, checked_session() as http:
        small = emu.create_user("small@example.com", space_amount=100)
        roomy = emu.create_user("roomy@example.com")
        token = ccg_token(emu, http, user_id=small)
        assert upload(emu, http, ccg_token(emu, http, user_id=roomy), "other.bin", b"o" * 500).status_code == 201
        assert emu.store.stored_bytes() == 500
        assert upload(emu, http, token, "a.bin", b"a" * 60).status_code == 201  # 560 stored, yet 60 used of 100
        refused = upload(emu, http, token, "b.bin", b"b" * 50)
        assert refused.status_code == 403 and refused.json()["code"] == "storage_limit_exceeded"
        assert emu.store.stored_bytes() == 560
        # a data dir from before the bound: neither its counter nor its triggers
        with emu.store.tx() as db:
            db.execute("DELETE FROM counters WHERE name='version_bytes'")
            db.execute("DROP TRIGGER versions_bytes_insert")
    with BoxEmulator(data_dir=tmp_path) as emu, checked_session() as http:
        assert emu.store.stored_bytes() == 560
        token = ccg_token(emu, http, user_id=small)
        assert upload(emu, http, token, "b.bin", b"b" * 50).json()["code"] == "storage_limit_exceeded"
        assert upload(emu, http, token, "c.bin", b"c" * 40).status_code == 201
        assert emu.store.stored_bytes() == 600
