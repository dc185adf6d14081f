"""API calls are the cost (Box rate-limits per user): call counts from the emulator's request log."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from boxfs import BoxFileSystem

LISTING = "/folders/{folder_id}/items"


def since(emulator: Any, start: float) -> list[Any]:
    """Records of requests started after ``start`` (records are appended on completion, so wait a bit)."""
    time.sleep(0.05)
    return [r for r in emulator.request_log.records if r.started >= start]


def api_calls(emulator: Any, start: float) -> list[Any]:
    """Requests that count against the user's rate limit (not token requests, not the download host)."""
    return [r for r in since(emulator, start) if r.host in ("api", "upload")]


def fresh(fs: BoxFileSystem) -> BoxFileSystem:
    """Another filesystem for the same user with a cold cache."""
    return BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                         skip_instance_cache=True)


def test_warm_info_of_a_deep_path_costs_nothing(fs: BoxFileSystem, emulator: Any) -> None:
    fs.pipe_file("a/b/c/d/e/file.txt", b"deep")
    cold = fresh(fs)
    t = time.monotonic()
    assert cold.info("a/b/c/d/e/file.txt")["size"] == 4
    first = api_calls(emulator, t)
    assert [r.route for r in first] == [LISTING] * 6  # root, a, b, c, d, e: one listing each
    t = time.monotonic()
    for _ in range(5):
        cold.info("a/b/c/d/e/file.txt")
        cold.info("A/B/C")
        assert cold.exists("a/b/c/d/e/file.txt")
        assert not cold.exists("a/b/c/d/e/missing.txt")  # known missing from the complete listing
    assert api_calls(emulator, t) == []


def test_the_writer_of_a_tree_needs_no_listing(fs: BoxFileSystem, emulator: Any) -> None:
    t = time.monotonic()
    fs.pipe_file("new/deeper/x.txt", b"1")
    fs.pipe_file("new/deeper/y.txt", b"2")
    assert fs.ls("new/deeper", detail=False) == ["new/deeper/x.txt", "new/deeper/y.txt"]
    calls = Counter((r.method, r.route) for r in api_calls(emulator, t))
    # the (empty) root, to learn that "new" is missing; then the ls: a folder we made is not assumed to
    # hold only what we put there (dask workers fill the folder the client made; see docs/coherence.md)
    assert calls[("GET", LISTING)] == 2
    assert calls[("POST", "/folders")] == 2
    assert calls[("POST", "/files/content")] == 2


@pytest.fixture(scope="module")
def big_emulator() -> Any:
    """An emulator of its own: 2,500 items would slow every later test of the shared one."""
    from boxfs.emulator import BoxEmulator

    with BoxEmulator() as emu:
        yield emu


def test_ls_of_2500_items_costs_three_calls(big_emulator: Any) -> None:
    emulator = big_emulator
    uid = emulator.create_user(f"big-{time.time_ns()}@example.com")
    fs = BoxFileSystem(jwt_config=emulator.create_jwt_app(), as_user=uid, base_urls=emulator.base_urls,
                       skip_instance_cache=True)
    fs.mkdir("big")
    big_id = fs.info("big")["id"]
    url = fs.transport.api("/folders")

    def create(i: int) -> None:
        fs.transport.json("POST", url, json={"name": f"item-{i:05d}", "parent": {"id": big_id}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(2500)))
    cold = fresh(fs)
    cold.info("big")  # resolve the path first: one listing of the root
    t = time.monotonic()
    names = cold.ls("big", detail=False)
    assert len(names) == 2500 and names[0] == "big/item-00000" and len(set(names)) == 2500
    calls = api_calls(emulator, t)
    assert [(r.method, r.route) for r in calls] == [("GET", LISTING)] * 3
    assert all(r.path.endswith(f"/folders/{big_id}/items") for r in calls)
    t = time.monotonic()
    assert len(cold.ls("big")) == 2500
    assert api_calls(emulator, t) == []


def test_find_lists_each_folder_once(fs: BoxFileSystem, emulator: Any) -> None:
    folders = ["t"] + [f"t/d{i}" for i in range(4)] + [f"t/d{i}/e{j}" for i in range(4) for j in range(3)]
    for folder in folders:
        fs.pipe_file(f"{folder}/f.txt", b"x")
    cold = fresh(fs)
    t = time.monotonic()
    found = cold.find("t")
    assert len(found) == len(folders)
    calls = api_calls(emulator, t)
    assert all(r.route == LISTING for r in calls)
    per_folder = Counter(r.path for r in calls)
    assert len(per_folder) == len(folders) + 1  # every folder, plus the root to resolve "t"
    assert set(per_folder.values()) == {1}, "a folder was listed twice"
    t = time.monotonic()
    cold.find("t", withdirs=True)
    list(cold.walk("t"))
    cold.glob("t/**/f.txt")
    cold.du("t")
    assert api_calls(emulator, t) == []


def test_listings_ask_only_for_needed_fields_in_pages_of_1000(fs: BoxFileSystem, emulator: Any) -> None:
    seen: list[Any] = []
    original = fs.transport.session.request

    def spy(method: str, url: str, **kwargs: Any) -> Any:
        seen.append((method, url, kwargs.get("params")))
        return original(method, url, **kwargs)

    fs.transport.session.request = spy  # type: ignore[method-assign]
    fs.ls("")
    (_, url, params), = [s for s in seen if s[1].endswith("/items")]
    assert params["limit"] == 1000 and params["usemarker"] == "true"
    assert set(params["fields"].split(",")) == set(BoxFileSystem.FIELDS.split(","))


