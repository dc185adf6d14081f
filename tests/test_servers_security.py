"""Server protections: failed-login throttling, risky setups, a persistent host key, spool cleaning.

Real servers and real clients (asyncssh, ftplib, the ``boxfs serve`` command) against the Box emulator;
the "other machine" is a second loopback address, 127.0.0.2. No wall-clock assertions: lockouts are
checked by the number of failures that reach them.
"""

from __future__ import annotations

import asyncio
import ftplib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import pytest
from servers_support import PASSWORDS, emulator_factory, make_backend, self_signed_cert, write_users_file

from boxfs.servers.common import box_filesystem_factory, spool_cleaner
from boxfs.servers.ftp import start_ftp_server
from boxfs.servers.safety import UnsafeSetupError
from boxfs.servers.sftp import start_sftp_server
from boxfs.servers.throttle import LoginLocked, LoginThrottle, ThrottlePolicy
from boxfs.servers.users import UserFilesystems, load_users

pytestmark = pytest.mark.timeout(180)

# Quick delays, an address locked after 5 failures, a login after 100.
STRICT = {"base_delay": 0.01, "max_delay": 0.02, "address_lockout_after": 5, "login_lockout_after": 100,
          "lockout_seconds": 600}


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with make_backend(tmp_path_factory.mktemp("security")) as backend:
        yield backend


# ------------------------------------------------------------------------------------------ throttling
def test_default_policy_fifty_guesses_take_30s_or_end_in_a_lockout():
    policy = ThrottlePolicy()
    lockout = policy.address_lockout_after
    assert 0 < lockout <= 50
    # the answers before the lockout alone already make the guesser wait more than 30 s
    assert sum(policy.delay(n) for n in range(1, lockout)) >= 30
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8] and policy.delay(40) == policy.max_delay


def test_throttle_lockouts_expire_successes_reset_and_logins_lock_across_addresses(caplog):
    now = [1000.0]
    throttle = LoginThrottle(
        ThrottlePolicy(base_delay=1, max_delay=4, address_lockout_after=3, login_lockout_after=5,
                       lockout_seconds=60),
        clock=lambda: now[0],
    )
    caplog.set_level(logging.WARNING, logger="boxfs.servers")
    assert [throttle.failed("10.0.0.1", "alice", "test") for _ in range(3)] == [1, 2, 4]
    with pytest.raises(LoginLocked, match="address '10.0.0.1'"):
        throttle.check("10.0.0.1", "bob")
    throttle.check("10.0.0.2", "alice")  # another address may still try alice
    now[0] += 61
    throttle.check("10.0.0.1", "bob")  # the lockout expired
    throttle.succeeded("10.0.0.1", "bob")
    throttle.failed("10.0.0.3", "alice", "test")
    throttle.failed("10.0.0.4", "alice", "test")  # alice's fifth failure, from a fourth address
    with pytest.raises(LoginLocked, match="login 'alice'"):
        throttle.check("10.0.0.9", "alice")
    assert "locked out for 60 s after 3 failed logins" in caplog.text
    assert "login 'alice' locked out" in caplog.text


def test_throttle_settings_are_validated():
    with pytest.raises(ValueError, match=r"unknown keys \['lockout_after'\]; valid keys"):
        ThrottlePolicy.from_options({"lockout_after": 3})
    with pytest.raises(ValueError, match="must be a number"):
        ThrottlePolicy.from_options({"base_delay": "1s"})
    assert ThrottlePolicy.from_options({"address_lockout_after": 4.0}).address_lockout_after == 4


def sftp_login(server, login: str, password: str, source: str = "127.0.0.1"):
    known = asyncssh.import_known_hosts(
        f"[{server.host}]:{server.port} {server.host_key.export_public_key().decode()}"
    )
    return asyncssh.connect(
        server.host, server.port, username=login, password=password, client_keys=None,
        known_hosts=known, local_addr=(source, 0), preferred_auth=("password",),
    )


