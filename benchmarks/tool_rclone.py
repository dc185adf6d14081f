"""Adapter: rclone's Box backend (Debian's ``rclone`` package), driven as a command-line user would.

rclone's Box URLs are compiled in, so it reaches the emulator through
:class:`benchmarks.tlsproxy.ConnectProxy`: ``HTTPS_PROXY`` points at the proxy and ``--ca-cert``
at its generated CA. It authenticates with a static access token for the same service account the
other tools act as (``--box-access-token``; rclone's JWT mode has Box's token URL compiled in too, and
the token request is not what is being measured). Each workload is one ``rclone`` command with
default options (``--transfers 4``, ``--checkers 8``), except the ranged reads: rclone exposes ranges
through ``rclone serve http`` (or a FUSE mount), so its server is started before the clock and the
reads are HTTP ``Range`` requests to it; ``rclone cat --offset`` would cost a process per read.

Caveat shown in docs/performance.md: rclone's traffic goes through TLS and a Python relay that the
other tools do not pay for, so its transfer throughput is a lower bound.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.tools import Outcome

log = logging.getLogger("benchmarks")

REMOTE = "boxbench"
TIME = "/usr/bin/time"


def _time_figures(path: Path) -> tuple[int, float | None]:
    """Peak RSS (KiB) and user + system CPU seconds from GNU time's ``%M %U %S`` line (0, None if absent)."""
    try:
        rss, user, system = path.read_text().strip().splitlines()[-1].split()[-3:]
        return int(rss), float(user) + float(system)
    except (OSError, ValueError, IndexError):
        return 0, None


