"""What the change watcher costs while the process itself writes, and that it never blocks a listing.

Each test has an emulator of its own (20 ms latency, as the issue asks), so every ``/events`` and long-poll
request in its log belongs to the test's own watcher.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import admin_app
from test_watch import elsewhere, eventually, filesystems, new_user  # noqa: F401 - fixture and helpers

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator
from boxfs.watch import watcher_for

WATCHER_ROUTES = ("/events", "/subscribe")


@pytest.fixture
def emu() -> Iterator[BoxEmulator]:
    with BoxEmulator(latency=0.02) as emulator:
        yield emulator


@pytest.fixture
def user(emu: BoxEmulator) -> str:
    return new_user(emu)


@pytest.fixture
def make(emu: BoxEmulator) -> Callable[..., BoxFileSystem]:
    return filesystems(emu, admin_app(emu))


def watcher_calls(emu: BoxEmulator, since: float, until: float | None = None) -> list[Any]:
    time.sleep(0.05)  # a record is completed as its answer goes out
    return [r for r in emu.request_log.records if r.route in WATCHER_ROUTES and r.started >= since
            and (until is None or r.started <= until)]


def test_a_burst_of_our_own_uploads_costs_a_few_watcher_requests(
        emu: BoxEmulator, make: Callable[..., BoxFileSystem], user: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``put`` of 200 files: each upload is an event that ends the long poll; the watcher waits for the
    burst to pause before it reads them, so the burst costs its start, one poll and one catch-up."""
    monkeypatch.setattr("boxfs.watch.BURST_WAIT_MAX", 120.0)  # however slow this machine: one burst
    emu.set_latency(0.1)  # the burst lasts seconds (at 2 fetches a second the old watcher paid ~20)
    names = [f"f{i:03d} é.txt" for i in range(200)]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    fs = make(as_user=user)
    seen: list[dict[str, Any]] = []
    start = time.monotonic()
    changes = fs.watch("burst", timeout=30)  # starts the watcher: its requests count too
    fs.put([str(tmp_path / n) for n in names], "burst/")
    end = time.monotonic()
    during = watcher_calls(emu, start, end)
    # the stream position, the long-poll server, the poll the first upload ends (one slow upload may
    # give the watcher a pause to fetch in: one GET and one poll more)
    assert len(during) <= 5, [(r.method, r.route) for r in during]
    for change in changes:  # every upload still reaches fs.watch(), after the burst
        if change["type"] == "uploaded":
            seen.append(change)
        if len(seen) == len(names):
            break
    assert sorted(c["path"] for c in seen) == [f"burst/{n}" for n in names]
    total = watcher_calls(emu, start)
    assert len([r for r in total if r.method == "GET" and r.route == "/events"]) <= 3  # position + 1-2 pages
    assert len(total) <= 8, [(r.method, r.route) for r in total]


@contextlib.contextmanager
def writing_nonstop(fs: BoxFileSystem) -> Iterator[threading.Thread]:
    """A thread that keeps uploading small files through ``fs`` for the length of the block (so the
    process's watcher keeps waiting for its burst to pause); yields the thread, stopped on the way out."""
    stop = threading.Event()

    def keep_writing() -> None:
        i = 0
        while not stop.is_set():
            fs.pipe_file(f"busy/{i % 20}.txt", str(i).encode())
            i += 1

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        yield writer
    finally:
        stop.set()
        writer.join(30)


def test_a_change_elsewhere_is_seen_while_we_keep_writing(
        make: Callable[..., BoxFileSystem], user: str, elsewhere: Callable[[str, str], None]) -> None:  # noqa: F811
    """The wait for our own burst to pause is bounded: another process's change still gets through."""
    fs = make(as_user=user)
    fs.pipe_file("shared/a.txt", b"a")
    assert fs.ls("shared", detail=False) == ["shared/a.txt"]
    with writing_nonstop(fs) as writer:
        elsewhere(user, 'fs.pipe_file("shared/b.txt", b"b")\n')
        eventually(lambda: fs.ls("shared", detail=False) == ["shared/a.txt", "shared/b.txt"])
        assert writer.is_alive()  # seen while the writes went on


