"""``boxfs serve webdav`` as separate processes against the Box emulator: every credential form the
library takes (JWT config from the environment, CCG fields), its own spool folder, and two processes
serving the same users behind one (imagined) TCP load balancer, with nothing shared but Box."""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import os
import shutil
import signal
import subprocess
import time

import asyncssh
import pytest
from servers_support import BOXFS, free_port, launch_server, stop
from test_servers_cli import box  # noqa: F401 - the emulator fixture test_servers_cli uses
from webdav4.client import Client

from boxfs import BoxFileSystem
from boxfs.servers.users import hash_password

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (scripts/setup.sh)"),
]

PASSWORD = "al-password-7"


@pytest.fixture(scope="module")
def served(box):  # noqa: F811 - the imported fixture, asked for by name
    """The emulator and folder of test_servers_cli's fixture: alice@example.com, app.json, users.toml
    (login ``al`` at /transfer)."""
    return box


def start(served, *args: str, env: dict[str, str], protocol: str = "webdav") -> tuple[subprocess.Popen, int]:
    emu, tmp = served
    port = free_port()
    argv = [BOXFS, "serve", protocol, "--users", str(tmp / "users.toml"), "--host", "127.0.0.1", "--port", str(port),
            *args]
    return launch_server(argv, port, env={**os.environ, "BOXFS_BASE_URL": emu.url, **env}, cwd=tmp), port


def test_jwt_config_from_environment_with_spool_dir(served):
    emu, tmp = served
    spool = tmp / "spool"
    proc, port = start(served, "--spool-dir", str(spool), "--spool-threshold", "100000",
                       env={"BOXFS_JWT_CONFIG": str(tmp / "app.json")})
    try:
        client = Client(f"http://127.0.0.1:{port}", auth=("al", PASSWORD))
        data = os.urandom(400_000)
        (tmp / "up.bin").write_bytes(data)
        client.upload_file(str(tmp / "up.bin"), "env.bin")
        back = tmp / "back.bin"
        client.download_file("env.bin", str(back))
        assert hashlib.sha1(back.read_bytes()).hexdigest() == hashlib.sha1(data).hexdigest()
    finally:
        output = stop(proc)
    assert spool.is_dir() and (spool.stat().st_mode & 0o077) == 0
    # the spool holds only the Box user's private (0700) folder, empty: the spool file went once uploaded
    leftovers = [p for folder in spool.iterdir() for p in folder.iterdir()]
    assert leftovers == [] and all((f.stat().st_mode & 0o077) == 0 for f in spool.iterdir())
    assert "webdav login al" in output and PASSWORD not in output


def test_ccg_fields(served):
    emu, tmp = served
    client_id, secret = emu.create_ccg_app(scopes=("root_readwrite", "manage_managed_users"))
    proc, port = start(served, "--client-id", client_id, "--enterprise-id", emu.enterprise_id,
                       env={"BOXFS_SERVE_CLIENT_SECRET": secret, "BOXFS_JWT_CONFIG": ""})
    try:
        client = Client(f"http://127.0.0.1:{port}", auth=("al", PASSWORD))
        (tmp / "c.txt").write_bytes(b"via ccg")
        client.upload_file(str(tmp / "c.txt"), "ccg.txt")
    finally:
        output = stop(proc)
    assert secret not in output
    fs = BoxFileSystem(jwt_config=(tmp / "app.json").read_text(), as_user="alice@example.com",
                       base_urls=emu.base_urls, skip_instance_cache=True)
    assert fs.cat_file("transfer/ccg.txt") == b"via ccg"


