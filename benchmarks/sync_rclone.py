"""``boxfs sync`` against ``rclone sync``: the same 1,000 small files, three runs each, one table.

Runs: the first sync (everything goes up), a no-op re-sync of the unchanged tree, and a re-sync after
1% of the files changed. Each run is one command as a shell user types it (process start included):
``python -m boxfs sync LOCAL box://bench-sync/boxfs`` and ``rclone sync LOCAL boxbench:bench-sync/rclone``
(default options; rclone reaches the emulator as in :mod:`benchmarks.tool_rclone`). Both act as the JWT
app's service account. Requests are counted from the emulator's request log (token requests included;
rclone gets a static token, boxfs asks for one per process). After every run the tree on Box is checked
against the local one by SHA-1 (``boxfs check``, outside the clock).

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
import subprocess
import sys
import tempfile
import time
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
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
        self.env["XDG_CACHE_HOME"] = str(work / "cache")  # boxfs's hash cache starts empty, as for a new user
        self.boxfs = [sys.executable, "-m", "boxfs", "--base-url", self.emu.url, "--config", str(self.config)]

    def measure(self, run: Callable[[], Any]) -> dict[str, Any]:
        self.emu.set_latency(self.latency)
        start = len(self.emu.request_log)
        began = time.perf_counter()
        try:
            run()
        finally:
            seconds = time.perf_counter() - began
            self.emu.set_latency(0.0)
        sent = self.emu.request_log.records[start:]
        return {"seconds": seconds, "requests": len(sent),
                "uploads": sum(1 for r in sent if r.method == "POST" and r.route in UPLOADS)}

    def boxfs_cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.boxfs, *args], env=self.env, capture_output=True, text=True, timeout=1800)

    def check(self, local: Path, remote: str) -> None:
        proc = self.boxfs_cmd("check", str(local), f"box://{remote}")
        if proc.returncode != 0:
            raise RuntimeError(f"{remote} does not match the local tree: {proc.stdout[-500:]}{proc.stderr[-500:]}")


def boxfs_sync(runner: Runner, local: Path, remote: str) -> Callable[[], None]:
    def run() -> None:
        proc = runner.boxfs_cmd("sync", str(local), f"box://{remote}", "--no-progress")
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
    p.add_argument("--tools", default="boxfs,rclone")
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
        made = boxfs_sync(runner, local, remote) if name == "boxfs" else rclone_sync(runner, local, remote)
        if isinstance(made, str):
            notes[name] = made
        else:
            tools[name] = made
    rows: list[dict[str, Any]] = []
    try:
        for run in RUNS:
            if run == "1% changed":
                for path in rng.sample(files, max(1, len(files) // 100)):
                    path.write_bytes(rng.randbytes(rng.randint(1000, 10000)))
            for name, sync_run in tools.items():
                row = {"run": run, "tool": name, **runner.measure(sync_run)}
                runner.check(local, f"bench-sync/{name}")
                rows.append(row)
    finally:
        if getattr(runner, "rclone", None) is not None:
            runner.rclone.stop()  # type: ignore[attr-defined]
        runner.emu.stop()
    print(f"| Run ({args.files} files, {args.latency_ms:g} ms latency) | Tool | Wall (s) | Requests | Uploads |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['run']} | {r['tool']} | {r['seconds']:.2f} | {r['requests']:,} | {r['uploads']:,} |")
    for name, why in notes.items():
        print(f"\n{name}: not run ({why})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "not_run": notes}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
