"""File content: downloads (302 to a download host, ranges), preflight checks and multipart uploads.

Uploaded bytes go to a temp file while their SHA1 is computed, then into the blob store; a new
version is recorded only once the whole body arrived and checked out, so an interrupted or
rejected upload never changes the file's current version.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from boxfs.emulator.errors import ApiError, bad_request, not_found
from boxfs.emulator.httpserver import FileSlice, Request, Response, Router
from boxfs.emulator.items import check_if_match, conflict_error
from boxfs.emulator.multipart import MultipartError, MultipartReader, boundary_of
from boxfs.emulator.representations import Representer, parse_fields
from boxfs.emulator.state import MAX_UPLOAD_SIZE, BoxState, Principal, check_name, name_key, parse_time
from boxfs.emulator.store import now_iso

DOWNLOAD_TTL = 15 * 60
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback and the RFC 5987 UTF-8 form, so any Box name can travel
    in a header (HTTP header values are Latin-1)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class ContentRoutes:
    def __init__(self, state: BoxState, rep: Representer) -> None:
        self.state = state
        self.store = state.store
        self.rep = rep
        # download URL token -> (blob sha1, file name, expiry): what the 302 hands out, like dl.boxcloud.com
        self._download_tokens: dict[str, tuple[str, str, float]] = {}
        self._dl_lock = threading.Lock()

    # -- the one place a new file or version comes to exist ---------------------------------------
    def store_content(self, p: Principal, *, parent_id: str | None, name: str | None, file_id: str | None,
                      sha1: str, size: int, temp: Path, content_modified_at: str | None,
                      content_created_at: str | None = None, if_match: str | None = None) -> tuple[Any, dict[str, Any]]:
        """Record uploaded content as a new file (file_id None) or a new version; return the file row and
        its standard representation as the uploader sees it (what an upload answers without ``fields``)."""
        self.store.adopt_blob(temp, sha1)
        now = now_iso()
        with self.store.tx() as db:
            if file_id is None:
                assert parent_id is not None and name is not None
                parent = self.state.item(p, parent_id, "folder", "upload")
                conflict = self.state.conflict(p.user_id, parent_id, name)
                if conflict is not None:
                    raise conflict_error(self.rep, conflict, single=True)
                file_id = self.store.next_id("item", 100000001)
                db.execute(
                    "INSERT INTO items (id, type, owner_id, parent_id, name, name_key, created_at, modified_at, "
                    "content_created_at, content_modified_at, created_by, modified_by) VALUES (?, 'file', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (file_id, parent["owner_id"], parent_id, name, name_key(name), now, now,
                     content_created_at or content_modified_at or now, content_modified_at or now, p.user_id, p.user_id),
                )
                final_name = name
            else:
                row = self.state.item(p, file_id, "file", "edit")
                if if_match is not None and if_match.strip('"') != str(row["sequence_id"]):
                    raise ApiError(412, "precondition_failed", "The resource has been modified. Please retrieve the resource again and retry")
                final_name = name or row["name"]
                if name and name_key(name) != row["name_key"]:
                    conflict = self.state.conflict(p.user_id, row["parent_id"], name, exclude=file_id)
                    if conflict is not None:
                        raise conflict_error(self.rep, conflict, single=True)
                db.execute(
                    "UPDATE items SET name=?, name_key=?, modified_at=?, modified_by=?, content_modified_at=?, "
                    "sequence_id=sequence_id+1 WHERE id=?",
                    (final_name, name_key(final_name), now, p.user_id, content_modified_at or now, file_id),
                )
                parent_id = row["parent_id"]
            version_id = self.store.next_id("version", 500000001)
            db.execute(
                "INSERT INTO versions (id, file_id, sha1, size, name, created_at, modified_at, uploader_id, content_modified_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (version_id, file_id, sha1, size, final_name, now, now, p.user_id, content_modified_at or now),
            )
            db.execute("UPDATE items SET version_id=? WHERE id=?", (version_id, file_id))
            if parent_id and parent_id != "0":
                db.execute("UPDATE items SET modified_at=? WHERE id=?", (now, parent_id))
        # The row itself, not the uploader's view of it: an ``uploader`` may not see the file it just
        # dropped off (BoxState.item answers 404), yet Box answers the upload with the file.
        row = self.store.one("SELECT * FROM items WHERE id=?", file_id)
        entry = self.rep.item(row, None)
        # rendered once for the answer and the owner's event (the owner is always told, BoxState.audience;
        # another uploader only if they see the file, which the events decide)
        self.state.events.record(p, "ITEM_UPLOAD", row, sources={p.user_id: entry} if p.user_id == row["owner_id"] else None)
        return row, entry

    def check_quota(self, destination: Any, size: int) -> None:
        """Refuse content that would not fit: the space is the owner's of the destination (the folder a
        new file goes to, or the file a version is added to), whoever uploads it, as Box charges it."""
        if size > MAX_UPLOAD_SIZE:
            raise ApiError(403, "file_size_limit_exceeded", "File size exceeds the folder owner's file size limit")
        owner = destination["owner_id"]
        user = self.store.one("SELECT space_amount FROM users WHERE id=?", owner)
        if user is None or self.store.stored_bytes() + size <= user["space_amount"]:
            return  # fits whatever the owner uses (summing their files costs a pass over all of them)
        if self.state.space_used(owner) + size > user["space_amount"]:
            raise ApiError(403, "storage_limit_exceeded", "Account storage limit reached")

    # -- preflight ----------------------------------------------------------------------------------------
    def preflight(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_upload", "item_content_upload", write=True)
        body = req.json()
        file_id = req.params.get("file_id")
        size = body.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise bad_request("size must be a non-negative integer")
        if file_id is not None:
            row = self.state.item(p, file_id, "file", "edit")
            name = body.get("name")
            if name is not None:
                check_name(name, "file")
                conflict = self.state.conflict(p.user_id, row["parent_id"], name, exclude=file_id)
                if conflict is not None:
                    raise conflict_error(self.rep, conflict, single=True)
        else:
            name = check_name(body.get("name"), "file")
            parent = body.get("parent") or {}
            if not isinstance(parent, dict) or "id" not in parent:
                raise bad_request("parent.id is required")
            row = self.state.item(p, str(parent["id"]), "folder", "upload")
            conflict = self.state.conflict(p.user_id, str(parent["id"]), name)
            if conflict is not None:
                raise conflict_error(self.rep, conflict, single=True)
        if size is not None:
            self.check_quota(row, size)
        return Response.json({"upload_url": f"{req.base_url}/api/2.0/files/content", "upload_token": secrets.token_urlsafe(16)})

    # -- multipart uploads -------------------------------------------------------------------------------
    def upload(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_upload", "item_content_upload", write=True)
        file_id = req.params.get("file_id")
        destination: Any = None
        if file_id is not None:
            destination = self.state.item(p, file_id, "file", "edit")
            check_if_match(req, destination)
        try:
            reader = MultipartReader(req.body, boundary_of(req.header("Content-Type")))
            attributes: dict[str, Any] | None = None
            temp: Path | None = None
            sha1 = ""
            size = 0
            for headers, body in reader.parts():
                if headers.name == "attributes":
                    raw = b"".join(body())
                    try:
                        attributes = json.loads(raw or b"{}")
                    except ValueError:
                        raise bad_request("attributes is not valid JSON") from None
                    if not isinstance(attributes, dict):
                        raise bad_request("attributes must be a JSON object")
                    destination = self._check_attributes(p, attributes, file_id) or destination
                else:
                    # Box documents the content part as "file" but takes it under any name (rclone
                    # sends "contents"): whatever is not the attributes is the file.
                    if attributes is None:
                        raise bad_request("The attributes part must come before the file part", "metadata_after_file_contents")
                    if temp is not None:
                        raise bad_request("Only one file part is allowed")
                    sha1, size, temp = self._receive(body())
        except MultipartError as exc:
            raise bad_request(f"Malformed multipart body: {exc}") from None
        if attributes is None:
            raise bad_request("The attributes part is missing")
        if temp is None:
            raise bad_request("The file part is missing")
        try:
            expected = req.header("Content-MD5")
            if expected and expected.strip().lower() != sha1:
                raise ApiError(400, "sha1_mismatch", "The specified Content-MD5 did not match what we received")
            self.check_quota(destination, size)
            row, entry = self.store_content(
                p,
                parent_id=str((attributes.get("parent") or {}).get("id")) if file_id is None else None,
                name=attributes.get("name"),
                file_id=file_id,
                sha1=sha1,
                size=size,
                temp=temp,
                content_modified_at=parse_time(attributes.get("content_modified_at"), "content_modified_at"),
                content_created_at=parse_time(attributes.get("content_created_at"), "content_created_at"),
                if_match=req.header("If-Match"),
            )
        finally:
            if temp.exists():
                temp.unlink()
        fields = parse_fields(req.query.get("fields"))
        if fields:
            entry = self.rep.item(row, fields)
        return Response.json({"total_count": 1, "entries": [entry]}, 201 if file_id is None else 200)

    def _check_attributes(self, p: Principal, attributes: dict[str, Any], file_id: str | None) -> Any:
        """Refuse a doomed upload before its bytes are received; the folder a new file goes to."""
        parse_time(attributes.get("content_modified_at"), "content_modified_at")
        parse_time(attributes.get("content_created_at"), "content_created_at")
        if file_id is not None:
            if attributes.get("name") is not None:
                check_name(attributes["name"], "file")
            return None
        check_name(attributes.get("name"), "file")
        parent = attributes.get("parent")
        if not isinstance(parent, dict) or "id" not in parent:
            raise bad_request("attributes.parent.id is required")
        folder = self.state.item(p, str(parent["id"]), "folder", "upload")
        conflict = self.state.conflict(p.user_id, str(parent["id"]), attributes["name"])
        if conflict is not None:
            raise conflict_error(self.rep, conflict, single=True)
        return folder

    def _receive(self, chunks: Any) -> tuple[str, int, Path]:
        out, path = self.store.new_temp()
        h = hashlib.sha1()
        size = 0
        try:
            with out:
                for chunk in chunks:
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return h.hexdigest(), size, path

    # -- downloads -------------------------------------------------------------------------------------------
    def download_redirect(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_download")
        row = self.state.item(p, req.params["file_id"], "file", "download")
        version_id = req.query.get("version") or row["version_id"]
        v = self.store.one("SELECT * FROM versions WHERE id=? AND file_id=?", version_id, row["id"])
        if v is None:
            raise not_found("file version")
        return self._redirect_to_download(req, v)

    def _redirect_to_download(self, req: Request, version: Any) -> Response:
        """302 to a short-lived, credential-free download URL for one version (expired ones are dropped)."""
        token = secrets.token_urlsafe(24)
        with self._dl_lock:
            now = time.time()
            for k in [k for k, (_, _, exp) in self._download_tokens.items() if exp < now]:
                del self._download_tokens[k]
            self._download_tokens[token] = (version["sha1"], version["name"], now + DOWNLOAD_TTL)
        return Response(302, b"", {"Location": f"{req.base_url}/download/{token}"})

    def download(self, req: Request) -> Response:
        with self._dl_lock:
            entry = self._download_tokens.get(req.params["token"])
        if entry is None or entry[2] < time.time():
            raise ApiError(404, "not_found", "Not Found: the download URL is unknown or expired")
        sha1, name, _ = entry
        path = self.store.blob_path(sha1)
        total = path.stat().st_size
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   "Content-Disposition": content_disposition(name)}
        rng = req.header("Range")
        if rng:
            m = _RANGE.match(rng.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                raise ApiError(416, "requested_range_not_satisfiable", "The range is not valid",
                               headers={"Content-Range": f"bytes */{total}"})
            if m.group(1) == "":
                start, end = max(0, total - int(m.group(2))), total - 1
            else:
                start = int(m.group(1))
                end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
            if start >= total or end < start:
                raise ApiError(416, "requested_range_not_satisfiable", "The range is not satisfiable",
                               headers={"Content-Range": f"bytes */{total}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
            headers["Content-Length"] = str(end - start + 1)
            return Response(206, headers=headers, stream=FileSlice(path, start, end + 1))
        headers["Content-Length"] = str(total)
        return Response(200, headers=headers, stream=FileSlice(path, 0, total))

    def shared_download(self, req: Request) -> Response:
        """A shared link's direct download URL: no credentials, while the link lives and allows download."""
        link = self.store.one("SELECT * FROM shared_links WHERE token=?", req.params["token"])
        item = None
        if link is not None:
            item = self.store.one("SELECT * FROM items WHERE id=? AND trashed_at IS NULL AND type='file'", link["item_id"])
        if link is None or item is None or self.state.link_expired(link) or link["access"] != "open":
            raise ApiError(404, "not_found", "Not Found: the shared link is unknown, expired or not public")
        if not link["can_download"]:
            raise ApiError(403, "access_denied_insufficient_permissions", "The shared link does not allow download")
        v = self.store.one("SELECT * FROM versions WHERE id=?", item["version_id"])
        self.store.execute("UPDATE shared_links SET download_count=download_count+1 WHERE token=?", link["token"])
        return self._redirect_to_download(req, v)

    def register(self, router: Router) -> None:
        router.add("GET", "download", "/download/static/{token}", self.shared_download)
        router.add("OPTIONS", "api", "/files/content", self.preflight)
        router.add("OPTIONS", "api", "/files/{file_id}/content", self.preflight)
        router.add("POST", "upload", "/files/content", self.upload)
        router.add("POST", "upload", "/files/{file_id}/content", self.upload)
        router.add("GET", "api", "/files/{file_id}/content", self.download_redirect)
        router.add("GET", "download", "/download/{token}", self.download)
