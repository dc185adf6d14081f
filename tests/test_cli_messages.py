"""What a newcomer reads when something is wrong (issue 23): the host, the cause and the fix.

Each case runs the real ``boxfs`` command in a subprocess, against the session emulator or against a
port where nothing listens, and checks the one line on stderr and the exit code. ``--retries`` and
``--timeout`` are checked by what reached the emulator (its request log), not by the clock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import injected_faults

from boxfs.emulator import BoxEmulator

TOKEN_ROUTE = "/oauth2/token"
ITEMS_ROUTE = "/folders/{folder_id}/items"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    env.update(extra)
    return env


def boxfs(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "boxfs", *args], capture_output=True, text=True, timeout=120,
                          env=env if env is not None else _env(), cwd=cwd)


@pytest.fixture(scope="module")
def config_file(jwt_config: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("messages") / "config.json"
    path.write_text(jwt_config)
    return path


@pytest.fixture(scope="module")
def login(emulator: BoxEmulator) -> str:
    name = "messages@example.com"
    emulator.create_user(name, name="Messages")
    return name


def _closed_port() -> int:
    """A local port where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_endpoint_names_host_cause_and_fix(config_file: Path) -> None:
    port = _closed_port()
    done = boxfs("--retries", "1", "--base-url", f"http://127.0.0.1:{port}", "--config", str(config_file),
                 "--as-user", "x@example.com", "ls")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("boxfs: token request for app ") and "retrying" in lines[0]  # no silence
    last = lines[-1]
    assert last.startswith("boxfs: error: could not obtain an access token")
    assert f"cannot reach 127.0.0.1:{port}" in last and "(token request, 2 attempts)" in last
    assert "connection refused" in last and "server is running" in last and "--base-url" in last


def test_unresolvable_host_is_named_as_a_dns_failure(config_file: Path) -> None:
    done = boxfs("--retries", "0", "--base-url", "http://box-api.invalid", "--config", str(config_file), "ls")
    assert done.returncode == 1, done.stderr
    assert "cannot reach box-api.invalid (token request, 1 attempt)" in done.stderr
    assert "does not resolve" in done.stderr and "DNS" in done.stderr


def test_retries_option_sets_the_attempts_box_sees(emulator: BoxEmulator, config_file: Path, login: str) -> None:
    base = ["--base-url", emulator.url, "--config", str(config_file), "--as-user", login]
    quiet = boxfs(*base, "ls")
    assert quiet.returncode == 0 and quiet.stderr == ""  # the retry notice lets no INFO line through
    emulator.request_log.clear()
    with injected_faults(emulator, rate=1.0, kinds=("503",), route=r"/folders/0/items$", retry_after=0):
        done = boxfs("--retries", "2", *base, "ls")
    assert done.returncode == 1, done.stderr
    assert emulator.request_log.count(route=ITEMS_ROUTE, status=503) == 3  # 1 attempt + 2 retries
    assert "HTTP 503" in done.stderr or "503" in done.stderr


def test_timeout_option_reaches_the_transport(emulator: BoxEmulator, config_file: Path) -> None:
    emulator.set_latency(1.5)
    try:
        done = boxfs("--timeout", "0.3", "--retries", "0", "--base-url", emulator.url, "--config",
                     str(config_file), "ls")
    finally:
        emulator.set_latency(0.0)
    assert done.returncode == 1, done.stderr
    assert "sent no answer within 0.3 s" in done.stderr and "--timeout" in done.stderr


@pytest.mark.parametrize("bad", [["--retries", "-1"], ["--timeout", "0"], ["--timeout", "soon"]])
def test_bad_retry_options_are_usage_errors(bad: list[str]) -> None:
    done = boxfs(*bad, "ls")
    assert done.returncode == 2 and bad[0] in done.stderr


def test_no_credentials_names_the_cli_options(tmp_path: Path) -> None:
    done = boxfs("ls", cwd=tmp_path)
    assert done.returncode == 2
    assert "--config FILE" in done.stderr and "BOXFS_JWT_CONFIG" in done.stderr
    assert "jwt_config=" not in done.stderr  # Python keywords are for Python callers


def test_cp_without_destination_says_so() -> None:
    done = boxfs("cp", "box://x")
    assert done.returncode == 2
    assert "cp needs a destination after box://x" in done.stderr and "SOURCES" in done.stderr


def test_mount_without_fuse_extra_gives_one_error_with_the_install_hint(config_file: Path, tmp_path: Path) -> None:
    fake = tmp_path / "site" / "mfusepy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'mfusepy'\", name='mfusepy')\n")
    done = boxfs("--config", str(config_file), "mount", "box://", str(tmp_path / "mnt"),
                 env=_env(PYTHONPATH=str(tmp_path / "site")))
    assert done.returncode == 1
    assert done.stderr.count("boxfs: error:") == 1, done.stderr
    assert "pip install 'box-fsspec[mount]'" in done.stderr
    assert not (tmp_path / "mnt").exists()  # nothing was started
