"""The spool against other local accounts and against state read back from disk (issue 16).

Two real local Unix accounts are created for these tests (``useradd``, removed afterwards) and run
boxfs in child processes (``runuser``) against the session's emulator over HTTP, with a shared,
sticky temp dir standing in for ``/tmp``. An "attacker" listener (a local HTTP server recording every
request it gets) stands for the URL a planted resume state names: it must never hear from boxfs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import injected_faults

from boxfs.upload import MIN_SESSION_SIZE, UploadIncomplete
from boxfs.upload.cleaning import clean_spool
from boxfs.upload.resume import FOLDED, state_key
from boxfs.upload.spoolfolder import user_spool_dir

MB = 1 << 20
FAST = {"max_attempts": 2, "backoff_base": 0.005, "backoff_max": 0.02}
REPO = Path(__file__).resolve().parent.parent
SESSIONS = "/files/upload_sessions"
PARTS = "/files/upload_sessions/{upload_session_id}/parts"


# ------------------------------------------------------------------------------------- the attacker
class Listener:
    """A local HTTP server that answers 200 to anything and records every request (method, path, headers)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                listener.requests.append((self.command, self.path, dict(self.headers)))
                body = b'{"entries": [], "total_count": 0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _record  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    srv = Listener()
    try:
        yield srv
    finally:
        srv.close()


# ------------------------------------------------------------------------------- local accounts
class Account:
    def __init__(self, name: str) -> None:
        self.name = name
        out = subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True)
        self.uid = int(out.stdout)


@pytest.fixture(scope="module")
def accounts() -> Iterator[list[Account]]:
    """Two fresh local accounts (unique names), deleted afterwards."""
    if not hasattr(os, "getuid") or os.getuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("creating local accounts needs root, useradd and runuser")
    made: list[Account] = []
    try:
        for _ in range(2):
            name = f"bxs{uuid.uuid4().hex[:10]}"
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True,
                           capture_output=True)
            made.append(Account(name))
        yield made
    finally:
        for acct in made:
            subprocess.run(["userdel", acct.name], check=False, capture_output=True)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A sticky, world-writable folder like ``/tmp``, standing in for it as every account's temp dir."""
    path = Path(tempfile.mkdtemp(prefix="boxfs-shared-tmp-", dir="/tmp"))
    os.chmod(path, 0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


CHILD = r'''
import json, os, site, stat, sys, tempfile
cfg = json.loads(sys.stdin.read())
site.addsitedir(cfg["site"])
sys.path.insert(0, cfg["repo"])
tempfile.tempdir = cfg["tmp"]
result = {"uid": os.getuid()}

def error(exc):
    return {"type": type(exc).__name__, "errno": getattr(exc, "errno", None), "message": str(exc)}

if cfg["mode"] == "attacker":
    # pre-create the victim's spool root open to all, with a per-user folder of the attacker's holding a
    # planted resume state that names the attacker's URL, and a lock that is a link to the victim's file
    root = os.path.join(cfg["tmp"], "boxfs-%d" % cfg["victim_uid"])
    os.mkdir(root)
    os.chmod(root, 0o777)
    folder = os.path.join(root, cfg["box_user"])
    os.mkdir(folder)
    os.chmod(folder, 0o777)
    with open(os.path.join(folder, cfg["key"] + ".json"), "w") as fh:
        json.dump(cfg["state"], fh)
    os.symlink(cfg["victim_file"], os.path.join(folder, cfg["key"] + ".lock"))
    os.symlink(cfg["victim_file"], os.path.join(folder, "0123456789abcdef01234567.spool"))
else:
    from boxfs import BoxFileSystem
    from boxfs.upload.spoolfolder import spool_root
    fs = BoxFileSystem(cfg["jwt_config"], as_user=cfg["as_user"], base_urls=cfg["base_urls"],
                       spool_threshold=cfg["threshold"], retry=cfg["retry"], skip_instance_cache=True)
    root = spool_root(fs)
    result["root"] = str(root)
    data = bytes([cfg["fill"]]) * cfg["size"]
    try:
        result["cleaned"] = fs.clean_spool(older_than=0)
    except OSError as exc:
        result["clean_error"] = error(exc)
    try:
        with fs.open(cfg["path"], "wb") as f:
            for i in range(0, len(data), 1 << 20):
                f.write(data[i:i + (1 << 20)])
        result["uploaded"] = fs.info(cfg["path"])["sha1"]
    except OSError as exc:
        result["upload_error"] = error(exc)
    st = os.lstat(root)
    result["root_owner"], result["root_mode"] = st.st_uid, stat.S_IMODE(st.st_mode)
    result["root_entries"] = sorted(os.listdir(os.path.join(root, fs.user_id))) if st.st_uid == os.getuid() else None
print(json.dumps(result))
'''


def _site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def _interpreters() -> list[str]:
    """This interpreter, then system ones of the same version: another account may not be able to reach
    the base interpreter of our virtualenv (pyenv under a 0700 home); the venv's packages work with any
    interpreter of the same version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return [sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]


_working: dict[str, str] = {}


def run_as(account: Account, config: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run the child script as ``account`` (config on stdin: credentials never land in a file)."""
    payload = json.dumps({**config, "site": _site_packages(), "repo": str(REPO), "tmp": str(tmp)})
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp), "LANG": "C.UTF-8"}
    candidates = [_working[account.name]] if account.name in _working else _interpreters()
    failures = []
    for python in candidates:
        done = subprocess.run([str(shutil.which("runuser")), "-u", account.name, "--", python, "-c", CHILD], input=payload,
                              capture_output=True, text=True, env=env, timeout=300)
        if done.returncode == 0:
            _working[account.name] = python
            return json.loads(done.stdout.strip().splitlines()[-1])
        failures.append(f"{python}: {done.stderr.strip()[-2000:]}")
    raise AssertionError("the child failed as " + account.name + ":\n" + "\n".join(failures))


