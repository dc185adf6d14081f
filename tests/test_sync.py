"""``boxfs.sync``: sync and check of real trees against the emulator, costs counted from its request log.

The big test follows one 1,000-file tree (nested folders, hostile names, a few files above a lowered
spool threshold) through a first sync, a no-op re-sync, a dry run and a sync of 10 changed / 5 deleted /
5 added files, with ``check`` before and after. Box -> local and Box -> Box run on part of it, and
an interrupted ``boxfs sync`` (SIGKILL) is run again to completion.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from support import injected_faults

from boxfs.emulator import BoxEmulator
from boxfs.sync import BoxSide, FileFilter, FolderHints, HashCache, LocalSide, check, sync

UPLOADS = ("/files/content", "/files/{file_id}/content", "/files/upload_sessions", "/files/{file_id}/upload_sessions")
LISTING = "/folders/{folder_id}/items"
MB = 1 << 20
HOSTILE = ("a [1].txt", "star*.txt", "q?.txt", "Mixed Case.TXT")


def _requests(emu: BoxEmulator, uid: str, start: int) -> list[Any]:
    return [r for r in emu.request_log.records[start:] if uid in (r.as_user, r.user_id)]


def _uploads(records: list[Any]) -> int:
    return sum(1 for r in records if r.method == "POST" and r.route in UPLOADS)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tree(root: Path, rng: random.Random) -> tuple[int, int]:
    """1,000 files in 5 x 4 folders (hostile names among them) plus 3 above 1 MB; (files, folders)."""
    count = 0
    for a in range(5):
        for b in range(4):
            for c in range(50 - (len(HOSTILE) if (a, b) == (0, 0) else 0)):
                _write(root / f"top{a}" / f"sub{b}" / f"f{c:03d}.bin", rng.randbytes(rng.randint(1, 400)))
                count += 1
    for name in HOSTILE:
        _write(root / "top0" / "sub0" / name, rng.randbytes(64))
        count += 1
    for i, size in enumerate((MB + 1, 2 * MB, 3 * MB + 7)):
        _write(root / "top1" / f"big{i}.bin", rng.randbytes(size))
        count += 1
    return count, 5 + 20


def _versions(fs: Any, root: str) -> dict[str, tuple[str, str]]:
    fs.invalidate_cache()
    return {k: (v["id"], v.get("etag")) for k, v in fs.find(root, detail=True).items()}


def test_hash_cache_warm_reads_a_folder_in_one_query(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    first = HashCache(path)
    rows = {f"/data/tree/d{i % 3}/f{i}": (i, i * 10, f"{i:040x}") for i in range(300)}
    rows["/data/tree2/x"] = (1, 1, "c" * 40)  # a sibling whose name starts like the folder: not below it
    rows["/data/tree/bad"] = (1, 1, "not-a-sha1")
    for p, (size, mtime, sha1) in rows.items():
        first.put(p, size, mtime, sha1)
    first.close()
    cache = HashCache(path)
    selects: list[str] = []
    cache._db.set_trace_callback(lambda sql: selects.append(sql) if sql.startswith("SELECT") else None)
    cache.warm("/data/tree")
    for p, (size, mtime, sha1) in rows.items():
        if p.startswith("/data/tree/") and p != "/data/tree/bad":
            assert cache.get(p, size, mtime) == sha1
            assert cache.get(p, size + 1, mtime) is None and cache.get(p, size, mtime + 1) is None
    assert cache.get("/data/tree/bad", 1, 1) is None  # read back in bulk, still untrusted
    assert cache.get("/data/tree/new", 1, 1) is None
    assert len(selects) == 1  # every lookup below the warmed folder answered from memory
    cache.put("/data/tree/new", 1, 1, "d" * 40)
    assert cache.get("/data/tree/new", 1, 1) == "d" * 40
    assert cache.get("/data/tree2/x", 1, 1) == "c" * 40 and len(selects) == 2  # outside: one query
    cache.close()


def test_sync_tree_first_noop_changed_dry_run_delete_and_check(
        emulator: BoxEmulator, make_fs: Callable[..., Any], new_user: Callable[..., tuple[str, str]],
        tmp_path: Path) -> None:
    uid, _login = new_user("sync")
    rng = random.Random(21)
    src = tmp_path / "src"
    files, folders = _tree(src, rng)
    assert files == 1003
    hashes = tmp_path / "cache" / "sha1.sqlite3"

    def run(**options: Any) -> Any:
        fs = make_fs(as_user=uid, spool_threshold=MB)  # a new filesystem: what a new process knows
        local = LocalSide(HashCache(hashes))
        try:
            return sync(local, str(src), BoxSide(fs), "mirror/tree", transfers=8, **options)
        finally:
            local.hashes.close()

    # first sync: everything goes up, every byte checked by SHA-1 through check()
    report = run()
    assert report.failed == [] and len(report.copied) == files and report.skipped == []
    assert report.bytes_copied == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert oct(hashes.stat().st_mode & 0o777) == "0o600"
    with closing(sqlite3.connect(hashes)) as db:  # every upload's SHA-1 (checked by Box) remembered: no re-read later
        assert db.execute("SELECT COUNT(*) FROM sha1").fetchone()[0] == files
    verdict = check(LocalSide(), str(src), BoxSide(make_fs(as_user=uid)), "mirror/tree")
    assert verdict.ok and verdict.same == files
    box = make_fs(as_user=uid)
    assert box.cat_file("mirror/tree/top0/sub0/a [1].txt") == (src / "top0/sub0/a [1].txt").read_bytes()
    before = _versions(box, "mirror/tree")

    # no-op re-sync: zero uploads, no new version, only one listing per folder (plus the two above it)
    start = len(emulator.request_log)
    report = run()
    sent = _requests(emulator, uid, start)
    assert report.failed == [] and report.copied == [] and len(report.skipped) == files
    assert _uploads(sent) == 0
    api = [r for r in sent if not r.route.startswith("/oauth2")]
    assert {(r.method, r.route) for r in api} == {("GET", LISTING)}
    assert len(api) == folders + 1 + 2  # the tree's folders, mirror/tree itself, "" and "mirror"
    assert _versions(box, "mirror/tree") == before

    # change 10 (5 keeping their size: only SHA-1 tells), delete 5, add 5
    all_files = sorted(p for p in src.rglob("*") if p.is_file())
    changed = rng.sample(all_files, 15)
    modified, deleted = changed[:10], changed[10:]
    for i, p in enumerate(modified):  # 5 keep their size: only the SHA-1 tells them apart
        size = p.stat().st_size
        p.write_bytes(rng.randbytes(size) if i < 5 else rng.randbytes(size + 3))
    for p in deleted:
        p.unlink()
    added = [src / "top4" / "new" / f"n{i}.txt" for i in range(5)]
    for p in added:
        _write(p, rng.randbytes(99))
    rel = {str(p.relative_to(src)) for p in modified + added}
    gone = {str(p.relative_to(src)) for p in deleted}

    verdict = check(LocalSide(), str(src), BoxSide(make_fs(as_user=uid)), "mirror/tree")
    assert set(verdict.differ) == {str(p.relative_to(src)) for p in modified}
    assert set(verdict.only_src) == {str(p.relative_to(src)) for p in added} and set(verdict.only_dst) == gone

    # dry run: the plan, and nothing but reading
    start = len(emulator.request_log)
    dry = run(delete=True, dry_run=True)
    assert {r.method for r in _requests(emulator, uid, start)} <= {"GET", "POST"}
    assert _uploads(_requests(emulator, uid, start)) == 0
    assert all(r.route.startswith("/oauth2") for r in _requests(emulator, uid, start) if r.method != "GET")
    assert {a.rel for a in dry.copied} == rel and {a.rel for a in dry.deleted} == gone
    assert _versions(box, "mirror/tree") == before

    # without --delete nothing is removed; with it exactly those five, after the copies
    start = len(emulator.request_log)
    report = run(delete=True)
    sent = _requests(emulator, uid, start)
    assert report.failed == []
    assert {a.rel for a in report.copied} == rel and {a.rel for a in report.deleted} == gone
    assert _uploads(sent) == 15
    assert sum(1 for r in sent if r.method == "DELETE") == 5
    verdict = check(LocalSide(), str(src), BoxSide(make_fs(as_user=uid)), "mirror/tree")
    assert verdict.ok and verdict.same == files

    # Box -> local of one folder, then Box -> Box of it server side; both re-run as no-ops
    out = tmp_path / "out"
    fs = make_fs(as_user=uid)
    down = sync(BoxSide(fs), "mirror/tree/top0", LocalSide(), str(out))
    assert down.failed == [] and len(down.copied) == 200
    assert (out / "sub0" / "star*.txt").read_bytes() == (src / "top0" / "sub0" / "star*.txt").read_bytes()
    assert not list(out.rglob(".boxfs-partial-*"))
    assert sync(BoxSide(fs), "mirror/tree/top0", LocalSide(), str(out)).copied == []
    start = len(emulator.request_log)
    across = sync(BoxSide(fs), "mirror/tree/top0", BoxSide(fs), "copy/top0")
    sent = _requests(emulator, uid, start)
    assert across.failed == [] and len(across.copied) == 200 and _uploads(sent) == 0
    assert sum(1 for r in sent if r.route == "/files/{file_id}/copy") == 200
    assert check(BoxSide(make_fs(as_user=uid)), "copy/top0", LocalSide(), str(src / "top0")).ok


def test_filters_and_case_insensitive_matching(make_fs: Callable[..., Any], new_user: Callable[..., tuple[str, str]],
                                               tmp_path: Path) -> None:
    uid, _login = new_user("filt")
    src = tmp_path / "src"
    for name in ("keep/a.CSV", "keep/b.txt", ".git/config", "logs/x.log", "top.csv"):
        _write(src / name, name.encode())
    fs = make_fs(as_user=uid)
    report = sync(LocalSide(), str(src), BoxSide(fs), "f", filters=FileFilter(include=("*.csv",), exclude=(".git",)))
    assert sorted(a.rel for a in report.copied) == ["keep/a.CSV", "top.csv"]
    fs.pipe({"f/logs/old.log": b"old", "f/keep/A.csv": b"changed on Box"})
    fs.invalidate_cache()
    # A.csv on Box is keep/a.CSV (Box names are case-insensitive): replaced, not duplicated
    report = sync(LocalSide(), str(src), BoxSide(fs), "f", delete=True, filters=FileFilter(exclude=("logs/**",)))
    assert sorted(a.rel for a in report.copied) == [".git/config", "keep/a.CSV", "keep/b.txt"]
    assert report.deleted == []  # logs/old.log is excluded: neither copied nor deleted
    fs.invalidate_cache()
    assert fs.cat_file("f/keep/a.csv") == b"keep/a.CSV" and fs.exists("f/logs/old.log")
    # a folder SRC lacks goes, except what the filters protect in it (and so the folder itself)
    fs.pipe({"f/gone/a.txt": b"a", "f/gone/b.log": b"b", "f/whole/c.txt": b"c"})
    fs.invalidate_cache()
    report = sync(LocalSide(), str(src), BoxSide(fs), "f", delete=True, filters=FileFilter(exclude=("*.log",)))
    assert sorted(a.rel for a in report.deleted) == ["gone/a.txt", "whole"]
    fs.invalidate_cache()
    assert fs.exists("f/gone/b.log") and not fs.exists("f/gone/a.txt") and not fs.exists("f/whole")


def test_failed_item_is_reported_and_deletions_held_back(make_fs: Callable[..., Any], tmp_path: Path,
                                                          new_user: Callable[..., tuple[str, str]]) -> None:
    uid, _login = new_user("fail")
    src = tmp_path / "src"
    _write(src / "ok.txt", b"fine")
    _write(src / "trailing.txt ", b"Box refuses this name")
    fs = make_fs(as_user=uid)
    fs.pipe("d/extra.txt", b"only on Box")
    report = sync(LocalSide(), str(src), BoxSide(fs), "d", delete=True)
    assert [a.rel for a in report.copied] == ["ok.txt"]
    assert len(report.failed) == 2 and "space" in report.failed[0][1]  # says why, before any request
    assert "deletion" in report.failed[1][1] and report.deleted == []
    fs.invalidate_cache()
    assert fs.cat_file("d/extra.txt") == b"only on Box"


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    return env


def test_interrupted_sync_rerun_completes(emulator: BoxEmulator, jwt_config: str, make_fs: Callable[..., Any],
                                         new_user: Callable[..., tuple[str, str]], tmp_path: Path) -> None:
    uid, login = new_user("kill")
    src = tmp_path / "src"
    rng = random.Random(7)
    for i in range(240):
        _write(src / f"d{i % 6}" / f"file{i:03d}.bin", rng.randbytes(rng.randint(10, 3000)))
    config = tmp_path / "app.json"
    config.write_text(jwt_config)
    base = [sys.executable, "-m", "boxfs", "--base-url", emulator.url, "--config", str(config), "--as-user", login]
    env = _cli_env(tmp_path)
    start = len(emulator.request_log)
    proc = subprocess.Popen([*base, "sync", str(src), "box://k", "--transfers", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _uploads(_requests(emulator, uid, start)) < 60 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    first = _uploads(_requests(emulator, uid, start))
    assert 60 <= first < 240, f"the kill came too late to test anything ({first} uploads)"

    missing = subprocess.run([*base, "check", str(src), "box://k"], env=env, capture_output=True, timeout=120)
    assert missing.returncode == 1 and b"missing on box://k" in missing.stdout

    mid = len(emulator.request_log)
    again = subprocess.run([*base, "--json", "sync", str(src), "box://k"], env=env, capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()
    summary = json.loads(again.stdout)["summary"]
    assert summary["failed"] == 0 and summary["copied"] + summary["skipped"] == 240
    assert summary["copied"] <= 240 - first + 2  # what had landed is skipped (at most the in-flight pair redone)
    assert _uploads(_requests(emulator, uid, mid)) == summary["copied"]
    ok = subprocess.run([*base, "check", str(src), "box://k"], env=env, capture_output=True, timeout=120)
    assert ok.returncode == 0, ok.stdout.decode()
    fs = make_fs(as_user=uid)
    for p in sorted(src.rglob("*.bin"))[::40]:
        assert hashlib.sha1(fs.cat_file("k/" + str(p.relative_to(src)))).hexdigest() == \
            hashlib.sha1(p.read_bytes()).hexdigest()


def test_sync_cli_dry_run_json_and_bad_options(emulator: BoxEmulator, jwt_config: str,
                                               new_user: Callable[..., tuple[str, str]], tmp_path: Path) -> None:
    _uid, login = new_user("cli")
    src = tmp_path / "src"
    _write(src / "a.txt", b"a")
    config = tmp_path / "app.json"
    config.write_text(jwt_config)
    base = [sys.executable, "-m", "boxfs", "--base-url", emulator.url, "--config", str(config), "--as-user", login]
    env = _cli_env(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*base, *args], env=env, capture_output=True, timeout=120)

    dry = cli("sync", "--dry-run", str(src), "box://s")
    assert dry.returncode == 0 and b"would copy (new): a.txt" in dry.stdout
    assert cli("check", str(src), "box://s").returncode == 1  # box://s does not exist (yet)
    assert cli("ls", "box://").stdout.strip() == b""  # the dry run created nothing
    done = cli("sync", str(src), "box://s", "--bwlimit", "10M", "--progress")
    assert done.returncode == 0 and b"copied 1 files" in done.stderr
    assert b"100%" in done.stderr  # the bar, forced on although stderr is a pipe
    again = json.loads(cli("--json", "sync", str(src), "box://s").stdout)
    assert again["summary"]["copied"] == 0 and again["skipped"][0]["path"] == "a.txt"
    assert cli("check", str(src), "box://s").returncode == 0
    for bad in (["--bwlimit", "fast"], ["--transfers", "0"], ["--size-only", "--checksum"], ["--frobnicate"]):
        proc = cli("sync", *bad, str(src), "box://s")
        assert proc.returncode == 2, (bad, proc.stderr)
    assert cli("sync", str(tmp_path / "nope"), "box://s").returncode == 1


@pytest.mark.parametrize("junk", [b"not a database", b""])
def test_hash_cache_read_back_is_untrusted(tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "c" / "sha1.sqlite3"
    path.parent.mkdir()
    path.write_bytes(junk)
    cache = HashCache(path)
    cache.put("/x", 1, 2, "a" * 40)  # an unusable file disables the cache, never the sync
    assert cache.get("/x", 1, 2) in (None, "a" * 40)
    cache.close()
    good = HashCache(tmp_path / "g.sqlite3")
    good.put("/y", 1, 2, "not-a-sha1")
    assert good.get("/y", 1, 2) is None and good.get("/z", 1, 2) is None
    good.put("/y", 1, 2, "b" * 40)
    assert good.get("/y", 1, 2) == "b" * 40 and good.get("/y", 1, 3) is None
    good.close()


def test_large_upload_interrupted_resumes_its_session_on_rerun(
        emulator: BoxEmulator, make_fs: Callable[..., Any], new_user: Callable[..., tuple[str, str]],
        tmp_path: Path) -> None:
    """A file above Box's 20 MB session minimum (3 parts) whose first part's answers are lost (Box stored
    it, the client saw the connection drop, twice): the sync reports that file failed and goes on; run
    again, it resumes the same session, learns from Box that part 1 is there and sends only parts 2 and 3."""
    uid, _login = new_user("resume")
    src = tmp_path / "src"
    data = random.Random(3).randbytes(21 * 1000 * 1000 + 5)
    _write(src / "big.bin", data)
    _write(src / "small.txt", b"small")

    def run() -> Any:
        fs = make_fs(as_user=uid, spool_dir=str(tmp_path / "spool"), spool_threshold=MB, upload_workers=1,
                     retry={"max_attempts": 2, "backoff_base": 0.005, "backoff_max": 0.05})
        return sync(LocalSide(), str(src), BoxSide(fs), "r", transfers=2)

    parts = r"/files/upload_sessions/[^/]+$"
    with injected_faults(emulator, rate=1.0, kinds=("drop_after",), route=parts, method="PUT", count=2):
        first = run()
    assert [a.rel for a in first.copied] == ["small.txt"] and len(first.failed) == 1
    assert "big.bin" in first.failed[0][0]
    start = len(emulator.request_log)
    second = run()
    sent = _requests(emulator, uid, start)
    assert [a.rel for a in second.copied] == ["big.bin"] and second.failed == []
    assert sum(1 for r in sent if r.method == "POST" and r.route in ("/files/upload_sessions",
                                                                      "/files/{file_id}/upload_sessions")) == 0
    again_parts = sum(1 for r in sent if r.method == "PUT" and "upload_sessions" in r.route)
    assert again_parts == 2  # only what Box lacked
    fs = make_fs(as_user=uid)
    assert fs.info("r/big.bin")["sha1"] == hashlib.sha1(data).hexdigest()


def test_sync_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/sync_rclone.py runs end to end (boxfs with a token and with JWT, tiny): its rows, checked
    by SHA-1, with the CPU seconds of each command."""
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sync_rclone", "--files", "30", "--latency-ms", "0", "--repeat", "2",
                           "--tools", "boxfs,boxfs-jwt", "--work-dir", str(tmp_path / "w"), "--json", str(out)],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    for tool in ("boxfs", "boxfs-jwt"):
        mine = [r for r in rows if r["tool"] == tool]
        assert [(r["run"], r["uploads"]) for r in mine] == [
            ("first sync", 30), ("no-op re-sync", 0), ("1% changed", 1)]
        assert all(r["cpu"] > 0 for r in mine)
    # the re-syncs run twice each (a fresh 1% changed each time), the same requests every time
    assert all(len(r["all_requests"]) == (1 if r["run"] == "first sync" else 2) and len(set(r["all_requests"])) == 1
               for r in rows)
    by = {(r["tool"], r["run"]): r["requests"] for r in rows}
    # the target by the id the first sync remembered (a GET, its listing and All Files' beside it), then
    # its one folder: no listing of bench-sync, and two round trips where a walk takes four ...
    assert by["boxfs", "no-op re-sync"] == 4 and by["boxfs", "1% changed"] == 5
    # ... and with JWT one token request more per process
    assert by["boxfs-jwt", "no-op re-sync"] == 5 and by["boxfs-jwt", "1% changed"] == 6


