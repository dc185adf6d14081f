"""What the emulator's upload routes cost it in CPU: a script, not a test (the machine is shared, so
wall times drift; the emulator's own CPU seconds do not).

The emulator runs in this process; boxfs uploads from a child process, so ``getrusage(RUSAGE_SELF)``
here counts the emulator alone. ``big`` puts one file of ``--size-mb`` through a chunked session and
reports CPU seconds per GB and the commit request's own latency; ``small`` puts ``--files`` files of
10 KB with ``fs.put`` and reports CPU seconds per 1,000 uploads. ``--profile`` prints where the
emulator's request threads spent their time (cProfile per thread, merged)::

    .venv/bin/python -m tests.emulator.measure_upload big --size-mb 1024
    .venv/bin/python -m tests.emulator.measure_upload small --files 1000 --latency 0.02 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from boxfs.emulator import BoxEmulator
from boxfs.emulator.httpserver import HttpApp
from tests.support import admin_app

CHILD = """
import json, sys
from boxfs import BoxFileSystem
opts, mode, src = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
fs = BoxFileSystem(**opts, skip_instance_cache=True)
if mode == "big":
    fs.put_file(src, "big.bin")
else:
    fs.put(src, "small", recursive=True)
"""


def cpu_seconds() -> tuple[float, float]:
    """This process's (user, system) CPU seconds so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


@contextmanager
def profiled(enabled: bool) -> Iterator[None]:
    """cProfile each request thread of the emulator (a profiler sees only the thread it runs in)."""
    if not enabled:
        yield
        return
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original = HttpApp.handle

    def handle(self: HttpApp, h: Any) -> None:
        prof = cProfile.Profile(time.thread_time)  # CPU time: waits for locks, sleeps and sockets are free
        with lock:
            profiles.append(prof)
        prof.runcall(original, self, h)

    HttpApp.handle = handle  # type: ignore[method-assign]
    try:
        yield
    finally:
        HttpApp.handle = original  # type: ignore[method-assign]
        stats = pstats.Stats(profiles[0])
        for prof in profiles[1:]:
            stats.add(prof)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("big", "small"))
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emu-measure-") as tmp, BoxEmulator(latency=args.latency) as emu:
        user = emu.create_user("measure@example.com")
        opts = {"jwt_config": admin_app(emu), "as_user": user, "base_urls": emu.base_urls}
        if args.mode == "big":
            src = Path(tmp) / "big.bin"
            with open(src, "wb") as f:
                for _ in range(args.size_mb):
                    f.write(os.urandom(1 << 20))
            units, label = args.size_mb / 1024, "GB"
        else:
            src = Path(tmp) / "small"
            src.mkdir()
            for i in range(args.files):
                (src / f"f{i:05}.bin").write_bytes(os.urandom(10 * 1024))
            units, label = args.files / 1000, "1,000 files"
        emu.request_log.clear()
        before = cpu_seconds()
        with profiled(args.profile):
            subprocess.run([sys.executable, "-c", CHILD, json.dumps(opts), args.mode, str(src)], check=True)
        user, system = (after - start for after, start in zip(cpu_seconds(), before, strict=True))
        spent = user + system
        records = list(emu.request_log.records)
        print(f"emulator CPU: {spent:.2f} s (user {user:.2f}, system {system:.2f}); "
              f"{spent / units:.2f} s per {label}; {len(records)} requests")
        for r in records:
            if r.route.endswith("/commit"):
                print(f"commit: {1000 * (r.finished - r.started):.1f} ms (status {r.status})")


if __name__ == "__main__":
    main()
