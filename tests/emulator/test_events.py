"""The event stream (``GET /events``, ``OPTIONS /events``, the long-poll server) through box_sdk_gen and raw HTTP.

Every JSON answer is checked against Box's OpenAPI description (see conftest). Changes are made by other
tokens and apps than the one reading the stream: the stream is the user's, not the token's.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from box_sdk_gen import (
    BoxClient,
    CopyFileParent,
    CreateFolderParent,
    GetEventsStreamType,
    UpdateFileByIdParent,
    UploadFileVersionAttributes,
)

from boxfs.emulator import BoxEmulator

from .helpers import TokenFactory, upload


@pytest.fixture
def short_hold(emulator: BoxEmulator) -> Iterator[float]:
    """Long polls answer ``reconnect`` after 0.5 s instead of Box's ten minutes (restored afterwards)."""
    emulator.set_longpoll_hold(0.5)
    try:
        yield 0.5
    finally:
        emulator.set_longpoll_hold(600)


def events_after(client: BoxClient, position: Any) -> tuple[list[Any], Any]:
    page = client.events.get_events(stream_position=str(position), limit=500)
    assert page.chunk_size == len(page.entries)
    return page.entries, page.next_stream_position


def test_now_then_every_change_in_order(alice_client: BoxClient, bob_client: BoxClient) -> None:
    start = alice_client.events.get_events(stream_position="now")
    assert start.entries == [] and start.chunk_size == 0
    bob_start = bob_client.events.get_events(stream_position="now").next_stream_position
    name = f"ev-{uuid.uuid4().hex[:8]}"
    folder = alice_client.folders.create_folder(name, CreateFolderParent(id="0"))
    sub = alice_client.folders.create_folder("sub", CreateFolderParent(id=folder.id))
    f = upload(alice_client, folder.id, "a [1].txt", b"one")
    alice_client.uploads.upload_file_version(f.id, UploadFileVersionAttributes(name="a [1].txt"),
                                      io.BytesIO(b"two"))
    alice_client.files.update_file_by_id(f.id, name="b.txt")
    alice_client.files.update_file_by_id(f.id, parent=UpdateFileByIdParent(id=sub.id))
    copy = alice_client.files.copy_file(f.id, CopyFileParent(id=folder.id), name="c.txt")
    alice_client.files.delete_file_by_id(copy.id)
    entries, nxt = events_after(alice_client, start.next_stream_position)
    assert [(e.event_type.value, e.source.id) for e in entries] == [
        ("ITEM_CREATE", folder.id), ("ITEM_CREATE", sub.id), ("ITEM_UPLOAD", f.id), ("ITEM_UPLOAD", f.id),
        ("ITEM_RENAME", f.id), ("ITEM_MOVE", f.id), ("ITEM_COPY", copy.id), ("ITEM_TRASH", copy.id),
    ]
    moved = entries[5].source
    assert [p.id for p in moved.path_collection.entries] == ["0", folder.id, sub.id] and moved.name == "b.txt"
    assert entries[0].created_by.id == alice_client.users.get_user_me().id
    assert len({e.event_id for e in entries}) == len(entries)
    # nothing more after the last position; another user's stream saw none of it
    assert events_after(alice_client, nxt)[0] == []
    assert events_after(bob_client, bob_start)[0] == []


def test_limit_pages_and_stream_types(alice_client: BoxClient) -> None:
    start = alice_client.events.get_events(stream_position="now").next_stream_position
    folder = alice_client.folders.create_folder(f"ev-{uuid.uuid4().hex[:8]}", CreateFolderParent(id="0"))
    for i in range(3):
        upload(alice_client, folder.id, f"f{i}", b"x")
    first = alice_client.events.get_events(stream_position=str(start), limit=2)
    assert first.chunk_size == 2
    rest = alice_client.events.get_events(stream_position=str(first.next_stream_position), limit=2)
    assert [e.event_type.value for e in first.entries + rest.entries] == ["ITEM_CREATE"] + ["ITEM_UPLOAD"] * 3
    for kind in (GetEventsStreamType.CHANGES, GetEventsStreamType.SYNC):
        same = alice_client.events.get_events(stream_type=kind, stream_position=str(start))
        assert same.chunk_size == 4
    # from 0: the whole history, capped at 500 a page
    assert alice_client.events.get_events(stream_position="0", limit=10_000).chunk_size <= 500


