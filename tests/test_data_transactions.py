"""fsspec transactions on Box (issue 9): writes are deferred and committed together when the transaction
ends, or discarded (nothing reaches Box) when it ends by an exception."""

from __future__ import annotations

from typing import Any

import pytest


def upload_count(emulator: Any, uid: str) -> int:
    """Content uploads made acting as ``uid`` (new files and new versions)."""
    return sum(1 for r in emulator.request_log.records
               if r.as_user == uid and r.method == "POST" and r.route.startswith("/files/") and r.host == "upload")


def test_writes_commit_together(fs: Any, make_fs: Any, fs_user: tuple[str, str], emulator: Any) -> None:
    fs.pipe_file("t/old.txt", b"version 1")
    other = make_fs(as_user=fs_user[0])  # sees only what is on Box
    with fs.transaction:
        with fs.open("t/a.txt", "wb") as f:
            f.write(b"alpha")
        with fs.open("t/sub/b.txt", "wb") as f:
            f.write(b"beta")
        fs.pipe_file("t/old.txt", b"version 2")
        fs.pipe("t/c.txt", b"gamma")
        # closed files of an open transaction are not on Box yet
        assert other.ls("t", detail=False) == ["t/old.txt"]
        assert other.cat_file("t/old.txt") == b"version 1"
    other.invalidate_cache()
    assert other.cat(["t/a.txt", "t/sub/b.txt", "t/old.txt", "t/c.txt"]) == {
        "t/a.txt": b"alpha", "t/sub/b.txt": b"beta", "t/old.txt": b"version 2", "t/c.txt": b"gamma"}
    assert fs.cat_file("t/a.txt") == b"alpha"  # the committing filesystem's cache learned the uploads
    assert not fs._intrans


def test_error_discards_everything(fs: Any, make_fs: Any, fs_user: tuple[str, str], emulator: Any) -> None:
    fs.pipe_file("keep/current.txt", b"current")
    before = upload_count(emulator, fs_user[0])
    with pytest.raises(RuntimeError, match="boom"), fs.transaction:
        with fs.open("keep/new.txt", "wb") as f:
            f.write(b"never")
        fs.pipe_file("keep/current.txt", b"replaced?")
        raise RuntimeError("boom")
    assert upload_count(emulator, fs_user[0]) == before  # not one byte went to Box
    other = make_fs(as_user=fs_user[0])
    assert other.ls("keep", detail=False) == ["keep/current.txt"]
    assert other.cat_file("keep/current.txt") == b"current"
    assert not fs._intrans
    fs.pipe_file("keep/after.txt", b"x")  # writes after the transaction are immediate again
    assert make_fs(as_user=fs_user[0]).cat_file("keep/after.txt") == b"x"


def test_file_abandoned_by_its_own_error_is_not_committed(fs: Any, make_fs: Any, fs_user: tuple[str, str]) -> None:
    """A file left by an exception inside its ``with`` is discarded even when the transaction commits."""
    with fs.transaction:
        with pytest.raises(ValueError), fs.open("half/bad.txt", "wb") as f:
            f.write(b"half written")
            raise ValueError("stop")
        with fs.open("half/good.txt", "wb") as f:
            f.write(b"complete")
    other = make_fs(as_user=fs_user[0])
    assert other.ls("half", detail=False) == ["half/good.txt"]


def test_pandas_inside_a_transaction(fs: Any, make_fs: Any, fs_user: tuple[str, str], emulator: Any) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"x": [1, 2, 3]})
    with fs.transaction:
        with fs.open("frames/a.csv", "w") as f:
            df.to_csv(f, index=False)
        with fs.open("frames/b.csv", "w") as f:
            df.assign(x=df.x * 2).to_csv(f, index=False)
        assert make_fs(as_user=fs_user[0]).ls("", detail=False) == []
    other = make_fs(as_user=fs_user[0])
    with other.open("frames/b.csv") as f:
        assert pd.read_csv(f).x.tolist() == [2, 4, 6]
