"""Literal-path operations (boxfs.frontend.paths.Namespace) against the emulator over real HTTP.

A name is never a pattern; renames never delete the target before the new item is in place; refusals
come before any request. Every check of what Box holds uses a second filesystem instance (empty cache).
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from support import injected_faults

from boxfs.frontend import Namespace, errno_of


@pytest.fixture
def fs(fast_fs: Any) -> Any:
    return fast_fs


def names(fs: Any, folder: str = "") -> set[str]:
    return {i["name"].rsplit("/", 1)[-1] for i in fs.ls(folder, detail=True)}


def changes(emulator: Any, user: str) -> int:
    """Requests that change something on Box (anything but GET), made as ``user`` so far."""
    return sum(1 for r in emulator.request_log.records if r.user_id == user and r.method != "GET")


def test_remove_file_is_literal(fs: Any, box_view: Callable[[], Any], emulator: Any, fs_user: tuple[str, str]) -> None:
    for name in ("report [1].pdf", "report 1.pdf", "data?.csv", "dataX.csv", "star*.txt", "star1.txt"):
        fs.pipe_file(name, name.encode())
    ns = Namespace(fs)
    before = emulator.request_log.count(method="DELETE", user_id=fs_user[0])
    ns.remove_file("report [1].pdf")
    ns.remove_file("data?.csv")
    ns.remove_file("star*.txt")
    assert emulator.request_log.count(method="DELETE", user_id=fs_user[0]) - before == 3
    assert names(box_view()) == {"report 1.pdf", "dataX.csv", "star1.txt"}
    with pytest.raises(FileNotFoundError):
        ns.remove_file("report [1].pdf")


def test_remove_folder_and_kind_errors(fs: Any, box_view: Callable[[], Any]) -> None:
    ns = Namespace(fs)
    ns.mkdir("dir [a]")
    ns.mkdir("dir a")
    fs.pipe_file("dir a/x.txt", b"x")
    fs.pipe_file("f.txt", b"f")
    with pytest.raises(OSError) as exc:
        ns.remove_folder("dir a")
    assert errno_of(exc.value) == errno.ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        ns.remove_folder("f.txt")
    with pytest.raises(IsADirectoryError):
        ns.remove_file("dir [a]")
    with pytest.raises(NotADirectoryError):
        ns.list("f.txt")
    ns.remove_folder("dir [a]")
    assert names(box_view()) == {"dir a", "f.txt"}
    assert [i["name"] for i in ns.list("dir a")] == ["dir a/x.txt"]
    assert ns.exists("dir a/x.txt") and not ns.exists("dir [a]")
    st = ns.stat("dir a/x.txt")
    assert st.st_size == 1 and st.st_ino == int(ns.info("dir a/x.txt")["id"])


def test_bad_names_refused_before_any_request(fs: Any, emulator: Any, fs_user: tuple[str, str]) -> None:
    ns = Namespace(fs)
    fs.pipe_file("a.txt", b"a")
    before = changes(emulator, fs_user[0])
    for bad, code in (("trailing ", errno.EINVAL), ("ctl\x07", errno.EINVAL), ("n" * 256, errno.ENAMETOOLONG)):
        with pytest.raises(OSError) as exc:
            ns.mkdir(bad)
        assert errno_of(exc.value) == code
        assert "Box item names" in str(exc.value)  # the message says which rule
        with pytest.raises(OSError) as exc:
            ns.rename("a.txt", bad)
        assert errno_of(exc.value) == code
    assert changes(emulator, fs_user[0]) == before


def test_rename_glob_names_is_literal(fs: Any, box_view: Callable[[], Any]) -> None:
    for name in ("star*.txt", "star1.txt", "star2.txt"):
        fs.pipe_file(name, name.encode())
    Namespace(fs).rename("star*.txt", "renamed.txt")
    box = box_view()
    assert names(box) == {"renamed.txt", "star1.txt", "star2.txt"}
    assert box.cat_file("renamed.txt") == b"star*.txt"
    assert box.info("renamed.txt")["type"] == "file"


def test_rename_onto_itself_and_case_only(fs: Any, box_view: Callable[[], Any], emulator: Any, fs_user: tuple[str, str]) -> None:
    fs.pipe_file("Report.txt", b"keep me")
    ns = Namespace(fs)
    before = changes(emulator, fs_user[0])
    ns.rename("Report.txt", "Report.txt")
    ns.rename("report.TXT", "Report.txt")  # another spelling of the same path, already its name
    assert changes(emulator, fs_user[0]) == before  # no request at all
    ns.rename("Report.txt", "report.txt")  # case-only: the same item, renamed
    assert changes(emulator, fs_user[0]) == before + 1
    box = box_view()
    assert names(box) == {"report.txt"}
    assert box.cat_file("report.txt") == b"keep me"
    ns.mkdir("Docs")
    ns.rename("Docs", "docs")
    assert names(box_view()) == {"report.txt", "docs"}


def test_rename_onto_existing_file_replaces_it(fs: Any, box_view: Callable[[], Any]) -> None:
    fs.pipe_file("new.txt", b"new")
    fs.pipe_file("old [1].txt", b"old")
    Namespace(fs).rename("new.txt", "old [1].txt")
    box = box_view()
    assert names(box) == {"old [1].txt"}
    assert box.cat_file("old [1].txt") == b"new"


def test_rename_without_overwrite_touches_nothing(fs: Any, box_view: Callable[[], Any], emulator: Any,
                                                  fs_user: tuple[str, str]) -> None:
    fs.pipe_file("a.txt", b"a")
    fs.pipe_file("b.txt", b"b")
    before = changes(emulator, fs_user[0])
    with pytest.raises(FileExistsError):
        Namespace(fs).rename("a.txt", "b.txt", overwrite=False)
    assert changes(emulator, fs_user[0]) == before
    box = box_view()
    assert (box.cat_file("a.txt"), box.cat_file("b.txt")) == (b"a", b"b")


def test_copy_without_overwrite_never_replaces(fs: Any, box_view: Callable[[], Any], emulator: Any,
                                               fs_user: tuple[str, str]) -> None:
    """copy(overwrite=False): a name it sees taken is EEXIST before any request; one it saw free but
    another client took since (its listing is stale) meets Box's 409 on the copy itself: one POST, no
    delete, no move, the other file as it was."""
    fs.pipe_file("a [1].txt", b"a")
    fs.pipe_file("b.txt", b"b")
    ns = Namespace(fs)
    before = changes(emulator, fs_user[0])
    with pytest.raises(FileExistsError):
        ns.copy("a [1].txt", "b.txt", overwrite=False)
    assert changes(emulator, fs_user[0]) == before
    fs.ls("", detail=False)  # listed: c.txt is free as far as fs knows
    box_view().pipe_file("c.txt", b"theirs")  # another client takes the name
    before = len(emulator.request_log.records)
    with pytest.raises(OSError) as exc:
        ns.copy("a [1].txt", "c.txt", overwrite=False)
    assert errno_of(exc.value) == errno.EEXIST
    made = [(r.method, r.route) for r in emulator.request_log.records[before:]
            if r.user_id == fs_user[0] and r.method != "GET"]
    assert made == [("POST", "/files/{file_id}/copy")], made
    box = box_view()
    assert (box.cat_file("b.txt"), box.cat_file("c.txt")) == (b"b", b"theirs")
    assert names(box) == {"a [1].txt", "b.txt", "c.txt"}
    ns.copy("a [1].txt", "d.txt", overwrite=False)  # a free name: copied
    assert box_view().cat_file("d.txt") == b"a"


def test_rename_kind_mismatches(fs: Any, box_view: Callable[[], Any]) -> None:
    ns = Namespace(fs)
    fs.pipe_file("f.txt", b"f")
    ns.mkdir("full")
    fs.pipe_file("full/x", b"x")
    ns.mkdir("empty")
    ns.mkdir("src")
    fs.pipe_file("src/y", b"y")
    with pytest.raises(IsADirectoryError):
        ns.rename("f.txt", "empty")
    with pytest.raises(NotADirectoryError):
        ns.rename("src", "f.txt")
    with pytest.raises(OSError) as exc:
        ns.rename("src", "full")
    assert errno_of(exc.value) == errno.ENOTEMPTY
    ns.rename("src", "empty")  # POSIX: an empty folder is replaced
    box = box_view()
    assert names(box) == {"f.txt", "full", "empty"}
    assert box.cat_file("empty/y") == b"y"
    with pytest.raises(FileNotFoundError):
        ns.rename("nothing", "x")


def test_replace_with_the_move_failing_loses_nothing(fs: Any, box_view: Callable[[], Any], emulator: Any) -> None:
    """Box failing every move: the rename fails, and both files are still there, unchanged."""
    fs.pipe_file("src.txt", b"source")
    fs.pipe_file("dst.txt", b"target")
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=r"/files/\d+", method="PUT"), \
            pytest.raises(OSError) as exc:
        Namespace(fs).rename("src.txt", "dst.txt")
    assert errno_of(exc.value) == errno.EIO
    box = box_view()
    assert {n for n in names(box) if not n.startswith(".boxfs-")} == {"src.txt", "dst.txt"}
    assert (box.cat_file("src.txt"), box.cat_file("dst.txt")) == (b"source", b"target")


def test_replace_under_random_faults_never_loses_data(make_fs: Callable[..., Any], new_user: Any,
                                                      emulator: Any) -> None:
    """15% of requests failing: every rename either happened or left both files; no byte changes."""
    uid = new_user("nsf")[0]
    fs = make_fs(as_user=uid, retry={"max_attempts": 12, "backoff_base": 0.005, "backoff_max": 0.05})
    payload = {f"f{i} [x].bin": hashlib.sha1(str(i).encode()).digest() * 100 for i in range(8)}
    for name, data in payload.items():
        fs.pipe_file(name, data)
    ns = Namespace(fs)
    with injected_faults(emulator, rate=0.15, kinds=("500", "503", "drop"), seed=15):
        for i in range(0, 8, 2):
            ns.rename(f"f{i} [x].bin", f"f{i + 1} [x].bin")
    box = make_fs(as_user=uid)
    got = {n: hashlib.sha1(box.cat_file(n)).hexdigest() for n in names(box)}
    for i in range(0, 8, 2):
        assert got[f"f{i + 1} [x].bin"] == hashlib.sha1(payload[f"f{i} [x].bin"]).hexdigest()
        assert f"f{i} [x].bin" not in got
    assert not [n for n in got if n.startswith(".boxfs-")]
