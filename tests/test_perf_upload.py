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

import boxfs.core as core
import boxfs.upload.parts as chunked
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
    emulator.inject_faults(rate=1.0, kinds=("500",), route=r"/commit$", method="POST")
    try:
        with pytest.raises(UploadIncomplete):
            fs.put_file(str(src), rpath)
    finally:
        emulator.clear_faults()


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

