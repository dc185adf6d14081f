"""FTP and SFTP servers are coherent with Box and pinned to one version per read (issue 17).

The servers keep no freshness rule of their own: they answer from the per-user filesystem, whose cache
Box's event stream keeps true. Here, with the watcher on and the emulator at 20 ms latency:

* a change made by another client (another app's token, no shared cache) is seen by FTP LIST and SFTP
  readdir with no ``invalidate_cache()``, within a bounded wait;
* the server holds one long poll per active Box user, however many logins act as that user;
* a file replaced while FTP RETR or an SFTP read is under way gives the old bytes whole (SHA-1), and
  one deleted meanwhile gives an error, never "226 Transfer complete" with a mix;
* 20 parallel SFTP clients over 2 Box users, with and without 15% injected faults: every upload reads
  back (the issue's bug was a listing fetched while an upload was finishing, then invalidated).
"""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncssh
import pytest
from servers_support import PASSWORDS, Backend, write_users_file
from support import faults_cleared

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator
from boxfs.servers.common import box_filesystem_factory
from boxfs.servers.ftp import start_ftp_server
from boxfs.servers.sftp import start_sftp_server
from boxfs.servers.users import UserFilesystems
from boxfs.watch import active_watchers

pytestmark = pytest.mark.timeout(300)

DEADLINE = 15.0  # seconds a change may take to be seen before a test fails (the benchmark measures it)
KiB, MiB = 1024, 1024 * 1024
BLOCK = MiB  # the servers' read-ahead block: a read of a few MiB takes several pinned requests


@dataclass
class World:
    emu: BoxEmulator
    ftp: Any
    sftp: Any
    filesystems: UserFilesystems
    box_ids: dict[str, str]  # login -> Box user id
    box_users: dict[str, str]  # login -> box_user as the users file gives it
    other: Callable[[str], BoxFileSystem]  # login -> another client of that login's Box user


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("coherence")
    with BoxEmulator(latency=0.02) as emu:
        alice = emu.create_user("alice@example.com", name="Alice")
        bob = emu.create_user("bob@example.com", name="Bob")
        cfg = emu.create_jwt_app(scopes=("root_readwrite", "manage_managed_users"), as_user_header=True,
                                 enterprise_access=True)
        # the watcher on, as in production (the test session turns its default off: conftest)
        factory = box_filesystem_factory(cfg, emu.base_urls, watch_events=True, default_block_size=BLOCK,
                                         spool_dir=str(tmp / "spool"))
        box_users = {"alice": alice, "bob": "bob@example.com", "carol": alice}
        ids = {"alice": alice, "bob": bob, "carol": alice}
        backend = Backend("emulator", factory, box_users, factory, emu, ids, cfg)
        users_file = write_users_file(tmp / "users.toml", backend)
        client_id, secret = emu.create_ccg_app(scopes=("root_readwrite",))
        others: dict[str, BoxFileSystem] = {}

        def other(login: str) -> BoxFileSystem:
            """Another client of the login's Box user: another app, its own token, its own cache."""
            if login not in others:
                others[login] = BoxFileSystem(client_id=client_id, client_secret=secret, user_id=ids[login],
                                              base_urls=emu.base_urls, skip_instance_cache=True,
                                              watch_events=False, listings_expiry_time=0)
            return others[login]

        filesystems = UserFilesystems(factory)  # one filesystem per Box user, shared by both servers
        with (start_ftp_server(users_file, filesystems, auth_failed_delay=0.05) as ftp,
              start_sftp_server(users_file, filesystems, state_dir=tmp / "sftp-state") as sftp):
            yield World(emu, ftp, sftp, filesystems, ids, box_users, other)


def served_size(world: World, login: str, path: str) -> Callable[[], int]:
    """The size the server's filesystem for ``login`` knows ``path`` by (from its cache, as clients see)."""
    fs = world.filesystems.get(world.box_users[login])
    return lambda: fs.info(path)["size"] if fs.exists(path) else -1


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not seen within {DEADLINE} s: {what}"
        time.sleep(0.05)


def ftp_login(world: World, login: str) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(world.ftp.host, world.ftp.port, timeout=60)
    ftp.login(login, PASSWORDS[login])
    return ftp


