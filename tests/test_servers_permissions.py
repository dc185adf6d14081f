"""Permissions as a set of actions, enforced alike by FTP (ftplib), SFTP (asyncssh) and WebDAV (curl):
an ``upload_only`` drop box can upload and cannot list, read or delete; a login without
``overwrite``/``delete``/``rename`` cannot replace, delete or rename. Box is checked behind the server."""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import io
import posixpath
import shutil
import subprocess
import time
from urllib.parse import quote

import asyncssh
import pytest
from asyncssh.public_key import SSHLocalKeyPair
from servers_support import LENIENT_THROTTLE, PASSWORDS, emulator_backend, password_hash, put_while_open

from boxfs.frontend.paths import Namespace, basename
from boxfs.servers.ftp import start_ftp_server
from boxfs.servers.permissions import ACTIONS, PRESETS, parse_permissions
from boxfs.servers.sftp import start_sftp_server
from boxfs.servers.users import UsersDB, normalize_home
from boxfs.servers.webdav import start_webdav_server

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (scripts/setup.sh)"),
]

# drop: upload_only into bob's /drop; keeper: may add and read, never replace, delete or rename.
LOGINS = {"drop": ('"upload_only"', "/drop"), "keeper": ('["list", "download", "upload", "mkdir"]', "/keep")}


def test_presets_and_sets_parse():
    assert parse_permissions("full") == ACTIONS
    assert parse_permissions(["read_only", "upload"]) == {"list", "download", "upload"}
    with pytest.raises(ValueError, match="unknown action or preset 'erase'"):
        parse_permissions(["list", "erase"])
    with pytest.raises(ValueError, match="non-empty"):
        parse_permissions([])
    entry = {"password": password_hash("bob"), "box_user": "b"}
    db = UsersDB.from_dict({"users": {"r": {**entry, "read_only": True}, "u": {**entry, "permissions": "upload_only"}}})
    assert db.get("r").permissions == PRESETS["read_only"] and db.get("r").read_only
    assert db.get("u").permissions == {"upload"} and not db.get("u").read_only
    assert normalize_home(" id:123 ") == "id:123" and normalize_home("/a/./b/") == "/a/b"
    with pytest.raises(ValueError, match="id:<digits>"):
        normalize_home("id:abc")
    with pytest.raises(ValueError, match="not both"):
        UsersDB.from_dict({"users": {"x": {**entry, "read_only": True, "permissions": "full"}}})


def users_file(tmp, backend, logins: dict[str, list[str]]):
    """A users file whose logins (name -> extra lines) all act as Bob's Box user with Bob's password."""
    lines = ["[login_throttle]", *(f"{k} = {v}" for k, v in LENIENT_THROTTLE.items()), ""]
    for login, extra in logins.items():
        lines += [f"[users.{login}]", f'password = "{password_hash("bob")}"',
                  f'box_user = "{backend.box_users["bob"]}"', *extra, ""]
    users = tmp / "users.toml"
    users.write_text("\n".join(lines))
    return users


@contextlib.contextmanager
def three_servers(users, backend, tmp):
    """FTP, SFTP and WebDAV over the same users file and Box users, by protocol name."""
    with start_ftp_server(users, backend.factory, auth_failed_delay=0.01) as ftp, \
            start_sftp_server(users, backend.factory, state_dir=tmp / "state") as sftp, \
            start_webdav_server(users, backend.factory) as dav:
        yield {"ftp": ftp, "sftp": sftp, "webdav": dav}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("perms")
    with emulator_backend(tmp) as backend:
        users = users_file(tmp, backend, {login: [f'home = "{home}"', f"permissions = {perms}"]
                                          for login, (perms, home) in LOGINS.items()})
        fs = backend.inspect(backend.box_users["bob"])
        fs.makedirs("drop", exist_ok=True)
        fs.makedirs("keep", exist_ok=True)
        with three_servers(users, backend, tmp) as servers:
            yield backend, servers


def box(backend):
    return backend.inspect(backend.box_users["bob"])


# ------------------------------------------------------------------ one client per protocol
def ftp_do(server, login: str, op: str, name: str, data: bytes = b"") -> bytes | None:
    ftp = ftplib.FTP()
    ftp.connect(server.host, server.port, timeout=60)
    ftp.login(login, PASSWORDS["bob"])
    try:
        if op == "upload":
            ftp.storbinary(f"STOR {name}", io.BytesIO(data))
        elif op == "download":
            out = io.BytesIO()
            ftp.retrbinary(f"RETR {name}", out.write)
            return out.getvalue()
        elif op == "list":
            return "\n".join(ftp.nlst()).encode()
        elif op == "delete":
            ftp.delete(name)
        elif op == "rename":
            ftp.rename(name, name + ".renamed")
        return None
    finally:
        ftp.close()