def box_config(emulator: Any, jwt_config: str, user: str, **extra: Any) -> dict[str, Any]:
    return {"jwt_config": jwt_config, "base_urls": emulator.base_urls, "as_user": user, "retry": FAST, **extra}


def sessions_of(emulator: Any, user: str, start: int) -> list[Any]:
    return [r for r in emulator.request_log.records[start:] if r.user_id == user and r.route == SESSIONS]


# ------------------------------------------------------------------------------ two local accounts
def test_attack_chain_of_another_account_fails_at_its_first_step(emulator: Any, jwt_config: str, new_user: Any,
                                                                 accounts: list[Account], shared_tmp: Path,
                                                                 listener: Listener) -> None:
    """The chain from issue 16: another account pre-creates the victim's spool root (0777), puts a
    per-user folder of its own in it with a resume state naming its URL and a lock that links to one of
    the victim's files. The victim refuses the root with a message naming it and what is wrong; the
    attacker's URL hears nothing, the victim's file is untouched, nothing is uploaded."""
    attacker, victim = accounts
    box_user, _ = new_user("victim")
    private = shared_tmp / f"victim-{uuid.uuid4().hex[:6]}"
    private.mkdir(mode=0o700)
    precious = private / "precious.txt"
    precious.write_bytes(b"the victim's own file\n")
    for p in (private, precious):
        os.chown(p, victim.uid, victim.uid)
    size = MIN_SESSION_SIZE + MB
    data = bytes([7]) * size
    key = state_key(user_id=box_user, parent_id="0", name="big.bin", file_id=None, size=size, sha1=FOLDED)
    session = "F971964745A5CD0C001BBE4E58196BFD"
    planted = {
        "version": 2, "session_id": session, "upload_url": listener.url + "/api", "expires_at": 4e9,
        "part_size": 8 * MB, "total_parts": 3, "size": size, "sha1": hashlib.sha1(data).hexdigest(),
        "spool": "0123456789abcdef01234567.spool",
        "session_endpoints": {k: f"{listener.url}/api/2.0/files/upload_sessions/{session}"
                              for k in ("upload_part", "commit", "abort", "list_parts", "status")},
    }
    run_as(attacker, {"mode": "attacker", "victim_uid": victim.uid, "box_user": box_user, "key": key,
                      "state": planted, "victim_file": str(precious)}, shared_tmp)
    root = shared_tmp / f"boxfs-{victim.uid}"
    assert root.stat().st_uid == attacker.uid and (root / box_user).is_dir()

    start = len(emulator.request_log)
    got = run_as(victim, {"mode": "victim", **box_config(emulator, jwt_config, box_user), "threshold": MB,
                          "size": size, "fill": 7, "path": "big.bin"}, shared_tmp)
    assert got["root"] == str(root)
    for step in ("clean_error", "upload_error"):
        err = got[step]
        assert err["errno"] == errno.EACCES, err
        assert str(root) in err["message"] and "another local account" in err["message"], err
        assert f"uid {attacker.uid}" in err["message"] and "spool_dir" in err["message"], err
    assert "uploaded" not in got and "cleaned" not in got
    assert listener.requests == []
    assert precious.read_bytes() == b"the victim's own file\n"
    assert sessions_of(emulator, box_user, start) == []
    assert [r for r in emulator.request_log.records[start:]
            if r.user_id == box_user and r.method in ("POST", "PUT", "DELETE")] == []
    # what the attacker planted is as it was: the victim wrote nothing there
    assert sorted(p.name for p in (root / box_user).iterdir()) == sorted(
        [f"{key}.json", f"{key}.lock", "0123456789abcdef01234567.spool"])
    assert json.loads((root / box_user / f"{key}.json").read_text()) == planted


