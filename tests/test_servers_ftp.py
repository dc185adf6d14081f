"""FTP(S) server: real ftplib clients against a real server on 127.0.0.1 (Box emulator backend)."""

from __future__ import annotations

import ftplib
import hashlib
import io
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

import pytest
from servers_support import PASSWORDS, emulator_factory, make_backend, self_signed_cert, write_users_file
from support import injected_faults

from boxfs.frontend.stat import info_mtime
from boxfs.servers.common import SessionLimits
from boxfs.servers.ftp import start_ftp_server
from boxfs.upload.spoolfolder import SPOOL_SUFFIX

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ftp")
    with make_backend(tmp) as backend:
        users = write_users_file(tmp / "users.toml", backend)
        cert, key = self_signed_cert(tmp)
        with (
            start_ftp_server(users, backend.factory, auth_failed_delay=0.05) as plain,
            start_ftp_server(
                users, backend.factory, certfile=cert, keyfile=key, auth_failed_delay=0.05
            ) as tls,
        ):
            yield backend, plain, tls


def connect(handle, login: str, password: str | None = None) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(handle.host, handle.port, timeout=60)
    ftp.login(login, PASSWORDS[login] if password is None else password)
    return ftp


def upload(ftp: ftplib.FTP, name: str, data: bytes) -> str:
    return ftp.storbinary(f"STOR {name}", io.BytesIO(data))


def download(ftp: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write, rest=rest)
    return out.getvalue()


def box_names(backend, login: str, folder: str = "") -> set[str]:
    fs = backend.inspect(backend.box_users[login])
    return {e["name"].rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(folder, detail=True)}


def test_wrong_password_and_unknown_login_are_refused(env, caplog):
    _backend, plain, _tls = env
    caplog.set_level(logging.DEBUG)  # everything, pyftpdlib's command log included
    connect(plain, "alice").quit()
    for login, password in (("alice", "not-her-password"), ("mallory", "whatever-1")):
        ftp = ftplib.FTP()
        ftp.connect(plain.host, plain.port, timeout=30)
        with pytest.raises(ftplib.error_perm, match="^530"):
            ftp.login(login, password)
        ftp.close()
    # A refused session cannot do anything.
    ftp = ftplib.FTP()
    ftp.connect(plain.host, plain.port, timeout=30)
    with pytest.raises(ftplib.error_perm, match="^530"):
        ftp.sendcmd("PWD")
    ftp.close()
    text = caplog.text
    assert "refused" in text and "mallory" in text
    assert "not-her-password" not in text and "whatever-1" not in text and PASSWORDS["alice"] not in text
    assert "PASS ******" in text  # the command log is on, and masks the password


def test_login_whose_box_user_is_unusable_is_refused(env, caplog):
    _backend, plain, _tls = env
    caplog.set_level(logging.INFO, logger="boxfs")
    ftp = ftplib.FTP()
    ftp.connect(plain.host, plain.port, timeout=30)
    with pytest.raises(ftplib.error_perm, match="^530 Box account unavailable"):
        ftp.login("ghost", PASSWORDS["bob"])
    ftp.close()
    assert "cannot act as Box user ghost" in caplog.text
    connect(plain, "bob").quit()  # the server is fine