def sftp_do(server, login: str, op: str, name: str, data: bytes = b"") -> bytes | None:
    async def scenario() -> bytes | None:
        known = asyncssh.import_known_hosts(
            f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}")
        async with asyncssh.connect(server.host, server.port, username=login, password=PASSWORDS["bob"],
                                    client_keys=None, known_hosts=known) as conn, conn.start_sftp_client() as sftp:
            if op == "upload":
                async with sftp.open(name, "wb") as fh:
                    await fh.write(data)
            elif op == "download":
                async with sftp.open(name, "rb") as fh:
                    return await fh.read()
            elif op == "list":
                return "\n".join(await sftp.listdir(".")).encode()
            elif op == "delete":
                await sftp.remove(name)
            elif op == "rename":
                await sftp.posix_rename(name, name + ".renamed")
            return None

    return asyncio.run(scenario())


class Refused(Exception):
    pass


def dav_do(server, login: str, op: str, name: str, data: bytes = b"") -> bytes | None:
    url = server.url + "/" + quote(name)
    args = {
        "upload": ["-T", "-"], "download": [], "list": ["-X", "PROPFIND", "-H", "Depth: 1"],
        "delete": ["-X", "DELETE"], "rename": ["-X", "MOVE", "-H", f"Destination: {url}.renamed"],
    }[op]
    if op == "list":
        url = server.url + "/"
    result = subprocess.run(["curl", "-sS", "-u", f"{login}:{PASSWORDS['bob']}", "-w", "\n%{http_code}", *args, url],
                            input=data, capture_output=True, timeout=60, check=True)
    body, code = result.stdout.rsplit(b"\n", 1)
    if int(code) == 403:
        raise Refused(body)
    assert int(code) < 300, (op, code, body)
    return body


CLIENTS = {"ftp": (ftp_do, ftplib.error_perm), "sftp": (sftp_do, asyncssh.SFTPPermissionDenied),
           "webdav": (dav_do, Refused)}


@pytest.mark.parametrize("protocol", sorted(CLIENTS))
def test_upload_only_can_upload_and_cannot_list_read_or_delete(env, protocol):
    backend, servers = env
    do, refused = CLIENTS[protocol]
    server = servers[protocol]
    name = f"dropped-{protocol}.txt"
    do(server, "drop", "upload", name, b"for the drop box")
    assert box(backend).cat_file(f"drop/{name}") == b"for the drop box"
    box(backend).pipe_file("drop/secret.txt", b"not for the sender")
    for op, target in (("list", ""), ("download", "secret.txt"), ("download", name), ("delete", name),
                       ("rename", name), ("upload", name)):  # the last: replacing is overwrite
        with pytest.raises(refused):
            do(server, "drop", op, target, b"again")
    fs = box(backend)
    assert fs.cat_file(f"drop/{name}") == b"for the drop box" and fs.exists("drop/secret.txt")


@pytest.mark.parametrize("protocol", sorted(CLIENTS))
def test_no_overwrite_delete_or_rename(env, protocol):
    backend, servers = env
    do, refused = CLIENTS[protocol]
    server = servers[protocol]
    name = f"kept-{protocol}.txt"
    do(server, "keeper", "upload", name, b"first")
    assert name.encode() in do(server, "keeper", "list", "")
    assert do(server, "keeper", "download", name) == b"first"
    for op in ("upload", "delete", "rename"):
        with pytest.raises(refused):
            do(server, "keeper", op, name, b"second")
    fs = box(backend)
    assert fs.cat_file(f"keep/{name}") == b"first" and not fs.exists(f"keep/{name}.renamed")


# ------------------------------------------------------------------ per-login session limit
SOLO_KEY = asyncssh.generate_private_key("ssh-ed25519")  # solo's SSH key (the private half is solo's alone)

@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    """``solo`` may hold one session at a time (max_sessions = 1) on each server."""
    tmp = tmp_path_factory.mktemp("solo")
    with emulator_backend(tmp) as backend:
        users = users_file(tmp, backend, {"solo": [
            'home = "/solo"', "max_sessions = 1", f'ssh_keys = ["{SOLO_KEY.export_public_key().decode().strip()}"]']})
        with three_servers(users, backend, tmp) as servers:
            yield backend, servers, tmp


def test_max_sessions_ftp(solo):
    _backend, servers, _tmp = solo
    server = servers["ftp"]
    first = ftplib.FTP()
    first.connect(server.host, server.port, timeout=30)
    first.login("solo", PASSWORDS["bob"])
    second = ftplib.FTP()
    second.connect(server.host, server.port, timeout=30)
    with pytest.raises(ftplib.error_perm, match="Too many sessions"):
        second.login("solo", PASSWORDS["bob"])
    second.close()
    first.quit()
    assert ftp_do(server, "solo", "list", "") is not None  # the slot was given back


