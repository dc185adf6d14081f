"""Shared set-up for the FTP/SFTP server tests (imported by test_servers_ftp/sftp; no tests here).

The servers are tested against the Box emulator with BoxFileSystem when both are importable
(the real target), otherwise over local directories standing in for each Box user's tree, so the
protocol layer can be exercised before the filesystem lands.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from support import admin_app

from boxfs.servers.users import hash_password

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-2", "carol": "carol-secret-3"}

# Hashing costs ~50 ms each: done once per test session.
_HASHES: dict[str, str] = {}


def password_hash(login: str) -> str:
    if login not in _HASHES:
        _HASHES[login] = hash_password(PASSWORDS[login])
    return _HASHES[login]


def emulator_available() -> bool:
    """True when both BoxFileSystem and the emulator can be imported."""
    if os.environ.get("BOXFS_SERVERS_BACKEND") == "local":
        return False
    for mod in ("boxfs.core", "boxfs.emulator"):
        if importlib.util.find_spec(mod) is None:
            return False
    try:
        from boxfs.core import BoxFileSystem  # noqa: F401
        from boxfs.emulator import BoxEmulator  # noqa: F401
    except Exception:  # noqa: BLE001 - anything missing means "not there yet"
        return False
    return True


class LocalUserFS(DirFileSystem):
    """A local directory standing in for one Box user's tree (only until the emulator is used)."""

    def _move(self, src: str, dst: str) -> None:
        os.rename(self._join(src), self._join(dst))

    def set_modified(self, path: str, when: datetime) -> None:
        real = self._join(path)
        os.utime(real, (when.timestamp(), when.timestamp()))


@dataclass
class Backend:
    """What the tests need: a per-Box-user filesystem factory, and a way to look behind the server."""

    kind: str
    factory: Callable[[str], Any]
    box_users: dict[str, str]  # login -> box_user as written in the users file
    inspect: Callable[[str], Any]  # box_user -> a separate filesystem to verify what the server did
    emulator: Any = None
    box_ids: dict[str, str] | None = None  # login -> Box user id (emulator only)
    config: str | None = None  # the Box app's JWT config (emulator only)


@contextlib.contextmanager
def make_backend(tmp_path: Path) -> Iterator[Backend]:
    """Two Box users (alice's and bob's); carol acts as alice's Box user with a sub-folder home."""
    if emulator_available():
        from boxfs.emulator import BoxEmulator
        from boxfs.servers.common import box_filesystem_factory

        with BoxEmulator() as emu:
            alice_id = emu.create_user("alice@example.com", name="Alice")
            bob_id = emu.create_user("bob@example.com", name="Bob")
            cfg = admin_app(emu)
            factory = box_filesystem_factory(cfg, emu.base_urls)
            # bob by login email, alice by user id: both forms the users file allows.
            users = {"alice": alice_id, "bob": "bob@example.com", "carol": alice_id}
            inspectors: dict[str, Any] = {}

            def inspect(box_user: str) -> Any:
                if box_user not in inspectors:
                    inspectors[box_user] = factory(box_user)
                fs = inspectors[box_user]
                fs.invalidate_cache()
                return fs

            ids = {"alice": alice_id, "bob": bob_id, "carol": alice_id}
            yield Backend("emulator", factory, users, inspect, emu, ids, cfg)
        return

    roots = tmp_path / "box"

    def factory(box_user: str) -> Any:
        if box_user == "ghost":
            raise ValueError("no such Box user")
        root = roots / box_user
        root.mkdir(parents=True, exist_ok=True)
        return LocalUserFS(path=str(root), fs=LocalFileSystem())

    users = {"alice": "alice@example.com", "bob": "bob@example.com", "carol": "alice@example.com"}
    yield Backend("local", factory, users, factory)


@contextlib.contextmanager
def emulator_backend(tmp_path: Path) -> Iterator[Backend]:
    """:func:`make_backend` over the Box emulator; the calling test (or fixture) is skipped without it."""
    with make_backend(tmp_path) as backend:
        if backend.kind != "emulator":
            pytest.skip("needs the Box emulator")
        yield backend


