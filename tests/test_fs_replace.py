"""Replacing an existing file by ``mv`` or ``cp_file`` never loses both files when Box fails midway.

Box cannot move or copy onto a taken name, so the new file is put beside the old one first; only then is
the old one deleted (issue 4: "an overwrite ... the previous version stays intact if the upload fails").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support import injected_faults

FAST = {"max_attempts": 2, "backoff_base": 0.001, "backoff_max": 0.002}


def _two_files(fs: Any) -> None:
    fs.pipe_file("d/new.txt", b"new content")
    fs.pipe_file("d/target.txt", b"old content")


def _replace_failing(fs: Any, emulator: Any, op: str, route: str, method: str) -> None:
    """``op`` new.txt onto target.txt while Box answers 500 to every request matching route + method."""
    with injected_faults(emulator, rate=1.0, kinds=("500",), route=route, method=method), pytest.raises(OSError):
        getattr(fs, op)("d/new.txt", "d/target.txt")


@pytest.mark.parametrize(("op", "route", "method"), [("mv", r"/2\.0/files/\d+$", "PUT"),
                                                     ("cp_file", r"/2\.0/files/\d+/copy$", "POST")])
def test_a_failed_replace_leaves_the_target_as_it_was(make_fs: Callable[..., Any], fs_user: tuple[str, str],
                                                      emulator: Any, op: str, route: str, method: str) -> None:
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    _two_files(fs)
    _replace_failing(fs, emulator, op, route, method)
    fresh = make_fs(as_user=fs_user[0])
    assert fresh.cat_file("d/target.txt") == b"old content"
    assert sorted(fresh.ls("d", detail=False)) == ["d/new.txt", "d/target.txt"]


@pytest.mark.parametrize("op", ["mv", "cp_file"])
def test_a_replace_keeps_one_file_under_the_name(make_fs: Callable[..., Any], fs_user: tuple[str, str],
                                                 op: str) -> None:
    fs = make_fs(as_user=fs_user[0])
    _two_files(fs)
    getattr(fs, op)("d/new.txt", "d/target.txt")
    fresh = make_fs(as_user=fs_user[0])
    assert fresh.cat_file("d/target.txt") == b"new content"
    left = ["d/target.txt"] if op == "mv" else ["d/new.txt", "d/target.txt"]
    assert sorted(fresh.ls("d", detail=False)) == left


@pytest.mark.parametrize("op", ["mv", "cp_file"])
def test_a_failed_delete_of_the_old_file_puts_the_new_one_back(make_fs: Callable[..., Any],
                                                               fs_user: tuple[str, str], emulator: Any,
                                                               op: str) -> None:
    """The new file is already beside the target when deleting the target fails: a moved source goes
    back where it was, a copy is removed; the target stays as it was."""
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    _two_files(fs)
    _replace_failing(fs, emulator, op, rf"/2\.0/files/{fs.info('d/target.txt')['id']}$", "DELETE")
    fresh = make_fs(as_user=fs_user[0])
    assert sorted(fresh.ls("d", detail=False)) == ["d/new.txt", "d/target.txt"]
    assert fresh.cat_file("d/new.txt") == b"new content"
    assert fresh.cat_file("d/target.txt") == b"old content"
