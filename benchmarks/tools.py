"""The tools being compared, as plug-ins the runner drives the same way.

Python tools run each workload in a fresh child process (``benchmarks/worker.py``) under their own
interpreter, so a tool's peak RSS is its own process's, measured, and IBM's boxfs can live in a
virtualenv of its own. rclone is a Go binary: each workload is one ``rclone`` command, timed from the
parent and measured with GNU time (``%M``, the maximum RSS of that process).
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks")

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"
VENVS = HERE / ".venvs"
IBM_VENV = VENVS / "ibm-boxfs"
IBM_REQUIREMENT = "boxfs==0.3.0"
PREFIX = "@@bench "


@dataclass
class Outcome:
    """What one tool did on one workload."""

    seconds: float | None = None
    result: Any = None
    peak_rss_kib: int | None = None
    cpu_seconds: float | None = None  # user + system of the tool's process while it ran
    error: str | None = None
    note: str = ""  # how the tool did it, when not obvious


class PythonTool:
    """A tool whose adapter is ``benchmarks/tool_<module>.py``, run by ``python`` in a child process."""

    def __init__(self, name: str, module: str, python: str | Path, label: str,
                 unsupported: dict[str, str] | None = None) -> None:
        self.unsupported = unsupported or {}
        self.name = name
        self.module = module
        self.python = str(python)
        self.label = label
        self.problem: str | None = None  # set by the runner when the tool cannot run at all

    def unavailable(self) -> str | None:
        """Why this tool cannot run at all, or None."""
        if not Path(self.python).exists():
            return f"interpreter {self.python} missing"
        return None

    def supports(self, op: str) -> str | None:
        """Why this tool cannot run ``op``, or None."""
        return self.unsupported.get(op)

    def run(self, op: str, args: dict[str, Any], conn: dict[str, Any], timeout: float,
            on_go: Callable[[], None], log_path: Path) -> Outcome:
        """Run one workload; ``on_go`` is called right before the clock starts (marks the request log)."""
        job = {"tool": self.module, "op": op, "args": args, "conn": conn}
        with open(log_path, "ab") as err:
            proc = subprocess.Popen([self.python, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err, text=True, cwd=str(log_path.parent))
            events: queue.Queue[dict[str, Any] | None] = queue.Queue()

            def pump() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if line.startswith(PREFIX):
                        events.put(json.loads(line[len(PREFIX):]))
                events.put(None)

            threading.Thread(target=pump, daemon=True).start()
            assert proc.stdin is not None
            deadline = time.monotonic() + timeout
            try:
                proc.stdin.write(json.dumps(job) + "\n")
                proc.stdin.flush()
                ready = self._next(events, deadline)
                if ready is None or ready["event"] != "ready":
                    return Outcome(error=self._failure(ready, "setup"))
                on_go()
                proc.stdin.write("go\n")
                proc.stdin.flush()
                done = self._next(events, deadline)
                if done is None or done["event"] != "done":
                    out = Outcome(error=self._failure(done, "run"))
                    if done is not None:
                        out.seconds = done.get("seconds")
                        out.peak_rss_kib = done.get("peak_rss_kib")
                    return out
                return Outcome(seconds=done["seconds"], result=done["result"], peak_rss_kib=done["peak_rss_kib"],
                               cpu_seconds=done.get("cpu_seconds"))
            except TimeoutError:
                proc.kill()  # our own worker, by its handle
                return Outcome(error=f"timed out after {timeout:.0f} s")
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    @staticmethod
    def _next(events: queue.Queue[dict[str, Any] | None], deadline: float) -> dict[str, Any] | None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        try:
            return events.get(timeout=left)
        except queue.Empty:
            raise TimeoutError from None

    @staticmethod
    def _failure(event: dict[str, Any] | None, stage: str) -> str:
        if event is None:
            return f"worker exited during {stage} (see its log)"
        log.debug("worker trace:\n%s", event.get("trace", ""))
        return f"{event.get('stage', stage)}: {event.get('error', event)}"


class IbmBoxfsTool(PythonTool):
    """IBM's boxfs 0.3.0 in ``benchmarks/.venvs/ibm-boxfs`` (created with pip on first use)."""

    def __init__(self) -> None:
        super().__init__("ibm-boxfs", "ibm", IBM_VENV / "bin" / "python", "IBM boxfs 0.3.0")

    def ensure_installed(self) -> str | None:
        """Create the virtualenv and ``pip install boxfs==0.3.0`` when missing; return an error or None."""
        probe = [self.python, "-c", "import boxfs, boxsdk; assert boxsdk.__version__.startswith('3.')"]
        if Path(self.python).exists() and subprocess.run(probe, capture_output=True).returncode == 0:
            return None
        log.info("creating %s with %s (one time)", IBM_VENV, IBM_REQUIREMENT)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(IBM_VENV)], check=True, capture_output=True)
            subprocess.run([self.python, "-m", "pip", "install", "-q", IBM_REQUIREMENT], check=True,
                           capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"could not install {IBM_REQUIREMENT}: {exc}"
        if subprocess.run(probe, capture_output=True).returncode != 0:
            return f"{IBM_REQUIREMENT} installed but boxsdk 3.x not importable"
        return None


def python_tools() -> dict[str, PythonTool]:
    main = sys.executable
    return {
        "boxfs": PythonTool("boxfs", "boxfs", main, "boxfs (this project)"),
        "sdk": PythonTool("sdk", "sdk", main, "box_sdk_gen",
                          {"ranges": "no call that reads many ranges at once (its reads one by one: the row above)"}),
        "ibm-boxfs": IbmBoxfsTool(),
    }

