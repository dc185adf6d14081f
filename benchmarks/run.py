"""``python -m benchmarks``: boxfs against what users would pick instead, side by side in one run.

The runner hosts the Box emulator in this process (a background thread) with injected latency, seeds
the read-side trees once, then runs every workload with every tool, each in a child process of its own,
and prints one table: wall time, throughput, API calls (counted from the emulator's request log while
the tool's clock runs), peak RSS of the tool's process, and ratios against boxfs. Every result is
checked (sizes, SHA-1s, counts) before it is reported: a tool that returns wrong data gets no figure.

Examples::

    python -m benchmarks                      # full matrix (issue 11), ~15 min on 2 cores
    python -m benchmarks --quick              # smaller sizes, under 3 min
    python -m benchmarks --scale tiny --tools boxfs,sdk --latency-ms 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tools import Outcome, python_tools  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    SCALES,
    LocalData,
    Scale,
    Seeder,
    Workload,
    expected_digests,
    human_size,
    prepare_local,
    ranged_offsets,
    sha1_file,
    workloads,
)

log = logging.getLogger("benchmarks")

HERE = Path(__file__).resolve().parent
DEFAULT_WORK = HERE / "results"
ALL_TOOLS = ("boxfs", "sdk", "ibm-boxfs", "rclone")


@dataclass
class Row:
    workload: str
    title: str
    tool: str
    status: str  # ok | failed | wrong | skipped
    seconds: float | None = None
    throughput: str = ""
    calls: int | None = None  # API requests (api and upload hosts): what Box's per-user rate limit counts
    download_calls: int | None = None  # requests to the download host
    token_calls: int | None = None
    peak_rss_mib: float | None = None
    cpu_seconds: float | None = None  # user + system of the tool's process
    note: str = ""
    routes: dict[str, int] = field(default_factory=dict)  # "METHOD route" -> calls, for the analysis


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the quick scale (same as --scale quick)")
    p.add_argument("--scale", "--sizes", dest="scale", choices=sorted(SCALES), default=None,
                   help="workload sizes: full (issue 11), quick or tiny (smoke test)")
    p.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"comma-separated, from {','.join(ALL_TOOLS)}")
    p.add_argument("--workloads", default="", help="comma-separated workload keys or prefixes (default: all)")
    p.add_argument("--latency-ms", type=float, default=20.0, help="latency the emulator adds to every request")
    p.add_argument("--bandwidth", type=float, default=50.0,
                   help="MB/s per TCP connection and direction, paced by the emulator (a WAN link); 0: unlimited")
    p.add_argument("--work-dir", default=str(DEFAULT_WORK), help="local test data, downloads, logs, JSON results")
    p.add_argument("--json", dest="json_out", default=None, help="also write the rows here (default: in work dir)")
    p.add_argument("--fresh", action="store_true", help="seed the emulator again even if an earlier run did")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


class Bench:
    """One run: the emulator, the seeded trees and the tools."""

    def __init__(self, scale: Scale, tools: list[str], latency: float, work: Path, bandwidth: float = 0.0) -> None:
        self.scale = scale
        self.tool_names = tools
        self.latency = latency
        self.bandwidth = bandwidth  # bytes per second per connection; 0: unlimited
        self.work = work
        self.plugins: dict[str, Any] = {}
        self.rows: list[Row] = []

    # ---------------------------------------------------------------------------------- setup
    def setup(self, fresh: bool = False) -> None:
        """Start the emulator on this scale's state folder, seeding it unless an earlier run did."""
        from boxfs.emulator import BoxEmulator

        self.work.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="run-", dir=self.work))
        t0 = time.monotonic()
        self.data: LocalData = prepare_local(self.scale, self.work / "data")
        log.info("local data ready in %.1f s", time.monotonic() - t0)
        state = self.work / f"emulator-{self.scale.name}"
        seed_file = state / "seed.json"
        signature = json.loads(json.dumps(  # as it reads back from seed.json (tuples become lists)
            {**asdict(self.scale), "timeout": None, "sha1": {str(k): v for k, v in self.data.sha1.items()}}))
        seeded = None
        if not fresh and seed_file.exists():
            saved = json.loads(seed_file.read_text())
            seeded = saved["ids"] if saved.get("signature") == signature else None
        if seeded is None:
            shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True, exist_ok=True)
        self.emu = BoxEmulator(data_dir=state / "data", latency=0.0).start()
        self.config_path = state / "box-config.json"
        if seeded is None or not self.config_path.exists():
            config = self.emu.create_jwt_app(scopes=("root_readwrite", "manage_managed_users"))
            fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(config)
        self.conn = {"config_path": str(self.config_path), "base_urls": self.emu.base_urls, "url": self.emu.url}
        self.seeder = Seeder.for_emulator(str(self.config_path), self.emu.base_urls)
        if seeded is None:
            t0 = time.monotonic()
            seeded = self.seeder.seed(self.scale, self.data)
            seed_file.write_text(json.dumps({"signature": signature, "ids": seeded}))
            log.info("Box trees seeded in %.1f s (not measured; kept in %s for later runs)", time.monotonic() - t0, state)
        else:
            log.info("reusing the Box trees seeded earlier in %s (--fresh to seed again)", state)
        self.ids = dict(seeded)
        self._load_plugins()
        self.ids["write"] = self.seeder.write_folders(f"bench-w-{time.strftime('%Y%m%d-%H%M%S')}", list(self.plugins))

    def _load_plugins(self) -> None:
        available = python_tools()
        for name in self.tool_names:
            if name == "rclone":
                from benchmarks.tool_rclone import RcloneTool

                self.plugins[name] = RcloneTool(self.emu, self.config_path, self.tmp)
            elif name in available:
                self.plugins[name] = available[name]
            else:
                raise SystemExit(f"unknown tool {name!r}; choose from {', '.join(ALL_TOOLS)}")
        for name, plugin in self.plugins.items():
            ensure = getattr(plugin, "ensure_installed", None)
            problem = ensure() if ensure is not None else None
            plugin.problem = problem or plugin.unavailable()
            if plugin.problem:
                log.warning("%s cannot run: %s", name, plugin.problem)

    def close(self) -> None:
        for plugin in self.plugins.values():
            stop = getattr(plugin, "stop", None)
            if stop is not None:
                stop()
        if "write" in getattr(self, "ids", {}):
            self.emu.set_latency(0.0)
            try:  # what the tools wrote is not kept in the reusable state
                self.seeder.delete_folder(self.ids["write"]["root"])
            except Exception as exc:  # noqa: BLE001 - cleanup only
                log.warning("could not delete this run's write folders: %s", exc)
        self.emu.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------------------------- running
    def args_for(self, w: Workload, tool: str) -> dict[str, Any]:
        write = self.ids["write"][tool]
        out_dir = self.tmp / "out" / tool
        out_dir.mkdir(parents=True, exist_ok=True)
        label = human_size(w.size).replace(" ", "")
        if w.op == "upload":
            name = f"up-{label}.bin"
            return {"local_path": str(self.data.files[w.size]), "remote_path": f"{write['path']}/{name}",
                    "parent_id": write["id"], "name": name}
        if w.op == "download":
            f = self.ids["files"][str(w.size)]
            return {"remote_path": f["path"], "file_id": f["id"], "local_path": str(out_dir / f"down-{label}.bin")}
        if w.op == "put_many":
            assert self.data.small_dir is not None
            return {"local_dir": str(self.data.small_dir), "remote_path": f"{write['path']}/put-small",
                    "parent_id": write["id"], "name": "put-small"}
        if w.op == "get_many":
            return {"remote_path": self.ids["small"]["path"], "folder_id": self.ids["small"]["id"],
                    "local_dir": str(out_dir / "get-small")}
        if w.op == "find":
            return {"remote_path": self.ids["tree"]["path"], "folder_id": self.ids["tree"]["id"]}
        if w.op in ("ranged", "ranges"):
            f = self.ids["files"][str(self.scale.ranged_source)]
            return {"remote_path": f["path"], "file_id": f["id"], "offsets": ranged_offsets(self.scale),
                    "length": self.scale.ranged_length}
        if w.op == "ls":
            return {"remote_path": self.ids["wide"]["path"], "folder_id": self.ids["wide"]["id"]}
        raise ValueError(w.op)

    def verify(self, w: Workload, tool: str, args: dict[str, Any], result: Any) -> str | None:
        """None when the tool's work is right; else what is wrong. Runs with latency off, unmeasured."""
        s = self.scale
        if w.op == "upload":
            entries = {e.name: e for e in self.seeder.items(args["parent_id"])}
            e = entries.get(args["name"])
            if e is None:
                return "uploaded file not found on Box"
            if int(e.size or 0) != w.size or e.sha_1 != self.data.sha1[w.size]:
                return f"uploaded file differs (size {e.size}, sha1 {e.sha_1})"
            return None
        if w.op == "download":
            path = Path(args["local_path"])
            try:
                if not path.exists() or path.stat().st_size != w.size:
                    return f"downloaded {path.stat().st_size if path.exists() else 'no'} bytes, expected {w.size}"
                if sha1_file(path) != self.data.sha1[w.size]:
                    return "downloaded bytes differ (SHA-1)"
                return None
            finally:
                path.unlink(missing_ok=True)
        if w.op == "put_many":
            entries = {e.name: e for e in self.seeder.items(args["parent_id"])}
            folder = entries.get(args["name"])
            if folder is None:
                return "destination folder not created"
            n, total = self.seeder.count_files(folder.id)
            if (n, total) != (s.small_count, s.small_count * s.small_size):
                return f"{n} files / {total} bytes on Box, expected {s.small_count} / {s.small_count * s.small_size}"
            return None
        if w.op == "get_many":
            root = Path(args["local_dir"])
            sizes = [p.stat().st_size for p in root.rglob("*") if p.is_file()] if root.exists() else []
            shutil.rmtree(root, ignore_errors=True)
            if len(sizes) != s.small_count or sum(sizes) != s.small_count * s.small_size:
                return f"{len(sizes)} files / {sum(sizes)} bytes locally, expected {s.small_count}"
            return None
        if w.op == "find":
            want = s.tree_items - s.tree_folders
            return None if result == want else f"found {result} files, expected {want}"
        if w.op in ("ranged", "ranges"):
            want = expected_digests(self.data.files[s.ranged_source], args["offsets"], args["length"])
            bad = sum(1 for a, b in zip(result or [], want, strict=False) if a != b) + abs(len(result or []) - len(want))
            return None if bad == 0 else f"{bad} of {len(want)} ranged reads returned wrong bytes"
        if w.op == "ls":
            return None if result == s.wide_count else f"listed {result} items, expected {s.wide_count}"
        return None

    def _settled_log(self) -> list[Any]:
        """The request log once it stops growing: the emulator logs a request just after answering
        it, so the tool's last call can land a moment after the tool has finished."""
        seen = -1
        while True:
            time.sleep(0.05)
            now = len(self.emu.request_log)
            if now == seen:
                return self.emu.request_log.records
            seen = now

    def run_one(self, w: Workload, tool: str) -> Row:
        plugin = self.plugins[tool]
        row = Row(w.key, w.title, tool, "skipped")
        why = plugin.problem or plugin.supports(w.op)
        if why:
            row.note = why
            return row
        args = self.args_for(w, tool)

        def go() -> None:
            self.emu.request_log.clear()
            self.emu.set_latency(self.latency)
            self.emu.set_bandwidth(self.bandwidth)

        log_path = self.tmp / "out" / f"{tool}.log"
        out: Outcome = plugin.run(w.op, args, self.conn, self.scale.timeout, go, log_path)
        self.emu.set_latency(0.0)
        self.emu.set_bandwidth(None)  # checks and seeding run unshaped
        records = self._settled_log()
        # Box rate-limits API and upload calls; token requests, downloads and the long polls to the real-time
        # server (the event watcher waiting) are not API calls: the routes breakdown still lists the polls.
        row.calls = sum(1 for r in records if r.host not in ("oauth2", "download", "realtime"))
        row.download_calls = sum(1 for r in records if r.host == "download")
        row.token_calls = sum(1 for r in records if r.host == "oauth2")
        row.cpu_seconds = out.cpu_seconds
        row.routes = dict(Counter(f"{r.method} {r.route}" for r in records if r.host != "oauth2").most_common())
        row.seconds = out.seconds
        row.note = out.note
        row.peak_rss_mib = out.peak_rss_kib / 1024 if out.peak_rss_kib else None
        if out.error:
            row.status = "failed"
            row.note = out.error.splitlines()[0][:160]
            return row
        problem = self.verify(w, tool, args, out.result)
        if problem:
            row.status = "wrong"
            row.note = problem
            return row
        row.status = "ok"
        if out.seconds:
            if w.unit == "bytes":
                row.throughput = f"{w.amount / out.seconds / 1e6:.1f} MB/s"
            else:
                row.throughput = f"{w.amount / out.seconds:,.0f} items/s"
        return row

    def run(self, selected: list[Workload]) -> list[Row]:
        for w in selected:
            for tool in self.plugins:
                t0 = time.monotonic()
                row = self.run_one(w, tool)
                self.rows.append(row)
                log.info("%-14s %-10s %-7s %s %s (%.1f s with checks)", w.key, tool, row.status,
                         f"{row.seconds:.2f} s" if row.seconds is not None else "-", row.note, time.monotonic() - t0)
        return self.rows