def test_each_account_spools_in_its_own_root_and_the_second_is_not_locked_out(
        emulator: Any, jwt_config: str, new_user: Any, accounts: list[Account], shared_tmp: Path) -> None:
    """The first account to spool does not lock the others out: both act as the same Box user and write
    past the (lowered) spool threshold with the default spool folder; each gets its own private root."""
    box_user, _ = new_user("shared")
    results = []
    for n, acct in enumerate(accounts):
        size = (MIN_SESSION_SIZE + MB) if n else 3 * MB  # the second one through a chunked session
        results.append(run_as(acct, {"mode": "writer", **box_config(emulator, jwt_config, box_user),
                                     "threshold": MB, "size": size, "fill": n + 1, "path": f"from-{n}.bin"},
                              shared_tmp))
        expected = hashlib.sha1(bytes([n + 1]) * size).hexdigest()
        assert results[-1].get("uploaded") == expected, results[-1]
    for acct, got in zip(accounts, results, strict=True):
        assert "clean_error" not in got and got["root"] == str(shared_tmp / f"boxfs-{acct.uid}")
        assert (got["root_owner"], got["root_mode"]) == (acct.uid, 0o700)
        assert got["root_entries"] == []  # nothing left after success
        folder = Path(got["root"]) / box_user
        assert (folder.stat().st_uid, stat.S_IMODE(folder.stat().st_mode)) == (acct.uid, 0o700)


# ------------------------------------------------------------------------- one account, bad state
@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def victim_fs(make_fs: Any, fs_user: Any, spool: Path) -> Any:
    return make_fs(as_user=fs_user[0], spool_dir=str(spool), spool_threshold=MB, retry=FAST)


