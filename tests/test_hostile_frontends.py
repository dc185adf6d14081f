"""Hostile names through the file servers (red team, issue 18): a name an FTP client gives is a name.

The servers built their filesystems with ``id_paths`` on, so at a user's Box root the names ``id:N`` and
(case-insensitively) ``ID:N`` addressed *item N* wherever it is: ``RETR id:N`` read a file in another
folder and ``DELE ID:N`` deleted it, while a file literally called ``id:N`` could not be reached. The
documentation names ``id_paths=False`` as the right choice for programs that pass names through.
Real ftplib client, real server on 127.0.0.1, the emulator behind it.

Also (red team 2), the frontends tried as hostile users and real clients would: ``boxfs sync``/``check``
with trees Box cannot hold as they are, SFTP/FTP renames and uploads a client should not be able to turn
into losses, killed clients, login throttling's memory. Everything runs against the emulator over real
HTTP, with real clients (asyncssh, ftplib, curl, real processes) where there is a protocol.
"""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from servers_support import PASSWORDS, make_backend, write_users_file
from test_sync import _write

from boxfs.servers.ftp import start_ftp_server
from boxfs.servers.sftp import start_sftp_server
from boxfs.servers.throttle import LoginLocked, LoginThrottle, ThrottlePolicy
from boxfs.sync import BoxSide, LocalSide, check, sync

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def env(tmp_path_factory: Any) -> Any:
    tmp = tmp_path_factory.mktemp("ftp-hostile")
    with make_backend(tmp) as backend:
        if backend.kind != "emulator":
            pytest.skip("needs the Box emulator")
        users = write_users_file(tmp / "users.toml", backend)
        with start_ftp_server(users, backend.factory, auth_failed_delay=0.05) as server:
            yield backend, server


def _login(server: Any, login: str) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(server.host, server.port, timeout=60)
    ftp.login(login, PASSWORDS[login])
    return ftp


def test_ftp_names_like_box_ids_are_literal(env: Any) -> None:
    backend, server = env
    box = backend.inspect(backend.box_users["bob"])
    box.pipe("deep/precious.txt", b"PRECIOUS")
    precious = box.info("deep/precious.txt")["id"]
    ftp = _login(server, "bob")
    try:
        for command in (f"RETR id:{precious}", f"RETR ID:{precious}"):
            with pytest.raises(ftplib.error_perm, match="^550"):
                ftp.retrbinary(command, io.BytesIO().write)
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.delete(f"ID:{precious}")
        # a file literally named like an id is an ordinary name at the root
        ftp.storbinary(f"STOR id:{precious}", io.BytesIO(b"literal"))
        out = io.BytesIO()
        ftp.retrbinary(f"RETR id:{precious}", out.write)
        assert out.getvalue() == b"literal"
        assert f"id:{precious}" in ftp.nlst()
        ftp.delete(f"id:{precious}")
    finally:
        ftp.quit()
    after = backend.inspect(backend.box_users["bob"])
    assert after.cat("deep/precious.txt") == b"PRECIOUS"
    assert "deep" in after.ls("", detail=False)


def _fuse_missing() -> str | None:
    import os
    import shutil

    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        return "no FUSE here (/dev/fuse, fusermount3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy/libfuse3 unavailable: {exc}"
    return None


