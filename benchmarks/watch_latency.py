"""``python -m benchmarks.watch_latency``: how long a change made by another process takes to be seen.

A long-lived ``BoxFileSystem`` (its change watcher on, as by default) has listed a folder. Another
process, with another app's token for the same user, then changes that folder (a new file, a new
version, a rename, a delete, in turn); after each change it reports the wall-clock time its call
returned, and this process times how long until ``ls`` (no ``invalidate_cache()``) shows the change.
The emulator runs in this process with injected latency (20 ms by default). Prints every trial, the
median, the worst, and the API calls the observing filesystem's user made meanwhile.

Examples::

    python -m benchmarks.watch_latency               # 20 trials at 20 ms
    python -m benchmarks.watch_latency --trials 50 --latency-ms 50
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections import Counter
from typing import Any

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator

#: the other process: one change per line read on stdin, answering the time its call returned
WRITER = textwrap.dedent("""
    import json, sys, time
    from boxfs import BoxFileSystem
    fs = BoxFileSystem(**json.loads(sys.argv[1]), watch_events=False)
    for line in sys.stdin:
        kind, i = line.split()
        name = f"bench/f{i}.txt"
        if kind == "create":
            fs.pipe_file(name, b"new")
        elif kind == "update":
            fs.pipe_file(name, b"second version")
        elif kind == "rename":
            fs.mv(name, f"bench/g{i}.txt")
        else:
            fs.rm(f"bench/g{i}.txt")
        print(time.time(), flush=True)
""")

KINDS = ("create", "update", "rename", "delete")


def expected(kind: str, i: int) -> Any:
    """What ``ls`` must show once change ``kind`` of trial ``i`` is seen."""
    f, g = f"bench/f{i}.txt", f"bench/g{i}.txt"
    return {
        "create": lambda ls: f in ls,
        "update": lambda ls: ls.get(f) == len(b"second version"),
        "rename": lambda ls: g in ls and f not in ls,
        "delete": lambda ls: g not in ls,
    }[kind]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="changes to time (default 20)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request (default 20)")
    args = parser.parse_args(argv)
    with BoxEmulator(latency=args.latency_ms / 1000) as emu:
        user = emu.create_user("bench-watch@example.com")
        fs = BoxFileSystem(jwt_config=emu.create_jwt_app(), as_user=user, base_urls=emu.base_urls,
                           skip_instance_cache=True, watch_events=True)
        fs.makedirs("bench")
        fs.ls("bench")
        client_id, secret = emu.create_ccg_app(scopes=("root_readwrite",))
        options = {"client_id": client_id, "client_secret": secret, "user_id": user, "base_urls": emu.base_urls}
        writer = subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(options)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdin is not None and writer.stdout is not None
        latencies: list[float] = []
        start = time.monotonic()
        try:
            for trial in range(args.trials):
                kind, i = KINDS[trial % 4], trial // 4
                seen = expected(kind, i)
                writer.stdin.write(f"{kind} {i}\n")
                writer.stdin.flush()
                done = float(writer.stdout.readline())
                while not seen({e["name"]: e["size"] for e in fs.ls("bench")}):
                    time.sleep(0.005)
                latencies.append(time.time() - done)
                print(f"trial {trial + 1:3d} {kind:7s} seen after {latencies[-1] * 1000:7.0f} ms", flush=True)
        finally:
            writer.stdin.close()
            writer.wait(30)
        # the observer acts As-User; the writer (a token of the user's own) does not; long polls carry no user
        calls = Counter(r.route for r in emu.request_log.records
                        if r.started >= start and (r.as_user == user or r.route == "/subscribe"))
    print(f"\n{args.trials} changes by another process at {args.latency_ms:.0f} ms latency: "
          f"median {statistics.median(latencies) * 1000:.0f} ms, worst {max(latencies) * 1000:.0f} ms")
    print("requests of the observing filesystem meanwhile (its ls polled every 5 ms): "
          + ", ".join(f"{route} x{n}" for route, n in calls.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
