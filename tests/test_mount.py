"""Real FUSE mounts driven with ordinary shell tools (cp, dd, mv, rm, rsync, touch, df).

Each test mounts a filesystem in a background thread of the test process, waits until the
kernel reports the mount, runs the tools in subprocesses against it, and checks the result
on the filesystem behind the mount.  Teardown always unmounts (lazily if busy), so a failing
test never leaves a stale mount behind.

The layer is tested over two backends: a local directory (an fsspec ``LocalFileSystem``, which
makes failures easy to tell apart from Box behaviour) and ``BoxFileSystem`` on the emulator,
which is the real target.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileSystem
from support import injected_faults

from boxfs.mount import mount, unmount


def _fuse_unavailable() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent (no FUSE in this kernel/container)"
    if not shutil.which("fusermount3"):
        return "fusermount3 is not installed (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:  # mfusepy raises when libfuse3 cannot be loaded
        return f"mfusepy/libfuse3 unavailable: {exc}"
    return None


_REASON = _fuse_unavailable()
needs_fuse = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def sh(cmd: str, cwd: Path, timeout: float = 120) -> str:
    """Run a shell command; fail the test with its stderr if it fails."""
    proc = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd!r} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def sha1_of(path: Path | str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- backends
class TimedLocalFileSystem(LocalFileSystem):
    """A local directory with the two time APIs BoxFileSystem offers (``modified=`` on upload
    and ``set_modified``), so ``touch -d`` can be checked on the local backend too."""

    cachable = False

    def set_modified(self, path: str, modified: datetime) -> None:
        ts = modified.timestamp()
        os.utime(self._strip_protocol(path), (ts, ts))

    def put_file(self, lpath: str, rpath: str, callback: Any = None, **kwargs: Any) -> None:
        modified = kwargs.pop("modified", None)
        super().put_file(lpath, rpath, callback=callback, **kwargs)
        if modified is not None:
            self.set_modified(rpath, modified)


@dataclass
class Backend:
    """What a test needs to know about the filesystem behind a mount."""

    name: str
    fs: Any
    root: str
    mtime: Callable[[str], float]  # modification time of a path (relative to the mount) on the server
    sha1_count: Callable[[str], int]  # how many files the server holds with this SHA1
    remove_dir: Callable[[str], None]  # remove a folder behind the mount's back
    big_mb: int
    uploads: Callable[[], int] | None = None  # upload requests made so far (Box only)
    listings: Callable[[], int] | None = None  # folder listing requests made so far (Box only)
    space: Callable[[], tuple[int, int]] | None = None  # (used, total) bytes on the server (Box only)


def _local_backend(tmp_path: Path) -> Backend:
    back = tmp_path / "backing"
    back.mkdir()

    def count(sha1: str) -> int:
        return sum(1 for p in back.rglob("*") if p.is_file() and sha1_of(p) == sha1)

    return Backend(
        name="local",
        fs=TimedLocalFileSystem(),
        root=str(back),
        mtime=lambda rel: os.stat(back / rel).st_mtime,
        sha1_count=count,
        remove_dir=lambda rel: shutil.rmtree(back / rel),
        big_mb=12,
    )


def _space_of(fs: Any) -> tuple[int, int]:
    me = fs.transport.json("GET", fs.transport.api("/users/me"), params={"fields": "space_used,space_amount"})
    return int(me["space_used"]), int(me["space_amount"])


def _box_backend(request: pytest.FixtureRequest) -> Backend:
    """BoxFileSystem on the emulator, acting as a user created for this test (an empty root).

    The checks use a second filesystem instance for the same user, so they see what the server
    holds, not what the mount's own cache believes."""
    make_fs = request.getfixturevalue("make_fs")
    emulator = request.getfixturevalue("emulator")
    user_id, _login = request.getfixturevalue("new_user")("mount")
    mounted_fs = make_fs(as_user=user_id)

    def server() -> Any:
        return make_fs(as_user=user_id)

    def count(sha1: str) -> int:
        found = server().find("", detail=True)
        return sum(1 for info in found.values() if info["type"] == "file" and info.get("sha1") == sha1)

    return Backend(
        name="box",
        fs=mounted_fs,
        root="",
        mtime=lambda rel: server().info(rel)["modified"].timestamp(),
        sha1_count=count,
        remove_dir=lambda rel: server().rm(rel, recursive=True),
        big_mb=60,
        uploads=lambda: sum(
            emulator.request_log.count(method="POST", route=route, user_id=user_id)
            for route in (
                "/files/content",
                "/files/{file_id}/content",
                "/files/upload_sessions/{upload_session_id}/commit",
            )
        ),
        space=lambda: _space_of(server()),
        listings=lambda: emulator.request_log.count(
            method="GET", route="/folders/{folder_id}/items", user_id=user_id
        ),
    )