# ------------------------------------------------------------------------------------------- table
def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return ""
    return f"{value / base:.2f}x"


def render_table(rows: list[Row]) -> str:
    """One Markdown table; ratios are tool / boxfs on the same workload (above 1: more than boxfs)."""
    head = ("| Workload | Tool | Wall (s) | Throughput | CPU (s) | API calls | Download reqs | Peak RSS (MiB) "
            "| Time vs boxfs | CPU vs boxfs | Calls vs boxfs | RSS vs boxfs | Notes |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    base = {r.workload: r for r in rows if r.tool == "boxfs" and r.status == "ok"}
    for r in rows:
        b = base.get(r.workload)
        ok = r.status == "ok"
        secs = f"{r.seconds:.2f}" if ok and r.seconds is not None else "—"
        calls = f"{r.calls:,}" if r.calls is not None and r.status != "skipped" else "—"
        downloads = f"{r.download_calls:,}" if r.download_calls is not None and r.status != "skipped" else "—"
        cpu = f"{r.cpu_seconds:.2f}" if ok and r.cpu_seconds is not None else "—"
        rss = f"{r.peak_rss_mib:.0f}" if r.peak_rss_mib else "—"
        note = r.note if r.status == "ok" else f"**{r.status}**: {r.note}"
        if ok and r.token_calls and r.token_calls > 1:
            note = (note + "; " if note else "") + f"+{r.token_calls} token calls"
        lines.append(
            f"| {r.title} | {r.tool} | {secs} | {r.throughput or '—'} | {cpu} | {calls} | {downloads} | {rss} "
            f"| {_ratio(r.seconds, b.seconds) if ok and b else ''} "
            f"| {_ratio(r.cpu_seconds, b.cpu_seconds) if ok and b else ''} "
            f"| {_ratio(r.calls, b.calls) if ok and b else ''} "
            f"| {_ratio(r.peak_rss_mib, b.peak_rss_mib) if ok and b else ''} | {note.replace('|', '/')} |"
        )
    return "\n".join(lines)


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kib = int(fh.readline().split()[1])
        mem = f", {kib / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    if not args.verbose:
        for noisy in ("boxfs", "boxfs.emulator", "box_sdk_gen", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    scale = SCALES[args.scale or ("quick" if args.quick else "full")]
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if "boxfs" not in tools:
        log.warning("boxfs is not among the tools: the ratio columns will be empty")
    selected = workloads(scale)
    if args.workloads:
        wanted = [x.strip() for x in args.workloads.split(",") if x.strip()]
        selected = [w for w in selected if any(w.key.startswith(x) for x in wanted)]
    work = Path(args.work_dir).resolve()
    started = time.monotonic()
    bench = Bench(scale, tools, args.latency_ms / 1000.0, work, bandwidth=args.bandwidth * 1e6)
    try:
        bench.setup(fresh=args.fresh)
        rows = bench.run(selected)
    finally:
        if hasattr(bench, "emu"):
            bench.close()
    elapsed = time.monotonic() - started
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    link = f"{args.bandwidth:g} MB/s per connection" if args.bandwidth else "no bandwidth limit"
    header = (f"boxfs benchmarks — scale {scale.name}, {args.latency_ms:g} ms latency per request, {link}, "
              f"{machine()}; total run {elapsed:.0f} s; load average at the end {load} (1/5/15 min)")
    print(header)
    print()
    print(render_table(rows))
    print()
    print("API calls: requests to Box's API and upload hosts the emulator answered while the tool's clock ran, "
          "OAuth token requests excluded (each fresh process makes one); download reqs: those to the download "
          "host. CPU: user + system seconds of the tool's own process while it ran (GNU time for rclone). "
          "Ratios: tool / boxfs. Peak RSS: VmHWM of the tool's own process (GNU time for rclone).")
    out = Path(args.json_out) if args.json_out else work / f"results-{scale.name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"header": header, "scale": scale.name, "latency_ms": args.latency_ms,
                               "bandwidth_mb_s": args.bandwidth,
                               "rows": [asdict(r) for r in rows]}, indent=2))
    log.info("rows written to %s", out)
    return 0 if all(r.status in ("ok", "skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
