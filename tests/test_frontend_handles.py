"""Write handles (boxfs.frontend.handles) against the emulator: dirty until the data is in Box.

Uploads are counted from the emulator's request log; what Box holds is checked with a second
filesystem instance, byte for byte (SHA-1).
"""

from __future__ import annotations

import errno
import hashlib
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import injected_faults

from boxfs.frontend import OpenFiles, PendingLimitError, errno_of
from boxfs.frontend.ranges import RangeSet

UPLOAD_ROUTES = ("/files/content", "/files/{file_id}/content", "/files/upload_sessions/{upload_session_id}/commit")


@pytest.fixture
def fs(fast_fs: Any) -> Any:
    return fast_fs


@pytest.fixture
def files(fs: Any, tmp_path: Path) -> OpenFiles:
    spool = tmp_path / "spool"
    spool.mkdir()
    return OpenFiles(fs, spool_dir=str(spool))


def uploads(emulator: Any, user: str) -> int:
    return sum(emulator.request_log.count(method="POST", route=r, user_id=user) for r in UPLOAD_ROUTES)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def test_range_set() -> None:
    rs = RangeSet()
    assert rs.add(10, 20) == 10
    assert rs.add(30, 40) == 10
    assert rs.add(15, 35) == 10  # only the gap is new; the three merge
    assert rs.spans() == [(10, 40)] and rs.total == 30
    assert rs.add(40, 41) == 1 and len(rs) == 1  # adjacent ranges merge
    rs.cut(25)
    assert rs.spans() == [(10, 25)] and rs.total == 15
    rs.add(50, 60)
    rs.cut(5)
    assert not rs and rs.total == 0


def test_reverse_one_byte_writes_stay_one_range(files: OpenFiles, box_view: Callable[[], Any],
                                                emulator: Any, fs_user: tuple[str, str]) -> None:
    """40,000 one-byte writes from the end backwards: one merged range, never a re-sum, one upload."""
    data = os.urandom(40_000)
    handle = files.open("rev.bin", truncate=True)
    for offset in range(len(data) - 1, 0, -1):
        handle.pwrite(data[offset:offset + 1], offset)
    assert len(handle.spool.pending) == 1 and handle.spool.pending.total == len(data) - 1
    handle.pwrite(data[:1], 0)
    assert not handle.spool.pending and handle.spool.complete == len(data)
    handle.close()
    assert uploads(emulator, fs_user[0]) == 1
    assert sha1(box_view().cat_file("rev.bin")) == sha1(data)


def test_out_of_order_cap(fs: Any, tmp_path: Path, box_view: Callable[[], Any]) -> None:
    files = OpenFiles(fs, spool_dir=str(tmp_path), max_pending=1000)
    handle = files.open("capped.bin", truncate=True)
    handle.pwrite(b"b" * 600, 100)
    handle.pwrite(b"b" * 600, 100)  # the same bytes again are not counted twice
    with pytest.raises(PendingLimitError) as exc:
        handle.pwrite(b"c" * 500, 800)
    assert errno_of(exc.value) == errno.ENOSPC and "limit 1000" in str(exc.value)
    assert handle.size() == 700  # nothing of the refused write was stored
    handle.pwrite(b"a" * 100, 0)  # the gap filled: nothing is pending any more
    handle.pwrite(b"c" * 500, 700)
    handle.close()
    assert box_view().cat_file("capped.bin") == b"a" * 100 + b"b" * 600 + b"c" * 500


def test_failed_upload_stays_dirty_for_every_handle(files: OpenFiles, box_view: Callable[[], Any],
                                                    emulator: Any, fs_user: tuple[str, str]) -> None:
    """fsync -> error -> fsync -> error (two handles) until the upload lands; never success before."""
    data = os.urandom(300_000)
    first = files.open("doc.bin", truncate=True)
    second = files.open("doc.bin")
    first.write(data)
    with injected_faults(emulator, rate=1.0, kinds=("503",), route="/files/content", method="POST"):
        for handle in (first, second, first, second):
            with pytest.raises(OSError) as exc:
                handle.fsync()
            assert errno_of(exc.value) == errno.EIO
        assert first.spool.dirty and first.spool.failures == 4
        with pytest.raises(OSError):
            first.close()  # the close reports it too, and lets go of the handle
        assert first.closed
        assert not box_view().exists("doc.bin")
    second.fsync()  # Box answers again: this one lands
    assert not second.spool.dirty and second.spool.error is None
    second.close()  # clean: no second upload
    box = box_view()
    assert sha1(box.cat_file("doc.bin")) == sha1(data)
    assert len(emulator.request_log.filter(method="POST", route="/files/content", user_id=fs_user[0], status=201)) == 1


def test_discard_uploads_nothing(files: OpenFiles, box_view: Callable[[], Any], emulator: Any, fs_user: tuple[str, str]) -> None:
    handle = files.open("aborted.bin", truncate=True)
    handle.write(b"half a transfer")
    handle.discard()
    handle.discard()
    assert uploads(emulator, fs_user[0]) == 0 and not box_view().exists("aborted.bin")
    assert files.get("aborted.bin") is None