def test_two_users_upload_list_download_rename_delete(env, caplog):
    backend, plain, _tls = env
    caplog.set_level(logging.INFO, logger="boxfs")
    alice = connect(plain, "alice")
    bob = connect(plain, "bob")
    try:
        assert upload(alice, "report.txt", b"alice's report\n").startswith("226")
        assert upload(bob, "notes.txt", b"bob's notes\n").startswith("226")
        alice.mkd("projects")
        alice.cwd("projects")
        assert alice.pwd() == "/projects"
        upload(alice, "plan.md", b"# plan\n" * 100)
        alice.cwd("/")

        # Listings: NLST, LIST and MLSD agree; each user sees only their own Box root.
        assert {"report.txt", "projects"} <= set(alice.nlst())
        assert "notes.txt" not in alice.nlst()
        assert "report.txt" not in bob.nlst() and "notes.txt" in bob.nlst()
        lines: list[str] = []
        alice.retrlines("LIST", lines.append)
        by_name = {line.split()[-1]: line for line in lines}
        assert by_name["projects"].startswith("d") and by_name["report.txt"].startswith("-")
        assert " 15 " in by_name["report.txt"]
        facts = dict(alice.mlsd("projects", facts=["type", "size", "modify"]))
        assert facts["plan.md"]["type"] == "file" and facts["plan.md"]["size"] == "700"

        # Downloads, SIZE, MDTM.
        assert download(alice, "report.txt") == b"alice's report\n"
        assert download(alice, "/projects/plan.md") == b"# plan\n" * 100
        assert alice.size("report.txt") == 15
        assert alice.sendcmd("MDTM report.txt").startswith("213 ")
        with pytest.raises(ftplib.error_perm, match="^550"):
            download(bob, "report.txt")

        # Rename (file and across folders), then delete and remove the directory.
        alice.rename("report.txt", "final.txt")
        alice.rename("final.txt", "projects/final.txt")
        assert "final.txt" in alice.nlst("projects")
        with pytest.raises(ftplib.error_perm, match="^550"):
            alice.size("report.txt")
        with pytest.raises(ftplib.error_perm, match="^550"):
            alice.rmd("projects")  # not empty
        alice.delete("projects/final.txt")
        alice.delete("projects/plan.md")
        alice.rmd("projects")
        assert "projects" not in alice.nlst()
        with pytest.raises(ftplib.error_perm, match="^550"):
            alice.delete("projects/plan.md")

        # What Box holds, looked at directly as each Box user.
        assert "notes.txt" in box_names(backend, "bob")
        assert "projects" not in box_names(backend, "alice")
        assert "notes.txt" not in box_names(backend, "alice")
        bob.delete("notes.txt")
    finally:
        alice.quit()
        bob.quit()
    if backend.kind == "emulator":
        # Every upload acted as the login's own Box user (As-User), and all the per-user
        # filesystems shared one app token.
        log = backend.emulator.request_log
        uploads = [r for r in log.records if r.method == "POST" and r.host == "upload"]
        assert {r.as_user for r in uploads} == {backend.box_ids["alice"], backend.box_ids["bob"]}
        assert log.count(route="/oauth2/token") == 1
    assert "ftp login alice" in caplog.text and "STOR /report.txt completed" in caplog.text
    assert PASSWORDS["alice"] not in caplog.text


def test_names_with_glob_characters_are_literal(env):
    backend, plain, _tls = env
    ftp = connect(plain, "bob")
    try:
        for name in ("b*.txt", "b1.txt", "report [1].txt", "café ü ß.txt"):
            upload(ftp, name, name.encode())
        assert "café ü ß.txt" in ftp.nlst()
        assert download(ftp, "café ü ß.txt") == "café ü ß.txt".encode()
        ftp.delete("café ü ß.txt")
        ftp.delete("b*.txt")  # must not delete b1.txt too
        ftp.rename("report [1].txt", "report [2] final?.txt")
        names = box_names(backend, "bob")
        assert {"b1.txt", "report [2] final?.txt"} <= names
        assert not {"b*.txt", "report [1].txt"} & names
        assert download(ftp, "report [2] final?.txt") == b"report [1].txt"
        ftp.delete("b1.txt")
        ftp.delete("report [2] final?.txt")
    finally:
        ftp.quit()


