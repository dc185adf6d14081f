"""Draw the benchmark results as one picture for docs/performance.md.

The input is what ``python -m benchmarks`` writes (``benchmarks/results/results-<scale>-<time>.json``,
git-ignored; the newest is taken by default), or, with ``--from-doc``, the results table already in
docs/performance.md (for when no run is at hand: the table is what a real run printed). The output is a
PNG of three panels, one bar per tool for each workload: wall time and API calls on a log scale (the
tools differ by orders of magnitude there), peak memory on a linear one. A tool that failed a workload has no bar
there and is named in the panel's note.

    python scripts/plot_benchmarks.py                          # newest JSON -> docs/images/performance.png
    python scripts/plot_benchmarks.py --json benchmarks/results/results-full-20261125-1340.json
    python scripts/plot_benchmarks.py --from-doc docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "images" / "performance.png"
RESULTS = ROOT / "benchmarks" / "results"
TOOL_ORDER = ("boxfs", "sdk", "ibm-boxfs", "rclone")
COLORS = {"boxfs": "#1f6feb", "sdk": "#8b949e", "ibm-boxfs": "#d29922", "rclone": "#2da44e"}

log = logging.getLogger("plot_benchmarks")


@dataclass
class Result:
    """One tool on one workload; ``None`` where the run gave no figure (failed, skipped, timed out)."""

    title: str
    tool: str
    seconds: float | None
    calls: int | None
    rss_mib: float | None


def _number(text: str) -> float | None:
    text = text.strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None  # "—", "", "failed"


def from_json(path: Path) -> list[Result]:
    """Rows of a ``python -m benchmarks`` JSON file (only "ok" rows have figures)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise SystemExit(f"{path}: not a benchmarks results file (no 'rows' list)")
    results = []
    for row in rows:
        ok = row.get("status") == "ok"
        results.append(Result(str(row.get("title") or row.get("workload")), str(row.get("tool")),
                              row.get("seconds") if ok else None, row.get("calls") if ok else None,
                              row.get("peak_rss_mib") if ok else None))
    return results


def from_doc(path: Path) -> list[Result]:
    """Rows of the first results table in docs/performance.md (header ``| Workload | Tool | Wall (s) | ...``);
    the page's later tables (a run without the bandwidth limit...) measure other conditions."""
    results = []
    columns: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            if results:
                break
            columns = None
            continue
        if cells[:2] == ["Workload", "Tool"]:
            columns = cells
            continue
        if columns is None or set("".join(cells)) <= set("-: "):
            continue
        row = dict(zip(columns, cells, strict=False))
        seconds = _number(row.get("Wall (s)", ""))
        calls, rss = _number(row.get("API calls", "")), _number(row.get("Peak RSS (MiB)", ""))
        if seconds is None:  # failed or timed out: its partial calls and memory are not comparable
            calls = rss = None
        results.append(Result(row["Workload"], row["Tool"], seconds, None if calls is None else int(calls), rss))
    if not results:
        raise SystemExit(f"{path}: no results table (a '| Workload | Tool | Wall (s) | ...' header) found")
    return results


def newest_json() -> Path:
    found = sorted(RESULTS.glob("results-*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no results JSON in {RESULTS}: run 'python -m benchmarks' first, or use --from-doc "
                         "docs/performance.md to plot the table already in the docs")
    return found[-1]


def plot(results: list[Result], out: Path, source: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    titles = list(dict.fromkeys(r.title for r in results))
    tools = [t for t in TOOL_ORDER if any(r.tool == t for r in results)]
    tools += sorted({r.tool for r in results} - set(tools))
    by_key = {(r.title, r.tool): r for r in results}
    panels = (("seconds", "wall time (s, log scale)", True), ("calls", "API calls (log scale)", True),
              ("rss_mib", "peak RSS (MiB)", False))
    height = 0.8 / max(1, len(tools))
    fig, axes = plt.subplots(1, 3, figsize=(16, 0.55 * len(titles) + 2.2), sharey=True)
    for ax, (attr, label, log_scale) in zip(axes, panels, strict=True):
        missing = []
        for i, tool in enumerate(tools):
            ys, xs = [], []
            for j, title in enumerate(titles):
                value = getattr(by_key[(title, tool)], attr) if (title, tool) in by_key else None
                if value is None or value <= 0:
                    if (title, tool) in by_key:
                        missing.append(f"{tool}: {title}")
                    continue
                ys.append(j + (i - (len(tools) - 1) / 2) * height)
                xs.append(value)
            ax.barh(ys, xs, height=height, color=COLORS.get(tool), label=tool)
        if log_scale:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks collide on short ranges
        ax.set_title(label, fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.25)
        if attr == "seconds" and missing:
            ax.text(0.99, 0.01, "no bar: failed\n" + "\n".join(sorted(set(missing))[:6]), transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7, color="#6e7781")
    axes[0].set_yticks(range(len(titles)), titles, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower left", fontsize=8, frameon=False, bbox_to_anchor=(0, 1.06), ncols=len(tools))
    fig.suptitle(f"boxfs benchmarks: each tool on each workload ({source})", fontsize=11, y=0.995)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    # no timestamps in the file, so the same results give the same bytes (a clean diff when nothing changed)
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/plot_benchmarks.py", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--json", type=Path, help="a results JSON of python -m benchmarks (default: the newest)")
    source.add_argument("--from-doc", type=Path, help="plot the results table of this Markdown file instead")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the PNG to write (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.from_doc:
        results, name = from_doc(args.from_doc), f"the table in {args.from_doc.name}"
    else:
        path = args.json or newest_json()
        results, name = from_json(path), re.sub(r"\.json$", "", path.name)
    plot(results, args.out, name)
    log.info("%d results plotted to %s", len(results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