@pytest.fixture(params=["local", "box"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "box":
        return _box_backend(request)
    return _local_backend(tmp_path)


FUSECTL = Path("/sys/fs/fuse/connections")
#: A test that keeps a mount busy longer than this is hung: its FUSE connection is aborted so
#: that blocked system calls fail (ENOTCONN) and the test fails instead of hanging the suite.
WATCHDOG_SECONDS = 120.0


def _listed_in_proc_mounts(path: Path) -> bool:
    """Unlike ``os.path.ismount`` this never touches the mount itself (which may be hung)."""
    with open("/proc/mounts") as fh:
        return any(line.split()[1] == str(path) for line in fh)


class Mounted:
    """A live mount in a background thread; ``close`` unmounts it for sure."""

    def __init__(self, fs: Any, root: str, mountpoint: Path, **kwargs: Any) -> None:
        self.path = mountpoint
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.handle = mount(fs, str(mountpoint), foreground=False, root=root, **kwargs)
        assert os.path.ismount(mountpoint)
        self.connection = os.minor(os.stat(mountpoint).st_dev)  # its directory under fusectl
        self.watchdog = threading.Timer(WATCHDOG_SECONDS, self.abort)
        self.watchdog.daemon = True
        self.watchdog.start()

    def abort(self) -> None:
        """Abort the FUSE connection (fusectl), the only cure for a deadlocked filesystem."""
        with open("/proc/mounts") as fh:
            fusectl_mounted = any(line.split()[2] == "fusectl" for line in fh)
        if not fusectl_mounted:
            subprocess.run(["mount", "-t", "fusectl", "none", str(FUSECTL)], check=False, capture_output=True)
        abort_file = FUSECTL / str(self.connection) / "abort"
        if abort_file.exists():
            logging.getLogger(__name__).error("aborting hung FUSE mount %s", self.path)
            abort_file.write_text("1")

    def close(self) -> None:
        self.watchdog.cancel()
        if _listed_in_proc_mounts(self.path):
            try:
                unmount(str(self.path))
            except RuntimeError:
                self.abort()
                subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False)
        self.handle.thread.join(30)


@pytest.fixture
def mounter(tmp_path: Path) -> Iterator[Callable[..., Mounted]]:
    mounts: list[Mounted] = []

    def make(fs: Any, root: str, name: str = "main", **kwargs: Any) -> Mounted:
        m = Mounted(fs, root, tmp_path / f"mnt-{name}", **kwargs)  # never inside a backing dir
        mounts.append(m)
        return m

    yield make
    for m in reversed(mounts):
        m.close()
    for m in mounts:
        assert not _listed_in_proc_mounts(m.path), f"{m.path} is still mounted"


@pytest.fixture
def mnt(backend: Backend, mounter: Callable[..., Mounted]) -> Path:
    return mounter(backend.fs, backend.root).path


# ------------------------------------------------------------------- tests
@needs_fuse
def test_shell_tools(backend: Backend, mnt: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.write(os.urandom(backend.big_mb * 1024 * 1024 + 12345))
    digest = sha1_of(big)

    # cp in and out: same bytes, one upload, and exactly one file of that content on the server
    uploads_before = backend.uploads() if backend.uploads else 0
    sh(f"cp {big} {mnt}/big.bin", mnt)
    if backend.uploads:
        assert backend.uploads() - uploads_before == 1
    sh(f"cp {mnt}/big.bin {tmp_path}/back.bin", mnt)
    assert sha1_of(tmp_path / "back.bin") == digest
    assert backend.sha1_count(digest) == 1

    # ls -la shows the size; twice in a row costs at most one listing request
    listings_before = backend.listings() if backend.listings else 0
    sh("ls -la", mnt)
    listing = sh("ls -la", mnt)
    if backend.listings:
        assert backend.listings() - listings_before <= 1
    line = next(ln for ln in listing.splitlines() if ln.endswith(" big.bin"))
    assert line.startswith("-rw") and str(big.stat().st_size) in line.split()

    # dd of a range equals the same range of the original
    rng = sh("dd if=big.bin bs=4096 skip=1000 count=3 status=none | sha1sum", mnt).split()[0]
    with open(big, "rb") as fh:
        fh.seek(4096 * 1000)
        assert rng == hashlib.sha1(fh.read(3 * 4096)).hexdigest()

    # mkdir -p, mv (file into folder, folder rename), rm -r
    sh("mkdir -p a/b/c && mv big.bin a/b/c/moved.bin && mv a/b a/renamed", mnt)
    assert sorted(os.listdir(mnt)) == ["a"]
    assert os.listdir(mnt / "a/renamed/c") == ["moved.bin"]
    assert sha1_of(mnt / "a/renamed/c/moved.bin") == digest
    sh("rm -r a", mnt)
    assert os.listdir(mnt) == []
    assert backend.sha1_count(digest) == 0

    # touch -d on a new and on an existing file: the server keeps that time
    sh("echo hi > old.txt && touch -d '2021-03-04 05:06:07 UTC' old.txt new.txt", mnt)
    want = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc).timestamp()
    assert backend.mtime("old.txt") == pytest.approx(want, abs=1)
    assert backend.mtime("new.txt") == pytest.approx(want, abs=1)
    assert (mnt / "old.txt").stat().st_mtime == pytest.approx(want, abs=1)
    assert (mnt / "old.txt").read_bytes() == b"hi\n"

    # df reports a filesystem with some capacity
    df = sh("df -B1 .", mnt).splitlines()[1].split()
    assert df[0] == "boxfs" and int(df[1]) > 0
    if backend.space:  # the user's Box quota, in 4 KiB blocks
        used, total = backend.space()
        assert int(df[1]) == total // 4096 * 4096
        assert abs(int(df[2]) - used) <= 4096


@needs_fuse
def test_rsync_tree_in(backend: Backend, mnt: Path, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(70_000),
        "sub/deeper/c.txt": b"",
        "d e.txt": b"space",
    }
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    os.utime(src / "a.txt", (1_600_000_000, 1_600_000_000))
    for folder in (src / "sub", src / "sub/deeper", src):  # rsync -a then tries to set folder times
        os.utime(folder, (1_500_000_000, 1_500_000_000))
    sh(f"rsync -a {src}/ {mnt}/tree/", tmp_path)
    for rel, data in files.items():
        assert (mnt / "tree" / rel).read_bytes() == data
    assert backend.mtime("tree/a.txt") == pytest.approx(1_600_000_000, abs=1)
    # a second run finds nothing to do, so it transfers nothing
    out = sh(f"rsync -a --itemize-changes {src}/ {mnt}/tree/", tmp_path)
    assert not [ln for ln in out.splitlines() if ln.startswith(">f")], out


@needs_fuse
def test_random_writes_rdwr_truncate_append(backend: Backend, mnt: Path) -> None:
    p = mnt / "r.bin"
    p.write_bytes(b"0123456789")
    with open(p, "r+b") as fh:  # O_RDWR on an existing file: content is kept, writes land in place
        assert fh.read(3) == b"012"
        fh.seek(8)
        fh.write(b"AB")
        fh.seek(2)
        fh.write(b"xy")
        fh.seek(0)
        assert fh.read() == b"01xy4567AB"
    assert p.read_bytes() == b"01xy4567AB"
    with open(p, "ab") as fh:
        fh.write(b"+tail")
    assert p.read_bytes() == b"01xy4567AB+tail"
    os.truncate(p, 4)  # not open anywhere: rewritten right away
    assert p.read_bytes() == b"01xy"
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, 2)
        os.pwrite(fd, b"Z", 5)  # a hole is zero-filled
    finally:
        os.close(fd)
    assert p.read_bytes() == b"01\0\0\0Z"
    assert p.stat().st_size == 6