def test_rest_offset_download_and_mfmt(env):
    backend, plain, _tls = env
    ftp = connect(plain, "bob")
    try:
        data = bytes(range(256)) * 4096  # 1 MiB
        upload(ftp, "ranged.bin", data)
        assert download(ftp, "ranged.bin", rest=1000) == data[1000:]
        assert download(ftp, "ranged.bin", rest=len(data) - 5) == data[-5:]
        with pytest.raises(ftplib.error_perm, match="^554"):
            download(ftp, "ranged.bin", rest=len(data) + 1)
        # Box cannot resume or append to an upload: refused, and the file is left intact.
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.storbinary("STOR ranged.bin", io.BytesIO(b"tail"), rest=len(data))
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.storbinary("APPE ranged.bin", io.BytesIO(b"tail"))
        assert ftp.size("ranged.bin") == len(data)

        resp = ftp.sendcmd("MFMT 20200102030405 ranged.bin")
        assert resp.startswith("213 Modify=20200102030405")
        assert ftp.sendcmd("MDTM ranged.bin") == "213 20200102030405"
        info = backend.inspect(backend.box_users["bob"]).info("ranged.bin")
        assert info_mtime(info) == datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
        # The content is unchanged by setting the time.
        assert download(ftp, "ranged.bin") == data
        ftp.delete("ranged.bin")
    finally:
        ftp.quit()


def test_paths_outside_home_are_refused(env):
    backend, plain, _tls = env
    alice = connect(plain, "alice")
    carol = connect(plain, "carol")  # same Box user as alice, confined to /carol-home
    try:
        upload(alice, "secret.txt", b"alice only")
        upload(carol, "mine.txt", b"carol's")
        assert "carol-home" in alice.nlst()
        assert download(alice, "carol-home/mine.txt") == b"carol's"
        assert carol.nlst() == ["mine.txt"]
        assert carol.pwd() == "/"
        for path in ("../secret.txt", "/../secret.txt", "../../secret.txt", "/secret.txt", "..//secret.txt"):
            with pytest.raises(ftplib.error_perm, match="^550"):
                download(carol, path)
            with pytest.raises(ftplib.error_perm, match="^550"):
                carol.size(path)
        for path in ("..", "/..", "../carol-home/../.."):
            with pytest.raises(ftplib.error_perm, match="^550"):
                carol.cwd(path)
            assert carol.pwd() == "/"
        with pytest.raises(ftplib.error_perm, match="^550"):
            upload(carol, "../escaped.txt", b"x")
        with pytest.raises(ftplib.error_perm, match="^550"):
            carol.delete("../secret.txt")
        with pytest.raises(ftplib.error_perm, match="^550"):
            carol.rename("mine.txt", "../stolen.txt")
        with pytest.raises(ftplib.error_perm, match="^550"):
            carol.mkd("../newdir")
        with pytest.raises(ftplib.error_perm, match="^550"):
            carol.nlst("..")
        names = box_names(backend, "alice")
        assert "secret.txt" in names
        assert not {"escaped.txt", "stolen.txt", "newdir"} & names
        assert download(alice, "secret.txt") == b"alice only"
        alice.delete("secret.txt")
        carol.delete("mine.txt")
    finally:
        alice.quit()
        carol.quit()


def test_read_only_user(env):
    _backend, plain, _tls = env
    bob = connect(plain, "bob")
    dave = ftplib.FTP()
    dave.connect(plain.host, plain.port, timeout=30)
    dave.login("dave", PASSWORDS["alice"])  # dave: read-only over bob's Box user
    try:
        upload(bob, "shared.txt", b"read me")
        assert download(dave, "shared.txt") == b"read me"
        for action in (
            lambda: upload(dave, "new.txt", b"x"),
            lambda: dave.delete("shared.txt"),
            lambda: dave.mkd("d"),
            lambda: dave.rename("shared.txt", "x.txt"),
        ):
            with pytest.raises(ftplib.error_perm, match="^550"):
                action()
        assert "shared.txt" in bob.nlst() and "new.txt" not in bob.nlst()
        bob.delete("shared.txt")
    finally:
        bob.quit()
        dave.quit()


