"""The workloads, their scales, the local test data and the seeded Box trees they read.

Seeding is done once per run, before any tool is measured, through Box's API with ``box_sdk_gen``
and the emulator's latency switched off: it is not part of any figure. Every tool reads the same seeded
trees and writes under its own folder ``bench-w/<tool>``, so no tool sees another's leftovers.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks")

KB = 1000
MB = 1000 * 1000
GB = 1000 * 1000 * 1000
SEED_THREADS = 8


def human_size(n: int) -> str:
    for unit, size in (("GB", GB), ("MB", MB), ("KB", KB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Scale:
    """How big each workload is. ``full`` is the matrix of issue 11; the others shrink it."""

    name: str
    file_sizes: tuple[int, ...]
    small_count: int
    small_size: int
    tree_folders: int
    tree_items: int
    ranged_count: int
    ranged_length: int
    wide_count: int
    timeout: float  # seconds one tool gets for one workload (keeps the full run near 20 minutes)

    @property
    def ranged_source(self) -> int:
        """The ranged reads go to the largest file."""
        return max(self.file_sizes)


SCALES = {
    "full": Scale("full", (10 * MB, 100 * MB, GB), 1000, 10 * KB, 200, 5000, 1000, 64 * 1024, 10000, 300.0),
    "quick": Scale("quick", (10 * MB, 100 * MB), 50, 10 * KB, 20, 500, 50, 64 * 1024, 1000, 300.0),
    "tiny": Scale("tiny", (1 * MB,), 10, 10 * KB, 4, 30, 10, 64 * 1024, 50, 60.0),
}


@dataclass(frozen=True)
class Workload:
    """One row group of the table: an operation on one tool-independent input."""

    key: str  # e.g. "upload-10MB"
    title: str  # e.g. "upload 1 file of 10 MB"
    op: str  # the Tool method name
    unit: str  # "bytes" or "items": what the throughput column counts
    amount: int  # bytes or items moved/listed
    size: int = 0  # file size for upload/download


def workloads(scale: Scale) -> list[Workload]:
    out: list[Workload] = []
    for size in scale.file_sizes:
        label = human_size(size)
        out.append(Workload(f"upload-{label.replace(' ', '')}", f"upload 1 file of {label}", "upload", "bytes", size, size))
    for size in scale.file_sizes:
        label = human_size(size)
        out.append(Workload(f"download-{label.replace(' ', '')}", f"download 1 file of {label}", "download", "bytes",
                            size, size))
    n, s = scale.small_count, human_size(scale.small_size)
    out.append(Workload("put-small", f"put {n:,} files of {s}", "put_many", "items", n))
    out.append(Workload("get-small", f"get {n:,} files of {s}", "get_many", "items", n))
    out.append(Workload("find-tree", f"find: {scale.tree_items:,} items in {scale.tree_folders} folders", "find",
                        "items", scale.tree_items))
    out.append(Workload("ranged-reads", f"{scale.ranged_count:,} random {human_size(scale.ranged_length).replace('65536 B', '64 KiB')}"
                        f" reads of {human_size(scale.ranged_source)}", "ranged", "items", scale.ranged_count))
    out.append(Workload("cat-ranges", f"{scale.ranged_count:,} random {human_size(scale.ranged_length).replace('65536 B', '64 KiB')}"
                        f" ranges of {human_size(scale.ranged_source)} in one call", "ranges", "items",
                        scale.ranged_count))
    out.append(Workload("ls-wide", f"ls of a folder of {scale.wide_count:,} items", "ls", "items", scale.wide_count))
    return out


# ---------------------------------------------------------------------------------------- local data
def _fill(path: Path, size: int, seed: int) -> None:
    """Write ``size`` pseudo-random (incompressible, reproducible) bytes."""
    rng = random.Random(seed)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        left = size
        while left:
            n = min(left, 1 << 20)
            fh.write(rng.randbytes(n))
            left -= n
    tmp.replace(path)


def sha1_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class LocalData:
    root: Path
    files: dict[int, Path] = field(default_factory=dict)  # size -> path
    sha1: dict[int, str] = field(default_factory=dict)
    small_dir: Path | None = None


def prepare_local(scale: Scale, root: Path) -> LocalData:
    """Source files for uploads and the reference for download/ranged checks (kept between runs)."""
    root.mkdir(parents=True, exist_ok=True)
    data = LocalData(root)
    for size in scale.file_sizes:
        path = root / f"file-{size}.bin"
        if not path.exists() or path.stat().st_size != size:
            log.info("writing %s of test data to %s", human_size(size), path)
            _fill(path, size, seed=size)
        data.files[size] = path
        sidecar = path.with_suffix(".sha1")
        if sidecar.exists() and sidecar.stat().st_mtime >= path.stat().st_mtime:
            data.sha1[size] = sidecar.read_text().strip()
        else:
            data.sha1[size] = sha1_file(path)
            sidecar.write_text(data.sha1[size])
    small = root / f"small-{scale.small_count}x{scale.small_size}"
    if not small.exists() or len(os.listdir(small)) != scale.small_count:
        small.mkdir(exist_ok=True)
        rng = random.Random(7)
        for i in range(scale.small_count):
            (small / f"s{i:05d}.dat").write_bytes(rng.randbytes(scale.small_size))
    data.small_dir = small
    return data


def ranged_offsets(scale: Scale) -> list[int]:
    rng = random.Random(64)
    return [rng.randrange(0, scale.ranged_source - scale.ranged_length) for _ in range(scale.ranged_count)]


def expected_digests(path: Path, offsets: list[int], length: int) -> list[str]:
    out = []
    with open(path, "rb") as fh:
        for off in offsets:
            fh.seek(off)
            out.append(hashlib.sha1(fh.read(length)).hexdigest())
    return out


# ------------------------------------------------------------------------------------------ seeding
class Seeder:
    """Builds the read-side trees through the API (box_sdk_gen) and checks what tools wrote."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def for_emulator(cls, config_path: str, base_urls: dict[str, str]) -> Seeder:
        from box_sdk_gen import BaseUrls, BoxClient, BoxJWTAuth, JWTConfig

        auth = BoxJWTAuth(config=JWTConfig.from_config_file(config_path))
        client = BoxClient(auth=auth).with_custom_base_urls(
            BaseUrls(base_url=base_urls["base_url"], upload_url=base_urls["upload_url"],
                     oauth_2_url=base_urls["oauth2_url"]))
        return cls(client)

    def folder(self, parent_id: str, name: str) -> str:
        from box_sdk_gen import CreateFolderParent

        return self.client.folders.create_folder(name, CreateFolderParent(id=parent_id)).id

    def upload_bytes(self, parent_id: str, name: str, data: bytes) -> str:
        from box_sdk_gen import UploadFileAttributes, UploadFileAttributesParentField

        files = self.client.uploads.upload_file(
            UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=parent_id)), io.BytesIO(data))
        return files.entries[0].id

    def upload_path(self, parent_id: str, name: str, path: Path) -> str:
        from box_sdk_gen import UploadFileAttributes, UploadFileAttributesParentField

        size = path.stat().st_size
        with open(path, "rb") as fh:
            if size < 50 * MB:
                files = self.client.uploads.upload_file(
                    UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=parent_id)), fh)
                return files.entries[0].id
            return self.client.chunked_uploads.upload_big_file(fh, name, size, parent_id).id

    def items(self, folder_id: str) -> list[Any]:
        entries: list[Any] = []
        marker = None
        while True:
            page = self.client.folders.get_folder_items(folder_id, fields=["type", "id", "name", "size", "sha1"],
                                                        usemarker=True, marker=marker, limit=1000)
            entries.extend(page.entries or [])
            marker = page.next_marker
            if not marker:
                return entries

    def delete_folder(self, folder_id: str) -> None:
        self.client.folders.delete_folder_by_id(folder_id, recursive=True)

    @staticmethod
    def _parallel(fn: Callable[..., Any], jobs: list[tuple[Any, ...]]) -> list[Any]:
        with ThreadPoolExecutor(SEED_THREADS) as pool:
            return list(pool.map(lambda args: fn(*args), jobs))

    def seed(self, scale: Scale, data: LocalData) -> dict[str, Any]:
        """Create every read-side tree; return the ids and paths the workloads are given."""
        ids: dict[str, Any] = {}
        seed_root = self.folder("0", "bench-seed")
        files = self.folder(seed_root, "files")
        ids["files"] = {}
        for size, path in data.files.items():
            name = f"file-{human_size(size).replace(' ', '')}.bin"
            ids["files"][str(size)] = {"id": self.upload_path(files, name, path), "path": f"bench-seed/files/{name}"}
        small = self.folder(seed_root, "small")
        assert data.small_dir is not None
        names = sorted(os.listdir(data.small_dir))
        self._parallel(self.upload_bytes, [(small, n, (data.small_dir / n).read_bytes()) for n in names])
        ids["small"] = {"id": small, "path": "bench-seed/small"}
        ids["tree"] = {"id": self._seed_tree(seed_root, scale), "path": "bench-seed/tree"}
        wide = self.folder(seed_root, "wide")
        self._parallel(self.upload_bytes, [(wide, f"w{i:06d}.txt", b"w%06d" % i) for i in range(scale.wide_count)])
        ids["wide"] = {"id": wide, "path": "bench-seed/wide"}
        return ids

    def write_folders(self, run_name: str, tools: list[str]) -> dict[str, Any]:
        """A fresh ``<run_name>/<tool>`` folder per tool for the write workloads of this run."""
        root = self.folder("0", run_name)
        return {"root": root, **{t: {"id": self.folder(root, t), "path": f"{run_name}/{t}"} for t in tools}}

    def _seed_tree(self, parent: str, scale: Scale) -> str:
        """``tree_folders`` folders two levels deep, ``tree_items`` items in all.

        The first top-level folder (with its subfolders and files) is uploaded; the others are
        server-side copies of it (``POST /folders/{id}/copy``), which seeds 5,000 items in a few
        hundred requests.
        """
        tree = self.folder(parent, "tree")
        tops = max(1, scale.tree_folders // 20)
        per_top = scale.tree_folders // tops  # folders per top-level subtree, itself included
        files_total = scale.tree_items - scale.tree_folders
        per_folder = files_total // scale.tree_folders
        first = self.folder(tree, "d000")
        subs = self._parallel(self.folder, [(first, f"s{i:03d}") for i in range(per_top - 1)])
        folders = [first, *subs]
        self._parallel(self.upload_bytes,
                       [(f, f"f{j:03d}.txt", b"f%03d" % j) for f in folders for j in range(per_folder)])
        from box_sdk_gen import CopyFolderParent

        for i in range(1, tops):
            self.client.folders.copy_folder(first, CopyFolderParent(id=tree), name=f"d{i:03d}")
        # Whatever does not divide evenly goes straight into the tree's top folder.
        self._parallel(self.folder, [(tree, f"x{i:03d}") for i in range(scale.tree_folders - tops * per_top)])
        missing = files_total - tops * per_top * per_folder
        self._parallel(self.upload_bytes, [(tree, f"e{i:05d}.txt", b"e%05d" % i) for i in range(missing)])
        return tree

    def count_files(self, folder_id: str) -> tuple[int, int]:
        """(files, total bytes) below a folder, recursively."""
        files = total = 0
        pending = [folder_id]
        while pending:
            for e in self.items(pending.pop()):
                if e.type == "folder":
                    pending.append(e.id)
                else:
                    files += 1
                    total += int(e.size or 0)
        return files, total