def test_max_sessions_sftp(solo):
    _backend, servers, _tmp = solo
    server = servers["sftp"]
    known = asyncssh.import_known_hosts(f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}")

    def connect():
        return asyncssh.connect(server.host, server.port, username="solo", password=PASSWORDS["bob"],
                                client_keys=None, known_hosts=known)

    async def scenario() -> None:
        async with connect():
            with pytest.raises(asyncssh.PermissionDenied):
                async with connect():
                    pass
        await asyncio.sleep(0.3)  # the server sees the first connection go
        async with connect() as conn, conn.start_sftp_client() as sftp:
            await sftp.listdir(".")

    asyncio.run(scenario())


class PublicKeyOnly(SSHLocalKeyPair):
    """What an attacker holding only a user's public key can do: offer it (the server answers "this key
    would do") and never sign, keeping the connection at that point until the login timeout."""

    def __init__(self, public_key: asyncssh.SSHKey, offered: asyncio.Event):
        super().__init__(public_key, None, None, None)
        self.offered = offered

    async def sign_async(self, data: bytes) -> bytes:
        self.offered.set()  # the server accepted the key query
        await asyncio.Event().wait()  # no private key: no signature, ever
        raise AssertionError("unreachable")


def test_max_sessions_sftp_counts_only_proven_logins(solo):
    """Public-key queries prove nothing: N probes holding connections open take none of solo's one
    session slot, solo then logs in (key or password), and a second proven session is refused."""
    _backend, servers, _tmp = solo
    server = servers["sftp"]
    known = asyncssh.import_known_hosts(f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}")
    public = asyncssh.import_public_key(SOLO_KEY.export_public_key())

    async def probe(offered: asyncio.Event) -> None:
        async with asyncssh.connect(server.host, server.port, username="solo", known_hosts=known, password=None,
                                    client_keys=[PublicKeyOnly(public, offered)], preferred_auth="publickey"):
            raise AssertionError("a key query alone logged in")

    async def scenario() -> None:
        offered = [asyncio.Event() for _ in range(3)]
        probes = [asyncio.create_task(probe(event)) for event in offered]
        try:
            for event, task in zip(offered, probes, strict=True):  # each probe is answered "key ok", or refused
                waiter = asyncio.create_task(event.wait())
                await asyncio.wait([waiter, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            # before proof no slot is taken: every probe got past the key query (not one, then refusals)
            assert [event.is_set() and not task.done() for event, task in zip(offered, probes, strict=True)] == [True] * 3
            async with asyncssh.connect(server.host, server.port, username="solo", known_hosts=known,
                                        client_keys=[SOLO_KEY], preferred_auth="publickey") as conn, \
                    conn.start_sftp_client() as sftp:
                await sftp.listdir(".")
                with pytest.raises(asyncssh.PermissionDenied):  # the one slot is taken by a proven login
                    async with asyncssh.connect(server.host, server.port, username="solo", known_hosts=known,
                                                password=PASSWORDS["bob"], client_keys=None):
                        pass
        finally:
            for task in probes:
                task.cancel()
            await asyncio.gather(*probes, return_exceptions=True)
        await asyncio.sleep(0.3)  # the server sees the connections go
        assert server.state.sessions.count("solo") == 0

    asyncio.run(scenario())


def test_max_sessions_webdav_counts_requests_at_once(solo):
    backend, servers, tmp = solo
    server = servers["webdav"]
    (tmp / "slow.bin").write_bytes(b"x" * 600_000)
    slow = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate", "200K",
                             "-u", f"solo:{PASSWORDS['bob']}", "-T", str(tmp / "slow.bin"), server.url + "/slow.bin"],
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not server.state.sessions._open.get("solo") and time.monotonic() < deadline:
            time.sleep(0.02)  # the slow PUT holds the login's one slot before the PROPFINDs start
        refused = None
        while refused is None and time.monotonic() < deadline:
            code = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u",
                                   f"solo:{PASSWORDS['bob']}", "-X", "PROPFIND", "-H", "Depth: 0", server.url + "/"],
                                  capture_output=True, text=True, timeout=30, check=True).stdout
            refused = code if code == "503" else None
        assert refused == "503"
    finally:
        assert slow.communicate(timeout=60)[0] == "201"
    assert box(backend).cat_file("solo/slow.bin") == b"x" * 600_000
    assert dav_do(server, "solo", "download", "slow.bin") == b"x" * 600_000  # the slot was given back


