"""``serve webdav`` as real clients use it: ``curl`` (PUT, ranged GET, MKCOL, MOVE, DELETE, PROPFIND) and
the ``webdav4`` Python client, against the Box emulator over real HTTP.

Every check of what was stored looks behind the server, at Box (the emulator) through a separate
filesystem, and compares content by SHA-1.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import os
import shutil
import subprocess
import time
from urllib.parse import quote

import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.memory import MemoryFileSystem
from servers_support import (
    PASSWORDS,
    Backend,
    emulator_backend,
    emulator_factory,
    password_hash,
    put_while_open,
    self_signed_cert,
    write_users_file,
)
from support import injected_faults
from webdav4.client import Client

from boxfs.servers.common import SessionLimits
from boxfs.servers.ftp import start_ftp_server
from boxfs.servers.webdav import start_webdav_server

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (scripts/setup.sh)"),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webdav")
    with emulator_backend(tmp) as backend:
        users = write_users_file(tmp / "users.toml", backend)
        with start_webdav_server(users, backend.factory) as server:
            yield backend, server, users, tmp


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def box(backend, login: str):
    return backend.inspect(backend.box_users[login])


def curl(server, login: str, *args: str, password: str | None = None, path: str = "/") -> subprocess.CompletedProcess:
    """curl as ``login``; prints the status code last (``-w``)."""
    url = server.url + quote(path)
    secret = PASSWORDS["alice" if login == "dave" else login] if password is None else password
    return subprocess.run(
        ["curl", "-sS", "-k", "-u", f"{login}:{secret}", "-w", "\n%{http_code}", *args, url],
        capture_output=True, timeout=120, check=False,
    )


def status(result: subprocess.CompletedProcess) -> int:
    return int(result.stdout.rsplit(b"\n", 1)[-1])


def body(result: subprocess.CompletedProcess) -> bytes:
    return result.stdout.rsplit(b"\n", 1)[0]


def test_curl_put_get_range_mkcol_move_delete_propfind(env, tmp_path):
    backend, server, _users, _tmp = env
    data = os.urandom(300_000)
    src = tmp_path / "up.bin"
    src.write_bytes(data)

    assert status(curl(server, "bob", "-X", "MKCOL", path="/curl-dir")) == 201
    assert status(curl(server, "bob", "-T", str(src), path="/curl-dir/a.bin")) in (201, 204)
    fs = box(backend, "bob")
    assert sha1(fs.cat_file("curl-dir/a.bin")) == sha1(data)

    got = curl(server, "bob", path="/curl-dir/a.bin")
    assert status(got) == 200 and sha1(body(got)) == sha1(data)
    ranged = curl(server, "bob", "-r", "1000-1999", path="/curl-dir/a.bin")
    assert status(ranged) == 206 and body(ranged) == data[1000:2000]

    listing = curl(server, "bob", "-X", "PROPFIND", "-H", "Depth: 1", path="/curl-dir/")
    assert status(listing) == 207 and b"a.bin" in body(listing) and b"300000" in body(listing)

    dest = server.url + "/curl-dir/b.bin"
    assert status(curl(server, "bob", "-X", "MOVE", "-H", f"Destination: {dest}", path="/curl-dir/a.bin")) in (201, 204)
    fs = box(backend, "bob")
    assert not fs.exists("curl-dir/a.bin")
    assert sha1(fs.cat_file("curl-dir/b.bin")) == sha1(data)

    # PUT over an existing file replaces it (204)
    src.write_bytes(b"second version")
    assert status(curl(server, "bob", "-T", str(src), path="/curl-dir/b.bin")) == 204
    assert box(backend, "bob").cat_file("curl-dir/b.bin") == b"second version"

    assert status(curl(server, "bob", "-X", "DELETE", path="/curl-dir/b.bin")) == 204
    assert status(curl(server, "bob", path="/curl-dir/b.bin")) == 404
    assert status(curl(server, "bob", "-X", "DELETE", path="/curl-dir")) == 204
    assert not box(backend, "bob").exists("curl-dir")


def test_move_onto_existing_keeps_target_until_replaced(env, tmp_path):
    backend, server, _users, _tmp = env
    for name in ("old", "new"):
        (tmp_path / name).write_bytes(name.encode())
        assert status(curl(server, "bob", "-T", str(tmp_path / name), path=f"/mv-{name}.txt")) == 201
    dest = server.url + "/mv-old.txt"
    refused = curl(server, "bob", "-X", "MOVE", "-H", f"Destination: {dest}", "-H", "Overwrite: F", path="/mv-new.txt")
    assert status(refused) == 412
    assert box(backend, "bob").cat_file("mv-old.txt") == b"old"
    assert status(curl(server, "bob", "-X", "MOVE", "-H", f"Destination: {dest}", path="/mv-new.txt")) == 204
    fs = box(backend, "bob")
    assert fs.cat_file("mv-old.txt") == b"new" and not fs.exists("mv-new.txt")


@pytest.mark.parametrize("method", ["MOVE", "COPY"])
@pytest.mark.parametrize("target", ["keep?.txt", "keep;v.txt"])
def test_copy_or_move_to_a_name_with_question_mark_or_semicolon_is_refused(env, tmp_path, method, target):
    """wsgidav decodes Destination before parsing it as a URL: ``keep%3F.txt`` became ``keep`` and
    ``keep%3Bv.txt`` ``keep``, so the request acted on another name (a MOVE could replace it). Refused.
    (Each run deletes its files through Box behind the server's back: the next run's PUTs land on names
    the server still has cached.)"""
    backend, server, _users, _tmp = env
    (tmp_path / "src").write_bytes(b"src")
    (tmp_path / "keep").write_bytes(b"keep")
    assert status(curl(server, "bob", "-T", str(tmp_path / "src"), path="/dq-src.txt")) in (201, 204)
    assert status(curl(server, "bob", "-T", str(tmp_path / "keep"), path="/keep")) in (201, 204)
    before = box(backend, "bob").info("keep")
    dest = server.url + "/" + quote(target, safe="")
    refused = curl(server, "bob", "-X", method, "-H", f"Destination: {dest}", path="/dq-src.txt")
    assert status(refused) == 400 and b"cannot take in a Destination header" in body(refused)
    fs = box(backend, "bob")
    assert fs.cat_file("keep") == b"keep" and fs.info("keep")["id"] == before["id"]
    assert fs.cat_file("dq-src.txt") == b"src" and not fs.exists(target)
    fs.rm(["dq-src.txt", "keep"])


@pytest.mark.parametrize("name", ["report [1].txt", "what?.txt", "star*.txt", "100%.txt", "hash#tag.txt"])
def test_hostile_names_are_literal(env, tmp_path, name):
    backend, server, _users, _tmp = env
    src = tmp_path / "f"
    src.write_bytes(name.encode() * 3)
    assert status(curl(server, "bob", "-T", str(src), path="/" + name)) == 201
    assert box(backend, "bob").cat_file(name) == name.encode() * 3
    got = curl(server, "bob", path="/" + name)
    assert status(got) == 200 and body(got) == name.encode() * 3
    assert status(curl(server, "bob", "-X", "DELETE", path="/" + name)) == 204
    assert not box(backend, "bob").exists(name)


def test_trailing_space_refused_before_any_request(env, tmp_path):
    backend, server, _users, _tmp = env
    src = tmp_path / "f"
    src.write_bytes(b"x")
    log = backend.emulator.request_log
    before = len(log.records)
    result = curl(server, "bob", "-T", str(src), path="/trailing ")
    assert status(result) == 400
    assert b"Invalid name" in body(result)
    assert [r for r in log.records[before:] if r.method != "GET"] == []
    assert status(curl(server, "bob", "-X", "MKCOL", path="/dir ")) == 400


def test_confinement_and_read_only(env, tmp_path):
    backend, server, _users, _tmp = env
    src = tmp_path / "f"
    src.write_bytes(b"carol's")
    assert status(curl(server, "carol", "-T", str(src), path="/c.txt")) == 201
    assert box(backend, "carol").cat_file("carol-home/c.txt") == b"carol's"
    # climbing out of the home is not possible: curl normalizes, so send the raw path
    climb = curl(server, "carol", "--path-as-is", "--max-time", "20", path="/../c.txt")
    assert status(climb) in (400, 403, 404)
    # ... and the refusal comes whole (wsgidav's own 400 here promised a body it never sent: curl waited
    # a minute for it, holding one of the server's threads)
    assert climb.returncode == 0, climb.stderr
    for method, extra in (("MOVE", ["-H", f"Destination: {server.url}/../x.txt"]), ("PROPFIND", [])):
        answer = curl(server, "carol", "--path-as-is", "--max-time", "20", "-X", method, *extra,
                      path="/c.txt" if method == "MOVE" else "/a/../../b")
        assert answer.returncode == 0 and status(answer) in (400, 403, 404), (method, answer)
    assert box(backend, "carol").cat_file("carol-home/c.txt") == b"carol's"
    # dave is read-only over bob's tree
    (tmp_path / "r").write_bytes(b"read me")
    assert status(curl(server, "bob", "-T", str(tmp_path / "r"), path="/for-dave.txt")) == 201
    assert body(curl(server, "dave", path="/for-dave.txt")) == b"read me"
    assert status(curl(server, "dave", "-T", str(src), path="/dave.txt")) == 403
    assert status(curl(server, "dave", "-X", "DELETE", path="/for-dave.txt")) == 403
    assert box(backend, "bob").exists("for-dave.txt") and not box(backend, "bob").exists("dave.txt")
    assert status(curl(server, "bob", "-X", "DELETE", path="/for-dave.txt")) == 204


def test_wrong_password_refused_and_throttled(env):
    backend, server, _users, _tmp = env
    assert status(curl(server, "bob", "-X", "PROPFIND", "-H", "Depth: 0", path="/")) == 207  # bob's password checked
    assert status(curl(server, "bob", password="wrong", path="/")) == 401
    assert status(curl(server, "nobody", password="wrong", path="/")) == 401
    assert server.state.throttle._records[("login", "bob")].failures >= 1
    # a request answered from the cache of checked passwords does not clear it (a client polling with its
    # password must not wipe out a guesser's failures against the same login) ...
    assert status(curl(server, "bob", "-X", "PROPFIND", "-H", "Depth: 0", path="/")) == 207
    assert server.state.throttle._records[("login", "bob")].failures >= 1
    # ... a real password check does
    server.state.auth_cache.clear()
    assert status(curl(server, "bob", "-X", "PROPFIND", "-H", "Depth: 0", path="/")) == 207
    assert ("login", "bob") not in server.state.throttle._records


def test_lockout_after_repeated_failures(tmp_path):
    with emulator_backend(tmp_path) as backend:
        throttle = {"base_delay": 0.01, "max_delay": 0.02, "address_lockout_after": 3, "login_lockout_after": 0}
        users = write_users_file(tmp_path / "users.toml", backend, throttle=throttle)
        with start_webdav_server(users, backend.factory) as server:
            for _ in range(3):
                assert status(curl(server, "bob", password="nope")) == 401
            # locked: even the right password is refused now
            assert status(curl(server, "bob", "-X", "PROPFIND", "-H", "Depth: 0")) == 401


def test_failed_upload_never_answers_2xx_and_keeps_previous(env, tmp_path):
    backend, _server, users, _tmp = env
    emu = backend.emulator
    box(backend, "bob").pipe_file("keep.txt", b"previous version")
    src = tmp_path / "f"
    src.write_bytes(os.urandom(50_000))
    with start_webdav_server(users, emulator_factory(backend, retry=1)) as server:
        with injected_faults(emu, rate=1.0, kinds=("500",), route=r"/content$", method="POST"):
            replaced = curl(server, "bob", "-T", str(src), path="/keep.txt")
            created = curl(server, "bob", "-T", str(src), path="/never.txt")
        assert status(replaced) == 502 and status(created) == 502
        fs = box(backend, "bob")
        assert fs.cat_file("keep.txt") == b"previous version" and not fs.exists("never.txt")
        assert status(curl(server, "bob", "-T", str(src), path="/keep.txt")) == 204  # usable again


def test_webdav4_client_and_60mb_by_sha1(env, tmp_path):
    backend, server, _users, _tmp = env
    client = Client(server.url, auth=("alice", PASSWORDS["alice"]), timeout=300)
    client.mkdir("w4")
    data = os.urandom(60 * 1024 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    client.upload_file(str(src), "w4/big.bin")
    assert sha1(box(backend, "alice").cat_file("w4/big.bin")) == sha1(data)
    out = tmp_path / "back.bin"
    client.download_file("w4/big.bin", str(out))
    assert sha1(out.read_bytes()) == sha1(data)
    names = {entry["name"] for entry in client.ls("w4")}
    assert names == {"w4/big.bin"}
    client.move("w4/big.bin", "w4/moved.bin")
    assert client.exists("w4/moved.bin") and not client.exists("w4/big.bin")
    client.remove("w4")
    assert not box(backend, "alice").exists("w4")


def test_https_with_certificate(tmp_path):
    with emulator_backend(tmp_path) as backend:
        cert, key = self_signed_cert(tmp_path)
        users = write_users_file(tmp_path / "users.toml", backend)
        with start_webdav_server(users, backend.factory, certfile=cert, keyfile=key) as server:
            assert server.url.startswith("https://")
            src = tmp_path / "f"
            src.write_bytes(b"over tls")
            assert status(curl(server, "bob", "--cacert", str(cert), "-T", str(src), path="/tls.txt")) == 201
            assert box(backend, "bob").cat_file("tls.txt") == b"over tls"


def test_lock_unlock_like_desktop_clients(env, tmp_path):
    """Finder and the Windows redirector LOCK before PUT and UNLOCK after; a locked file refuses
    another writer without the token."""
    backend, server, _users, _tmp = env
    lock_body = (
        '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
        "</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>"
    )
    locked = subprocess.run(
        ["curl", "-sS", "-u", f"bob:{PASSWORDS['bob']}", "-X", "LOCK", "-H", "Timeout: Second-60",
         "-H", "Content-Type: application/xml", "--data", lock_body, "-D", "-", server.url + "/locked.txt"],
        capture_output=True, timeout=60, check=True,
    ).stdout.decode()
    token = next(line.split(":", 1)[1].strip() for line in locked.splitlines()
                 if line.lower().startswith("lock-token:"))
    src = tmp_path / "f"
    src.write_bytes(b"locked content")
    assert status(curl(server, "alice", "-T", str(src), path="/locked.txt")) in (201, 204)  # alice's own tree
    assert status(curl(server, "bob", "-T", str(src), path="/locked.txt")) == 423
    assert status(curl(server, "bob", "-T", str(src), "-H", f"If: ({token})", path="/locked.txt")) in (201, 204)
    assert box(backend, "bob").cat_file("locked.txt") == b"locked content"
    assert status(curl(server, "bob", "-X", "UNLOCK", "-H", f"Lock-Token: {token}", path="/locked.txt")) == 204


def test_home_by_folder_id_survives_renaming_that_folder(tmp_path):
    """``home = "id:<folder id>"``: after the folder is renamed and moved in Box, the login still
    lands in it (WebDAV and FTP), and a home id that is not a folder refuses the login."""
    with emulator_backend(tmp_path) as backend:
        fs = box(backend, "bob")
        fs.makedirs("Projects/Acme", exist_ok=True)
        folder_id = fs.info("Projects/Acme")["id"]
        fs.pipe_file("Projects/note.txt", b"a file, not a folder")
        file_id = fs.info("Projects/note.txt")["id"]
        users = tmp_path / "users.toml"
        users.write_text(
            f'[users.acme]\npassword = "{password_hash("bob")}"\nbox_user = "{backend.box_users["bob"]}"\n'
            f'home = "id:{folder_id}"\n\n'
            f'[users.bad]\npassword = "{password_hash("bob")}"\nbox_user = "{backend.box_users["bob"]}"\n'
            f'home = "id:{file_id}"\n'
        )
        PASSWORDS.setdefault("acme", PASSWORDS["bob"])
        PASSWORDS.setdefault("bad", PASSWORDS["bob"])
        with start_webdav_server(users, backend.factory) as dav, \
                start_ftp_server(users, backend.factory, auth_failed_delay=0.01) as ftp_server:
            src = tmp_path / "f"
            src.write_bytes(b"before the rename")
            assert status(curl(dav, "acme", "-T", str(src), path="/one.txt")) == 201
            assert box(backend, "bob").cat_file("Projects/Acme/one.txt") == b"before the rename"

            outside = box(backend, "bob")
            outside.makedirs("Archive", exist_ok=True)
            outside.mv("Projects/Acme", "Archive/Acme 2026")
            assert outside.info("Archive/Acme 2026")["id"] == folder_id

            src.write_bytes(b"after the rename")
            assert status(curl(dav, "acme", "-T", str(src), path="/two.txt")) == 201
            listing = curl(dav, "acme", "-X", "PROPFIND", "-H", "Depth: 1", path="/")
            assert b"one.txt" in body(listing) and b"two.txt" in body(listing)
            client = ftplib.FTP()
            client.connect(ftp_server.host, ftp_server.port, timeout=60)
            client.login("acme", PASSWORDS["bob"])
            client.storbinary("STOR three.txt", io.BytesIO(b"over ftp"))
            assert sorted(client.nlst()) == ["one.txt", "three.txt", "two.txt"]
            client.quit()
            fs = box(backend, "bob")
            assert fs.cat_file("Archive/Acme 2026/two.txt") == b"after the rename"
            assert fs.cat_file("Archive/Acme 2026/three.txt") == b"over ftp"
            assert not fs.exists("Projects/Acme")

            assert status(curl(dav, "bad", "-X", "PROPFIND", "-H", "Depth: 0", path="/")) == 401


def test_api_calls_per_request(env):
    """What each WebDAV request costs in Box API calls, from the emulator's request log (the change
    watcher's own event polls left out)."""
    backend, server, _users, _tmp = env
    log = backend.emulator.request_log

    def calls(*args: str, path: str) -> list[tuple[str, str]]:
        before = len(log.records)
        result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-u", f"bob:{PASSWORDS['bob']}", *args,
                                 server.url + path], input=b"hello", capture_output=True, timeout=60, check=True)
        assert not result.stderr
        return [(r.method, r.path) for r in log.records[before:]
                if "/events" not in r.path and "/realtime" not in r.path and r.method != "OPTIONS"]

    calls("-X", "MKCOL", path="/count")
    new = calls("-T", "-", path="/count/a.txt")
    assert [m for m, _ in new] == ["POST"] and new[0][1].endswith("/files/content")  # one upload, no lookup
    again = calls("-T", "-", path="/count/a.txt")
    assert [m for m, _ in again] == ["POST"]  # a new version, in one request
    listing = calls("-X", "PROPFIND", "-H", "Depth: 1", path="/count/")
    assert len(listing) == 1 and listing[0][1].endswith("/items")  # one listing, no request per entry
    get = calls(path="/count/a.txt")
    # the size and etag come from Box (one listing), and DownloadFile re-reads the entry (a second one)
    assert sum(p.endswith("/items") for _, p in get) <= 2 and sum("/content" in p for _, p in get) == 1
    assert [m for m, _ in calls("-X", "DELETE", path="/count/a.txt")] == ["DELETE"]