def test_a_file_written_elsewhere_reads_at_once_while_we_keep_writing(
        make: Callable[..., BoxFileSystem], user: str, elsewhere: Callable[[str, str], None]) -> None:  # noqa: F811
    """While our own writes keep the watcher waiting to read the events (a dask worker writing its part of
    a job), a file another process has just written is not refused from our cached listing: with changes
    announced and unread, a read that misses asks Box (the dask to_csv -> read_csv round trip)."""
    fs = make(as_user=user)
    fs.pipe_file("shared/a.txt", b"a")
    assert fs.ls("shared", detail=False) == ["shared/a.txt"]
    with writing_nonstop(fs) as writer:
        eventually(lambda: fs._feed.unread_news())  # our own writes: announced, and left to settle
        elsewhere(user, 'fs.pipe_file("shared/b.txt", b"b")\n')
        assert fs.cat_file("shared/b.txt") == b"b"
        assert writer.is_alive()
    with pytest.raises(FileNotFoundError):  # a name nobody wrote is still refused
        fs.cat_file("shared/never.txt")


def test_a_dropped_watch_iterator_stops_collecting(make: Callable[..., BoxFileSystem], user: str) -> None:
    """An iterator made and never started, or left half-way, holds no queue in the filesystem."""
    fs = make(as_user=user)
    fs.makedirs("it")
    never = fs.watch("it")
    started = fs.watch("it", timeout=30)
    assert fs._feed.listening() == 2
    fs.pipe_file("it/a.txt", b"a")
    assert next(started)["path"] in ("it", "it/a.txt")
    del never, started
    gc.collect()
    assert fs._feed.listening() == 0
    closed = fs.watch("it", timeout=0.1)
    assert list(closed) == [] or all(c["path"].startswith("it") for c in closed)
    assert fs._feed.listening() == 0  # ended by its timeout: unregistered at once
    kept = fs.watch("it")
    kept.close()
    assert fs._feed.listening() == 0 and list(kept) == []


def test_the_watcher_start_blocks_no_other_listing(make: Callable[..., BoxFileSystem], user: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """While one listing starts the watcher (its first GET /events on the network), listings of other
    folders and of other filesystems of the same user go ahead."""
    setup = make(as_user=user, watch_events=False)
    for folder in ("a", "b"):
        setup.makedirs(f"{folder}/sub")
    first, second = make(as_user=user), make(as_user=user)
    watcher = watcher_for(first.endpoints, first.provider, first.policy, first.as_user_id)
    assert not watcher.running
    gate, entered = threading.Event(), threading.Event()
    real = watcher.transport.json

    def held(method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        if (kwargs.get("params") or {}).get("stream_position") == "now":
            entered.set()
            assert gate.wait(60)
        return real(method, url, **kwargs)

    monkeypatch.setattr(watcher.transport, "json", held)
    starter = threading.Thread(target=first.ls, args=("a",), daemon=True)
    starter.start()
    assert entered.wait(60)
    others: dict[str, Any] = {}
    lister = threading.Thread(target=lambda: others.update(b=first.ls("b", detail=False),
                                                           root=second.ls("", detail=False)), daemon=True)
    lister.start()
    lister.join(60)  # a guard against a hang, not a timing: the gate stays closed until it is checked
    try:
        assert not lister.is_alive(), "a listing waited for the watcher's first request"
        assert others == {"b": ["b/sub"], "root": ["a", "b"]}
        assert not gate.is_set() and starter.is_alive()
    finally:
        gate.set()
        starter.join(60)
    assert watcher.running and watcher.trusted_since is not None
    assert first._watcher is watcher and second._watcher is watcher