def _interrupted_upload(emulator: Any, fs: Any, tmp_path: Path) -> tuple[bytes, Path, Path, dict[str, Any]]:
    """A 21 MB put whose commit fails, leaving its resume state in the spool folder.

    Returns the content, its source file, the state's path and the state."""
    data = os.urandom(MIN_SESSION_SIZE + MB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
        with pytest.raises(UploadIncomplete) as info:
            fs.put_file(str(src), "big.bin")
    state_path = Path(str(info.value.state_path))
    return data, src, state_path, json.loads(state_path.read_text())


@pytest.mark.parametrize("tamper", ["attacker upload_url", "old format with endpoints", "bad session id"])
def test_a_state_naming_another_host_is_discarded_and_the_token_never_leaves(
        emulator: Any, victim_fs: Any, fs_user: Any, tmp_path: Path, listener: Listener, tamper: str) -> None:
    """A resume state read back from disk that names another host (an attacker's, or an endpoint of an
    old configuration) is never contacted, by the upload or by cleaning: the upload starts over in a new
    session and lands; the state is replaced."""
    uid = fs_user[0]
    data, src, state_path, state = _interrupted_upload(emulator, victim_fs, tmp_path)
    session = state["session_id"]
    evil = f"{listener.url}/api/2.0/files/upload_sessions/{session}"
    if tamper == "attacker upload_url":
        state["upload_url"] = listener.url + "/api"
    elif tamper == "old format with endpoints":
        state["version"] = 1
        state["session_endpoints"] = {k: evil for k in ("upload_part", "commit", "abort", "list_parts", "status")}
    else:
        state["session_id"] = f"../../../..{listener.url}/x?"
    state_path.write_text(json.dumps(state))
    assert clean_spool(victim_fs, older_than=3600) == []  # young: kept, and nothing contacted
    start = len(emulator.request_log)
    victim_fs.put_file(str(src), "big.bin")
    assert listener.requests == []
    assert len(sessions_of(emulator, uid, start)) == 1, "a new session: the tampered one is not resumed"
    assert [r for r in emulator.request_log.records[start:] if r.route == PARTS] == []
    assert victim_fs.cat_file("big.bin") == data
    assert sorted(p.name for p in state_path.parent.iterdir()) == []


def test_a_state_whose_session_box_no_longer_knows_starts_over(emulator: Any, victim_fs: Any, fs_user: Any,
                                                               tmp_path: Path) -> None:
    uid = fs_user[0]
    data, src, state_path, state = _interrupted_upload(emulator, victim_fs, tmp_path)
    state["session_id"] = "0" * 32  # a well-formed id Box does not know (404)
    state_path.write_text(json.dumps(state))
    start = len(emulator.request_log)
    victim_fs.put_file(str(src), "big.bin")
    asked = [r.status for r in emulator.request_log.records[start:] if r.user_id == uid and r.route == PARTS]
    assert asked == [404]
    assert len(sessions_of(emulator, uid, start)) == 1
    assert victim_fs.cat_file("big.bin") == data
    assert sorted(p.name for p in state_path.parent.iterdir()) == []


def test_a_user_folder_swapped_for_a_symlink_is_refused(victim_fs: Any, fs_user: Any, spool: Path,
                                                        tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_bytes(b"keep")
    spool.mkdir(mode=0o700)
    (spool / fs_user[0]).symlink_to(elsewhere)
    with pytest.raises(OSError) as info:
        with victim_fs.open("x.bin", "wb") as f:
            f.write(os.urandom(2 * MB))
    assert info.value.errno == errno.ENOTDIR
    assert str(spool / fs_user[0]) in str(info.value) and "symbolic link" in str(info.value)
    with pytest.raises(OSError, match="symbolic link"):
        victim_fs.clean_spool(older_than=0)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert not victim_fs.exists("x.bin")


def test_a_root_others_can_write_is_refused(victim_fs: Any, spool: Path) -> None:
    spool.mkdir()
    os.chmod(spool, 0o777)
    with pytest.raises(PermissionError) as info:
        victim_fs.clean_spool()
    assert str(spool) in str(info.value) and "mode 0777" in str(info.value)
    assert list(spool.iterdir()) == []


def test_links_in_the_users_own_folder_are_never_followed(victim_fs: Any, fs_user: Any, tmp_path: Path) -> None:
    """A lock, a spool file or a state file that is a link to one of the user's files: cleaning removes
    the links and never opens, truncates or deletes what they point to."""
    folder = user_spool_dir(victim_fs)
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"precious")
    target = str(precious)
    key = "ab" * 16
    (folder.path / f"{key}.json").write_text(json.dumps({"version": 2, "spool": "a" * 24 + ".spool"}))
    os.symlink(target, folder.path / f"{key}.lock")
    os.symlink(target, folder.path / ("a" * 24 + ".spool"))
    os.symlink(target, folder.path / f"{'cd' * 16}.json")
    removed = victim_fs.clean_spool(older_than=0)
    assert precious.read_bytes() == b"precious"
    assert sorted(Path(p).name for p in removed) == sorted([f"{key}.json", "a" * 24 + ".spool", f"{'cd' * 16}.json"])
    assert sorted(p.name for p in folder.path.iterdir()) == []
