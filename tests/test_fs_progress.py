"""What a user sees of a transfer and of their space: ``callback=`` progress at byte granularity on every
transfer path (issue 5), and ``quota()``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fsspec.callbacks import Callback


class Recorder(Callback):
    """Keeps every update so a test can check the total and that progress only moves forward."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[int] = []

    def call(self, *args: Any, **kwargs: Any) -> None:
        self.updates.append(self.value)


@pytest.mark.parametrize(("size", "route"), [(70_000, "/files/content"), (21_000_000, "/files/upload_sessions")],
                         ids=["one-request", "chunked-session"])
def test_writer_reports_every_uploaded_byte(make_fs: Callable[..., Any], fs_user: tuple[str, str], emulator: Any,
                                            size: int, route: str) -> None:
    # spool_threshold 100 kB: the 21 MB writer spills to the spool and goes as a chunked session
    # (Box's sessions start at 20,000,000 bytes)
    fs = make_fs(as_user=fs_user[0], spool_threshold=100_000)
    rec = Recorder()
    data = os.urandom(size)
    before = emulator.request_log.count(method="POST", route=route, user_id=fs_user[0])
    with fs.open("progress.bin", "wb", callback=rec) as f:
        for i in range(0, size, 1 << 20):
            f.write(data[i:i + (1 << 20)])
    assert emulator.request_log.count(method="POST", route=route, user_id=fs_user[0]) == before + 1
    assert fs.cat_file("progress.bin") == data
    assert rec.value == size and rec.updates and rec.updates[-1] == size
    assert rec.updates == sorted(rec.updates)


def test_put_and_get_report_progress(fs: Any, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(200_000))
    up, down = Recorder(), Recorder()
    fs.put_file(str(src), "p/src.bin", callback=up)
    fs.get_file("p/src.bin", str(tmp_path / "back.bin"), callback=down)
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    assert up.value == down.value == 200_000


def test_quota_is_the_acting_users_space(make_fs: Any, emulator: Any) -> None:
    user = emulator.create_user(f"quota-{os.urandom(4).hex()}@example.com", space_amount=5_000_000)
    fs = make_fs(as_user=user)
    assert fs.quota() == (0, 5_000_000)
    fs.pipe_file("q.bin", b"x" * 1234)
    assert fs.quota() == (1234, 5_000_000)