def test_large_stor_is_one_box_file_with_right_sha1(env):
    backend, plain, _tls = env
    data = os.urandom(60 * 1024 * 1024)
    sha1 = hashlib.sha1(data).hexdigest()
    log = backend.emulator.request_log if backend.emulator else None
    sessions = log.count(method="POST", route="/files/upload_sessions") if log else 0
    commits = (
        log.count(method="POST", route="/files/upload_sessions/{upload_session_id}/commit") if log else 0
    )
    ftp = connect(plain, "alice")
    try:
        assert upload(ftp, "big.bin", data).startswith("226")
        assert ftp.size("big.bin") == len(data)
    finally:
        ftp.quit()
    fs = backend.inspect(backend.box_users["alice"])
    entries = [e for e in fs.ls("", detail=True) if e["name"].rstrip("/").endswith("big.bin")]
    assert len(entries) == 1 and entries[0]["size"] == len(data)
    if backend.kind == "emulator":
        assert entries[0]["sha1"] == sha1
        # Above 25 MB Box needs a chunked upload session: one session, committed once.
        assert log.count(method="POST", route="/files/upload_sessions") == sessions + 1
        assert (
            log.count(method="POST", route="/files/upload_sessions/{upload_session_id}/commit") == commits + 1
        )
    else:
        with fs.open("big.bin", "rb") as fh:
            assert hashlib.sha1(fh.read()).hexdigest() == sha1
    fs.rm("big.bin")


def test_ten_concurrent_sessions(env):
    _backend, plain, _tls = env
    errors: list[BaseException] = []
    barrier = threading.Barrier(10)

    def session(i: int) -> None:
        login = "alice" if i % 2 else "bob"
        try:
            ftp = connect(plain, login)
            barrier.wait(timeout=60)  # all ten logged in at the same time
            payload = f"session {i}\n".encode() * (1000 + i)
            name = f"concurrent-{i}.txt"
            upload(ftp, name, payload)
            assert name in ftp.nlst()
            assert download(ftp, name) == payload
            ftp.delete(name)
            ftp.quit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_failed_box_upload_is_reported_and_stores_nothing(env, tmp_path):
    backend, _plain, _tls = env
    no_retry = emulator_factory(backend, retry=1)
    emu = backend.emulator
    users = write_users_file(tmp_path / "users.toml", backend)
    with start_ftp_server(users, no_retry, auth_failed_delay=0.05) as server:
        ftp = connect(server, "alice")
        try:
            with injected_faults(emu, rate=1.0, kinds=("500",), route=r"/files/content$", method="POST"):
                with pytest.raises(ftplib.error_temp, match="^451 Upload failed"):
                    upload(ftp, "doomed.txt", b"never stored")
            assert "doomed.txt" not in box_names(backend, "alice")
            upload(ftp, "fine.txt", b"stored")  # the session is still usable
            assert download(ftp, "fine.txt") == b"stored"
            ftp.delete("fine.txt")
        finally:
            ftp.quit()


def test_aborted_stor_stores_nothing(env, caplog):
    backend, plain, _tls = env
    if backend.kind != "emulator":
        pytest.skip("the local stand-in filesystem creates files as they are written, not on close")
    caplog.set_level(logging.INFO, logger="boxfs")
    ftp = connect(plain, "bob")
    try:
        ftp.voidcmd("TYPE I")
        data_conn = ftp.transfercmd("STOR aborted.bin")
        data_conn.sendall(b"y" * 200_000)
        assert ftp.abort().startswith("426")  # ABOR while the data connection is still open
        assert ftp.getresp().startswith("226")  # then the ABOR itself is acknowledged
        data_conn.close()
        for _ in range(50):
            if "upload of /aborted.bin aborted" in caplog.text:
                break
            time.sleep(0.05)
        assert "aborted.bin" not in ftp.nlst()
    finally:
        ftp.quit()
    assert "upload of /aborted.bin aborted; nothing stored" in caplog.text
    assert "aborted.bin" not in box_names(backend, "bob")


