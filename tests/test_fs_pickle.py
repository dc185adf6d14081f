"""Pickling: a filesystem travels as its configuration (never a token) and works in another process."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from typing import Any

from boxfs import BoxFileSystem


def test_pickle_round_trip_in_a_subprocess(alice_fs: BoxFileSystem, unique: str, tmp_path: Any,
                                           jwt_config: str) -> None:
    alice_fs.pipe_file(f"{unique}/in.txt", b"written by the parent")
    token = alice_fs.provider.token()
    blob = pickle.dumps(alice_fs)
    assert token.encode() not in blob
    assert b"requests" not in blob and b"TokenProvider" not in blob
    (tmp_path / "fs.pickle").write_bytes(blob)
    script = textwrap.dedent(
        f"""
        import pickle, sys
        fs = pickle.load(open({str(tmp_path / "fs.pickle")!r}, "rb"))
        data = fs.cat_file({unique + "/in.txt"!r})
        fs.pipe_file({unique + "/out.txt"!r}, data.upper())
        print(fs.as_user_id)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == alice_fs.as_user_id
    alice_fs.invalidate_cache()
    assert alice_fs.cat_file(f"{unique}/out.txt") == b"WRITTEN BY THE PARENT"
    alice_fs.rm(unique, recursive=True)


def test_unpickled_in_process_keeps_options_and_gets_its_own_cache(make_fs: Any, alice_id: str) -> None:
    fs = make_fs(as_user="alice@example.com", root_folder_id="0", max_connections=4,
                 retry={"max_attempts": 3}, spool_threshold=1000)
    fs.ls("")
    again = pickle.loads(pickle.dumps(fs))
    assert again.as_user_id == alice_id and again.max_connections == 4
    assert again.policy.max_attempts == 3 and again.spool_threshold == 1000
    assert again.endpoints == fs.endpoints and again.credentials == fs.credentials
    assert again.ls("") == fs.ls("")


def test_pickle_of_token_configuration(emulator: Any, jwt_config: str) -> None:
    client_id = json.loads(jwt_config)["boxAppSettings"]["clientID"]
    fs = BoxFileSystem(token=emulator.developer_token(client_id), base_urls=emulator.base_urls,
                       skip_instance_cache=True)
    again = pickle.loads(pickle.dumps(fs))
    assert again.ls("") == fs.ls("")


def test_unpickled_filesystems_with_different_tokens_are_different_instances(emulator: Any, jwt_config: str,
                                                                              alice_id: str) -> None:
    client_id = json.loads(jwt_config)["boxAppSettings"]["clientID"]
    one = BoxFileSystem(token=emulator.developer_token(client_id), base_urls=emulator.base_urls)
    two = BoxFileSystem(token=emulator.developer_token(client_id, alice_id), base_urls=emulator.base_urls)
    a, b = pickle.loads(pickle.dumps(one)), pickle.loads(pickle.dumps(two))
    assert a is not b and a.credentials.token != b.credentials.token
    assert a.credentials.token not in repr(a.credentials)
