"""Chunked upload sessions through box_sdk_gen: the SDK's own big-file helper and every step by hand."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from box_sdk_gen import BoxAPIError, BoxClient, FolderFull, UploadPart

from boxfs.emulator import BoxEmulator

from .helpers import TokenFactory, api_error, upload

MIN_CHUNKED = 20_000_000  # Box: chunked upload sessions are for files of at least 20 MB


def payload(size: int, seed: int) -> bytes:
    """Deterministic, incompressible test data."""
    return random.Random(seed).randbytes(size)


def sha_digest(data: bytes) -> str:
    """An RFC 3230 ``Digest`` header value, as Box wants it: ``sha=<base64 SHA1>``."""
    return "sha=" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def download_sha1(client: BoxClient, file_id: str) -> tuple[str, int]:
    """SHA1 and length of a download, streamed."""
    digest, size = hashlib.sha1(), 0
    stream = client.downloads.download_file(file_id)
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def test_upload_big_file_30mb(alice_client: BoxClient, workdir: FolderFull) -> None:
    data = payload(30 * 1024 * 1024, seed=30)
    uploaded = alice_client.chunked_uploads.upload_big_file(io.BytesIO(data), "big.bin", len(data), workdir.id)
    assert uploaded.name == "big.bin" and uploaded.size == len(data)
    assert uploaded.sha_1 == hashlib.sha1(data).hexdigest()
    assert download_sha1(alice_client, uploaded.id) == (hashlib.sha1(data).hexdigest(), len(data))
    # a new version of the big file through a session for an existing file
    data2 = payload(MIN_CHUNKED + 12345, seed=31)
    version = alice_client.chunked_uploads.upload_big_file_version(uploaded.id, io.BytesIO(data2), len(data2))
    assert (
        version is not None and version.id == uploaded.id and version.sha_1 == hashlib.sha1(data2).hexdigest()
    )
    assert download_sha1(alice_client, uploaded.id) == (hashlib.sha1(data2).hexdigest(), len(data2))


def test_manual_session(alice_client: BoxClient, workdir: FolderFull) -> None:
    data = payload(MIN_CHUNKED + 1000, seed=1)
    session = alice_client.chunked_uploads.create_file_upload_session(workdir.id, len(data), "manual.bin")
    assert session.type.value == "upload_session"
    assert session.num_parts_processed == 0
    part_size, total = session.part_size, session.total_parts
    assert part_size > 0 and total == -(-len(data) // part_size)
    # Box: an upload session lives for 7 days
    lifetime = session.session_expires_at.timestamp() - time.time()
    assert 6.9 * 86400 < lifetime <= 7 * 86400
    endpoints = session.session_endpoints
    assert endpoints.upload_part and endpoints.commit and endpoints.list_parts and endpoints.abort
    assert endpoints.upload_part.startswith(alice_client.network_session.base_urls.upload_url)

    parts: list[UploadPart] = []
    for offset in range(0, len(data), part_size):
        chunk = data[offset : offset + part_size]
        content_range = f"bytes {offset}-{offset + len(chunk) - 1}/{len(data)}"
        if offset == part_size:  # a wrong digest is refused and leaves no part behind
            with pytest.raises(BoxAPIError) as info:
                alice_client.chunked_uploads.upload_file_part(
                    session.id, io.BytesIO(chunk), sha_digest(b"not this chunk"), content_range
                )
            assert info.value.response_info.status_code == 412  # Box: the part's precondition (digest) failed
        uploaded = alice_client.chunked_uploads.upload_file_part(
            session.id, io.BytesIO(chunk), sha_digest(chunk), content_range
        ).part
        assert uploaded.offset == offset and uploaded.size == len(chunk)
        assert uploaded.sha_1 == hashlib.sha1(chunk).hexdigest()
        parts.append(uploaded)

    listed = alice_client.chunked_uploads.get_file_upload_session_parts(session.id)
    assert listed.total_count == total
    assert [(p.part_id, p.offset, p.size) for p in listed.entries] == [
        (p.part_id, p.offset, p.size) for p in parts
    ]
    status = alice_client.chunked_uploads.get_file_upload_session_by_id(session.id)
    assert status.num_parts_processed == total

    # a commit whose whole-file digest is wrong does not create the file
    with pytest.raises(BoxAPIError) as info:
        alice_client.chunked_uploads.create_file_upload_session_commit(session.id, parts, sha_digest(b"wrong"))
    assert 400 <= info.value.response_info.status_code < 500
    committed = alice_client.chunked_uploads.create_file_upload_session_commit(session.id, parts, sha_digest(data))
    file = committed.entries[0]
    assert (
        file.name == "manual.bin" and file.size == len(data) and file.sha_1 == hashlib.sha1(data).hexdigest()
    )
    assert download_sha1(alice_client, file.id) == (hashlib.sha1(data).hexdigest(), len(data))


def test_session_rules(alice_client: BoxClient, workdir: FolderFull) -> None:
    # too small for a chunked session
    api_error(
        lambda: alice_client.chunked_uploads.create_file_upload_session(workdir.id, MIN_CHUNKED - 1, "small.bin"),
        400,
        "file_size_too_small",
    )
    # name conflicts are found when the session is created
    taken = upload(alice_client, workdir.id, "taken.bin", b"t")
    error = api_error(
        lambda: alice_client.chunked_uploads.create_file_upload_session(workdir.id, MIN_CHUNKED, "TAKEN.bin"),
        409,
        "item_name_in_use",
    )
    assert error.response_info.context_info["conflicts"]
    assert taken.id in str(error.response_info.context_info["conflicts"])
    # unknown parent
    api_error(
        lambda: alice_client.chunked_uploads.create_file_upload_session("987654321", MIN_CHUNKED, "x.bin"), 404
    )

    session = alice_client.chunked_uploads.create_file_upload_session(workdir.id, MIN_CHUNKED, "rules.bin")
    part_size = session.part_size
    chunk = payload(part_size, seed=2)
    # a range that is not on a part boundary
    api_error(
        lambda: alice_client.chunked_uploads.upload_file_part(
            session.id, io.BytesIO(chunk), sha_digest(chunk), f"bytes 1-{part_size}/{MIN_CHUNKED}"
        ),
        416,
    )
    # a commit before all parts are there is not accepted
    with pytest.raises(BoxAPIError):
        alice_client.chunked_uploads.create_file_upload_session_commit(session.id, [], sha_digest(b""))
    # abort: the session is gone
    alice_client.chunked_uploads.delete_file_upload_session_by_id(session.id)
    api_error(lambda: alice_client.chunked_uploads.get_file_upload_session_by_id(session.id), 404)
    api_error(
        lambda: alice_client.chunked_uploads.upload_file_part(
            session.id, io.BytesIO(chunk), sha_digest(chunk), f"bytes 0-{part_size - 1}/{MIN_CHUNKED}"
        ),
        404,
    )


def test_sessions_are_per_user(alice_client: BoxClient, bob_client: BoxClient, workdir: FolderFull) -> None:
    session = alice_client.chunked_uploads.create_file_upload_session(workdir.id, MIN_CHUNKED, "mine.bin")
    api_error(lambda: bob_client.chunked_uploads.get_file_upload_session_by_id(session.id), 404)
    api_error(lambda: bob_client.chunked_uploads.create_file_upload_session(workdir.id, MIN_CHUNKED, "x.bin"), 404)
    alice_client.chunked_uploads.delete_file_upload_session_by_id(session.id)


def test_parts_are_immutable(alice_client: BoxClient, workdir: FolderFull) -> None:
    """Box: a part cannot be re-uploaded or overwritten; an overlapping range is a 409."""
    session = alice_client.chunked_uploads.create_file_upload_session(workdir.id, MIN_CHUNKED, "immutable.bin")
    size = session.part_size
    first, other = payload(size, seed=5), payload(size, seed=6)
    content_range = f"bytes 0-{size - 1}/{MIN_CHUNKED}"
    alice_client.chunked_uploads.upload_file_part(session.id, io.BytesIO(first), sha_digest(first), content_range)
    api_error(
        lambda: alice_client.chunked_uploads.upload_file_part(
            session.id, io.BytesIO(other), sha_digest(other), content_range
        ),
        409,
    )
    # a part whose range disagrees with the session's file size
    api_error(
        lambda: alice_client.chunked_uploads.upload_file_part(
            session.id, io.BytesIO(other), sha_digest(other), f"bytes {size}-{2 * size - 1}/{MIN_CHUNKED + 1}"
        ),
        416,
    )
    alice_client.chunked_uploads.delete_file_upload_session_by_id(session.id)


def test_commit_202_retry_after(
    emulator: BoxEmulator,
    alice_client: BoxClient,
    workdir: FolderFull,
    http: requests.Session,
    token_for: TokenFactory,
    alice_id: str,
) -> None:
    """When Box has not finished processing the parts, commit answers 202 with Retry-After; retrying works."""
    data = payload(MIN_CHUNKED, seed=7)
    session = alice_client.chunked_uploads.create_file_upload_session(workdir.id, len(data), "later.bin")
    parts = []
    for offset in range(0, len(data), session.part_size):
        chunk = data[offset : offset + session.part_size]
        content_range = f"bytes {offset}-{offset + len(chunk) - 1}/{len(data)}"
        parts.append(
            alice_client.chunked_uploads.upload_file_part(
                session.id, io.BytesIO(chunk), sha_digest(chunk), content_range
            ).part.to_dict()
        )
    headers = {"Authorization": f"Bearer {token_for(alice_id)}", "Digest": sha_digest(data)}
    commit_url = session.session_endpoints.commit
    emulator.set_commit_retry_after(1)
    try:
        pending = http.post(commit_url, headers=headers, json={"parts": parts})
    finally:
        emulator.set_commit_retry_after(None)
    assert pending.status_code == 202 and pending.headers["Retry-After"] == "1"
    done = http.post(commit_url, headers=headers, json={"parts": parts})
    assert done.status_code == 201
    assert done.json()["entries"][0]["sha1"] == hashlib.sha1(data).hexdigest()


def test_session_expiry(emulator: BoxEmulator, alice_client: BoxClient, workdir: FolderFull) -> None:
    emulator.set_session_ttl(0.3)
    try:
        session = alice_client.chunked_uploads.create_file_upload_session(workdir.id, MIN_CHUNKED, "expiring.bin")
    finally:
        emulator.set_session_ttl(7 * 24 * 3600)
    time.sleep(0.5)
    chunk = payload(session.part_size, seed=8)
    api_error(
        lambda: alice_client.chunked_uploads.upload_file_part(
            session.id, io.BytesIO(chunk), sha_digest(chunk), f"bytes 0-{session.part_size - 1}/{MIN_CHUNKED}"
        ),
        404,
    )
    api_error(lambda: alice_client.chunked_uploads.get_file_upload_session_by_id(session.id), 404)


def test_parts_uploaded_in_parallel(alice_client: BoxClient, workdir: FolderFull) -> None:
    """Box allows a session's parts to be uploaded in parallel and in any order."""
    data = payload(MIN_CHUNKED + 777, seed=9)
    session = alice_client.chunked_uploads.create_file_upload_session(workdir.id, len(data), "parallel.bin")
    offsets = list(range(0, len(data), session.part_size))

    def put(offset: int) -> UploadPart:
        chunk = data[offset : offset + session.part_size]
        content_range = f"bytes {offset}-{offset + len(chunk) - 1}/{len(data)}"
        return alice_client.chunked_uploads.upload_file_part(
            session.id, io.BytesIO(chunk), sha_digest(chunk), content_range
        ).part

    with ThreadPoolExecutor(max_workers=len(offsets)) as pool:
        parts = list(pool.map(put, reversed(offsets)))
    parts.sort(key=lambda p: p.offset)
    committed = alice_client.chunked_uploads.create_file_upload_session_commit(session.id, parts, sha_digest(data))
    assert committed.entries[0].sha_1 == hashlib.sha1(data).hexdigest()
    assert download_sha1(alice_client, committed.entries[0].id) == (hashlib.sha1(data).hexdigest(), len(data))