# ------------------------------------------------------------------ a name taken while an upload is open
RACED = "raced [1]*?.txt"  # hostile characters; no other name in the folder matches them as a pattern
THEIRS = b"theirs: another client's file, not to be replaced"


def taken_meanwhile(backend, name: str) -> dict:
    """Another client (Bob's own Box session, outside the server) creates ``keep/<name>`` now."""
    fs = box(backend)
    fs.pipe_file(f"keep/{name}", THEIRS)
    return fs.info(f"keep/{name}")


def assert_untouched(backend, name: str, before: dict) -> None:
    fs = box(backend)
    after = fs.info(f"keep/{name}")
    assert fs.cat_file(f"keep/{name}") == THEIRS
    assert (after["id"], after.get("sha1"), after.get("etag")) == (before["id"], before.get("sha1"), before.get("etag"))


def test_upload_without_overwrite_never_replaces_a_file_created_meanwhile_ftp(env):
    backend, servers = env
    server, name = servers["ftp"], f"ftp {RACED}"
    ftp = ftplib.FTP()
    ftp.connect(server.host, server.port, timeout=60)
    ftp.login("keeper", PASSWORDS["bob"])
    try:
        data = ftp.transfercmd(f"STOR {name}")  # the server found the name free and opened the upload
        before = taken_meanwhile(backend, name)
        data.sendall(b"mine " * 1000)
        data.close()
        with pytest.raises(ftplib.error_perm, match="^550 Upload failed: File exists"):
            ftp.voidresp()
    finally:
        ftp.close()
    assert_untouched(backend, name, before)


def test_upload_without_overwrite_never_replaces_a_file_created_meanwhile_sftp(env):
    backend, servers = env
    server, name = servers["sftp"], f"sftp {RACED}"

    async def scenario() -> dict:
        known = asyncssh.import_known_hosts(
            f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}")
        async with asyncssh.connect(server.host, server.port, username="keeper", password=PASSWORDS["bob"],
                                    client_keys=None, known_hosts=known) as conn, conn.start_sftp_client() as sftp:
            fh = await sftp.open(name, "wb")
            await fh.write(b"mine " * 1000)
            before = await asyncio.to_thread(taken_meanwhile, backend, name)
            with pytest.raises(asyncssh.SFTPError, match="File exists"):
                await fh.close()
            return before

    assert_untouched(backend, name, asyncio.run(scenario()))


def test_upload_without_overwrite_never_replaces_a_file_created_meanwhile_webdav(env):
    backend, servers = env
    server, name = servers["webdav"], f"dav {RACED}"
    code, before = put_while_open(server, "keeper", PASSWORDS["bob"], f"/{name}",
                                  lambda: taken_meanwhile(backend, name))
    assert code == b"412"  # Precondition Failed: the name is taken
    assert_untouched(backend, name, before)


@pytest.mark.parametrize("server_sees_it", [True, False], ids=["seen", "unseen"])
def test_copy_without_overwrite_never_replaces_a_file_created_meanwhile_webdav(env, monkeypatch, server_sees_it):
    """A COPY by a login without ``overwrite`` found the name free; another client takes it before the
    copy is made. Whether the server has learnt of that file by then (its change watcher tells within
    about a second: ``seen``) or not (``unseen``: Box's copy meets the taken name), the COPY is 412 and
    their file stays. The other client acts at that moment through a hook on the server's parent check,
    which runs after the permission check and before the copy."""
    backend, servers = env
    # no "?": wsgidav cuts a Destination header at it (it unquotes the URL before parsing it)
    server, name = servers["webdav"], f"dav copy {server_sees_it} {RACED.replace('?', '')}"
    source = f"copy source {server_sees_it}.txt"
    dav_do(server, "keeper", "upload", source, b"mine")
    raced: dict = {}
    check_parent = Namespace.check_parent

    def taken_after_the_check(self, path: str) -> None:
        check_parent(self, path)
        if basename(path) == name and not raced:
            raced.update(taken_meanwhile(backend, name))
            if server_sees_it:
                self.fs.invalidate_cache(posixpath.dirname(path))  # what the watcher's event does

    monkeypatch.setattr(Namespace, "check_parent", taken_after_the_check)
    log = backend.emulator.request_log
    start = len(log.records)
    copied = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"keeper:{PASSWORDS['bob']}", "-X", "COPY",
         "-H", f"Destination: {server.url}/{quote(name)}", server.url + "/" + quote(source)],
        capture_output=True, timeout=60, check=True)
    assert raced, ("the COPY never reached its copy", copied.stdout)
    assert copied.stdout == b"412"
    assert_untouched(backend, name, raced)
    changes = [(r.method, r.route) for r in log.records[start:] if r.method != "GET"]
    assert all(method == "POST" for method, _ in changes), changes  # their upload, at most our refused copy
