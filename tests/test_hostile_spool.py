"""The spool folder against what may be planted in it (red team, issue 16), with a real emulator.

The user's spool folder is 0700, so what lands in it comes from this account: a script of the user's, a
restore from backup, a crash. The spool still treats it as untrusted, and it did not for two things:

* a **hard link** to one of the user's files, planted as a ``<key>.lock``, passed the "regular file of
  this account" check, and taking the lock (``clean_spool`` does it for every state) truncated the
  linked file and wrote a pid into it;
* a **deeply nested** state JSON raised ``RecursionError`` (not ``ValueError``) out of ``read_state``,
  so every ``clean_spool``, and the automatic cleaning that precedes each large upload, failed.

A FIFO planted as a state file must not make anyone wait on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from boxfs.spool import read_state, user_spool_dir

MB = 1 << 20
KEY = "ab" * 16


@pytest.fixture
def victim_fs(make_fs: Any, fs_user: Any, tmp_path: Path) -> Any:
    return make_fs(as_user=fs_user[0], spool_dir=str(tmp_path / "spool"), spool_threshold=MB)


@pytest.mark.parametrize("planted", ["lock", "state", "spool"])
def test_a_hard_link_planted_in_the_spool_is_never_written_through(victim_fs: Any, tmp_path: Path,
                                                                    planted: str) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"precious bytes")
    with user_spool_dir(victim_fs) as folder:
        name = {"lock": f"{KEY}.lock", "state": f"{KEY}.json", "spool": "a" * 24 + ".spool"}[planted]
        if planted != "state":
            (folder.path / f"{KEY}.json").write_text(json.dumps({"version": 2, "spool": "a" * 24 + ".spool"}))
        os.link(precious, folder.path / name)
        victim_fs.clean_spool(older_than=0)
        assert precious.read_bytes() == b"precious bytes"
        assert sorted(p.name for p in folder.path.iterdir()) == []


def test_a_deeply_nested_state_is_ignored_and_uploads_go_on(victim_fs: Any, make_fs: Any, fs_user: Any) -> None:
    with user_spool_dir(victim_fs) as folder:
        (folder.path / f"{KEY}.json").write_text("[" * 200_000 + "]" * 200_000)
        assert read_state(folder, KEY) is None
        victim_fs.clean_spool(older_than=0)  # raised RecursionError
        assert sorted(p.name for p in folder.path.iterdir()) == []
        (folder.path / f"{KEY}.json").write_text("[" * 200_000 + "]" * 200_000)
    data = os.urandom(2 * MB)
    with victim_fs.open("big.bin", "wb") as f:  # spills: cleans the folder by age first
        f.write(data)
    assert make_fs(as_user=fs_user[0]).cat_file("big.bin") == data


def test_a_fifo_as_a_state_file_makes_no_one_wait(victim_fs: Any) -> None:
    with user_spool_dir(victim_fs) as folder:
        os.mkfifo(folder.path / f"{KEY}.json", 0o600)
        assert read_state(folder, KEY) is None  # would block for ever on a blocking open
        removed = victim_fs.clean_spool(older_than=0)
        assert [Path(p).name for p in removed] == [f"{KEY}.json"]
        assert sorted(p.name for p in folder.path.iterdir()) == []