def test_missing_credentials_fail_at_start(served):
    _emu, tmp = served
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    result = subprocess.run(
        [BOXFS, "serve", "webdav", "--users", str(tmp / "users.toml"), "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "credentials" in (result.stderr + result.stdout).lower()


def test_two_processes_serve_the_same_users(served):
    """Nothing shared but Box: a file written through one process is read, replaced and deleted
    through the other."""
    emu, tmp = served
    env = {"BOXFS_JWT_CONFIG": str(tmp / "app.json")}
    first, port1 = start(served, env=env)
    second, port2 = start(served, env=env)
    try:
        one = Client(f"http://127.0.0.1:{port1}", auth=("al", PASSWORD))
        two = Client(f"http://127.0.0.1:{port2}", auth=("al", PASSWORD))
        for n in range(3):
            data = os.urandom(10_000 + n)
            (tmp / "v").write_bytes(data)
            (one if n % 2 == 0 else two).upload_file(str(tmp / "v"), "shared.bin", overwrite=True)
            reader = two if n % 2 == 0 else one
            out = tmp / "r"
            reader.download_file("shared.bin", str(out))
            assert hashlib.sha1(out.read_bytes()).hexdigest() == hashlib.sha1(data).hexdigest()
        two.remove("shared.bin")
        assert "transfer/shared.bin" not in {e["name"] for e in one.ls("/", detail=True)}
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGINT)
        stop(first), stop(second)


def test_sighup_adds_a_login_while_a_transfer_runs(served):
    emu, tmp = served
    users = tmp / "users.toml"
    original = users.read_text()
    proc, port = start(served, env={"BOXFS_JWT_CONFIG": str(tmp / "app.json")})
    url = f"http://127.0.0.1:{port}"
    data = os.urandom(3 * 1024 * 1024)
    (tmp / "slow.bin").write_bytes(data)
    try:
        upload = subprocess.Popen(  # about 4 s at this rate: the reloads happen during it
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate", "800K", "-u", f"al:{PASSWORD}",
             "-T", str(tmp / "slow.bin"), f"{url}/slow.bin"], stdout=subprocess.PIPE, text=True)

        def propfind(login: str, password: str) -> int:
            result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{login}:{password}",
                                     "-X", "PROPFIND", "-H", "Depth: 0", f"{url}/"],
                                    capture_output=True, text=True, timeout=60, check=True)
            return int(result.stdout)

        assert propfind("newbie", "newbie-pw-9") == 401
        users.write_text(original + f'\n[users.newbie]\npassword = "{hash_password("newbie-pw-9")}"\n'
                                    'box_user = "alice@example.com"\nhome = "/newbie"\n')
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while propfind("newbie", "newbie-pw-9") != 207:
            assert time.monotonic() < deadline, "the new login was not taken"
            time.sleep(0.2)
        assert upload.poll() is None, "the transfer should still be running (raise the file size)"

        users.write_text("[users.broken\n")  # invalid TOML: refused, the previous logins kept
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert propfind("newbie", "newbie-pw-9") == 207 and propfind("al", PASSWORD) == 207

        assert upload.communicate(timeout=60)[0] == "201"
    finally:
        users.write_text(original)
        output = stop(proc)
    assert "reloaded: 2 logins, added ['newbie']" in output
    assert "not reloaded" in output
    fs = BoxFileSystem(jwt_config=(tmp / "app.json").read_text(), as_user="alice@example.com",
                       base_urls=emu.base_urls, skip_instance_cache=True)
    assert hashlib.sha1(fs.cat_file("transfer/slow.bin")).hexdigest() == hashlib.sha1(data).hexdigest()


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_sighup_reloads_ftp_and_sftp_users(served, protocol):
    """The same reload in the other two servers: a login added by SIGHUP works; the session opened
    before it goes on; a broken file is refused."""
    _emu, tmp = served
    users = tmp / "users.toml"
    original = users.read_text()
    extra = ["--state-dir", str(tmp / "state")] if protocol == "sftp" else []
    proc, port = start(served, *extra, env={"BOXFS_JWT_CONFIG": str(tmp / "app.json")}, protocol=protocol)

    def login_works(login: str, password: str) -> bool:
        if protocol == "ftp":
            ftp = ftplib.FTP()
            ftp.connect("127.0.0.1", port, timeout=30)
            try:
                ftp.login(login, password)
                return True
            except ftplib.error_perm:
                return False
            finally:
                ftp.close()

        async def attempt() -> bool:
            try:
                async with asyncssh.connect("127.0.0.1", port, username=login, password=password, client_keys=None,
                                            known_hosts=None):
                    return True
            except asyncssh.PermissionDenied:
                return False

        return asyncio.run(attempt())

    try:
        first = ftplib.FTP() if protocol == "ftp" else None
        if first is not None:
            first.connect("127.0.0.1", port, timeout=30)
            first.login("al", PASSWORD)
        assert not login_works("newbie", "newbie-pw-9")
        users.write_text(original + f'\n[users.newbie]\npassword = "{hash_password("newbie-pw-9")}"\n'
                                    'box_user = "alice@example.com"\nhome = "/newbie"\n')
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not login_works("newbie", "newbie-pw-9"):
            assert time.monotonic() < deadline, "the new login was not taken"
            time.sleep(0.3)
        users.write_text("[users.broken\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert login_works("al", PASSWORD) and login_works("newbie", "newbie-pw-9")
        if first is not None:  # the session opened before the reloads is still served
            first.storbinary("STOR before-reload.txt", io.BytesIO(b"still here"))
            first.quit()
    finally:
        users.write_text(original)
        output = stop(proc)
    assert "added ['newbie']" in output and "not reloaded" in output
