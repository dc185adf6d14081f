"""``fs.put`` takes a local path that exists as that path, even when it holds ``[ ] * ?``: fsspec's local
glob would otherwise upload its look-alikes (``[x] *.txt`` matches ``x .txt``) and not the file named."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _tree(root: Path) -> Path:
    for name in ("[x] *.txt", "x .txt", "a?.txt", "ab.txt"):
        (root / name).write_text(name)
    (root / "dir [1]").mkdir()
    (root / "dir [1]" / "in.txt").write_text("in")
    (root / "dir 1").mkdir()
    (root / "dir 1" / "look-alike.txt").write_text("wrong")
    return root


def test_put_of_a_list_uploads_the_named_files_not_their_look_alikes(fs: Any, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    fs.mkdir("t")
    fs.put([str(src / "[x] *.txt"), str(src / "a?.txt")], "t/")
    assert sorted(fs.ls("t", detail=False)) == ["t/[x] *.txt", "t/a?.txt"]
    assert fs.cat("t/[x] *.txt") == b"[x] *.txt"


def test_put_of_a_folder_named_like_a_pattern_places_it_as_a_plain_name(fs: Any, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    fs.mkdir("t")
    fs.put(str(src / "dir [1]"), "t/", recursive=True)  # inside an existing folder, under its own name
    fs.put(str(src / "dir [1]"), "new", recursive=True)  # a new target: the folder becomes it
    fs.put(str(src / "dir [1]") + os.sep, "t/contents", recursive=True)  # trailing slash: its contents
    assert sorted(fs.find("", withdirs=False)) == ["new/in.txt", "t/contents/in.txt", "t/dir [1]/in.txt"]


def test_a_pattern_naming_no_file_still_expands(fs: Any, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    fs.put(str(src / "*.txt"), "g/")
    assert sorted(fs.ls("g", detail=False)) == ["g/[x] *.txt", "g/a?.txt", "g/ab.txt", "g/x .txt"]


def test_lists_of_sources_and_targets_are_taken_pair_by_pair(fs: Any, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    fs.put([str(src / "[x] *.txt"), str(src / "dir [1]" / "in.txt")], ["p/one [1].txt", "p/two.txt"])
    assert fs.cat("p/one [1].txt") == b"[x] *.txt" and fs.cat("p/two.txt") == b"in"


def test_a_folder_of_folders_named_like_a_pattern_lands_where_its_plain_twin_does(fs: Any, tmp_path: Path) -> None:
    """No file in it (only folders, or nothing): fsspec placed `e [1]` one level deep, as a pattern's
    match (`new/e [1]` where `plain` became `new`); it lands where a plain name lands."""
    for name in ("e [1]", "plain"):
        (tmp_path / name / "sub [2]" / "deeper").mkdir(parents=True)
        (tmp_path / f"{name} empty").mkdir()
    fs.mkdir("in")

    def placed(name: str) -> list[str]:
        fs.put(str(tmp_path / name), f"new-{name[0]}", recursive=True)  # a new target: the folder becomes it
        fs.put(str(tmp_path / name), "in/", recursive=True)  # an existing folder: inside, under its own name
        fs.put(str(tmp_path / f"{name} empty"), f"bare-{name[0]}", recursive=True)
        fs.invalidate_cache()
        return sorted(p.replace(name, "NAME").replace(f"-{name[0]}", "-X") for p in fs.find("", withdirs=True)
                      if p.startswith((f"new-{name[0]}", f"in/{name}", f"bare-{name[0]}")))

    assert placed("e [1]") == placed("plain") == [
        "bare-X", "in/NAME", "in/NAME/sub [2]", "in/NAME/sub [2]/deeper", "new-X", "new-X/sub [2]",
        "new-X/sub [2]/deeper"]