def sftp_connect(world: World, login: str) -> Any:
    server = world.sftp
    known = asyncssh.import_known_hosts(f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}")
    return asyncssh.connect(server.host, server.port, username=login, password=PASSWORDS[login],
                            client_keys=None, known_hosts=known, preferred_auth=("password",))


def retr_slowly(ftp: ftplib.FTP, name: str, sink: Callable[[bytes], None]) -> str:
    """``retrbinary`` with a small receive buffer, so that the server cannot have sent (and so read)
    the whole file before ``sink`` has seen its first bytes; returns the final reply."""
    ftp.voidcmd("TYPE I")
    with ftp.transfercmd(f"RETR {name}") as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        while data := conn.recv(8 * KiB):
            sink(data)
    return ftp.voidresp()


def content_gets_since(world: World, since: float) -> list[Any]:
    """Downloads of file content that started after ``since`` (monotonic, the request log's clock): through
    the API's redirect or straight from the download host with a download URL the client reuses."""
    return [r for r in world.emu.request_log.records
            if r.started >= since and r.method == "GET"
            and r.route in ("/files/{file_id}/content", "/download/{token}")]


def held_long_polls(world: World) -> list[Any]:
    """Long polls the emulator is holding open right now (a record gets its status when answered)."""
    return [r for r in world.emu.request_log.records if r.route == "/subscribe" and r.status == 0]


# ----------------------------------------------------------------------------- freshness
def test_ftp_list_and_sftp_readdir_see_changes_made_elsewhere(world: World) -> None:
    other = world.other("bob")
    other.makedirs("seen", exist_ok=True)
    ftp = ftp_login(world, "bob")

    async def scenario() -> None:
        async with sftp_connect(world, "bob") as conn, conn.start_sftp_client() as sftp:

            async def sftp_names() -> list[str]:
                return sorted(n for n in await sftp.listdir("/seen") if n not in (".", ".."))

            def both(expected: list[str]) -> Callable[[], bool]:
                def check() -> bool:
                    return (sorted(ftp.nlst("/seen")) == expected
                            and asyncio.run_coroutine_threadsafe(sftp_names(), loop).result() == expected)
                return check

            loop = asyncio.get_running_loop()
            assert await sftp_names() == [] and ftp.nlst("/seen") == []
            steps: list[tuple[Callable[[], None], list[str]]] = [
                (lambda: other.pipe_file("seen/new [1] *.txt", b"made elsewhere"), ["new [1] *.txt"]),
                (lambda: other.mv_literal("seen/new [1] *.txt", "seen/renamed.txt"), ["renamed.txt"]),
                (lambda: other.pipe_file("seen/second.txt", b"2"), ["renamed.txt", "second.txt"]),
                (lambda: other.rm_file("seen/renamed.txt"), ["second.txt"]),
            ]
            for change, expected in steps:
                await asyncio.to_thread(change)
                await asyncio.to_thread(eventually, both(expected), f"{expected} in /seen")
            # a new version elsewhere: the size the server lists, and what it serves, follow
            await asyncio.to_thread(other.pipe_file, "seen/second.txt", b"a longer second version")

            def new_size() -> bool:
                return asyncio.run_coroutine_threadsafe(sftp.stat("/seen/second.txt"), loop).result().size == 23
            await asyncio.to_thread(eventually, new_size, "the new version's size")
            async with sftp.open("/seen/second.txt", "rb") as fh:
                assert await fh.read() == b"a longer second version"
            out = io.BytesIO()
            ftp.retrbinary("RETR /seen/second.txt", out.write)
            assert out.getvalue() == b"a longer second version"

    try:
        asyncio.run(scenario())
    finally:
        ftp.quit()


