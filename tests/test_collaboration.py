"""Two Box users touching one folder: alice shares a folder with bob (a collaboration), through boxfs.

Real parts only: the emulator over real HTTP, boxfs filesystems acting as each user through ``As-User``,
another process for "elsewhere", and the change watcher's long poll. The collaboration itself is made
as an application would make it, with ``POST /collaborations`` on alice's behalf.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import admin_app, box_api, eventually, share_folder

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator

#: a hostile folder name: pattern characters and brackets are literal names
TEAM = "team [1] *?"


@pytest.fixture(scope="module")
def emu() -> Iterator[BoxEmulator]:
    """This module's own emulator, so the request counts below belong to these tests alone."""
    with BoxEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def app(emu: BoxEmulator) -> str:
    return admin_app(emu)


@pytest.fixture
def users(emu: BoxEmulator) -> tuple[str, str]:
    """(alice, bob): two fresh users of the enterprise, for this test alone."""
    tag = uuid.uuid4().hex[:8]
    return emu.create_user(f"alice-{tag}@example.com", "Alice"), emu.create_user(f"bob-{tag}@example.com", "Bob")


@pytest.fixture
def make(emu: BoxEmulator, app: str) -> Callable[..., BoxFileSystem]:
    def build(user: str, **options: Any) -> BoxFileSystem:
        return BoxFileSystem(jwt_config=app, base_urls=emu.base_urls, skip_instance_cache=True, as_user=user,
                             **options)

    return build


@pytest.fixture
def shared(emu: BoxEmulator, app: str, make: Callable[..., BoxFileSystem],
           users: tuple[str, str]) -> Callable[[str], str]:
    """``shared(role)``: alice's folder TEAM (with ``a.txt``) shared with bob in that role; the
    collaboration's id."""

    def share(role: str) -> str:
        alice, bob = users
        owner = make(alice)
        owner.pipe_file(f"{TEAM}/a.txt", b"alice's first")
        return share_folder(emu, app, alice, owner.info(TEAM)["id"], bob, role)

    return share


@pytest.fixture
def elsewhere(emu: BoxEmulator, app: str, tmp_path: Path) -> Callable[[str, str], None]:
    """Run fs calls as a user in another process (watcher off: it only writes)."""

    def run(user: str, code: str) -> None:
        script = tmp_path / f"other-{uuid.uuid4().hex[:6]}.py"
        (tmp_path / "app.json").write_text(app)
        script.write_text("from boxfs import BoxFileSystem\n"
                          f"fs = BoxFileSystem(jwt_config=open({str(tmp_path / 'app.json')!r}).read(), as_user={user!r},"
                          f" base_urls={emu.base_urls!r}, watch_events=False, skip_instance_cache=True)\n"
                          + textwrap.dedent(code))
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        subprocess.run([sys.executable, str(script)], check=True, env=env, timeout=120)

    return run


