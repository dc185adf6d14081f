"""Child process that runs ONE workload with ONE Python tool, so its memory is measured on its own.

Run as a script (``<python> benchmarks/worker.py``), never as ``-m benchmarks.worker``: the script's
folder then comes first on ``sys.path``, so ``import tool_<name>`` finds the adapter next to this file
while ``import boxfs`` resolves to whichever boxfs the interpreter's environment holds — this project's
in the main virtualenv, IBM's ``boxfs==0.3.0`` in ``benchmarks/.venvs/ibm-boxfs``. For that reason this
file uses the standard library only.

Protocol (lines on stdout prefixed with ``@@bench``; anything else a library prints is ignored):

1. the parent writes one JSON line on stdin: ``{"tool", "op", "args", "conn"}``;
2. the worker imports the adapter and builds its client (not timed), then says ``ready``;
3. the parent marks the emulator's request log and writes ``go``;
4. the worker runs ``Tool.<op>(**args)`` under a monotonic clock and says ``done`` with the seconds,
   the CPU seconds (user + system) the op used, the op's result and its peak RSS (``VmHWM`` of this process since ``exec``: exact, unlike a
   child's ``ru_maxrss``, which Linux seeds with the parent's RSS at ``exec`` time).
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
import traceback
from typing import Any

PREFIX = "@@bench "


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB (``VmHWM``), 0 where /proc is absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main() -> int:
    job = json.loads(sys.stdin.readline())
    try:
        module = importlib.import_module(f"tool_{job['tool']}")
        tool = module.Tool(job["conn"])
        op = getattr(tool, job["op"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which shows it in the table
        emit("error", stage="setup", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        return 1
    emit("ready", rss_kib=peak_rss_kib())
    if sys.stdin.readline().strip() != "go":
        return 2
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    try:
        result = op(**job["args"])
    except Exception as exc:  # noqa: BLE001
        elapsed = time.perf_counter() - started
        emit("error", stage="run", seconds=elapsed, error=f"{type(exc).__name__}: {exc}",
             trace=traceback.format_exc(), peak_rss_kib=peak_rss_kib())
        return 1
    elapsed = time.perf_counter() - started
    emit("done", seconds=elapsed, cpu_seconds=cpu_seconds() - cpu_before, result=result, peak_rss_kib=peak_rss_kib())
    close = getattr(tool, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - the measurement is already taken
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
