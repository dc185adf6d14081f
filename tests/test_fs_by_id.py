"""Addressing an item by its Box id (issue 18): ``box://id:12345`` and ``box://id:678/sub/path``.

A token downscoped to one file cannot list any folder, so no path leads to its file; an id does (file-level
delegation, webhook payloads). Request counts come from the emulator's request log (API host only: the
download host serves the redirected content and is not an API call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator
from boxfs.names import BoxNameError

CSV = b"region,revenue\nnorth,120.5\nsouth,98.0\n"
FILE, FOLDER, ITEMS, CONTENT = "/files/{file_id}", "/folders/{folder_id}", "/folders/{folder_id}/items", \
    "/files/{file_id}/content"


def api_requests(emulator: BoxEmulator, fn: Callable[[], Any]) -> tuple[Any, list[tuple[str, str]]]:
    """Run ``fn``; its result and the ``(method, route)`` of every API request it sent (tokens apart)."""
    start = len(emulator.request_log)
    result = fn()
    sent = emulator.request_log.records[start:]
    return result, [(r.method, r.route) for r in sent if r.host == "api"]


@pytest.fixture
def tree(fs: BoxFileSystem) -> dict[str, str]:
    """``ds/a.csv``, ``ds/b.csv`` and ``ds/sub/c.txt`` for this test's user; their ids by name."""
    fs.pipe({"ds/a.csv": CSV, "ds/b.csv": b"other", "ds/sub/c.txt": b"deep"})
    return {n: fs.info(f"ds/{n}")["id"] for n in ("a.csv", "b.csv", "sub", "sub/c.txt")} | {"ds": fs.info("ds")["id"]}


@pytest.fixture
def one_file(emulator: BoxEmulator, jwt_config: str, fs_user: tuple[str, str],
             tree: dict[str, str]) -> dict[str, Any]:
    """storage_options for a token downscoped to reading ``ds/a.csv`` only."""
    return {"jwt_config": jwt_config, "as_user": fs_user[0], "base_urls": emulator.base_urls,
            "scopes": ["item_download", "item_preview"],
            "resource": f"{emulator.url}/2.0/files/{tree['a.csv']}", "skip_instance_cache": True}


def test_a_file_scoped_token_reads_its_file_by_id(emulator: BoxEmulator, tree: dict[str, str],
                                                  one_file: dict[str, Any]) -> None:
    box = BoxFileSystem(**one_file)
    url = f"box://id:{tree['a.csv']}"
    info, sent = api_requests(emulator, lambda: box.info(url))
    assert (info["name"], info["type"], info["size"], info["id"]) == (f"id:{tree['a.csv']}", "file", len(CSV),
                                                                      tree["a.csv"])
    assert sent == [("GET", FILE)]  # one request, no listing
    data, sent = api_requests(emulator, lambda: box.cat(url))
    assert data == CSV and sent == [("GET", CONTENT)]  # the item is known: only the download
    with box.open(url) as f:
        f.seek(7)
        assert f.read(7) == b"revenue"
    frame = pd.read_csv(url, storage_options=one_file)
    assert list(frame["region"]) == ["north", "south"]
    # what the token does not reach stays out of reach, by id and by path
    with pytest.raises(PermissionError):
        box.cat(f"box://id:{tree['b.csv']}")
    with pytest.raises(PermissionError):
        box.cat("box://ds/a.csv")  # a path needs listings of All Files and ds: refused by Box


def test_a_folder_id_lists_and_leads_to_paths_below(emulator: BoxEmulator, make_fs: Any, fs_user: tuple[str, str],
                                                    tree: dict[str, str]) -> None:
    box = make_fs(as_user=fs_user[0])  # a cold cache
    top = f"id:{tree['ds']}"
    names, sent = api_requests(emulator, lambda: box.ls(f"box://{top}", detail=False))
    assert sorted(names) == [f"{top}/a.csv", f"{top}/b.csv", f"{top}/sub"]
    assert sent == [("GET", FOLDER), ("GET", ITEMS)]
    data, sent = api_requests(emulator, lambda: box.cat(f"box://{top}/sub/c.txt"))
    assert data == b"deep" and sent == [("GET", ITEMS), ("GET", CONTENT)]  # only "sub" still to list
    assert box.find(f"box://{top}") == [f"{top}/a.csv", f"{top}/b.csv", f"{top}/sub/c.txt"]
    assert box.info(f"{top}/sub")["id"] == tree["sub"]

    cold = make_fs(as_user=fs_user[0])
    data, sent = api_requests(emulator, lambda: cold.cat(f"box://id:{tree['ds']}/a.csv"))
    assert data == CSV
    assert sent == [("GET", FOLDER), ("GET", ITEMS), ("GET", CONTENT)]  # below an id: asked as a folder only


