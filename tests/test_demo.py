"""The newcomer's path: the README's demo, ``boxfs emulator`` as the docs use it, and ``scripts/demo.sh``'s
failures, each run as a user would run it (subprocesses, real files, real pip)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_writes_and_reads_parquet_as_impersonated_user() -> None:
    done = subprocess.run([sys.executable, "-m", "boxfs.demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "acting as alice@example.com" in out
    assert "box://reports/q3.parquet:" in out and "sha1" in out
    assert "143.25" in out  # the frame read back from Box
    assert out.rstrip().endswith("demo: OK")


# ------------------------------------------------------------------------------------------ boxfs emulator
def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    env.update(extra)
    return env


def emulator(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "boxfs", "emulator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=_clean_env(**env))


def exports(text: str) -> dict[str, str]:
    return dict(w.partition("=")[::2] for line in text.splitlines() if line.startswith("export ")
                for w in shlex.split(line)[1:])


def test_emulator_env_prints_lines_to_eval_and_stop_ends_it(tmp_path: Path) -> None:
    started = emulator("--env", "--port", "0", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    env = exports(started.stdout)
    pid = int(env["BOXFS_EMULATOR_PID"])
    try:
        assert env["BOXFS_JWT_CONFIG"] == str(tmp_path / "config.json") and env["BOXFS_AS_USER"] == "alice@example.com"
        assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
        # the docs' shell examples, with what eval would have set
        listing = subprocess.run([sys.executable, "-m", "boxfs", "ls", "box://reports"], capture_output=True,
                                 text=True, timeout=60, env=_clean_env(**env), cwd=tmp_path)
        assert listing.stdout.split() == ["notes.txt", "q3.csv", "q3.parquet"], listing.stderr
        users = subprocess.run([sys.executable, "-m", "boxfs", "--json", "users"], capture_output=True, text=True,
                               timeout=60, env=_clean_env(**env), cwd=tmp_path)
        logins = {u["login"] for u in json.loads(users.stdout)}
        assert {"alice@example.com", "bob@example.com"} <= logins
    finally:
        stopped = emulator("--stop", cwd=tmp_path, BOXFS_EMULATOR_PID=str(pid))
    assert stopped.returncode == 0 and stopped.stdout.startswith("unset BOXFS_BASE_URL BOXFS_JWT_CONFIG")
    assert not Path(f"/proc/{pid}").exists() or b"boxfs.emulator" not in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_emulator_never_replaces_a_config_it_did_not_write(tmp_path: Path) -> None:
    real = '{"boxAppSettings": {"clientID": "real-app"}, "enterpriseID": "1"}'
    (tmp_path / "config.json").write_text(real)
    refused = emulator("--env", "--port", "0", cwd=tmp_path)
    assert refused.returncode == 2
    assert "config.json exists and was not written by the emulator" in refused.stderr and "--config-out" in refused.stderr
    assert (tmp_path / "config.json").read_text() == real and refused.stdout == ""


def test_emulator_with_a_data_dir_keeps_its_app_config_and_files(tmp_path: Path) -> None:
    data = tmp_path / "state"
    for round_ in range(2):
        started = emulator("--env", "--port", "0", "--data-dir", str(data), cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        env = exports(started.stdout)
        try:
            assert env["BOXFS_JWT_CONFIG"] == str(data / "config.json")  # kept with the state it belongs to
            config = (data / "config.json").read_text()
            if round_ == 0:
                first = config
                wrote = subprocess.run([sys.executable, "-m", "boxfs", "mkdir", "box://kept"], text=True,
                                       env=_clean_env(**env), cwd=tmp_path, timeout=60, capture_output=True)
                assert wrote.returncode == 0, wrote.stderr
            else:
                assert config == first  # the same app: the config on disk still works
                listing = subprocess.run([sys.executable, "-m", "boxfs", "ls"], capture_output=True, text=True,
                                         env=_clean_env(**env), cwd=tmp_path, timeout=60)
                assert listing.stdout.split() == ["kept/", "reports/"], listing.stderr  # no second seeding
        finally:
            assert emulator("--stop", cwd=tmp_path, BOXFS_EMULATOR_PID=env["BOXFS_EMULATOR_PID"]).returncode == 0


def test_emulator_stop_without_the_variable_says_what_to_do(tmp_path: Path) -> None:
    done = emulator("--stop", cwd=tmp_path)
    assert done.returncode == 2 and 'eval "$(boxfs emulator --env)"' in done.stderr


# ------------------------------------------------------------------------------------------ scripts/demo.sh
def _project_copy(dest: Path) -> Path:
    """The files a fresh clone has that the demo's install reads (no .venv)."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, dest / name)
    for folder in ("scripts", "boxfs"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def test_demo_script_without_python3_says_what_to_install(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "rm", "mktemp", "grep", "tail", "touch", "cat"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    done = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True,
                          timeout=60, env={"PATH": str(tools), "HOME": str(tmp_path)})
    assert done.returncode == 1
    assert "python3 not found" in done.stderr and "apt-get install python3 python3-venv" in done.stderr


def test_demo_script_when_pip_fails_says_so_and_leaves_no_stamp(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    env = _clean_env(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS="", TMPDIR=str(tmp_path))
    done = subprocess.run(["bash", "scripts/demo.sh"], cwd=project, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 1
    assert "pip could not install box-fsspec[demo]" in done.stderr and "full log:" in done.stderr
    assert "HTTPS_PROXY" in done.stderr  # what to check
    assert not (project / ".venv" / ".boxfs-demo-installed").exists()