def test_cache_files_refuse_a_symlink_and_work_where_they_cannot_write(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not a database")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "sha1.sqlite3").symlink_to(victim)
    (tmp_path / "c" / "folders.sqlite3").symlink_to(victim)
    cache = HashCache(tmp_path / "c" / "sha1.sqlite3")  # works, in memory
    cache.put("/x", 1, 2, "c" * 40)
    assert cache.get("/x", 1, 2) == "c" * 40
    hints = FolderHints(tmp_path / "c" / "folders.sqlite3")  # so do the folder hints
    hints.put("scope", "A/B", "123")
    assert hints.get("scope", "a/b") == "123" and hints.get("other", "a/b") is None
    cache.close()
    assert victim.read_text() == "not a database"
    blocked = HashCache(victim / "sub" / "sha1.sqlite3")  # its folder cannot be made: a file is in the way
    blocked.put("/y", 1, 2, "d" * 40)
    assert blocked.get("/y", 1, 2) == "d" * 40
    blocked.close()


def test_bwlimit_paces_bytes_over_all_transfers(monkeypatch: pytest.MonkeyPatch) -> None:
    """--bwlimit: 10 MiB through a 1 MiB/s limit waits about 9 s in total (1 s of burst); clock faked."""
    from boxfs import sync as sync_module

    now = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(sync_module.time, "monotonic", lambda: now[0])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(sync_module.time, "sleep", sleep)
    throttle = sync_module._Throttle(float(MB))
    for _ in range(40):
        throttle.consume(MB // 4)
    assert abs(sum(slept) - 9.0) < 0.01
    unlimited = sync_module._Throttle(None)
    unlimited.consume(10 * MB)
    assert abs(sum(slept) - 9.0) < 0.01


def test_checksum_rehashes_what_the_cache_would_trust(make_fs: Callable[..., Any], tmp_path: Path,
                                                      new_user: Callable[..., tuple[str, str]]) -> None:
    """A file rewritten with its size and mtime kept looks unchanged to the hash cache (as to rsync and
    rclone without --checksum); ``rehash`` (boxfs sync --checksum) reads it again and sends it."""
    uid, _login = new_user("rehash")
    src = tmp_path / "src"
    _write(src / "f.bin", b"version one")
    hashes = HashCache(tmp_path / "h.sqlite3")
    fs = make_fs(as_user=uid)
    assert len(sync(LocalSide(hashes), str(src), BoxSide(fs), "c").copied) == 1
    stamp = (src / "f.bin").stat()
    (src / "f.bin").write_bytes(b"version two")
    os.utime(src / "f.bin", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert sync(LocalSide(hashes), str(src), BoxSide(fs), "c").copied == []  # the cache is trusted
    report = sync(LocalSide(hashes, rehash=True), str(src), BoxSide(fs), "c")
    assert [a.rel for a in report.copied] == ["f.bin"]
    fs.invalidate_cache()
    assert fs.cat_file("c/f.bin") == b"version two"
    hashes.close()


def _api(emu: BoxEmulator, uid: str, start: int) -> list[str]:
    return [f"{r.method} {r.route}" for r in _requests(emu, uid, start) if not r.route.startswith("/oauth2")]


def test_resync_reaches_its_root_by_the_id_it_had_and_walks_the_path_when_that_no_longer_holds(
        emulator: BoxEmulator, make_fs: Callable[..., Any], new_user: Callable[..., tuple[str, str]],
        tmp_path: Path) -> None:
    """A sync root three levels down is reached by its remembered folder id: one GET of that folder
    (listed at the same time) instead of a listing per level. Renamed, or replaced by another folder of
    the same name, or named by a hostile hints file, the path is walked as before and the right folder
    is synced; the hints file is the user's alone."""
    uid, _login = new_user("hints")
    src = tmp_path / "src"
    for i in range(3):
        _write(src / f"d{i}" / "f.txt", f"file {i}".encode())
    hints_file = tmp_path / "cache" / "folders.sqlite3"

    def run() -> tuple[Any, list[str]]:
        start = len(emulator.request_log)
        hints = FolderHints(hints_file)
        report = sync(LocalSide(), str(src), BoxSide(make_fs(as_user=uid), hints), "a/b/root")
        assert report.failed == []
        return report, _api(emulator, uid, start)

    report, _ = run()
    assert len(report.copied) == 3
    assert oct(hints_file.stat().st_mode & 0o777) == "0o600"
    root_id = make_fs(as_user=uid).info("a/b/root")["id"]

    # unchanged: the root by id, its listing and All Files' (which names the folder a walk would reach)
    # side by side, then its three folders; nothing in between (a, a/b)
    report, sent = run()
    assert len(report.skipped) == 3 and report.copied == []
    assert sent.count("GET /folders/{folder_id}") == 1
    assert sent.count(f"GET {LISTING}") == 5 and len(sent) == 6, sent

    # renamed: the hint names a folder now elsewhere; the path is walked and a new root made there
    box = make_fs(as_user=uid)
    box.mv("a/b/root", "a/b/old")
    report, sent = run()
    assert len(report.copied) == 3
    fresh = make_fs(as_user=uid)
    assert fresh.info("a/b/root")["id"] != root_id and fresh.ls("a/b/old/d0", detail=False)
    # the new root is remembered: next time by id again, and the old folder is left alone
    report, sent = run()
    assert report.copied == [] and sent.count("GET /folders/{folder_id}") == 1 and len(sent) == 6, sent
    assert sorted(make_fs(as_user=uid).ls("a/b", detail=False)) == ["a/b/old", "a/b/root"]

    # another user with the same path never gets this one's folder: the hint is per acting user
    other, _ = new_user("hints2")
    start = len(emulator.request_log)
    sync(LocalSide(), str(src), BoxSide(make_fs(as_user=other), FolderHints(hints_file)), "a/b/root")
    assert "GET /folders/{folder_id}" not in _api(emulator, other, start)

    # a hints file written by someone else: ids that are not ids are never sent anywhere
    with closing(sqlite3.connect(hints_file)) as db:
        db.execute("UPDATE folders SET id = '../../users/me'")
        db.commit()
    start = len(emulator.request_log)
    report, sent = run()
    assert report.copied == [] and "GET /folders/{folder_id}" not in sent
    assert not any("users" in r.path for r in emulator.request_log.records[start:])


def test_a_hint_never_takes_sync_into_a_shared_folder_of_the_same_name(
        emulator: BoxEmulator, make_fs: Callable[..., Any], new_user: Callable[..., tuple[str, str]],
        jwt_config: str, tmp_path: Path) -> None:
    """All Files holds a user's own folders and those shared with them, so two folders there can be called
    `Sync`. A hint naming the other one (planted, or left by another login on this machine) passes the
    path check, but not the walk's: the sync goes where a walk of the path goes, and with --delete it
    removes nothing of the other user's."""
    from support import share_folder

    owner, _ = new_user("owner")
    victim, _ = new_user("victim")
    mine = make_fs(as_user=victim)
    mine.pipe_file("Sync/old.txt", b"mine, to be deleted by the sync")
    theirs = make_fs(as_user=owner)
    theirs.pipe_file("Sync/keep.txt", b"theirs")
    share_folder(emulator, jwt_config, owner, theirs.info("Sync")["id"], victim)
    walked = make_fs(as_user=victim).info("Sync")["id"]
    other = theirs.info("Sync")["id"]
    assert walked != other and walked == mine.info("Sync")["id"]  # the walk finds the user's own
    src = tmp_path / "src"
    _write(src / "new.txt", b"new")
    hints = FolderHints(tmp_path / "folders.sqlite3")
    side = BoxSide(make_fs(as_user=victim), hints)
    hints.put(side._scope, "Sync", other)  # what a planted file, or another login's run, would hold
    report = sync(LocalSide(), str(src), side, "Sync", delete=True)
    assert report.failed == [] and [a.rel for a in report.copied] == ["new.txt"]
    after = make_fs(as_user=owner)
    assert after.ls("Sync", detail=False) == ["Sync/keep.txt"] and after.cat_file("Sync/keep.txt") == b"theirs"
    own = make_fs(as_user=victim)
    assert sorted(own.ls(f"id:{walked}", detail=False)) == [f"id:{walked}/new.txt"]
    assert hints.get(side._scope, "Sync") == walked  # the hint now names the folder the sync used
