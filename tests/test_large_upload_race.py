"""Large uploads racing to create one new path (issue 17): the loser becomes a new version, nothing lost.

Two writers past the spool threshold (separate filesystem instances, separate spool folders) both pass
the preflight for a name that does not exist yet and both open a chunked session; Box lets the first
commit win and answers the second with 409. The loser must become a new version of the winner's file, as
small uploads do, sending its content again from the spool it keeps until the content has landed.
Which path each upload took is read from the emulator's request log; every byte is checked by SHA-1.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from fsspec.callbacks import Callback
from support import faults_cleared

from boxfs.upload import MIN_SESSION_SIZE, UploadIncomplete

MB = 1 << 20
FAST = {"max_attempts": 2, "backoff_base": 0.005, "backoff_max": 0.02}
SESSIONS = "/files/upload_sessions"
NEW_VERSION_SESSIONS = "/files/{file_id}/upload_sessions"
COMMIT = "/files/upload_sessions/{upload_session_id}/commit"
SESSION = "/files/upload_sessions/{upload_session_id}"


class OnFirstByte(Callback):
    """Runs ``action`` once, when the first bytes of the first part are on their way (the session exists)."""

    def __init__(self, action: Any) -> None:
        super().__init__()
        self._action = action
        self._lock = threading.Lock()
        self._done = False

    def relative_update(self, inc: int = 1) -> None:
        with self._lock:
            first, self._done = not self._done, True
        if first:
            self._action()
        super().relative_update(inc)


def write_in_blocks(f: Any, data: bytes, block: int = MB) -> None:
    view = memoryview(data)
    for i in range(0, len(data), block):
        f.write(view[i:i + block])


def records(emulator: Any, user: str, start: int) -> list[Any]:
    return [r for r in emulator.request_log.records[start:] if r.user_id == user]


def versions(fs: Any, file_id: str) -> list[dict[str, Any]]:
    t = fs.transport
    return t.json("GET", t.api(f"/files/{file_id}/versions"))["entries"]


def version_bytes(fs: Any, file_id: str, version_id: str) -> bytes:
    t = fs.transport
    return t.request("GET", t.api(f"/files/{file_id}/content"), params={"version": version_id}).content


def test_two_large_writers_racing_to_one_new_path_become_two_versions(emulator: Any, make_fs: Any, fs_user: Any,
                                                                      tmp_path: Path) -> None:
    uid = fs_user[0]
    spools = [tmp_path / "spool-a", tmp_path / "spool-b"]
    writers = [make_fs(as_user=uid, spool_dir=str(s), spool_threshold=MB, retry=FAST) for s in spools]
    data = [os.urandom(MIN_SESSION_SIZE + MB), os.urandom(MIN_SESSION_SIZE + 2 * MB)]
    writers[0].mkdir("race")
    both_sending = threading.Barrier(2, timeout=120)
    errors: dict[int, BaseException] = {}

    def write(n: int) -> None:
        try:
            with writers[n].open("race/same.bin", "wb", callback=OnFirstByte(both_sending.wait)) as f:
                write_in_blocks(f, data[n])
        except BaseException as exc:  # reported below
            errors[n] = exc

    start = len(emulator.request_log)
    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == {}
    log = records(emulator, uid, start)
    assert sum(1 for r in log if r.method == "POST" and r.route == SESSIONS and r.status == 201) == 2
    commits = sorted(r.status for r in log if r.method == "POST" and r.route == COMMIT)
    assert commits == [201, 201, 409], "one commit won, the other lost and landed again as a new version"
    assert sum(1 for r in log if r.method == "POST" and r.route == NEW_VERSION_SESSIONS) == 1
    assert sum(1 for r in log if r.method == "DELETE" and r.route == SESSION) == 1  # the lost session aborted

    reader = make_fs(as_user=uid)
    assert reader.ls("race", detail=False) == ["race/same.bin"]
    info = reader.info("race/same.bin")
    current = reader.cat_file("race/same.bin")
    assert current in data
    previous = data[1 - data.index(current)]
    older = versions(reader, info["id"])
    assert [v["sha1"] for v in older] == [hashlib.sha1(previous).hexdigest()]
    assert version_bytes(reader, info["id"], older[0]["id"]) == previous
    for s in spools:
        assert list((s / uid).iterdir()) == [], "each spool is emptied once its content has landed"


def test_a_loser_whose_new_version_fails_keeps_its_spool_until_it_lands(emulator: Any, make_fs: Any, fs_user: Any,
                                                                         tmp_path: Path) -> None:
    """The name is taken while the upload runs, and the new version it then tries fails too: the error
    says where the content waits, the spool file is there with every byte, and uploading it again lands
    it as the new version."""
    uid = fs_user[0]
    spool = tmp_path / "spool"
    fs = make_fs(as_user=uid, spool_dir=str(spool), spool_threshold=MB, retry=FAST)
    other = make_fs(as_user=uid)
    data = os.urandom(MIN_SESSION_SIZE + MB)

    def take_the_name() -> None:
        other.pipe_file("late/same.bin", b"the winner")
        emulator.inject_faults(rate=1.0, kinds=("500",), route=r"/files/\d+/upload_sessions$", method="POST")

    fs.mkdir("late")
    with faults_cleared(emulator):
        with pytest.raises(UploadIncomplete) as info:
            with fs.open("late/same.bin", "wb", callback=OnFirstByte(take_the_name)) as f:
                write_in_blocks(f, data)
    kept = Path(str(info.value.spool_path))
    assert kept.parent == spool / uid and str(kept) in str(info.value)
    assert hashlib.sha1(kept.read_bytes()).hexdigest() == hashlib.sha1(data).hexdigest()
    assert other.cat_file("late/same.bin") == b"the winner"  # nothing lost either

    fs.put_file(str(kept), "late/same.bin")
    fresh = make_fs(as_user=uid)
    assert fresh.cat_file("late/same.bin") == data
    file_id = fresh.info("late/same.bin")["id"]
    assert [version_bytes(fresh, file_id, v["id"]) for v in versions(fresh, file_id)] == [b"the winner"]
    assert list((spool / uid).iterdir()) == []
