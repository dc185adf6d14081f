"""fsspec's generic machinery on ``box://`` URLs (issue 9): ``open_files`` with globs and compression,
the caching layers (``simplecache::``, ``filecache::``, ``blockcache::``) and ``UPath("box://...")``.

Each test checks what reached the emulator (call counts from its request log), not only the bytes.
"""

from __future__ import annotations

import gzip
import io
import warnings
from typing import Any

import fsspec
import pytest


@pytest.fixture
def options(emulator: Any, jwt_config: str, fs_user: tuple[str, str]) -> dict[str, Any]:
    """storage_options acting as this test's fresh user."""
    return {"jwt_config": jwt_config, "as_user": fs_user[0], "base_urls": emulator.base_urls}


def downloads(emulator: Any, uid: str) -> int:
    """Content requests acting as ``uid`` (each is one API call, redirected to the download host)."""
    return emulator.request_log.count(method="GET", route="/files/{file_id}/content", as_user=uid)


# ---------------------------------------------------------------------------------------- open_files
def test_open_files_glob_with_gzip(fs: Any, options: dict[str, Any]) -> None:
    rows = {i: "".join(f"{i},{k}\n" for k in range(100)) for i in range(3)}
    for i, text in rows.items():
        fs.pipe_file(f"logs/day-{i}.csv.gz", gzip.compress(text.encode()))
    fs.pipe_file("logs/readme.txt", b"not matched")
    files = fsspec.open_files("box://logs/day-*.csv.gz", mode="rt", compression="infer", **options)
    assert [f.path for f in files] == [f"logs/day-{i}.csv.gz" for i in range(3)]
    for i, of in enumerate(files):
        with of as f:
            assert f.read() == rows[i]


def test_open_files_writes_gzip(fs: Any, options: dict[str, Any]) -> None:
    files = fsspec.open_files("box://out/part-*.txt.gz", mode="wt", compression="gzip", num=2, **options)
    for i, of in enumerate(files):
        with of as f:
            f.write(f"part {i}\n" * 50)
    assert sorted(fs.ls("out", detail=False)) == ["out/part-0.txt.gz", "out/part-1.txt.gz"]
    assert gzip.decompress(fs.cat_file("out/part-1.txt.gz")) == b"part 1\n" * 50


def test_pandas_reads_compressed_csv(fs: Any, options: dict[str, Any]) -> None:
    pd = pytest.importorskip("pandas")
    fs.pipe_file("z/data.csv.gz", gzip.compress(b"a,b\n1,2\n3,4\n"))
    df = pd.read_csv("box://z/data.csv.gz", storage_options=options)
    assert df.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


# ---------------------------------------------------------------------------------------- caching
def test_simplecache_downloads_once(fs: Any, options: dict[str, Any], fs_user: tuple[str, str],
                                    emulator: Any, tmp_path: Any) -> None:
    fs.pipe_file("c/whole.bin", bytes(range(256)) * 64)
    before = downloads(emulator, fs_user[0])
    for _ in range(3):
        with fsspec.open("simplecache::box://c/whole.bin", "rb", box=options,
                         simplecache={"cache_storage": str(tmp_path)}) as f:
            f.seek(1000)
            assert f.read(10) == (bytes(range(256)) * 64)[1000:1010]
    assert downloads(emulator, fs_user[0]) - before == 1


def test_filecache_checks_freshness_and_sees_a_new_version(fs: Any, options: dict[str, Any],
                                                           fs_user: tuple[str, str], emulator: Any,
                                                           tmp_path: Any) -> None:
    """filecache keys the local copy on ``ukey`` (Box's SHA1): a new version is downloaded again."""
    fs.pipe_file("c/report.txt", b"version 1")
    url = "filecache::box://c/report.txt"
    cache = {"cache_storage": str(tmp_path), "check_files": True}
    before = downloads(emulator, fs_user[0])
    for _ in range(2):
        with fsspec.open(url, "rb", box=options, filecache=cache) as f:
            assert f.read() == b"version 1"
    assert downloads(emulator, fs_user[0]) - before == 1
    fs.pipe_file("c/report.txt", b"version 2, longer")
    # a later session (a new filesystem instance: no stale listing) sees the new SHA1
    fresh = dict(options, skip_instance_cache=True)
    with fsspec.open(url, "rb", box=fresh, filecache=cache) as f:
        assert f.read() == b"version 2, longer"
    assert downloads(emulator, fs_user[0]) - before == 2