class RcloneTool:
    name = "rclone"
    label = "rclone (Box backend)"

    def __init__(self, emu: Any, config_path: Path, workdir: Path) -> None:
        self.emu = emu
        self.binary = shutil.which("rclone")
        self.problem: str | None = None
        self.workdir = workdir / "rclone"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proxy: Any = None
        self.timeout = 600.0
        self.cpu: float | None = None
        self.env: dict[str, str] = {}
        self.client_id = json.loads(config_path.read_text())["boxAppSettings"]["clientID"]

    def unavailable(self) -> str | None:
        if self.binary is None:
            return "rclone not installed (Debian: apt-get install rclone)"
        if not os.access(TIME, os.X_OK):
            return f"{TIME} (GNU time) missing: rclone's peak RSS could not be measured"
        if self.proxy is None:
            from benchmarks.tlsproxy import ConnectProxy

            self.proxy = ConnectProxy(self.emu.url, self.workdir / "tls").start()
            self.config = self.workdir / "rclone.conf"
            self.config.write_text("")
            self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("RCLONE_", "HTTP"))}
            self.env.update({
                "HTTPS_PROXY": self.proxy.url,
                f"RCLONE_CONFIG_{REMOTE.upper()}_TYPE": "box",
                # A 60-minute token for the app's service account, as the developer console issues.
                f"RCLONE_CONFIG_{REMOTE.upper()}_ACCESS_TOKEN": self.emu.developer_token(self.client_id),
            })
        return None

    def supports(self, op: str) -> str | None:
        if op == "ranges":
            return "no call that reads many ranges at once (its reads one by one: the row above)"
        return None

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None

    def _cmd(self, *args: str) -> tuple[str, int]:
        """Run one rclone command; return its stdout and peak RSS (KiB, from GNU time, which also gives
        the process's user and system CPU seconds: kept in ``self.cpu``)."""
        rss_file = self.workdir / "rss.txt"
        argv = [TIME, "-f", "%M %U %S", "-o", str(rss_file), str(self.binary), *args, "--retries", "1", "--config", str(self.config),
                "--ca-cert", str(self.proxy.ca_path)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=self.workdir,
                              timeout=self.timeout)
        rss, self.cpu = _time_figures(rss_file)
        if proc.returncode != 0:
            err = [line for line in proc.stderr.splitlines() if "ERROR" in line or "Failed" in line]
            raise RuntimeError((err[-1] if err else proc.stderr.strip()[-300:]).split(" : ", 1)[-1])
        return proc.stdout, rss

    def run(self, op: str, args: dict[str, Any], conn: dict[str, Any], timeout: float,
            on_go: Callable[[], None], log_path: Path) -> Outcome:
        peak = 0
        self.timeout = timeout
        self.cpu = None
        if op == "ranged":
            return self.run_ranged(args, on_go)
        on_go()
        started = time.perf_counter()
        try:
            result, peak = getattr(self, op)(**args)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            return Outcome(seconds=time.perf_counter() - started, error=self._explain(str(exc)))
        return Outcome(seconds=time.perf_counter() - started, result=result, peak_rss_kib=peak, cpu_seconds=self.cpu)

    @staticmethod
    def _explain(error: str) -> str:
        """Shorten rclone's log line; say why where the cause is known."""
        error = error.split(": ", 1)[-1] if error[:4].isdigit() else error
        if "The file part is missing" in error:
            return ("the emulator rejects rclone's multipart upload: rclone names the file part 'contents', "
                    "the emulator only accepts 'file' (Box accepts rclone's)")
        return error

    # ------------------------------------------------------------------------------ workloads
    def upload(self, local_path: str, remote_path: str, parent_id: str, name: str) -> tuple[int, int]:
        _, rss = self._cmd("copyto", local_path, f"{REMOTE}:{remote_path}")
        return os.path.getsize(local_path), rss

    def download(self, remote_path: str, file_id: str, local_path: str) -> tuple[int, int]:
        _, rss = self._cmd("copyto", f"{REMOTE}:{remote_path}", local_path)
        return os.path.getsize(local_path), rss

    def put_many(self, local_dir: str, remote_path: str, parent_id: str, name: str) -> tuple[int, int]:
        _, rss = self._cmd("copy", local_dir, f"{REMOTE}:{remote_path}")
        return len(os.listdir(local_dir)), rss

    def get_many(self, remote_path: str, folder_id: str, local_dir: str) -> tuple[int, int]:
        _, rss = self._cmd("copy", f"{REMOTE}:{remote_path}", local_dir)
        return sum(len(files) for _, _, files in os.walk(local_dir)), rss

    def find(self, remote_path: str, folder_id: str) -> tuple[int, int]:
        out, rss = self._cmd("lsf", "-R", "--files-only", f"{REMOTE}:{remote_path}")
        return len(out.splitlines()), rss

    def ranged(self, remote_path: str, file_id: str, offsets: list[int], length: int) -> tuple[list[str], int]:
        raise AssertionError("run_ranged is used instead")  # pragma: no cover

    def run_ranged(self, args: dict[str, Any], on_go: Callable[[], None]) -> Outcome:
        """Random reads through ``rclone serve http`` (rclone's way to expose ranges; ``rclone cat
        --offset`` would be one process per read). The server is started and ready before the clock."""
        import hashlib
        import signal
        import socket
        import urllib.request

        import psutil

        remote_dir, _, name = args["remote_path"].rpartition("/")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        rss_file = self.workdir / "rss-serve.txt"
        argv = [TIME, "-f", "%M %U %S", "-o", str(rss_file), str(self.binary), "serve", "http", f"{REMOTE}:{remote_dir}",
                "--addr", f"127.0.0.1:{port}", "--config", str(self.config), "--ca-cert", str(self.proxy.ca_path)]
        timer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env,
                                 cwd=self.workdir)
        url = f"http://127.0.0.1:{port}/{name}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline or timer.poll() is not None:
                        return Outcome(error="rclone serve http did not start")
                    time.sleep(0.05)
            on_go()
            started = time.perf_counter()
            digests = []
            for off in args["offsets"]:
                req = urllib.request.Request(url, headers={"Range": f"bytes={off}-{off + args['length'] - 1}"})
                with opener.open(req, timeout=self.timeout) as resp:
                    digests.append(hashlib.sha1(resp.read()).hexdigest())
            seconds = time.perf_counter() - started
        except Exception as exc:  # noqa: BLE001 - reported in the table
            return Outcome(error=f"{type(exc).__name__}: {exc}")
        finally:
            for child in psutil.Process(timer.pid).children():  # the rclone process GNU time started
                child.send_signal(signal.SIGTERM)
            try:
                timer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                timer.kill()
                timer.wait()
        peak, cpu = _time_figures(rss_file)
        return Outcome(seconds=seconds, result=digests, peak_rss_kib=peak, cpu_seconds=cpu,
                       note="Range GETs to `rclone serve http` (CPU: the server's whole life)")

    def ls(self, remote_path: str, folder_id: str) -> tuple[int, int]:
        out, rss = self._cmd("lsf", f"{REMOTE}:{remote_path}")
        return len(out.splitlines()), rss