@pytest.mark.skipif(_fuse_missing() is not None, reason=str(_fuse_missing()))
def test_boxfs_mount_of_all_files_takes_id_names_literally(emulator: Any, jwt_config: str, make_fs: Any,
                                                           new_user: Any, tmp_path: Any) -> None:
    """``boxfs mount box:// MNT``: ``cat MNT/id:N`` read item N from another folder and ``rm MNT/ID:N``
    deleted it."""
    import os
    import subprocess
    import sys
    import time

    user, _ = new_user("mnthostile")
    box = make_fs(as_user=user)
    box.pipe("deep/precious.txt", b"PRECIOUS")
    precious = box.info("deep/precious.txt")["id"]
    config = tmp_path / "config.json"
    config.write_text(jwt_config)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "boxfs", "--config", str(config), "--base-url", emulator.url,
                             "--as-user", user, "mount", "box://", str(mnt), "--foreground"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "boxfs mount did not mount within 30 s"
            time.sleep(0.1)
        for name in (f"id:{precious}", f"ID:{precious}"):
            with pytest.raises(FileNotFoundError):
                (mnt / name).read_bytes()
            with pytest.raises(FileNotFoundError):
                os.unlink(mnt / name)
        (mnt / f"id:{precious}").write_bytes(b"literal")
        assert (mnt / f"id:{precious}").read_bytes() == b"literal"
        assert f"id:{precious}" in os.listdir(mnt)
        assert (mnt / "deep" / "precious.txt").read_bytes() == b"PRECIOUS"
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False, capture_output=True)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    after = make_fs(as_user=user, id_paths=False)
    assert after.cat("deep/precious.txt") == b"PRECIOUS" and after.cat(f"id:{precious}") == b"literal"



# ------------------------------------------------------------------------------------------ sync / check
def test_sync_refuses_names_that_differ_only_in_case(make_fs: Callable[..., Any], tmp_path: Path,
                                                     new_user: Callable[..., tuple[str, str]]) -> None:
    """``A.txt`` and ``a.txt`` locally are one name on Box: copying both kept only the last one, the
    report said both were copied and ``check`` agreed. Now both fail, saying why, and --delete waits."""
    uid, _login = new_user("case")
    src = tmp_path / "src"
    _write(src / "A.txt", b"upper")
    _write(src / "a.txt", b"lower!")
    _write(src / "ok.txt", b"fine")
    fs = make_fs(as_user=uid)
    fs.pipe("dst/extra.txt", b"only on Box")
    report = sync(LocalSide(), str(src), BoxSide(fs), "dst", delete=True)
    assert [a.rel for a in report.copied] == ["ok.txt"]
    failed = dict(report.failed)
    assert {"box://dst/A.txt", "box://dst/a.txt"} <= set(failed)
    assert all("letter case" in failed[p] for p in ("box://dst/A.txt", "box://dst/a.txt"))
    assert report.deleted == []  # a failed copy holds every deletion back
    view = make_fs(as_user=uid)
    assert sorted(view.ls("dst", detail=False)) == ["dst/extra.txt", "dst/ok.txt"]
    verdict = check(LocalSide(), str(src), BoxSide(view), "dst")
    assert not verdict.ok and sorted(verdict.differ) == ["A.txt", "a.txt"]


