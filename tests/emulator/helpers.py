"""Small helpers shared by the SDK tests: uploads and asserting Box's JSON error shape."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from box_sdk_gen import (
    BoxAPIError,
    BoxClient,
    FileFull,
    UploadFileAttributes,
    UploadFileAttributesParentField,
)

#: The ``token_for`` fixture: ``token_for(user_id=None, scopes=...) -> access token``.
TokenFactory = Callable[..., str]


def upload(client: BoxClient, parent_id: str, name: str, data: bytes, **kwargs: Any) -> FileFull:
    """Small upload (multipart POST /files/content on the upload host)."""
    attributes = UploadFileAttributes(
        name=name, parent=UploadFileAttributesParentField(id=parent_id), **kwargs
    )
    files = client.uploads.upload_file(attributes, io.BytesIO(data))
    assert files.total_count == 1 and len(files.entries) == 1
    return files.entries[0]


def api_error(call: Callable[[], Any], status: int, code: str | None = None) -> BoxAPIError:
    """Run a call that must fail with a Box JSON error of this status (and code)."""
    with pytest.raises(BoxAPIError) as info:
        call()
    error = info.value
    assert error.response_info.status_code == status, error.response_info.body
    body = error.response_info.body
    assert body["type"] == "error" and body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["request_id"], str) and body["request_id"]
    if code is not None:
        assert error.response_info.code == code, body
    return error


def conflict_ids(error: BoxAPIError) -> set[str]:
    """IDs in ``context_info.conflicts``: Box documents it both as one object and as a list."""
    conflicts = error.response_info.context_info["conflicts"]
    return {c["id"] for c in (conflicts if isinstance(conflicts, list) else [conflicts])}


def client_credentials_token(emu: Any, http: requests.Session, client_id: str, client_secret: str,
                             user_id: str | None = None) -> str:
    """An access token for an app through the client-credentials grant over raw HTTP: for the enterprise
    (its service account) or, with ``user_id``, for that user."""
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
    if user_id is None:
        data |= {"box_subject_type": "enterprise", "box_subject_id": emu.enterprise_id}
    else:
        data |= {"box_subject_type": "user", "box_subject_id": user_id}
    response = http.post(emu.url + "/oauth2/token", data=data)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def ccg_token(
    emu: Any,
    http: requests.Session,
    user_id: str | None = None,
    scopes: tuple[str, ...] = ("root_readwrite", "manage_managed_users"),
) -> str:
    """A fresh app and an access token from it (client-credentials grant over raw HTTP)."""
    client_id, client_secret = emu.create_ccg_app(scopes=scopes, as_user_header=True, enterprise_access=True)
    return client_credentials_token(emu, http, client_id, client_secret, user_id)


def raw_upload(emu: Any, http: requests.Session, token: str, parent_id: str, name: str, data: bytes) -> dict:
    """Multipart upload of a small file over raw HTTP; returns the file object."""
    response = http.post(
        emu.url + "/api/2.0/files/content",
        headers={"Authorization": f"Bearer {token}"},
        files={
            "attributes": (None, json.dumps({"name": name, "parent": {"id": parent_id}})),
            "file": (name, data, "application/octet-stream"),
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["entries"][0]
