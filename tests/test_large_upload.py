"""Large uploads (issue 5): spooling writers, chunked upload sessions, parallel parts, resume, cleaning.

Everything runs against the emulator over real HTTP; which path an upload took is read from the
emulator's request log. Most tests use a small ``spool_threshold`` so writers spill early, but Box (and
the emulator) refuse upload sessions under 20 MB, so chunked tests move at least 20 MB. The exact 25 MB
boundary and a 100 MB round trip use the default threshold.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fsspec.callbacks import Callback
from support import injected_faults

import boxfs.upload.cleaning as spool_module
from boxfs.upload import DEFAULT_SPOOL_THRESHOLD, MIN_SESSION_SIZE, UploadIncomplete

MB = 1 << 20
SESSIONS = "/files/upload_sessions"
NEW_VERSION_SESSIONS = "/files/{file_id}/upload_sessions"
PART = "/files/upload_sessions/{upload_session_id}"
COMMIT = "/files/upload_sessions/{upload_session_id}/commit"
CONTENT = "/files/content"


class Mark:
    """The emulator's request log from now on, for one acting user."""

    def __init__(self, emu: Any, user_id: str) -> None:
        self.emu = emu
        self.user_id = user_id
        self.start = len(emu.request_log)

    def records(self) -> list[Any]:
        # the emulator logs each request on arrival: every call that has returned is in the log
        return [r for r in self.emu.request_log.records[self.start:] if r.user_id == self.user_id]

    def count(self, method: str, route: str, status: int | None = None) -> int:
        return sum(1 for r in self.records()
                   if r.method == method and r.route == route and (status is None or r.status == status))

    def routes(self) -> Counter[tuple[str, str]]:
        return Counter((r.method, r.route) for r in self.records())


def write_in_blocks(f: Any, data: bytes, block: int = MB) -> None:
    view = memoryview(data)
    for i in range(0, len(data), block):
        f.write(view[i:i + block])


def user_folder(spool_dir: Path, user_id: str) -> Path:
    return spool_dir / user_id


def assert_private_and_empty(folder: Path) -> None:
    assert folder.is_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == []


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def uid(fs_user: tuple[str, str]) -> str:
    return fs_user[0]


@pytest.fixture
def small_fs(make_fs: Any, uid: str, spool_dir: Path) -> Any:
    """Acting as a fresh user, spilling past 1 MiB, parts retried quickly."""
    return make_fs(as_user=uid, spool_dir=str(spool_dir), spool_threshold=MB,
                   retry={"max_attempts": 2, "backoff_base": 0.01, "backoff_max": 0.05})


# ---------------------------------------------------------------------------------- the 25 MB boundary
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_boundary_path_round_trip_and_spool_folder(emulator: Any, make_fs: Any, uid: str, spool_dir: Path,
                                                   delta: int) -> None:
    fs = make_fs(as_user=uid, spool_dir=str(spool_dir))
    assert fs.spool_threshold == DEFAULT_SPOOL_THRESHOLD == 25 * MB
    size = DEFAULT_SPOOL_THRESHOLD + delta
    data = os.urandom(size)
    fs.mkdir("b")
    mark = Mark(emulator, uid)
    with fs.open("b/file.bin", "wb") as f:
        write_in_blocks(f, data, 3 * MB + 17)
    chunked = delta > 0
    assert mark.count("POST", SESSIONS) == (1 if chunked else 0)
    assert mark.count("POST", COMMIT) == (1 if chunked else 0)
    assert mark.count("PUT", PART) == (4 if chunked else 0)  # 8 MiB parts
    assert mark.count("POST", CONTENT) == (0 if chunked else 1)
    # the preflight of a spilling writer and a chunked upload; a small upload sends none (issue 20)
    assert (mark.count("OPTIONS", CONTENT) >= 1) if chunked else (mark.count("OPTIONS", CONTENT) == 0)
    fresh = make_fs(as_user=uid)
    assert fresh.cat_file("b/file.bin") == data
    assert fresh.info("b/file.bin")["sha1"] == hashlib.sha1(data).hexdigest()
    folder = user_folder(spool_dir, uid)
    if chunked:
        assert_private_and_empty(folder)
    else:
        assert not folder.exists()  # never spilled: nothing on local disk


