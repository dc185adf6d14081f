"""Hostile names against every entry point (red team, issues 16/18): a name is a literal name.

Found by trying what just landed as a hostile user would:

* ``box://id:N`` addressing: a top-level item literally named ``id:N`` (made by Box's web app, another
  client, or ``id_paths=False``) was listed under the path ``id:N``, a path that a fresh filesystem reads
  as *item N*, wherever it is; and after ``info("id:N")`` the cache answered for ``ID:N`` (Box's names
  compare case-insensitively) with item N, so ``rm("ID:N")`` deleted a file in another folder.

Every test talks to the emulator over real HTTP; requests are counted from its request log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from boxfs.emulator import BoxEmulator
from boxfs.names import BoxNameError


def _sent(emulator: BoxEmulator, fn: Callable[[], Any]) -> list[tuple[str, str]]:
    start = len(emulator.request_log)
    try:
        fn()
    except Exception:
        pass
    return [(r.method, r.route) for r in emulator.request_log.records[start:] if r.host == "api"]


@pytest.fixture
def precious(fs: Any) -> str:
    """A file deep in the tree, which no operation on a top-level name may touch; its id."""
    fs.pipe("deep/precious.txt", b"PRECIOUS")
    return str(fs.info("deep/precious.txt")["id"])


def test_a_listed_top_level_id_name_is_reached_by_its_listed_path(make_fs: Callable[..., Any], fs_user: Any,
                                                                  precious: str) -> None:
    literal = make_fs(as_user=fs_user[0], id_paths=False)  # as a mount or a file server runs
    literal.pipe({f"id:{precious}": b"lower literal", f"ID:{precious}x": b"not an id"})
    literal.pipe(f"Id:{int(precious) + 1000}", b"mixed-case literal")

    listed = {p: i for p, i in ((e["name"], e["id"]) for e in make_fs(as_user=fs_user[0]).ls(""))}
    # every listed path reaches the very item listed, from a filesystem that never saw the listing
    for path, item_id in listed.items():
        fresh = make_fs(as_user=fs_user[0])
        assert fresh.info(path)["id"] == item_id, path
    assert f"id:0/id:{precious}" in listed and f"id:0/Id:{int(precious) + 1000}" in listed
    assert f"ID:{precious}x" in listed  # not an id form: an ordinary name, listed as it is
    assert make_fs(as_user=fs_user[0]).cat(f"id:0/id:{precious}") == b"lower literal"

    # deleting what the listing named deletes the literal file, never the file with that id
    remover = make_fs(as_user=fs_user[0])
    for path in listed:
        if path != "deep":
            remover.rm(path)
    after = make_fs(as_user=fs_user[0])
    assert after.cat("deep/precious.txt") == b"PRECIOUS"
    assert after.ls("", detail=False) == ["deep"]


def test_id_prefix_in_any_case_addresses_the_same_item(emulator: BoxEmulator, make_fs: Callable[..., Any],
                                                       fs_user: Any, precious: str) -> None:
    fs = make_fs(as_user=fs_user[0])
    assert fs.info(f"id:{precious}")["id"] == precious
    # the cache keys names case-insensitively, as Box compares them: ID:N must mean the same thing
    assert fs.info(f"ID:{precious}")["id"] == precious
    assert make_fs(as_user=fs_user[0]).cat(f"iD:{precious}") == b"PRECIOUS"
    # and, like id:N, it never names a new top-level item: refused before any request (a move looks
    # its target up first: moving into a folder by id, ``mv(f, "ID:<folder id>")``, is allowed)
    for op in (lambda: fs.pipe(f"ID:{precious}", b"x"), lambda: fs.mkdir("ID:77")):
        with pytest.raises(BoxNameError, match="addresses an existing item"):
            op()
        assert _sent(emulator, op) == []
    with pytest.raises(BoxNameError, match="addresses an existing item"):
        fs.mv("deep/precious.txt", "Id:78")
    assert make_fs(as_user=fs_user[0]).cat("deep/precious.txt") == b"PRECIOUS"


@pytest.mark.parametrize("name", ["id:-1", "id:1e3", "id: 5", "id:\u0665", "id:", "id:5 x", "ID:"])
def test_id_like_names_that_are_not_ids_stay_literal(fs: Any, name: str) -> None:
    fs.pipe(name, name.encode())
    assert fs.info(name)["name"] == name
    assert name in fs.ls("", detail=False)
    fs.rm(name)
    assert fs.ls("", detail=False) == []


# ------------------------------------------------------------------------------ glob characters
HOSTILE = "[a]*?"
SIBLINGS = {"t/a": b"A", "t/ab": b"AB", "t/abc": b"ABC"}


@pytest.fixture
def globby(fs: Any) -> Any:
    """``t/[a]*?`` (a name Box accepts, and a pattern matching ``t/a``, ``t/ab``, ``t/abc``) and those."""
    fs.pipe({f"t/{HOSTILE}": b"HOSTILE", **SIBLINGS})
    return fs


def _tree(make_fs: Callable[..., Any], fs_user: Any) -> dict[str, bytes]:
    fresh = make_fs(as_user=fs_user[0])
    return {p: fresh.cat_file(p) for p in fresh.find("t")}


@pytest.mark.parametrize("op", ["rm", "rm_recursive", "mv", "cp", "cat"])
def test_an_existing_name_with_glob_characters_is_that_file_never_a_pattern(
        globby: Any, make_fs: Callable[..., Any], fs_user: Any, op: str) -> None:
    src = f"box://t/{HOSTILE}"
    if op == "rm":
        globby.rm(src)
    elif op == "rm_recursive":
        globby.rm(src, recursive=True)
    elif op == "mv":
        globby.mv(src, "t/moved")
    elif op == "cp":
        globby.copy(src, "t/copied")
    else:
        assert globby.cat(src) == b"HOSTILE"
    expected = dict(SIBLINGS)  # before the fix, rm deleted t/a, t/ab and t/abc and kept the named file
    if op in ("cp", "cat"):
        expected[f"t/{HOSTILE}"] = b"HOSTILE"
    if op in ("mv", "cp"):
        expected[f"t/{op.replace('mv', 'moved').replace('cp', 'copied')}"] = b"HOSTILE"  # the file, not into a folder
    assert _tree(make_fs, fs_user) == expected


def test_get_and_put_of_a_file_named_like_a_pattern(globby: Any, tmp_path: Any, make_fs: Callable[..., Any],
                                                    fs_user: Any) -> None:
    globby.get(f"t/{HOSTILE}", str(tmp_path / "out.bin"))
    assert (tmp_path / "out.bin").read_bytes() == b"HOSTILE"  # a file, not a folder holding it
    globby.get(f"t/{HOSTILE}", str(tmp_path) + "/")
    assert (tmp_path / HOSTILE).read_bytes() == b"HOSTILE"
    local = tmp_path / "q?"
    (tmp_path / "qx").write_bytes(b"not me")
    local.write_bytes(b"question")
    globby.put(str(local), "t/up.bin")
    globby.put(str(local), "t/")
    fresh = _tree(make_fs, fs_user)
    assert fresh["t/up.bin"] == b"question" and fresh["t/q?"] == b"question" and "t/qx" not in fresh


def test_a_pattern_that_names_no_file_is_still_a_pattern(globby: Any, make_fs: Callable[..., Any],
                                                         fs_user: Any) -> None:
    assert globby.cat("t/a*") == SIBLINGS
    globby.rm("t/a*")
    assert _tree(make_fs, fs_user) == {f"t/{HOSTILE}": b"HOSTILE"}


def test_put_of_a_tree_with_one_name_box_refuses_creates_nothing(emulator: BoxEmulator, fs: Any,
                                                                 tmp_path: Any) -> None:
    src = tmp_path / "src"
    (src / "[x]").mkdir(parents=True)
    (src / "[x]" / "*.txt").write_bytes(b"star")
    (src / "ok.txt").write_bytes(b"ok")
    (src / "back\\slash").write_bytes(b"refused by Box")
    start = len(emulator.request_log)
    with pytest.raises(BoxNameError, match="back"):
        fs.put(str(src), "up", recursive=True)
    writes = [r for r in emulator.request_log.records[start:] if r.method in ("POST", "PUT", "DELETE")]
    assert writes == [] and make_fs_ls(fs) == []
    (src / "back\\slash").unlink()
    fs.put(str(src), "up", recursive=True)
    assert sorted(fs.find("up")) == ["up/[x]/*.txt", "up/ok.txt"]


def make_fs_ls(fs: Any) -> list[str]:
    fs.invalidate_cache()
    return fs.ls("", detail=False)