# Tests share servers and fail logins on purpose from 127.0.0.1: short delays, no lockouts, except
# where a test is about them.
LENIENT_THROTTLE = {"base_delay": 0.01, "max_delay": 0.05, "address_lockout_after": 0, "login_lockout_after": 0}


def emulator_factory(backend: Backend, **fs_kwargs: Any) -> Callable[[str], Any]:
    """A per-Box-user factory with other filesystem options (``retry=1``: no retries, ``spool_dir``...).

    Skips the calling test when the servers run over local folders (no emulator, no fault injection).
    """
    import pytest

    from boxfs.servers.common import box_filesystem_factory

    if backend.kind != "emulator":
        pytest.skip("needs the Box emulator")
    return box_filesystem_factory(backend.config, backend.emulator.base_urls, **fs_kwargs)


def write_users_file(
    path: Path,
    backend: Backend,
    *,
    ssh_keys: dict[str, list[str]] | None = None,
    throttle: dict[str, float] | None = None,
) -> Path:
    """alice and bob at their Box roots; carol read-only-free but confined to /carol-home.

    ``throttle`` is the ``[login_throttle]`` table (default :data:`LENIENT_THROTTLE`).
    """
    ssh_keys = ssh_keys or {}
    lines = ["[login_throttle]"]
    lines += [f"{key} = {value}" for key, value in (LENIENT_THROTTLE if throttle is None else throttle).items()]
    lines.append("")
    for login, home, read_only in (
        ("alice", "/", False),
        ("bob", "/", False),
        ("carol", "/carol-home", False),
    ):
        lines += [
            f"[users.{login}]",
            f'password = "{password_hash(login)}"',
            f'box_user = "{backend.box_users[login]}"',
            f'home = "{home}"',
            f"read_only = {'true' if read_only else 'false'}",
        ]
        if login in ssh_keys:
            keys = ", ".join(f'"{k}"' for k in ssh_keys[login])
            lines.append(f"ssh_keys = [{keys}]")
        lines.append("")
    lines += [
        "[users.ghost]",  # a valid login whose Box user does not exist
        f'password = "{password_hash("bob")}"',
        f'box_user = "{"ghost@example.com" if backend.kind == "emulator" else "ghost"}"',
        "",
        "[users.dave]",
        f'password = "{password_hash("alice")}"',  # dave: read-only view of bob's tree
        f'box_user = "{backend.box_users["bob"]}"',
        'home = "/"',
        "read_only = true",
        "",
    ]
    path.write_text("\n".join(lines))
    return path


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1, for the FTPS test."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


# ------------------------------------------------------------------ ``boxfs serve`` as a separate process
BOXFS = str(Path(sys.executable).parent / "boxfs")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_server(argv: list[str], port: int, *, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Run ``argv`` (a ``boxfs ... serve`` command listening on ``port``); return once the port accepts."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not start: {proc.communicate()[0]}")


def stop(proc: subprocess.Popen) -> str:
    """Ctrl-C the server (killed if it does not stop); its output."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


T = TypeVar("T")


def put_while_open(server: Any, login: str, password: str, path: str, during: Callable[[], T],
                   headers: Sequence[str] = ()) -> tuple[bytes, T]:
    """curl PUTs a body to the WebDAV ``server`` and, while the server holds that upload open (the name
    checked, the body still coming), runs ``during()``; returns the PUT's status code and its result."""
    put = subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{login}:{password}",
         *(arg for header in headers for arg in ("-H", header)), "-T", "-", server.url + quote(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert put.stdin is not None and put.stdout is not None
    try:
        put.stdin.write(b"mine " * 1000)
        put.stdin.flush()
        deadline = time.monotonic() + 30
        while server.state.resources(login).open_files == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.state.resources(login).open_files == 1, "the PUT never opened its upload"
        result = during()
    finally:
        put.stdin.close()
    code = put.stdout.read()
    put.wait(60)
    return code, result