def test_mutations_keep_the_cache_true_without_calls(fs: BoxFileSystem, emulator: Any) -> None:
    fs.pipe_file("m/a.txt", b"a")
    fs.mkdir("m/sub")
    t = time.monotonic()
    fs.mv("m/a.txt", "m/sub/b.txt")
    fs.cp_file("m/sub/b.txt", "m/c.txt")
    fs.rm("m/sub/b.txt")
    calls = api_calls(emulator, t)
    assert [(r.method, r.route) for r in calls] == [
        ("PUT", "/files/{file_id}"), ("POST", "/files/{file_id}/copy"), ("DELETE", "/files/{file_id}")]
    t = time.monotonic()
    assert not fs.exists("m/a.txt")
    assert api_calls(emulator, t) == []
    # folders we made: their listings are asked of Box once (others may fill them; docs/coherence.md)
    assert sorted(fs.ls("m", detail=False)) == ["m/c.txt", "m/sub"]
    assert fs.ls("m/sub") == []
    assert [r.route for r in api_calls(emulator, t)] == [LISTING, LISTING]
    t = time.monotonic()
    assert sorted(fs.ls("m", detail=False)) == ["m/c.txt", "m/sub"] and fs.ls("m/sub") == []
    assert api_calls(emulator, t) == []
    # and the cache told the truth: a cold filesystem sees the same tree
    assert sorted(fresh(fs).find("m", withdirs=True)) == sorted(fs.find("m", withdirs=True))


def test_listings_expiry_time_and_use_listings_cache(make_fs: Any, fs_user: Any, emulator: Any) -> None:
    fs = make_fs(as_user=fs_user[0], listings_expiry_time=0.3)
    other = make_fs(as_user=fs_user[0])
    fs.ls("")
    other.pipe_file("from-elsewhere.txt", b"x")
    assert fs.ls("", detail=False) == []  # trusted for 0.3 s
    time.sleep(0.35)
    assert fs.ls("", detail=False) == ["from-elsewhere.txt"]
    uncached = make_fs(as_user=fs_user[0], use_listings_cache=False)
    t = time.monotonic()
    uncached.ls("")
    uncached.ls("")
    assert [r.route for r in api_calls(emulator, t)] == [LISTING, LISTING]


def test_recursive_copy_of_a_folder_is_one_request(fs: BoxFileSystem, emulator: Any) -> None:
    for p in ("tree/a.txt", "tree/s/b.txt", "tree/s/t/c.txt"):
        fs.pipe_file(p, p.encode())
    t = time.monotonic()
    fs.copy("tree", "copy", recursive=True)
    assert [(r.method, r.route) for r in api_calls(emulator, t)] == [("POST", "/folders/{folder_id}/copy")]
    assert fs.find("copy") == ["copy/a.txt", "copy/s/b.txt", "copy/s/t/c.txt"]
    assert fs.cat_file("copy/s/t/c.txt") == b"tree/s/t/c.txt"
    fs.copy("tree", "copy", recursive=True)  # an existing folder target: copied into it
    assert fs.find("copy/tree") == ["copy/tree/a.txt", "copy/tree/s/b.txt", "copy/tree/s/t/c.txt"]
    assert sorted(fresh(fs).find("", withdirs=True)) == sorted(fs.find("", withdirs=True))


def test_threads_resolving_together_list_each_folder_once(fs: BoxFileSystem, emulator: Any) -> None:
    for i in range(8):
        fs.pipe_file(f"p/q/r/f{i}.txt", b"x")
    cold = fresh(fs)
    t = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda i: cold.info(f"p/q/r/f{i}.txt")["size"], range(8)))
    assert sizes == [1] * 8
    per_folder = Counter(r.path for r in api_calls(emulator, t))
    assert len(per_folder) == 4 and set(per_folder.values()) == {1}, per_folder


def test_reads_recheck_a_miss_in_a_folder_we_created(fs: BoxFileSystem, emulator: Any,
                                                     tmp_path: Any) -> None:
    fs.mkdir("shared")  # this filesystem assumes "shared" empty (it created it)
    worker = fresh(fs)  # e.g. a dask worker, another process
    worker.pipe_file("shared/part-0.csv", b"a,b\n1,2\n")
    worker.pipe_file("shared/part-1.csv", b"x")
    t = time.monotonic()
    assert not fs.exists("shared/part-0.csv")  # info/exists trust the cache: free, possibly stale
    assert api_calls(emulator, t) == []
    assert fs.cat_file("shared/part-0.csv") == b"a,b\n1,2\n"  # a read asks Box before failing
    with fs.open("shared/part-0.csv", "rb") as f:
        assert f.read() == b"a,b\n1,2\n"
    fs.get_file("shared/part-1.csv", str(tmp_path / "p1"))
    assert (tmp_path / "p1").read_bytes() == b"x"
    try:
        fs.cat_file("shared/not-there.csv")
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("a missing file must still be reported")


def test_a_miss_in_a_fetched_listing_costs_no_request(fs: BoxFileSystem, emulator: Any) -> None:
    fs.pipe_file("listed/a.txt", b"a")
    cold = fresh(fs)
    cold.ls("listed")
    t = time.monotonic()
    for action in (lambda: cold.open("listed/missing.txt", "rb"), lambda: cold.cat_file("listed/missing.txt")):
        try:
            action()
        except FileNotFoundError:
            pass
        else:
            raise AssertionError("missing file not reported")
    assert api_calls(emulator, t) == []