def test_listings_of_an_unchanged_folder_cost_no_request(world: World) -> None:
    """No freshness rule of the servers' own: while the event stream says nothing changed, LIST and
    readdir answer from the filesystem's cache (they used to re-list from Box every time)."""
    other = world.other("alice")
    other.pipe_file("quiet/x.txt", b"x")
    ftp = ftp_login(world, "alice")

    async def scenario() -> None:
        async with sftp_connect(world, "alice") as conn, conn.start_sftp_client() as sftp:
            await asyncio.to_thread(eventually, lambda: ftp.nlst("/quiet") == ["x.txt"], "quiet/x.txt")
            assert "x.txt" in await sftp.listdir("/quiet")
            await asyncio.sleep(1.0)  # the events of the change above have been applied
            start = time.monotonic()
            for _ in range(3):
                assert ftp.nlst("/quiet") == ["x.txt"]
                assert "x.txt" in await sftp.listdir("/quiet")
            listings = [r for r in world.emu.request_log.records
                        if r.started >= start and r.route == "/folders/{folder_id}/items"]
            assert listings == []

    try:
        asyncio.run(scenario())
    finally:
        ftp.quit()


def test_one_long_poll_per_active_box_user(world: World) -> None:
    """alice and carol are two logins of one Box user, bob another: two long polls, not one per login."""
    ftps = [ftp_login(world, login) for login in ("alice", "carol", "bob")]

    async def scenario() -> None:
        for ftp in ftps:
            ftp.nlst(".")  # a listing starts the Box user's watcher (if not running yet)
        async with (sftp_connect(world, "alice") as a, a.start_sftp_client() as sa,
                    sftp_connect(world, "carol") as c, c.start_sftp_client() as sc):
            await sa.listdir(".")
            await sc.listdir(".")
            await asyncio.to_thread(eventually, lambda: len(held_long_polls(world)) == 2, "two held long polls")
            users = {world.box_ids["alice"], world.box_ids["bob"]}
            # this emulator's watchers only: other tests' emulators number their users the same way
            watchers = [w for w in active_watchers() if w.transport.as_user_id in users
                        and w.transport.endpoints.base_url == world.emu.base_urls["base_url"]]
            assert len(watchers) == 2 and all(w.running for w in watchers)
            assert len(world.filesystems.all()) == 2  # one filesystem per Box user, shared by both servers
            for _ in range(10):  # and it stays so (re-sent polls replace, never add)
                assert len(held_long_polls(world)) <= 2
                await asyncio.sleep(0.05)

    try:
        asyncio.run(scenario())
    finally:
        for ftp in ftps:
            ftp.quit()


# ----------------------------------------------------------------------------- pinned reads
def test_ftp_retr_of_a_file_replaced_midway_sends_the_old_version_whole(world: World) -> None:
    other = world.other("alice")
    old, new = os.urandom(8 * MiB + 123), os.urandom(2 * MiB)
    other.pipe_file("retr.bin", old)
    ftp = ftp_login(world, "alice")
    eventually(lambda: "retr.bin" in ftp.nlst("."), "retr.bin listed")
    got = io.BytesIO()
    replaced_at: list[float] = []

    def sink(chunk: bytes) -> None:
        if not replaced_at:  # the first bytes arrived: another client uploads a new version now
            other.pipe_file("retr.bin", new)
            replaced_at.append(time.monotonic())
        got.write(chunk)

    try:
        reply = retr_slowly(ftp, "retr.bin", sink)
        assert reply.startswith("226"), reply
        assert sha1(got.getvalue()) == sha1(old)
        # the test did what it says: the server fetched content after the new version had landed
        assert content_gets_since(world, replaced_at[0]), "the whole file was read before the replacement"
        eventually(lambda: served_size(world, "alice", "retr.bin")() == len(new), "the new version")
        out = io.BytesIO()
        ftp.retrbinary("RETR retr.bin", out.write)  # a RETR started now gets the new version
        assert sha1(out.getvalue()) == sha1(new)
    finally:
        ftp.quit()


def test_ftp_retr_of_a_file_deleted_midway_sends_it_whole_or_answers_an_error(world: World) -> None:
    """A RETR that started before the delete ends with all of the old bytes (the download URL it holds
    still serves that version, as an unlinked file stays readable on POSIX) or with an error reply:
    never "226 Transfer complete" after a short file."""
    other = world.other("alice")
    old = os.urandom(6 * MiB)
    other.pipe_file("gone.bin", old)
    ftp = ftp_login(world, "alice")
    eventually(lambda: "gone.bin" in ftp.nlst("."), "gone.bin listed")
    got = io.BytesIO()

    def sink(chunk: bytes) -> None:
        if not got.tell():
            other.rm_file("gone.bin")
        got.write(chunk)

    try:
        try:
            reply = retr_slowly(ftp, "gone.bin", sink)
        except ftplib.Error as err:  # 4xx/5xx: the client knows the file is incomplete
            assert str(err)[:1] in "45", err
            assert len(got.getvalue()) < len(old) and old.startswith(got.getvalue())
        else:
            assert reply.startswith("226") and sha1(got.getvalue()) == sha1(old), reply
    finally:
        ftp.close()