def test_a_put_cut_short_stores_nothing_and_keeps_the_old_version(env):
    """cheroot ends a Content-Length body early without an error when the client goes away: the server
    must compare what arrived with what was announced, or a truncated file replaces the good one."""
    import base64
    import socket
    import time

    backend, server, _users, _tmp = env
    old = os.urandom(50_000)
    box(backend, "bob").pipe_file("cut.bin", old)
    auth = base64.b64encode(f"bob:{PASSWORDS['bob']}".encode()).decode()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall((f"PUT /cut.bin HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Basic {auth}\r\n"
                      f"Content-Length: 100000\r\n\r\n").encode() + os.urandom(40_000))
        time.sleep(0.5)
        sock.shutdown(socket.SHUT_WR)  # the client goes away after 40,000 of the 100,000 bytes
        sock.settimeout(30)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
    time.sleep(1.0)  # let the server finish the request it was handling
    assert sha1(box(backend, "bob").cat_file("cut.bin")) == sha1(old)


def test_copy_onto_an_existing_file_failing_at_box_keeps_the_destination(env):
    """wsgidav's own COPY deletes the destination first; a copy that then fails must not lose it."""
    import time

    backend, server, _users, _tmp = env
    fs = box(backend, "bob")
    fs.pipe_file("copy-src.txt", b"new content")
    fs.pipe_file("copy-dst.txt", b"precious")
    dest = server.url + "/copy-dst.txt"
    for _ in range(100):  # the server sees another client's files once its cached listing expires
        if all(status(curl(server, "bob", "-I", path=p)) == 200 for p in ("/copy-src.txt", "/copy-dst.txt")):
            break
        time.sleep(0.2)
    with injected_faults(backend.emulator, rate=1.0, kinds=("500",), route=r"/files/\d+/copy$"):
        failed = curl(server, "bob", "-X", "COPY", "-H", f"Destination: {dest}", path="/copy-src.txt")
    assert status(failed) >= 400
    assert box(backend, "bob").cat_file("copy-dst.txt") == b"precious"
    done = curl(server, "bob", "-X", "COPY", "-H", f"Destination: {dest}", path="/copy-src.txt")
    assert status(done) in (201, 204)
    assert box(backend, "bob").cat_file("copy-dst.txt") == b"new content"


