"""The README's main job runs end to end on its own embedded emulator."""

from __future__ import annotations

import subprocess
import sys


def test_demo_writes_and_reads_parquet_as_impersonated_user() -> None:
    done = subprocess.run([sys.executable, "-m", "boxfs.demo"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "acting as alice@example.com" in out
    assert "box://reports/q3.parquet:" in out and "sha1" in out
    assert "143.25" in out  # the frame read back from Box
    assert out.rstrip().endswith("demo: OK")
