"""Smoke test of the benchmark harness: the tiny matrix for boxfs and box_sdk_gen runs end to end.

It runs the real command (``python -m benchmarks``) against the real emulator, so it fails when a
tool adapter, the worker protocol, the request-log counting or the result checks break. It asserts
no timings: only that every row ran, passed its correctness check and has measured figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_matrix_prints_one_checked_table(tmp_path: Path) -> None:
    out_json = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--scale", "tiny", "--tools", "boxfs,sdk", "--latency-ms", "1",
         "--work-dir", str(tmp_path), "--json", str(out_json)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Workload | Tool | Wall (s)")
    rows = json.loads(out_json.read_text())["rows"]
    keys = {r["workload"] for r in rows}
    assert keys == {"upload-1MB", "download-1MB", "put-small", "get-small", "find-tree", "ranged-reads", "ls-wide"}
    assert len(table) == 1 + len(rows) == 1 + 2 * len(keys)
    for r in rows:
        assert r["status"] == "ok", r
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 10
        assert r["calls"] >= 1  # counted from the emulator's request log
    by = {(r["workload"], r["tool"]): r for r in rows}
    # box_sdk_gen lists a folder of 50 items in one page: exactly one API call.
    assert by[("ls-wide", "sdk")]["calls"] == 1
    # 10 ranged reads through the SDK: each is GET /files/{id}/content (302) + the download URL.
    assert by[("ranged-reads", "sdk")]["calls"] == 20
