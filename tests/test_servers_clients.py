"""The servers as standard clients use them: OpenSSH ``sftp`` (batch mode, key login, strict host-key
checking), ``lftp`` and ``curl`` over FTP, against the Box emulator over real HTTP.

Every check of what was stored looks behind the server, at Box (the emulator) through a separate
filesystem, and compares content by SHA-1.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import asyncssh
import pytest
from servers_support import PASSWORDS, emulator_backend, emulator_factory, write_users_file
from support import injected_faults

from boxfs.servers.ftp import start_ftp_server
from boxfs.servers.sftp import start_sftp_server

pytestmark = pytest.mark.timeout(300)

needs_sftp = pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH sftp client not installed")
needs_lftp = pytest.mark.skipif(shutil.which("lftp") is None, reason="lftp not installed (scripts/setup.sh)")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (scripts/setup.sh)")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clients")
    with emulator_backend(tmp) as backend:
        key = asyncssh.generate_private_key("ssh-ed25519")
        key_file = tmp / "id_ed25519"
        key.write_private_key(str(key_file))
        key_file.chmod(0o600)
        users = write_users_file(
            tmp / "users.toml", backend, ssh_keys={"bob": [key.export_public_key().decode().strip()]}
        )
        yield backend, users, key_file, tmp


def box_files(backend, login: str) -> dict[str, str]:
    """name -> SHA-1 of every file at the login's Box root, read behind the server."""
    fs = backend.inspect(backend.box_users[login])
    out = {}
    for entry in fs.ls("", detail=True):
        if entry["type"] == "file":
            out[entry["name"].rsplit("/", 1)[-1]] = hashlib.sha1(fs.cat_file(entry["name"])).hexdigest()
    return out


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def put_box(backend, login: str, name: str, data: bytes) -> None:
    backend.inspect(backend.box_users[login]).pipe_file(name, data)


def clear_box(backend, login: str) -> None:
    fs = backend.inspect(backend.box_users[login])
    for entry in fs.ls("", detail=True):
        if entry["type"] == "file":
            fs.rm_file(entry["name"])


