"""``fs.get`` and ``fs.copy`` take a Box folder whose name holds ``[ ] * ?`` as that folder and place it as
fsspec places a folder with a plain name: inside an existing target folder (or a target ending with a
slash) under its own name, else at the target itself; written with a trailing slash, its contents go
into the target. fsspec alone would take the name for a pattern and pour the folder's contents into the
target folder. A real pattern (no item has that name) keeps fsspec's pattern rules.

Every byte is checked by SHA-1 against what was written; request counts come from the emulator's log.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from boxfs import BoxFileSystem

NAMES = ("dir [1]", "a*b", "q?")
#: what fsspec's glob would take each name to mean: must never be fetched in its place
LOOK_ALIKES = {"dir [1]": "dir 1", "a*b": "aXXb", "q?": "qz"}


def _content(name: str, rel: str) -> bytes:
    """Distinct bytes for every file of every folder, so a file landing in the wrong place shows."""
    return hashlib.sha256(f"{name}/{rel}".encode()).digest() * 300 + rel.encode()


RELS = ("x.txt", "sub/y [2].txt", "sub/deeper/z*.bin")


def _box_tree(fs: BoxFileSystem, top: str) -> dict[str, dict[str, str]]:
    """Under ``top``: each pattern-named folder and its look-alike, nested; the SHA-1 of every file."""
    sums: dict[str, dict[str, str]] = {}
    for name in NAMES:
        sums[name] = {}
        for rel in RELS:
            data = _content(name, rel)
            fs.pipe_file(f"{top}/{name}/{rel}", data)
            sums[name][rel] = hashlib.sha1(data).hexdigest()
        fs.pipe_file(f"{top}/{LOOK_ALIKES[name]}/wrong.txt", b"the look-alike, not the named folder")
    return sums


def _local_sums(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def _box_sums(fs: BoxFileSystem, root: str) -> dict[str, str]:
    """Relative path -> SHA-1 of the bytes read back (not Box's recorded sha1: the bytes themselves)."""
    fresh = BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                          skip_instance_cache=True)
    return {p[len(root) + 1:]: hashlib.sha1(fresh.cat_file(p)).hexdigest()
            for p in fresh.find(root, withdirs=False)}


def _under(prefix: str, sums: dict[str, str]) -> dict[str, str]:
    return {f"{prefix}/{rel}": digest for rel, digest in sums.items()}


@pytest.mark.parametrize("name", NAMES)
def test_get_places_a_pattern_named_folder_as_a_plain_name(fs: BoxFileSystem, tmp_path: Path, name: str) -> None:
    sums = _box_tree(fs, "t")[name]
    into, slash, contents = tmp_path / "into", tmp_path / "slash", tmp_path / "contents"
    into.mkdir()
    fs.get(f"t/{name}", str(into), recursive=True)  # an existing folder: inside it, under its own name
    fs.get(f"box://t/{name}", str(slash) + os.sep, recursive=True)  # a target ending with a slash: the same
    fs.get(f"t/{name}", str(tmp_path / "new"), recursive=True)  # a new target: the folder becomes it
    contents.mkdir()
    fs.get(f"t/{name}/", str(contents), recursive=True)  # a trailing slash: its contents into the target
    assert _local_sums(into) == _under(name, sums)
    assert _local_sums(slash) == _under(name, sums)
    assert _local_sums(tmp_path / "new") == sums
    assert _local_sums(contents) == sums


@pytest.mark.parametrize("name", NAMES)
def test_copy_places_a_pattern_named_folder_as_a_plain_name(fs: BoxFileSystem, name: str) -> None:
    sums = _box_tree(fs, "t")[name]
    fs.mkdir("into")
    fs.copy(f"t/{name}", "into", recursive=True)  # an existing folder: inside it (one server-side copy)
    fs.copy(f"t/{name}", "box://slash/", recursive=True)  # a target ending with a slash: the same
    fs.copy(f"t/{name}", "new", recursive=True)  # a new target: the folder becomes it
    fs.mkdir("contents")
    fs.copy(f"t/{name}/", "contents", recursive=True)  # a trailing slash: its contents, file by file
    fs.pipe_file(f"merge/{name}/old.txt", b"kept")
    fs.copy(f"t/{name}", "merge", recursive=True)  # the landing folder exists: merged file by file
    assert _box_sums(fs, "into") == _under(name, sums)
    assert _box_sums(fs, "slash") == _under(name, sums)
    assert _box_sums(fs, "new") == sums
    assert _box_sums(fs, "contents") == sums
    assert _box_sums(fs, "merge") == {**_under(name, sums), f"{name}/old.txt": hashlib.sha1(b"kept").hexdigest()}