def at_once(make: Callable[..., BoxFileSystem], users: tuple[str, ...],
            action: Callable[[BoxFileSystem, str], None]) -> None:
    """Run ``action(fs, user)`` for each user in a thread of its own, released together once every
    filesystem has listed TEAM (so both start from the same view)."""
    barrier = threading.Barrier(len(users))

    def run(user: str) -> None:
        fs = make(user)
        fs.ls(TEAM)
        barrier.wait()
        action(fs, user)

    threads = [threading.Thread(target=run, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def calls_of(emu: BoxEmulator, user: str, since: float, route: str) -> int:
    return sum(1 for r in emu.request_log.records
               if r.started >= since and r.route == route and user in (r.user_id, r.as_user))


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def test_the_collaborator_sees_reads_and_writes_the_shared_folder(
        make: Callable[..., BoxFileSystem], users: tuple[str, str], shared: Callable[[str], str]) -> None:
    alice, bob = users
    shared("editor")
    theirs = make(bob)
    assert theirs.ls("", detail=False) == [TEAM]
    assert theirs.info(TEAM)["type"] == "directory"
    assert theirs.cat_file(f"{TEAM}/a.txt") == b"alice's first"
    theirs.pipe_file(f"{TEAM}/b [2].txt", b"bob's")
    theirs.mkdir(f"{TEAM}/sub")
    theirs.pipe_file(f"{TEAM}/sub/c.txt", b"c")
    owner = make(alice)
    assert owner.find(TEAM) == [f"{TEAM}/a.txt", f"{TEAM}/b [2].txt", f"{TEAM}/sub/c.txt"]
    assert owner.cat_file(f"{TEAM}/b [2].txt") == b"bob's"
    theirs.pipe_file(f"{TEAM}/a.txt", b"bob's overwrite")  # a new version of alice's file
    assert make(alice).cat_file(f"{TEAM}/a.txt") == b"bob's overwrite"
    theirs.mv(f"{TEAM}/b [2].txt", f"{TEAM}/sub/b.txt")
    theirs.rm(f"{TEAM}/sub", recursive=True)
    assert make(alice).find(TEAM) == [f"{TEAM}/a.txt"]


def test_each_user_sees_the_others_writes_through_the_event_stream(
        emu: BoxEmulator, make: Callable[..., BoxFileSystem], users: tuple[str, str], shared: Callable[[str], str],
        elsewhere: Callable[[str, str], None]) -> None:
    alice, bob = users
    shared("editor")
    owner, theirs = make(alice, watch_events=True), make(bob, watch_events=True)
    assert owner.ls(TEAM, detail=False) == [f"{TEAM}/a.txt"]
    assert theirs.ls(TEAM, detail=False) == [f"{TEAM}/a.txt"]
    start = time.monotonic()
    elsewhere(bob, f'fs.pipe_file({TEAM + "/from bob.txt"!r}, b"bob in another process")\n')
    eventually(lambda: f"{TEAM}/from bob.txt" in owner.ls(TEAM, detail=False))
    assert owner.cat_file(f"{TEAM}/from bob.txt") == b"bob in another process"
    # the event told alice's cache what to forget: one listing after it, no polling of the folder
    assert calls_of(emu, alice, start, "/folders/{folder_id}/items") <= 1
    assert calls_of(emu, alice, start, "/events") >= 1

    start = time.monotonic()
    elsewhere(alice, f'fs.pipe_file({TEAM + "/from alice.txt"!r}, b"alice in another process")\n')
    eventually(lambda: f"{TEAM}/from alice.txt" in theirs.ls(TEAM, detail=False))
    assert calls_of(emu, bob, start, "/folders/{folder_id}/items") <= 1


def test_one_name_written_by_both_at_once_is_one_file(
        emu: BoxEmulator, make: Callable[..., BoxFileSystem], users: tuple[str, str],
        shared: Callable[[str], str]) -> None:
    alice, bob = users
    shared("editor")
    path = f"{TEAM}/both.txt"
    payloads = {alice: b"alice's version " * 100, bob: b"bob's version " * 100}
    errors: list[BaseException] = []

    def write(fs: BoxFileSystem, user: str) -> None:
        try:
            fs.pipe_file(path, payloads[user])
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    at_once(make, users, write)
    assert errors == []  # overwrite semantics: the later write is a new version, not an error
    view = make(alice)
    assert view.ls(TEAM, detail=False) == [f"{TEAM}/a.txt", path]
    assert sha1(view.cat_file(path)) in {sha1(p) for p in payloads.values()}

    # exclusive creation: one of the two wins, the other gets a clear FileExistsError
    exclusive = f"{TEAM}/exclusive.txt"
    outcomes: dict[str, str] = {}

    def create(fs: BoxFileSystem, user: str) -> None:
        try:
            with fs.open(exclusive, "xb") as f:
                f.write(payloads[user])
            outcomes[user] = "created"
        except FileExistsError as exc:
            outcomes[user] = f"exists: {exc}"

    at_once(make, users, create)
    assert sorted(v.split(":")[0] for v in outcomes.values()) == ["created", "exists"], outcomes
    winner = next(u for u, v in outcomes.items() if v == "created")
    assert make(bob).cat_file(exclusive) == payloads[winner]


def test_a_large_chunked_upload_by_the_collaborator_lands_whole(
        emu: BoxEmulator, make: Callable[..., BoxFileSystem], users: tuple[str, str],
        shared: Callable[[str], str]) -> None:
    alice, bob = users
    shared("editor")
    data = os.urandom(30 * 1024 * 1024)
    start = time.monotonic()
    make(bob).pipe_file(f"{TEAM}/big.bin", data)
    assert calls_of(emu, bob, start, "/files/upload_sessions/{upload_session_id}/commit") >= 1
    owner = make(alice)
    assert owner.info(f"{TEAM}/big.bin")["size"] == len(data)
    assert sha1(owner.cat_file(f"{TEAM}/big.bin")) == sha1(data)


@pytest.mark.parametrize("role", ["viewer", "previewer"])
def test_a_viewer_is_refused_every_write_and_nothing_changes(
        emu: BoxEmulator, make: Callable[..., BoxFileSystem], users: tuple[str, str], shared: Callable[[str], str],
        role: str) -> None:
    alice, bob = users
    shared(role)
    theirs = make(bob)
    before = make(alice).info(f"{TEAM}/a.txt")
    attempts: list[Callable[[], Any]] = [
        lambda: theirs.pipe_file(f"{TEAM}/new.txt", b"x"),
        lambda: theirs.pipe_file(f"{TEAM}/a.txt", b"overwritten"),
        lambda: theirs.mkdir(f"{TEAM}/sub"),
        lambda: theirs.mv(f"{TEAM}/a.txt", f"{TEAM}/b.txt"),
        lambda: theirs.rm(f"{TEAM}/a.txt"),
        lambda: theirs.rm(TEAM, recursive=True),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionError, match="access_denied_insufficient_permissions"):
            attempt()
    if role == "viewer":
        assert theirs.cat_file(f"{TEAM}/a.txt") == b"alice's first"
    else:
        with pytest.raises(PermissionError):
            theirs.cat_file(f"{TEAM}/a.txt")
    owner = make(alice)
    assert owner.find(TEAM) == [f"{TEAM}/a.txt"]
    after = owner.info(f"{TEAM}/a.txt")
    assert (after["sha1"], after["etag"]) == (before["sha1"], before["etag"])
    assert owner.cat_file(f"{TEAM}/a.txt") == b"alice's first"


def test_a_new_share_appears_in_the_collaborators_listing_through_the_event_stream(
        emu: BoxEmulator, make: Callable[..., BoxFileSystem], users: tuple[str, str],
        shared: Callable[[str], str]) -> None:
    alice, bob = users
    theirs = make(bob, watch_events=True)
    theirs.ls("")  # starts the watcher
    eventually(lambda: theirs._watcher is not None and theirs._watcher.trusted_since is not None)
    theirs.invalidate_cache()
    assert theirs.ls("", detail=False) == []  # learned while the stream vouches: kept until an event
    start = time.monotonic()
    shared("viewer")
    eventually(lambda: theirs.ls("", detail=False) == [TEAM])
    assert calls_of(emu, bob, start, "/folders/{folder_id}/items") <= 1
    assert theirs.cat_file(f"{TEAM}/a.txt") == b"alice's first"


def test_revoking_the_collaboration_ends_the_collaborators_access(
        emu: BoxEmulator, app: str, make: Callable[..., BoxFileSystem], users: tuple[str, str],
        shared: Callable[[str], str]) -> None:
    alice, bob = users
    collaboration = shared("editor")
    watching, plain = make(bob, watch_events=True), make(bob)
    for fs in (watching, plain):
        assert fs.ls("", detail=False) == [TEAM]
        assert fs.cat_file(f"{TEAM}/a.txt") == b"alice's first"
    assert box_api(emu, app, alice, "DELETE", f"/collaborations/{collaboration}").status_code == 204

    def gone(call: Callable[[], Any]) -> bool:
        try:
            call()
        except FileNotFoundError:
            return True
        return False

    eventually(lambda: gone(lambda: watching.ls(TEAM)))  # told by the event stream
    assert watching.ls("", detail=False) == []
    with pytest.raises(FileNotFoundError):
        watching.cat_file(f"{TEAM}/a.txt")
    # a filesystem without the watcher finds out once what it learned expires (seconds, not forever);
    # each item it learned expires on its own clock, the file's after the folder's listing
    eventually(lambda: gone(lambda: plain.ls(TEAM)))
    eventually(lambda: gone(lambda: plain.cat_file(f"{TEAM}/a.txt")))
    assert plain.ls("", detail=False) == []
    assert make(alice).cat_file(f"{TEAM}/a.txt") == b"alice's first"