def test_writing_below_a_folder_id(emulator: BoxEmulator, fs: BoxFileSystem, make_fs: Any,
                                   fs_user: tuple[str, str], tree: dict[str, str]) -> None:
    top = f"box://id:{tree['ds']}"
    fs.pipe_file(f"{top}/out/result.csv", b"1,2\n")
    fs.mkdir(f"{top}/made")
    fs.mv(f"{top}/b.csv", f"{top}/made/b.csv")
    fs.mv("ds/a.csv", f"box://id:{tree['sub']}")  # into the folder with that id
    fresh = make_fs(as_user=fs_user[0])
    assert fresh.cat("ds/out/result.csv") == b"1,2\n"
    assert fresh.ls("ds/made", detail=False) == ["ds/made/b.csv"]
    assert fresh.cat("ds/sub/a.csv") == CSV
    assert fresh.ls("", detail=False) == ["ds"]  # nothing was made at the top level


def test_an_id_path_never_names_a_new_item(emulator: BoxEmulator, make_fs: Any, fs_user: tuple[str, str],
                                           tree: dict[str, str]) -> None:
    """Writing, creating, moving or copying onto ``id:N`` itself is refused: Box would otherwise get a
    top-level item literally named "id:N" that the same URL cannot read back."""
    cold = make_fs(as_user=fs_user[0])
    said = "addresses an existing item by its Box id"
    for call in (lambda: cold.pipe_file(f"id:{tree['a.csv']}", b"x"), lambda: cold.open("id:424242", "wb"),
                 lambda: cold.mkdir("id:424242"), lambda: cold.mkdir(f"id:{tree['sub']}")):
        start = len(emulator.request_log)
        with pytest.raises(BoxNameError, match=said):
            call()
        assert emulator.request_log.records[start:] == []  # refused before any request
    # a move or copy onto an id that is not a folder (moving *into* a folder id is fine) needs a lookup first
    with pytest.raises(BoxNameError, match=said):
        cold.mv("ds/a.csv", "id:424242")
    with pytest.raises(BoxNameError, match=said):
        cold.cp_file("ds/a.csv", "id:424242")
    with pytest.raises(FileNotFoundError, match="id:424242"):
        cold.makedirs("id:424242/sub")
    fresh = make_fs(as_user=fs_user[0])
    assert fresh.ls("", detail=False) == ["ds"] and fresh.cat("ds/a.csv") == CSV


def test_a_missing_id(emulator: BoxEmulator, fs: BoxFileSystem) -> None:
    with pytest.raises(FileNotFoundError, match="id:987654321"):
        fs.info("box://id:987654321")
    assert not fs.exists("box://id:987654321")
    with pytest.raises(FileNotFoundError):
        fs.cat("box://id:987654321/x.txt")


def test_literal_top_level_names_that_look_like_ids(emulator: BoxEmulator, make_fs: Any,
                                                    fs_user: tuple[str, str], tree: dict[str, str]) -> None:
    """A top-level item literally named ``id:<digits>`` is reached below the root's id (``id:0/...``), or
    with ``id_paths=False``, where every path is literal (what a mount or file server wants)."""
    literal = make_fs(as_user=fs_user[0], id_paths=False)
    literal.pipe_file(f"id:{tree['a.csv']}/x.txt", b"literal")
    assert literal.cat(f"box://id:{tree['a.csv']}/x.txt") == b"literal"
    by_id = make_fs(as_user=fs_user[0])
    assert by_id.cat(f"box://id:0/id:{tree['a.csv']}/x.txt") == b"literal"
    assert by_id.cat(f"box://id:{tree['a.csv']}") == CSV
    assert sorted(by_id.ls("box://id:0", detail=False)) == ["id:0/ds", f"id:0/id:{tree['a.csv']}"]
