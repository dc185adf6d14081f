"""Helpers the tests share (a module, not a fixture file: import what you need from it).

- :func:`admin_app`: the JWT app most tests act through, able to impersonate any managed user;
- :func:`injected_faults`: faults injected into the emulator for the length of a ``with`` block, and
  cleared when it ends however it ends (a failed assertion must not leave faults for the next test);
  :func:`faults_cleared` the same for a block that injects several rules, or injects them as it goes;
- :func:`openapi_summary`: the closing line of a run that checked emulator responses against Box's spec;
- :func:`box_api` and :func:`share_folder`: Box's API as a user, for what boxfs has no call for, such as
  sharing a folder with another user (a collaboration: see docs/emulator.md);
- :func:`eventually`: wait for a change made elsewhere to be seen, failing after a generous deadline
  (tests assert what is seen, never how fast).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from boxfs.emulator import BoxEmulator

#: what the admin app may do: read and write every folder it acts in, and manage the enterprise's users
ADMIN_APP_SCOPES = ("root_readwrite", "manage_managed_users")


def admin_app(emu: BoxEmulator) -> str:
    """A new JWT app with enterprise access and the As-User feature; its developer-console JSON."""
    return emu.create_jwt_app(scopes=ADMIN_APP_SCOPES, as_user_header=True, enterprise_access=True)


@contextlib.contextmanager
def faults_cleared(emu: BoxEmulator) -> Iterator[Callable[..., Any]]:
    """Yields ``emu.inject_faults``; every fault is cleared on the way out, however the block ends."""
    try:
        yield emu.inject_faults
    finally:
        emu.clear_faults()


@contextlib.contextmanager
def injected_faults(emu: BoxEmulator, **rule: Any) -> Iterator[Any]:
    """``emu.inject_faults(**rule)`` inside the block (yielding the rule, which counts its hits); every
    fault is cleared on the way out."""
    with faults_cleared(emu) as inject:
        yield inject(**rule)


def openapi_summary(checked: int, json_checked: int) -> str:
    """What tests/emulator's OpenAPI check validated in a run (summed over pytest-xdist workers)."""
    return f"OpenAPI check: {checked} emulator responses validated against Box's spec ({json_checked} JSON bodies)"


#: seconds a change made elsewhere may take to be seen before a test fails (benchmarks measure the time)
EVENTUALLY = 15.0


def eventually(check: Callable[[], bool], what: str = "a change made elsewhere was not seen in time",
               deadline: float = EVENTUALLY) -> None:
    """Poll ``check`` every 50 ms until it is true; fail with ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, what
        time.sleep(0.05)


def box_api(emu: BoxEmulator, app: str, user: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    """``method`` on Box's API path (``/collaborations``...) as ``user``, with a developer token of the JWT
    app whose console JSON is ``app``: real HTTP, as an application calls it."""
    token = emu.developer_token(json.loads(app)["boxAppSettings"]["clientID"], user)
    return requests.request(method, emu.url + "/2.0" + path, headers={"Authorization": f"Bearer {token}"},
                            timeout=30, **kwargs)


def share_folder(emu: BoxEmulator, app: str, owner: str, folder_id: str, user: str, role: str = "editor") -> str:
    """Share ``owner``'s folder with ``user`` in ``role`` (``POST /collaborations``); the collaboration's id.
    ``DELETE /collaborations/{id}`` through :func:`box_api` takes it back."""
    answer = box_api(emu, app, owner, "POST", "/collaborations", json={
        "item": {"type": "folder", "id": folder_id}, "accessible_by": {"type": "user", "id": user}, "role": role})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])
