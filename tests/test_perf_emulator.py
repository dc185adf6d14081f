"""Issue 20: the emulator paces each TCP connection to a bandwidth, as a WAN link to Box would.

No upper bounds on time (the machine is shared): a paced transfer can only be slower than its bytes
over the rate, so the lower bound is asserted; that connections are paced separately is shown on the
pacer with a fake clock.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Any

import pytest

from boxfs import BoxFileSystem
from boxfs.emulator import httpserver
from boxfs.emulator.httpserver import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_each_connection_has_its_own_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(httpserver, "time", clock)
    app = SimpleNamespace(bandwidth=1_000_000.0)
    one, two = Pacer(app), Pacer(app)
    one(500_000)
    assert clock.slept == [pytest.approx(0.5)]
    two(500_000)  # another connection: not queued behind the first one's bytes
    assert clock.slept[-1] == pytest.approx(0.5)
    one(250_000)
    one(250_000)
    assert clock.slept[-2:] == [pytest.approx(0.25), pytest.approx(0.25)]
    clock.now += 10  # idle time earns no burst
    one(1_000_000)
    assert clock.slept[-1] == pytest.approx(1.0)
    clock.now += 0.03  # a pause that overran by 30 ms (a thread woken late): the next bytes catch up
    one(100_000)
    assert clock.slept[-1] == pytest.approx(0.07)
    app.bandwidth = 0.0  # unlimited
    one(10**9)
    assert len(clock.slept) == 6


def test_a_paced_download_and_upload_take_at_least_their_bytes_over_the_rate(fs: BoxFileSystem, emulator: Any) -> None:
    data = os.urandom(3 << 20)
    fs.pipe_file("paced/a.bin", data)
    rate = 6e6
    emulator.set_bandwidth(rate)
    try:
        mark = time.monotonic()
        assert fs.cat_file("paced/a.bin") == data
        fs.pipe_file("paced/b.bin", data)
    finally:
        emulator.set_bandwidth(None)
    time.sleep(0.05)
    recs = [r for r in emulator.request_log.records if r.started >= mark]
    download = [r for r in recs if r.host == "download"]
    upload = [r for r in recs if r.host == "upload"]
    assert len(download) == 1 and len(upload) == 1
    assert download[0].bytes_out == len(data) and upload[0].bytes_in >= len(data)
    assert download[0].finished - download[0].started >= len(data) / rate * 0.99
    assert upload[0].finished - upload[0].started >= len(data) / rate * 0.99
    # unpaced again: the limit is gone
    assert emulator.app.bandwidth == 0.0
