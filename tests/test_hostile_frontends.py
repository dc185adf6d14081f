"""Hostile names through the file servers (red team, issue 18): a name an FTP client gives is a name.

The servers built their filesystems with ``id_paths`` on, so at a user's Box root the names ``id:N`` and
(case-insensitively) ``ID:N`` addressed *item N* wherever it is: ``RETR id:N`` read a file in another
folder and ``DELE ID:N`` deleted it, while a file literally called ``id:N`` could not be reached. The
documentation names ``id_paths=False`` as the right choice for programs that pass names through.
Real ftplib client, real server on 127.0.0.1, the emulator behind it.
"""

from __future__ import annotations

import ftplib
import io
from typing import Any

import pytest
from servers_support import PASSWORDS, make_backend, write_users_file

from boxfs.servers.ftp import start_ftp_server

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
