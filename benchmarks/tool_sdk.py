"""Adapter: Box's own Python SDK (``box_sdk_gen``) used directly, the way its documentation shows.

Uploads use ``uploads.upload_file`` below 50 MB and ``chunked_uploads.upload_big_file`` from 50 MB on
(Box's guidance: chunked uploads for files over 50 MB), downloads ``downloads.download_file`` (a
stream copied to disk), listings ``folders.get_folder_items`` with marker paging. The SDK has no
paths: it is handed the ids a caller of it would already hold, which spares it the lookups a
path-based tool pays for — noted in docs/performance.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

SMALL_UPLOAD_LIMIT = 50 * 1024 * 1024
FIELDS = ["type", "id", "name", "size", "sha1", "modified_at"]


class Tool:
    def __init__(self, conn: dict[str, Any]) -> None:
        from box_sdk_gen import BaseUrls, BoxClient, BoxJWTAuth, JWTConfig

        auth = BoxJWTAuth(config=JWTConfig.from_config_file(conn["config_path"]))
        urls = conn["base_urls"]
        self.client = BoxClient(auth=auth).with_custom_base_urls(
            BaseUrls(base_url=urls["base_url"], upload_url=urls["upload_url"], oauth_2_url=urls["oauth2_url"])
        )

    def _upload(self, local_path: str, parent_id: str, name: str) -> None:
        from box_sdk_gen import UploadFileAttributes, UploadFileAttributesParentField

        size = os.path.getsize(local_path)
        with open(local_path, "rb") as fh:
            if size < SMALL_UPLOAD_LIMIT:
                self.client.uploads.upload_file(
                    UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=parent_id)), fh
                )
            else:
                self.client.chunked_uploads.upload_big_file(fh, name, size, parent_id)

    def _items(self, folder_id: str) -> list[Any]:
        entries: list[Any] = []
        marker = None
        while True:
            page = self.client.folders.get_folder_items(folder_id, fields=FIELDS, usemarker=True,
                                                        marker=marker, limit=1000)
            entries.extend(page.entries or [])
            marker = page.next_marker
            if not marker:
                return entries

    def upload(self, local_path: str, remote_path: str, parent_id: str, name: str) -> int:
        self._upload(local_path, parent_id, name)
        return os.path.getsize(local_path)

    def download(self, remote_path: str, file_id: str, local_path: str) -> int:
        stream = self.client.downloads.download_file(file_id)
        with open(local_path, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        return os.path.getsize(local_path)

    def put_many(self, local_dir: str, remote_path: str, parent_id: str, name: str) -> int:
        from box_sdk_gen import CreateFolderParent

        folder = self.client.folders.create_folder(name, CreateFolderParent(id=parent_id))
        names = sorted(os.listdir(local_dir))
        for n in names:
            self._upload(os.path.join(local_dir, n), folder.id, n)
        return len(names)

    def get_many(self, remote_path: str, folder_id: str, local_dir: str) -> int:
        os.makedirs(local_dir, exist_ok=True)
        count = 0
        for entry in self._items(folder_id):
            if entry.type == "file":
                self.download("", entry.id, os.path.join(local_dir, entry.name))
                count += 1
        return count

    def find(self, remote_path: str, folder_id: str) -> int:
        files = 0
        pending = [folder_id]
        while pending:
            for entry in self._items(pending.pop()):
                if entry.type == "folder":
                    pending.append(entry.id)
                else:
                    files += 1
        return files

    def ranged(self, remote_path: str, file_id: str, offsets: list[int], length: int) -> list[str]:
        digests = []
        for off in offsets:
            stream = self.client.downloads.download_file(file_id, range=f"bytes={off}-{off + length - 1}")
            digests.append(hashlib.sha1(stream.read()).hexdigest())
        return digests

    def ls(self, remote_path: str, folder_id: str) -> int:
        return len(self._items(folder_id))