def test_sftp_fifty_wrong_passwords_end_in_a_lockout_other_address_still_logs_in(backend, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="boxfs")
    users = write_users_file(tmp_path / "users.toml", backend, throttle=STRICT)

    async def scenario(server):
        refused = 0
        for n in range(50):
            with pytest.raises(asyncssh.PermissionDenied):
                async with sftp_login(server, "alice", f"guess-{n}"):
                    pass
            refused += 1
        assert refused == 50
        with pytest.raises(asyncssh.PermissionDenied):  # locked out: even the right password
            async with sftp_login(server, "alice", PASSWORDS["alice"]):
                pass
        async with sftp_login(server, "alice", PASSWORDS["alice"], source="127.0.0.2") as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.listdir(".")

    with start_sftp_server(users, backend.factory) as server:
        asyncio.run(scenario(server))
        # the lockout came after the 5th failure: the 45 guesses after it never reached a password check
        assert caplog.text.count("sftp login refused for 'alice' from 127.0.0.1") == 5 + 46
        assert caplog.text.count("(password)") == 5
    assert "sftp: address '127.0.0.1' locked out for 600 s after 5 failed logins" in caplog.text
    assert "sftp login alice from 127.0.0.2" in caplog.text
    assert "guess-" not in caplog.text


def test_ftp_lockout_per_address(backend, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="boxfs")
    users = write_users_file(tmp_path / "users.toml", backend, throttle=STRICT)
    with start_ftp_server(users, backend.factory) as server:
        answers = []
        for n in range(8):
            ftp = ftplib.FTP()
            ftp.connect(server.host, server.port, timeout=30)
            with pytest.raises(ftplib.error_perm) as refused:
                ftp.login("bob", f"guess-{n}")
            answers.append(str(refused.value))
            ftp.close()
        assert answers[:5] == ["530 Authentication failed."] * 5
        assert set(answers[5:]) == {"530 Too many failed logins: try again later."}
        ftp = ftplib.FTP(source_address=("127.0.0.2", 0))
        ftp.connect(server.host, server.port, timeout=30)
        ftp.login("bob", PASSWORDS["bob"])
        ftp.quit()
    assert "ftp: address '127.0.0.1' locked out for 600 s after 5 failed logins" in caplog.text


# ------------------------------------------------------------------------------------------ risky setups
def test_writable_users_file_refused_unless_allowed(backend, tmp_path, caplog):
    users = write_users_file(tmp_path / "users.toml", backend)
    users.chmod(0o666)
    with pytest.raises(UnsafeSetupError, match=r"writable by everyone \(mode 666\).*chmod go-w"):
        start_ftp_server(users, backend.factory)
    users.chmod(0o620)
    with pytest.raises(UnsafeSetupError, match="writable by its group"):
        start_sftp_server(users, backend.factory)
    caplog.set_level(logging.WARNING, logger="boxfs")
    assert len(load_users(users, allow_loose=True)) > 0
    assert "allowed by the operator" in caplog.text


def test_serve_command_refuses_world_writable_users_file(backend, tmp_path):
    if backend.kind != "emulator":
        pytest.skip("needs the emulator's app config")
    users = write_users_file(tmp_path / "users.toml", backend)
    users.chmod(0o646)
    app = tmp_path / "app.json"
    app.write_text(backend.config)
    app.chmod(0o600)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "boxfs"), "--config", str(app), "serve", "sftp", "--users", str(users),
         "--host", "127.0.0.1", "--port", "0", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "writable by everyone" in done.stderr and "--allow-loose-users-file" in done.stderr
    assert "Traceback" not in done.stderr


def test_ftp_risky_setups_warn(backend, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="boxfs")
    users = write_users_file(tmp_path / "users.toml", backend)
    with start_ftp_server(users, backend.factory, host="0.0.0.0"):
        pass
    assert "FTP on 0.0.0.0 without TLS" in caplog.text
    caplog.clear()
    cert, key = self_signed_cert(tmp_path)
    with start_ftp_server(users, backend.factory, certfile=cert, keyfile=key):
        pass
    assert "without --tls-required" in caplog.text
    caplog.clear()
    with start_ftp_server(users, backend.factory, certfile=cert, keyfile=key, tls_required=True):
        pass
    assert "TLS" not in caplog.text


def test_loose_app_config_and_host_key_warn(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="boxfs")
    config = tmp_path / "app.json"
    config.write_text("{}")
    config.chmod(0o644)
    box_filesystem_factory(config)
    assert f"Box app config (holds the app's private key) {config} is accessible to other accounts" in caplog.text
    key_file = tmp_path / "host_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key_file))
    key_file.chmod(0o640)
    with start_sftp_server(UsersStub.path(tmp_path), lambda box_user: None, host_key=key_file):
        pass
    assert f"SSH host key {key_file} is accessible to other accounts (mode 640)" in caplog.text