@needs_fuse
def test_failed_upload_is_eio_and_logged(
    backend: Backend, mnt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (mnt / "doomed").mkdir()
    fd = os.open(mnt / "doomed" / "f.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"data that cannot be stored")
    backend.remove_dir("doomed")  # the target folder vanishes on the server before close
    with caplog.at_level(logging.ERROR, logger="boxfs.mount"), pytest.raises(OSError) as err:
        os.close(fd)
    assert err.value.errno == errno.EIO
    # logged with the reason: the target and the error the filesystem raised
    assert any(
        "upload of" in r.getMessage() and "f.txt" in r.getMessage() and "FileNotFoundError" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


@needs_fuse
def test_read_only_mount(backend: Backend, mounter: Callable[..., Mounted]) -> None:
    backend.fs.pipe_file(f"{backend.root}/ro.txt", b"read me")
    m = mounter(backend.fs, backend.root, name="ro", read_only=True)
    assert (m.path / "ro.txt").read_bytes() == b"read me"
    for action in (
        lambda: (m.path / "new.txt").write_bytes(b"x"),
        lambda: (m.path / "dir").mkdir(),
        lambda: (m.path / "ro.txt").unlink(),
    ):
        with pytest.raises(OSError) as err:
            action()
        assert err.value.errno == errno.EROFS


class SlowUploadLocalFileSystem(TimedLocalFileSystem):
    """Uploads take ``delay`` seconds, like a large upload to Box."""

    delay = 3.0

    def put_file(self, lpath: str, rpath: str, callback: Any = None, **kwargs: Any) -> None:
        time.sleep(self.delay)
        super().put_file(lpath, rpath, callback=callback, **kwargs)


@needs_fuse
def test_slow_upload_does_not_block_other_files(tmp_path: Path, mounter: Callable[..., Mounted]) -> None:
    back = tmp_path / "slow"
    back.mkdir()
    (back / "other.txt").write_bytes(b"readable meanwhile")
    m = mounter(SlowUploadLocalFileSystem(), str(back), name="slow")
    done = threading.Event()

    def writer() -> None:
        (m.path / "slow.bin").write_bytes(b"x" * 100_000)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.5)  # the writer is now inside its 3 s upload
    assert not done.is_set()
    # Read and list while the upload is still running: had they waited for it, it would be done by now.
    assert (m.path / "other.txt").read_bytes() == b"readable meanwhile"
    os.listdir(m.path)
    assert not done.is_set()
    t.join(10)
    assert done.is_set() and (back / "slow.bin").stat().st_size == 100_000


@needs_fuse
def test_parallel_writers_and_readers(backend: Backend, mnt: Path, tmp_path: Path) -> None:
    """Several files copied in at once while another is read: every byte lands where it belongs."""
    sources = []
    for i in range(4):
        src = tmp_path / f"p{i}.bin"
        src.write_bytes(os.urandom(3 * 1024 * 1024 + i))
        sources.append(src)
    (mnt / "reader.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    want_reader = sha1_of(mnt / "reader.bin")
    copies = " & ".join(f"cp {src} {mnt}/{src.name}" for src in sources)
    out = sh(f"{copies} & for i in 1 2 3; do sha1sum reader.bin; done; wait", mnt)
    assert {ln.split()[0] for ln in out.splitlines()} == {want_reader}
    for src in sources:
        assert sha1_of(mnt / src.name) == sha1_of(src)


def _box_fixtures(
    request: pytest.FixtureRequest,
) -> tuple[Callable[..., Any], Callable[..., tuple[str, str]]]:
    if _REASON is not None:
        pytest.skip(_REASON)
    return request.getfixturevalue("make_fs"), request.getfixturevalue("new_user")


def test_two_users_see_only_their_own_files(
    request: pytest.FixtureRequest, mounter: Callable[..., Mounted]
) -> None:
    make_fs, new_user = _box_fixtures(request)
    (u1, _), (u2, _) = new_user("mnt1"), new_user("mnt2")
    m1 = mounter(make_fs(as_user=u1), "", name="u1")
    m2 = mounter(make_fs(as_user=u2), "", name="u2")
    (m1.path / "one.txt").write_bytes(b"user one")
    (m1.path / "dir1").mkdir()
    (m2.path / "two.txt").write_bytes(b"user two")
    assert sorted(os.listdir(m1.path)) == ["dir1", "one.txt"]
    assert os.listdir(m2.path) == ["two.txt"]
    assert not (m2.path / "one.txt").exists() and not (m1.path / "two.txt").exists()
    assert [i["name"] for i in make_fs(as_user=u2).ls("", detail=True)] == ["two.txt"]
    assert sorted(i["name"] for i in make_fs(as_user=u1).ls("", detail=True)) == ["dir1", "one.txt"]


def test_names_box_refuses_fail_at_once(
    request: pytest.FixtureRequest, mounter: Callable[..., Mounted]
) -> None:
    """A name Box would refuse fails when created (EINVAL / ENAMETOOLONG), not as EIO on close."""
    make_fs, new_user = _box_fixtures(request)
    user, _ = new_user("mntn")
    m = mounter(make_fs(as_user=user), "", name="n")
    for name, code in (
        ("trailing ", errno.EINVAL),
        ("back\\slash", errno.EINVAL),
        ("x" * 256, errno.ENAMETOOLONG),
    ):
        with pytest.raises(OSError) as err:
            os.open(m.path / name, os.O_CREAT | os.O_WRONLY)
        assert err.value.errno == code, name
        with pytest.raises(OSError) as err:
            os.mkdir(m.path / name)
        assert err.value.errno == code, name
    assert os.listdir(m.path) == []


@needs_fuse
def test_errors_reach_the_shell_as_errno(backend: Backend, mnt: Path) -> None:
    (mnt / "d").mkdir()
    (mnt / "d" / "f.txt").write_bytes(b"x")
    with pytest.raises(OSError) as err:
        os.rmdir(mnt / "d")
    assert err.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileExistsError):
        os.mkdir(mnt / "d")
    with pytest.raises(FileNotFoundError):
        os.unlink(mnt / "missing.txt")
    with pytest.raises(FileNotFoundError):
        os.rename(mnt / "missing.txt", mnt / "other.txt")
    with pytest.raises(NotADirectoryError):
        os.listdir(mnt / "d" / "f.txt")
    (mnt / "e").mkdir()
    with pytest.raises(OSError) as err:
        os.rename(mnt / "e", mnt / "d")  # onto a non-empty folder
    assert err.value.errno == errno.ENOTEMPTY
    assert (mnt / "d" / "f.txt").read_bytes() == b"x"


@needs_fuse
def test_rename_replaces_existing_file(backend: Backend, mnt: Path, tmp_path: Path) -> None:
    """What rsync and editors do: write a temporary file, then rename it over the old one."""
    (mnt / "doc.txt").write_bytes(b"old version")
    (mnt / ".doc.txt.tmp").write_bytes(b"new version")
    os.rename(mnt / ".doc.txt.tmp", mnt / "doc.txt")
    assert os.listdir(mnt) == ["doc.txt"]
    assert (mnt / "doc.txt").read_bytes() == b"new version"
    # rsync replacing a changed file the same way
    src = tmp_path / "src"
    src.mkdir()
    (src / "doc.txt").write_bytes(b"rsynced version, longer")
    sh(f"rsync -a {src}/ {mnt}/", tmp_path)
    assert (mnt / "doc.txt").read_bytes() == b"rsynced version, longer"
    assert backend.sha1_count(hashlib.sha1(b"rsynced version, longer").hexdigest()) == 1
    assert backend.sha1_count(hashlib.sha1(b"new version").hexdigest()) == 0


def test_cli_mount_stops_cleanly(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """``boxfs mount --foreground`` serves in this process; ``boxfs unmount`` and Ctrl-C end it with exit 0."""
    make_fs, new_user = _box_fixtures(request)
    emulator = request.getfixturevalue("emulator")
    user, _ = new_user("mntcli")
    config = tmp_path / "config.json"
    config.write_text(request.getfixturevalue("jwt_config"))
    base = [
        sys.executable,
        "-m",
        "boxfs",
        "--config",
        str(config),
        "--base-url",
        emulator.url,
        "--as-user",
        user,
    ]
    mnt = tmp_path / "mnt-cli"
    mnt.mkdir()
    for stop in ("unmount", "sigint"):
        proc = subprocess.Popen([*base, "mount", "box://", str(mnt), "--foreground"], stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "boxfs mount did not mount within 30 s"
                time.sleep(0.1)
            (mnt / f"{stop}.txt").write_bytes(stop.encode())
            if stop == "unmount":
                subprocess.run([*base, "unmount", str(mnt)], check=True, timeout=30)
            else:
                proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
            assert not _listed_in_proc_mounts(mnt)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if _listed_in_proc_mounts(mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    assert make_fs(as_user=user).cat_file("unmount.txt") == b"unmount"
    assert make_fs(as_user=user).cat_file("sigint.txt") == b"sigint"


def test_rate_limited_upload_does_not_block_other_files(
    request: pytest.FixtureRequest, mounter: Callable[..., Mounted]
) -> None:
    """On Box: an upload held back by a 429 (Retry-After: 2) does not stall reads of other files."""
    make_fs, new_user = _box_fixtures(request)
    emulator = request.getfixturevalue("emulator")
    user, _ = new_user("mntslow")
    make_fs(as_user=user).pipe_file("other.txt", b"readable meanwhile")
    m = mounter(make_fs(as_user=user), "", name="slowbox")
    assert (m.path / "other.txt").read_bytes() == b"readable meanwhile"  # warm the listing
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            (m.path / "slow.bin").write_bytes(b"y" * 50_000)
        except BaseException as exc:  # reported by the assertions below
            errors.append(exc)
        done.set()

    with injected_faults(emulator, rate=1.0, kinds=("429",), route=r"/files/content$", method="POST", retry_after=2,
                         count=1):
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)  # the upload is now waiting out its Retry-After
        assert not done.is_set()
        # Read and list while the upload still waits: had they queued behind it, it would be done.
        assert (m.path / "other.txt").read_bytes() == b"readable meanwhile"
        assert "other.txt" in os.listdir(m.path)
        assert not done.is_set()
        t.join(30)
    assert done.is_set() and not errors, errors
    assert make_fs(as_user=user).cat_file("slow.bin") == b"y" * 50_000


def test_case_only_rename_on_box(request: pytest.FixtureRequest, mounter: Callable[..., Mounted]) -> None:
    """Box names are case-insensitive: renaming "a.txt" to "A.txt" must rename it, not delete it."""
    make_fs, new_user = _box_fixtures(request)
    user, _ = new_user("mntcase")
    m = mounter(make_fs(as_user=user), "", name="case")
    (m.path / "a.txt").write_bytes(b"keep me")
    (m.path / "dir").mkdir()
    os.rename(m.path / "a.txt", m.path / "A.txt")
    os.rename(m.path / "dir", m.path / "DIR")
    assert sorted(os.listdir(m.path)) == ["A.txt", "DIR"]
    assert (m.path / "A.txt").read_bytes() == b"keep me"
    assert sorted(i["name"] for i in make_fs(as_user=user).ls("", detail=True)) == ["A.txt", "DIR"]
    with pytest.raises(OSError) as err:  # Box refuses to move a folder into itself
        os.rename(m.path / "DIR", m.path / "dir" / "inner")
    assert err.value.errno == errno.EINVAL


# ----------------------------------------------------- names, failures, faults
FAST_RETRY = {"max_attempts": 2, "backoff_base": 0.005, "backoff_max": 0.02, "max_retry_after": 0.1}
UPLOAD_ROUTE = r"/files/content$|/files/\d+/content$|/upload_sessions"


def _names_on(backend: Backend, rel: str = "") -> set[str]:
    """Names the server holds in a folder (a fresh look for Box, the backing directory for local)."""
    if backend.name == "local":
        return set(os.listdir(os.path.join(backend.root, rel)))
    fresh = backend.fs.__class__(**{**backend.fs._config(), "skip_instance_cache": True})
    return {i["name"].rsplit("/", 1)[-1] for i in fresh.ls(rel, detail=True)}


@needs_fuse
def test_glob_characters_are_literal_names(backend: Backend, mnt: Path, tmp_path: Path) -> None:
    """``rm``/``mv``/``cp``/``ls``/``cat`` on names with ``[1]``, ``?``, ``*``: exactly the file named."""
    for name in ("report [1].pdf", "report 1.pdf", "data?.csv", "dataX.csv", "star*.txt", "star1.txt", "star2.txt"):
        (mnt / name).write_bytes(name.encode())
    sh('rm "report [1].pdf"', mnt)
    sh('rm "data?.csv"', mnt)
    sh('mv "star*.txt" renamed.txt', mnt)
    sh('cp "report 1.pdf" "copy [2] *?.pdf"', mnt)
    assert sh('cat "copy [2] *?.pdf"', mnt) == "report 1.pdf"
    expected = {"report 1.pdf", "dataX.csv", "renamed.txt", "star1.txt", "star2.txt", "copy [2] *?.pdf"}
    assert set(sh("ls -1", mnt).splitlines()) == expected
    assert _names_on(backend) == expected
    assert (mnt / "renamed.txt").read_bytes() == b"star*.txt"
    assert (mnt / "star1.txt").read_bytes() == b"star1.txt"
    sh('mkdir "dir [a]" "dir a" && mv "copy [2] *?.pdf" "dir [a]/" && rmdir "dir a"', mnt)
    assert sh('ls "dir [a]"', mnt).splitlines() == ["copy [2] *?.pdf"]
    assert "dir [a]" in _names_on(backend) and "dir a" not in _names_on(backend)


@needs_fuse
def test_trailing_space_and_control_characters_refused_on_box(
    request: pytest.FixtureRequest, mounter: Callable[..., Mounted]
) -> None:
    """Names Box refuses fail at once with EINVAL (no request), and nothing appears."""
    make_fs, new_user = _box_fixtures(request)
    emulator = request.getfixturevalue("emulator")
    user, _ = new_user("mntname")
    m = mounter(make_fs(as_user=user), "", name="names")
    (m.path / "ok.txt").write_bytes(b"ok")
    writes = emulator.request_log.count(method="POST", user_id=user) + emulator.request_log.count(
        method="PUT", user_id=user
    )
    for bad in ("trailing ", "bell\x07.txt"):
        for action in (
            lambda bad=bad: (m.path / bad).write_bytes(b"x"),
            lambda bad=bad: (m.path / bad).mkdir(),
            lambda bad=bad: os.rename(m.path / "ok.txt", m.path / bad),
        ):
            with pytest.raises(OSError) as err:
                action()
            assert err.value.errno == errno.EINVAL
    proc = subprocess.run(["touch", str(m.path / "trailing ")], capture_output=True, text=True)
    assert proc.returncode != 0 and "Invalid argument" in proc.stderr
    assert emulator.request_log.count(method="POST", user_id=user) + emulator.request_log.count(
        method="PUT", user_id=user
    ) == writes
    assert os.listdir(m.path) == ["ok.txt"]


@needs_fuse
def test_mv_no_clobber_keeps_the_target(backend: Backend, mnt: Path) -> None:
    """``mv -n`` asks for RENAME_NOREPLACE; an existing target must survive it untouched."""
    (mnt / "a.txt").write_bytes(b"a")
    (mnt / "b.txt").write_bytes(b"b")
    subprocess.run(["mv", "-n", "a.txt", "b.txt"], cwd=mnt, capture_output=True, check=False)
    assert (mnt / "b.txt").read_bytes() == b"b"
    assert (mnt / "a.txt").read_bytes() == b"a"
    assert _names_on(backend) == {"a.txt", "b.txt"}


@needs_fuse
def test_failed_upload_keeps_failing_until_it_lands(
    request: pytest.FixtureRequest, mounter: Callable[..., Mounted]
) -> None:
    """Two handles on a file whose upload fails: every fsync/close is EIO (fsync -> EIO -> fsync ->
    EIO) while Box has nothing; once Box accepts uploads again the next fsync lands the data."""
    make_fs, new_user = _box_fixtures(request)
    emulator = request.getfixturevalue("emulator")
    user, _ = new_user("mntdirty")
    m = mounter(make_fs(as_user=user, retry=FAST_RETRY), "", name="dirty")
    data = os.urandom(200_000)
    path = m.path / "precious.bin"
    first = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    second = os.open(path, os.O_WRONLY)
    open_fds = [first, second]
    try:
        with injected_faults(emulator, rate=1.0, kinds=("503",), route=UPLOAD_ROUTE, method="POST") as rule:
            os.write(first, data)
            for fd in (first, second, first, second):
                with pytest.raises(OSError) as err:
                    os.fsync(fd)
                assert err.value.errno == errno.EIO
            open_fds.remove(first)
            with pytest.raises(OSError) as err:
                os.close(first)
            assert err.value.errno == errno.EIO
            assert not make_fs(as_user=user).exists("precious.bin")
            rule.remaining = 0
            os.fsync(second)  # Box is back: this upload lands
            digest = hashlib.sha1(make_fs(as_user=user).cat_file("precious.bin")).hexdigest()
            assert digest == hashlib.sha1(data).hexdigest()
            open_fds.remove(second)
            os.close(second)
    finally:
        for fd in open_fds:  # never leave a descriptor on the mount open (its close would hang at exit)
            with contextlib.suppress(OSError):
                os.close(fd)
    landed = emulator.request_log.filter(method="POST", route="/files/content", user_id=user, status=201)
    assert len(landed) == 1  # clean after landing: the close uploaded nothing more


@needs_fuse
def test_round_trip_renames_and_deletes_under_faults(
    request: pytest.FixtureRequest, mounter: Callable[..., Mounted], tmp_path: Path
) -> None:
    """60 MB cp in and out, renames (also over an existing file) and deletes with 15% of requests
    failing: every byte checked by SHA-1, nothing lost, nothing left behind."""
    make_fs, new_user = _box_fixtures(request)
    emulator = request.getfixturevalue("emulator")
    user, _ = new_user("mntfault")
    retry = {"max_attempts": 12, "backoff_base": 0.005, "backoff_max": 0.05, "max_retry_after": 1.0}
    m = mounter(make_fs(as_user=user, retry=retry), "", name="faults")
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        for _ in range(60):
            fh.write(os.urandom(1 << 20))
    small = {f"f{i} [{i}].txt": os.urandom(10_000 + i) for i in range(6)}
    with injected_faults(emulator, rate=0.15, kinds=("500", "503", "429", "drop"), seed=60) as rule:
        sh(f'cp "{big}" "{m.path}/big [1].bin"', tmp_path, timeout=600)
        for name, data in small.items():
            (m.path / name).write_bytes(data)
        sh('mv "big [1].bin" "big*.bin"', m.path)
        sh('mv "f0 [0].txt" "f1 [1].txt"', m.path)  # over an existing file
        sh('rm "f2 [2].txt"', m.path)
        sh('mkdir "d?" && mv "f3 [3].txt" "d?/"', m.path)
        sh(f'cp "{m.path}/big*.bin" "{tmp_path}/back.bin"', tmp_path, timeout=600)
    assert rule.fired >= 10  # the faults were real
    assert sha1_of(tmp_path / "back.bin") == sha1_of(big)
    box = make_fs(as_user=user)
    assert {i["name"] for i in box.ls("", detail=True)} == {
        "big*.bin", "f1 [1].txt", "f4 [4].txt", "f5 [5].txt", "d?"
    }
    assert box.info("big*.bin")["sha1"] == sha1_of(big)
    assert box.cat_file("f1 [1].txt") == small["f0 [0].txt"]
    assert box.cat_file("d?/f3 [3].txt") == small["f3 [3].txt"]
    for name in ("f4 [4].txt", "f5 [5].txt"):
        assert box.cat_file(name) == small[name]


@needs_fuse
def test_spool_is_cleaned_while_mounted(request: pytest.FixtureRequest, mounter: Callable[..., Mounted]) -> None:
    """The mount process removes old upload spool state periodically, and leaves fresh state alone."""
    from boxfs.upload.spoolfolder import SPOOL_SUFFIX, user_spool_dir

    make_fs, new_user = _box_fixtures(request)
    user, _ = new_user("mntclean")
    fs = make_fs(as_user=user)
    with user_spool_dir(fs) as spool_folder:
        folder = spool_folder.path
    stale, fresh = folder / f"{'a' * 24}{SPOOL_SUFFIX}", folder / f"{'b' * 24}{SPOOL_SUFFIX}"
    stale.write_bytes(b"left by a crashed upload")
    fresh.write_bytes(b"recent")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    m = mounter(fs, "", name="clean", clean_interval=0.1, clean_max_age=3600)
    cleaner = m.handle.operations.cleaner
    deadline = time.monotonic() + 30
    # a pass counts itself once it returns: the file can be gone a moment before the count moves
    while (stale.exists() or cleaner.runs < 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stale.exists() and fresh.exists()
    assert cleaner.runs >= 1


@needs_fuse
def test_full_spool_disk_fails_the_write_and_keeps_the_old_version(
    request: pytest.FixtureRequest, mounter: Callable[..., Mounted], tmp_path: Path
) -> None:
    """``dd`` into a mount whose spool disk fills up: ENOSPC for dd, the previous version untouched."""
    make_fs, new_user = _box_fixtures(request)
    tiny = request.getfixturevalue("tiny_disk")
    user, _ = new_user("mntfull")
    make_fs(as_user=user).pipe_file("data.bin", b"previous version")
    m = mounter(make_fs(as_user=user), "", name="full", spool_dir=str(tiny))
    proc = subprocess.run(
        ["dd", "if=/dev/zero", f"of={m.path / 'data.bin'}", "bs=1M", "count=16"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "No space left on device" in proc.stderr
    assert make_fs(as_user=user).cat_file("data.bin") == b"previous version"
    assert (m.path / "data.bin").read_bytes() == b"previous version"


@needs_fuse
def test_shell_redirect_over_an_existing_file_is_one_version(backend: Backend, mnt: Path) -> None:
    """``echo x > f`` closes a dup of the O_TRUNC descriptor before writing: no empty version in between."""
    (mnt / "notes.txt").write_bytes(b"old content")
    before = backend.uploads() if backend.uploads else 0
    sh("echo new content > notes.txt", mnt)
    if backend.uploads:
        assert backend.uploads() - before == 1
    assert (mnt / "notes.txt").read_bytes() == b"new content\n"
    sh(": > notes.txt", mnt)  # truncating alone still empties it (on release)
    deadline = time.monotonic() + 10
    while (mnt / "notes.txt").stat().st_size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (mnt / "notes.txt").read_bytes() == b""


@needs_fuse
def test_file_deleted_while_open_stays_deleted(backend: Backend, mnt: Path) -> None:
    """Writes through a descriptor of a deleted file never bring it back (POSIX unlink semantics)."""
    fd = os.open(mnt / "gone.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"first")
        os.unlink(mnt / "gone.txt")
        os.write(fd, b" then more")
        os.fsync(fd)
    finally:
        os.close(fd)
    assert not (mnt / "gone.txt").exists()
    assert "gone.txt" not in _names_on(backend)


@needs_fuse
def test_rename_of_a_file_still_being_written(backend: Backend, mnt: Path) -> None:
    """A file renamed before its first upload is uploaded once, under the new name only."""
    fd = os.open(mnt / "draft [1].txt", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"written before the rename, ")
        os.rename(mnt / "draft [1].txt", mnt / "final*.txt")
        os.write(fd, b"and after")
    finally:
        os.close(fd)
    assert (mnt / "final*.txt").read_bytes() == b"written before the rename, and after"
    assert _names_on(backend) == {"final*.txt"}
