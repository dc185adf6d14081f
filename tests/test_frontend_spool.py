"""Write-handle spool files live in the acting user's private spool folder (boxfs.upload.spoolfolder).

Every frontend (mount, FTP, SFTP) stages a file being written in a spool file. On a BoxFileSystem that
file is created 0600 in ``<spool root>/<Box user id>/`` (0700, checked) and locked while open, so a
process killed mid-write leaves nothing another local account can read, and ``clean_spool`` (run by
the mount's and the servers' periodic cleaners) removes what it left: nothing grows forever.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boxfs.emulator import BoxEmulator
from boxfs.frontend.handles import OpenFiles
from boxfs.upload.spoolfolder import user_spool_dir

WRITER = textwrap.dedent("""
    import json, sys, time
    from boxfs import BoxFileSystem
    from boxfs.frontend.handles import OpenFiles

    cfg = json.loads(sys.stdin.readline())
    fs = BoxFileSystem(jwt_config=cfg["jwt_config"], as_user=cfg["as_user"], base_urls=cfg["base_urls"],
                       spool_dir=cfg["spool_dir"], skip_instance_cache=True)
    handle = OpenFiles(fs).open("half-written.bin", truncate=True)
    handle.write(b"private data " * 1000)
    print(handle.spool.name, flush=True)
    time.sleep(600)  # killed here, mid-write
""")


def mode_of(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_spool_file_is_private_and_gone_when_the_handle_is(make_fs: Callable[..., Any], fs_user: tuple[str, str],
                                                             tmp_path: Path) -> None:
    fs = make_fs(as_user=fs_user[0], spool_dir=str(tmp_path / "spool"))
    files = OpenFiles(fs)
    handle = files.open("a.bin", truncate=True)
    handle.write(b"content")
    spool_file = Path(handle.spool.name)
    with user_spool_dir(fs) as folder:
        assert spool_file.parent == folder.path and folder.path.name == fs.user_id
    assert mode_of(spool_file) == 0o600 and mode_of(spool_file.parent) == 0o700
    assert mode_of(tmp_path / "spool") == 0o700
    fs.clean_spool(older_than=0)  # a cleaner never takes a file a live writer holds
    assert spool_file.exists()
    handle.close()
    assert not spool_file.exists() and fs.cat_file("a.bin") == b"content"
    discarded = files.open("b.bin", truncate=True)
    discarded.write(b"never uploaded")
    name = Path(discarded.spool.name)
    discarded.discard()
    assert not name.exists() and not fs.exists("b.bin")


def test_a_killed_writer_leaves_nothing_readable_by_others_and_the_cleaner_removes_it(
        emulator: BoxEmulator, jwt_config: str, make_fs: Callable[..., Any], fs_user: tuple[str, str],
        tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    cfg = {"jwt_config": jwt_config, "as_user": fs_user[0], "base_urls": emulator.base_urls,
           "spool_dir": str(spool_dir)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(cfg) + "\n")
        proc.stdin.flush()
        left = Path(proc.stdout.readline().strip())
        fs = make_fs(as_user=fs_user[0], spool_dir=str(spool_dir))
        assert left.is_file() and left.stat().st_size == 13000
        fs.clean_spool(older_than=0)
        assert left.exists(), "the cleaner took the spool of a live writer in another process"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    # what the killed process left: only this account can reach it
    assert mode_of(left) == 0o600 and mode_of(left.parent) == 0o700 and mode_of(spool_dir) == 0o700
    assert left.stat().st_uid == os.getuid()
    assert fs.clean_spool() == [] and left.exists()  # younger than the default age: kept for now
    old = time.time() - 2 * 24 * 3600
    os.utime(left, (old, old))
    assert fs.clean_spool() == [str(left)]  # the periodic cleaners' default age: removed
    assert not left.exists() and not fs.exists("half-written.bin")
