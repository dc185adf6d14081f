"""``python -m benchmarks.servers_load``: many concurrent sessions of FTP, SFTP and WebDAV in one server process.

One child process runs the three servers (the way an administrator runs them, one users file) over
Box users of an emulator that runs in this process. This process then opens ``--sessions`` sessions at
once, the protocols in turn (FTP with ftplib, SFTP with paramiko, WebDAV with requests), the logins in
turn over ``--users`` Box users; each session uploads ``--files`` files of ``--size`` bytes and
downloads each back, and every byte is checked by SHA-1 against what was sent. Prints one JSON
object: sessions, users, bytes moved, wall time, throughput, failures (with the first few reasons)
and the server process's peak RSS (``VmHWM``).

The issue asks 200 sessions over 50 users; on a small shared machine scale it down (the defaults).

Examples::

    python -m benchmarks.servers_load                              # 60 sessions over 15 users
    python -m benchmarks.servers_load --sessions 200 --users 50 --size 262144
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ftplib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import paramiko
import requests

from boxfs.emulator import BoxEmulator
from boxfs.servers.users import hash_password

PASSWORD = "load-test-password"

#: the server process: the three servers on free ports, their ports on stdout, until stdin closes
SERVER = textwrap.dedent("""
    import json, sys
    from boxfs.servers.common import box_filesystem_factory
    from boxfs.servers.ftp import start_ftp_server
    from boxfs.servers.sftp import start_sftp_server
    from boxfs.servers.webdav import start_webdav_server
    users, config, base_urls, state = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    factory = box_filesystem_factory(config, base_urls)
    with start_ftp_server(users, factory, max_connections=1024) as ftp, \\
            start_sftp_server(users, factory, state_dir=state, max_workers=64) as sftp, \\
            start_webdav_server(users, factory, threads=64) as dav:
        print(json.dumps({"ftp": ftp.port, "sftp": sftp.port, "webdav": dav.port}), flush=True)
        sys.stdin.read()
""")


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def ftp_session(port: int, login: str, files: dict[str, bytes]) -> int:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=300)
    ftp.login(login, PASSWORD)
    moved = 0
    for name, data in files.items():
        ftp.storbinary(f"STOR {name}", io.BytesIO(data))
        out = io.BytesIO()
        ftp.retrbinary(f"RETR {name}", out.write)
        if sha1(out.getvalue()) != sha1(data):
            raise AssertionError(f"ftp {login} {name}: SHA-1 differs")
        moved += 2 * len(data)
    ftp.quit()
    return moved


def sftp_session(port: int, login: str, files: dict[str, bytes]) -> int:
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username=login, password=PASSWORD)  # a benchmark: the host key is not checked
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sftp is not None
    moved = 0
    try:
        for name, data in files.items():
            with sftp.open(name, "wb") as fh:
                fh.write(data)
            with sftp.open(name, "rb") as fh:
                got = fh.read()
            if sha1(got) != sha1(data):
                raise AssertionError(f"sftp {login} {name}: SHA-1 differs")
            moved += 2 * len(data)
    finally:
        sftp.close()
        transport.close()
    return moved


def webdav_session(port: int, login: str, files: dict[str, bytes]) -> int:
    moved = 0
    with requests.Session() as http:
        http.auth = (login, PASSWORD)
        for name, data in files.items():
            put = http.put(f"http://127.0.0.1:{port}/{name}", data=data, timeout=300)
            put.raise_for_status()
            got = http.get(f"http://127.0.0.1:{port}/{name}", timeout=300)
            got.raise_for_status()
            if sha1(got.content) != sha1(data):
                raise AssertionError(f"webdav {login} {name}: SHA-1 differs")
            moved += 2 * len(data)
    return moved


SESSIONS = {"ftp": ftp_session, "sftp": sftp_session, "webdav": webdav_session}


def peak_rss(pid: int) -> int:
    """The process's peak resident set (``VmHWM``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--users", type=int, default=15, help="Box users (one login each)")
    parser.add_argument("--files", type=int, default=2, help="files each session uploads and downloads")
    parser.add_argument("--size", type=int, default=256 * 1024, help="bytes per file")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency the emulator adds per request")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="boxfs-load-") as tmp, BoxEmulator() as emu:
        if args.latency_ms:
            emu.set_latency(args.latency_ms / 1000)
        config = emu.create_jwt_app(scopes=("root_readwrite", "manage_managed_users"))
        (Path(tmp) / "app.json").write_text(config)
        (Path(tmp) / "app.json").chmod(0o600)
        digest = hash_password(PASSWORD)
        lines = ["[login_throttle]", "address_lockout_after = 0", "login_lockout_after = 0", ""]
        for n in range(args.users):
            box_user = f"load{n}@example.com"
            emu.create_user(box_user)
            lines += [f"[users.u{n}]", f'password = "{digest}"', f'box_user = "{box_user}"', 'home = "/load"', ""]
        users = Path(tmp) / "users.toml"
        users.write_text("\n".join(lines))
        users.chmod(0o600)
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(users), str(Path(tmp) / "app.json"), json.dumps(emu.base_urls),
             str(Path(tmp) / "state")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert server.stdout is not None
            ports = json.loads(server.stdout.readline())
            failures: list[str] = []
            lock = threading.Lock()
            protocols = sorted(SESSIONS)

            def one(i: int) -> int:
                protocol = protocols[i % len(protocols)]
                files = {f"s{i}-f{k}.bin": os.urandom(args.size) for k in range(args.files)}
                try:
                    return SESSIONS[protocol](ports[protocol], f"u{i % args.users}", files)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    with lock:
                        failures.append(f"{protocol} session {i}: {type(exc).__name__}: {exc}")
                    return 0

            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(args.sessions) as pool:
                moved = sum(pool.map(one, range(args.sessions)))
            elapsed = time.monotonic() - started
            rss = peak_rss(server.pid)
        finally:
            server.communicate(input="", timeout=60)
    print(json.dumps({
        "sessions": args.sessions, "users": args.users, "files_per_session": args.files, "file_bytes": args.size,
        "bytes_moved": moved, "seconds": round(elapsed, 2), "mb_per_s": round(moved / elapsed / 1e6, 2),
        "failures": len(failures), "first_failures": failures[:5], "server_peak_rss_mb": round(rss / 1e6, 1),
    }, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
