"""The audit log: a scripted session of each protocol (FTP with ftplib, SFTP with asyncssh, WebDAV with
curl) gives exactly one JSON line per action, with who, from where, what, how many bytes and the result,
and never a password."""

from __future__ import annotations

import asyncio
import ftplib
import io
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import asyncssh
import pytest
from servers_support import PASSWORDS, emulator_backend, emulator_factory, write_users_file
from support import injected_faults

from boxfs.servers.audit import AuditLog
from boxfs.servers.ftp import start_ftp_server
from boxfs.servers.sftp import start_sftp_server
from boxfs.servers.webdav import start_webdav_server

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (scripts/setup.sh)"),
]

FIELDS = {"time", "protocol", "login", "box_user", "remote", "action", "path", "bytes", "result", "box_request_id"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    with emulator_backend(tmp) as backend:
        users = write_users_file(tmp / "users.toml", backend)
        yield backend, users, tmp


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def check(records: list[dict], protocol: str, expected: list[tuple[str, str, str]]) -> None:
    """``expected``: (action, path, result) in order, one per record, nothing else."""
    assert [(r["action"], r["path"], r["result"]) for r in records] == expected
    for r in records:
        assert set(r) == FIELDS
        assert r["protocol"] == protocol and r["login"] == "bob" and r["box_user"] == "bob@example.com"
        assert r["remote"].startswith("127.0.0.1:")
        assert PASSWORDS["bob"] not in json.dumps(r)


def test_ftp_session(env):
    backend, users, tmp = env
    log = tmp / "ftp.jsonl"
    with start_ftp_server(users, backend.factory, audit_log=AuditLog(log)) as server:
        ftp = ftplib.FTP()
        ftp.connect(server.host, server.port, timeout=60)
        ftp.login("bob", PASSWORDS["bob"])
        ftp.mkd("ftp-audit")
        ftp.storbinary("STOR ftp-audit/a.txt", io.BytesIO(b"12345"))
        ftp.nlst("ftp-audit")
        ftp.retrbinary("RETR ftp-audit/a.txt", io.BytesIO().write)
        ftp.rename("ftp-audit/a.txt", "ftp-audit/b.txt")
        with pytest.raises(ftplib.error_perm):
            ftp.delete("ftp-audit/missing.txt")
        ftp.delete("ftp-audit/b.txt")
        ftp.rmd("ftp-audit")
        ftp.quit()
    records = lines(log)
    check(records, "ftp", [
        ("mkdir", "/ftp-audit", "ok"),
        ("upload", "/ftp-audit/a.txt", "ok"),
        ("list", "/ftp-audit", "ok"),
        ("download", "/ftp-audit/a.txt", "ok"),
        ("rename", "/ftp-audit/a.txt -> /ftp-audit/b.txt", "ok"),
        ("delete", "/ftp-audit/missing.txt", "No such file or directory"),
        ("delete", "/ftp-audit/b.txt", "ok"),
        ("delete", "/ftp-audit", "ok"),
    ])
    assert records[1]["bytes"] == 5 and records[3]["bytes"] == 5


def test_sftp_session(env):
    backend, users, tmp = env
    log = tmp / "sftp.jsonl"

    async def session(server) -> None:
        known = asyncssh.import_known_hosts(
            f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}")
        async with asyncssh.connect(server.host, server.port, username="bob", password=PASSWORDS["bob"],
                                    client_keys=None, known_hosts=known) as conn, conn.start_sftp_client() as sftp:
            await sftp.mkdir("sftp-audit")
            async with sftp.open("sftp-audit/a.txt", "wb") as fh:
                await fh.write(b"123456")
            await sftp.listdir("sftp-audit")
            async with sftp.open("sftp-audit/a.txt", "rb") as fh:
                await fh.read()
            await sftp.posix_rename("sftp-audit/a.txt", "sftp-audit/b.txt")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.remove("sftp-audit/missing.txt")
            await sftp.remove("sftp-audit/b.txt")
            await sftp.rmdir("sftp-audit")

    with start_sftp_server(users, backend.factory, state_dir=tmp / "state", audit_log=AuditLog(log)) as server:
        asyncio.run(session(server))
    records = lines(log)
    check(records, "sftp", [
        ("mkdir", "/sftp-audit", "ok"),
        ("upload", "/sftp-audit/a.txt", "ok"),
        ("list", "/sftp-audit", "ok"),
        ("download", "/sftp-audit/a.txt", "ok"),
        ("rename", "/sftp-audit/a.txt -> /sftp-audit/b.txt", "ok"),
        ("delete", "/sftp-audit/missing.txt", "No such file or directory"),
        ("delete", "/sftp-audit/b.txt", "ok"),
        ("delete", "/sftp-audit", "ok"),
    ])
    assert records[1]["bytes"] == 6 and records[3]["bytes"] == 6


def test_webdav_session(env):
    backend, users, tmp = env
    log = tmp / "webdav.jsonl"
    with start_webdav_server(users, backend.factory, audit_log=AuditLog(log)) as server:
        def curl(*args: str, path: str, data: bytes | None = None) -> int:
            result = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"bob:{PASSWORDS['bob']}", *args,
                 server.url + quote(path)], input=data, capture_output=True, timeout=60, check=True)
            return int(result.stdout)

        assert curl("-X", "MKCOL", path="/dav-audit") == 201
        assert curl("-T", "-", path="/dav-audit/a.txt", data=b"1234567") == 201
        assert curl("-X", "PROPFIND", "-H", "Depth: 1", path="/dav-audit/") == 207
        assert curl(path="/dav-audit/a.txt") == 200
        assert curl("-X", "MOVE", "-H", f"Destination: {server.url}/dav-audit/b.txt", path="/dav-audit/a.txt") in (
            201, 204)
        assert curl("-X", "DELETE", path="/dav-audit/missing.txt") == 404
        assert curl("-X", "DELETE", path="/dav-audit/b.txt") == 204
        assert curl("-X", "DELETE", path="/dav-audit") == 204
        assert curl("-u", "bob:wrong", path="/") == 401  # a failed login is no action
    records = lines(log)
    check(records, "webdav", [
        ("mkdir", "/dav-audit", "ok"),
        ("upload", "/dav-audit/a.txt", "ok"),
        ("list", "/dav-audit/", "ok"),
        ("download", "/dav-audit/a.txt", "ok"),
        ("rename", "/dav-audit/a.txt -> /dav-audit/b.txt", "ok"),
        ("delete", "/dav-audit/missing.txt", "No such file or directory"),
        ("delete", "/dav-audit/b.txt", "ok"),
        ("delete", "/dav-audit", "ok"),
    ])
    assert records[1]["bytes"] == 7 and records[3]["bytes"] == 7


def test_box_refusal_carries_its_request_id(env):
    backend, users, tmp = env
    log = tmp / "rid.jsonl"
    emu = backend.emulator
    with start_webdav_server(users, emulator_factory(backend, retry=1), audit_log=AuditLog(log)) as server:
        with injected_faults(emu, rate=1.0, kinds=("500",), route=r"/content$", method="POST"):
            subprocess.run(["curl", "-sS", "-o", "/dev/null", "-u", f"bob:{PASSWORDS['bob']}", "-T", "-",
                            server.url + "/doomed.txt"], input=b"x", capture_output=True, timeout=60, check=True)
    (record,) = lines(log)
    assert record["action"] == "upload" and record["result"] == "Box request failed"
    assert record["box_request_id"]
