"""Smoke test of the benchmark harness: the tiny matrix for boxfs and box_sdk_gen runs end to end.

It runs the real command (``python -m benchmarks``) against the real emulator, so it fails when a
tool adapter, the worker protocol, the request-log counting or the result checks break. It asserts
no timings: only that every row ran, passed its correctness check and has measured figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    assert keys == {"upload-1MB", "download-1MB", "put-small", "get-small", "find-tree", "ranged-reads",
                    "cat-ranges", "ls-wide"}
    assert len(table) == 1 + len(rows) == 1 + 2 * len(keys)
    assert "50 MB/s per connection" in proc.stdout  # the default WAN-like link
    by = {(r["workload"], r["tool"]): r for r in rows}
    assert by[("cat-ranges", "sdk")]["status"] == "skipped"  # the SDK has no call for many ranges
    for r in rows:
        if (r["workload"], r["tool"]) == ("cat-ranges", "sdk"):
            continue
        assert r["status"] == "ok", r
        assert r["seconds"] > 0 and r["peak_rss_mib"] > 10 and r["cpu_seconds"] > 0
        assert r["calls"] >= 1  # counted from the emulator's request log
    # box_sdk_gen lists a folder of 50 items in one page: exactly one API call.
    assert by[("ls-wide", "sdk")]["calls"] == 1
    # 10 ranged reads through the SDK: each is GET /files/{id}/content (302) + the download URL.
    assert (by[("ranged-reads", "sdk")]["calls"], by[("ranged-reads", "sdk")]["download_calls"]) == (10, 10)
    # boxfs: one redirect for the file, reused by every range (plus the path lookup's listings)
    ranges = by[("cat-ranges", "boxfs")]
    assert ranges["download_calls"] == 10 and ranges["calls"] <= 5, ranges


def test_tls_proxy_routes_box_hosts_to_the_emulator(tmp_path: Path) -> None:
    """The rclone mode's CONNECT proxy: TLS with the generated CA for Box's names, nothing else."""
    import http.client
    import ssl

    from benchmarks.tlsproxy import ConnectProxy
    from boxfs.emulator import BoxEmulator

    with BoxEmulator() as emu, ConnectProxy(emu.url, tmp_path) as proxy:
        client_id = json.loads(emu.create_jwt_app())["boxAppSettings"]["clientID"]
        token = emu.developer_token(client_id)
        ctx = ssl.create_default_context(cafile=str(proxy.ca_path))
        port = int(proxy.url.rsplit(":", 1)[1])

        def via_proxy(host: str) -> http.client.HTTPSConnection:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
            conn.set_tunnel(host, 443)
            return conn

        up = via_proxy("upload.box.com")
        body = (b'--b\r\nContent-Disposition: form-data; name="attributes"\r\n\r\n{"name":"x.txt","parent":{"id":"0"}}'
                b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\nhello\r\n--b--\r\n')
        up.request("POST", "/api/2.0/files/content", body=body,
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=b"})
        resp = up.getresponse()
        assert resp.status == 201, resp.read()
        file_id = json.loads(resp.read())["entries"][0]["id"]

        api = via_proxy("api.box.com")  # keep-alive: two exchanges on one tunnel
        api.request("GET", "/2.0/folders/0/items/", headers={"Authorization": f"Bearer {token}"})
        resp = api.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["total_count"] == 1
        api.request("GET", f"/2.0/files/{file_id}/content", headers={"Authorization": f"Bearer {token}"})
        resp = api.getresponse()
        resp.read()
        assert resp.status == 302
        # Host was rewritten: the download URL points at the emulator itself, not at a Box name.
        assert resp.getheader("Location", "").startswith(emu.url + "/download/")
        deadline = time.monotonic() + 5  # the emulator logs a request just after answering it
        while len(emu.request_log) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r.host for r in emu.request_log.records] == ["upload", "api", "api"]

        with pytest.raises(OSError, match="403"):  # nothing but Box's names is routed
            via_proxy("example.com").request("GET", "/")
