"""A 1 GB file up through a chunked upload session and down again, with the server's memory measured.

Why: the emulator must stream request and response bodies (never a whole file in memory). The server runs
in a subprocess so psutil can sample its resident set size while the transfer runs; the test data is
generated deterministically part by part, so the test itself never holds the file either.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from .conftest import checked_session

SIZE = 1024 * 1024 * 1024
RSS_LIMIT = 150 * 1024 * 1024
LAUNCHER = Path(__file__).with_name("launch_emulator.py")
log = logging.getLogger(__name__)


@dataclass
class Server:
    process: subprocess.Popen[str]
    info: dict[str, str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER), str(tmp_path / "data")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line, f"emulator subprocess did not start (exit code {process.poll()})"
        yield Server(process, json.loads(line))
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PeakRSS(threading.Thread):
    """Samples a process's RSS every 20 ms and remembers the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            self.samples += 1
            self._stop_event.wait(0.02)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def part_bytes(index: int, size: int) -> bytes:
    """Part ``index`` of the test file: deterministic and incompressible."""
    return random.Random(index).randbytes(size)


def test_1gb_roundtrip_server_memory(server: Server) -> None:
    info = server.info
    url = info["url"]
    monitor = PeakRSS(server.process.pid)
    monitor.start()
    with checked_session() as http:
        token = http.post(
            url + "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "box_subject_type": "user",
                "box_subject_id": info["user_id"],
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        session = http.post(
            url + "/api/2.0/files/upload_sessions",
            headers=headers,
            json={"folder_id": "0", "file_size": SIZE, "file_name": "one-gigabyte.bin"},
        )
        assert session.status_code == 201, session.text
        session_info = session.json()
        part_size, total_parts = session_info["part_size"], session_info["total_parts"]
        assert part_size * total_parts >= SIZE

        whole = hashlib.sha1()
        parts = []
        for index, offset in enumerate(range(0, SIZE, part_size)):
            chunk = part_bytes(index, min(part_size, SIZE - offset))
            whole.update(chunk)
            response = http.put(
                session_info["session_endpoints"]["upload_part"],
                headers=headers
                | {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {offset}-{offset + len(chunk) - 1}/{SIZE}",
                    "Digest": "sha=" + base64.b64encode(hashlib.sha1(chunk).digest()).decode(),
                },
                data=chunk,
            )
            assert response.status_code == 200, response.text
            parts.append(response.json()["part"])
        assert len(parts) == total_parts

        commit = http.post(
            session_info["session_endpoints"]["commit"],
            headers=headers | {"Digest": "sha=" + base64.b64encode(whole.digest()).decode()},
            json={"parts": parts},
        )
        assert commit.status_code == 201, commit.text
        file = commit.json()["entries"][0]
        assert file["size"] == SIZE and file["sha1"] == whole.hexdigest()

        down, received = hashlib.sha1(), 0
        with http.get(url + f"/2.0/files/{file['id']}/content", headers=headers, stream=True) as response:
            assert response.status_code == 200
            for block in response.iter_content(1 << 20):
                down.update(block)
                received += len(block)
    peak = monitor.stop()
    log.info("1 GiB round trip: emulator peak RSS %.1f MiB over %d samples", peak / 2**20, monitor.samples)
    assert received == SIZE and down.hexdigest() == whole.hexdigest()
    assert monitor.samples > 10
    assert peak < RSS_LIMIT, f"emulator peak RSS {peak / 2**20:.0f} MiB during a 1 GiB transfer"