def test_changes_by_another_app_and_token_reach_the_users_stream(
    emulator: BoxEmulator, alice_client: BoxClient, alice_id: str, token_for: TokenFactory, http: requests.Session
) -> None:
    start = alice_client.events.get_events(stream_position="now").next_stream_position
    token = token_for(user_id=alice_id)  # another app, a token issued to alice herself
    r = http.post(emulator.url + "/2.0/folders", headers={"Authorization": f"Bearer {token}"},
                  json={"name": f"ev-{uuid.uuid4().hex[:8]}", "parent": {"id": "0"}})
    assert r.status_code == 201
    entries, _ = events_after(alice_client, start)
    assert [(e.event_type.value, e.source.id) for e in entries] == [("ITEM_CREATE", r.json()["id"])]


def test_bad_input_is_refused(emulator: BoxEmulator, token_for: TokenFactory, http: requests.Session) -> None:
    auth = {"Authorization": f"Bearer {token_for()}"}
    for params, needle in (({"stream_type": "everything"}, "stream_type"), ({"stream_position": "abc"}, "stream_position"),
                           ({"limit": "x"}, "limit"), ({"limit": "0"}, "limit")):
        r = http.get(emulator.url + "/2.0/events", params=params, headers=auth)
        assert r.status_code == 400 and needle in r.json()["message"], (params, r.text)
    assert http.get(emulator.url + "/2.0/events").status_code == 401


def test_long_poll(emulator: BoxEmulator, alice_client: BoxClient, short_hold: float) -> None:
    servers = alice_client.events.get_events_with_long_polling()
    assert servers.chunk_size == 1
    server = servers.entries[0]
    assert server.type == "realtime_server" and int(server.max_retries) >= 1 and int(server.ttl) >= 1
    assert server.retry_timeout > 60
    position = alice_client.events.get_events(stream_position="now").next_stream_position
    url = f"{server.url}&stream_position={position}"
    plain = requests.Session()
    # nothing new: held, then "reconnect"
    assert plain.get(url, timeout=30).json() == {"message": "reconnect"}
    # a change made while the poll is held answers it at once
    answers: list[Any] = []
    poll = threading.Thread(target=lambda: answers.append(plain.get(url, timeout=30).json()))
    emulator.set_longpoll_hold(30)
    poll.start()
    time.sleep(0.3)
    alice_client.folders.create_folder(f"ev-{uuid.uuid4().hex[:8]}", CreateFolderParent(id="0"))
    poll.join(10)
    assert answers == [{"message": "new_change"}]
    # a position already behind answers at once too
    assert plain.get(url, timeout=5).json() == {"message": "new_change"}
    # the channel serves max_retries polls, then the client must ask OPTIONS again
    emulator.set_longpoll_hold(short_hold)
    served = 3  # polls of this channel so far
    answers = [plain.get(url, timeout=30).json()["message"] for _ in range(int(server.max_retries) - served + 1)]
    assert answers[-1] == "max_retries" and "max_retries" not in answers[:-1]


def test_the_sdks_event_stream_works(alice_client: BoxClient, short_hold: float) -> None:
    """box_sdk_gen's own long-polling EventStream, as real applications use it, sees a change."""
    stream = alice_client.events.get_event_stream()
    seen: list[Any] = []

    def consume() -> None:
        for event in stream:
            seen.append(event)
            if event.event_type.value == "ITEM_CREATE" and event.source.name == name:
                stream.stop()
                return

    name = f"ev-{uuid.uuid4().hex[:8]}"
    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    time.sleep(1.0)
    alice_client.folders.create_folder(name, CreateFolderParent(id="0"))
    reader.join(20)
    stream.stop()
    assert any(e.source.name == name for e in seen)
