"""``BoxFileSystem.sign``: a credential-free download URL for a file (a sharing operation)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from boxfs.api.errors import BoxAPIError, is_a_directory_error

#: How long Box keeps a download URL valid (its documentation says about 15 minutes).
DOWNLOAD_URL_LIFETIME = 15 * 60


def signed_url(fs: Any, path: str, expiration: int) -> str:
    """``BoxFileSystem.sign``: a credential-free download URL valid at least ``expiration`` seconds.

    Up to :data:`DOWNLOAD_URL_LIFETIME`: Box's download URL, the ``Location`` of the 302 that
    ``GET /files/{id}/content`` answers (no change to the file). Longer: an open shared link on the file
    with ``unshared_at`` = now + ``expiration`` (Box removes it then), and its ``download_url``; that
    changes the file's sharing, and needs a token allowed to share (``item_share``).
    """
    if expiration < 1:
        raise ValueError("expiration must be a positive number of seconds")
    info = fs.info(path)
    if info["type"] != "file":
        raise is_a_directory_error(path)
    if expiration <= DOWNLOAD_URL_LIFETIME:
        resp = fs.transport.request("GET", fs.transport.api(f"/files/{info['id']}/content"),
                                    allow_redirects=False, stream=True, path=path, action="sign")
        with resp:
            location = resp.headers.get("Location")
        if resp.status_code not in (301, 302, 303, 307) or not location:
            raise BoxAPIError(f"{path}: sign failed: Box answered HTTP {resp.status_code} without a download URL")
        return str(location)
    until = (datetime.now(timezone.utc) + timedelta(seconds=expiration)).replace(microsecond=0)
    entry = fs.transport.json(
        "PUT", fs.transport.api(f"/files/{info['id']}"), params={"fields": "shared_link"},
        json={"shared_link": {"access": "open", "unshared_at": until.isoformat(),
                              "permissions": {"can_download": True}}},
        path=path, action="share with an expiry",
    )
    link = entry.get("shared_link") or {}
    if not link.get("download_url"):
        raise BoxAPIError(f"{path}: sign failed: Box returned no shared link download URL")
    return str(link["download_url"])