def test_holes_refused_when_asked(fs: Any, tmp_path: Path, box_view: Callable[[], Any]) -> None:
    files = OpenFiles(fs, spool_dir=str(tmp_path), holes_allowed=False)
    handle = files.open("holey.bin", truncate=True)
    handle.pwrite(b"tail", 10)
    with pytest.raises(OSError) as exc:
        handle.close()
    assert errno_of(exc.value) == errno.EIO
    assert not box_view().exists("holey.bin")
    sparse = OpenFiles(fs, spool_dir=str(tmp_path)).open("sparse.bin", truncate=True)
    sparse.pwrite(b"tail", 10)
    sparse.close()
    assert box_view().cat_file("sparse.bin") == b"\0" * 10 + b"tail"


def test_existing_content_is_fetched_lazily(fs: Any, files: OpenFiles, box_view: Callable[[], Any],
                                            emulator: Any, fs_user: tuple[str, str]) -> None:
    fs.pipe_file("existing.txt", b"hello world")
    before = len(emulator.request_log.filter(user_id=fs_user[0]))
    files.open("existing.txt").close()  # open for writing, close untouched: no request
    assert len(emulator.request_log.filter(user_id=fs_user[0])) == before
    handle = files.open("existing.txt")
    handle.pwrite(b"W", 6)
    assert handle.pread(5, 6) == b"World"
    handle.close()
    assert box_view().cat_file("existing.txt") == b"hello World"
    appender = files.open("existing.txt", append=True)
    appender.write(b"!")
    appender.pwrite(b"?", 0)  # append mode: always at the end
    appender.close()
    assert box_view().cat_file("existing.txt") == b"hello World!?"


def test_rename_and_remove_follow_open_spools(files: OpenFiles, box_view: Callable[[], Any]) -> None:
    a = files.open("dir/a.txt", truncate=True)
    a.write(b"a")
    b = files.open("dir/b.txt", truncate=True)
    b.write(b"b")
    c = files.open("c.txt", truncate=True)
    c.write(b"c")
    assert {s.path for s in files.children("dir")} == {"dir/a.txt", "dir/b.txt"}
    assert {s.path for s in files.children("")} == {"c.txt"}
    files.renamed("dir", "moved")
    files.renamed("c.txt", "c.txt")
    assert {s.path for s in files.children("moved")} == {"moved/a.txt", "moved/b.txt"}
    assert files.get("MOVED/A.TXT") is a.spool  # Box names: one file whatever the case
    files.renamed("c.txt", "C.txt")  # a case-only rename keeps the spool, with the new spelling
    assert c.spool.path == "C.txt" and files.get("c.txt") is c.spool
    files.removed("Moved/B.txt")
    b.write(b" written after the delete")  # a file deleted while open is not brought back
    for handle in (a, b, c):
        handle.close()
    box = box_view()
    assert box.cat_file("moved/a.txt") == b"a" and box.cat_file("C.txt") == b"c"
    assert [i["name"] for i in box.ls("", detail=True) if i["type"] == "file"] == ["C.txt"]
    assert not box.exists("moved/b.txt")


def test_large_data_lives_on_disk(files: OpenFiles, box_view: Callable[[], Any]) -> None:
    """20 MB written through a handle: Python memory stays small (the bytes are in the spool file)."""
    block = os.urandom(1 << 20)
    digest = hashlib.sha1()
    handle = files.open("big.bin", truncate=True)
    tracemalloc.start()
    try:
        for i in range(20):
            handle.pwrite(block, i << 20)
            digest.update(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    assert os.path.getsize(handle.spool.file.name) == 20 << 20
    handle.close()
    assert sha1(box_view().cat_file("big.bin")) == digest.hexdigest()


def test_closed_handle_refuses_writes(files: OpenFiles) -> None:
    handle = files.open("x.txt", truncate=True)
    handle.close()
    with pytest.raises(OSError) as exc:
        handle.write(b"late")
    assert exc.value.errno == errno.EBADF


def test_full_spool_disk_is_enospc_and_never_uploads_a_partial_file(
    fs: Any, tiny_disk: Path, box_view: Callable[[], Any], emulator: Any, fs_user: tuple[str, str]
) -> None:
    fs.pipe_file("keep.bin", b"previous version")
    before = uploads(emulator, fs_user[0])
    files = OpenFiles(fs, spool_dir=str(tiny_disk))
    handle = files.open("keep.bin", truncate=True)
    block = os.urandom(1 << 20)
    with pytest.raises(OSError) as exc:
        for i in range(16):
            handle.pwrite(block, i << 20)
    assert errno_of(exc.value) == errno.ENOSPC
    for _ in range(2):  # every flush refuses, naming the failed range
        with pytest.raises(OSError) as refused:
            handle.flush()
        assert errno_of(refused.value) == errno.ENOSPC and "incomplete" in str(refused.value)
    with pytest.raises(OSError):
        handle.close()
    assert uploads(emulator, fs_user[0]) == before
    assert box_view().cat_file("keep.bin") == b"previous version"
    rewritten = files.open("keep.bin", truncate=True)  # a new start (the space is free again) works
    rewritten.write(b"new version")
    rewritten.close()
    assert box_view().cat_file("keep.bin") == b"new version"
