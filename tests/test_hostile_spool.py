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
import stat
from pathlib import Path
from typing import Any

import pytest

from boxfs.upload.resume import read_state
from boxfs.upload.spoolfolder import user_spool_dir

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


CHILD = r"""
import json, os, stat, sys
cfg = json.loads(sys.stdin.read())
os.umask(0)  # the unlucky operator's shell
from boxfs import BoxFileSystem
fs = BoxFileSystem(cfg["jwt_config"], as_user=cfg["as_user"], base_urls=cfg["base_urls"], spool_dir=cfg["spool_dir"],
                   spool_threshold=1 << 20, skip_instance_cache=True)
modes = {}
with fs.open("umask.bin", "wb", block_size=1 << 20) as f:
    f.write(b"u" * (2 << 20))
    f.flush()  # spilled: the spool file exists now
    for base, dirs, files in os.walk(cfg["top"]):
        for name in dirs + files:
            path = os.path.join(base, name)
            modes[os.path.relpath(path, cfg["top"])] = stat.S_IMODE(os.lstat(path).st_mode)
print(json.dumps(modes))
"""


def test_umask_000_leaves_nothing_of_the_spool_writable_by_others(emulator: Any, jwt_config: str, fs_user: Any,
                                                                 make_fs: Any, tmp_path: Path) -> None:
    """A ``spool_dir`` whose parents are missing, created by a process running with umask 000."""
    import subprocess
    import sys

    top = tmp_path / "area"
    config = {"jwt_config": jwt_config, "as_user": fs_user[0], "base_urls": emulator.base_urls,
              "spool_dir": str(top / "a" / "b" / "spool"), "top": str(top)}
    done = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(config), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    modes = json.loads(done.stdout.strip().splitlines()[-1])
    spool_files = [p for p in modes if p.endswith(".spool")]
    assert len(spool_files) == 1, modes
    assert {p: m for p, m in modes.items() if m & 0o077} == {}, modes  # before: a and a/b were 0777
    assert modes["a"] == modes["a/b"] == modes["a/b/spool"] == 0o700
    assert make_fs(as_user=fs_user[0]).cat_file("umask.bin") == b"u" * (2 << 20)


def test_a_default_root_another_account_made_first_does_not_lock_this_one_out(
        make_fs: Any, fs_user: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Another account creates ``<tmp>/boxfs-<our uid>`` before we ever spool. In a sticky ``/tmp`` we
    cannot remove it, so refusing it (rightly) locked this account out of large uploads for good: the
    spool now goes to the account's own cache folder, with a warning naming the refused root."""
    import logging
    import tempfile

    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("giving a folder to another account needs root")
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    planted = shared / f"boxfs-{os.getuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)  # nobody's
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    fs = make_fs(as_user=fs_user[0], spool_threshold=MB)
    data = os.urandom(2 * MB)
    caplog.set_level(logging.WARNING, logger="boxfs")
    with fs.open("big.bin", "wb", block_size=MB) as f:
        f.write(data)
    assert make_fs(as_user=fs_user[0]).cat_file("big.bin") == data
    fallback = tmp_path / "home-cache" / "boxfs" / "spool"
    assert stat.S_IMODE(os.stat(fallback).st_mode) == 0o700 and (fallback / fs_user[0]).is_dir()
    assert list(planted.iterdir()) == []  # nothing of ours in the other account's folder
    assert str(planted) in caplog.text and "another local account" in caplog.text and str(fallback) in caplog.text
    assert fs.clean_spool(older_than=0) == []  # cleaning finds the same folder
