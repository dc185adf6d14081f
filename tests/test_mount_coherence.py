"""The mount is coherent with Box and reads one version per open (issue 17).

The mount keeps no freshness rule of its own: ``ls`` asks the filesystem, whose cache Box's event
stream keeps true. A real FUSE mount over an emulator of this module's own at 20 ms latency, with the
watcher on (the test session turns its default off: conftest); "elsewhere" is another client with
another app's token and no shared cache.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import admin_app
from test_mount import Mounted, needs_fuse

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator

pytestmark = [needs_fuse, pytest.mark.timeout(180)]

DEADLINE = 15.0  # seconds a change may take to be seen before a test fails (the benchmark measures it)
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def emu() -> Iterator[BoxEmulator]:
    with BoxEmulator(latency=0.02) as emulator:
        yield emulator


@pytest.fixture
def user(emu: BoxEmulator) -> str:
    return emu.create_user(f"m-{uuid.uuid4().hex[:10]}@example.com")


@pytest.fixture
def mounted(emu: BoxEmulator, user: str, tmp_path: Path) -> Iterator[Mounted]:
    app = admin_app(emu)
    fs = BoxFileSystem(jwt_config=app, as_user=user, base_urls=emu.base_urls, skip_instance_cache=True,
                       watch_events=True, spool_dir=str(tmp_path / "spool"))
    m = Mounted(fs, "", tmp_path / "mnt", read_block_size=MiB)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def other(emu: BoxEmulator, user: str) -> BoxFileSystem:
    client_id, secret = emu.create_ccg_app(scopes=("root_readwrite",))
    return BoxFileSystem(client_id=client_id, client_secret=secret, user_id=user, base_urls=emu.base_urls,
                         skip_instance_cache=True, watch_events=False, listings_expiry_time=0)


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not seen within {DEADLINE} s: {what}"
        time.sleep(0.05)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def size_in(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def test_ls_in_the_mount_sees_changes_made_elsewhere(mounted: Mounted, other: BoxFileSystem) -> None:
    mnt = mounted.path
    (mnt / "here").mkdir()
    assert os.listdir(mnt / "here") == []
    steps: list[tuple[Callable[[], Any], list[str]]] = [
        (lambda: other.pipe_file("here/new [1] *.txt", b"made elsewhere"), ["new [1] *.txt"]),
        (lambda: other.mv_literal("here/new [1] *.txt", "here/renamed.txt"), ["renamed.txt"]),
        (lambda: other.pipe_file("here/b.txt", b"b"), ["b.txt", "renamed.txt"]),
        (lambda: other.rm_file("here/renamed.txt"), ["b.txt"]),
    ]
    for change, expected in steps:
        change()
        eventually(lambda expected=expected: sorted(os.listdir(mnt / "here")) == expected, str(expected))
    other.pipe_file("here/b.txt", b"a longer second version")
    eventually(lambda: size_in(mnt / "here" / "b.txt") == 23, "the new version's size")
    assert (mnt / "here" / "b.txt").read_bytes() == b"a longer second version"


def test_ls_of_an_unchanged_folder_costs_no_request(mounted: Mounted, other: BoxFileSystem,
                                                   emu: BoxEmulator) -> None:
    """No listing TTL of the mount's own: while the event stream says nothing changed, ``ls`` answers
    from the filesystem's cache (the mount used to re-list a folder every 10 s)."""
    other.pipe_file("quiet/x.txt", b"x")
    eventually(lambda: os.path.isdir(mounted.path / "quiet") and os.listdir(mounted.path / "quiet") == ["x.txt"],
               "quiet/x.txt")
    time.sleep(1.0)  # the events of the change above have been applied
    start = time.monotonic()
    for _ in range(3):
        assert os.listdir(mounted.path / "quiet") == ["x.txt"]
        time.sleep(0.2)
    assert [r for r in emu.request_log.records
            if r.started >= start and r.route == "/folders/{folder_id}/items"] == []


def test_a_file_replaced_while_read_through_the_mount_reads_old_whole(
        mounted: Mounted, other: BoxFileSystem, emu: BoxEmulator) -> None:
    mnt = mounted.path
    old, new = os.urandom(5 * MiB + 11), os.urandom(2 * MiB)
    other.pipe_file("doc.bin", old)
    eventually(lambda: size_in(mnt / "doc.bin") == len(old), "doc.bin")
    with open(mnt / "doc.bin", "rb", buffering=0) as fh:
        head = fh.read(MiB // 2)
        other.pipe_file("doc.bin", new)  # another client uploads a new version mid-read
        replaced = time.monotonic()
        rest = b""
        while chunk := fh.read(MiB):
            rest += chunk
    assert sha1(head + rest) == sha1(old)
    later = [r for r in emu.request_log.records if r.started >= replaced and r.method == "GET"
             and r.route in ("/files/{file_id}/content", "/download/{token}")]
    assert later, "the whole file was read before the replacement: the test proved nothing"
    eventually(lambda: size_in(mnt / "doc.bin") == len(new), "the new version")
    assert sha1((mnt / "doc.bin").read_bytes()) == sha1(new)  # an open after the change: the new one


def test_a_file_deleted_while_read_through_the_mount_reads_old_or_fails(
        mounted: Mounted, other: BoxFileSystem) -> None:
    mnt = mounted.path
    old = os.urandom(4 * MiB)
    other.pipe_file("gone.bin", old)
    eventually(lambda: size_in(mnt / "gone.bin") == len(old), "gone.bin")
    with open(mnt / "gone.bin", "rb", buffering=0) as fh:
        assert fh.read(MiB // 2) == old[:MiB // 2]
        other.rm_file("gone.bin")
        fh.seek(3 * MiB)
        try:  # the old version (its download URL still serves it, as an unlinked file) or EIO: no mix
            assert fh.read(MiB) == old[3 * MiB:]
        except OSError:
            pass
