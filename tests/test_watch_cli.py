"""``boxfs watch box://path``: one JSON line per change, from a real subprocess, changes made by another client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

from boxfs.emulator import BoxEmulator


def run_watch(emulator: BoxEmulator, config: str, login: str, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    return subprocess.Popen([sys.executable, "-m", "boxfs", "--base-url", emulator.url, "--config", config,
                             "--as-user", login, "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_watch_prints_one_json_line_per_change(emulator: BoxEmulator, jwt_config: str, tmp_path: Any,
                                               make_fs: Callable[..., Any]) -> None:
    config = tmp_path / "app.json"
    config.write_text(jwt_config)
    login = f"watch-{uuid.uuid4().hex[:8]}@example.com"
    uid = emulator.create_user(login)
    box = make_fs(as_user=uid)
    box.makedirs("inbox")
    box.makedirs("elsewhere")
    proc = run_watch(emulator, str(config), login, "box://inbox", "--count", "3", "--timeout", "30")
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline().decode().strip() == "watching box://inbox"  # ready
        box.pipe_file("elsewhere/not-reported.txt", b"-")
        box.pipe_file("inbox/report #1 (q3) é.csv", b"a,b\n")
        box.mv("inbox/report #1 (q3) é.csv", "inbox/final.csv")
        box.rm("inbox/final.csv")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [(c["type"], c["path"]) for c in lines] == [
        ("uploaded", "inbox/report #1 (q3) é.csv"), ("moved", "inbox/final.csv"), ("deleted", "inbox/final.csv")]
    assert lines[1]["old_path"] == "inbox/report #1 (q3) é.csv" and lines[0]["by"] == login


def test_watch_of_a_missing_path_is_a_clear_error(emulator: BoxEmulator, jwt_config: str, tmp_path: Any) -> None:
    config = tmp_path / "app.json"
    config.write_text(jwt_config)
    login = f"watch-{uuid.uuid4().hex[:8]}@example.com"
    emulator.create_user(login)
    proc = run_watch(emulator, str(config), login, "box://no/such/folder", "--timeout", "5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and out == b""
    assert "no: No such file" in err.decode() and "Traceback" not in err.decode()
