"""Box names are Unicode; every one must upload, list and download (headers included)."""

from __future__ import annotations

import io

import pytest
from box_sdk_gen import BoxClient, FolderFull, UploadFileAttributes, UploadFileAttributesParentField


@pytest.mark.parametrize("name", ["euro€.txt", "日本語のファイル.csv", "emoji 🎉.bin", 'quote"back\u00e9.txt'])
def test_unicode_names_round_trip(alice: BoxClient, workdir: FolderFull, name: str) -> None:
    data = name.encode() * 3
    file = alice.uploads.upload_file(
        UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=workdir.id)), io.BytesIO(data)
    ).entries[0]
    assert file.name == name
    assert [e.name for e in alice.folders.get_folder_items(workdir.id).entries] == [name]
    assert alice.downloads.download_file(file.id).read() == data
