"""Users file and password hashing for the servers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from boxfs.servers.users import (
    UserFilesystems,
    UsersDB,
    backend_path,
    hash_password,
    load_users,
    normalize_home,
    verify_password,
    virtual_norm,
)


def test_hash_is_salted_and_verifies():
    h1 = hash_password("correct horse")
    h2 = hash_password("correct horse")
    assert h1 != h2  # salted
    assert h1.startswith("scrypt$") and "correct horse" not in h1
    assert verify_password("correct horse", h1) and verify_password("correct horse", h2)
    assert not verify_password("correct horsE", h1)
    assert not verify_password("correct horse", "scrypt$garbage")
    assert not verify_password("correct horse", "plain-text")


def test_users_file_parsing_and_authentication(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text(
        f"""
[users.alice]
password = "{hash_password("pw-a")}"
box_user = "alice@example.com"
home = "/ftp//alice/"

[users.keyonly]
ssh_keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl k"
box_user = "12345"
read_only = true
"""
    )
    db = load_users(path)
    alice = db.get("alice")
    assert alice is not None and alice.home == "/ftp/alice" and not alice.read_only
    assert db.authenticate("alice", "pw-a") is alice
    assert db.authenticate("alice", "pw-b") is None
    assert db.authenticate("nobody", "pw-a") is None
    keyonly = db.get("keyonly")
    assert keyonly is not None and keyonly.read_only and len(keyonly.ssh_keys) == 1
    assert db.authenticate("keyonly", "") is None  # no password: keys only
    assert "scrypt" not in repr(alice) and "scrypt" not in repr(db)


@pytest.mark.parametrize(
    "entry, message",
    [
        ('password = "hunter2"\nbox_user = "a@b.c"', "scrypt hash"),
        ('box_user = "a@b.c"', "password or ssh_keys"),
        (f'password = "{hash_password("x")}"', "box_user"),
        (f'password = "{hash_password("x")}"\nbox_user = "a"\nhome = "/a/../.."', "'..'"),
        (f'password = "{hash_password("x")}"\nbox_user = "a"\npasword = "typo"', "unknown keys"),
    ],
    # named: a hash is salted at random, and every pytest-xdist worker must collect the same test ids
    ids=["plain password", "no password", "no box_user", "home with ..", "unknown key"],
)
def test_invalid_users_files_are_rejected(tmp_path, entry, message):
    path = tmp_path / "users.toml"
    path.write_text(f"[users.x]\n{entry}\n")
    with pytest.raises(ValueError, match=message):
        load_users(path)


def test_path_normalization_never_leaves_home():
    assert virtual_norm("a/./b/../c", "/") == "/a/c"
    assert virtual_norm("../x", "/sub") == "/x"
    assert virtual_norm("", "/sub") == "/sub"
    for escaping in ("..", "../x", "/..", "/a/../../x", "..//..", "a/../../b"):
        assert virtual_norm(escaping, "/") is None
    assert normalize_home("") == "/" and normalize_home("ftp/alice/") == "/ftp/alice"
    assert backend_path("/ftp/alice", "/x/y") == "ftp/alice/x/y"
    assert backend_path("/", "/") == ""


def test_user_filesystems_created_lazily_once_per_box_user():
    made: list[str] = []

    def factory(box_user: str) -> object:
        made.append(box_user)
        return object()

    fss = UserFilesystems(factory)
    assert made == []
    a1 = fss.get("a@example.com")
    assert fss.get("a@example.com") is a1
    fss.get("b@example.com")
    assert made == ["a@example.com", "b@example.com"]


def test_hash_command_reads_stdin():
    out = subprocess.run(
        [sys.executable, "-m", "boxfs.servers.users", "hash"],
        input="s3cret-pass\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert verify_password("s3cret-pass", out)
    db = UsersDB.from_dict({"users": {"u": {"password": out, "box_user": "1"}}})
    assert db.authenticate("u", "s3cret-pass") is not None


def test_login_throttle_table_and_unknown_tables():
    entry = {"u": {"ssh_keys": ["ssh-ed25519 AAAA"], "box_user": "1"}}
    db = UsersDB.from_dict({"users": entry, "login_throttle": {"address_lockout_after": 3, "base_delay": 0.5}})
    assert db.throttle.address_lockout_after == 3 and db.throttle.base_delay == 0.5
    assert UsersDB.from_dict({"users": entry}).throttle.address_lockout_after == 10  # the default
    with pytest.raises(ValueError, match=r"login_throttle: unknown keys \['lockout'\]; valid keys: .*base_delay"):
        UsersDB.from_dict({"users": entry, "login_throttle": {"lockout": 3}})
    with pytest.raises(ValueError, match=r"unknown tables \['user'\]"):
        UsersDB.from_dict({"users": entry, "user": {}})  # a typo must not silently drop a setting
