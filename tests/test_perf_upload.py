"""Issue 20: a large upload reads every byte of its source once, and still resumes safely.

Reads are counted where the chunked path makes them (``os.preadv`` on the source's descriptor); the
requests from the emulator's request log.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import injected_faults

import boxfs.core as core
import boxfs.upload.parts as chunked
import boxfs.upload.session as session
from boxfs.api.errors import BoxPreconditionError
from boxfs.upload import MIN_SESSION_SIZE, UploadIncomplete

MB = 1 << 20
SESSIONS = "/files/upload_sessions"
PART = "/files/upload_sessions/{upload_session_id}"
COMMIT = "/files/upload_sessions/{upload_session_id}/commit"


@pytest.fixture
def big_fs(make_fs: Any, fs_user: tuple[str, str], tmp_path: Path) -> Any:
    return make_fs(as_user=fs_user[0], spool_dir=str(tmp_path / "spool"), spool_threshold=MB,
                   retry={"max_attempts": 2, "backoff_base": 0.01, "backoff_max": 0.05})


class ReadCounter:
    """Bytes read from each file descriptor through ``os.preadv`` (the chunked path's only read)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_fd: Counter[int] = Counter()
        real = os.preadv

        def preadv(fd: int, buffers: Any, offset: int, *args: Any) -> int:
            n = real(fd, buffers, offset, *args)
            self.by_fd[fd] += n
            return n

        monkeypatch.setattr(chunked.os, "preadv", preadv)

    @property
    def total(self) -> int:
        return sum(self.by_fd.values())


def test_put_file_of_a_large_file_reads_it_once(big_fs: Any, emulator: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(MIN_SESSION_SIZE + 3 * MB + 5)  # parts of 8, 8, 7 MiB and a bit
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    reads = ReadCounter(monkeypatch)
    whole_passes: list[Any] = []
    real_sha1_of = core.sha1_of
    monkeypatch.setattr(core, "sha1_of", lambda fh: whole_passes.append(fh) or real_sha1_of(fh))
    start = len(emulator.request_log)
    big_fs.put_file(str(src), "once/big.bin")
    assert whole_passes == []  # no pass for the SHA-1 before the session
    assert reads.total == len(data)  # every byte read once, hashed and sent from the same buffer
    routes = Counter((r.method, r.route) for r in emulator.request_log.records[start:])
    assert routes[("PUT", PART)] == 3 and routes[("POST", COMMIT)] == 1
    info = big_fs.info("once/big.bin")
    assert info["sha1"] == hashlib.sha1(data).hexdigest() and info["size"] == len(data)


def interrupted_before_commit(fs: Any, emulator: Any, src: Path, rpath: str) -> None:
    """``put_file`` whose parts all land but whose commit fails (5xx): the session stays, for resume."""
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/commit$", method="POST"):
        with pytest.raises(UploadIncomplete):
            fs.put_file(str(src), rpath)


def test_a_resumed_upload_checks_the_parts_box_has_against_the_source(big_fs: Any, emulator: Any, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted before the commit; then the source changes (same size, same destination). The resume
    finds the state by destination and size, re-reads the parts Box has for the folded SHA-1, sees they
    are not the source's any more, and starts over: the file on Box is the new content, whole."""
    old = os.urandom(MIN_SESSION_SIZE + MB)
    src = tmp_path / "src.bin"
    src.write_bytes(old)
    interrupted_before_commit(big_fs, emulator, src, "resume/src.bin")
    # the same content again: resumed, nothing re-sent, each byte read once more (for the SHA-1)
    reads = ReadCounter(monkeypatch)
    start = len(emulator.request_log)
    big_fs.put_file(str(src), "resume/src.bin")
    routes = Counter((r.method, r.route) for r in emulator.request_log.records[start:])
    assert routes[("POST", SESSIONS)] == 0 and routes[("PUT", PART)] == 0 and routes[("POST", COMMIT)] == 1
    assert reads.total == len(old)
    assert big_fs.info("resume/src.bin")["sha1"] == hashlib.sha1(old).hexdigest()

    new = bytearray(old)
    new[-10:] = b"0123456789"  # the last part differs
    interrupted_before_commit(big_fs, emulator, src, "resume/src.bin")
    src.write_bytes(bytes(new))
    start = len(emulator.request_log)
    big_fs.put_file(str(src), "resume/src.bin")
    routes = Counter((r.method, r.route) for r in emulator.request_log.records[start:])
    assert routes[("DELETE", PART)] == 1  # the stale session aborted
    assert routes[("POST", "/files/{file_id}/upload_sessions")] == 1 and routes[("POST", COMMIT)] == 1
    assert big_fs.cat_file("resume/src.bin") == bytes(new)


# ------------------------------------------------------------- a simple upload onto a name in an unlisted folder
CONTENT = "/files/content"
NEW_VERSION = "/files/{file_id}/content"
LIST = "/folders/{folder_id}/items"


def uploads_and_listings(emulator: Any, start: int, user_id: str) -> Counter[tuple[str, str, int]]:
    return Counter((r.method, r.route, r.status) for r in emulator.request_log.records[start:]
                   if r.user_id == user_id and r.route in (CONTENT, NEW_VERSION, LIST))


@pytest.mark.parametrize("how", ["pipe_file", "open", "put_file"])
def test_a_simple_upload_onto_an_existing_name_sends_its_body_once(make_fs: Any, fs_user: tuple[str, str],
                                                                   emulator: Any, tmp_path: Path, how: str) -> None:
    """A filesystem that has not listed the folder cannot tell the name is taken: sending the body and
    then, on Box's 409, sending it again as a new version moves it twice. From RELIST_MIN_SIZE on, the
    folder is listed first (one request; its other names are known after), and the body goes once."""
    uid = fs_user[0]
    make_fs(as_user=uid).pipe_file("d/e/taken.bin", b"old")
    data = os.urandom(2 * MB)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    fs = make_fs(as_user=uid)  # knows nothing of d/e
    start = len(emulator.request_log)
    if how == "pipe_file":
        fs.pipe_file("d/e/taken.bin", data)
    elif how == "open":
        with fs.open("d/e/taken.bin", "wb") as f:
            f.write(data)
    else:
        fs.put_file(str(src), "d/e/taken.bin")
    calls = uploads_and_listings(emulator, start, uid)
    assert calls == Counter({("GET", LIST, 200): 3,  # All Files, d, and d/e (the one listing added)
                             ("POST", NEW_VERSION, 200): 1})  # the body, once, as the new version
    # the listing serves the folder's other names: a new file next to it costs its upload only
    start = len(emulator.request_log)
    fs.pipe_file("d/e/new.bin", data)
    assert uploads_and_listings(emulator, start, uid) == Counter({("POST", CONTENT, 201): 1})
    fresh = make_fs(as_user=uid)
    assert fresh.cat_file("d/e/taken.bin") == data and fresh.cat_file("d/e/new.bin") == data
    assert fresh.ls("d/e", detail=False) == ["d/e/new.bin", "d/e/taken.bin"]


def test_a_tiny_upload_onto_an_existing_name_keeps_the_409_path(make_fs: Any, fs_user: tuple[str, str],
                                                                 emulator: Any) -> None:
    """Below RELIST_MIN_SIZE a second POST costs less than a listing that a new file would pay for too."""
    uid = fs_user[0]
    make_fs(as_user=uid).pipe_file("d/e/taken.txt", b"old")
    fs = make_fs(as_user=uid)
    start = len(emulator.request_log)
    fs.pipe_file("d/e/taken.txt", b"new")
    assert uploads_and_listings(emulator, start, uid) == Counter({
        ("GET", LIST, 200): 2,  # All Files and d: d/e itself is not listed
        ("POST", CONTENT, 409): 1, ("POST", NEW_VERSION, 200): 1})
    assert make_fs(as_user=uid).cat_file("d/e/taken.txt") == b"new"


# ------------------------------------------------------------------ workers past the upload's memory budget
def test_workers_past_the_memory_budget_read_their_part_twice_in_small_pieces(
        big_fs: Any, emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three workers, a budget of one 8 MiB part: one worker reads its parts once into a part-sized
    buffer, the others hash theirs in 1 MiB pieces and read them again to send them. The buffers come to
    8 + 1 + 1 MiB, not 3 x 8; the file on Box is the source, whole. (The process's peak RSS for 1 GB is
    measured in tests/test_large_upload_proc.py.)"""
    data = os.urandom(MIN_SESSION_SIZE + 3 * MB + 5)  # parts of 8, 8, 7 MiB and a bit
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    monkeypatch.setattr(big_fs, "upload_workers", 3, raising=False)
    monkeypatch.setattr(big_fs, "upload_memory", 8 * MB, raising=False)
    buffers: list[int] = []
    real_worker = session.ChunkedUpload._worker

    def worker(self: Any, feed: Any, stop: Any, buffer_size: int) -> bool:
        buffers.append(buffer_size)
        return real_worker(self, feed, stop, buffer_size)

    monkeypatch.setattr(session.ChunkedUpload, "_worker", worker)
    reads = ReadCounter(monkeypatch)
    start = len(emulator.request_log)
    big_fs.put_file(str(src), "budget/big.bin")
    assert sorted(buffers) == [MB, MB, 8 * MB]  # what the upload's workers hold: 10 MiB, not 3 x 8
    assert len(data) < reads.total < 2 * len(data)  # the streamed parts twice, the whole one once
    routes = Counter((r.method, r.route, r.status) for r in emulator.request_log.records[start:])
    assert routes[("PUT", PART, 200)] == 3 and routes[("POST", COMMIT, 201)] == 1
    assert big_fs.info("budget/big.bin")["sha1"] == hashlib.sha1(data).hexdigest()


def test_a_part_that_changes_between_its_hash_and_its_sending_is_refused(
        big_fs: Any, make_fs: Any, fs_user: tuple[str, str], emulator: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A part read twice (no whole-part buffer) whose bytes differ the second time: Box checks the part
    against the digest of the first read and refuses it; the session is aborted and nothing is stored."""
    data = os.urandom(MIN_SESSION_SIZE + MB)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    monkeypatch.setattr(big_fs, "upload_memory", 0, raising=False)
    seen: Counter[int] = Counter()
    real = chunked.PartSource.readinto

    def readinto(self: Any, offset: int, view: memoryview) -> None:
        real(self, offset, view)
        seen[offset] += 1
        if offset == 0 and seen[offset] == 2:  # the first piece, read again to be sent: changed meanwhile
            view[0] ^= 0xFF

    monkeypatch.setattr(chunked.PartSource, "readinto", readinto)
    start = len(emulator.request_log)
    with pytest.raises(BoxPreconditionError, match="SHA1 digest of the part"):  # a refusal: nothing to resume
        big_fs.put_file(str(src), "changed/big.bin")
    routes = Counter((r.method, r.route, r.status) for r in emulator.request_log.records[start:])
    assert routes[("PUT", PART, 412)] == 1 and routes[("POST", COMMIT, 201)] == 0
    assert sum(n for (method, route, _), n in routes.items() if (method, route) == ("DELETE", PART)) == 1
    assert not make_fs(as_user=fs_user[0]).exists("changed/big.bin")