def test_blockcache_reads_only_the_blocks_used(fs: Any, options: dict[str, Any], fs_user: tuple[str, str],
                                               emulator: Any, tmp_path: Any) -> None:
    block = 64 * 1024
    data = bytes(i % 251 for i in range(10 * block))
    fs.pipe_file("c/big.bin", data)
    emulator.request_log.clear()
    # the block size is an open() argument, so the layer is built as a filesystem here
    cached = fsspec.filesystem("blockcache", target_protocol="box", target_options=options,
                               cache_storage=str(tmp_path))
    with cached.open("c/big.bin", "rb", block_size=block) as f:
        f.seek(3 * block + 10)
        assert f.read(100) == data[3 * block + 10: 3 * block + 110]
        f.seek(7 * block)
        assert f.read(block + 5) == data[7 * block: 8 * block + 5]
    ranged = [r for r in emulator.request_log.filter(route="/download/{token}") if r.status == 206]
    assert len(ranged) == 2  # block 3, then blocks 7-8 together (fsspec merges adjacent missing blocks)
    assert sum(r.bytes_out for r in ranged) == 3 * block
    again = fsspec.filesystem("blockcache", target_protocol="box", target_options=options,
                              cache_storage=str(tmp_path), skip_instance_cache=True)
    with again.open("c/big.bin", "rb", block_size=block) as f:  # the blocks are on local disk now
        f.seek(3 * block + 10)
        assert f.read(100) == data[3 * block + 10: 3 * block + 110]
    assert len([r for r in emulator.request_log.filter(route="/download/{token}") if r.status == 206]) == 2


# -------------------------------------------------------------------------------------------- UPath
@pytest.fixture
def upath_cls() -> Any:
    """``UPath``, its protocol lookup forgotten: it makes the class for "box" (and warns) once per process,
    and another test of this process (tests/test_docs.py runs docs/data.md) may have been first."""
    upath = pytest.importorskip("upath")
    pytest.importorskip("upath.registry").get_upath_class.cache_clear()
    return upath.UPath


def test_upath_falls_back_to_the_generic_fsspec_path(upath_cls: Any, options: dict[str, Any]) -> None:
    """universal-pathlib has no Box implementation: it must use its generic fsspec UPath over ours."""
    from boxfs import BoxFileSystem

    with pytest.warns(UserWarning, match="'box' filesystem not explicitly implemented"):
        p = upath_cls("box://reports/q3.csv", **options)
    assert isinstance(p, upath_cls)
    assert type(p).__module__ == "upath.implementations._experimental"  # the generic class, made for "box"
    assert isinstance(p.fs, BoxFileSystem) and p.protocol == "box"
    assert p.path == "reports/q3.csv" and p.name == "q3.csv" and p.suffix == ".csv"
    assert str(p.parent) == "box://reports"


def test_upath_read_write_iterdir_glob(upath_cls: Any, options: dict[str, Any], fs: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        root = upath_cls("box://proj", **options)
        (root / "a.txt").write_text("alpha")
        (root / "data" / "b.csv").write_bytes(b"x,y\n1,2\n")
        (root / "data" / "c.csv").write_bytes(b"x,y\n3,4\n")
        assert (root / "a.txt").read_text() == "alpha"
        assert (root / "a.txt").exists() and (root / "data").is_dir() and (root / "a.txt").is_file()
        assert sorted(p.name for p in root.iterdir()) == ["a.txt", "data"]
        assert sorted(p.name for p in root.glob("data/*.csv")) == ["b.csv", "c.csv"]
        assert sorted(p.path for p in root.rglob("*.csv")) == ["proj/data/b.csv", "proj/data/c.csv"]
        assert (root / "data" / "b.csv").stat().st_size == 8
        with (root / "data" / "c.csv").open("rb") as f:
            assert f.read() == b"x,y\n3,4\n"
        (root / "a.txt").unlink()
        assert not (root / "a.txt").exists()
    assert fs.cat_file("proj/data/b.csv") == b"x,y\n1,2\n"  # the same Box, seen through BoxFileSystem


def test_upath_with_pandas(upath_cls: Any, options: dict[str, Any]) -> None:
    pd = pytest.importorskip("pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        p = upath_cls("box://frames/df.parquet", **options)
        df = pd.DataFrame({"k": ["a", "b"], "v": [1.5, 2.5]})
        with p.open("wb") as f:
            df.to_parquet(f)
        with p.open("rb") as f:
            pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(f.read())), df)
