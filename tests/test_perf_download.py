"""Downloads reuse their pooled connections, and the download-URL cache stays bounded.

Counted from the emulator: the TCP connections it accepted (``app.connections_accepted``) and its request
log. The session emulator serves every test, so each test here runs on a filesystem of its own (its own
connection pool) and only counts what it did while nothing else ran in this process.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from boxfs import BoxFileSystem, core
from boxfs.api import transport


def accepted(emulator: Any) -> int:
    return int(emulator.app.connections_accepted)


@pytest.fixture
def small_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of 1 MiB and more download in ranges of 1 MiB (so a test file of a few MiB has several)."""
    monkeypatch.setattr(core, "PARALLEL_DOWNLOAD_MIN", 1 << 20)
    monkeypatch.setattr(transport, "PARALLEL_PART_MIN", 1 << 20)


def test_streamed_downloads_hand_their_connection_back_to_the_pool(fs: BoxFileSystem, emulator: Any,
                                                                  tmp_path: Path) -> None:
    """Ten whole-file downloads one after another: one connection for the download host, not ten."""
    data = os.urandom(300_000)
    fs.pipe_file("conn/f.bin", data)
    fs.get_file("conn/f.bin", str(tmp_path / "warm.bin"))  # the pool holds its connections now
    before = accepted(emulator)
    for i in range(10):
        fs.get_file("conn/f.bin", str(tmp_path / f"f{i}.bin"))
    assert accepted(emulator) - before == 0
    for i in range(10):
        assert hashlib.sha1((tmp_path / f"f{i}.bin").read_bytes()).digest() == hashlib.sha1(data).digest()


def test_ranged_downloads_reuse_connections(fs: BoxFileSystem, emulator: Any, tmp_path: Path,
                                            small_parallel: None) -> None:
    """A file in 6 ranges on 6 connections, downloaded 5 times: the connections of the first serve the rest."""
    data = os.urandom((6 << 20) - 7)
    fs.pipe_file("conn/ranged.bin", data)
    before = accepted(emulator)
    t = time.monotonic()
    for i in range(5):
        fs.get_file("conn/ranged.bin", str(tmp_path / f"r{i}.bin"))
        assert (tmp_path / f"r{i}.bin").read_bytes() == data
    time.sleep(0.05)  # records are appended as requests finish
    ranges = [r for r in emulator.request_log.records if r.started >= t and r.host == "download"]
    assert len(ranges) == 30
    # without reuse every range opened a connection of its own (30 and more); with it, at most the pool's
    # first 6 (ranges of the next download may start before a finished one is back in the pool: a few more)
    assert accepted(emulator) - before <= 12, accepted(emulator) - before


def test_several_large_files_at_once_share_the_pools_connections(emulator: Any, make_fs: Any, tmp_path: Path,
                                                                  small_parallel: None) -> None:
    """``fs.get`` of 8 files of 4 ranges each fetches them side by side, but never more ranges at once than
    ``max_connections`` (here 4): each range holds a connection and a 1 MiB buffer, so 8 files x 4 streams
    would open 32 connections (28 of them thrown away by a pool of 4) and hold 32 MiB."""
    fs = make_fs(max_connections=4)
    blobs = {f"many/f{i}.bin": os.urandom((6 << 20) - i) for i in range(8)}
    fs.pipe(blobs)
    emulator.set_latency(0.05)  # every range takes a while: they would overlap if nothing held them back
    try:
        t = time.monotonic()
        fs.get("many", str(tmp_path / "out"), recursive=True)
    finally:
        emulator.set_latency(0.0)
    time.sleep(0.05)
    ranges = sorted((r.started, r.finished) for r in emulator.request_log.records
                    if r.started >= t and r.host == "download")
    assert len(ranges) == 32  # each 6 MiB file in 4 ranges, one per connection it may use
    most = max(sum(1 for a, b in ranges if a <= start < b) for start, _ in ranges)
    assert most <= 4, most
    for name, data in blobs.items():
        got = (tmp_path / "out" / name.split("/")[-1]).read_bytes()
        assert hashlib.sha1(got).digest() == hashlib.sha1(data).digest()


def test_small_reads_keep_their_connections(fs: BoxFileSystem, emulator: Any) -> None:
    """Reads of small files (a redirect to each one's download URL, then its bytes): no new connection."""
    for i in range(8):
        fs.pipe_file(f"conn/small-{i}.txt", f"file {i}".encode())
    fs.cat_file("conn/small-0.txt")
    before = accepted(emulator)
    for i in range(8):
        assert fs.cat_file(f"conn/small-{i}.txt") == f"file {i}".encode()
    assert accepted(emulator) - before == 0


def test_per_file_fetch_locks_do_not_accumulate(fs: BoxFileSystem) -> None:
    """Reading many files leaves no lock behind per file (a long-lived process reads millions)."""
    names = [f"locks/f{i}.txt" for i in range(40)]
    for name in names:
        fs.pipe_file(name, name.encode())
    got = fs.cat_ranges(names, [0] * len(names), [None] * len(names))
    assert got == [name.encode() for name in names]
    assert fs.transport.download_urls.fetches_in_flight() == 0
