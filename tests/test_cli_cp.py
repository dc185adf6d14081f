"""What ``boxfs cp`` stands on: ``BoxFileSystem.get``/``get_file`` replace a local file only with the
whole download, checked (``boxfs.localfile``), and the options the commands share are declared once.

The Box side is the session emulator over real HTTP; faults are the emulator's ``inject_faults``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import injected_faults

from boxfs.emulator import BoxEmulator
from boxfs.localfile import PARTIAL_PREFIX, replace_when_complete


def test_replace_when_complete_keeps_the_old_file_unless_whole_and_checked(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_bytes(b"old")
    with pytest.raises(OSError) as caught, replace_when_complete(str(target), hashlib.sha1(b"new").hexdigest(),
                                                                 shown="box://f.txt") as fh:
        fh.write(b"NEW")  # not what Box says the file holds
    assert caught.value.errno == errno.EIO and "box://f.txt" in str(caught.value)
    with pytest.raises(KeyboardInterrupt), replace_when_complete(str(target)) as fh:
        fh.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.txt"]
    umask = os.umask(0o022)
    try:
        with replace_when_complete(str(target), hashlib.sha1(b"new").hexdigest()) as fh:
            fh.write(b"new")
    finally:
        os.umask(umask)
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["f.txt"]
    assert target.stat().st_mode & 0o777 == 0o644  # as open(path, "wb") makes it, not a private temp file
    # ranges written at offsets (parallel downloads) are checked by reading the file back
    with pytest.raises(OSError), replace_when_complete(str(target), hashlib.sha1(b"ranged").hexdigest()) as fh:
        os.pwrite(fh.fileno(), b"RANGED", 0)
    assert target.read_bytes() == b"new"
    with replace_when_complete(str(target), hashlib.sha1(b"ranged").hexdigest()) as fh:
        os.pwrite(fh.fileno(), b"ged", 3)
        os.pwrite(fh.fileno(), b"ran", 0)
    assert target.read_bytes() == b"ranged" and os.listdir(tmp_path) == ["f.txt"]


def test_ranges_written_at_offsets_are_hashed_as_they_join_the_start(tmp_path: Path) -> None:
    """A parallel download reports each finished range; once the ranges reach back to the start they are
    hashed then (read back while other ranges still arrive), not all at the end."""
    data = os.urandom(5 << 20)
    target = tmp_path / "big.bin"
    cuts = [(n << 20, (n + 1) << 20) for n in range(5)]
    with replace_when_complete(str(target), hashlib.sha1(data).hexdigest()) as fh:
        fd = fh.fileno()
        for start, end in [cuts[2], cuts[1], cuts[4]]:  # out of order: nothing joins the start yet
            os.pwrite(fd, data[start:end], start)
            fh.written(start, end)
        assert fh._hashed == 0
        os.pwrite(fd, data[: 1 << 20], 0)
        fh.written(*cuts[0])
        assert fh._hashed == 3 << 20  # ranges 0, 1 and 2 folded; 4 waits for 3
        os.pwrite(fd, data[3 << 20: 4 << 20], 3 << 20)
        fh.written(*cuts[3])
        assert fh._hashed == 5 << 20
    assert target.read_bytes() == data


def test_a_download_over_a_file_keeps_what_open_wb_would_have_kept(emulator: BoxEmulator,
                                                                    make_fs: Callable[..., Any],
                                                                    new_user: Callable[..., tuple[str, str]],
                                                                    tmp_path: Path) -> None:
    """The new file takes the old one's mode (a 0600 file must not become world-readable), and a symbolic
    link at the target is followed: the file it names gets the content, the link stays a link."""
    uid, _login = new_user("keep")
    fs = make_fs(as_user=uid)
    fs.pipe("f.txt", b"from box")
    private = tmp_path / "private.txt"
    private.write_bytes(b"old")
    private.chmod(0o600)
    fs.get_file("f.txt", str(private))
    assert private.read_bytes() == b"from box" and private.stat().st_mode & 0o777 == 0o600
    script = tmp_path / "run.sh"
    script.write_bytes(b"old")
    script.chmod(0o750)
    fs.get("f.txt", str(script))
    assert script.stat().st_mode & 0o777 == 0o750
    real = tmp_path / "real.txt"
    real.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    fs.get_file("f.txt", str(link))
    assert link.is_symlink() and real.read_bytes() == b"from box"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(PARTIAL_PREFIX)]


def test_fs_get_never_leaves_a_truncated_or_partial_file(emulator: BoxEmulator, make_fs: Callable[..., Any],
                                                         new_user: Callable[..., tuple[str, str]],
                                                         tmp_path: Path) -> None:
    uid, _login = new_user("get")
    fs = make_fs(as_user=uid)
    payload = {f"src/{n}.bin": os.urandom(5000 + n) for n in range(6)}
    fs.pipe(payload)
    out = tmp_path / "out"
    out.mkdir()
    for name in payload:
        (out / os.path.basename(name)).write_bytes(b"the previous version")
    fs.ls("src")  # listed before the faults: only downloads fail
    with injected_faults(emulator, rate=1.0, kinds=("drop",), route="/download/"):
        with pytest.raises(Exception):  # noqa: B017 - whichever error the dropped connections give
            fs.get("src/", f"{out}/", recursive=True)
    assert sorted(os.listdir(out)) == sorted(os.path.basename(n) for n in payload)  # no partial file left
    assert all((out / os.path.basename(n)).read_bytes() == b"the previous version" for n in payload)
    fs.get("src/", f"{out}/", recursive=True)
    assert {f"src/{p.name}": p.read_bytes() for p in out.iterdir()} == payload
    assert not any(p.name.startswith(PARTIAL_PREFIX) for p in out.iterdir())


def _help(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "boxfs", *args, "--help"], capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")})
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


@pytest.mark.parametrize("command", [("mount",), ("serve", "ftp"), ("serve", "sftp"), ("serve", "webdav")])
def test_shared_options_read_the_same_everywhere(command: tuple[str, ...]) -> None:
    """--config (and --as-user, --spool-dir) are declared once: the same help and environment variable
    globally and after every command that takes them."""
    top = _help()
    here = _help(*command)
    for text in ("--config FILE JWT app config: the JSON file from the Box developer console (or its text). "
                 "[env var: BOXFS_JWT_CONFIG]",
                 "--spool-dir DIRECTORY Private folder where files being written are staged before upload"):
        assert text in here, (command, here)
    assert "--config FILE JWT app config" in top
    if command == ("mount",):
        assert "--as-user LOGIN Act as this enterprise user" in here