def test_sftp_read_of_a_file_replaced_midway_gets_the_old_version_whole(world: World) -> None:
    other = world.other("bob")
    old, new = os.urandom(5 * MiB + 7), os.urandom(3 * MiB)
    other.pipe_file("pinned.bin", old)
    eventually(lambda: served_size(world, "bob", "pinned.bin")() == len(old), "pinned.bin")

    async def scenario() -> None:
        async with sftp_connect(world, "bob") as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("pinned.bin", "rb") as fh:
                head = await fh.read(BLOCK // 2)
                await asyncio.to_thread(other.pipe_file, "pinned.bin", new)
                replaced = time.monotonic()
                rest = await fh.read()
            assert sha1(head + rest) == sha1(old)
            assert content_gets_since(world, replaced), "the whole file was read before the replacement"
            await asyncio.to_thread(eventually, lambda: served_size(world, "bob", "pinned.bin")() == len(new),
                                    "the new version")
            async with sftp.open("pinned.bin", "rb") as fh:  # opened after the change: the new version
                assert sha1(await fh.read()) == sha1(new)
            # deleted while open: the old version whole (its download URL still serves it) or an error,
            # never a short or mixed file
            await asyncio.to_thread(other.pipe_file, "pinned.bin", old)
            await asyncio.to_thread(eventually, lambda: served_size(world, "bob", "pinned.bin")() == len(old),
                                    "the third version")
            async with sftp.open("pinned.bin", "rb") as fh:
                assert await fh.read(BLOCK // 2) == old[:BLOCK // 2]
                await asyncio.to_thread(other.rm_file, "pinned.bin")
                try:
                    tail = await fh.read(4 * MiB, BLOCK * 2)
                except asyncssh.SFTPError:
                    pass
                else:
                    assert tail == old[BLOCK * 2:BLOCK * 2 + 4 * MiB]

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- parallel clients
@pytest.mark.parametrize("run", range(5))
@pytest.mark.parametrize("faults", [0.0, 0.15], ids=["clean", "faults15"])
def test_twenty_parallel_sftp_clients_every_upload_reads_back(world: World, faults: float, run: int) -> None:
    folder = f"par-{int(faults * 100)}-{run}"
    payloads = {i: os.urandom(8 * KiB + 97 * i) for i in range(20)}

    async def client(i: int) -> None:
        login = "alice" if i % 2 else "bob"
        async with sftp_connect(world, login) as conn, conn.start_sftp_client() as sftp:
            with_folder = f"/{folder}"
            if not await sftp.exists(with_folder):
                try:
                    await sftp.mkdir(with_folder)
                except asyncssh.SFTPError:  # another client of this Box user made it meanwhile
                    pass
            name = f"{with_folder}/up-{i}.bin"
            async with sftp.open(name, "wb") as fh:
                await fh.write(payloads[i])
            assert f"up-{i}.bin" in await sftp.listdir(with_folder)
            async with sftp.open(name, "rb") as fh:
                assert sha1(await fh.read()) == sha1(payloads[i]), name

    async def scenario() -> None:
        results = await asyncio.gather(*(client(i) for i in range(20)), return_exceptions=True)
        failed = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
        assert not failed, failed

    with faults_cleared(world.emu) as inject:
        if faults:
            inject(rate=faults, kinds=("500", "503", "429", "drop", "drop_after"), seed=run, retry_after=0)
        asyncio.run(scenario())
    for i, data in payloads.items():  # what Box holds, through clients that share no cache with the server
        login = "alice" if i % 2 else "bob"
        assert sha1(world.other(login).cat_file(f"{folder}/up-{i}.bin")) == sha1(data)
