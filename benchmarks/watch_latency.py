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
    python -m benchmarks.watch_latency --via sftp    # seen by SFTP readdir of a boxfs server (also: ftp)
"""

from __future__ import annotations

import argparse
import contextlib
import ftplib
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator
from boxfs.servers.ftp import start_ftp_server
from boxfs.servers.sftp import start_sftp_server
from boxfs.servers.users import hash_password

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


def server_listing(via: str, stack: contextlib.ExitStack, fs: BoxFileSystem) -> Callable[[], dict[str, int]]:
    """``ls`` of ``bench`` (name -> size) through a boxfs FTP or SFTP server serving ``fs``'s user: the
    server has no freshness rule of its own, so this measures what its clients see."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    users = folder / "users.toml"
    users.write_text(f'[users.bench]\npassword = "{hash_password("bench")}"\nbox_user = "{fs.user_id}"\n')
    users.chmod(0o600)
    if via == "ftp":
        server = stack.enter_context(start_ftp_server(users, lambda _box_user: fs))
        ftp = ftplib.FTP()
        ftp.connect(server.host, server.port, timeout=60)
        ftp.login("bench", "bench")
        stack.callback(ftp.close)
        return lambda: {f"bench/{n}": int(f["size"]) for n, f in ftp.mlsd("/bench") if f.get("type") == "file"}
    server = stack.enter_context(start_sftp_server(users, lambda _box_user: fs, state_dir=folder))
    transport = paramiko.Transport((server.host, server.port))
    stack.callback(transport.close)
    transport.connect(username="bench", password="bench")
    key = transport.get_remote_server_key()
    if f"{key.get_name()} {key.get_base64()}" != server.host_key.export_public_key().decode().strip():
        raise RuntimeError("the SFTP server's host key is not the one it was started with")
    sftp = paramiko.SFTPClient.from_transport(transport)
    assert sftp is not None
    return lambda: {f"bench/{a.filename}": int(a.st_size or 0) for a in sftp.listdir_attr("/bench")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="changes to time (default 20)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="emulator latency per request (default 20)")
    parser.add_argument("--via", choices=("fs", "ftp", "sftp"), default="fs",
                        help="observe with fs.ls (default), FTP MLSD or SFTP readdir of a boxfs server")
    args = parser.parse_args(argv)
    with BoxEmulator(latency=args.latency_ms / 1000) as emu, contextlib.ExitStack() as stack:
        user = emu.create_user("bench-watch@example.com")
        fs = BoxFileSystem(jwt_config=emu.create_jwt_app(), as_user=user, base_urls=emu.base_urls,
                           skip_instance_cache=True, watch_events=True)
        fs.makedirs("bench")
        fs.ls("bench")
        listing = (lambda: {e["name"]: e["size"] for e in fs.ls("bench")}) if args.via == "fs" else \
            server_listing(args.via, stack, fs)
        listing()
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
                while not seen(listing()):
                    time.sleep(0.005)
                latencies.append(time.time() - done)
                print(f"trial {trial + 1:3d} {kind:7s} seen after {latencies[-1] * 1000:7.0f} ms", flush=True)
        finally:
            writer.stdin.close()
            writer.wait(30)
        # the observer acts As-User; the writer (a token of the user's own) does not; long polls carry no user
        calls = Counter(r.route for r in emu.request_log.records
                        if r.started >= start and (r.as_user == user or r.route == "/subscribe"))
    print(f"\n{args.trials} changes by another process at {args.latency_ms:.0f} ms latency, seen by "
          f"{'ls' if args.via == 'fs' else args.via.upper() + ' listings'}: "
          f"median {statistics.median(latencies) * 1000:.0f} ms, worst {max(latencies) * 1000:.0f} ms")
    print("requests of the observing filesystem meanwhile (listed every 5 ms): "
          + ", ".join(f"{route} x{n}" for route, n in calls.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
