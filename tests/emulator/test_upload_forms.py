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


@pytest.mark.parametrize(("content_type", "boundary"),
                         [('Multipart/Form-Data; charset=utf-8; BOUNDARY="b;x \\"q\\""', 'b;x "q"'),
                          ('multipart/form-data; name="; boundary=no"; boundary=plain ; x=y', "plain")])
def test_the_boundary_as_clients_write_it(alice_id: str, workdir: FolderFull, http: Any, token_for: Any,
                                          emulator: Any, content_type: str, boundary: str) -> None:
    """The boundary parameter in any case, quoted (with ``;`` and escapes inside) or not, after other parameters."""
    attributes = json.dumps({"name": f"boundary-{len(content_type)}.txt", "parent": {"id": workdir.id}})
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="attributes"\r\n\r\n{attributes}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\nthe bytes\r\n'
            f"--{boundary}--\r\n").encode()
    headers = {"Authorization": f"Bearer {token_for(alice_id)}"}
    answer = http.post(emulator.url + "/api/2.0/files/content", data=body,
                       headers=headers | {"Content-Type": content_type})
    assert answer.status_code == 201, answer.text
    got = http.get(f"{emulator.url}/2.0/files/{answer.json()['entries'][0]['id']}/content", headers=headers)
    assert got.content == b"the bytes"


@pytest.mark.parametrize(("content_type", "why"), [("text/plain; boundary=x", "must be multipart/form-data"),
                                                   ("multipart/form-data; boundary=", "boundary is missing"),
                                                   ('multipart/form-data; x="; boundary=y"', "boundary is missing")])
def test_a_content_type_without_a_boundary_is_refused(alice_id: str, workdir: FolderFull, http: Any, token_for: Any,
                                                      emulator: Any, content_type: str, why: str) -> None:
    headers = {"Authorization": f"Bearer {token_for(alice_id)}", "Content-Type": content_type}
    answer = http.post(emulator.url + "/api/2.0/files/content", data=b"--y\r\n", headers=headers)
    assert answer.status_code == 400 and why in answer.json()["message"]