# ------------------------------------------------------------------ folder DELETE and COPY: names, never patterns
def memory_backend(tmp_path) -> Backend:
    """Each Box user's tree as a folder of fsspec's in-memory filesystem: a filesystem whose ``rm`` and
    ``copy`` expand ``*?[`` as patterns at every call (BoxFileSystem's only once no item has the name)."""
    memory, root = MemoryFileSystem(), f"/{tmp_path.name}"

    def factory(box_user: str) -> DirFileSystem:
        memory.makedirs(f"{root}/{box_user}", exist_ok=True)
        return DirFileSystem(path=f"{root}/{box_user}", fs=memory)

    return Backend("memory", factory, {"alice": "alice", "bob": "bob", "carol": "alice"}, factory)


@pytest.fixture(scope="module", params=["emulator", "memory"])
def literal_env(request, tmp_path_factory):
    """A WebDAV server over Box (the emulator) and over another fsspec filesystem."""
    tmp = tmp_path_factory.mktemp(f"literal-{request.param}")
    with contextlib.ExitStack() as stack:
        backend = memory_backend(tmp) if request.param == "memory" else stack.enter_context(emulator_backend(tmp))
        users = write_users_file(tmp / "users.toml", backend)
        with start_webdav_server(users, backend.factory) as server:
            yield backend, server


