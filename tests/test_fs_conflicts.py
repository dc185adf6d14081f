"""The client reads Box's 409 conflicts in both shapes: one object (preflight, uploads, folder copy) and a
list (folder creation), where a retried request whose first answer was lost finds its own work done.

Each case loses the answer of the request after it took effect (the emulator's ``drop_after``), so the
retry meets ``item_name_in_use`` and must recognise the conflicting item as its own: the operation then
succeeds once, with nothing done twice.
"""

from __future__ import annotations

from typing import Any

import pytest
from support import injected_faults

from boxfs.emulator import BoxEmulator

FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


@pytest.mark.parametrize("shape, route, method", [
    ("object", r"/folders/\d+/copy$", "POST"),
    ("list", r"/2\.0/folders$", "POST"),
])
def test_a_retry_recognises_its_own_conflict(shape: str, route: str, method: str, emulator: BoxEmulator,
                                             make_fs: Any, fs_user: Any) -> None:
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    fs.pipe_file("src/a.txt", b"a")
    with injected_faults(emulator, rate=1.0, kinds=("drop_after",), route=route, method=method, count=1):
        emulator.request_log.clear()
        if shape == "object":
            fs.copy("src", "dst", recursive=True)
        else:
            fs.mkdir("made")
    assert [r.fault for r in emulator.request_log.records if r.fault] == ["drop_after"]
    conflicts = [r for r in emulator.request_log.records if r.status == 409]
    assert len(conflicts) == 1  # the retry met the item its first attempt made, and took it as done
    fresh = make_fs(as_user=fs_user[0])
    if shape == "object":
        assert fresh.cat_file("dst/a.txt") == b"a"
        assert sorted(p.rsplit("/", 1)[-1] for p in fresh.ls("", detail=False)) == ["dst", "src"]
    else:
        assert fresh.isdir("made") and fresh.ls("made") == []
