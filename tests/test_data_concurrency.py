"""Many small reads at once (issue 9): ``fs.cat([...])`` downloads concurrently, bounded by the
``max_connections`` option, and stays correct under Box's per-user rate limit (429 + Retry-After).

Only call counts, overlap and results are asserted, never durations; the timings measured with a 20 ms
emulator latency are logged at INFO (``-o log_cli=true -o log_cli_level=INFO``) for the report and the benchmarks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

log = logging.getLogger(__name__)

N = 24


def content(i: int) -> bytes:
    return f"file {i}\n".encode() * (i + 1)


@pytest.fixture
def many(fs: Any) -> list[str]:
    paths = [f"many/f{i:02d}.txt" for i in range(N)]
    for i, p in enumerate(paths):
        fs.pipe_file(p, content(i))
    return paths


@pytest.fixture
def slow_emulator(emulator: Any) -> Iterator[Any]:
    emulator.set_latency(LATENCY)
    try:
        yield emulator
    finally:
        emulator.set_latency(0.0)


LATENCY = 0.02


def max_in_flight(records: list[Any], certain: bool = False) -> int:
    """The largest number of these requests the server was handling at the same moment.

    The emulator stamps ``finished`` after sending the answer, so a client may already have sent its next
    request: counting up to ``finished`` can only over-count (right for "at least N"). With ``certain``
    each request counts only for its first ``LATENCY`` seconds, before which the emulator never answers:
    that can only under-count (right for "at most N").
    """
    ends = [r.started + LATENCY if certain else r.finished for r in records]
    events = sorted([(r.started, 1) for r in records] + [(end, -1) for end in ends])
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def api_calls(emulator: Any, uid: str) -> list[Any]:
    return [r for r in emulator.request_log.records if r.as_user == uid and r.host == "api"]


def test_cat_many_is_concurrent_and_costs_the_same_calls(many: list[str], make_fs: Any, fs_user: tuple[str, str],
                                                         slow_emulator: Any) -> None:
    uid = fs_user[0]
    emu = slow_emulator
    want = {p: content(i) for i, p in enumerate(many)}

    seq_fs = make_fs(as_user=uid, max_connections=8)
    emu.request_log.clear()
    t0 = time.perf_counter()
    got = {p: seq_fs.cat_file(p) for p in many}
    sequential = time.perf_counter() - t0
    assert got == want
    seq_calls = api_calls(emu, uid)

    par_fs = make_fs(as_user=uid, max_connections=8)
    emu.request_log.clear()
    t0 = time.perf_counter()
    assert par_fs.cat(many) == want
    concurrent = time.perf_counter() - t0
    par_calls = api_calls(emu, uid)

    # the same requests: a listing of the root and of the folder (once, though 8 threads asked together),
    # one download per file; nothing extra for concurrency
    assert len(par_calls) == len(seq_calls) == N + 2
    assert sum(r.route == "/folders/{folder_id}/items" for r in par_calls) == 2
    downloads = [r for r in par_calls if r.route == "/files/{file_id}/content"]
    assert len(downloads) == N and all(r.status == 302 for r in downloads)
    assert max_in_flight([r for r in seq_calls if r.route == "/files/{file_id}/content"], certain=True) == 1
    in_flight = max_in_flight(downloads)
    assert in_flight >= 2 and max_in_flight(downloads, certain=True) <= 8  # concurrent, within max_connections
    log.info("cat of %d files at 20 ms latency: sequential %.3fs, concurrent %.3fs (x%.1f), "
                "%d API calls each, up to %d in flight", N, sequential, concurrent, sequential / concurrent,
                len(par_calls), in_flight)


def test_max_connections_bounds_concurrency(many: list[str], make_fs: Any, fs_user: tuple[str, str],
                                            slow_emulator: Any) -> None:
    fs = make_fs(as_user=fs_user[0], max_connections=2)
    fs.ls("many")
    slow_emulator.request_log.clear()
    assert fs.cat(many) == {p: content(i) for i, p in enumerate(many)}
    downloads = [r for r in api_calls(slow_emulator, fs_user[0]) if r.route == "/files/{file_id}/content"]
    assert len(downloads) == N
    assert max_in_flight(downloads) >= 2 and max_in_flight(downloads, certain=True) <= 2


def test_cat_within_the_per_user_rate_limit(many: list[str], make_fs: Any, fs_user: tuple[str, str],
                                            emulator: Any) -> None:
    """Over Box's per-user limit the emulator answers 429 + Retry-After; every file still arrives."""
    fs = make_fs(as_user=fs_user[0], max_connections=16)
    emulator.request_log.clear()
    emulator.set_rate_limit(40, burst=8)
    try:
        t0 = time.perf_counter()
        result = fs.cat(many)
        took = time.perf_counter() - t0
    finally:
        emulator.set_rate_limit(0)
    assert result == {p: content(i) for i, p in enumerate(many)}
    calls = api_calls(emulator, fs_user[0])
    limited = [r for r in calls if r.status == 429]
    assert limited, "the rate limit was never reached: the test proves nothing"
    ok = [r for r in calls if r.route == "/files/{file_id}/content" and r.status == 302]
    assert len(ok) == N  # each file downloaded exactly once in the end
    assert all(r.status in (200, 302, 429) for r in calls)
    log.info("cat of %d files under 40/s burst 8: %d API calls, %d answered 429, %.2fs",
                N, len(calls), len(limited), took)


def test_on_error_modes(fs: Any) -> None:
    fs.pipe_file("e/a", b"A")
    paths = ["e/a", "e/missing"]
    with pytest.raises(FileNotFoundError):
        fs.cat(paths)
    assert fs.cat(paths, on_error="omit") == {"e/a": b"A"}
    out = fs.cat(paths, on_error="return")
    assert out["e/a"] == b"A" and isinstance(out["e/missing"], FileNotFoundError)
    assert fs.cat("e/a") == b"A"  # one plain path: the bytes, not a dict
    assert fs.cat("e/*") == {"e/a": b"A"}


def test_recursive_cat_returns_the_files_below(fs: Any, emulator: Any, fs_user: tuple[str, str]) -> None:
    """fsspec: with ``recursive`` "get all the contained files"; the folders in the expansion are skipped."""
    fs.pipe({"d/a": b"1", "d/s/b": b"2", "d/s/t/c": b"3"})
    fresh_fs = type(fs)(**fs._config(), skip_instance_cache=True)
    emulator.request_log.clear()
    assert fresh_fs.cat("d", recursive=True) == {"d/a": b"1", "d/s/b": b"2", "d/s/t/c": b"3"}
    calls = api_calls(emulator, fs_user[0])
    assert sum(r.route == "/folders/{folder_id}/items" for r in calls) == 4  # root, d, d/s, d/s/t
    assert sum(r.route == "/files/{file_id}/content" for r in calls) == 3