def test_folder_delete_and_copy_take_hostile_names_literally(literal_env):
    backend, server = literal_env
    fs = box(backend, "bob")
    fs.makedirs("lit/[a]*", exist_ok=True)
    fs.pipe_file("lit/[a]*/inside?.txt", b"inside")
    for sibling in ("a1", "ab"):  # both match the pattern [a]*; neither is the folder named
        fs.makedirs(f"lit/{sibling}", exist_ok=True)
        fs.pipe_file(f"lit/{sibling}/keep.txt", sibling.encode())
    copied = curl(server, "bob", "-X", "COPY", "-H", f"Destination: {server.url}{quote('/lit/copy [a]*')}",
                  path="/lit/[a]*")
    assert status(copied) in (201, 204), body(copied)  # wsgidav answers 204 for a copy it let us make
    deleted = curl(server, "bob", "-X", "DELETE", path="/lit/[a]*")
    assert status(deleted) == 204, body(deleted)
    fs = box(backend, "bob")
    assert {e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls("lit", detail=False)} == {"a1", "ab", "copy [a]*"}
    assert [e.rsplit("/", 1)[-1] for e in fs.ls("lit/copy [a]*", detail=False)] == ["inside?.txt"]
    assert fs.cat_file("lit/copy [a]*/inside?.txt") == b"inside"
    assert fs.cat_file("lit/a1/keep.txt") == b"a1" and fs.cat_file("lit/ab/keep.txt") == b"ab"