def test_explicit_ftps(env):
    backend, _plain, tls = env
    ftp = ftplib.FTP_TLS()
    ftp.connect(tls.host, tls.port, timeout=60)
    ftp.auth()  # AUTH TLS before the password is sent
    ftp.login("bob", PASSWORDS["bob"])
    ftp.prot_p()
    try:
        upload(ftp, "over-tls.txt", b"encrypted in transit")
        assert download(ftp, "over-tls.txt") == b"encrypted in transit"
        assert "over-tls.txt" in box_names(backend, "bob")
        ftp.delete("over-tls.txt")
    finally:
        ftp.quit()


def test_tls_required_refuses_plain_logins(env, tmp_path):
    backend, _plain, _tls = env
    users = write_users_file(tmp_path / "users.toml", backend)
    cert, key = self_signed_cert(tmp_path)
    with start_ftp_server(users, backend.factory, certfile=cert, keyfile=key, tls_required=True) as server:
        ftp = ftplib.FTP()
        ftp.connect(server.host, server.port, timeout=30)
        with pytest.raises(ftplib.error_perm, match="^550 SSL/TLS required"):
            ftp.login("bob", PASSWORDS["bob"])
        ftp.close()
        ftps = ftplib.FTP_TLS()
        ftps.connect(server.host, server.port, timeout=30)
        ftps.login("bob", PASSWORDS["bob"])  # FTP_TLS.login sends AUTH TLS first
        with pytest.raises(ftplib.error_perm, match="^550 SSL/TLS required on the data channel"):
            ftps.nlst()  # data channel not protected
        ftps.close()
        ftps = ftplib.FTP_TLS()
        ftps.connect(server.host, server.port, timeout=30)
        ftps.login("bob", PASSWORDS["bob"])
        ftps.prot_p()
        upload(ftps, "tls-only.txt", b"protected")
        assert "tls-only.txt" in ftps.nlst()
        ftps.delete("tls-only.txt")
        ftps.quit()


def test_passive_port_range_and_active_mode(env, tmp_path):
    backend, _plain, _tls = env
    with socket.socket() as probe:  # a free port to start a small passive range at
        probe.bind(("127.0.0.1", 0))
        first = probe.getsockname()[1]
    users = write_users_file(tmp_path / "users.toml", backend)
    ports = range(first, first + 3)
    with start_ftp_server(users, backend.factory, passive_ports=ports) as server:
        ftp = connect(server, "bob")
        try:
            host, port = ftp.makepasv()
            assert host == "127.0.0.1" and port in ports
            upload(ftp, "passive.txt", b"over PASV")
            ftp.set_pasv(False)  # active mode: the server connects back (PORT)
            assert download(ftp, "passive.txt") == b"over PASV"
            ftp.delete("passive.txt")
        finally:
            ftp.quit()


def test_full_spool_disk_answers_452_and_stores_nothing(env, tmp_path, tiny_disk, caplog):
    backend, _plain, _tls = env
    spooling = emulator_factory(backend, spool_dir=str(tiny_disk), spool_threshold=64 * 1024)
    caplog.set_level(logging.INFO, logger="boxfs")
    users = write_users_file(tmp_path / "users.toml", backend)
    with start_ftp_server(users, spooling) as server:
        ftp = connect(server, "alice")
        ftp.voidcmd("TYPE I")
        data_conn = ftp.transfercmd("STOR too-big.bin")
        try:
            data_conn.sendall(os.urandom(16 * 1024 * 1024))  # the spool disk holds 8 MB
        except OSError:
            pass  # the server may close the data connection while we still send: the reply tells why
        data_conn.close()
        with pytest.raises(ftplib.error_temp, match="^452 No space left"):
            ftp.voidresp()
        assert upload(ftp, "small.bin", b"fits in memory").startswith("226")  # the session goes on
        ftp.delete("small.bin")
        ftp.quit()
    assert "too-big.bin" not in box_names(backend, "alice")
    assert not [p for p in tiny_disk.rglob("*") if p.is_file() and p.stat().st_size], "spool not freed"
    assert "426 None" not in caplog.text


