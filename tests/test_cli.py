"""The ``boxfs`` command line, each command run as a subprocess (``python -m boxfs ...``).

The Box side is the session emulator of ``tests/conftest.py``; every command gets ``--base-url``,
``--config`` (a file written from the session JWT app) and ``--as-user`` (a user created for this
module), exactly as a shell user would type them. Results are checked through an independent
``BoxFileSystem`` on the same emulator, never through the CLI's own output alone.
"""

from __future__ import annotations

import ftplib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from support import injected_faults

from boxfs.emulator import BoxEmulator

COMMANDS = ("ls", "tree", "info", "cat", "cp", "mv", "rm", "mkdir", "du", "find", "users", "whoami", "login", "sign",
            "emulator", "mount", "unmount", "serve")


def _clean_env() -> dict[str, str]:
    """The test process environment without any BOXFS_* variable (they would change what the CLI does),
    with the user's cache dir (sync's hash cache) in a temporary folder of this test session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    env["XDG_CACHE_HOME"] = _CACHE_HOME
    return env


_CACHE_HOME = tempfile.mkdtemp(prefix="boxfs-cli-cache-")


@dataclass
class Cli:
    """Runs ``python -m boxfs`` with the connection options for the session emulator."""

    emu: BoxEmulator
    config_file: Path
    login: str
    user_id: str
    cwd: Path

    def base_args(self, as_user: str | None) -> list[str]:
        args = ["--base-url", self.emu.url, "--config", str(self.config_file)]
        if as_user:
            args += ["--as-user", as_user]
        return args

    def __call__(self, *args: str, code: int = 0, as_user: str | None = "default", stdin: bytes | None = None,
                 env: dict[str, str] | None = None, raw: bool = False, timeout: float = 60,
                 cwd: Path | None = None) -> Any:
        user = self.login if as_user == "default" else as_user
        argv = [sys.executable, "-m", "boxfs", *([] if raw else self.base_args(user)), *args]
        proc = subprocess.run(argv, input=stdin, capture_output=True, cwd=cwd or self.cwd, timeout=timeout,
                              env=env if env is not None else _clean_env())
        assert proc.returncode == code, (
            f"boxfs {' '.join(args)} exited {proc.returncode}, expected {code}\n"
            f"stdout: {proc.stdout[-2000:]!r}\nstderr: {proc.stderr.decode(errors='replace')[-3000:]}"
        )
        return proc


@pytest.fixture(scope="module")
def cli(emulator: BoxEmulator, jwt_config: str, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    home = tmp_path_factory.mktemp("cli")
    config = home / "app.json"
    config.write_text(jwt_config)
    config.chmod(0o600)
    login = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    user_id = emulator.create_user(login, name="CLI User")
    return Cli(emulator, config, login, user_id, home)


@pytest.fixture
def box(make_fs: Callable[..., Any], cli: Cli) -> Any:
    """An independent filesystem acting as the CLI's user, to seed and check data."""
    return make_fs(as_user=cli.user_id)


@pytest.fixture
def top(unique: str) -> str:
    return unique


def one_line_error(proc: Any) -> str:
    err = proc.stderr.decode().strip()
    assert err.count("\n") == 0, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------------------------- help, usage