def test_folder_copy_is_one_server_side_copy(env):
    """COPY of a folder to a new name: one ``POST /folders/{id}/copy``, not a folder and a copy per file."""
    backend, server, _users, _tmp = env
    fs = box(backend, "bob")
    for i in range(3):
        fs.pipe_file(f"tree/sub/f{i}.txt", f"file {i}".encode())
    for _ in range(100):  # the server sees another client's files once its cached listing expires
        if status(curl(server, "bob", "-X", "PROPFIND", "-H", "Depth: 1", path="/tree/sub/")) == 207:
            break
        time.sleep(0.2)
    log = backend.emulator.request_log
    before = len(log.records)
    result = curl(server, "bob", "-X", "COPY", "-H", f"Destination: {server.url}/tree-copy", path="/tree")
    assert status(result) in (201, 204), body(result)
    posts = [r.route for r in log.records[before:] if r.method == "POST"]
    assert posts == ["/folders/{folder_id}/copy"], posts
    assert box(backend, "bob").cat_file("tree-copy/sub/f2.txt") == b"file 2"
    assert box(backend, "bob").cat_file("tree/sub/f2.txt") == b"file 2"


def test_session_limits_apply_to_a_logins_requests(env, tmp_path):
    """The server's session limits hold for WebDAV too, over all of a login's requests at once: with one
    file open (a slow PUT), a GET is refused with 503 saying which limit, and the PUT still lands."""
    backend, _server, users, _tmp = env
    box(backend, "bob").pipe_file("limited/readme.txt", b"read me")
    (tmp_path / "slow.bin").write_bytes(b"s" * 400_000)
    with start_webdav_server(users, backend.factory, session_limits=SessionLimits(max_open_files=1)) as server:
        slow = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate", "200K",
                                 "-u", f"bob:{PASSWORDS['bob']}", "-T", str(tmp_path / "slow.bin"),
                                 server.url + "/limited/slow.bin"], stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while server.state.resources("bob").open_files == 0 and time.monotonic() < deadline:
                time.sleep(0.02)  # the PUT holds the login's one open file
            refused = curl(server, "bob", path="/limited/readme.txt")
            assert status(refused) == 503
            assert b"too many open files in this session (limit 1)" in body(refused)
        finally:
            assert slow.communicate(timeout=60)[0] == "201"
        assert status(curl(server, "bob", path="/limited/readme.txt")) == 200
    assert box(backend, "bob").cat_file("limited/slow.bin") == b"s" * 400_000