def test_sync_of_a_tree_with_a_fifo_a_symlink_loop_and_a_linked_folder(
        make_fs: Callable[..., Any], tmp_path: Path, new_user: Callable[..., tuple[str, str]]) -> None:
    """A named pipe hung the sync for ever (reading it blocks), a symlink loop aborted the whole sync,
    and a symlink to a folder became an empty Box folder that ``--delete`` emptied. Each now fails
    alone with its reason; the rest is copied and nothing on Box is deleted."""
    uid, _login = new_user("odd")
    src = tmp_path / "src"
    _write(src / "ok.txt", b"fine")
    os.mkfifo(src / "pipe")
    os.symlink("loop", src / "loop")
    outside = tmp_path / "outside"
    _write(outside / "kept.txt", b"outside the tree")
    os.symlink(outside, src / "linked")
    fs = make_fs(as_user=uid)
    fs.pipe({"dst/linked/old.txt": b"synced when linked was a folder", "dst/pipe": b"an old file"})
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(
        report=sync(LocalSide(), str(src), BoxSide(fs), "dst", delete=True)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "sync hung on a named pipe"
    report = result["report"]
    assert [a.rel for a in report.copied] == ["ok.txt"]
    failed = dict(report.failed)
    assert "regular file" in failed["box://dst/pipe"]
    assert "symbolic links" in failed["box://dst/loop"]
    assert "not followed" in failed["box://dst/linked"]
    assert report.deleted == []
    view = make_fs(as_user=uid)
    assert view.cat_file("dst/linked/old.txt") == b"synced when linked was a folder"
    assert view.cat_file("dst/pipe") == b"an old file"
    verdict = check(LocalSide(), str(src), BoxSide(view), "dst")
    assert not verdict.ok and "pipe" in verdict.differ


def test_sync_to_local_of_a_name_near_the_length_limit(make_fs: Callable[..., Any], tmp_path: Path,
                                                      new_user: Callable[..., tuple[str, str]]) -> None:
    """Box allows 255-character names and so does Linux, but the download went to ``.boxfs-partial-``
    + the name: past 255 bytes, "File name too long" for every long name. The partial name is short now."""
    uid, _login = new_user("long")
    fs = make_fs(as_user=uid)
    long_name = "n" * 251 + ".txt"
    fs.pipe({f"src/{long_name}": b"long", "src/short.txt": b"s"})
    report = sync(BoxSide(fs), "src", LocalSide(), str(tmp_path / "out"))
    assert report.failed == [] and len(report.copied) == 2
    assert (tmp_path / "out" / long_name).read_bytes() == b"long"
    assert sorted(os.listdir(tmp_path / "out")) == sorted([long_name, "short.txt"])


# ------------------------------------------------------------------------------------------ SFTP
@pytest.fixture(scope="module")
def sftp_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("hostile-sftp")
    with make_backend(tmp) as backend:
        users = write_users_file(tmp / "users.toml", backend)
        with start_sftp_server(users, backend.factory) as server, start_ftp_server(users, backend.factory) as ftp:
            yield backend, server, ftp


def _sftp(server: Any, login: str = "alice") -> Any:
    known = asyncssh.import_known_hosts(f"[{server.host}]:{server.port} "
                                        f"{server.host_key.export_public_key().decode()}")
    return asyncssh.connect(server.host, server.port, username=login, password=PASSWORDS[login],
                            client_keys=None, known_hosts=known)


def test_sftp_rename_of_a_folder_into_its_own_subfolder_changes_nothing(sftp_env: Any, unique: str) -> None:
    """posix-rename ``a`` -> ``a/b`` with ``a/b`` an empty folder removed ``a/b`` and then failed at Box;
    now it is refused (EINVAL, "invalid argument") before any change, in any letter case."""
    backend, server, _ftp = sftp_env
    view = backend.inspect(backend.box_users["alice"])
    view.makedirs(f"{unique}/a/b")
    view.pipe(f"{unique}/a/f.txt", b"data")
    before = view.info(f"{unique}/a/b")["id"]

    async def scenario() -> None:
        async with _sftp(server) as conn, conn.start_sftp_client() as sftp:
            for target in ("a/b", "A/B", "a/b/c"):
                with pytest.raises(asyncssh.SFTPError, match="Invalid name or argument"):
                    await sftp.posix_rename(f"{unique}/a", f"{unique}/{target}")
                with pytest.raises(asyncssh.SFTPError, match="Invalid name or argument"):
                    await sftp.rename(f"{unique}/a", f"{unique}/{target}")

    asyncio.run(scenario())
    view = backend.inspect(backend.box_users["alice"])
    assert sorted(view.ls(f"{unique}/a", detail=False)) == [f"{unique}/a/b", f"{unique}/a/f.txt"]
    assert view.info(f"{unique}/a/b")["id"] == before  # the same folder, not one made again


def test_a_new_name_never_brings_its_folders_into_being(sftp_env: Any, unique: str) -> None:
    """An upload or a rename to ``typo/deep/name`` made the folders ``typo/deep`` (and one under a
    *file* name made that name a folder): POSIX and every SFTP/FTP server answer "no such file".
    Now refused before anything is written, over SFTP (asyncssh) and FTP (ftplib)."""
    backend, server, ftp_server = sftp_env
    view = backend.inspect(backend.box_users["alice"])
    view.pipe(f"{unique}/f.txt", b"data")

    async def scenario() -> None:
        async with _sftp(server) as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.posix_rename(f"{unique}/f.txt", f"{unique}/typo/deep/f.txt")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                await sftp.rename(f"{unique}/f.txt", f"{unique}/f.txt/inside.txt")
            with pytest.raises(asyncssh.SFTPNoSuchFile):
                async with sftp.open(f"{unique}/nodir/new.txt", "wb") as fh:
                    await fh.write(b"new")

    asyncio.run(scenario())
    ftp = ftplib.FTP()
    ftp.connect(ftp_server.host, ftp_server.port, timeout=60)
    ftp.login("alice", PASSWORDS["alice"])
    try:
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.storbinary(f"STOR /{unique}/ftpdir/new.txt", io.BytesIO(b"new"))
        ftp.sendcmd(f"RNFR /{unique}/f.txt")
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.sendcmd(f"RNTO /{unique}/typo2/f.txt")
    finally:
        ftp.close()
    view = backend.inspect(backend.box_users["alice"])
    assert view.ls(unique, detail=False) == [f"{unique}/f.txt"]
    assert view.cat_file(f"{unique}/f.txt") == b"data"


#: A client process that sends the first MB of an upload, says so, and waits to be killed.
_HALF_UPLOAD = """
import ftplib, sys, time
ftp = ftplib.FTP()
ftp.connect(sys.argv[1], int(sys.argv[2]), timeout=60)
ftp.login("alice", sys.argv[3])
ftp.voidcmd("TYPE I")
data = ftp.transfercmd("STOR " + sys.argv[4])
data.sendall(b"x" * (1 << 20))
print("sent", flush=True)
time.sleep(600)
"""


def test_ftp_client_killed_mid_upload_stores_nothing(sftp_env: Any, unique: str, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """An FTP client killed (SIGKILL) in the middle of an upload: its data connection ends like a
    finished upload, and the truncated file was stored in Box (every time, over a new name and over an
    existing file). The server now sees that the control connection went too, and stores nothing."""
    backend, _server, ftp_server = sftp_env
    caplog.set_level(logging.INFO, logger="boxfs")
    ftp = ftplib.FTP()
    ftp.connect(ftp_server.host, ftp_server.port, timeout=60)
    ftp.login("alice", PASSWORDS["alice"])
    ftp.mkd(f"/{unique}")
    ftp.storbinary(f"STOR /{unique}/old.bin", io.BytesIO(b"the previous version"))
    for name in ("new.bin", "old.bin"):
        client = subprocess.Popen([sys.executable, "-c", _HALF_UPLOAD, ftp_server.host, str(ftp_server.port),
                                   PASSWORDS["alice"], f"/{unique}/{name}"], stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None and client.stdout.readline() == "sent\n"
        client.send_signal(signal.SIGKILL)
        client.wait()
        for _ in range(600):  # the server notices the end of both connections asynchronously
            if f"upload of /{unique}/{name} aborted" in caplog.text:
                break
            time.sleep(0.05)
    assert f"upload of /{unique}/new.bin aborted; nothing stored" in caplog.text
    view = backend.inspect(backend.box_users["alice"])
    assert view.ls(unique, detail=False) == [f"{unique}/old.bin"]
    assert view.info(f"{unique}/old.bin")["sha1"] == hashlib.sha1(b"the previous version").hexdigest()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    with big.open("rb") as fh:  # a client that waits for the reply: stored as before
        ftp.storbinary(f"STOR /{unique}/old.bin", fh)
    ftp.quit()
    view = backend.inspect(backend.box_users["alice"])
    assert view.info(f"{unique}/old.bin")["sha1"] == hashlib.sha1(big.read_bytes()).hexdigest()


def test_two_sessions_renaming_onto_one_name_lose_nothing(sftp_env: Any, unique: str) -> None:
    """Two SFTP sessions posix-rename ``x`` and ``y`` onto the existing ``t`` at once: the loser's file
    was left under a hidden ``.boxfs-...-t`` name, gone from where the client had it. Now one rename
    wins and the other fails with its source back in place: every byte is under a name the user knows."""
    backend, server, _ftp = sftp_env

    async def scenario() -> None:
        async with _sftp(server) as c1, _sftp(server) as c2:
            async with c1.start_sftp_client() as s1, c2.start_sftp_client() as s2:
                await s1.mkdir(unique)
                for i in range(4):
                    for name in ("t", "x", "y"):
                        async with s1.open(f"{unique}/{name}{i}", "wb") as fh:
                            await fh.write(f"{name}{i}".encode())
                    await asyncio.gather(s1.posix_rename(f"{unique}/x{i}", f"{unique}/t{i}"),
                                         s2.posix_rename(f"{unique}/y{i}", f"{unique}/t{i}"), return_exceptions=True)

    asyncio.run(scenario())
    view = backend.inspect(backend.box_users["alice"])
    held = {e["name"].rsplit("/", 1)[-1]: view.cat_file(e["name"]).decode() for e in view.ls(unique, detail=True)}
    assert not [n for n in held if n.startswith(".boxfs-")], held
    for i in range(4):
        assert held[f"t{i}"] in (f"x{i}", f"y{i}")  # one of the two renames won
        loser = "y" if held[f"t{i}"] == f"x{i}" else "x"
        assert held.get(f"{loser}{i}") in (None, f"{loser}{i}")  # failed: back home (or replaced in turn)


# ------------------------------------------------------------------------------------------ login throttling
def test_login_throttle_memory_is_bounded_under_many_addresses_and_logins() -> None:
    """Addresses and logins are the guesser's to choose (an IPv6 /64, a new login per guess): the records
    were kept an hour whatever their number, and past 10,000 every failure scanned them all under the
    lock. Now at most ``max_tracked`` stay, least recently failed first out, and a recent lockout holds."""
    now = [0.0]
    assert LoginThrottle().max_tracked == 100_000
    throttle = LoginThrottle(ThrottlePolicy(address_lockout_after=3), clock=lambda: now[0], max_tracked=1000)
    for _n in range(3):
        throttle.failed("10.9.9.9", "alice", "test")
    for n in range(400):  # a scan from many addresses, each with a made-up login, within the hour
        now[0] += 0.001
        throttle.failed(f"2001:db8::{n:x}", f"made-up-{n}", "test")
    with pytest.raises(LoginLocked, match="10.9.9.9"):  # fewer than max_tracked records later: still locked
        throttle.check("10.9.9.9", "bob")
    assert "tracked=802" in repr(throttle)
    for n in range(20_000):
        now[0] += 0.001
        throttle.failed(f"2001:db8:1::{n:x}", f"made-up-{n}", "test")
        assert len(throttle._records) <= 1000


def test_sync_of_a_file_written_to_while_it_uploads_is_reported(
        make_fs: Callable[..., Any], tmp_path: Path, new_user: Callable[..., tuple[str, str]]) -> None:
    """A log file appended to while sync read it: Box got a mix of what was read before and after, and
    the report said "copied". Now that file fails with "changed while being copied" (and holds
    --delete back); the next sync copies it whole."""
    uid, _login = new_user("live")
    src = tmp_path / "src"
    _write(src / "live.log", os.urandom(3 << 20))
    fs = make_fs(as_user=uid)
    fs.pipe("dst/extra.txt", b"only on Box")
    written: list[int] = []

    def writer_during_upload(n: int) -> None:  # the sync's progress callback: bytes are being sent now
        if not written:
            written.append(n)
            with open(src / "live.log", "ab") as fh:
                fh.write(b"a new line\n")

    report = sync(LocalSide(), str(src), BoxSide(fs), "dst", delete=True, advance=writer_during_upload)
    assert written and report.copied == [] and report.deleted == []
    assert "changed while being copied" in dict(report.failed)["box://dst/live.log"]
    again = sync(LocalSide(), str(src), BoxSide(make_fs(as_user=uid)), "dst")
    assert [a.rel for a in again.copied] == ["live.log"] and again.failed == []
    view = make_fs(as_user=uid)
    assert view.info("dst/live.log")["sha1"] == hashlib.sha1((src / "live.log").read_bytes()).hexdigest()