def test_help_lists_every_command(cli: Cli) -> None:
    out = cli("--help", raw=True).stdout.decode()
    listed = {line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert set(COMMANDS) <= listed, f"missing from --help: {set(COMMANDS) - listed}"
    serve = cli("serve", "--help", raw=True).stdout.decode()
    assert "ftp" in serve and "sftp" in serve


def test_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    proc = cli("frobnicate", code=2, raw=True)
    assert "No such command" in proc.stderr.decode()
    (tmp_path / "a").write_text("x")
    proc = cli("cp", str(tmp_path / "a"), str(tmp_path / "b"), code=2)
    assert "box://" in proc.stderr.decode()
    assert not (tmp_path / "b").exists()


def test_bad_config_is_one_line_and_debug_shows_traceback(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"boxAppSettings": {"clientID": "x"')  # truncated paste
    args = ["--base-url", cli.emu.url, "--config", str(bad), "ls"]
    err = one_line_error(cli(*args, code=2, raw=True))
    assert err.startswith("boxfs: error: JWT config is not valid JSON")
    proc = cli("--debug", *args, code=2, raw=True)
    assert "Traceback" in proc.stderr.decode()


def test_debug_logs_requests_but_no_secret(cli: Cli, box: Any, top: str) -> None:
    box.pipe(f"{top}/s.txt", b"secret-free")
    proc = cli("--debug", "cat", f"box://{top}/s.txt")
    assert proc.stdout == b"secret-free"
    log = proc.stderr.decode()
    assert "GET /2.0/files/" in log and "/content" in log  # the request log is there
    app = json.loads(cli.config_file.read_text())["boxAppSettings"]
    for secret in (app["clientSecret"], app["appAuth"]["passphrase"], "PRIVATE KEY", "Bearer", "/download/"):
        assert secret not in log, f"{secret[:12]}... appears in the --debug log"


# ---------------------------------------------------------------------------------- reading
def test_ls_plain_long_and_json(cli: Cli, box: Any, top: str) -> None:
    box.pipe({f"{top}/b.txt": b"12345", f"{top}/A/x": b"1"})
    assert cli("ls", f"box://{top}").stdout.decode().splitlines() == ["A/", "b.txt"]
    long = cli("ls", "-l", top).stdout.decode().splitlines()
    assert long[0].startswith("d ") and long[0].endswith(" A/")
    assert long[1].startswith("- ") and " 5 " in long[1] and long[1].endswith(" b.txt")
    entries = json.loads(cli("--json", "ls", f"/{top}/").stdout)
    assert [(e["name"], e["type"], e["size"]) for e in entries] == [
        (f"{top}/A", "directory", 0), (f"{top}/b.txt", "file", 5)]
    assert entries[1]["id"] == box.info(f"{top}/b.txt")["id"]


def test_ls_missing_path_fails_with_one_line(cli: Cli, top: str) -> None:
    err = one_line_error(cli("ls", f"box://{top}/nope", code=1))
    assert err.startswith("boxfs: error:") and top in err and "No such file" in err


def test_tree_text_and_json(cli: Cli, box: Any, top: str) -> None:
    box.pipe({f"{top}/a/one.txt": b"1", f"{top}/a/deep/two.txt": b"22", f"{top}/z.txt": b"333"})
    lines = cli("tree", f"box://{top}").stdout.decode().splitlines()
    assert lines[0] == f"box://{top}"
    assert lines[1:6] == ["├── a/", "│   ├── deep/", "│   │   └── two.txt", "│   └── one.txt", "└── z.txt"]
    assert lines[-1] == "2 folders, 3 files"
    tree = json.loads(cli("--json", "tree", "-L", "1", top).stdout)
    assert [(c["name"], c["type"]) for c in tree["children"]] == [("a", "directory"), ("z.txt", "file")]
    assert tree["children"][0]["children"] == []  # -L 1: not descended


def test_info_json_matches_box(cli: Cli, box: Any, top: str) -> None:
    box.pipe(f"{top}/f.bin", b"\x00\x01" * 100)
    info = json.loads(cli("--json", "info", f"box://{top}/f.bin").stdout)
    expected = box.info(f"{top}/f.bin")
    assert (info["id"], info["size"], info["sha1"], info["type"]) == (expected["id"], 200, expected["sha1"], "file")
    text = cli("info", f"{top}/f.bin").stdout.decode()
    assert f"sha1: {expected['sha1']}" in text.splitlines()


def test_cat_streams_exact_bytes(cli: Cli, box: Any, top: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    box.pipe({f"{top}/big.bin": data, f"{top}/small.txt": b"tail\n"})
    out = cli("cat", f"box://{top}/big.bin", f"{top}/small.txt").stdout
    assert out == data + b"tail\n"


def test_du_and_find(cli: Cli, box: Any, top: str) -> None:
    box.pipe({f"{top}/a/x.csv": b"a" * 10, f"{top}/a/b/y.CSV": b"b" * 20, f"{top}/c.txt": b"c" * 5})
    lines = cli("du", f"box://{top}").stdout.decode().splitlines()
    assert lines == [f"30\tbox://{top}/a", f"5\tbox://{top}/c.txt", f"35\tbox://{top}  (total)"]
    summary = json.loads(cli("--json", "du", "-s", top).stdout)
    assert summary == {"path": top, "total": 35}
    found = cli("find", f"box://{top}", "--name", "*.csv", "--type", "f").stdout.decode().splitlines()
    assert found == [f"box://{top}/a/b/y.CSV", f"box://{top}/a/x.csv"]
    dirs = json.loads(cli("--json", "find", top, "--type", "d").stdout)
    assert [d["name"] for d in dirs] == [f"{top}/a", f"{top}/a/b"]


# ---------------------------------------------------------------------------------- writing
def test_mkdir_mv_rm(cli: Cli, box: Any, top: str) -> None:
    cli("mkdir", "-p", f"box://{top}/p/q", f"{top}/r")
    proc = cli("mkdir", f"box://{top}/p", code=1)
    assert "exists" in one_line_error(proc).lower()
    box.pipe(f"{top}/p/q/f.txt", b"hello")
    cli("mv", f"box://{top}/p/q/f.txt", f"box://{top}/r/g.txt")
    cli("mv", f"box://{top}/p", f"box://{top}/r")  # into an existing folder: keeps its name
    box.invalidate_cache()
    assert box.cat(f"{top}/r/g.txt") == b"hello"
    assert box.isdir(f"{top}/r/p/q") and not box.exists(f"{top}/p")
    assert "folder" in one_line_error(cli("rm", f"box://{top}/r", code=1))
    cli("rm", "-r", f"box://{top}/r")
    cli("rm", "-f", f"box://{top}/never-was")
    assert f"{top}/never-was" in one_line_error(cli("rm", f"box://{top}/never-was", code=1))
    box.invalidate_cache()
    assert box.ls(top, detail=False) == []


def test_cp_local_to_box_recursive_with_progress(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub" / "empty").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    payload = os.urandom(2 * 1024 * 1024)
    (src / "sub" / "b.bin").write_bytes(payload)
    proc = cli("cp", "-r", "--progress", str(src), f"box://{top}/dest")
    assert "100%" in proc.stderr.decode()  # the tqdm bar, forced on although stderr is a pipe
    assert box.cat(f"{top}/dest/a.txt") == b"alpha"
    assert box.cat(f"{top}/dest/sub/b.bin") == payload
    assert box.isdir(f"{top}/dest/sub/empty")
    # again, into the now-existing folder: the source lands under its own name, as with cp(1)
    listed = json.loads(cli("--json", "cp", "-r", "./src", f"box://{top}/dest", cwd=tmp_path).stdout)
    box.invalidate_cache()
    assert box.cat(f"{top}/dest/src/a.txt") == b"alpha"
    assert {d["dst"] for d in listed} == {f"box://{top}/dest/src/a.txt", f"box://{top}/dest/src/sub/b.bin"}


def test_cp_box_to_local_and_box_to_box(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    box.pipe({f"{top}/d/one.txt": b"1", f"{top}/d/e/two.txt": b"22"})
    box.makedirs(f"{top}/d/hollow", exist_ok=True)
    out = tmp_path / "out"
    cli("cp", "-r", "--no-progress", f"box://{top}/d", str(out))
    assert (out / "one.txt").read_bytes() == b"1"
    assert (out / "e" / "two.txt").read_bytes() == b"22"
    assert (out / "hollow").is_dir()
    cli("cp", f"box://{top}/d/one.txt", str(tmp_path))  # into an existing local folder
    assert (tmp_path / "one.txt").read_bytes() == b"1"
    assert "-r" in one_line_error(cli("cp", f"box://{top}/d", str(tmp_path / "x"), code=2))

    log = cli.emu.request_log
    files, folders = (log.count(method="POST", route=r) for r in ("/files/{file_id}/copy", "/folders/{folder_id}/copy"))
    cli("cp", "-r", f"box://{top}/d", f"box://{top}/d2")  # a whole folder to a new name: one server-side copy
    assert log.count(method="POST", route="/folders/{folder_id}/copy") == folders + 1
    assert log.count(method="POST", route="/files/{file_id}/copy") == files
    box.invalidate_cache()
    assert box.cat(f"{top}/d2/e/two.txt") == b"22" and box.isdir(f"{top}/d2/hollow")
    assert box.cat(f"{top}/d/one.txt") == b"1"  # the source is untouched


def test_cp_expands_box_wildcards(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    box.pipe({f"{top}/w/a.csv": b"a", f"{top}/w/b.csv": b"b", f"{top}/w/c.txt": b"c"})
    cli("cp", f"box://{top}/w/*.csv", str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]
    assert (tmp_path / "b.csv").read_bytes() == b"b"
    assert "No Box item matches" in one_line_error(cli("cp", f"box://{top}/w/*.xls", str(tmp_path), code=1))


def test_sign_prints_a_credential_free_url(cli: Cli, box: Any, top: str) -> None:
    box.pipe(f"{top}/share.bin", b"\x01\x02 signed")
    url = cli("sign", f"box://{top}/share.bin", "--expiration", "120").stdout.decode().strip()
    got = requests.get(url, timeout=30)  # no Authorization header
    assert got.status_code == 200 and got.content == b"\x01\x02 signed"


def test_cp_missing_local_source_fails(cli: Cli, top: str) -> None:
    err = one_line_error(cli("cp", "./no-such-file", f"box://{top}/x", code=1))
    assert "no-such-file" in err


def test_cp_names_a_missing_or_folder_box_source_once(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    box.mkdir(f"{top}/folder")
    err = one_line_error(cli("cp", f"box://{top}/missing.txt", str(tmp_path), code=1))
    assert f"box://{top}/missing.txt" in err and "box://box://" not in err
    err = cli("cp", f"box://{top}/folder", str(tmp_path), code=2).stderr.decode()
    assert f"box://{top}/folder is a folder" in err and "box://box://" not in err


# ---------------------------------------------------------------------------------- users
def test_whoami_as_user_and_as_service_account(cli: Cli, emulator: BoxEmulator) -> None:
    me = json.loads(cli("--json", "whoami").stdout)
    assert (me["id"], me["login"]) == (cli.user_id, cli.login)
    text = cli("whoami", as_user=None).stdout.decode()
    assert text.startswith("AutomationUser_")  # the JWT app's service account


def test_users_list_and_resolve(cli: Cli) -> None:
    found = json.loads(cli("--json", "users", cli.login).stdout)
    assert [(u["id"], u["login"]) for u in found] == [(cli.user_id, cli.login)]
    listing = cli("users").stdout.decode().splitlines()
    assert f"{cli.user_id}\t{cli.login}\tCLI User\tactive" in listing
    assert len(cli("users", "--limit", "1").stdout.decode().splitlines()) == 1


def test_environment_variables_configure_the_cli(cli: Cli) -> None:
    env = _clean_env() | {"BOXFS_JWT_CONFIG": str(cli.config_file), "BOXFS_AS_USER": cli.login,
                          "BOXFS_BASE_URL": cli.emu.url}
    assert cli("whoami", raw=True, env=env).stdout.decode().startswith(cli.login)
    env["BOXFS_JWT_CONFIG"] = cli.config_file.read_text()  # the JSON text itself works too
    assert json.loads(cli("--json", "whoami", raw=True, env=env).stdout)["id"] == cli.user_id


# ---------------------------------------------------------------------------------- delegates
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(check: Callable[[], bool], proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited {proc.returncode}: {proc.stderr.read()!r}")
        time.sleep(0.05)
    raise AssertionError(f"{what}: not ready after {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_emulator_command_runs_a_usable_emulator(cli: Cli, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "boxfs", "emulator", "--port", "0", "--data-dir", str(tmp_path),
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env(), cwd=tmp_path,
    )
    try:
        _wait_for(lambda: ready.exists() and bool(ready.read_text()), proc, "boxfs emulator")
        url = ready.read_text().strip()
        config = tmp_path / "config.json"
        me = cli("--json", "--base-url", url, "--config", str(config), "--as-user", "alice@example.com",
                 "whoami", raw=True)
        assert json.loads(me.stdout)["login"] == "alice@example.com"
    finally:
        _stop(proc)


def test_serve_ftp(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    pytest.importorskip("pyftpdlib")
    from boxfs.servers.users import hash_password

    box.pipe(f"{top}/hello.txt", b"over ftp")
    users = tmp_path / "users.toml"
    users.write_text(f'[users.carl]\npassword = "{hash_password("pw-carl")}"\nbox_user = "{cli.login}"\n'
                     f'home = "/{top}"\n')
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "boxfs", *cli.base_args(None), "serve", "ftp", "--users", str(users),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env(),
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    try:
        _wait_for(listening, proc, "boxfs serve ftp")
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", port, timeout=10)
            ftp.login("carl", "pw-carl")
            assert ftp.nlst() == ["hello.txt"]
            chunks: list[bytes] = []
            ftp.retrbinary("RETR hello.txt", chunks.append)
            assert b"".join(chunks) == b"over ftp"
    finally:
        _stop(proc)


def test_serve_without_config_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    err = one_line_error(cli("serve", "sftp", "--users", str(tmp_path / "u.toml"), code=2, raw=True))
    assert "--config" in err


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        return "no FUSE here (/dev/fuse or fusermount3 missing)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy unavailable: {exc}"
    return None


@pytest.mark.skipif(_fuse_missing() is not None, reason=_fuse_missing() or "")
def test_mount_and_unmount(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    box.pipe(f"{top}/m/seen.txt", b"through fuse")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "boxfs", *cli.base_args(cli.login), "mount", f"box://{top}/m", str(mnt),
         "--foreground", "--read-only"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env(),
    )
    try:
        _wait_for(lambda: os.path.ismount(mnt), proc, "boxfs mount")
        assert (mnt / "seen.txt").read_bytes() == b"through fuse"
        with pytest.raises(OSError):
            (mnt / "new.txt").write_bytes(b"refused")
        cli("unmount", str(mnt), raw=True)
        assert proc.wait(15) == 0
        assert not os.path.ismount(mnt)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        _stop(proc)


@pytest.mark.skipif(_fuse_missing() is not None, reason=_fuse_missing() or "")
def test_mount_in_background_returns_once_mounted(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    """``boxfs mount REMOTE MOUNTPOINT`` (no --foreground) returns 0 with the folder already mounted."""
    box.pipe(f"{top}/bg/seen.txt", b"background mount")
    mnt = tmp_path / "mnt-bg"
    mnt.mkdir()
    try:
        cli("mount", f"box://{top}/bg", str(mnt))
        assert os.path.ismount(mnt)
        assert (mnt / "seen.txt").read_bytes() == b"background mount"
        (mnt / "written.txt").write_bytes(b"from the mount")
        cli("unmount", str(mnt), raw=True)
        assert not os.path.ismount(mnt)
        assert box.cat_file(f"{top}/bg/written.txt") == b"from the mount"
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


# ---------------------------------------------------------------------------------- the wildcard rule, cp safety
UPLOADS = ("/files/content", "/files/{file_id}/content", "/files/upload_sessions", "/files/{file_id}/upload_sessions")


def _local_tree(root: Path, files: dict[str, bytes]) -> Path:
    """A local folder holding ``files`` (name -> content)."""
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def _writes(cli: Cli, start: int) -> list[Any]:
    return [r for r in cli.emu.request_log.records[start:] if r.method in ("POST", "PUT", "DELETE")
            and not r.route.startswith("/oauth2") and cli.user_id in (r.as_user, r.user_id)]


def test_rm_deletes_exactly_the_named_file(cli: Cli, box: Any, top: str) -> None:
    names = ["a [1].txt", "a 1.txt", "data?.csv", "dataX.csv", "star*.txt", "starry.txt"]
    box.pipe({f"{top}/{n}": n.encode() for n in names})
    cli("rm", f"box://{top}/a [1].txt")
    cli("rm", f"box://{top}/data?.csv", f"box://{top}/star*.txt")
    box.invalidate_cache()
    assert sorted(box.ls(top, detail=False)) == [f"{top}/{n}" for n in ("a 1.txt", "dataX.csv", "starry.txt")]
    # no item has these names: now they are patterns (case-insensitive), unless --literal says otherwise
    err = one_line_error(cli("rm", "--literal", f"box://{top}/DATA*", code=1))
    assert "DATA*" in err and "No such file" in err
    cli("rm", f"box://{top}/DATA*")
    box.invalidate_cache()
    assert sorted(box.ls(top, detail=False)) == [f"{top}/a 1.txt", f"{top}/starry.txt"]
    assert "No Box item matches" in one_line_error(cli("rm", f"box://{top}/zz*", code=1))
    cli("rm", "-f", f"box://{top}/zz*")
    # a folder whose name looks like a pattern: deleted with what it holds, its look-alike kept
    box.pipe({f"{top}/dir [2]/in/x.txt": b"x", f"{top}/dir 2/keep.txt": b"k"})
    cli("rm", "-r", f"box://{top}/dir [2]")
    box.invalidate_cache()
    assert not box.exists(f"{top}/dir [2]") and box.cat_file(f"{top}/dir 2/keep.txt") == b"k"


def test_one_wildcard_rule_for_ls_cat_find_mv(cli: Cli, box: Any, top: str) -> None:
    box.pipe({f"{top}/w/a.csv": b"A", f"{top}/w/B.Csv": b"B", f"{top}/w/c.txt": b"C", f"{top}/w/[x].csv": b"X",
              f"{top}/w/deep/d.CSV": b"D"})
    listed = cli("ls", f"box://{top}/w/*.CSV").stdout.decode().splitlines()
    assert listed == [f"{top}/w/[x].csv", f"{top}/w/a.csv", f"{top}/w/B.Csv"]
    assert cli("ls", f"box://{top}/w/[x].csv").stdout.decode().splitlines() == ["[x].csv"]  # the file itself
    assert cli("cat", f"box://{top}/w/A.???").stdout == b"A"  # "?" is one character; any case
    assert cli("cat", f"box://{top}/w/[x].csv").stdout == b"X"
    assert cli("cat", f"box://{top}/w/**/*.csv").stdout == b"XABD"  # ** crosses folders
    found = cli("find", f"box://{top}/w", "--name", "*.CSV", "--type", "f").stdout.decode().splitlines()
    assert found == [f"box://{top}/w/[x].csv", f"box://{top}/w/a.csv", f"box://{top}/w/B.Csv",
                     f"box://{top}/w/deep/d.CSV"]
    cli("mkdir", f"box://{top}/to")
    cli("mv", f"box://{top}/w/[x].csv", f"box://{top}/to/")
    cli("mv", f"box://{top}/w/*.csv", f"box://{top}/to")
    box.invalidate_cache()
    assert sorted(box.ls(f"{top}/to", detail=False)) == [f"{top}/to/{n}" for n in ("B.Csv", "[x].csv", "a.csv")]
    assert box.cat_file(f"{top}/w/c.txt") == b"C"


def test_cp_refuses_sources_landing_on_one_name_before_writing(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    box.pipe({f"{top}/reports/{d}/{n}": f"{d}/{n}".encode() for d in ("a", "b", "c") for n in ("x.csv", "y.csv")})
    out = tmp_path / "csv"
    out.mkdir()
    err = one_line_error(cli("cp", f"box://{top}/reports/**/*.csv", f"{out}/", code=2))
    assert "x.csv" in err and "nothing was copied" in err
    assert list(out.iterdir()) == []
    # local -> Box: X.txt and x.txt are one name on Box; refused before any request that writes
    src = _local_tree(tmp_path / "src", {"X.txt": b"upper", "x.txt": b"lower"})
    start = len(cli.emu.request_log)
    err = one_line_error(cli("cp", "-r", str(src), f"box://{top}/up", code=2))
    assert "x.txt" in err.lower() and _writes(cli, start) == []


def test_cp_refuses_a_name_box_refuses_before_any_request(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    src = _local_tree(tmp_path / "src", {"fine.txt": b"ok", "trailing.txt ": b"Box refuses a trailing space"})
    start = len(cli.emu.request_log)
    err = one_line_error(cli("cp", "-r", str(src), f"box://{top}/names", code=2))  # bad input: nothing attempted
    assert "space" in err and _writes(cli, start) == []
    box.invalidate_cache()
    assert not box.exists(f"{top}/names")


def test_cp_never_uploads_identical_content_again(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    src = _local_tree(tmp_path / "same", {"one.txt": b"one", "two.txt": b"two"})
    cli("cp", "-r", str(src), f"box://{top}/v")
    box.invalidate_cache()
    before = {k: v["etag"] for k, v in box.find(f"{top}/v", detail=True).items()}
    start = len(cli.emu.request_log)
    proc = cli("cp", str(src / "one.txt"), str(src / "two.txt"), f"box://{top}/v/")
    assert proc.stdout.decode().splitlines() == [f"identical, not copied: box://{top}/v/one.txt",
                                                 f"identical, not copied: box://{top}/v/two.txt"]
    assert _writes(cli, start) == []
    (src / "two.txt").write_bytes(b"TWO")  # same size, new content: SHA-1 tells
    listed = json.loads(cli("--json", "cp", "-r", str(src) + "/", f"box://{top}/v").stdout)
    assert sorted((d["dst"], d["status"]) for d in listed) == [
        (f"box://{top}/v/one.txt", "identical"), (f"box://{top}/v/two.txt", "copied")]
    box.invalidate_cache()
    after = {k: v["etag"] for k, v in box.find(f"{top}/v", detail=True).items()}
    assert after[f"{top}/v/one.txt"] == before[f"{top}/v/one.txt"]
    assert after[f"{top}/v/two.txt"] != before[f"{top}/v/two.txt"] and box.cat_file(f"{top}/v/two.txt") == b"TWO"
    # Box -> local: an identical local file is left alone too
    cli("cp", f"box://{top}/v/one.txt", str(src))
    assert "identical" in cli("cp", f"box://{top}/v/one.txt", str(src)).stdout.decode()


def test_cp_to_local_never_leaves_a_partial_file(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    box.pipe(f"{top}/p/f.bin", b"new content")
    target = tmp_path / "f.bin"
    target.write_bytes(b"old content that must survive")
    with injected_faults(cli.emu, rate=1.0, kinds=("drop",), route="/download/"):
        cli("cp", f"box://{top}/p/f.bin", str(target), code=1)
    assert target.read_bytes() == b"old content that must survive"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    cli("cp", f"box://{top}/p/f.bin", str(target))
    assert target.read_bytes() == b"new content"


def _requests(cli: Cli, start: int) -> list[Any]:
    """The requests made for the CLI's user since ``start`` (token requests carry no user: left out)."""
    return [r for r in cli.emu.request_log.records[start:] if cli.user_id in (r.as_user, r.user_id)]


def test_cp_of_a_50_file_tree_costs_no_more_requests_than_before(cli: Cli, box: Any, top: str,
                                                                 tmp_path: Path) -> None:
    """cp runs on fs.put/get/copy now; a 50-file tree in 5 folders costs what the old engine cost
    (measured with the engine of a32d05e: 58 up, 8 unchanged, 108 down (a download is an API request
    and one to the download host), 15 Box -> Box by a pattern), and every byte arrives."""
    files = {f"d{i}/f{j}.bin": os.urandom(100 + 10 * j) for i in range(5) for j in range(10)}
    src = tmp_path / "tree"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)

    def cost(*args: str) -> tuple[int, Any]:
        start = len(cli.emu.request_log)
        proc = cli(*args)
        return len(_requests(cli, start)), proc

    up, _ = cost("cp", "-r", str(src), f"box://{top}/t")
    again, proc = cost("--json", "cp", "-r", str(src) + "/", f"box://{top}/t")
    down, _ = cost("cp", "-r", f"box://{top}/t", str(tmp_path / "down"))
    box.makedirs(f"{top}/copy", exist_ok=True)
    server_side, _ = cost("cp", f"box://{top}/t/d0/F*.BIN", f"box://{top}/copy/")  # a pattern: file by file
    assert {d["status"] for d in json.loads(proc.stdout)} == {"identical"} and len(json.loads(proc.stdout)) == 50
    for rel, data in files.items():
        assert (tmp_path / "down" / rel).read_bytes() == data
    box.invalidate_cache()
    assert box.cat([f"{top}/copy/f{j}.bin" for j in range(10)]) == {
        f"{top}/copy/f{j}.bin": files[f"d0/f{j}.bin"] for j in range(10)}
    print(f"requests: up {up}, unchanged {again}, down {down}, box->box {server_side}")
    assert up <= 58 and again <= 8 and down <= 108 and server_side <= 15


def test_cp_copies_a_folder_named_like_a_pattern_not_its_look_alike(cli: Cli, box: Any, top: str,
                                                                    tmp_path: Path) -> None:
    """fsspec globs a path holding ``[`` (``dir [1]`` would copy ``dir 1``): cp copies the named folder,
    in every direction, inside an existing DST under its own name or its contents with a trailing slash."""
    src = tmp_path / "src"
    (src / "dir [1]" / "sub").mkdir(parents=True)
    (src / "dir 1").mkdir()
    (src / "dir [1]" / "a*.txt").write_bytes(b"a")
    (src / "dir [1]" / "sub" / "b?.txt").write_bytes(b"b")
    (src / "dir 1" / "look-alike.txt").write_bytes(b"wrong folder")
    box.makedirs(f"{top}/up", exist_ok=True)
    cli("cp", "-r", str(src / "dir [1]"), f"box://{top}/up")
    cli("cp", "-r", str(src / "dir [1]") + "/", f"box://{top}/flat")
    box.invalidate_cache()
    assert sorted(box.find(f"{top}/up")) == [f"{top}/up/dir [1]/a*.txt", f"{top}/up/dir [1]/sub/b?.txt"]
    assert sorted(box.find(f"{top}/flat")) == [f"{top}/flat/a*.txt", f"{top}/flat/sub/b?.txt"]
    box.pipe(f"{top}/up/dir 1/look-alike.txt", b"wrong folder")
    down = tmp_path / "down"
    down.mkdir()
    cli("cp", "-r", f"box://{top}/up/dir [1]", str(down))
    assert sorted(str(p.relative_to(down)) for p in down.rglob("*") if p.is_file()) == [
        "dir [1]/a*.txt", "dir [1]/sub/b?.txt"]
    assert (down / "dir [1]" / "sub" / "b?.txt").read_bytes() == b"b"
    cli("cp", "-r", f"box://{top}/up/dir [1]/", str(tmp_path / "flat"))  # its contents
    cli("cp", "-r", f"box://{top}/up/dir [1]", str(tmp_path / "new"))  # a new DST: the folder becomes it
    for landed in (tmp_path / "flat", tmp_path / "new"):
        assert sorted(p.relative_to(landed).as_posix() for p in landed.rglob("*") if p.is_file()) == [
            "a*.txt", "sub/b?.txt"]
    box.makedirs(f"{top}/copies", exist_ok=True)
    cli("cp", "-r", f"box://{top}/up/dir [1]", f"box://{top}/copies")
    box.pipe(f"{top}/up/dir [1]/c[0].txt", b"c")
    cli("cp", "-r", f"box://{top}/up/dir [1]", f"box://{top}/copies")  # merged into copies/dir [1]
    box.invalidate_cache()
    assert sorted(box.find(f"{top}/copies")) == [f"{top}/copies/dir [1]/a*.txt", f"{top}/copies/dir [1]/c[0].txt",
                                                f"{top}/copies/dir [1]/sub/b?.txt"]


def test_cp_of_a_tree_holding_a_pipe_copies_the_rest_and_fails(cli: Cli, box: Any, top: str, tmp_path: Path) -> None:
    """A FIFO would block the upload forever: it fails alone, with its reason; the rest arrives; exit 1."""
    src = _local_tree(tmp_path / "src", {"a.txt": b"a"})
    os.mkfifo(src / "pipe")
    proc = cli("--json", "cp", "-r", str(src), f"box://{top}/p", code=1)
    rows = {Path(d["src"]).name: d for d in json.loads(proc.stdout)}
    assert rows["a.txt"]["status"] == "copied" and rows["pipe"]["status"] == "failed"
    assert "not a regular file" in one_line_error(proc)
    box.invalidate_cache()
    assert box.find(f"{top}/p") == [f"{top}/p/a.txt"]