def test_an_empty_pattern_named_folder_lands_where_a_plain_name_would(fs: BoxFileSystem, tmp_path: Path) -> None:
    """One path and no files: fsspec would count the folder as one matched file and nest it."""
    fs.makedirs("t/e [1]")
    fs.get("t/e [1]", str(tmp_path / "new"), recursive=True)
    fs.get("t/e [1]/", str(tmp_path / "flat"), recursive=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat", "new"]
    assert list((tmp_path / "new").iterdir()) == [] and list((tmp_path / "flat").iterdir()) == []
    fs.copy("t/e [1]/", "flat", recursive=True)
    assert fs.isdir("flat") and fs.ls("flat", detail=False) == []


def test_a_file_named_like_a_pattern_taken_recursively_lands_as_one_file(fs: BoxFileSystem, tmp_path: Path) -> None:
    data = b"one file" * 1000
    fs.pipe_file("t/f [1].bin", data)
    fs.get("t/f [1].bin", str(tmp_path / "got.bin"), recursive=True)
    fs.copy("t/f [1].bin", "copied.bin", recursive=True)
    assert hashlib.sha1((tmp_path / "got.bin").read_bytes()).hexdigest() == hashlib.sha1(data).hexdigest()
    assert hashlib.sha1(fs.cat_file("copied.bin")).hexdigest() == hashlib.sha1(data).hexdigest()


def test_a_real_pattern_still_expands(fs: BoxFileSystem, tmp_path: Path) -> None:
    """``t/d*`` names no item: its matches (two folders) are placed as fsspec places a pattern's."""
    for folder in ("d1", "d2 [x]"):
        for rel in RELS:
            fs.pipe_file(f"t/{folder}/{rel}", _content(folder, rel))
    fs.pipe_file("t/other/no.txt", b"not a match")
    sums = {f"{folder}/{rel}": hashlib.sha1(_content(folder, rel)).hexdigest()
            for folder in ("d1", "d2 [x]") for rel in RELS}
    fs.get("t/d*", str(tmp_path / "out") + os.sep, recursive=True)
    fs.copy("t/d*", "copies/", recursive=True)
    assert _local_sums(tmp_path / "out") == sums
    assert _box_sums(fs, "copies") == sums


def _requests(emulator: Any, fs: BoxFileSystem, start: float) -> Counter[tuple[str, str]]:
    time.sleep(0.05)  # a record is completed once its answer is on its way
    return Counter((r.method, r.route) for r in emulator.request_log.records
                   if r.started >= start and r.host in ("api", "upload") and r.as_user == fs.as_user_id)


def _cold(fs: BoxFileSystem) -> BoxFileSystem:
    return BoxFileSystem(credentials=fs.credentials, base_urls=fs.endpoints, as_user=fs.as_user_id,
                         skip_instance_cache=True)


@pytest.mark.parametrize("how", ["get", "get-contents", "copy-merge", "copy-contents"])
def test_a_pattern_named_folder_costs_what_a_plain_one_does(fs: BoxFileSystem, emulator: Any,
                                                            tmp_path: Path, how: str) -> None:
    """Taking the name literally adds no request: the same calls, route by route, as ``plain``."""
    for name in ("plain", "pl [1]n"):
        for rel in RELS:
            fs.pipe_file(f"t/{name}/{rel}", _content(name, rel))
        fs.pipe_file(f"merge/{name}/old.txt", b"kept")
    fs.makedirs("contents", exist_ok=True)
    costs = {}
    for name in ("plain", "pl [1]n"):
        cold = _cold(fs)
        local = tmp_path / name
        local.mkdir()
        start = time.monotonic()
        if how == "get":
            cold.get(f"t/{name}", str(local), recursive=True)
        elif how == "get-contents":
            cold.get(f"t/{name}/", str(local), recursive=True)
        elif how == "copy-merge":
            cold.copy(f"t/{name}", "merge", recursive=True)
        else:
            cold.copy(f"t/{name}/", f"contents/{name}", recursive=True)
        costs[name] = _requests(emulator, fs, start)
    assert costs["plain"] == costs["pl [1]n"], costs
    assert sum(costs["plain"].values()) > 0


def test_every_placement_matches_a_plain_named_twin(fs: BoxFileSystem, tmp_path: Path) -> None:
    """Whatever fsspec does with ``plain`` (target existing or new, slashes, ``maxdepth``), it does with
    ``pl [1]n``: the same files, same places, same bytes; for get and copy of the Box folder, and for put
    of its local twin."""
    for name in ("plain", "pl [1]n"):
        for rel in RELS:
            fs.pipe_file(f"t/{name}/{rel}", _content("same", rel))
            source = tmp_path / "src" / name / rel
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(_content("same", rel))
    layouts: dict[str, list[Any]] = {}
    for name in ("plain", "pl [1]n"):
        layouts[name] = []
        for n, (src_slash, dst, maxdepth) in enumerate(
                (s, d, m) for s in ("", "/") for d in ("existing", "existing/", "new") for m in (None, 1, 2)):
            local, remote, put = tmp_path / name / str(n), f"out/{name}/{n}", f"up/{name}/{n}"
            if dst.startswith("existing"):
                local.mkdir(parents=True)
                fs.makedirs(remote)
                fs.makedirs(put)
            suffix = "/" if dst.endswith("/") else ""
            outcome = []
            for transfer, source, target in ((fs.get, f"t/{name}", f"{local}{suffix}"),
                                             (fs.copy, f"t/{name}", f"{remote}{suffix}"),
                                             (fs.put, str(tmp_path / "src" / name), f"{put}{suffix}")):
                try:  # fsspec's quirks included: one file onto an existing folder's own name fails for both
                    transfer(f"{source}{src_slash}", target, recursive=True, maxdepth=maxdepth)
                    outcome.append(None)
                except OSError as exc:
                    outcome.append(type(exc))
            got = _local_sums(local) if local.exists() else {}
            copied = _box_sums(fs, remote) if fs.exists(remote) else {}
            uploaded = _box_sums(fs, put) if fs.exists(put) else {}
            layouts[name].append((n, outcome, *({k.replace(name, "NAME"): v for k, v in sums.items()}
                                                for sums in (got, copied, uploaded))))
    assert layouts["pl [1]n"] == layouts["plain"]
    assert any("NAME/x.txt" in got for _n, _o, got, _c, _u in layouts["plain"])  # the twin did nest somewhere
    assert any("NAME/x.txt" in up for _n, _o, _g, _c, up in layouts["plain"])
