"""Large uploads measured in child processes: resume after SIGKILL, and peak memory for 1 GB.

The child runs a real BoxFileSystem against the session's emulator (in this process) over HTTP; the
emulator's request log says which parts were sent by whom.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

MB = 1 << 20
PART = "/files/upload_sessions/{upload_session_id}"
SESSIONS = "/files/upload_sessions"
COMMIT = "/files/upload_sessions/{upload_session_id}/commit"

CHILD = r'''
import hashlib, json, os, sys, threading, time
from fsspec.callbacks import Callback
from boxfs import BoxFileSystem

cfg = json.loads(sys.argv[1])
workers = {"upload_workers": cfg["workers"]} if "workers" in cfg else {}  # else the default, as users get it
fs = BoxFileSystem(cfg["jwt_config"], as_user=cfg["as_user"], base_urls=cfg["base_urls"], spool_dir=cfg["spool_dir"],
                   skip_instance_cache=True, **workers)

if cfg["mode"] == "slow_put":
    class Slow(Callback):
        def call(self, *args, **kwargs):
            time.sleep(cfg["delay"])
    fs.put_file(cfg["src"], cfg["rpath"], callback=Slow())
    print("finished", flush=True)

elif cfg["mode"] == "rss":
    # one measurement per process: a heap grown by an earlier phase would hide the next one's growth
    import psutil
    proc = psutil.Process()
    block = os.urandom(MB := 1 << 20)
    size = cfg["size"]
    how = cfg["how"]
    if how == "put":
        with open(cfg["src"], "wb") as fh:
            for _ in range(size // MB):
                fh.write(block)
    fs.pipe_file("warm-up.txt", b"imports, token and connection pool are part of the baseline")
    import boxfs.upload  # noqa: F401
    peak = [0]
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)
    baseline = proc.memory_info().rss
    peak[0] = baseline
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    if how == "write":
        with fs.open("rss/written.bin", "wb") as f:
            for _ in range(size // MB):
                f.write(block)
    else:
        fs.put_file(cfg["src"], "rss/put.bin")
    stop.set()
    t.join()
    info = fs.info(f"rss/{'written' if how == 'write' else 'put'}.bin")
    expected = hashlib.sha1()
    for _ in range(size // MB):
        expected.update(block)
    print(json.dumps({"growth": peak[0] - baseline, "size": info["size"], "sha1": info["sha1"],
                      "expected": expected.hexdigest()}), flush=True)
'''


def child_command(config: dict[str, Any]) -> list[str]:
    return [sys.executable, "-c", CHILD, json.dumps(config)]


def settle(emulator: Any) -> None:
    """A killed child's last requests may still be in the emulator's hands: wait for the log to stop growing."""
    seen = -1
    deadline = time.monotonic() + 1.0
    while len(emulator.request_log) != seen and time.monotonic() < deadline:
        seen = len(emulator.request_log)
        time.sleep(0.03)


def count(emulator: Any, user: str, start: int, method: str, route: str, status: int | None = None) -> int:
    settle(emulator)
    return sum(1 for r in emulator.request_log.records[start:]
               if r.user_id == user and r.method == method and r.route == route
               and (status is None or r.status == status))


def test_sigkill_mid_upload_then_same_put_sends_only_missing_parts(emulator: Any, jwt_config: str, make_fs: Any,
                                                                  fs_user: tuple[str, str], tmp_path: Path) -> None:
    uid = fs_user[0]
    spool_dir = tmp_path / "spool"
    data = os.urandom(60 * MB)  # 8 parts of 8 MiB (the last one 4 MiB)
    total_parts = 8
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    config = {"jwt_config": jwt_config, "as_user": uid, "base_urls": emulator.base_urls, "spool_dir": str(spool_dir),
              "mode": "slow_put", "src": str(src), "rpath": "k/src.bin", "workers": 1, "delay": 0.02}
    settle(emulator)
    start = len(emulator.request_log)
    child = subprocess.Popen(child_command(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while count(emulator, uid, start, "PUT", PART, 200) < total_parts // 2:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never sent half of its parts"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    on_box = count(emulator, uid, start, "PUT", PART, 200)
    assert total_parts // 2 <= on_box < total_parts
    assert count(emulator, uid, start, "POST", COMMIT) == 0
    folder = spool_dir / uid
    states = list(folder.glob("*.json"))
    assert len(states) == 1  # the resume state the killed process left
    assert not make_fs(as_user=uid).exists("k/src.bin")  # nothing partial on Box

    settle(emulator)
    again = len(emulator.request_log)
    fs = make_fs(as_user=uid, spool_dir=str(spool_dir))
    fs.put_file(str(src), "k/src.bin")
    assert count(emulator, uid, again, "POST", SESSIONS) == 0  # the same session, resumed
    assert count(emulator, uid, again, "PUT", PART) == total_parts - on_box  # only the missing parts
    assert count(emulator, uid, again, "POST", COMMIT) == 1
    assert make_fs(as_user=uid).cat_file("k/src.bin") == data
    assert sorted(p.name for p in folder.iterdir()) == []


@pytest.mark.timeout(300)
def test_peak_rss_growth_for_1gb_write_and_put_stays_under_100mb(emulator: Any, jwt_config: str, make_fs: Any,
                                                                fs_user: tuple[str, str], tmp_path: Path) -> None:
    uid = fs_user[0]
    size = 1 << 30
    spool_dir = tmp_path / "spool"
    config = {"jwt_config": jwt_config, "as_user": uid, "base_urls": emulator.base_urls, "spool_dir": str(spool_dir),
              "mode": "rss", "src": str(tmp_path / "one-gb.bin"), "size": size}
    try:
        for how in ("write", "put"):
            done = subprocess.run(child_command({**config, "how": how}), capture_output=True, text=True,
                                  timeout=280)
            assert done.returncode == 0, done.stderr[-3000:]
            result = json.loads(done.stdout.strip().splitlines()[-1])
            assert result["size"] == size
            assert result["sha1"] == result["expected"]
            # 1 GiB: Box's parts are 16 MiB. The default 8 workers hold the 24 MiB budget (one whole part)
            # and 1 MiB each past it (~30 MiB measured for the write, ~24 for the put); a whole part per
            # worker would be 8 x 16 = 128 MiB
            assert result["growth"] < 48 * MB, (how, result["growth"] / MB)
        assert sorted(p.name for p in (spool_dir / uid).iterdir()) == []
    finally:
        (tmp_path / "one-gb.bin").unlink(missing_ok=True)
        fs = make_fs(as_user=uid)
        if fs.exists("rss"):
            fs.rm("rss", recursive=True)  # give the emulator its disk back

