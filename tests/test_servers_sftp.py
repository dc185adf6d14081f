"""SFTP server: real asyncssh and paramiko clients against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
from datetime import datetime, timezone

import asyncssh
import paramiko
import pytest
from servers_support import PASSWORDS, emulator_factory, make_backend, write_users_file
from support import injected_faults

from boxfs.frontend.stat import info_mtime
from boxfs.servers.sftp import start_sftp_server

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sftp")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    with make_backend(tmp) as backend:
        users = write_users_file(
            tmp / "users.toml", backend, ssh_keys={"bob": [client_key.export_public_key().decode().strip()]}
        )
        with start_sftp_server(users, backend.factory) as server:
            yield backend, server, client_key


def run(coro):
    return asyncio.run(coro)


def known_hosts(server) -> asyncssh.SSHKnownHosts:
    return asyncssh.import_known_hosts(
        f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}"
    )


def connect(server, login: str, password: str | None = None, **kwargs):
    if "client_keys" not in kwargs:
        kwargs["password"] = PASSWORDS[login] if password is None else password
        kwargs["client_keys"] = None
    return asyncssh.connect(
        server.host,
        server.port,
        username=login,
        known_hosts=known_hosts(server),
        preferred_auth=("publickey", "password"),
        **kwargs,
    )


async def write_file(sftp, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as fh:
        await fh.write(data)


async def read_file(sftp, path: str, offset: int = 0, size: int = -1) -> bytes:
    async with sftp.open(path, "rb") as fh:
        await fh.seek(offset)
        return await fh.read(size)


def box_names(backend, login: str) -> set[str]:
    fs = backend.inspect(backend.box_users[login])
    return {e["name"].rstrip("/").rsplit("/", 1)[-1] for e in fs.ls("", detail=True)}


def test_wrong_password_unknown_login_and_unknown_key_refused(env, caplog):
    _backend, server, _key = env
    caplog.set_level(logging.INFO, logger="boxfs")

    async def scenario():
        for login, password in (("alice", "wrong-password-9"), ("mallory", "whatever-1")):
            with pytest.raises(asyncssh.PermissionDenied):
                async with connect(server, login, password):
                    pass
        stranger = asyncssh.generate_private_key("ssh-ed25519")
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(server, "bob", client_keys=[stranger]):
                pass

    run(scenario())
    assert "refused" in caplog.text and "mallory" in caplog.text
    assert "wrong-password-9" not in caplog.text


def test_login_whose_box_user_is_unusable_is_refused(env, caplog):
    _backend, server, _key = env
    caplog.set_level(logging.INFO, logger="boxfs")

    async def scenario():
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(server, "ghost", PASSWORDS["bob"]):
                pass
        async with connect(server, "bob") as conn, conn.start_sftp_client() as sftp:
            await sftp.listdir(".")  # the server is fine

    run(scenario())
    assert "cannot act as Box user ghost" in caplog.text


def test_two_users_operations_and_isolation(env, caplog):
    backend, server, client_key = env
    caplog.set_level(logging.INFO, logger="boxfs")

    async def scenario():
        async with (
            connect(server, "alice") as a_conn,
            connect(server, "bob", client_keys=[client_key]) as b_conn,
        ):
            async with a_conn.start_sftp_client() as alice, b_conn.start_sftp_client() as bob:
                await write_file(alice, "report.txt", b"alice's report\n")
                await write_file(bob, "notes.txt", b"bob's notes\n")
                await alice.mkdir("projects")
                await write_file(alice, "projects/plan.md", b"# plan\n" * 100)
                assert await alice.realpath(".") == "/"
                assert await alice.realpath("projects/../projects/./plan.md") == "/projects/plan.md"

                assert {"report.txt", "projects"} <= set(await alice.listdir("/"))
                assert "notes.txt" not in await alice.listdir("/")
                assert "report.txt" not in await bob.listdir(".")
                names = {n.filename: n for n in await alice.readdir("projects")}
                assert names["plan.md"].attrs.size == 700

                st = await alice.stat("report.txt")
                assert st.size == 15 and st.type == asyncssh.FILEXFER_TYPE_REGULAR
                assert (await alice.lstat("projects")).type == asyncssh.FILEXFER_TYPE_DIRECTORY
                assert await alice.isdir("projects") and not await alice.isfile("projects")

                assert await read_file(alice, "report.txt") == b"alice's report\n"
                assert await read_file(alice, "/projects/plan.md", offset=7 * 99) == b"# plan\n"
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await read_file(bob, "report.txt")

                await alice.rename("report.txt", "projects/final.txt")
                assert not await alice.exists("report.txt")
                with pytest.raises(asyncssh.SFTPError):
                    await alice.rename("projects/final.txt", "projects/plan.md")  # exists: v3 rename refuses
                await alice.posix_rename("projects/final.txt", "projects/plan.md")  # replaces
                assert await read_file(alice, "projects/plan.md") == b"alice's report\n"
                with pytest.raises(asyncssh.SFTPError):
                    await alice.rmdir("projects")  # not empty
                await alice.remove("projects/plan.md")
                await alice.rmdir("projects")
                assert not await alice.exists("projects")
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await alice.remove("projects/plan.md")

                assert "notes.txt" in box_names(backend, "bob")
                assert not {"notes.txt", "projects", "report.txt"} & box_names(backend, "alice")
                await bob.remove("notes.txt")

    run(scenario())
    assert "sftp login alice" in caplog.text and "upload completed /report.txt" in caplog.text
    assert PASSWORDS["alice"] not in caplog.text


def test_names_with_glob_characters_are_literal(env):
    backend, server, _key = env

    async def scenario():
        async with connect(server, "bob") as conn, conn.start_sftp_client() as sftp:
            for name in ("s*.txt", "s1.txt", "plan [1].txt", "old.txt"):
                await write_file(sftp, name, name.encode())
            await sftp.remove("s*.txt")  # must not remove s1.txt too
            await sftp.rename("plan [1].txt", "plan [2].txt")
            await sftp.posix_rename("old.txt", "s1.txt")  # replaces s1.txt only
            assert sorted(n for n in await sftp.listdir(".") if n[0] in "ps") == ["plan [2].txt", "s1.txt"]
            assert await read_file(sftp, "s1.txt") == b"old.txt"
            await sftp.remove("s1.txt")
            await sftp.remove("plan [2].txt")
            await write_file(sftp, "naïve résumé.txt", "naïve".encode())
            assert "naïve résumé.txt" in await sftp.listdir(".")
            assert await read_file(sftp, "naïve résumé.txt") == "naïve".encode()
            await sftp.remove("naïve résumé.txt")

    run(scenario())
    assert not {"s*.txt", "s1.txt", "plan [1].txt", "plan [2].txt"} & box_names(backend, "bob")


def test_setstat_mtime(env):
    backend, server, _key = env
    when = datetime(2021, 6, 7, 8, 9, 10, tzinfo=timezone.utc).timestamp()

    async def scenario():
        async with connect(server, "bob") as conn, conn.start_sftp_client() as sftp:
            await write_file(sftp, "dated.txt", b"content stays")
            await sftp.utime("dated.txt", (when, when))
            assert (await sftp.stat("dated.txt")).mtime == int(when)
            assert await read_file(sftp, "dated.txt") == b"content stays"
            await sftp.chmod("dated.txt", 0o600)  # no modes in Box: accepted, ignored

    run(scenario())
    fs = backend.inspect(backend.box_users["bob"])
    assert info_mtime(fs.info("dated.txt")) == when
    fs.rm("dated.txt")


def test_paths_outside_home_are_refused(env):
    backend, server, _key = env

    async def scenario():
        async with connect(server, "alice") as a_conn, connect(server, "carol") as c_conn:
            async with a_conn.start_sftp_client() as alice, c_conn.start_sftp_client() as carol:
                await write_file(alice, "secret.txt", b"alice only")
                await write_file(carol, "mine.txt", b"carol's")
                assert await read_file(alice, "carol-home/mine.txt") == b"carol's"
                assert await carol.listdir("/") == [".", "..", "mine.txt"]
                for path in ("../secret.txt", "/../secret.txt", "../../secret.txt", "..//secret.txt"):
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await read_file(carol, path)
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await carol.stat(path)
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await read_file(carol, "/secret.txt")  # absolute = inside carol's home
                for path in ("..", "/..", "../carol-home/../.."):
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await carol.realpath(path)
                    with pytest.raises(asyncssh.SFTPPermissionDenied):
                        await carol.listdir(path)
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await write_file(carol, "../escaped.txt", b"x")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await carol.remove("../secret.txt")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await carol.rename("mine.txt", "../stolen.txt")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await carol.mkdir("../newdir")
                names = box_names(backend, "alice")
                assert "secret.txt" in names and not {"escaped.txt", "stolen.txt", "newdir"} & names
                await alice.remove("secret.txt")
                await carol.remove("mine.txt")

    run(scenario())


def test_read_only_user(env):
    _backend, server, _key = env

    async def scenario():
        async with connect(server, "bob") as b_conn, connect(server, "dave", PASSWORDS["alice"]) as d_conn:
            async with b_conn.start_sftp_client() as bob, d_conn.start_sftp_client() as dave:
                await write_file(bob, "shared.txt", b"read me")
                assert await read_file(dave, "shared.txt") == b"read me"
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await write_file(dave, "new.txt", b"x")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await dave.remove("shared.txt")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await dave.mkdir("d")
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await dave.rename("shared.txt", "x.txt")
                assert "new.txt" not in await bob.listdir(".")
                await bob.remove("shared.txt")

    run(scenario())


def test_paramiko_client_large_upload_sha1(env):
    """A second, independent client implementation; 60 MB in one Box file with the right SHA1."""
    backend, server, _key = env
    data = os.urandom(60 * 1024 * 1024)
    sha1 = hashlib.sha1(data).hexdigest()
    transport = paramiko.Transport((server.host, server.port))
    try:
        transport.connect(username="alice", password=PASSWORDS["alice"])
        remote_key = transport.get_remote_server_key()
        assert remote_key.get_base64() == server.host_key.export_public_key().decode().split()[1]
        sftp = paramiko.SFTPClient.from_transport(transport)
        sftp.putfo(io.BytesIO(data), "big-sftp.bin", file_size=len(data), confirm=True)
        assert sftp.stat("big-sftp.bin").st_size == len(data)
        assert "big-sftp.bin" in sftp.listdir(".")
        with sftp.open("big-sftp.bin", "rb") as fh:
            fh.seek(len(data) - 4096)
            assert fh.read(4096) == data[-4096:]
        with pytest.raises(OSError):
            sftp.open("../outside.txt", "wb")
        sftp.close()
    finally:
        transport.close()
    fs = backend.inspect(backend.box_users["alice"])
    entries = [e for e in fs.ls("", detail=True) if e["name"].rstrip("/").endswith("big-sftp.bin")]
    assert len(entries) == 1 and entries[0]["size"] == len(data)
    if backend.kind == "emulator":
        assert entries[0]["sha1"] == sha1
    else:
        with fs.open("big-sftp.bin", "rb") as fh:
            assert hashlib.sha1(fh.read()).hexdigest() == sha1
    fs.rm("big-sftp.bin")


def test_failed_box_upload_is_reported_and_stores_nothing(env, tmp_path):
    backend, _server, _key = env
    no_retry = emulator_factory(backend, retry=1)
    emu = backend.emulator
    users = write_users_file(tmp_path / "users.toml", backend)

    async def scenario(server):
        async with connect(server, "alice") as conn, conn.start_sftp_client() as sftp:
            with injected_faults(emu, rate=1.0, kinds=("500",), route=r"/files/content$", method="POST"):
                with pytest.raises(asyncssh.SFTPFailure, match="Upload failed"):
                    await write_file(sftp, "doomed.txt", b"never stored")
            assert not await sftp.exists("doomed.txt")
            await write_file(sftp, "fine.txt", b"stored")
            assert await read_file(sftp, "fine.txt") == b"stored"
            await sftp.remove("fine.txt")

    with start_sftp_server(users, no_retry) as server:
        run(scenario(server))
    assert "doomed.txt" not in box_names(backend, "alice")


def test_abandoned_upload_stores_nothing(env, caplog):
    backend, server, _key = env
    if backend.kind != "emulator":
        pytest.skip("the local stand-in filesystem creates files as they are written, not on close")
    caplog.set_level(logging.INFO, logger="boxfs")

    async def scenario():
        conn = await connect(server, "bob")
        sftp = await conn.start_sftp_client()
        fh = await sftp.open("half.bin", "wb")
        await fh.write(b"x" * 100_000)
        conn.abort()  # the client dies mid-upload: no close request
        await conn.wait_closed()
        async with connect(server, "bob") as conn2, conn2.start_sftp_client() as sftp2:
            for _ in range(50):  # the server notices the disconnect asynchronously
                if "upload abandoned /half.bin" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert not await sftp2.exists("half.bin")

    run(scenario())
    assert "upload abandoned /half.bin after 100000 bytes" in caplog.text
    assert "half.bin" not in box_names(backend, "bob")


def test_ten_concurrent_sessions(env):
    _backend, server, _key = env

    async def session(i: int) -> None:
        login = "alice" if i % 2 else "bob"
        async with connect(server, login) as conn, conn.start_sftp_client() as sftp:
            payload = f"session {i}\n".encode() * (20000 + i)
            name = f"concurrent-{i}.txt"
            await write_file(sftp, name, payload)
            assert name in await sftp.listdir(".")
            assert await read_file(sftp, name) == payload
            await sftp.remove(name)

    async def scenario():
        await asyncio.gather(*(session(i) for i in range(10)))

    run(scenario())


def test_malformed_ssh_key_fails_at_start(tmp_path):
    users = tmp_path / "users.toml"
    users.write_text('[users.x]\nssh_keys = ["ssh-ed25519 not-base64!"]\nbox_user = "1"\n')
    with pytest.raises(ValueError, match=r"users\.x\.ssh_keys: key 1 is not an OpenSSH public key"):
        start_sftp_server(users, lambda box_user: None)


def sha1_of(path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_asyncssh_put_and_get_60mb_sha1(env, tmp_path):
    """asyncssh's get() asks for the file's data ranges (SEEK_DATA/SEEK_HOLE on our file object)."""
    backend, server, _key = env
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(60 * 1024 * 1024))
    fetched = tmp_path / "fetched.bin"

    async def scenario():
        async with connect(server, "alice") as conn, conn.start_sftp_client() as sftp:
            await sftp.put(str(source), "big-asyncssh.bin")
            assert (await sftp.stat("big-asyncssh.bin")).size == source.stat().st_size
            await sftp.get("big-asyncssh.bin", str(fetched))
            await sftp.remove("big-asyncssh.bin")

    run(scenario())
    assert fetched.stat().st_size == source.stat().st_size
    assert sha1_of(fetched) == sha1_of(source)
    assert "big-asyncssh.bin" not in box_names(backend, "alice")


def test_session_limits_open_files_and_bytes_ahead_of_a_gap(env, tmp_path):
    backend, _server, _key = env
    from boxfs.servers.common import SessionLimits

    users = write_users_file(tmp_path / "users.toml", backend)
    limits = SessionLimits(max_open_files=3, max_pending_bytes=1024 * 1024)

    async def scenario(server):
        async with connect(server, "bob") as conn, conn.start_sftp_client() as sftp:
            await write_file(sftp, "limit-0.txt", b"first")
            handles = [await sftp.open(f"limit-{i}.txt", "wb") for i in (1, 2, 3)]
            with pytest.raises(asyncssh.SFTPFailure, match=r"too many open files .*limit 3"):
                await sftp.open("limit-4.txt", "wb")
            with pytest.raises(asyncssh.SFTPFailure, match="too many open files"):
                await sftp.open("limit-0.txt", "rb")  # downloads count too
            await handles[2].close()
            assert await read_file(sftp, "limit-0.txt") == b"first"  # a slot is free again

            fh = handles[0]
            await fh.write(b"b" * 600_000, 100)  # ahead of a gap: held in memory
            with pytest.raises(asyncssh.SFTPFailure, match=r"too much out-of-order data.*limit 1048576"):
                await fh.write(b"c" * 600_000, 700_000)
            await fh.write(b"a" * 100, 0)  # the gap filled: the held bytes are written and released
            await fh.write(b"d" * 900_000, 2_000_000)  # room again
            await fh.write(b"e" * (2_000_000 - 600_100), 600_100)
            await fh.close()
            await handles[1].close()
            assert (await sftp.stat("limit-1.txt")).size == 2_900_000
            data = await read_file(sftp, "limit-1.txt")
            assert data == b"a" * 100 + b"b" * 600_000 + b"e" * 1_399_900 + b"d" * 900_000
            for name in ("limit-0.txt", "limit-1.txt", "limit-2.txt", "limit-3.txt"):
                await sftp.remove(name)

    with start_sftp_server(users, backend.factory, session_limits=limits) as server:
        run(scenario(server))


@pytest.mark.parametrize("name", ["trailing space ", "bell\x07.txt", "back\\slash.txt", "x" * 256])
def test_invalid_names_refused_before_any_request(env, name, caplog):
    backend, server, _key = env
    if backend.kind != "emulator":
        pytest.skip("Box's name rules apply to BoxFileSystem only")
    caplog.set_level(logging.INFO, logger="boxfs")
    log = backend.emulator.request_log

    async def scenario():
        async with connect(server, "bob") as conn, conn.start_sftp_client() as sftp:
            await write_file(sftp, "valid.txt", b"x")
            for attempt in (
                lambda: write_file(sftp, name, b"data"),
                lambda: sftp.mkdir(name),
                lambda: sftp.rename("valid.txt", name),
                lambda: sftp.posix_rename("valid.txt", name),
            ):
                before = len(log)
                with pytest.raises(asyncssh.SFTPFailure, match="Invalid name: Box item names must"):
                    await attempt()
                # at most a lookup: no request that would create, move or upload anything
                assert [r for r in log.records[before:] if r.method != "GET"] == []
            await sftp.remove("valid.txt")

    run(scenario())
    assert "Traceback" not in caplog.text


def test_fsync_uploads_now_and_a_failed_upload_keeps_failing_until_it_lands(env, tmp_path):
    backend, _server, _key = env
    no_retry = emulator_factory(backend, retry=1)
    emu = backend.emulator
    users = write_users_file(tmp_path / "users.toml", backend)
    inspect = backend.inspect(backend.box_users["alice"])

    async def scenario(server):
        async with connect(server, "alice") as conn, conn.start_sftp_client() as sftp:
            fh = await sftp.open("synced.txt", "wb")
            await fh.write(b"first part ")
            await fh.fsync()  # fsync@openssh.com: in Box now, before the close
            assert inspect.cat_file("synced.txt") == b"first part "
            await fh.write(b"second part")
            with injected_faults(emu, rate=1.0, kinds=("500",), route=r"/files/\d+/content$", method="POST"):
                with pytest.raises(asyncssh.SFTPFailure):
                    await fh.fsync()
            await fh.close()  # still pending after the failed fsync: the close uploads it
        assert backend.inspect(backend.box_users["alice"]).cat_file("synced.txt") == b"first part second part"

    with start_sftp_server(users, no_retry) as server:
        run(scenario(server))
    inspect.rm_file("synced.txt")
