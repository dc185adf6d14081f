"""Uploads as Box takes them: Unicode names (in headers too), and the content part under any name."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from box_sdk_gen import BoxClient, FolderFull, UploadFileAttributes, UploadFileAttributesParentField


@pytest.mark.parametrize("name", ["euro€.txt", "日本語のファイル.csv", "emoji 🎉.bin", 'quote"back\u00e9.txt'])
def test_unicode_names_round_trip(alice_client: BoxClient, workdir: FolderFull, name: str) -> None:
    data = name.encode() * 3
    file = alice_client.uploads.upload_file(
        UploadFileAttributes(name=name, parent=UploadFileAttributesParentField(id=workdir.id)), io.BytesIO(data)
    ).entries[0]
    assert file.name == name
    assert [e.name for e in alice_client.folders.get_folder_items(workdir.id).entries] == [name]
    assert alice_client.downloads.download_file(file.id).read() == data


def test_the_file_part_may_have_any_name(alice_id: str, workdir: FolderFull, http: Any, token_for: Any,
                                         emulator: Any) -> None:
    """Box takes the content part under another name than ``file`` (rclone sends ``contents``)."""
    headers = {"Authorization": f"Bearer {token_for(alice_id)}"}
    attributes = json.dumps({"name": "via-contents.txt", "parent": {"id": workdir.id}})
    files = [("attributes", (None, attributes)), ("contents", ("via-contents.txt", b"named contents"))]
    answer = http.post(emulator.url + "/api/2.0/files/content", files=files, headers=headers)
    assert answer.status_code == 201
    file_id = answer.json()["entries"][0]["id"]
    got = http.get(f"{emulator.url}/2.0/files/{file_id}/content", headers=headers)
    assert got.content == b"named contents"
    # the order still matters: content before attributes is refused as Box refuses it
    late = [("contents", ("late.txt", b"x")), ("attributes", (None, attributes))]
    refused = http.post(emulator.url + "/api/2.0/files/content", files=late, headers=headers)
    assert refused.status_code == 400 and refused.json()["code"] == "metadata_after_file_contents"


def test_a_trailing_slash_names_the_same_route(alice_id: str, http: Any, token_for: Any, emulator: Any) -> None:
    """rclone asks for ``OPTIONS /2.0/files/content/``; Box answers it as without the slash."""
    headers = {"Authorization": f"Bearer {token_for(alice_id)}"}
    answer = http.options(emulator.url + "/2.0/files/content/", json={"name": "slash.txt", "parent": {"id": "0"}},
                          headers=headers)
    assert answer.status_code == 200 and "upload_url" in answer.json()
    assert http.get(emulator.url + "/2.0/folders/0/", headers=headers).json()["id"] == "0"
