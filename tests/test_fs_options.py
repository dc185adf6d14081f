"""Options (issues 16 and 23): unknown ones refused with the closest valid name, fsspec's generic ones
accepted, ``storage_options`` holding only what the user gave, ``default_block_size``/``default_cache_type``
and every fsspec read cache (``cache_type="all"`` included) working, in Python and through pandas."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from typing import Any

import fsspec
import pandas as pd
import pytest
from fsspec.caching import caches

from boxfs import BoxFileSystem
from boxfs.config import BoxConfigError, BoxOptionError
from boxfs.emulator import BoxEmulator

CONTENT = "/files/{file_id}/content"


def requests_during(emulator: BoxEmulator, fn: Callable[[], Any]) -> tuple[Any, list[Any]]:
    """Run ``fn``; return its result and the emulator's records of the requests it sent."""
    start = len(emulator.request_log)
    result = fn()
    return result, emulator.request_log.records[start:]


def refused(emulator: BoxEmulator, fn: Callable[[], Any], exc_type: type[BaseException]) -> BaseException:
    """``fn`` raises ``exc_type`` and sends no request at all (no token, no user lookup)."""
    start = len(emulator.request_log)
    with pytest.raises(exc_type) as info:
        fn()
    assert emulator.request_log.records[start:] == []
    return info.value


@pytest.fixture
def options(emulator: BoxEmulator, jwt_config: str, fs_user: tuple[str, str]) -> dict[str, Any]:
    """storage_options acting as this test's fresh user (by login: a typo would matter)."""
    return {"jwt_config": jwt_config, "as_user": fs_user[1], "base_urls": emulator.base_urls}


# -------------------------------------------------------------------------------- unknown options
def test_a_misspelt_as_user_is_refused_naming_as_user(emulator: BoxEmulator, options: dict[str, Any]) -> None:
    """``asuser=`` used to be ignored, and the filesystem acted as the service account."""
    options["asuser"] = options.pop("as_user")
    error = refused(emulator, lambda: fsspec.filesystem("box", skip_instance_cache=True, **options),
                    BoxOptionError)
    assert "'asuser' (did you mean 'as_user'?)" in str(error)
    assert isinstance(error, TypeError) and isinstance(error, BoxConfigError)
    for valid in ("as_user", "jwt_config", "root_folder_id", "use_listings_cache", "default_cache_type"):
        assert valid in str(error)


def test_unknown_storage_options_are_refused_through_pandas(emulator: BoxEmulator, fs: BoxFileSystem,
                                                            options: dict[str, Any]) -> None:
    fs.pipe_file("t.csv", b"a,b\n1,2\n")
    options["asuser"] = options.pop("as_user")
    with pytest.raises(BoxOptionError, match="did you mean 'as_user'"):
        pd.read_csv("box://t.csv", storage_options=options)
    with pytest.raises(BoxOptionError, match="did you mean 'as_user'"):
        pd.DataFrame({"a": [1]}).to_csv("box://out.csv", storage_options=options)
    assert not fs.exists("out.csv")


def test_every_unknown_option_is_named_and_no_value_is_shown(emulator: BoxEmulator, jwt_config: str) -> None:
    error = refused(emulator, lambda: BoxFileSystem(jwt_config=jwt_config, base_urls=emulator.base_urls,
                                                    client_secrett="s3cr3t-value", colour="blue",
                                                    skip_instance_cache=True), BoxOptionError)
    text = str(error)
    assert "unknown options 'client_secrett' (did you mean 'client_secret'?), 'colour';" in text
    assert "s3cr3t-value" not in text and "blue" not in text


def test_fsspec_generic_options_pass(options: dict[str, Any], fs: BoxFileSystem) -> None:
    fs.pipe_file("d/x.txt", b"x")
    box = fsspec.filesystem("box", skip_instance_cache=True, use_listings_cache=False, listings_expiry_time=5,
                            max_paths=10, asynchronous=False, loop=None, **options)
    assert box.ls("d", detail=False) == ["d/x.txt"]
    # zarr (and anything else built on url_to_fs) passes asynchronous=True to every filesystem
    wrapped, path = fsspec.url_to_fs("box://d/x.txt", asynchronous=True, **options)
    assert isinstance(wrapped, BoxFileSystem) and wrapped.cat_file(path) == b"x"


# ------------------------------------------------------------------------------- storage_options
def test_storage_options_hold_only_what_the_user_gave(options: dict[str, Any]) -> None:
    box = fsspec.filesystem("box", default_cache_type="bytes", **options)
    assert box.storage_options == dict(options, default_cache_type="bytes")
    assert fsspec.filesystem("box", default_cache_type="bytes", **options) is box  # instance cache kept


