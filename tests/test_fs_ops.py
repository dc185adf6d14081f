"""BoxFileSystem operations against the emulator: behaviour, and the server-side features they use."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from support import injected_faults

from boxfs import BoxFileSystem


def since(emulator: Any, start: float) -> list[Any]:
    """Records of requests that started after ``start`` (the log may get a record just after the client
    saw its response, so counting by list position is racy; the emulator runs in this process and
    stamps records with the same monotonic clock)."""
    time.sleep(0.05)
    return [r for r in emulator.request_log.records if r.started >= start]


def routes(emulator: Any, start: float) -> list[tuple[str, str]]:
    return [(r.method, r.route) for r in since(emulator, start)]


def mark(emulator: Any) -> float:
    return time.monotonic()


def test_paths_with_and_without_protocol_and_slash_are_the_same(fs: BoxFileSystem) -> None:
    fs.pipe_file("a/b/c.txt", b"same")
    assert fs.cat_file("box://a/b/c.txt") == fs.cat_file("/a/b/c.txt") == fs.cat_file("a/b/c.txt") == b"same"
    assert fs.info("box://a/b")["id"] == fs.info("/a/b/")["id"] == fs.info("a/b")["id"]
    assert fs.ls("box://a", detail=False) == ["a/b"]


def test_info_detail_fields(fs: BoxFileSystem) -> None:
    fs.pipe_file("d/f.bin", b"12345")
    info = fs.info("d/f.bin")
    assert info["name"] == "d/f.bin" and info["type"] == "file" and info["size"] == 5
    assert info["sha1"] == hashlib.sha1(b"12345").hexdigest()
    assert info["id"] and info["etag"] is not None
    for key in ("modified", "created"):
        assert isinstance(info[key], datetime) and info[key].utcoffset() == timedelta(0)
    folder = fs.info("d")
    assert folder["type"] == "directory" and folder["size"] == 0 and folder["id"]
    assert fs.info("")["type"] == "directory"
    assert fs.checksum("d/f.bin") == int(info["sha1"], 16)
    assert fs.ukey("d/f.bin") == info["sha1"]


def test_names_are_case_insensitive(fs: BoxFileSystem, emulator: Any) -> None:
    fs.pipe_file("Reports/Q3.csv", b"x")
    fresh = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                          skip_instance_cache=True)
    assert fresh.info("reports/q3.CSV")["name"] == "Reports/Q3.csv"
    with pytest.raises(FileExistsError):
        fresh.mkdir("REPORTS")
    fresh.pipe_file("reports/q3.csv", b"new content")  # overwrites the same file, as Box would
    assert fs.ls("", detail=False) == ["Reports"]
    assert fresh.cat_file("Reports/Q3.csv") == b"new content"


def test_ls_find_walk_glob_du_with_maxdepth(fs: BoxFileSystem) -> None:
    for p in ("t/a.txt", "t/s/b.txt", "t/s/u/c.txt", "t/s/u/v/d.txt"):
        fs.pipe_file(p, b"1234")
    assert sorted(fs.ls("t", detail=False)) == ["t/a.txt", "t/s"]
    assert fs.ls("t/a.txt", detail=False) == ["t/a.txt"]
    assert fs.find("t") == ["t/a.txt", "t/s/b.txt", "t/s/u/c.txt", "t/s/u/v/d.txt"]
    assert fs.find("t", maxdepth=2) == ["t/a.txt", "t/s/b.txt"]
    assert fs.find("t", maxdepth=1, withdirs=True) == ["t", "t/a.txt", "t/s"]
    assert fs.find("missing") == []
    assert [root for root, _dirs, _files in fs.walk("t")] == ["t", "t/s", "t/s/u", "t/s/u/v"]
    assert fs.glob("t/**/*.txt") == ["t/a.txt", "t/s/b.txt", "t/s/u/c.txt", "t/s/u/v/d.txt"]
    assert fs.glob("t/*/*.txt") == ["t/s/b.txt"]
    assert fs.du("t") == 16 and fs.du("t", maxdepth=2) == 8
    assert fs.exists("t/s/u") and not fs.exists("t/nope") and fs.isdir("t/s") and fs.isfile("t/a.txt")


def test_mkdir_makedirs_rmdir(fs: BoxFileSystem) -> None:
    fs.mkdir("x/y/z")
    assert fs.isdir("x/y/z")
    with pytest.raises(FileExistsError):
        fs.mkdir("x/y")
    with pytest.raises(FileExistsError):
        fs.makedirs("x/y")
    fs.makedirs("x/y", exist_ok=True)
    with pytest.raises(FileNotFoundError):
        fs.mkdir("nothere/child", create_parents=False)
    fs.pipe_file("x/file", b"")
    with pytest.raises(NotADirectoryError):
        fs.makedirs("x/file/sub")
    with pytest.raises(OSError):
        fs.rmdir("x/y")  # not empty
    fs.rmdir("x/y/z")
    assert fs.ls("x/y") == []
    with pytest.raises(NotADirectoryError):
        fs.rmdir("x/file")


def test_rm_recursive_is_one_request(fs: BoxFileSystem, emulator: Any) -> None:
    for p in ("tree/a", "tree/b/c", "tree/b/d/e"):
        fs.pipe_file(p, b"data")
    with pytest.raises(IsADirectoryError):
        fs.rm("tree")
    m = mark(emulator)
    fs.rm("tree", recursive=True)
    assert routes(emulator, m) == [("DELETE", "/folders/{folder_id}")]
    assert not fs.exists("tree")
    fresh = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                          skip_instance_cache=True)
    assert fresh.ls("") == []
    with pytest.raises(PermissionError):
        fs.rm("", recursive=True)
    with pytest.raises(FileNotFoundError):
        fs.rm("tree")


def test_rm_file_and_glob(fs: BoxFileSystem) -> None:
    for p in ("g/a.csv", "g/b.csv", "g/c.txt"):
        fs.pipe_file(p, b"1")
    fs.rm("g/*.csv")
    assert fs.ls("g", detail=False) == ["g/c.txt"]
    fs.rm_file("g/c.txt")
    assert fs.ls("g") == []


def test_mv_is_server_side_for_files_and_folders(fs: BoxFileSystem, emulator: Any) -> None:
    fs.pipe_file("src/one.txt", b"one")
    fs.pipe_file("src/deep/two.txt", b"two")
    m = mark(emulator)
    fs.mv("src/one.txt", "renamed.txt")
    assert routes(emulator, m) == [("PUT", "/files/{file_id}")]
    assert fs.cat_file("renamed.txt") == b"one" and not fs.exists("src/one.txt")
    fs.mkdir("dest")
    m = mark(emulator)
    fs.mv("src", "dest")  # an existing folder target: moved into it
    assert routes(emulator, m) == [("PUT", "/folders/{folder_id}")]
    assert fs.cat_file("dest/src/deep/two.txt") == b"two"
    fs.mv("dest/src", "moved/here")  # missing parents are created
    assert fs.find("moved") == ["moved/here/deep/two.txt"]
    fs.pipe_file("target.txt", b"old")
    fs.mv("renamed.txt", "target.txt")  # a file target is replaced
    assert fs.cat_file("target.txt") == b"one" and not fs.exists("renamed.txt")
    fs.mv("target.txt", "TARGET.txt")  # case-only rename
    assert fs.ls("", detail=False).count("TARGET.txt") == 1


def test_cp_file_is_server_side(fs: BoxFileSystem, emulator: Any) -> None:
    fs.pipe_file("c/orig.bin", os.urandom(5000))
    m = mark(emulator)
    fs.cp_file("c/orig.bin", "c2/copy.bin")
    assert ("POST", "/files/{file_id}/copy") in routes(emulator, m)
    assert not any(r == "/files/{file_id}/content" for _, r in routes(emulator, m))
    assert fs.cat_file("c2/copy.bin") == fs.cat_file("c/orig.bin")
    assert fs.info("c2/copy.bin")["id"] != fs.info("c/orig.bin")["id"]
    fs.pipe_file("c/other.bin", b"other")
    fs.cp_file("c/other.bin", "c2/copy.bin")  # overwrite
    assert fs.cat_file("c2/copy.bin") == b"other"


def test_cat_file_ranges_are_one_ranged_request(fs: BoxFileSystem, emulator: Any) -> None:
    data = bytes(range(256)) * 40
    fs.pipe_file("r.bin", data)
    m = mark(emulator)
    assert fs.cat_file("r.bin", 100, 200) == data[100:200]
    recs = since(emulator, m)
    assert [r.route for r in recs if r.host == "api"] == ["/files/{file_id}/content"]
    assert sum(r.bytes_out for r in recs) < 1000
    assert fs.cat_file("r.bin", -10) == data[-10:]
    assert fs.cat_file("r.bin", 10, -10) == data[10:-10]
    assert fs.cat_file("r.bin", 5000, 20000) == data[5000:]
    assert fs.cat_file("r.bin", 200, 100) == b""
    fs.pipe_file("empty", b"")
    assert fs.cat_file("empty") == b""


def test_open_rb_random_access(fs: BoxFileSystem, emulator: Any) -> None:
    data = os.urandom(3 * 2**20)
    fs.pipe_file("big.bin", data)
    m = mark(emulator)
    with fs.open("big.bin", "rb", block_size=2**18) as f:
        f.seek(2 * 2**20)
        assert f.read(10) == data[2 * 2**20: 2 * 2**20 + 10]
        assert f.read(100) == data[2 * 2**20 + 10: 2 * 2**20 + 110]  # served by read-ahead
        f.seek(-5, 2)
        assert f.read() == data[-5:]
    recs = since(emulator, m)
    # one redirect to the download URL, which then serves both reads
    assert [r.route for r in recs if r.host == "api"] == ["/files/{file_id}/content"]
    assert len([r for r in recs if r.host == "download"]) == 2
    assert sum(r.bytes_out for r in since(emulator, m)) < 2**20


def test_open_wb_new_file_and_new_version(fs: BoxFileSystem, emulator: Any) -> None:
    with fs.open("w/doc.txt", "wb") as f:
        f.write(b"version 1")
    first = fs.info("w/doc.txt")
    m = mark(emulator)
    with fs.open("w/doc.txt", "wb") as f:
        f.write(b"version 2, longer")
    assert ("POST", "/files/{file_id}/content") in routes(emulator, m)
    second = fs.info("w/doc.txt")
    assert second["id"] == first["id"] and second["sha1"] != first["sha1"] and second["size"] == 17
    assert fs.cat_file("w/doc.txt") == b"version 2, longer"
    with pytest.raises(FileExistsError):
        fs.open("w/doc.txt", "xb")
    with pytest.raises(FileExistsError):
        fs.pipe_file("w/doc.txt", b"x", mode="create")


def test_failed_upload_leaves_previous_version(make_fs: Any, fs_user: tuple[str, str], emulator: Any) -> None:
    fs = make_fs(as_user=fs_user[0], retry={"max_attempts": 2, "backoff_base": 0.01})
    fs.pipe_file("keep.txt", b"precious")
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/files/\d+/content$", method="POST", seed=1):
        f = fs.open("keep.txt", "wb")
        f.write(b"replacement")
        with pytest.raises(OSError):
            f.close()
    fs.invalidate_cache()
    assert fs.cat_file("keep.txt") == b"precious"


def test_exception_inside_with_discards_the_write(fs: BoxFileSystem, emulator: Any) -> None:
    fs.pipe_file("k.txt", b"old")
    m = mark(emulator)
    with pytest.raises(RuntimeError):
        with fs.open("k.txt", "wb") as f:
            f.write(b"half")
            raise RuntimeError("writer crashed")
    assert not any(r.method == "POST" for r in since(emulator, m))
    assert fs.cat_file("k.txt") == b"old"


def test_append_is_refused_clearly(fs: BoxFileSystem) -> None:
    fs.pipe_file("a.log", b"x")
    with pytest.raises(NotImplementedError, match="cannot append"):
        fs.open("a.log", "ab")


def test_modified_times(fs: BoxFileSystem, tmp_path: Any) -> None:
    when = datetime(2021, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
    with fs.open("m/w.txt", "wb", modified=when) as f:
        f.write(b"x")
    assert fs.modified("m/w.txt") == when
    fs.pipe_file("m/p.txt", b"y", modified=when - timedelta(days=1))
    assert fs.modified("m/p.txt") == when - timedelta(days=1)
    local = tmp_path / "l.txt"
    local.write_bytes(b"local")
    os.utime(local, (1_600_000_000, 1_600_000_000))
    fs.put_file(str(local), "m/l.txt")
    assert fs.modified("m/l.txt") == datetime.fromtimestamp(1_600_000_000, tz=timezone.utc)
    fs.set_modified("m/l.txt", when)
    assert fs.modified("m/l.txt") == when and fs.cat_file("m/l.txt") == b"local"
    fresh = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                          skip_instance_cache=True)
    assert fresh.modified("m/l.txt") == when
    assert isinstance(fs.created("m/l.txt"), datetime)


def test_touch(fs: BoxFileSystem) -> None:
    fs.touch("t/new")
    assert fs.info("t/new")["size"] == 0
    fs.pipe_file("t/full", b"abc")
    fs.touch("t/full", truncate=False)
    assert fs.cat_file("t/full") == b"abc"
    fs.touch("t/full")
    assert fs.cat_file("t/full") == b""


def test_put_and_get_file_streamed(fs: BoxFileSystem, tmp_path: Any) -> None:
    src = tmp_path / "src.bin"
    data = os.urandom(2 * 2**20 + 7)
    src.write_bytes(data)
    fs.put_file(str(src), "pg/src.bin")
    assert fs.info("pg/src.bin")["sha1"] == hashlib.sha1(data).hexdigest()
    out = tmp_path / "out" / "copy.bin"
    fs.get_file("pg/src.bin", str(out))
    assert out.read_bytes() == data


def test_file_and_folder_mixups(fs: BoxFileSystem) -> None:
    fs.pipe_file("f.txt", b"x")
    fs.mkdir("dir")
    with pytest.raises(IsADirectoryError):
        fs.cat_file("dir")
    with pytest.raises(IsADirectoryError):
        fs.open("dir", "rb")
    with pytest.raises(IsADirectoryError):
        fs.pipe_file("dir", b"x")
    with pytest.raises(IsADirectoryError):
        fs.rm_file("dir")
    with pytest.raises(NotADirectoryError):
        fs.mkdir("f.txt/sub")
    with pytest.raises(FileNotFoundError):
        fs.ls("f.txt/sub")
    with pytest.raises(FileNotFoundError):
        fs.open("nothing.txt", "rb")


def test_root_folder_id_confines_the_filesystem(fs: BoxFileSystem) -> None:
    fs.pipe_file("jail/inside.txt", b"in")
    fs.pipe_file("outside.txt", b"out")
    jail = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                         root_folder_id=fs.info("jail")["id"], skip_instance_cache=True)
    assert jail.ls("", detail=False) == ["inside.txt"]
    assert jail.cat_file("inside.txt") == b"in"
    assert not jail.exists("outside.txt")


def test_name_taken_after_our_listing_becomes_a_new_version(fs: BoxFileSystem) -> None:
    fs.ls("")
    other = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                          skip_instance_cache=True)
    original = fs.transport.request
    raced: list[str] = []

    def request(method: str, url: str, **kwargs: Any) -> Any:
        if method == "POST" and url.endswith("/files/content") and not raced:
            raced.append(url)  # our listing said the name is free; someone else uploads just before us
            other.pipe_file("race.txt", b"theirs")
        return original(method, url, **kwargs)

    fs.transport.request = request  # type: ignore[method-assign]
    fs.pipe_file("race.txt", b"ours")
    assert raced
    other.invalidate_cache()
    assert other.ls("", detail=False) == ["race.txt"]
    assert other.cat_file("race.txt") == b"ours"
    assert fs.info("race.txt")["id"] == other.info("race.txt")["id"]


def test_put_and_get_of_a_tree_transfer_files_in_parallel(fs: BoxFileSystem, emulator: Any, tmp_path: Any) -> None:
    src = tmp_path / "src"
    for i in range(24):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
    emulator.set_latency(0.02)
    try:
        t = mark(emulator)
        fs.put(str(src), "tree", recursive=True)
        uploads = [r for r in since(emulator, t) if r.method == "POST" and r.route == "/files/content"]
        got = tmp_path / "back"
        fs.get("tree", str(got), recursive=True)
    finally:
        emulator.set_latency(0.0)
    assert len(uploads) == 24
    overlapping = sum(1 for a in uploads for b in uploads if a is not b and a.started < b.started < a.finished)
    assert overlapping > 0, "uploads ran one after the other"
    for local in src.rglob("*.bin"):
        rel = local.relative_to(src).as_posix()
        assert fs.info(f"tree/{rel}")["sha1"] == hashlib.sha1(local.read_bytes()).hexdigest()
        assert (got / rel).read_bytes() == local.read_bytes()
    fresh = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                          skip_instance_cache=True)
    assert sorted(fresh.find("tree")) == sorted(fs.find("tree"))


def test_parallel_put_reports_every_failed_transfer(make_fs: Any, fs_user: Any, emulator: Any, tmp_path: Any,
                                                    caplog: Any) -> None:
    """put/get/copy run their files on threads and raise the first failure; the others are not hidden:
    each is logged with its source and target, and the count is said."""
    fs = make_fs(as_user=fs_user[0], retry=1)
    names = [f"f{n}.txt" for n in range(3)]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    fs.mkdir("dst")
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/files/content", method="POST"), \
            caplog.at_level("WARNING", logger="boxfs"), pytest.raises(OSError):
        fs.put([str(tmp_path / n) for n in names], "dst/")
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("transfer failed")]
    assert sorted(m.split(" -> ")[0].rsplit("/", 1)[1] for m in failed) == names
    assert any("3 of 3 transfers failed" in r.getMessage() for r in caplog.records)
