"""The bad-input suite (issue 6): one test per bad input, each a clear error naming the problem.

Where the input can be refused locally, no request reaches Box (checked in the emulator's request log);
where only Box can refuse it, nothing changes on Box (checked by listing from a fresh filesystem).
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support import ADMIN_APP_SCOPES, admin_app

from boxfs import BoxFileSystem
from boxfs.api.errors import BoxAuthError
from boxfs.config import BoxConfigError
from boxfs.emulator import BoxEmulator
from boxfs.names import BoxNameError, check_name

# ----------------------------------------------------------------------------------------- helpers


def refused_locally(emulator: BoxEmulator, fn: Callable[[], Any], exc_type: type[BaseException],
                    *words: str) -> BaseException:
    """Run ``fn``: it must raise ``exc_type`` naming every word, with no request sent to Box."""
    start = len(emulator.request_log)
    with pytest.raises(exc_type) as info:
        fn()
    sent = emulator.request_log.records[start:len(emulator.request_log)]
    sent = [(r.method, r.path) for r in sent]
    assert sent == [], f"requests were sent for an input that can be refused locally: {sent}"
    for word in words:
        assert word in str(info.value), f"{word!r} not named in: {info.value}"
    return info.value


def snapshot(make_fs: Callable[..., Any], user_id: str) -> dict[str, Any]:
    """Everything the user has on Box, listed by a fresh filesystem (no cache)."""
    found = make_fs(as_user=user_id).find("", withdirs=True, detail=True)
    return {n: (d["type"], d["id"], d["size"], d["sha1"], d["etag"]) for n, d in found.items()}


def edited(jwt_config: str, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    cfg = json.loads(jwt_config)
    edit(cfg)
    return cfg


def build(emulator: BoxEmulator, **kwargs: Any) -> BoxFileSystem:
    return BoxFileSystem(base_urls=emulator.base_urls, skip_instance_cache=True, **kwargs)


@pytest.fixture
def uid(fs_user: tuple[str, str]) -> str:
    return fs_user[0]


@pytest.fixture
def seeded(fs: BoxFileSystem) -> BoxFileSystem:
    """``fs`` holding ``dir/`` (with ``dir/inner.txt``) and ``file.txt``, all known to its cache."""
    fs.pipe_file("dir/inner.txt", b"inner")
    fs.pipe_file("file.txt", b"content")
    fs.ls("")
    fs.ls("dir")
    return fs


# ------------------------------------------------------------------------------ JWT configuration
def test_malformed_json(emulator: BoxEmulator) -> None:
    refused_locally(emulator, lambda: build(emulator, jwt_config='{"boxAppSettings": {"clientID": "x",}}'),
                    BoxConfigError, "not valid JSON", "line 1")


def test_json_that_is_not_an_object(emulator: BoxEmulator) -> None:
    refused_locally(emulator, lambda: build(emulator, jwt_config='["boxAppSettings"]'), BoxConfigError,
                    "JSON object", "boxAppSettings")


def test_json_without_box_app_settings(emulator: BoxEmulator, jwt_config: str) -> None:
    cfg = edited(jwt_config, lambda c: c.pop("boxAppSettings"))
    refused_locally(emulator, lambda: build(emulator, jwt_config=cfg), BoxConfigError, "missing boxAppSettings")


def test_missing_private_key(emulator: BoxEmulator, jwt_config: str) -> None:
    cfg = edited(jwt_config, lambda c: c["boxAppSettings"]["appAuth"].pop("privateKey"))
    refused_locally(emulator, lambda: build(emulator, jwt_config=cfg), BoxConfigError,
                    "missing boxAppSettings.appAuth.privateKey")


def test_missing_public_key_id(emulator: BoxEmulator, jwt_config: str) -> None:
    cfg = edited(jwt_config, lambda c: c["boxAppSettings"]["appAuth"].pop("publicKeyID"))
    refused_locally(emulator, lambda: build(emulator, jwt_config=cfg), BoxConfigError,
                    "missing boxAppSettings.appAuth.publicKeyID")


def test_missing_client_id(emulator: BoxEmulator, jwt_config: str) -> None:
    cfg = edited(jwt_config, lambda c: c["boxAppSettings"].pop("clientID"))
    refused_locally(emulator, lambda: build(emulator, jwt_config=cfg), BoxConfigError,
                    "missing boxAppSettings.clientID")


def test_missing_enterprise_id(emulator: BoxEmulator, jwt_config: str) -> None:
    cfg = edited(jwt_config, lambda c: c.pop("enterpriseID"))
    refused_locally(emulator, lambda: build(emulator, jwt_config=cfg), BoxConfigError, "missing enterpriseID")


def test_wrong_passphrase(emulator: BoxEmulator, jwt_config: str) -> None:
    real = json.loads(jwt_config)["boxAppSettings"]["appAuth"]["passphrase"]
    cfg = edited(jwt_config, lambda c: c["boxAppSettings"]["appAuth"].update(passphrase="wrong-passphrase"))
    err = refused_locally(emulator, lambda: build(emulator, jwt_config=cfg), BoxConfigError,
                          "passphrase does not decrypt the private key")
    assert "wrong-passphrase" not in str(err) and real not in str(err)


def test_pasted_json_with_a_truncated_key(emulator: BoxEmulator, jwt_config: str) -> None:
    """Valid JSON, but the PEM key inside was cut off when pasting."""
    def cut(c: dict[str, Any]) -> None:
        key = c["boxAppSettings"]["appAuth"]["privateKey"]
        c["boxAppSettings"]["appAuth"]["privateKey"] = key[: len(key) // 3]

    text = json.dumps(edited(jwt_config, cut))
    refused_locally(emulator, lambda: build(emulator, jwt_config=text), BoxConfigError, "private key is truncated")


def test_partially_pasted_json_text(emulator: BoxEmulator, jwt_config: str) -> None:
    """The JSON text itself stops in the middle of the private key string."""
    text = jwt_config[: jwt_config.index("PRIVATE KEY") + 40]
    err = refused_locally(emulator, lambda: build(emulator, jwt_config=text), BoxConfigError,
                          "not valid JSON", "pasted completely")
    assert text[-30:] not in str(err), "no part of the secret document is echoed"


# ------------------------------------------------------------------------- refused by Box's OAuth
def test_key_that_does_not_match_the_registered_public_key(emulator: BoxEmulator, uid: str) -> None:
    mine = admin_app(emulator)
    other = json.loads(admin_app(emulator))
    cfg = edited(mine, lambda c: c["boxAppSettings"]["appAuth"].update(
        privateKey=other["boxAppSettings"]["appAuth"]["privateKey"],
        passphrase=other["boxAppSettings"]["appAuth"]["passphrase"]))
    fs = build(emulator, jwt_config=cfg, as_user=uid)
    start = len(emulator.request_log)
    with pytest.raises(BoxAuthError, match="invalid_grant.*public key"):
        fs.pipe_file("never.txt", b"x")
    sent = emulator.request_log.records[start:len(emulator.request_log)]
    assert [r.route for r in sent] == ["/oauth2/token"], "nothing but the refused token request was sent"


def test_revoked_client(emulator: BoxEmulator, make_fs: Any, uid: str) -> None:
    cfg = admin_app(emulator)
    fs = build(emulator, jwt_config=cfg, as_user=uid)
    fs.pipe_file("kept.txt", b"kept")
    before = snapshot(make_fs, uid)
    emulator.revoke_app(json.loads(cfg)["boxAppSettings"]["clientID"])
    with pytest.raises(BoxAuthError, match="invalid_client"):
        fs.rm("kept.txt")
    assert snapshot(make_fs, uid) == before


def test_unknown_client(emulator: BoxEmulator, jwt_config: str, uid: str) -> None:
    cfg = edited(jwt_config, lambda c: c["boxAppSettings"].update(clientID="0" * 32))
    with pytest.raises(BoxAuthError, match="invalid_client") as info:
        build(emulator, jwt_config=cfg, as_user=uid).ls("")
    assert "0" * 32 in str(info.value), "the error names the app it was about"


def test_app_without_the_as_user_feature(emulator: BoxEmulator, make_fs: Any, uid: str) -> None:
    cfg = emulator.create_jwt_app(scopes=ADMIN_APP_SCOPES, as_user_header=False, enterprise_access=True)
    before = snapshot(make_fs, uid)
    with pytest.raises(PermissionError) as info:
        build(emulator, jwt_config=cfg, as_user=uid).pipe_file("x.txt", b"x")
    assert "insufficient_scope" in str(info.value)
    assert "As-User" in str(info.value), "the error says the As-User header is what was refused"
    assert snapshot(make_fs, uid) == before


def test_app_without_enterprise_access(emulator: BoxEmulator, make_fs: Any, uid: str) -> None:
    cfg = emulator.create_jwt_app(scopes=ADMIN_APP_SCOPES, as_user_header=True, enterprise_access=False)
    before = snapshot(make_fs, uid)
    with pytest.raises(PermissionError) as info:
        build(emulator, jwt_config=cfg, as_user=uid).mkdir("new-folder")
    assert info.value.errno == errno.EACCES and "403" in str(info.value)
    assert snapshot(make_fs, uid) == before


# ---------------------------------------------------------------------------------------- as_user
def test_unknown_as_user_login(emulator: BoxEmulator, jwt_config: str) -> None:
    with pytest.raises(BoxConfigError, match="no Box user has the login 'ghost@example.com'"):
        build(emulator, jwt_config=jwt_config, as_user="ghost@example.com")


def test_unknown_as_user_id(emulator: BoxEmulator, jwt_config: str) -> None:
    fs = build(emulator, jwt_config=jwt_config, as_user="987654321")
    with pytest.raises(ValueError, match="As-User"):
        fs.ls("")


def test_as_user_neither_id_nor_login(emulator: BoxEmulator, jwt_config: str) -> None:
    refused_locally(emulator, lambda: build(emulator, jwt_config=jwt_config, as_user="alice"), BoxConfigError,
                    "as_user", "'alice'")


# ------------------------------------------------------------------------------------------ names
def test_name_with_slash() -> None:
    """A path separates names with '/', so a single name (a rename target, a server's argument) cannot hold one."""
    with pytest.raises(BoxNameError, match="must not contain '/'"):
        check_name("a/b")


def test_name_with_backslash(emulator: BoxEmulator, fs: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: fs.pipe_file("dir\\x.txt", b"x"), ValueError, "must not contain", "dir\\\\x.txt")


def test_name_dot_dot(emulator: BoxEmulator, fs: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: fs.pipe_file("a/../b.txt", b"x"), ValueError, "must not be '..'")


def test_name_with_trailing_space(emulator: BoxEmulator, fs: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: fs.mkdir("folder "), ValueError, "end with a space", "'folder '")


def test_name_longer_than_255(emulator: BoxEmulator, fs: BoxFileSystem, tmp_path: Any) -> None:
    local = tmp_path / "x.txt"
    local.write_bytes(b"x")
    refused_locally(emulator, lambda: fs.put_file(str(local), "n" * 256), ValueError, "at most 255", "has 256")


def test_empty_name() -> None:
    with pytest.raises(BoxNameError, match="must not be empty"):
        check_name("")


def test_name_with_control_character(emulator: BoxEmulator, fs: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: fs.open("bad\x07name.txt", "wb"), ValueError, "control characters")


@pytest.mark.parametrize(("char", "said"), [("\x7f", "DEL (0x7f)"), ("\x00", "0x00"), ("\n", "0x0a"),
                                            ("\t", "0x09"), ("\x1b", "0x1b"), ("\x1f", "0x1f")])
def test_name_with_non_printable_ascii(emulator: BoxEmulator, make_fs: Any, fs_user: tuple[str, str], char: str,
                                       said: str, tmp_path: Any) -> None:
    """Box refuses non-printable ASCII, DEL included. Every way of naming an item refuses it before any
    request, even on a filesystem that knows nothing yet (the refusal needs no listing), with
    :class:`BoxNameError` saying which character."""
    fs = make_fs(as_user=fs_user[0])
    bad = f"bad{char}name.txt"
    local = tmp_path / "x.txt"
    local.write_bytes(b"x")
    for call in (lambda: fs.pipe_file(bad, b"x"), lambda: fs.open(f"dir/{bad}", "wb"), lambda: fs.mkdir(bad),
                 lambda: fs.makedirs(f"{bad}/sub"), lambda: fs.put_file(str(local), bad),
                 lambda: fs.mv("file.txt", bad), lambda: fs.cp_file("file.txt", f"dir/{bad}"),
                 lambda: fs.copy("dir", bad, recursive=True)):
        error = refused_locally(emulator, call, BoxNameError, "control characters", said)
        assert repr(bad) in str(error)


def test_name_with_trailing_space_as_a_target(emulator: BoxEmulator, seeded: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: seeded.mv("file.txt", "file.txt "), BoxNameError, "end with a space")
    refused_locally(emulator, lambda: seeded.cp_file("file.txt", "dir /copy.txt"), BoxNameError, "'dir '")


def test_name_that_is_not_unicode(emulator: BoxEmulator, fs: BoxFileSystem) -> None:
    """A name from bytes that are not UTF-8 (``os.fsdecode`` gives lone surrogates) cannot be sent to Box."""
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    refused_locally(emulator, lambda: fs.pipe_file(name, b"x"), BoxNameError, "valid Unicode")


def test_names_box_accepts(fs: BoxFileSystem, make_fs: Any, uid: str) -> None:
    """The rules refuse nothing Box accepts: a leading space, glob characters, non-ASCII and non-breaking
    spaces round-trip, read back by a fresh filesystem."""
    names = [" leading space.txt", "[a] *b? {c}.txt", "caf\u00e9 \u2603.txt", "nbsp\u00a0.txt", "~tilde", "#%&"]
    for name in names:
        fs.pipe_file(f" dir/{name}", name.encode())
    fresh = make_fs(as_user=uid)
    assert sorted(n.split("/", 1)[1] for n in fresh.ls(" dir", detail=False)) == sorted(names)
    for name in names:
        assert fresh.cat_file(f" dir/{name}") == name.encode()


def test_invalid_name_error_is_one_documented_type() -> None:
    """Frontends map invalid names by type (EINVAL, FTP 553): every rule raises BoxNameError, a ValueError."""
    import boxfs.names

    assert issubclass(BoxNameError, ValueError) and "BoxNameError" in boxfs.names.__all__
    for name in ("", ".", "..", "a/b", "a\\b", "x" * 256, "end ", "del\x7f", "nul\x00", "\udcff"):
        with pytest.raises(BoxNameError):
            check_name(name)


# ------------------------------------------------------------------------------- wrong kind of item
def test_file_where_a_folder_is_needed(emulator: BoxEmulator, seeded: BoxFileSystem, make_fs: Any,
                                       uid: str) -> None:
    before = snapshot(make_fs, uid)
    refused_locally(emulator, lambda: seeded.pipe_file("file.txt/child.txt", b"x"), NotADirectoryError, "file.txt")
    assert snapshot(make_fs, uid) == before


def test_folder_where_a_file_is_needed(emulator: BoxEmulator, seeded: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: seeded.cat_file("dir"), IsADirectoryError, "dir")


def test_writing_onto_a_folder(emulator: BoxEmulator, seeded: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: seeded.open("dir", "wb"), IsADirectoryError, "dir")


def test_rm_of_the_root(emulator: BoxEmulator, seeded: BoxFileSystem, make_fs: Any, uid: str) -> None:
    before = snapshot(make_fs, uid)
    refused_locally(emulator, lambda: seeded.rm("", recursive=True), PermissionError, "root folder")
    refused_locally(emulator, lambda: seeded.rm("/", recursive=True), PermissionError, "root folder")
    assert snapshot(make_fs, uid) == before


def test_rmdir_of_the_root(emulator: BoxEmulator, seeded: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: seeded.rmdir("box://"), PermissionError, "root folder")


def test_mkdir_of_an_existing_path(emulator: BoxEmulator, seeded: BoxFileSystem, make_fs: Any, uid: str) -> None:
    before = snapshot(make_fs, uid)
    refused_locally(emulator, lambda: seeded.mkdir("dir"), FileExistsError, "dir")
    refused_locally(emulator, lambda: seeded.mkdir("file.txt"), FileExistsError, "file.txt")
    assert snapshot(make_fs, uid) == before


def test_opening_a_missing_file(emulator: BoxEmulator, seeded: BoxFileSystem, make_fs: Any, uid: str) -> None:
    """A miss only the cache vouches for is checked with Box once (another process may have just written
    the file): one listing, nothing else, and the error names the path."""
    before = snapshot(make_fs, uid)
    start = len(emulator.request_log)
    with pytest.raises(FileNotFoundError, match="dir/missing.txt"):
        seeded.open("dir/missing.txt", "rb")
    sent = emulator.request_log.records[start:len(emulator.request_log)]
    assert [(r.method, r.route) for r in sent] in ([], [("GET", "/folders/{folder_id}/items")])
    assert snapshot(make_fs, uid) == before


def test_exclusive_create_of_an_existing_file(emulator: BoxEmulator, seeded: BoxFileSystem, make_fs: Any,
                                              uid: str) -> None:
    refused_locally(emulator, lambda: seeded.open("file.txt", "xb"), FileExistsError, "file.txt")
    assert make_fs(as_user=uid).cat_file("file.txt") == b"content"


def test_append_mode(emulator: BoxEmulator, seeded: BoxFileSystem) -> None:
    refused_locally(emulator, lambda: seeded.open("file.txt", "ab"), NotImplementedError, "cannot append")


def test_rmdir_of_a_non_empty_folder(seeded: BoxFileSystem, make_fs: Any, uid: str) -> None:
    before = snapshot(make_fs, uid)
    with pytest.raises(OSError) as info:
        seeded.rmdir("dir")
    assert info.value.errno == errno.ENOTEMPTY and "folder_not_empty" in str(info.value)
    assert snapshot(make_fs, uid) == before


# ---------------------------------------------------------------------------------------- options
def test_unknown_retry_option(emulator: BoxEmulator, jwt_config: str) -> None:
    refused_locally(emulator, lambda: build(emulator, jwt_config=jwt_config, retry={"max_tries": 3}), ValueError,
                    "max_tries", "max_attempts")


def test_spool_threshold_not_positive(emulator: BoxEmulator, jwt_config: str) -> None:
    refused_locally(emulator, lambda: build(emulator, jwt_config=jwt_config, spool_threshold=0), BoxConfigError,
                    "spool_threshold")


# -------------------------------------------------------------------------------- huge listing pages
def test_huge_listing_page_is_capped_and_paged(emulator: BoxEmulator, fs: BoxFileSystem, make_fs: Any,
                                               uid: str) -> None:
    """Asking for pages larger than Box gives (1,000) still lists everything, by following the marker."""
    fs.mkdir("many")
    parent = fs.info("many")["id"]
    url = fs.transport.api("/folders")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: fs.transport.json("POST", url, json={"name": f"i{i:04d}", "parent": {"id": parent}}),
                      range(1100)))
    cold = make_fs(as_user=uid)
    cold.LIST_PAGE = 100_000
    cold.info("many")
    start = len(emulator.request_log)
    names = cold.ls("many", detail=False)
    assert names == [f"many/i{i:04d}" for i in range(1100)]
    pages = [r for r in emulator.request_log.records[start:len(emulator.request_log)] if r.route == "/folders/{folder_id}/items"]
    assert len(pages) == 2 and all(r.path.endswith(f"/folders/{parent}/items") for r in pages)
