"""Security (issue 6): secrets never leak, the spool is private, users are kept apart.

* A whole workload (JWT and CCG apps, uploads small and chunked, a spilled writer, downloads, listings,
  moves, deletes, retries after injected 5xx, a refresh after the token was expired behind the client's
  back, an interrupted upload that leaves resume state, refused credentials) runs with every logger
  captured at DEBUG. No client secret, passphrase, private-key text or access/refresh token may appear
  in any log line, ``repr``/``str`` of the objects a user handles, exception (message, ``repr``,
  formatted traceback with its chain) or file the library wrote.
* Spool folders are 0700 and the files in them 0600, even under a permissive umask.
* One user's filesystem cannot reach another user's items (by id: read, download, delete, copy) nor
  their spool (resume state is neither used nor cleaned by another user).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ADMIN_APP_SCOPES, admin_app, injected_faults

from boxfs import BoxFileSystem
from boxfs.api.errors import BoxAuthError
from boxfs.emulator import BoxEmulator
from boxfs.upload import MIN_SESSION_SIZE, UploadIncomplete, clean_spool

MB = 1 << 20
FAST = {"max_attempts": 4, "backoff_base": 0.005, "backoff_max": 0.02}


def _exception_texts(exc: BaseException) -> list[str]:
    """Everything an exception shows: str, repr and the formatted traceback (with its chain), for it and
    for every exception it was raised from or during."""
    out = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out += [str(cur), repr(cur), repr(getattr(cur, "args", ()))]
        cur = cur.__cause__ or cur.__context__
    return out


def _secrets_of(cfg: dict[str, Any]) -> dict[str, str]:
    settings = cfg["boxAppSettings"]
    key_lines = [ln for ln in settings["appAuth"]["privateKey"].splitlines() if ln and not ln.startswith("-----")]
    found = {"client secret": settings["clientSecret"], "passphrase": settings["appAuth"]["passphrase"]}
    # any line of the PEM body (64 base64 characters) would be a piece of the private key
    found.update({f"private key line {i}": ln for i, ln in enumerate(key_lines) if len(ln) >= 32})
    return found


@pytest.fixture
def umask_open() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_no_secret_in_logs_reprs_exceptions_or_files(emulator: BoxEmulator, new_user: Any, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: boxfs, urllib3, box_sdk_gen
    cfg_text = admin_app(emulator)
    cfg = json.loads(cfg_text)
    ccg_id, ccg_secret = emulator.create_ccg_app(scopes=ADMIN_APP_SCOPES, as_user_header=True, enterprise_access=True)
    uid, login = new_user("sec")
    spool = tmp_path / "spool"
    texts: list[str] = []
    errors: list[BaseException] = []

    fs = BoxFileSystem(jwt_config=cfg_text, base_urls=emulator.base_urls, as_user=login, skip_instance_cache=True,
                       spool_dir=str(spool), spool_threshold=MB, retry=FAST)
    ccg = BoxFileSystem(client_id=ccg_id, client_secret=ccg_secret, enterprise_id=emulator.enterprise_id,
                        base_urls=emulator.base_urls, as_user=uid, skip_instance_cache=True)

    # ordinary work, with retries (INFO lines) and a refresh after a 401
    with injected_faults(emulator, rate=0.3, kinds=("500", "503", "429"), seed=11, retry_after=0):
        fs.pipe_file("s/a.txt", b"alpha")
        with fs.open("s/spilled.bin", "wb") as f:  # spills to the spool folder
            f.write(os.urandom(2 * MB))
        fs.cat_file("s/a.txt")
        fs.find("")
        fs.mv("s/a.txt", "s/b.txt")
        fs.cp_file("s/b.txt", "s/c.txt")
        fs.rm("s/c.txt")
    emulator.expire_tokens()
    fs.ls("s", refresh=True)
    ccg.pipe_file("s/ccg.txt", b"from ccg")
    assert ccg.cat_file("s/ccg.txt") == b"from ccg"

    # an interrupted chunked upload leaves resume state (and its spool file) on disk
    big = os.urandom(MIN_SESSION_SIZE + MB)
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
        with pytest.raises(UploadIncomplete) as info:
            with fs.open("s/big.bin", "wb") as f:
                f.write(big)
        errors.append(info.value)

    # refusals: a revoked app, a wrong passphrase, a bad client secret
    other = json.loads(admin_app(emulator))
    victim = BoxFileSystem(jwt_config=other, base_urls=emulator.base_urls, as_user=uid, skip_instance_cache=True)
    victim.ls("")
    emulator.revoke_app(other["boxAppSettings"]["clientID"])
    victim.provider.invalidate(victim.provider.token())
    with pytest.raises(BoxAuthError) as auth_info:
        victim.ls("", refresh=True)
    errors.append(auth_info.value)
    wrong = json.loads(cfg_text)
    wrong["boxAppSettings"]["appAuth"]["passphrase"] += "x"
    with pytest.raises(ValueError) as pp_info:
        BoxFileSystem(jwt_config=wrong, base_urls=emulator.base_urls, skip_instance_cache=True)
    errors.append(pp_info.value)
    with pytest.raises(BoxAuthError) as ccg_info:
        BoxFileSystem(client_id=ccg_id, client_secret=ccg_secret + "x", enterprise_id=emulator.enterprise_id,
                      base_urls=emulator.base_urls, as_user=uid, skip_instance_cache=True).ls("")
    errors.append(ccg_info.value)

    # what could show a secret
    secrets = _secrets_of(cfg) | _secrets_of(other) | {"CCG client secret": ccg_secret}
    issued = emulator.store.all("SELECT token, kind FROM tokens WHERE client_id IN (?, ?, ?)",
                                cfg["boxAppSettings"]["clientID"], ccg_id, other["boxAppSettings"]["clientID"])
    assert len(issued) >= 3
    secrets.update({f"{row['kind']} token {i}": row["token"] for i, row in enumerate(issued)})
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    for obj in (fs, ccg, victim, fs.credentials, ccg.credentials, fs.provider, fs.transport, fs._config(),
                fs.open("s/b.txt", "rb")):
        texts += [repr(obj), str(obj)]
    for exc in errors:
        texts += _exception_texts(exc)
    written = [p for p in spool.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in written), "the interrupted upload must have left its state"
    texts += [p.read_bytes().decode("latin-1") for p in written if p.suffix != ".spool"]
    assert any("retrying" in r.getMessage() for r in caplog.records)  # the workload did retry
    assert all(v in cfg_text for k, v in _secrets_of(cfg).items()), "the search itself finds secrets where they are"
    leaks = sorted({what for what, value in secrets.items() for text in texts if value in text})
    assert leaks == [], f"secrets leaked: {leaks}"


def test_spool_folders_0700_files_0600(emulator: BoxEmulator, make_fs: Any, fs_user: Any, tmp_path: Path,
                                       umask_open: None) -> None:
    uid = fs_user[0]
    spool = tmp_path / "spool"
    fs = make_fs(as_user=uid, spool_dir=str(spool), spool_threshold=MB, retry=FAST)
    f = fs.open("p/live.bin", "wb", block_size=256 * 1024)
    f.write(os.urandom(2 * MB))
    f.flush()
    live = list((spool / uid).iterdir())
    assert live, "a writer past the threshold has a spool file"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in live}
    f.close()
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
        with pytest.raises(UploadIncomplete):
            with fs.open("p/big.bin", "wb") as w:
                w.write(os.urandom(MIN_SESSION_SIZE + MB))
    kept = list((spool / uid).iterdir())
    assert {p.suffix for p in kept} >= {".json", ".spool"}
    modes.update({p.name: stat.S_IMODE(p.stat().st_mode) for p in kept})
    assert set(modes.values()) == {0o600}, modes
    for folder in (spool, spool / uid):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_user_cannot_reach_another_users_items_by_id(alice_fs: BoxFileSystem, bob_fs: BoxFileSystem,
                                                       unique: str) -> None:
    bob_fs.pipe_file(f"{unique}/private.txt", b"bob only")
    bob_file = bob_fs.info(f"{unique}/private.txt")["id"]
    bob_folder = bob_fs.info(unique)["id"]
    t = alice_fs.transport
    with pytest.raises(FileNotFoundError):
        alice_fs._get_item("file", bob_file)
    with pytest.raises(FileNotFoundError):
        alice_fs._read_range(f"{unique}/private.txt", bob_file, 0, 8, whole=True)
    with pytest.raises(FileNotFoundError):
        t.json("GET", t.api(f"/folders/{bob_folder}/items"))
    with pytest.raises(FileNotFoundError):
        t.request("DELETE", t.api(f"/files/{bob_file}"))
    with pytest.raises(FileNotFoundError):
        t.json("POST", t.api(f"/files/{bob_file}/copy"), json={"parent": {"id": "0"}}, idempotent=False)
    with pytest.raises(FileNotFoundError):
        t.json("PUT", t.api(f"/files/{bob_file}"), json={"name": "stolen.txt", "parent": {"id": "0"}})
    bob_fs.invalidate_cache()
    assert bob_fs.cat_file(f"{unique}/private.txt") == b"bob only"
    assert not alice_fs.exists("stolen.txt") and not alice_fs.exists("private.txt")


def test_a_user_cannot_reach_another_users_spool(emulator: BoxEmulator, make_fs: Any, new_user: Any,
                                                 tmp_path: Path) -> None:
    """Bob's interrupted upload leaves resume state; Alice, uploading the same bytes to the same path in
    her own folder, neither resumes Bob's session nor sees or cleans his spool."""
    spool = tmp_path / "spool"
    (bob_id, _), (alice_id, _) = new_user("bob"), new_user("alice")
    bob_fs = make_fs(as_user=bob_id, spool_dir=str(spool), spool_threshold=MB, retry=FAST)
    alice_fs = make_fs(as_user=alice_id, spool_dir=str(spool), spool_threshold=MB, retry=FAST)
    data = os.urandom(MIN_SESSION_SIZE + MB)
    src = tmp_path / "same.bin"
    src.write_bytes(data)
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
        with pytest.raises(UploadIncomplete) as info:
            bob_fs.put_file(str(src), "shared-name.bin")
    bob_state = Path(str(info.value.state_path))
    assert bob_state.parent == spool / bob_id
    bob_before = {p.name: p.read_bytes() for p in (spool / bob_id).iterdir()}
    start = len(emulator.request_log)
    alice_fs.put_file(str(src), "shared-name.bin")
    sessions = [r for r in emulator.request_log.records[start:] if r.route == "/files/upload_sessions"]
    assert [r.user_id for r in sessions] == [alice_id], "Alice created her own session, not resumed Bob's"
    assert clean_spool(alice_fs, older_than=0) == []
    assert {p.name: p.read_bytes() for p in (spool / bob_id).iterdir()} == bob_before
    assert sorted(p.name for p in (spool / alice_id).iterdir()) == []
    assert alice_fs.cat_file("shared-name.bin") == data
    assert not bob_fs.exists("shared-name.bin")


@pytest.mark.parametrize("damage", ["opening brace lost", "private key alone"])
def test_a_mispasted_config_is_not_echoed_in_the_error(damage: str, jwt_config: str) -> None:
    """A JWT config pasted without its first character (or a PEM key given instead of the JSON) is not a
    path either; the error must not quote it back, since it holds the client secret and the key."""
    cfg = json.loads(jwt_config)
    text = jwt_config.lstrip()[1:] if damage == "opening brace lost" else cfg["boxAppSettings"]["appAuth"]["privateKey"]
    with pytest.raises(ValueError) as info:
        BoxFileSystem(jwt_config=text, skip_instance_cache=True)
    shown = "\n".join(_exception_texts(info.value))
    leaks = [what for what, value in _secrets_of(cfg).items() if value in shown]
    assert leaks == []
    assert "jwt_config" in str(info.value)