def test_put_if_none_match_star_never_replaces_a_file_created_meanwhile(env):
    """``If-None-Match: *`` asks for a new file: wsgidav checks it when the PUT starts, the upload itself
    is create-only, so a file another client creates while the body comes is left as it is (412)."""
    backend, server, _users, _tmp = env
    name = "if-none-match [*].txt"

    def taken_meanwhile() -> dict:
        fs = box(backend, "bob")
        fs.pipe_file(name, b"theirs")
        return fs.info(name)

    code, before = put_while_open(server, "bob", PASSWORDS["bob"], f"/{name}", taken_meanwhile,
                                  headers=["If-None-Match: *"])
    assert code == b"412"
    fs = box(backend, "bob")
    assert fs.cat_file(name) == b"theirs" and fs.info(name)["sha1"] == before["sha1"]
    assert fs.info(name).get("etag") == before.get("etag")


def test_folder_copy_over_a_file_is_refused_and_keeps_the_file(env):
    """wsgidav deletes a file in the way before copying a folder there; refused instead (409, as MOVE)."""
    backend, server, _users, _tmp = env
    fs = box(backend, "bob")
    fs.pipe_file("cf-src/inner.txt", b"inner")
    fs.pipe_file("cf-file.txt", b"precious")
    for _ in range(100):  # the server sees another client's files once its cached listing expires
        if all(status(curl(server, "bob", "-I", path=p)) == 200 for p in ("/cf-src/inner.txt", "/cf-file.txt")):
            break
        time.sleep(0.2)
    result = curl(server, "bob", "-X", "COPY", "-H", f"Destination: {server.url}/cf-file.txt", path="/cf-src")
    assert status(result) == 409, body(result)
    assert box(backend, "bob").cat_file("cf-file.txt") == b"precious"
