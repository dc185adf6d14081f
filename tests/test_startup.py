"""What a short CLI process loads: ``boxfs sync``/``ls`` with a ready-made token or a ``boxfs login`` token
file never imports box_sdk_gen, PyJWT or cryptography, which cost more than the rest of the start; with a
JWT config it loads PyJWT and cryptography (the assertion is signed) but still no box_sdk_gen.

Each command runs as a real subprocess through a tiny wrapper that writes the names in ``sys.modules`` to a
file when the process exits; the same wrapper around a JWT command sees PyJWT loaded (so the check can
fail), and JWT still yields a working token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from boxfs.auth.tokenfile import TokenFile
from boxfs.emulator import BoxEmulator

#: modules only JWT/CCG token requests (and annotator tokens) need
HEAVY = ("box_sdk_gen", "jwt", "cryptography")

#: run ``python -m boxfs ARGS...`` and write the loaded module names to ARGV[1] when the process exits
WRAPPER = """
import atexit, json, runpy, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["boxfs", *sys.argv[2:]]
runpy.run_module("boxfs", run_name="__main__", alter_sys=True)
"""


def _env(emu: BoxEmulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    return env | {"BOXFS_BASE_URL": emu.url, "BOXFS_WATCH_EVENTS": "0"} | extra


def run_boxfs(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``boxfs ARGS`` in a subprocess: its result and the top-level packages it had imported at exit."""
    out = tmp_path / f"modules-{time.monotonic_ns()}.json"
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(out), *args], capture_output=True, text=True,
                          env=env, timeout=120)
    loaded = {name.split(".")[0] for name in json.loads(out.read_text())} if out.exists() else set()
    return proc, loaded


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for i in range(6):
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 2}" / f"f{i}.txt").write_bytes(b"x" * (i + 1))
    return root


def test_sync_and_ls_with_a_ready_made_token_load_no_sdk(emulator: BoxEmulator, new_user, tmp_path: Path,
                                                         tree: Path) -> None:
    uid, _ = new_user("start")
    client_id = json.loads(emulator.create_jwt_app())["boxAppSettings"]["clientID"]
    env = _env(emulator, BOXFS_TOKEN=emulator.developer_token(client_id, uid))
    synced, loaded = run_boxfs(tmp_path, env, "sync", str(tree), "box://startup", "--no-progress")
    assert synced.returncode == 0, synced.stderr
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    assert "boxfs" in loaded and "requests" in loaded  # the wrapper saw the process's modules
    listed, loaded = run_boxfs(tmp_path, env, "ls", "box://startup/d1")
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == ["f1.txt", "f3.txt", "f5.txt"]
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_ls_with_a_token_file_refreshes_without_the_sdk(emulator: BoxEmulator, new_user, tmp_path: Path) -> None:
    uid, _ = new_user("start")
    client_id, secret = emulator.create_oauth_app("http://127.0.0.1:9/callback")
    issued = emulator.oauth.issue(client_id, uid, refresh=True)
    token_file = tmp_path / "token.json"
    TokenFile(token_file).write({"client_id": client_id, "client_secret": secret, "user_id": uid,
                                 "access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
                                 "expires_at": time.time() - 10})  # expired: the process must refresh it
    start = len(emulator.request_log)
    listed, loaded = run_boxfs(tmp_path, _env(emulator, BOXFS_OAUTH_TOKEN_FILE=str(token_file)), "ls", "box://")
    assert listed.returncode == 0, listed.stderr
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
    assert any(r.route == "/oauth2/token" for r in emulator.request_log.records[start:])
    assert json.loads(token_file.read_text())["refresh_token"] != issued["refresh_token"]


def test_jwt_works_without_loading_the_sdk(emulator: BoxEmulator, jwt_config: str, new_user, tmp_path: Path,
                                           tree: Path) -> None:
    uid, _ = new_user("start")
    config = tmp_path / "jwt.json"
    config.write_text(jwt_config)
    env = _env(emulator, BOXFS_JWT_CONFIG=str(config))
    synced, loaded = run_boxfs(tmp_path, env, "--as-user", uid, "sync", str(tree), "box://jwt", "--no-progress")
    assert synced.returncode == 0, synced.stderr
    assert "jwt" in loaded and "cryptography" in loaded  # the wrapper sees the grant's modules...
    assert "box_sdk_gen" not in loaded  # ... and no box_sdk_gen
    checked, loaded = run_boxfs(tmp_path, env, "--as-user", uid, "check", str(tree), "box://jwt")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "box_sdk_gen" not in loaded


def test_the_readme_demo_runs_where_box_sdk_gen_is_not_installed() -> None:
    """scripts/demo.sh installs only the ``demo`` extra (no box_sdk_gen, now a test dependency): the demo's
    JWT config must get its token without it. ``sys.modules[name] = None`` makes its import fail as if the
    package were absent."""
    blocked = ("import runpy, sys; sys.modules['box_sdk_gen'] = None; "
               "runpy.run_module('boxfs.demo', run_name='__main__', alter_sys=True)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("demo: OK")