def test_storage_options_are_empty_when_the_environment_configures(monkeypatch: Any, emulator: BoxEmulator,
                                                                   jwt_config: str, fs_user: tuple[str, str],
                                                                   tmp_path: Any) -> None:
    (tmp_path / "config.json").write_text(jwt_config)
    monkeypatch.setenv("BOXFS_JWT_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("BOXFS_BASE_URL", emulator.url)
    monkeypatch.setenv("BOXFS_AS_USER", fs_user[1])
    box = fsspec.filesystem("box")
    assert box.storage_options == {} and box.as_user_id == fs_user[0]
    assert fsspec.filesystem("box") is box


# --------------------------------------------------------------------------------- read caches
@pytest.fixture
def blob(fs: BoxFileSystem) -> bytes:
    data = hashlib.sha256(b"seed").digest() * 4096  # 128 KiB, every byte position distinct enough
    fs.pipe_file("blob.bin", data)
    return data


#: "parts" serves only the byte ranges handed to it in cache_options["data"] (parquet's precaching); it
#: never fetches, so it has no place in a read test
READING_CACHES = sorted(k for k in caches if k not in (None, "parts"))


@pytest.mark.parametrize("cache_type", READING_CACHES)
def test_every_fsspec_cache_type_reads_the_right_bytes(emulator: BoxEmulator, make_fs: Any,
                                                       fs_user: tuple[str, str], blob: bytes,
                                                       cache_type: str) -> None:
    box = make_fs(as_user=fs_user[0])
    box.info("blob.bin")

    def read() -> list[bytes]:
        with box.open("blob.bin", cache_type=cache_type, block_size=16384) as f:
            got = [f.read(100)]
            f.seek(70000)
            got.append(f.read(5000))
            f.seek(0)
            got.append(f.read())
            return got

    got, sent = requests_during(emulator, read)
    assert [hashlib.sha1(g).hexdigest() for g in got] == [
        hashlib.sha1(g).hexdigest() for g in (blob[:100], blob[70000:75000], blob)]
    if cache_type == "all":  # the whole file, once, when opened
        assert [(r.method, r.route) for r in sent if r.host == "api"] == [("GET", CONTENT)]


@pytest.mark.parametrize("cache_type", READING_CACHES)
def test_every_cache_type_reads_an_empty_file(fs: BoxFileSystem, cache_type: str) -> None:
    fs.pipe_file("empty.bin", b"")
    with fs.open("empty.bin", cache_type=cache_type) as f:
        assert f.read() == b""


def test_default_cache_type_and_block_size_apply_to_open(emulator: BoxEmulator, make_fs: Any,
                                                         fs_user: tuple[str, str], blob: bytes) -> None:
    box = make_fs(as_user=fs_user[0], default_cache_type="all", default_block_size=4096)
    box.info("blob.bin")

    def read() -> tuple[str, int, bytes]:
        with box.open("blob.bin") as f:
            return type(f.cache).__name__, f.blocksize, f.read()

    (name, blocksize, data), sent = requests_during(emulator, read)
    assert (name, blocksize, data == blob) == ("AllBytes", 4096, True)
    assert [r.route for r in sent if r.host == "api"] == [CONTENT]
    # an explicit argument to open still wins
    with box.open("blob.bin", cache_type="bytes", block_size=1000) as f:
        assert (type(f.cache).__name__, f.blocksize) == ("BytesCache", 1000)
    # readahead with the default block: 4 KiB blocks, so 20 KiB read in small pieces is about 5 GETs
    plain = make_fs(as_user=fs_user[0], default_block_size=4096)
    plain.info("blob.bin")

    def small_reads() -> None:
        with plain.open("blob.bin") as f:
            for _ in range(20):
                f.read(1024)

    _, sent = requests_during(emulator, small_reads)
    # one redirect to the version's download URL, which then serves each block (issue 20)
    assert len([r for r in sent if r.route == CONTENT]) == 1
    assert 4 <= len([r for r in sent if r.host == "download"]) <= 6


def test_default_options_through_pandas(emulator: BoxEmulator, fs: BoxFileSystem,
                                        options: dict[str, Any]) -> None:
    frame = pd.DataFrame({"n": range(2000), "s": ["x" * 20] * 2000})
    fs.pipe_file("f.csv", frame.to_csv(index=False).encode())
    options.update(default_cache_type="all", default_block_size=1024)
    got, sent = requests_during(emulator, lambda: pd.read_csv("box://f.csv", storage_options=options))
    pd.testing.assert_frame_equal(got, frame)
    assert len([r for r in sent if r.route == CONTENT]) == 1  # 50 KiB in 1 KiB blocks, yet one GET


def test_bad_defaults_are_refused(emulator: BoxEmulator, jwt_config: str) -> None:
    def build(**kwargs: Any) -> BoxFileSystem:
        return BoxFileSystem(jwt_config=jwt_config, base_urls=emulator.base_urls, skip_instance_cache=True,
                             **kwargs)

    error = refused(emulator, lambda: build(default_cache_type="everything"), BoxConfigError)
    assert "default_cache_type 'everything'" in str(error) and "readahead" in str(error) and "all" in str(error)
    for size in (0, -1, "big", 1.5):
        refused(emulator, lambda size=size: build(default_block_size=size), BoxConfigError)
    assert build(default_block_size="8192").default_block_size == 8192


def test_defaults_travel_with_pickling(make_fs: Any, fs_user: tuple[str, str]) -> None:
    box = make_fs(as_user=fs_user[0], default_cache_type="blockcache", default_block_size=2048)
    again = pickle.loads(pickle.dumps(box))
    assert (again.default_cache_type, again.default_block_size) == ("blockcache", 2048)