def test_session_limits_and_a_stor_whose_data_never_came(env, tmp_path):
    """FTP applies the server's session limits as SFTP does (a connection queuing transfers it never
    connects holds open files); a STOR the client left before its data connection stores nothing, not an
    empty file over the previous version."""
    backend, _plain, _tls = env
    users = write_users_file(tmp_path / "users.toml", backend)
    fs = backend.inspect(backend.box_users["bob"])
    fs.pipe_file("limits [1]/precious.txt", b"precious")
    with start_ftp_server(users, backend.factory, session_limits=SessionLimits(max_open_files=1)) as server:
        ftp = connect(server, "bob")
        ftp.sendcmd("TYPE I")
        ftp.sendcmd("PASV")
        assert ftp.sendcmd("RETR limits [1]/precious.txt").startswith("150")  # waits for a data connection
        ftp.sendcmd("PASV")
        with pytest.raises(ftplib.error_temp, match=r"^451 too many open files in this session \(limit 1\)"):
            ftp.sendcmd("STOR limits [1]/new.txt")
        ftp.close()
        for name in ("precious.txt", "new.txt"):  # queued uploads, then the client goes away
            ftp = connect(server, "bob")
            ftp.sendcmd("TYPE I")
            ftp.sendcmd("PASV")
            assert ftp.sendcmd(f"STOR limits [1]/{name}").startswith("150")
            ftp.close()
        deadline = time.monotonic() + 30
        while server.server.handler.authorizer.sessions.count("bob") and time.monotonic() < deadline:
            time.sleep(0.02)  # the server saw every connection go
        assert server.server.handler.authorizer.sessions.count("bob") == 0
    fs = backend.inspect(backend.box_users["bob"])
    assert fs.cat_file("limits [1]/precious.txt") == b"precious"
    assert [e.rsplit("/", 1)[-1] for e in fs.ls("limits [1]", detail=False)] == ["precious.txt"]


def test_rein_or_user_drops_a_stor_still_waiting_for_its_data(env, tmp_path):
    """REIN and a new USER flush the session (pyftpdlib's ``flush_account``): a STOR still waiting for
    its data connection is dropped with it, its spool file removed (not left open and locked), the
    file's previous version untouched; the session then goes on."""
    backend, _plain, _tls = env
    users = write_users_file(tmp_path / "users.toml", backend)
    spool = tmp_path / "spool"
    fs = backend.inspect(backend.box_users["bob"])
    fs.pipe_file("rein [1]/precious.txt", b"precious")

    def spooled() -> list:
        return list(spool.rglob(f"*{SPOOL_SUFFIX}"))

    factory = emulator_factory(backend, spool_dir=str(spool))
    with start_ftp_server(users, factory, session_limits=SessionLimits(max_open_files=1)) as server:
        ftp = connect(server, "bob")
        for flush in ("REIN", "USER bob"):
            ftp.sendcmd("TYPE I")
            ftp.sendcmd("PASV")
            assert ftp.sendcmd("STOR rein [1]/precious.txt").startswith("150")  # waits for a data connection
            assert len(spooled()) == 1, "the queued STOR holds a spool file"
            answer = ftp.sendcmd(flush)
            assert answer.startswith("331" if flush.startswith("USER") else "230"), answer
            assert spooled() == [], f"{flush} left the queued upload's spool file"
            if flush == "REIN":
                ftp.login("bob", PASSWORDS["bob"])
            else:
                assert ftp.sendcmd(f"PASS {PASSWORDS['bob']}").startswith("230")
        out = io.BytesIO()
        ftp.retrbinary("RETR rein [1]/precious.txt", out.write)  # the one slot is free
        assert out.getvalue() == b"precious"
        ftp.quit()
    fs = backend.inspect(backend.box_users["bob"])
    assert fs.cat_file("rein [1]/precious.txt") == b"precious"
    assert [e.rsplit("/", 1)[-1] for e in fs.ls("rein [1]", detail=False)] == ["precious.txt"]