# ------------------------------------------------------------------------------------------ OpenSSH sftp
def openssh_sftp(server, key_file: Path, tmp: Path, commands: list[str]) -> subprocess.CompletedProcess:
    """Run ``sftp -b`` as bob with his key, trusting only the server's key (StrictHostKeyChecking=yes)."""
    known = tmp / "known_hosts"
    known.write_text(f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}")
    batch = tmp / "batch"
    batch.write_text("\n".join(commands) + "\n")
    return subprocess.run(
        [
            "sftp", "-b", str(batch), "-i", str(key_file), "-P", str(server.port),
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            f"bob@{server.host}",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp,
    )


@needs_sftp
def test_openssh_sftp_renames_lose_nothing(env):
    backend, users, key_file, tmp = env
    clear_box(backend, "bob")
    (tmp / "Report.txt").write_bytes(b"the report")
    put_box(backend, "bob", "same.txt", b"renamed onto itself")
    put_box(backend, "bob", "old.txt", b"the new content")
    put_box(backend, "bob", "target.txt", b"the content it replaces")
    with start_sftp_server(users, backend.factory) as server:
        done = openssh_sftp(server, key_file, tmp, [
            "put Report.txt",
            "rename Report.txt report.txt",  # case only: OpenSSH uses posix-rename
            "rename same.txt same.txt",  # onto itself: must not delete
            "rename old.txt target.txt",  # onto an existing file: replaced
            "ls -1",
        ])
    assert done.returncode == 0, done.stderr
    assert box_files(backend, "bob") == {
        "report.txt": sha1(b"the report"),
        "same.txt": sha1(b"renamed onto itself"),
        "target.txt": sha1(b"the new content"),
    }


@needs_sftp
def test_openssh_sftp_rename_failing_at_box_loses_nothing(env):
    backend, users, key_file, tmp = env
    clear_box(backend, "bob")
    put_box(backend, "bob", "src.txt", b"source")
    put_box(backend, "bob", "dst.txt", b"destination")
    put_box(backend, "bob", "Case.txt", b"case")
    emu = backend.emulator
    no_retry = emulator_factory(backend, retry=1)
    with start_sftp_server(users, no_retry) as server:
        with injected_faults(emu, rate=1.0, kinds=("500",), route=r"^/2\.0/files/\d+$", method="PUT"):
            done = openssh_sftp(server, key_file, tmp, [
                "-rename src.txt dst.txt",
                "-rename src.txt fresh.txt",
                "-rename Case.txt case.txt",
            ])
    assert done.stderr.count("Failure") + done.stderr.count("failed") >= 3, done.stderr
    assert box_files(backend, "bob") == {
        "src.txt": sha1(b"source"), "dst.txt": sha1(b"destination"), "Case.txt": sha1(b"case")
    }


# ------------------------------------------------------------------------------------------ lftp and curl
def curl(server, login: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-sS", "--user", f"{login}:{PASSWORDS[login]}", *args],
        capture_output=True, text=True, timeout=120,
    )


def lftp(server, login: str, script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["lftp", "-c", f"set cmd:fail-exit yes; set net:max-retries 1; set ftp:ssl-allow no; "
         f"open -u {login},{PASSWORDS[login]} -p {server.port} {server.host}; {script}"],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )


@needs_curl
def test_curl_upload_case_only_rename_and_invalid_name(env):
    backend, users, _key, tmp = env
    clear_box(backend, "alice")
    local = tmp / "curl-up.txt"
    local.write_bytes(b"from curl")
    with start_ftp_server(users, backend.factory) as server:
        url = f"ftp://{server.host}:{server.port}/"
        done = curl(server, "alice", "-T", str(local), url + "a.txt")
        assert done.returncode == 0, done.stderr
        done = curl(server, "alice", url, "-Q", "RNFR a.txt", "-Q", "RNTO A.txt", "--list-only")
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["A.txt"]
        done = curl(server, "alice", "-T", str(local), url + "back%5Cslash.txt")
        assert done.returncode != 0 and "553" in done.stderr, done.stderr
    assert box_files(backend, "alice") == {"A.txt": sha1(b"from curl")}


@needs_lftp
def test_lftp_upload_case_only_rename_download_delete(env, caplog):
    backend, users, _key, tmp = env
    clear_box(backend, "alice")
    data = os.urandom(3 * 1024 * 1024 + 7)
    (tmp / "Name.bin").write_bytes(data)
    with start_ftp_server(users, backend.factory) as server:
        done = lftp(server, "alice", "put Name.bin; mv Name.bin name.bin; cls -1", tmp)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["name.bin"]
        assert box_files(backend, "alice") == {"name.bin": sha1(data)}
        done = lftp(server, "alice", "get name.bin -o fetched.bin; rm name.bin", tmp)
        assert done.returncode == 0, done.stderr
        done = lftp(server, "alice", "put -O / Name.bin -o 'bad\\\\name.bin'", tmp)
        assert done.returncode != 0 and "553" in done.stderr, done.stderr
    assert sha1((tmp / "fetched.bin").read_bytes()) == sha1(data)
    assert box_files(backend, "alice") == {}
    assert "Traceback" not in caplog.text


# ------------------------------------------------------------------------------------------ 15% faults
@needs_sftp
def test_round_trip_renames_and_deletes_under_15_percent_faults(env):
    """60 MB up and down with asyncssh, renames and deletes with OpenSSH sftp, while Box fails 15% of
    all requests (500/502/503): the retries absorb them and every byte arrives (SHA-1)."""
    backend, users, key_file, tmp = env
    clear_box(backend, "bob")
    source = tmp / "big.bin"
    source.write_bytes(os.urandom(60 * 1024 * 1024))
    fetched = tmp / "big-fetched.bin"
    for name in ("Keep.txt", "old.txt", "target.txt", "gone.txt"):
        (tmp / name).write_bytes(name.encode() * 1000)
    emu = backend.emulator

    async def round_trip(server) -> None:
        known = asyncssh.import_known_hosts(
            f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}"
        )
        async with asyncssh.connect(server.host, server.port, username="bob", password=PASSWORDS["bob"],
                                    client_keys=None, known_hosts=known) as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(source), "big.bin")
                await sftp.get("big.bin", str(fetched))

    with start_sftp_server(users, backend.factory) as server:
        with injected_faults(emu, rate=0.15, kinds=("500", "502", "503"), seed=15) as rule:
            asyncio.run(round_trip(server))
            done = openssh_sftp(server, key_file, tmp, [
                "put Keep.txt", "put old.txt", "put target.txt", "put gone.txt",
                "rename Keep.txt keep.txt", "rename keep.txt keep.txt", "rename old.txt target.txt",
                "rm gone.txt",
            ])
    assert done.returncode == 0, done.stderr
    assert rule.fired >= 3  # the faults really hit
    assert sha1(fetched.read_bytes()) == sha1(source.read_bytes())
    assert box_files(backend, "bob") == {
        "big.bin": sha1(source.read_bytes()),
        "keep.txt": sha1(b"Keep.txt" * 1000),
        "target.txt": sha1(b"old.txt" * 1000),
    }
