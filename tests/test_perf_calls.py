"""Issue 20: what small uploads, ranged reads and cat_ranges cost, counted from the emulator's request log.

API requests (hosts ``api`` and ``upload``) count against the user's rate limit; requests to the download
host do not, but each is still a round trip.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import injected_faults

from boxfs import BoxFileSystem

CONTENT = "/files/content"
VERSION = "/files/{file_id}/content"


def since(emulator: Any, start: float) -> list[Any]:
    """Records of requests started after ``start`` (records are appended on completion, so wait a bit)."""
    time.sleep(0.05)
    return [r for r in emulator.request_log.records if r.started >= start]


def api(records: list[Any]) -> list[Any]:
    return [r for r in records if r.host in ("api", "upload")]


def routes(records: list[Any]) -> Counter[tuple[str, str]]:
    return Counter((r.method, r.route) for r in api(records))


def other_session(fs: BoxFileSystem) -> BoxFileSystem:
    """The same user in another session: a cache that knows nothing of ``fs``'s."""
    return BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                         skip_instance_cache=True)


# ------------------------------------------------------------------------------------------ small uploads
def test_put_of_many_small_files_is_one_request_each(fs: BoxFileSystem, emulator: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    blobs = {f"f{i:03d}.bin": os.urandom(100 + i) for i in range(120)}
    for name, data in blobs.items():
        (src / name).write_bytes(data)
    t = time.monotonic()
    fs.put([str(src / n) for n in blobs], "dest/sub/")
    calls = routes(since(emulator, t))
    # the root and nothing else listed; each new folder made once (not once per transfer thread);
    # one POST per file, no preflight
    assert calls == Counter({("GET", "/folders/{folder_id}/items"): 1, ("POST", "/folders"): 2,
                             ("POST", CONTENT): 120})
    check = other_session(fs)
    assert sorted(check.ls("dest/sub", detail=False)) == [f"dest/sub/{n}" for n in sorted(blobs)]
    for name, data in list(blobs.items())[:5]:
        assert check.info(f"dest/sub/{name}")["sha1"] == hashlib.sha1(data).hexdigest()


def test_a_name_taken_unknown_to_us_becomes_its_new_version(fs: BoxFileSystem, emulator: Any) -> None:
    other = other_session(fs)
    assert fs.ls("") == []  # our listing: the name is free
    other.pipe_file("taken.txt", b"theirs")
    old = other.info("taken.txt")
    t = time.monotonic()
    fs.pipe_file("taken.txt", b"ours")
    calls = routes(since(emulator, t))
    assert calls == Counter({("POST", CONTENT): 1, ("POST", VERSION): 1})  # 409 names the file: version
    other.invalidate_cache()
    assert other.info("taken.txt")["id"] == old["id"]
    assert other.cat_file("taken.txt") == b"ours"
    assert fs.info("taken.txt")["id"] == old["id"]


def test_exclusive_create_and_a_folder_in_the_way_are_refused_untouched(fs: BoxFileSystem, emulator: Any) -> None:
    other = other_session(fs)
    fs.mkdir("x")
    assert fs.ls("x") == []  # our listing: both names free
    other.pipe_file("x/mine.txt", b"keep")
    other.mkdir("x/dir")
    with pytest.raises(FileExistsError):
        with fs.open("x/mine.txt", "xb") as f:
            f.write(b"new")
    with pytest.raises(IsADirectoryError):
        fs.pipe_file("x/dir", b"new")
    other.invalidate_cache()
    assert other.cat_file("x/mine.txt") == b"keep"
    assert other.info("x/dir")["type"] == "directory"
    versions = other.transport.json("GET", other.transport.api(f"/files/{other.info('x/mine.txt')['id']}/versions"))
    assert versions.get("total_count", 0) == 0


# ------------------------------------------------------------------------------------------- ranged reads
@pytest.fixture
def big(fs: BoxFileSystem) -> bytes:
    data = os.urandom(4 << 20)
    fs.pipe_file("ranges/big.bin", data)
    return data


def test_cat_ranges_fetches_the_download_url_once_and_ranges_together(fs: BoxFileSystem, emulator: Any,
                                                                        big: bytes) -> None:
    rng = random.Random(5)
    starts = [rng.randrange(0, len(big) - 65536) for _ in range(200)]
    ends = [s + rng.choice((1, 4096, 65536)) for s in starts]
    t = time.monotonic()
    got = fs.cat_ranges(["ranges/big.bin"] * len(starts), starts, ends)
    recs = since(emulator, t)
    assert got == [big[s:e] for s, e in zip(starts, ends, strict=True)]
    assert [(r.method, r.route) for r in api(recs)] == [("GET", VERSION)]  # the redirect, once
    downloads = [r for r in recs if r.host == "download"]
    assert len(downloads) == 200
    # they went out together: at some moment several ranged downloads were in flight at once
    events = sorted([(r.started, 1) for r in downloads] + [(r.finished, -1) for r in downloads])
    depth = peak = 0
    for _when, step in events:
        depth += step
        peak = max(peak, depth)
    assert peak > 1


def test_cat_ranges_reports_errors_per_range(fs: BoxFileSystem, big: bytes) -> None:
    got = fs.cat_ranges(["ranges/big.bin", "ranges/missing.bin", "ranges/big.bin"], [0, 0, 10], [5, 5, 20])
    assert got[0] == big[:5] and got[2] == big[10:20]
    assert isinstance(got[1], FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        fs.cat_ranges(["ranges/big.bin", "ranges/missing.bin"], 0, 5, on_error="raise")
    with pytest.raises(ValueError, match="2 paths but 1 starts"):
        fs.cat_ranges(["ranges/big.bin"] * 2, [0], [5, 5])


def test_download_url_is_reused_per_version_and_refetched_when_refused(fs: BoxFileSystem, emulator: Any,
                                                                      big: bytes) -> None:
    t = time.monotonic()
    assert fs.cat_file("ranges/big.bin", 0, 10) == big[:10]
    assert fs.cat_file("ranges/big.bin", 100, 110) == big[100:110]
    assert len(api(since(emulator, t))) == 1
    # a new version (ours): the cached URL serves the old one, so a new URL is fetched
    fs.pipe_file("ranges/big.bin", b"v2" * 100)
    t = time.monotonic()
    assert fs.cat_file("ranges/big.bin", 0, 4) == b"v2v2"
    assert fs.cat_file("ranges/big.bin", 4, 8) == b"v2v2"
    assert [(r.method, r.route) for r in api(since(emulator, t))] == [("GET", VERSION)]
    # the download host refuses the URL (expired, withdrawn): one new URL, the read succeeds
    with injected_faults(emulator, rate=1.0, kinds=("expire",), route=r"^/download/", count=1):
        t = time.monotonic()
        assert fs.cat_file("ranges/big.bin", 2, 6) == b"v2v2"
        recs = since(emulator, t)
    assert [(r.method, r.route) for r in api(recs)] == [("GET", VERSION)]
    assert [r.status for r in recs if r.host == "download"] == [401, 206]
    # past the reuse window a URL is not used at all
    fs.transport.download_urls.reuse = 0.0
    t = time.monotonic()
    fs.cat_file("ranges/big.bin", 0, 2)
    fs.cat_file("ranges/big.bin", 0, 2)
    assert len(api(since(emulator, t))) == 2


def test_download_urls_carry_no_credentials(fs: BoxFileSystem, big: bytes) -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    original = fs.transport.session.request

    def spy(method: str, url: str, **kwargs: Any) -> Any:
        seen.append((url, dict(kwargs.get("headers") or {})))
        return original(method, url, **kwargs)

    fs.transport.session.request = spy  # type: ignore[method-assign]
    fs.cat_ranges(["ranges/big.bin"] * 3, [0, 10, 20], [5, 15, 25])
    downloads = [h for url, h in seen if "/download/" in url]
    assert len(downloads) == 3
    assert all("Authorization" not in h and "As-User" not in h for h in downloads)


# ------------------------------------------------------------------------------------- large downloads
@pytest.fixture
def small_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parallel ranged downloads from 1 MiB up, in ranges of at least 1 MiB (64 and 16 MiB by default)."""
    import boxfs.api.transport as transport
    import boxfs.core as core

    monkeypatch.setattr(core, "PARALLEL_DOWNLOAD_MIN", 1 << 20)
    monkeypatch.setattr(transport, "PARALLEL_PART_MIN", 1 << 20)


def test_get_file_of_a_large_file_downloads_ranges_at_once(fs: BoxFileSystem, emulator: Any, tmp_path: Path,
                                                           small_parallel: None) -> None:
    data = os.urandom((5 << 20) + 123)
    fs.pipe_file("large/f.bin", data)
    with injected_faults(emulator, rate=0.3, kinds=("drop", "drop_after", "503"), route=r"^/download/", seed=3):
        t = time.monotonic()
        fs.get_file("large/f.bin", str(tmp_path / "f.bin"))
        recs = since(emulator, t)
    assert (tmp_path / "f.bin").read_bytes() == data  # every byte checked
    assert [(r.method, r.route) for r in api(recs)] == [("GET", VERSION)]  # one URL for all the ranges
    downloads = [r for r in recs if r.host == "download"]
    assert len([r for r in downloads if r.status == 206 and r.fault is None]) >= 6  # 6 ranges of 1 MiB at least
    assert any(r.fault for r in downloads), "the faults must have fired"


def test_a_file_that_changed_on_box_is_not_downloaded_as_a_mix(fs: BoxFileSystem, tmp_path: Path,
                                                              small_parallel: None) -> None:
    """Ranges of one download come from one version: the one our details pin, or, when no version is
    known, a size check refuses ranges of another one."""
    old, new = os.urandom(3 << 20), os.urandom(4 << 20)
    fs.pipe_file("large/g.bin", old)
    fs.info("large/g.bin")
    other_session(fs).pipe_file("large/g.bin", new)
    fs.get_file("large/g.bin", str(tmp_path / "g.bin"))
    assert (tmp_path / "g.bin").read_bytes() in (old, new)
    # no version known (a listing without file_version): our stale size meets the new version's ranges
    stale = dict(fs.info("large/g.bin"), version=None, size=len(old), sha1=hashlib.sha1(old).hexdigest())
    with open(tmp_path / "h.bin", "wb") as fh, pytest.raises(OSError, match="changed on Box"):
        fs.transport.download_ranges(stale["id"], fh.fileno(), stale["size"], streams=4, tag=stale["sha1"],
                                     path="large/g.bin")


def test_download_urls_never_reach_logs_or_errors(fs: BoxFileSystem, emulator: Any, big: bytes,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A download URL lets anyone read the file until it expires: it is a secret like a token."""
    caplog.set_level(logging.DEBUG, logger="boxfs")
    fs.cat_ranges(["ranges/big.bin"] * 2, [0, 10], [5, 15])
    with injected_faults(emulator, rate=1.0, kinds=("expire",), route=r"^/download/"):
        with pytest.raises(OSError) as info:
            fs.cat_file("ranges/big.bin", 0, 5)
    tokens = {r.path.rsplit("/", 1)[1] for r in emulator.request_log.records if r.host == "download"}
    assert tokens
    client_log = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("boxfs.emulator"))
    assert "<download URL on" in client_log
    for text in [client_log, str(info.value)]:
        assert "/download/" not in text and not any(t in text for t in tokens)
