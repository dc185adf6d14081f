"""Adapter: IBM's ``boxfs==0.3.0`` (PyPI), the existing fsspec Box filesystem, in its own virtualenv.

Loaded by ``benchmarks/worker.py`` run with ``benchmarks/.venvs/ibm-boxfs/bin/python``, where
``import boxfs`` is IBM's package (it pins boxsdk 3.x). boxsdk 3.x reads its endpoints from
``boxsdk.config.API``, so pointing those class attributes at the emulator is all it takes; the
filesystem is then used through the same fsspec calls as this project's.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any


class Tool:
    def __init__(self, conn: dict[str, Any]) -> None:
        from boxsdk import Client, JWTAuth
        from boxsdk.config import API

        urls = conn["base_urls"]
        API.BASE_API_URL = urls["base_url"] + "/2.0"
        API.UPLOAD_URL = urls["upload_url"] + "/2.0"
        API.OAUTH2_API_URL = urls["oauth2_url"]
        API.OAUTH2_AUTHORIZE_URL = urls["oauth2_url"] + "/authorize"
        from boxfs import BoxFileSystem  # IBM's, from this interpreter's site-packages

        client = Client(JWTAuth.from_settings_file(conn["config_path"]))
        self.fs = BoxFileSystem(client=client)

    @staticmethod
    def _p(path: str) -> str:
        return "/" + path.strip("/")

    def upload(self, local_path: str, remote_path: str, parent_id: str, name: str) -> int:
        self.fs.put_file(local_path, self._p(remote_path))
        return os.path.getsize(local_path)

    def download(self, remote_path: str, file_id: str, local_path: str) -> int:
        self.fs.get_file(self._p(remote_path), local_path)
        return os.path.getsize(local_path)

    def put_many(self, local_dir: str, remote_path: str, parent_id: str, name: str) -> int:
        names = sorted(os.listdir(local_dir))
        self.fs.mkdir(self._p(remote_path))
        self.fs.put([os.path.join(local_dir, n) for n in names], [f"{self._p(remote_path)}/{n}" for n in names])
        return len(names)

    def get_many(self, remote_path: str, folder_id: str, local_dir: str) -> int:
        self.fs.get(self._p(remote_path), local_dir, recursive=True)
        return sum(len(files) for _, _, files in os.walk(local_dir))

    def find(self, remote_path: str, folder_id: str) -> int:
        return len(self.fs.find(self._p(remote_path)))

    def ranged(self, remote_path: str, file_id: str, offsets: list[int], length: int) -> list[str]:
        path = self._p(remote_path)
        return [hashlib.sha1(self.fs.cat_file(path, start=off, end=off + length)).hexdigest() for off in offsets]

    def ranges(self, remote_path: str, file_id: str, offsets: list[int], length: int) -> list[str]:
        path = self._p(remote_path)  # fsspec's generic cat_ranges (one range after another)
        got = self.fs.cat_ranges([path] * len(offsets), offsets, [off + length for off in offsets], on_error="raise")
        return [hashlib.sha1(data).hexdigest() for data in got]

    def ls(self, remote_path: str, folder_id: str) -> int:
        return len(self.fs.ls(self._p(remote_path), detail=True))