class UsersStub:
    """A one-login users file for tests that never log in."""

    @staticmethod
    def path(tmp: Path) -> Path:
        path = tmp / "stub-users.toml"
        key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
        path.write_text(f'[users.x]\nssh_keys = ["{key}"]\nbox_user = "1"\n')
        return path


# ------------------------------------------------------------------------------------------ host key
def test_host_key_generated_once_into_a_private_state_folder(tmp_path):
    state = tmp_path / "state" / "boxfs"
    users = UsersStub.path(tmp_path)
    with start_sftp_server(users, lambda box_user: None, state_dir=state) as first:
        fingerprint = first.host_key.get_fingerprint()
    assert (state.stat().st_mode & 0o777) == 0o700
    assert (state / "ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    with start_sftp_server(users, lambda box_user: None, state_dir=state) as second:
        assert second.host_key.get_fingerprint() == fingerprint

        async def probe() -> None:  # a client that trusts only the first start's key connects
            known = asyncssh.import_known_hosts(
                f"[{second.host}]:{second.port} {first.host_key.export_public_key().decode()}"
            )
            with pytest.raises(asyncssh.PermissionDenied):  # the key was accepted; the login is not
                async with asyncssh.connect(second.host, second.port, username="x", password="nope",
                                            client_keys=None, known_hosts=known):
                    pass

        asyncio.run(probe())


def test_state_folder_loose_is_tightened_and_a_symlink_refused(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="boxfs")
    users = UsersStub.path(tmp_path)
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    loose.chmod(0o777)
    with start_sftp_server(users, lambda box_user: None, state_dir=loose):
        pass
    assert loose.stat().st_mode & 0o777 == 0o700
    assert "was accessible to other accounts (mode 777): now 0700" in caplog.text
    link = tmp_path / "link"
    link.symlink_to(loose)
    with pytest.raises(UnsafeSetupError, match="must be a folder, not a symlink"):
        start_sftp_server(users, lambda box_user: None, state_dir=link)


def test_serve_sftp_keeps_its_host_key_across_restarts(backend, tmp_path):
    if backend.kind != "emulator":
        pytest.skip("needs the emulator's app config")
    users = write_users_file(tmp_path / "users.toml", backend)
    app = tmp_path / "app.json"
    app.write_text(backend.config)
    app.chmod(0o600)
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg"), BOXFS_BASE_URL=backend.emulator.url)
    keys = []
    for _ in range(2):
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "boxfs"), "--config", str(app), "serve", "sftp", "--users",
             str(users), "--host", "127.0.0.1", "--port", "0"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            deadline = time.monotonic() + 60
            line = ""
            while "listening" not in line and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if "SSH host key" in line:
                    keys.append(line.split("SSH host key ", 1)[1].split()[0])
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("SHA256:")
    assert (tmp_path / "xdg" / "boxfs" / "ssh_host_ed25519_key").exists()


# ------------------------------------------------------------------------------------------ spool cleaning
def test_spool_cleaner_removes_old_spool_files_of_every_user(backend, tmp_path):
    from boxfs.upload.spoolfolder import SPOOL_SUFFIX, user_spool_dir

    factory = emulator_factory(backend, spool_dir=str(tmp_path / "spool"))
    filesystems = UserFilesystems(factory)
    folders = []
    for login in ("alice", "bob"):
        with user_spool_dir(filesystems.get(backend.box_users[login])) as spool_folder:
            folder = spool_folder.path
        old, new = folder / f"{'a' * 24}{SPOOL_SUFFIX}", folder / f"{'b' * 24}{SPOOL_SUFFIX}"
        old.write_bytes(b"x" * 1000)  # left by a failed upload
        new.write_bytes(b"y")
        os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
        folders.append(folder)
    cleaner = spool_cleaner(filesystems, interval=0.05, max_age=86400)
    assert cleaner is not None and spool_cleaner(filesystems, 0, None) is None
    cleaner.start()
    try:
        deadline = time.monotonic() + 30
        while any((f / f"{'a' * 24}{SPOOL_SUFFIX}").exists() for f in folders):
            assert time.monotonic() < deadline, "the cleaner never ran"
            time.sleep(0.05)
    finally:
        cleaner.stop()
    assert all((f / f"{'b' * 24}{SPOOL_SUFFIX}").exists() for f in folders)