def test_put_file_100mb_parallel_parts_no_spool_copy(emulator: Any, make_fs: Any, uid: str, spool_dir: Path,
                                                     tmp_path: Path) -> None:
    fs = make_fs(as_user=uid, spool_dir=str(spool_dir))
    data = os.urandom(100 * MB)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    mtime = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    os.utime(src, (mtime.timestamp(), mtime.timestamp()))
    seen: list[int] = []
    spool_files: list[list[str]] = []

    class Spy(Callback):
        def call(self, *args: Any, **kwargs: Any) -> None:
            seen.append(self.value)
            folder = user_folder(spool_dir, uid)
            if folder.exists() and len(seen) % 20 == 0:
                spool_files.append([p.name for p in folder.iterdir() if p.suffix == ".spool"])

    cb = Spy()
    mark = Mark(emulator, uid)
    fs.put_file(str(src), "big/src.bin", callback=cb)

    assert mark.count("POST", SESSIONS) == 1
    assert mark.count("PUT", PART, 200) == 13  # 100 MiB in 8 MiB parts
    assert mark.count("POST", COMMIT) == 1
    assert mark.count("POST", CONTENT) == 0
    # parts really went in parallel: some PUTs overlap in time
    puts = [r for r in mark.records() if r.method == "PUT" and r.route == PART]
    overlapping = sum(1 for a in puts for b in puts if a is not b and a.started < b.finished and b.started < a.finished)
    assert overlapping > 0
    # no spool copy of a local file, and nothing left behind
    assert all(names == [] for names in spool_files)
    assert_private_and_empty(user_folder(spool_dir, uid))
    # byte-granular progress reaching the size exactly
    assert cb.size == len(data) and cb.value == len(data)
    assert len(seen) >= 100
    info = make_fs(as_user=uid).info("big/src.bin")
    assert info["sha1"] == hashlib.sha1(data).hexdigest()
    assert info["modified"] == mtime  # content_modified_at from the source's mtime
    assert fs.cat_file("big/src.bin") == data


def test_get_file_callback_is_byte_granular(small_fs: Any, tmp_path: Path) -> None:
    data = os.urandom(3 * MB + 5)
    small_fs.pipe_file("g/x.bin", data)
    cb = Callback()
    out = tmp_path / "x.bin"
    small_fs.get_file("g/x.bin", str(out), callback=cb)
    assert out.read_bytes() == data
    assert cb.size == cb.value == len(data)


