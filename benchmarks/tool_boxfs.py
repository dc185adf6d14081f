"""Adapter: this project's ``BoxFileSystem`` with default options, used through the fsspec API only.

Loaded by ``benchmarks/worker.py`` in the main virtualenv. Every operation is what an fsspec user
writes; nothing here reaches into boxfs internals, so the figures are what users get.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any


class Tool:
    """One filesystem instance per worker process, built before the clock starts."""

    def __init__(self, conn: dict[str, Any]) -> None:
        from boxfs import BoxFileSystem

        self.fs = BoxFileSystem(jwt_config=conn["config_path"], base_urls=conn["base_urls"],
                                skip_instance_cache=True)

    def upload(self, local_path: str, remote_path: str, parent_id: str, name: str) -> int:
        self.fs.put_file(local_path, remote_path)
        return os.path.getsize(local_path)

    def download(self, remote_path: str, file_id: str, local_path: str) -> int:
        self.fs.get_file(remote_path, local_path)
        return os.path.getsize(local_path)

    def put_many(self, local_dir: str, remote_path: str, parent_id: str, name: str) -> int:
        names = sorted(os.listdir(local_dir))
        self.fs.put([os.path.join(local_dir, n) for n in names], [f"{remote_path}/{n}" for n in names])
        return len(names)

    def get_many(self, remote_path: str, folder_id: str, local_dir: str) -> int:
        self.fs.get(remote_path, local_dir, recursive=True)
        return sum(len(files) for _, _, files in os.walk(local_dir))

    def find(self, remote_path: str, folder_id: str) -> int:
        return len(self.fs.find(remote_path))

    def ranged(self, remote_path: str, file_id: str, offsets: list[int], length: int) -> list[str]:
        # cat_file(path, start, end) is fsspec's ranged-read call.
        return [hashlib.sha1(self.fs.cat_file(remote_path, start=off, end=off + length)).hexdigest()
                for off in offsets]

    def ranges(self, remote_path: str, file_id: str, offsets: list[int], length: int) -> list[str]:
        # fsspec's call for many ranges at once (zarr, parquet readers)
        got = self.fs.cat_ranges([remote_path] * len(offsets), offsets, [off + length for off in offsets],
                                 on_error="raise")
        return [hashlib.sha1(data).hexdigest() for data in got]

    def ls(self, remote_path: str, folder_id: str) -> int:
        return len(self.fs.ls(remote_path, detail=True))
