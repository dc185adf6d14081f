"""Reads are pinned to one version: a file replaced while it is read gives the old bytes whole, or a clear error.

The replacement is made by another client (another app's token for the same user) in the middle of the
read, at the moment the read is known to be half done; every byte is checked by SHA-1.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from typing import Any

import pytest
from support import injected_faults

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator

MiB = 1024 * 1024


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture
def other(emulator: BoxEmulator, fs_user: tuple[str, str]) -> BoxFileSystem:
    """Another client of the same user: another app, its own token, no shared cache."""
    client_id, secret = emulator.create_ccg_app(scopes=("root_readwrite",))
    return BoxFileSystem(client_id=client_id, client_secret=secret, user_id=fs_user[0],
                         base_urls=emulator.base_urls, skip_instance_cache=True)


def test_open_handle_reads_the_version_it_opened(fs: BoxFileSystem, other: BoxFileSystem) -> None:
    old, new = os.urandom(6 * MiB), os.urandom(7 * MiB)
    fs.pipe_file("doc.bin", old)
    with fs.open("doc.bin", "rb", block_size=MiB) as f:
        head = f.read(4 * MiB)
        other.pipe_file("doc.bin", new)  # a new version lands while the handle is half read
        rest = f.read()
    assert sha1(head + rest) == sha1(old)
    with other.open("doc.bin", "rb", block_size=MiB) as f:  # a handle opened now reads the new one
        assert sha1(f.read()) == sha1(new)


def test_cat_file_reads_the_version_its_details_name(make_fs: Callable[..., BoxFileSystem],
                                                     fs_user: tuple[str, str], other: BoxFileSystem) -> None:
    """Without the watcher the cache may hold the old version's details (size included) for a few seconds:
    what cat_file returns then is that version's bytes, never the new version cut to the old size."""
    fs = make_fs(as_user=fs_user[0], watch_events=False)
    old = os.urandom(3 * MiB)
    fs.pipe_file("r.bin", old)
    assert fs.info("r.bin")["size"] == len(old)
    other.pipe_file("r.bin", os.urandom(4 * MiB))
    assert fs.cat_file("r.bin", start=MiB, end=2 * MiB) == old[MiB:2 * MiB]
    assert fs.cat_file("r.bin") == old


def test_get_file_resumed_after_a_drop_stays_on_its_version(fs: BoxFileSystem, other: BoxFileSystem,
                                                            emulator: BoxEmulator, monkeypatch: Any) -> None:
    # small reads, so that bytes reach the sink before the cut (the emulator cuts inside its first chunk)
    monkeypatch.setattr("boxfs.api.transport.DOWNLOAD_CHUNK", 64 * 1024)
    old, new = os.urandom(8 * MiB), os.urandom(8 * MiB)
    fs.pipe_file("g.bin", old)
    fs.info("g.bin")

    class Sink(io.BytesIO):
        replaced = False

        def write(self, chunk: Any) -> int:
            if not self.replaced:  # the first bytes arrived: now another client replaces the file
                self.replaced = True
                other.pipe_file("g.bin", new)
            return super().write(chunk)

    sink = Sink()
    before = emulator.request_log.count(route="/files/{file_id}/content", method="GET")
    # the first download answer is cut half way; the transport resumes with a Range request
    with injected_faults(emulator, kinds=("drop_after",), route=r"^/download/", method="GET", count=1):
        fs.get_file("g.bin", None, outfile=sink)
    assert sink.replaced
    after = emulator.request_log.count(route="/files/{file_id}/content", method="GET")
    assert after - before >= 2  # it did resume after the cut
    assert sha1(sink.getvalue()) == sha1(old)


def test_a_file_deleted_while_read_is_a_clear_error(fs: BoxFileSystem, other: BoxFileSystem) -> None:
    """An open handle reads the version it opened through that version's download URL, reused for up to
    10 minutes (issue 20): like an unlinked file on POSIX, it can be read to the end meanwhile. Once a
    new URL is needed, the deletion is a clear error."""
    data = os.urandom(3 * MiB)
    fs.pipe_file("gone.bin", data)
    with fs.open("gone.bin", "rb", block_size=MiB) as f:
        f.read(MiB)
        other.rm("gone.bin")
        assert f.read(MiB) == data[MiB:2 * MiB]  # the URL in hand still serves the version opened
        fs.transport.download_urls.clear()  # as when the reuse window has passed
        with pytest.raises(FileNotFoundError):
            f.read()


def test_every_read_path_pins(fs: BoxFileSystem, emulator: BoxEmulator, monkeypatch: Any) -> None:
    """open, cat_file (whole and ranged) and get_file all ask Box for the version they started on."""
    fs.pipe_file("p.bin", b"0123456789" * 1000)
    version = fs.info("p.bin")["version"]
    assert version
    sent: list[str] = []
    real = fs.transport.session.request

    def spy(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(url)
        return real(method, url, *args, **kwargs)

    monkeypatch.setattr(fs.transport.session, "request", spy)
    fs.cat_file("p.bin")
    fs.cat_file("p.bin", start=10, end=20)
    with fs.open("p.bin", "rb") as f:
        f.read()
    fs.get_file("p.bin", None, outfile=io.BytesIO())
    downloads = [u for u in sent if "/content" in u]
    # cat_file (whole, ranged) and open share the version's one reused download URL (issue 20): one
    # API request for the three, one for get_file; every one pinned
    assert len(downloads) == 2 and all(u.endswith(f"?version={version}") for u in downloads), downloads