# -------------------------------------------------------------------------------------- spooling writers
def test_writer_spills_to_private_spool_and_cleans_up(emulator: Any, small_fs: Any, uid: str, spool_dir: Path) -> None:
    data = os.urandom(MIN_SESSION_SIZE + 3 * MB)
    modified = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    mark = Mark(emulator, uid)
    with small_fs.open("w/a.bin", "wb", modified=modified) as f:
        f.write(data[: MB // 2])
        folder = user_folder(spool_dir, uid)
        assert not folder.exists()  # still in memory
        write_in_blocks(f, data[MB // 2:])
        f.flush()
        spools = list(folder.glob("*.spool"))
        assert len(spools) == 1
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(spools[0].stat().st_mode) == 0o600
        # the preflight came before anything was spooled (the parent is missing, so it was asked about
        # "w" in the root: quota and permission), and nothing was sent yet
        assert mark.routes() == Counter({("OPTIONS", CONTENT): 1, ("GET", "/folders/{folder_id}/items"): 1})
    assert_private_and_empty(folder)
    assert mark.count("POST", SESSIONS) == 1
    info = small_fs.info("w/a.bin")
    assert info["modified"] == modified
    assert info["sha1"] == hashlib.sha1(data).hexdigest()
    # a new version of an existing file takes a new-version session
    data2 = os.urandom(MIN_SESSION_SIZE + 1)
    mark = Mark(emulator, uid)
    with small_fs.open("w/a.bin", "wb") as f:
        write_in_blocks(f, data2)
    assert mark.count("POST", NEW_VERSION_SESSIONS) == 1 and mark.count("POST", SESSIONS) == 0
    assert small_fs.info("w/a.bin")["id"] == info["id"]
    assert small_fs.cat_file("w/a.bin") == data2
    assert_private_and_empty(folder)


def test_spilled_writer_under_session_minimum_uploads_in_one_request(emulator: Any, small_fs: Any, uid: str,
                                                                    spool_dir: Path) -> None:
    data = os.urandom(5 * MB)
    mark = Mark(emulator, uid)
    with small_fs.open("s/five.bin", "wb") as f:
        write_in_blocks(f, data)
    assert mark.count("POST", CONTENT) == 1 and mark.count("POST", SESSIONS) == 0
    assert small_fs.cat_file("s/five.bin") == data
    assert_private_and_empty(user_folder(spool_dir, uid))


def test_discarded_writer_leaves_nothing(emulator: Any, small_fs: Any, uid: str, spool_dir: Path) -> None:
    mark = Mark(emulator, uid)
    with pytest.raises(RuntimeError):
        with small_fs.open("d/x.bin", "wb") as f:
            write_in_blocks(f, os.urandom(12 * MB))
            assert len(list(user_folder(spool_dir, uid).glob("*.spool"))) == 1
            raise RuntimeError("the producer failed")
    assert_private_and_empty(user_folder(spool_dir, uid))
    assert mark.count("POST", CONTENT) == 0 and mark.count("POST", SESSIONS) == 0
    assert not small_fs.exists("d/x.bin")


def test_two_users_write_concurrently_in_separate_spool_folders(emulator: Any, make_fs: Any, new_user: Any,
                                                                spool_dir: Path) -> None:
    users = [new_user("sa")[0], new_user("sb")[0]]
    payload = {u: os.urandom(MIN_SESSION_SIZE + 2 * MB) for u in users}
    half = threading.Barrier(3)
    resume = threading.Barrier(3)
    errors: list[BaseException] = []

    def writer(user: str) -> None:
        try:
            fs = make_fs(as_user=user, spool_dir=str(spool_dir), spool_threshold=MB)
            data = payload[user]
            with fs.open("shared-name.bin", "wb") as f:
                write_in_blocks(f, data[: len(data) // 2])
                f.flush()
                half.wait(timeout=60)
                resume.wait(timeout=60)
                write_in_blocks(f, data[len(data) // 2:])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            half.abort()
            resume.abort()

    threads = [threading.Thread(target=writer, args=(u,)) for u in users]
    for t in threads:
        t.start()
    half.wait(timeout=60)
    try:
        for u in users:
            folder = user_folder(spool_dir, u)
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            spools = list(folder.glob("*.spool"))
            assert len(spools) == 1
            content = spools[0].read_bytes()
            assert len(content) > MB and payload[u].startswith(content)
    finally:
        resume.wait(timeout=60)
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors
    for u in users:
        assert make_fs(as_user=u).cat_file("shared-name.bin") == payload[u]
        assert_private_and_empty(user_folder(spool_dir, u))


# ------------------------------------------------------------------------------------------ preflight
def test_preflight_refuses_writer_before_spooling(emulator: Any, small_fs: Any, make_fs: Any, uid: str,
                                                  spool_dir: Path) -> None:
    small_fs.makedirs("p/taken")
    writer_fs = make_fs(as_user=uid, spool_dir=str(spool_dir), spool_threshold=MB)
    writer_fs.ls("p")  # the parent is known, the name "taken" is not in the writer's way locally
    writer_fs.cache.removed("p/taken")
    mark = Mark(emulator, uid)
    f = writer_fs.open("p/taken", "wb")
    try:
        f.write(b"x" * (MB // 2))
        with pytest.raises(IsADirectoryError):
            f.write(b"y" * (6 * MB))  # past fsspec's 5 MiB block: reaches the buffer, which spills
    finally:
        f.discard()
    assert mark.routes() == Counter({("OPTIONS", CONTENT): 1})
    folder = user_folder(spool_dir, uid)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_preflight_refuses_over_quota_put_before_session(emulator: Any, make_fs: Any, spool_dir: Path,
                                                         tmp_path: Path) -> None:
    user = emulator.create_user(f"quota-{os.getpid()}-{time.monotonic_ns()}@example.com", space_amount=10 * MB)
    fs = make_fs(as_user=user, spool_dir=str(spool_dir), spool_threshold=MB)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(MIN_SESSION_SIZE + 1))
    mark = Mark(emulator, user)
    with pytest.raises(OSError) as info:
        fs.put_file(str(src), "q.bin")
    # Box answers 403 storage_limit_exceeded: a full account, so ENOSPC (not a PermissionError)
    assert getattr(info.value, "box_code", None) == "storage_limit_exceeded"
    assert info.value.errno == errno.ENOSPC and not isinstance(info.value, PermissionError)
    assert mark.count("POST", SESSIONS) == 0 and mark.count("PUT", PART) == 0
    assert mark.count("OPTIONS", CONTENT) == 1


# ------------------------------------------------------------------------------------- commit handling
def test_commit_202_retry_after_is_honoured(emulator: Any, small_fs: Any, uid: str) -> None:
    data = os.urandom(MIN_SESSION_SIZE + 1)
    mark = Mark(emulator, uid)
    emulator.set_commit_retry_after(1)
    try:
        started = time.monotonic()
        small_fs.pipe_file("c/x.bin", data)
        elapsed = time.monotonic() - started
    finally:
        emulator.set_commit_retry_after(None)
    commits = [r.status for r in mark.records() if r.route == COMMIT]
    assert commits == [202, 201]
    assert elapsed >= 1.0
    assert small_fs.cat_file("c/x.bin") == data


def test_commit_failure_keeps_previous_version_and_spool_then_resumes(emulator: Any, small_fs: Any, make_fs: Any,
                                                                       uid: str, spool_dir: Path) -> None:
    small_fs.pipe_file("v/doc.bin", b"version one")
    data = os.urandom(MIN_SESSION_SIZE + 5 * MB)  # 3 parts
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
        with pytest.raises(UploadIncomplete) as info:
            with small_fs.open("v/doc.bin", "wb") as f:
                write_in_blocks(f, data)
    err = info.value
    folder = user_folder(spool_dir, uid)
    assert err.spool_path and Path(err.spool_path).parent == folder and str(err.spool_path) in str(err)
    assert Path(err.spool_path).read_bytes() == data  # the spool stays for resume
    assert err.state_path and Path(err.state_path).exists()
    assert isinstance(err, OSError)
    # the previous version is intact and current
    fresh = make_fs(as_user=uid)
    assert fresh.cat_file("v/doc.bin") == b"version one"

    # the same content written again resumes the session: no part is sent again
    mark = Mark(emulator, uid)
    with small_fs.open("v/doc.bin", "wb") as f:
        write_in_blocks(f, data)
    assert mark.count("PUT", PART) == 0
    assert mark.count("POST", NEW_VERSION_SESSIONS) == 0 and mark.count("POST", SESSIONS) == 0
    assert mark.count("POST", COMMIT) == 1
    assert make_fs(as_user=uid).cat_file("v/doc.bin") == data
    assert_private_and_empty(folder)  # the kept spool of the failed attempt is gone too


def test_failed_part_upload_resumes_with_put_file(emulator: Any, small_fs: Any, uid: str, spool_dir: Path,
                                                  tmp_path: Path) -> None:
    data = os.urandom(MIN_SESSION_SIZE + 20 * MB)  # 5 parts
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    with injected_faults(emulator, rate=1.0, kinds=("503",), route=r"/files/upload_sessions/[0-9A-F]+$",
                         method="PUT", count=None, seed=3, retry_after=0):
        with pytest.raises(UploadIncomplete) as info:
            small_fs.put_file(str(src), "r/src.bin")
    assert info.value.spool_path == str(src)  # put_file never copies into the spool
    assert not small_fs.exists("r/src.bin")
    mark = Mark(emulator, uid)
    small_fs.put_file(str(src), "r/src.bin")
    assert mark.count("POST", SESSIONS) == 0  # resumed the session of the failed attempt
    assert mark.count("PUT", PART, 200) == 5
    assert small_fs.cat_file("r/src.bin") == data
    assert_private_and_empty(user_folder(spool_dir, uid))
    assert src.exists()  # a source is never deleted


def test_source_changed_during_upload_aborts(emulator: Any, make_fs: Any, uid: str, spool_dir: Path,
                                             tmp_path: Path) -> None:
    """A source that changes under the upload fails the commit's digest: the session is aborted, no file."""
    small_fs = make_fs(as_user=uid, spool_dir=str(spool_dir), spool_threshold=MB, upload_workers=1)
    data = bytearray(os.urandom(MIN_SESSION_SIZE + MB))  # parts of 8, 8 and 5 MiB, sent one by one
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    class Mutate(Callback):
        done = False

        def call(self, *args: Any, **kwargs: Any) -> None:
            if not self.done and self.value > len(data) // 2:
                self.done = True
                with open(src, "r+b") as fh:  # in the last part, not read yet
                    fh.seek(-16, os.SEEK_END)
                    fh.write(b"\0" * 16)

    mark = Mark(emulator, uid)
    with pytest.raises(ValueError, match="digest"):  # Box: 400, the whole file's digest is wrong
        small_fs.put_file(str(src), "m/src.bin", callback=Mutate())
    assert mark.count("DELETE", PART) == 1  # aborted
    assert not small_fs.exists("m/src.bin")
    folder = user_folder(spool_dir, uid)
    assert list(folder.glob("*.json")) == []


# ------------------------------------------------------------------------------------------- cleaning
def test_clean_spool_removes_expired_and_orphans_but_not_live_writers(emulator: Any, small_fs: Any, make_fs: Any,
                                                                      uid: str, spool_dir: Path) -> None:
    data = os.urandom(MIN_SESSION_SIZE + 1)
    emulator.set_session_ttl(1)
    try:
        with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
            with pytest.raises(UploadIncomplete) as info:
                with small_fs.open("k/x.bin", "wb") as f:
                    write_in_blocks(f, data)
    finally:
        emulator.set_session_ttl(7 * 24 * 3600)
    kept = Path(info.value.spool_path)
    state = Path(info.value.state_path)
    assert kept.exists() and state.exists()
    folder = user_folder(spool_dir, uid)
    orphan = folder / "0123456789abcdef.spool"
    orphan.write_bytes(b"left by a crashed writer")
    old = time.time() - 3 * 24 * 3600
    os.utime(orphan, (old, old))
    # a live writer's spool, even if old, is never touched
    live = small_fs.open("k/live.bin", "wb")
    try:
        live_data = os.urandom(6 * MB)  # past fsspec's 5 MiB block, so it reaches the spool
        live.write(live_data)
        live_spool = next(p for p in folder.glob("*.spool") if p not in (kept, orphan))
        os.utime(live_spool, (old, old))
        time.sleep(1.1)  # the session expires
        removed = small_fs.clean_spool()
        assert set(removed) == {str(kept), str(state), str(orphan)}
        assert live_spool.exists()
        assert small_fs.clean_spool(older_than=0) == []  # the live writer still owns its file
        live.close()
    finally:
        if not live.closed:
            live.discard()
    assert small_fs.cat_file("k/live.bin") == live_data
    assert_private_and_empty(folder)


def test_expired_session_is_not_resumed(emulator: Any, small_fs: Any, uid: str, spool_dir: Path) -> None:
    data = os.urandom(MIN_SESSION_SIZE + 1)
    emulator.set_session_ttl(1)
    try:
        with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
            with pytest.raises(UploadIncomplete):
                small_fs.pipe_file("e/x.bin", data)
    finally:
        emulator.set_session_ttl(7 * 24 * 3600)
    assert len(list(user_folder(spool_dir, uid).glob("*.json"))) == 1
    mark = Mark(emulator, uid)
    small_fs.pipe_file("e/x.bin", data)
    assert mark.count("POST", SESSIONS) == 1 and mark.count("PUT", PART, 200) == 3
    assert small_fs.cat_file("e/x.bin") == data
    assert_private_and_empty(user_folder(spool_dir, uid))


def test_full_local_disk_is_a_clear_oserror_and_changes_nothing(emulator: Any, make_fs: Any, uid: str,
                                                                tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        fs = make_fs(as_user=uid, spool_dir=str(mount), spool_threshold=MB)
        fs.pipe_file("keep.txt", b"existing")
        mark = Mark(emulator, uid)
        with pytest.raises(OSError) as info:
            with fs.open("full/x.bin", "wb") as f:
                write_in_blocks(f, os.urandom(16 * MB))
        assert info.value.errno == errno.ENOSPC
        assert str(mount) in str(info.value) and "spool" in str(info.value)
        # a writer whose failed write is ignored never uploads what it has: it is incomplete
        f = fs.open("full/y.bin", "wb")
        with pytest.raises(OSError):
            write_in_blocks(f, os.urandom(16 * MB))
        with pytest.raises(OSError, match="incomplete"):
            f.close()
        assert mark.count("POST", CONTENT) == 0 and mark.count("POST", SESSIONS) == 0
        assert mark.count("POST", "/folders") == 0
        assert fs.ls("", detail=False) == ["keep.txt"]
        assert list((mount / uid).iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_clean_spool_older_than_zero_gives_up_and_aborts_resumable_uploads(emulator: Any, small_fs: Any, uid: str,
                                                                         spool_dir: Path) -> None:
    data = os.urandom(MIN_SESSION_SIZE + 1)
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
        with pytest.raises(UploadIncomplete) as info:
            with small_fs.open("z/x.bin", "wb") as f:
                write_in_blocks(f, data)
    err = info.value
    assert small_fs.clean_spool() == []  # young and resumable: kept by default
    mark = Mark(emulator, uid)
    assert set(small_fs.clean_spool(older_than=0)) == {err.spool_path, err.state_path}
    assert mark.count("DELETE", PART) == 1  # the session is aborted on Box as well
    assert_private_and_empty(user_folder(spool_dir, uid))


def test_old_orphans_are_cleaned_automatically(emulator: Any, small_fs: Any, uid: str, spool_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = user_folder(spool_dir, uid)
    folder.mkdir(parents=True, mode=0o700)
    old = time.time() - 3 * 24 * 3600
    orphans = [folder / "aaaa.spool", folder / "bbbb.json", folder / "bbbb.lock"]
    for p in orphans:
        p.write_text("{}")
        os.utime(p, (old, old))
    recent = folder / "cccc.spool"
    recent.write_bytes(b"a writer that died a minute ago")
    data = os.urandom(6 * MB)
    with small_fs.open("auto/x.bin", "wb") as f:
        write_in_blocks(f, data)  # spills: the folder is cleaned by age, at most once per interval
    assert [p.name for p in folder.iterdir()] == ["cccc.spool"]
    assert small_fs.cat_file("auto/x.bin") == data
    # a long-running process (a server, a mount) cleans again once the interval has passed
    later = folder / "dddd.spool"
    later.write_bytes(b"kept by an upload that failed on a server running for weeks")
    os.utime(later, (old, old))
    with small_fs.open("auto/y.bin", "wb") as f:
        write_in_blocks(f, data)
    assert later.exists(), "within the interval: no second listing"
    monkeypatch.setattr(spool_module, "AUTO_CLEAN_INTERVAL", 0.0)
    with small_fs.open("auto/z.bin", "wb") as f:
        write_in_blocks(f, data)
    assert [p.name for p in folder.iterdir()] == ["cccc.spool"]


def test_source_truncated_during_upload_stops_at_once_and_keeps_session(emulator: Any, make_fs: Any, uid: str,
                                                                        spool_dir: Path, tmp_path: Path) -> None:
    fs = make_fs(as_user=uid, spool_dir=str(spool_dir), spool_threshold=MB, upload_workers=1)
    data = os.urandom(MIN_SESSION_SIZE + MB)
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    class Truncate(Callback):
        def call(self, *args: Any, **kwargs: Any) -> None:
            if self.value > 9 * MB and src.stat().st_size == len(data):
                os.truncate(src, 12 * MB)  # the second part is being sent: it ends early

    mark = Mark(emulator, uid)
    with pytest.raises(UploadIncomplete, match="ended .* early") as info:
        fs.put_file(str(src), "t/src.bin", callback=Truncate())
    # part 1 whole, part 2 cut short once: a source that ended early is not re-sent as a network failure would be
    assert mark.count("PUT", PART) <= 2
    assert isinstance(info.value.__cause__, OSError)
    assert not fs.exists("t/src.bin")
    # the content restored, the same put resumes the session and sends the rest: each part is read whole
    # before it is sent (issue 20), so parts 1 and 2 went out and part 3 is what the source lacked
    src.write_bytes(data)
    mark = Mark(emulator, uid)
    fs.put_file(str(src), "t/src.bin")
    assert mark.count("POST", SESSIONS) == 0 and mark.count("PUT", PART, 200) == 1
    assert fs.cat_file("t/src.bin") == data


def test_put_file_of_a_kept_spool_file_resumes_and_empties_the_spool(emulator: Any, small_fs: Any, uid: str,
                                                                     spool_dir: Path) -> None:
    data = os.urandom(MIN_SESSION_SIZE + 1)
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
        with pytest.raises(UploadIncomplete) as info:
            with small_fs.open("kp/x.bin", "wb") as f:
                write_in_blocks(f, data)
    mark = Mark(emulator, uid)
    small_fs.put_file(info.value.spool_path, "kp/x.bin")
    assert mark.count("PUT", PART) == 0 and mark.count("POST", COMMIT) == 1
    assert small_fs.cat_file("kp/x.bin") == data
    assert_private_and_empty(user_folder(spool_dir, uid))


@pytest.mark.parametrize("size", [100_000, 3 * MB, MIN_SESSION_SIZE + 1])
def test_writer_buffer_callback_is_byte_granular(small_fs: Any, size: int) -> None:
    """In memory, spooled under the session minimum, chunked: the writer's callback sees every byte once.

    (``BoxFile`` hands ``fs.open(..., callback=cb)`` to its buffer as ``buffer.callback``.)
    """
    from boxfs.upload import make_write_buffer

    data = os.urandom(size)
    buffer = make_write_buffer(small_fs, "cb/x.bin")
    calls: list[int] = []

    class Count(Callback):
        def call(self, *args: Any, **kwargs: Any) -> None:
            calls.append(self.value)

    cb = Count()
    buffer.callback = cb  # type: ignore[attr-defined]
    try:
        for i in range(0, size, MB):
            buffer.write(data[i:i + MB])
        small_fs._upload_buffer("cb/x.bin", buffer)
    finally:
        buffer.close()
    assert cb.size == cb.value == size
    assert len(calls) >= size // MB
    assert small_fs.cat_file("cb/x.bin") == data


def test_destination_folder_deleted_before_upload_is_a_clean_refusal(emulator: Any, small_fs: Any, make_fs: Any,
                                                                     uid: str, spool_dir: Path) -> None:
    small_fs.makedirs("gone")
    small_fs.ls("gone")
    make_fs(as_user=uid).rm("gone", recursive=True)  # behind small_fs's back: its cache still has the folder
    mark = Mark(emulator, uid)
    with pytest.raises(FileNotFoundError):
        small_fs.pipe_file("gone/x.bin", os.urandom(MIN_SESSION_SIZE + 1))
    assert mark.count("PUT", PART) == 0
    folder = user_folder(spool_dir, uid)
    assert not folder.exists() or list(folder.glob("*.json")) == []


def test_part_answer_lost_counts_as_done_via_409(emulator: Any, small_fs: Any, uid: str) -> None:
    """A part that landed but whose answer was cut is re-sent; Box's 409 overlap says it is there."""
    data = os.urandom(MIN_SESSION_SIZE + 1)
    mark = Mark(emulator, uid)
    with injected_faults(emulator, rate=1.0, kinds=("drop_after",), route=r"/files/upload_sessions/[0-9A-F]+$",
                         method="PUT", count=1):
        small_fs.pipe_file("lost/x.bin", data)
    puts = [r for r in mark.records() if r.method == "PUT" and r.route == PART]
    assert [r.status for r in puts].count(409) == 1
    assert mark.count("GET", "/files/upload_sessions/{upload_session_id}/parts") == 1
    assert mark.count("POST", COMMIT) == 1
    assert small_fs.cat_file("lost/x.bin") == data


def test_commit_answer_lost_is_not_committed_twice(emulator: Any, small_fs: Any, make_fs: Any, uid: str) -> None:
    small_fs.pipe_file("once/x.bin", b"old")
    data = os.urandom(MIN_SESSION_SIZE + 1)
    mark = Mark(emulator, uid)
    with injected_faults(emulator, rate=1.0, kinds=("drop_after",), route=r"/commit$", method="POST", count=1):
        small_fs.pipe_file("once/x.bin", data)
    assert mark.count("POST", COMMIT) == 1  # the lost answer was recovered by checking, not by committing again
    assert mark.count("GET", "/files/upload_sessions/{upload_session_id}", 404) == 1
    fresh = make_fs(as_user=uid)
    assert fresh.cat_file("once/x.bin") == data
    versions = fresh.transport.json("GET", fresh.transport.api(f"/files/{fresh.info('once/x.bin')['id']}/versions"))
    assert versions.get("total_count") == 1  # one earlier version: "old"; the new content landed once
