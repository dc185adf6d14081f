"""``boxfs sync`` against ``rclone sync``: the same 1,000 small files, three runs each, one table.

Runs: the first sync (everything goes up), a no-op re-sync of the unchanged tree, and a re-sync after
1% of the files changed. The re-syncs take well under a second, where one run's wall time moves by a
third with the machine's other work: each is run ``--repeat`` times (5; the 1% run with a fresh 1% each
time, the same files for every tool, the tools taking turns) and the table shows each tool's run with the
median wall time (``--json`` has them all). Each run is one command as a shell user types it (process start included):
``python -m boxfs sync LOCAL box://bench-sync/boxfs`` and ``rclone sync LOCAL boxbench:bench-sync/rclone``
(default options; rclone reaches the emulator as in :mod:`benchmarks.tool_rclone`). Both act as the JWT
app's service account. ``boxfs`` and ``rclone`` are given the same kind of credential, a ready-made
60-minute access token (``BOXFS_TOKEN``; rclone's ``access_token``); ``boxfs-jwt`` is boxfs with the JWT
config instead, asking for a token in every process (one request more, and box_sdk_gen to import).
Requests are counted from the emulator's request log (token requests included). CPU is the user + system
seconds of the command's process tree (``RUSAGE_CHILDREN``): unlike wall time, it does not move with the
machine's load. After every run the tree on Box is checked against the local one by SHA-1 (``boxfs
check``, outside the clock).

Python runs from bytecode, as after ``pip install`` (which compiles it): the commands get a bytecode
folder of their own (``PYTHONPYCACHEPREFIX`` in the work dir, ``PYTHONDONTWRITEBYTECODE`` dropped),
filled by one small sync before the clock. Without it every boxfs process would compile its sources
first: a second of CPU on a loaded machine, and nothing a user's installation does.

    python -m benchmarks.sync_rclone                       # 1,000 files, 20 ms emulator latency
    python -m benchmarks.sync_rclone --files 50 --latency-ms 1 --tools boxfs   # a smoke run

Caveat (as in docs/performance.md): rclone's traffic goes through TLS and a Python relay that boxfs does
not pay for, so rclone's figures carry that overhead; the request counts do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boxfs.emulator import BoxEmulator

RUNS = ("first sync", "no-op re-sync", "1% changed")
UPLOADS = ("/files/content", "/files/{file_id}/content", "/files/upload_sessions", "/files/{file_id}/upload_sessions")


def make_tree(root: Path, files: int, rng: random.Random) -> list[Path]:
    """``files`` files of 1-10 KB in folders of 100."""
    out = []
    for i in range(files):
        path = root / f"d{i // 100:02d}" / f"file{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1000, 10000)))
        out.append(path)
    return out


class Runner:
    """Hosts the emulator, times one command, counts its requests."""

    def __init__(self, work: Path, latency: float) -> None:
        self.work = work
        self.latency = latency
        self.emu = BoxEmulator(latency=0.0).start()
        self.config = work / "config.json"
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.emu.create_jwt_app(scopes=("root_readwrite", "manage_managed_users")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_") and k != "PYTHONDONTWRITEBYTECODE"}
        env["XDG_CACHE_HOME"] = str(work / "cache")  # boxfs's hash cache starts empty, as for a new user
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")  # bytecode, as an installed package has
        client_id = json.loads(self.config.read_text())["boxAppSettings"]["clientID"]
        #: how each boxfs variant authenticates (the token in the environment, never in argv)
        self.envs = {"boxfs": env | {"BOXFS_TOKEN": self.emu.developer_token(client_id)},
                     "boxfs-jwt": env | {"BOXFS_JWT_CONFIG": str(self.config)}}
        self.boxfs = [sys.executable, "-m", "boxfs", "--base-url", self.emu.url]

    def measure(self, run: Callable[[], Any]) -> dict[str, Any]:
        self.emu.set_latency(self.latency)
        start = len(self.emu.request_log)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        try:
            run()
        finally:
            seconds = time.perf_counter() - began
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.emu.set_latency(0.0)
        sent = self.emu.request_log.records[start:]
        return {"seconds": seconds, "cpu": after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime,
                "requests": len(sent), "uploads": sum(1 for r in sent if r.method == "POST" and r.route in UPLOADS),
                # where the requests went (in --json): what a change in the count is made of
                "routes": dict(Counter(f"{r.method} {r.route} {r.status}" for r in sent))}

    def boxfs_cmd(self, *args: str, variant: str = "boxfs") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.boxfs, *args], env=self.envs[variant], capture_output=True, text=True,
                              timeout=1800)

    def warm_up(self, variant: str) -> None:
        """One small sync before the clock: writes the bytecode every later command of ``variant`` loads."""
        tiny = self.work / "warm-up"
        tiny.mkdir(exist_ok=True)
        (tiny / "one.txt").write_bytes(b"warm-up")
        proc = self.boxfs_cmd("sync", str(tiny), f"box://bench-warm-up/{variant}", "--no-progress", variant=variant)
        if proc.returncode != 0:
            raise RuntimeError(f"warm-up of {variant} failed: {proc.stderr[-1000:]}")

    def check(self, local: Path, remote: str) -> None:
        proc = self.boxfs_cmd("check", str(local), f"box://{remote}")
        if proc.returncode != 0:
            raise RuntimeError(f"{remote} does not match the local tree: {proc.stdout[-500:]}{proc.stderr[-500:]}")


def boxfs_sync(runner: Runner, local: Path, remote: str, variant: str = "boxfs") -> Callable[[], None]:
    runner.warm_up(variant)

    def run() -> None:
        proc = runner.boxfs_cmd("sync", str(local), f"box://{remote}", "--no-progress", variant=variant)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-1000:])
    return run


def rclone_sync(runner: Runner, local: Path, remote: str) -> Callable[[], None] | str:
    from benchmarks.tool_rclone import REMOTE, RcloneTool

    tool = RcloneTool(runner.emu, runner.config, runner.work)
    problem = tool.unavailable()
    if problem:
        return problem
    runner.rclone = tool  # type: ignore[attr-defined] - stopped by main

    def run() -> None:
        tool._cmd("sync", str(local), f"{REMOTE}:{remote}")
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sync_rclone", description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--tools", default="boxfs,boxfs-jwt,rclone", help="from boxfs, boxfs-jwt, rclone")
    p.add_argument("--repeat", type=int, default=5,
                   help="runs of each re-sync per tool; the table shows the one with the median wall time")
    p.add_argument("--work-dir", default=None, help="local data and logs (default: a temporary folder)")
    p.add_argument("--json", dest="json_out", default=None, help="also write the rows here")
    args = p.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="boxfs-sync-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1000)
    local = work / "tree"
    files = make_tree(local, args.files, rng)
    runner = Runner(work, args.latency_ms / 1000.0)
    tools: dict[str, Callable[[], None]] = {}
    notes: dict[str, str] = {}
    for name in args.tools.split(","):
        remote = f"bench-sync/{name}"
        if name not in ("boxfs", "boxfs-jwt", "rclone"):
            p.error(f"unknown tool {name!r} (choose from boxfs, boxfs-jwt, rclone)")
        made = rclone_sync(runner, local, remote) if name == "rclone" else boxfs_sync(runner, local, remote, name)
        if isinstance(made, str):
            notes[name] = made
        else:
            tools[name] = made
    rows: list[dict[str, Any]] = []
    try:
        for run in RUNS:
            samples: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
            for _ in range(1 if run == "first sync" else args.repeat):
                if run == "1% changed":  # a fresh 1% each time, the same files for every tool
                    for path in rng.sample(files, max(1, len(files) // 100)):
                        path.write_bytes(rng.randbytes(rng.randint(1000, 10000)))
                for name, sync_run in tools.items():
                    samples[name].append(runner.measure(sync_run))
                    runner.check(local, f"bench-sync/{name}")
            for name, runs in samples.items():
                middle = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
                rows.append({"run": run, "tool": name, **middle, "all_seconds": [r["seconds"] for r in runs],
                             "all_requests": [r["requests"] for r in runs]})
    finally:
        if getattr(runner, "rclone", None) is not None:
            runner.rclone.stop()  # type: ignore[attr-defined]
        runner.emu.stop()
    print(f"| Run ({args.files} files, {args.latency_ms:g} ms latency) | Tool | Wall (s) | CPU (s) | Requests | Uploads |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['tool']} | {r['seconds']:.2f} | {r['cpu']:.2f} | {r['requests']:,} | {r['uploads']:,} |")
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for name, why in notes.items():
        print(f"\n{name}: not run ({why})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "not_run": notes}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
