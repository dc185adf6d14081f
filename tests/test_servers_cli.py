"""`boxfs serve ftp|sftp` as a separate process, against the Box emulator, with real clients."""

from __future__ import annotations

import asyncio
import ftplib
import io
import os
import subprocess

import asyncssh
import pytest
from servers_support import BOXFS, free_port, launch_server, stop
from support import admin_app

from boxfs.servers.users import hash_password

pytestmark = pytest.mark.timeout(120)

@pytest.fixture(scope="module")
def box(tmp_path_factory):
    from boxfs.emulator import BoxEmulator

    tmp = tmp_path_factory.mktemp("serve")
    with BoxEmulator() as emu:
        emu.create_user("alice@example.com", name="Alice")
        cfg = admin_app(emu)
        (tmp / "app.json").write_text(cfg)
        (tmp / "users.toml").write_text(
            f'[users.al]\npassword = "{hash_password("al-password-7")}"\n'
            'box_user = "alice@example.com"\nhome = "/transfer"\n'
        )
        yield emu, tmp


def serve(box, protocol: str, *extra: str, config_after: bool = False) -> tuple[subprocess.Popen, int]:
    """Start ``boxfs serve``; the app config given globally (``boxfs --config F serve ...``) or, with
    ``config_after``, in the form issue 8 shows (``boxfs serve ... --config F``)."""
    emu, tmp = box
    port = free_port()
    config = ["--config", str(tmp / "app.json")]
    argv = [BOXFS, *([] if config_after else config), "serve", protocol, "--users", str(tmp / "users.toml"),
            "--host", "127.0.0.1", "--port", str(port), *extra, *(config if config_after else [])]
    return launch_server(argv, port, env=dict(os.environ, BOXFS_BASE_URL=emu.url), cwd=tmp), port


def test_serve_ftp(box):
    emu, _tmp = box
    proc, port = serve(box, "ftp")
    try:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port, timeout=30)
        with pytest.raises(ftplib.error_perm, match="^530"):
            ftp.login("al", "wrong-password-3")
        ftp.close()
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port, timeout=30)
        ftp.login("al", "al-password-7")
        ftp.storbinary("STOR via-cli.txt", io.BytesIO(b"served"))
        assert ftp.nlst() == ["via-cli.txt"]
        ftp.quit()
    finally:
        output = stop(proc)
    assert "ftp login al" in output and "STOR /via-cli.txt completed" in output
    assert "refused" in output
    assert "al-password-7" not in output and "wrong-password-3" not in output
    from boxfs import BoxFileSystem

    fs = BoxFileSystem(
        jwt_config=str(box[1] / "app.json"), as_user="alice@example.com", base_urls=emu.base_urls
    )
    assert fs.cat_file("transfer/via-cli.txt") == b"served"


def test_serve_sftp_with_host_key(box):
    _emu, tmp = box
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(tmp / "host_key"))
    proc, port = serve(box, "sftp", "--host-key", str(tmp / "host_key"), config_after=True)

    async def client() -> None:
        known = asyncssh.import_known_hosts(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
        async with asyncssh.connect(
            "127.0.0.1", port, username="al", password="al-password-7", known_hosts=known
        ) as conn:
            async with conn.start_sftp_client() as sftp:
                async with sftp.open("via-sftp.txt", "wb") as fh:
                    await fh.write(b"served over ssh")
                assert "via-sftp.txt" in await sftp.listdir(".")

    try:
        asyncio.run(client())  # known_hosts holds only the configured key: a different one fails
    finally:
        output = stop(proc)
    assert "sftp login al" in output and "upload completed /via-sftp.txt" in output
    assert "al-password-7" not in output
