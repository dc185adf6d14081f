"""Shared links on files: set with ``PUT /files/{id}``, downloadable without credentials until ``unshared_at``."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from box_sdk_gen import BoxClient, FolderFull, UploadFileAttributes, UploadFileAttributesParentField


def test_shared_link_download_and_expiry(alice_client: BoxClient, alice_id: str, workdir: FolderFull, http: Any,
                                         token_for: Any, emulator: Any) -> None:
    data = b"shared with the world"
    file = alice_client.uploads.upload_file(
        UploadFileAttributes(name="public.txt", parent=UploadFileAttributesParentField(id=workdir.id)), io.BytesIO(data)
    ).entries[0]
    headers = {"Authorization": f"Bearer {token_for(alice_id)}"}
    url = f"{emulator.url}/2.0/files/{file.id}"
    assert http.get(url, params={"fields": "shared_link"}, headers=headers).json()["shared_link"] is None

    until = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(microsecond=0)
    body = {"shared_link": {"access": "open", "unshared_at": until.isoformat(), "permissions": {"can_download": True}}}
    link = http.put(url, params={"fields": "shared_link"}, json=body, headers=headers).json()["shared_link"]
    assert link["access"] == "open" and link["permissions"]["can_download"] is True
    assert datetime.fromisoformat(link["unshared_at"]) == until
    with requests.Session() as anonymous:  # no credentials at all
        assert anonymous.get(link["download_url"], timeout=10).content == data

    past = (datetime.now(timezone.utc) - timedelta(seconds=1)).replace(microsecond=0)
    body["shared_link"]["unshared_at"] = past.isoformat()
    assert http.put(url, params={"fields": "shared_link"}, json=body, headers=headers).json()["shared_link"] is None
    assert requests.get(link["download_url"], timeout=10).status_code == 404

    http.put(url, json={"shared_link": {"access": "open", "permissions": {"can_download": False}}}, headers=headers)
    no_download = http.get(url, params={"fields": "shared_link"}, headers=headers).json()["shared_link"]
    assert requests.get(no_download["download_url"], timeout=10).status_code == 403
    http.put(url, json={"shared_link": None}, headers=headers)
    assert http.get(url, params={"fields": "shared_link"}, headers=headers).json()["shared_link"] is None
