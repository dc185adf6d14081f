"""Chunked upload sessions: create, upload parts, list parts, plan, status, abort, commit.

Parts are written straight into a per-session file at their offsets (so parallel parts never
meet in memory) and each is checked against its ``Digest``; the commit checks the parts list
and the whole file's SHA1 before the content becomes a file or version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import re
import secrets
import shutil
import time
from typing import Any

from boxfs.emulator.content import ContentRoutes
from boxfs.emulator.errors import ApiError, bad_request
from boxfs.emulator.httpserver import CHUNK, Request, Response, Router
from boxfs.emulator.items import check_if_match, conflict_error
from boxfs.emulator.representations import Representer
from boxfs.emulator.session_digest import SessionDigest, SessionDigests, hash_range
from boxfs.emulator.state import BoxState, Principal, check_name, parse_time
from boxfs.emulator.store import now_iso

MIN_FILE_SIZE = 20_000_000
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def part_size_for(file_size: int) -> int:
    """Box chooses the part size; 8 MiB for most files, larger for very large ones."""
    if file_size < 1 << 30:
        return 8 * 1024 * 1024
    if file_size < 8 << 30:
        return 16 * 1024 * 1024
    return 32 * 1024 * 1024


def parse_digest(header: str | None) -> str:
    """RFC 3230 ``Digest: sha=<base64 SHA1>`` → hex SHA1."""
    if not header:
        raise bad_request("The Digest header is required", "missing_digest")
    for item in header.split(","):
        algo, _, value = item.strip().partition("=")
        if algo.strip().lower() == "sha":
            try:
                raw = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise bad_request("The Digest header is not valid base64", "invalid_digest") from None
            if len(raw) != 20:
                raise bad_request("The Digest header must carry a SHA1 digest", "invalid_digest")
            return raw.hex()
    raise bad_request("The Digest header must use sha=", "invalid_digest")


class ChunkedRoutes:
    def __init__(self, state: BoxState, rep: Representer, content: ContentRoutes) -> None:
        self.state = state
        self.store = state.store
        self.rep = rep
        self.content = content
        self.digests = SessionDigests()

    def _digest(self, session_id: str) -> SessionDigest:
        """The session's running whole-file digest (rebuilt from its recorded parts after a restart)."""
        return self.digests.get(session_id, self._data_path(session_id), lambda: self._recorded(session_id))

    def _recorded(self, session_id: str) -> dict[int, int]:
        rows = self.store.all("SELECT offset, size FROM upload_parts WHERE session_id=?", session_id)
        return {r["offset"]: r["size"] for r in rows}

    def _data_path(self, session_id: str) -> str:
        return str(self.store.session_dir / f"{session_id}.data")

    def _session(self, req: Request, p: Principal) -> Any:
        row = self.store.one("SELECT * FROM upload_sessions WHERE id=? AND owner_id=?", req.params["upload_session_id"], p.user_id)
        if row is None or row["committed_file_id"]:
            raise ApiError(404, "not_found", "Not Found: the upload session could not be found")
        if row["expires_at"] < time.time():
            self._discard(row["id"])
            raise ApiError(404, "not_found", "Not Found: the upload session has expired")
        return row

    def _discard(self, session_id: str) -> None:
        self.digests.drop(session_id)
        with self.store.tx() as db:
            db.execute("DELETE FROM upload_parts WHERE session_id=?", (session_id,))
            db.execute("DELETE FROM upload_sessions WHERE id=?", (session_id,))
        try:
            os.unlink(self._data_path(session_id))
        except FileNotFoundError:
            pass

    def _render(self, req: Request, row: Any) -> dict[str, Any]:
        base = f"{req.base_url}/api/2.0/files/upload_sessions/{row['id']}"
        processed = self.store.one("SELECT COUNT(*) AS n FROM upload_parts WHERE session_id=?", row["id"])["n"]
        return {
            "id": row["id"], "type": "upload_session",
            "session_expires_at": now_iso(row["expires_at"]),
            "part_size": row["part_size"], "total_parts": row["total_parts"], "num_parts_processed": processed,
            "session_endpoints": {
                "upload_part": base, "commit": base + "/commit", "abort": base, "list_parts": base + "/parts",
                "status": base, "log_event": base + "/log", "plan": base + "/plan",
            },
        }

    # -- create ---------------------------------------------------------------------------------------------
    def _create(self, req: Request, p: Principal, folder_id: str | None, file_id: str | None, body: dict[str, Any]) -> Response:
        size = body.get("file_size")
        if size is None:
            raise bad_request("file_size is required", "missing_file_size")
        if not isinstance(size, int) or size < 0:
            raise bad_request("file_size must be a non-negative integer", "invalid_file_size")
        if size < MIN_FILE_SIZE:
            raise bad_request(f"file_size is below the minimum of {MIN_FILE_SIZE} bytes for chunked uploads", "file_size_too_small")
        destination = self.state.item(p, folder_id, "folder") if folder_id else self.state.item(p, str(file_id), "file")
        self.content.check_quota(destination, size)
        part_size = part_size_for(size)
        session_id = secrets.token_hex(16).upper()
        now = time.time()
        name = body.get("file_name")
        with self.store.tx() as db:
            db.execute(
                "INSERT INTO upload_sessions (id, owner_id, folder_id, file_id, file_name, file_size, part_size, total_parts, "
                "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, p.user_id, folder_id, file_id, name or "", size, part_size, math.ceil(size / part_size),
                 now, now + self.state.session_ttl),
            )
        with open(self._data_path(session_id), "wb") as f:
            f.truncate(size)  # sparse: no disk is used until parts arrive
        row = self.store.one("SELECT * FROM upload_sessions WHERE id=?", session_id)
        return Response.json(self._render(req, row), 201)

    def create(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_upload", "item_content_upload", write=True)
        body = req.json()
        folder_id = body.get("folder_id")
        if folder_id in (None, ""):
            raise bad_request("folder_id is required", "missing_destination")
        name = check_name(body.get("file_name"), "file")
        try:
            self.state.item(p, str(folder_id), "folder", "upload")
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(404, "invalid_parameter", "The folder_id does not name a folder you can access") from None
            raise
        conflict = self.state.conflict(p.user_id, str(folder_id), name)
        if conflict is not None:
            raise conflict_error(self.rep, conflict, single=True)
        return self._create(req, p, str(folder_id), None, body)

    def create_for_file(self, req: Request) -> Response:
        p = self.state.principal(req)
        p.require("item_upload", "item_content_upload", write=True)
        row = self.state.item(p, req.params["file_id"], "file", "edit")
        body = req.json()
        name = body.get("file_name")
        if name:
            check_name(name, "file")
            conflict = self.state.conflict(p.user_id, row["parent_id"], name, exclude=row["id"])
            if conflict is not None:
                raise conflict_error(self.rep, conflict, single=True)
        return self._create(req, p, None, row["id"], body)

    # -- parts ------------------------------------------------------------------------------------------------
    def upload_part(self, req: Request) -> Response:
        p = self.state.principal(req)
        session = self._session(req, p)
        expected_sha1 = parse_digest(req.header("Digest"))
        m = _CONTENT_RANGE.match((req.header("Content-Range") or "").strip())
        if not m:
            raise ApiError(416, "range_not_satisfiable", "Content-Range must be 'bytes <first>-<last>/<total>'")
        first, last, total = (int(g) for g in m.groups())
        size = session["file_size"]
        part_size = session["part_size"]
        if total != size or last < first or last >= size:
            raise ApiError(416, "range_not_satisfiable", "The Content-Range does not match the session's file size")
        length = last - first + 1
        is_last = last == size - 1
        if first % part_size != 0 or (length != part_size and not is_last) or (is_last and length > part_size):
            raise ApiError(416, "range_not_satisfiable",
                           f"Parts must start at a multiple of part_size ({part_size}) and be exactly part_size long, except the last")
        declared = req.header("Content-Length")
        if declared is not None and int(declared) != length:
            raise ApiError(416, "range_not_satisfiable", "Content-Length does not match the Content-Range")
        digest = self._digest(session["id"])
        with digest.writing(first):  # one writer per part; a recorded part's bytes never change
            if self.store.one("SELECT 1 FROM upload_parts WHERE session_id=? AND offset=?", session["id"], first):
                raise ApiError(409, "range_overlaps_existing_part", "Part overlaps with previously uploaded part")
            sha1 = self._receive_part(req, digest, first, length)
            if sha1 != expected_sha1:
                raise ApiError(412, "sha1_mismatch", "The SHA1 digest of the part does not match the Digest header")
            part_id = secrets.token_hex(4).upper()
            # the SHA-512 only the plan route asks for is computed there, from the data file
            self.store.execute(
                "INSERT INTO upload_parts (session_id, part_id, offset, size, sha1, sha512) VALUES (?, ?, ?, ?, ?, '')",
                session["id"], part_id, first, length, sha1,
            )
        digest.recorded(first, length)
        return Response.json({"part": {"part_id": part_id, "offset": first, "size": length, "sha1": sha1}})

    def _receive_part(self, req: Request, digest: SessionDigest, first: int, length: int) -> str:
        """Write the body into the session's data file at ``first`` through one reused buffer; its SHA-1."""
        sha1 = hashlib.sha1()
        buf = memoryview(bytearray(min(CHUNK, length)))
        received = 0
        fd = os.open(digest.path, os.O_WRONLY)
        try:
            while received < length:
                n = req.body.readinto(buf[: min(len(buf), length - received)])
                if not n:
                    break
                chunk = buf[:n]
                written = 0
                with digest.file_lock:
                    while written < n:
                        written += os.pwrite(fd, chunk[written:], first + received + written)
                sha1.update(chunk)
                received += n
        finally:
            os.close(fd)
        if received != length:
            raise bad_request("The body is shorter than the Content-Range", "bad_request")
        return sha1.hexdigest()

    def list_parts(self, req: Request) -> Response:
        p = self.state.principal(req)
        session = self._session(req, p)
        try:
            offset = int(req.query.get("offset", "0"))
            limit = min(int(req.query.get("limit", "1000")), 1000)
        except ValueError:
            raise bad_request("offset and limit must be integers") from None
        if offset > 10000:
            raise bad_request("offset must not exceed 10000")
        parts = self.store.all("SELECT * FROM upload_parts WHERE session_id=? ORDER BY offset", session["id"])
        return Response.json({
            "total_count": len(parts), "offset": offset, "limit": limit,
            "entries": [{"part_id": r["part_id"], "offset": r["offset"], "size": r["size"], "sha1": r["sha1"]}
                        for r in parts[offset:offset + limit]],
        })

    def plan(self, req: Request) -> Response:
        p = self.state.principal(req)
        session = self._session(req, p)
        body = req.json()
        wanted = body.get("parts")
        if not isinstance(wanted, list):
            raise bad_request("parts is required")
        have = {r["offset"]: r for r in self.store.all("SELECT * FROM upload_parts WHERE session_id=?", session["id"])}
        hits, misses = [], []
        for part in wanted:
            r = have.get(part.get("offset"))
            if r is not None and r["size"] == part.get("size") and self._sha512(r) == str(part.get("sha_512", "")).lower():
                hits.append({"part_id": r["part_id"], "offset": r["offset"], "size": r["size"]})
            else:
                misses.append(part)
        return Response.json({"upload_session_id": session["id"], "hits": hits, "misses": misses})

    def _sha512(self, part: Any) -> str:
        """A recorded part's SHA-512, hashed from the data file the first time a plan asks (a recorded
        part's bytes never change) and kept with the part."""
        if part["sha512"]:
            return str(part["sha512"])
        digest = hashlib.sha512()
        hash_range(self._data_path(part["session_id"]), part["offset"], part["size"], digest)
        self.store.execute("UPDATE upload_parts SET sha512=? WHERE session_id=? AND offset=?",
                           digest.hexdigest(), part["session_id"], part["offset"])
        return digest.hexdigest()

    def status(self, req: Request) -> Response:
        p = self.state.principal(req)
        return Response.json(self._render(req, self._session(req, p)))

    def abort(self, req: Request) -> Response:
        p = self.state.principal(req)
        session = self._session(req, p)
        self._discard(session["id"])
        return Response(204)

    # -- commit -------------------------------------------------------------------------------------------------
    def commit(self, req: Request) -> Response:
        p = self.state.principal(req)
        session = self._session(req, p)
        whole_sha1 = parse_digest(req.header("Digest"))
        body = req.json()
        listed = body.get("parts")
        if not isinstance(listed, list) or not listed:
            raise bad_request("parts is required")
        uploaded = self.store.all("SELECT * FROM upload_parts WHERE session_id=? ORDER BY offset", session["id"])
        if len(uploaded) != session["total_parts"]:
            raise bad_request(f"{len(uploaded)} of {session['total_parts']} parts have been uploaded", "missing_parts")
        by_id = {r["part_id"]: r for r in uploaded}
        listed_ids = []
        for part in listed:
            r = by_id.get(str(part.get("part_id")))
            if r is None or part.get("offset") != r["offset"] or part.get("size") != r["size"]:
                raise bad_request("The parts list does not match the uploaded parts", "invalid_parts")
            if part.get("sha1") and str(part["sha1"]).lower() != r["sha1"]:
                raise bad_request("The parts list does not match the uploaded parts", "invalid_parts")
            listed_ids.append(r["part_id"])
        if sorted(listed_ids) != sorted(by_id):
            raise bad_request("The parts list does not match the uploaded parts", "invalid_parts")
        if session["file_id"]:
            existing = self.state.item(p, session["file_id"], "file")
            check_if_match(req, existing)
        if self.state.commit_retry_after is not None and session["commit_polls"] == 0:
            self.store.execute("UPDATE upload_sessions SET commit_polls=commit_polls+1 WHERE id=?", session["id"])
            return Response(202, b"", {"Retry-After": str(self.state.commit_retry_after)})
        data = self.store.session_dir / f"{session['id']}.data"
        actual = self._digest(session["id"]).hexdigest(session["file_size"], {r["offset"]: r["size"] for r in uploaded})
        if actual != whole_sha1:
            raise bad_request("File digest was incorrect", "digest_mismatch")
        attributes = body.get("attributes") or {}
        temp = self.store.tmp_dir / f"{session['id']}.commit"
        os.replace(data, temp)
        try:
            row, entry = self.content.store_content(
                p,
                parent_id=session["folder_id"],
                name=session["file_name"] or None,
                file_id=session["file_id"],
                sha1=actual,
                size=session["file_size"],
                temp=temp,
                content_modified_at=parse_time(attributes.get("content_modified_at"), "content_modified_at"),
                content_created_at=parse_time(attributes.get("content_created_at"), "content_created_at"),
                if_match=req.header("If-Match"),
            )
        except BaseException:
            # the session stays usable after a refused commit: its data goes back where it was (a copy
            # when the refusal came after the content went to the blob store, where others may use it)
            if not temp.exists() and not data.exists():
                shutil.copyfile(self.store.blob_path(actual), temp)
            if temp.exists():
                os.replace(temp, data)
            raise
        self.digests.drop(session["id"])
        with self.store.tx() as db:
            db.execute("UPDATE upload_sessions SET committed_file_id=? WHERE id=?", (row["id"], session["id"]))
            db.execute("DELETE FROM upload_parts WHERE session_id=?", (session["id"],))
        return Response.json({"total_count": 1, "entries": [entry]}, 201)

    def register(self, router: Router) -> None:
        router.add("POST", "upload", "/files/upload_sessions", self.create)
        router.add("POST", "upload", "/files/{file_id}/upload_sessions", self.create_for_file)
        for host in ("upload", "api"):
            router.add("GET", host, "/files/upload_sessions/{upload_session_id}", self.status)
            router.add("PUT", host, "/files/upload_sessions/{upload_session_id}", self.upload_part)
            router.add("DELETE", host, "/files/upload_sessions/{upload_session_id}", self.abort)
            router.add("GET", host, "/files/upload_sessions/{upload_session_id}/parts", self.list_parts)
            router.add("POST", host, "/files/upload_sessions/{upload_session_id}/commit", self.commit)
            router.add("POST", host, "/files/upload_sessions/{upload_session_id}/plan", self.plan)
