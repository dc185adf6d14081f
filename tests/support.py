"""Helpers the tests share (a module, not a fixture file: import what you need from it).

- :func:`admin_app`: the JWT app most tests act through, able to impersonate any managed user;
- :func:`injected_faults`: faults injected into the emulator for the length of a ``with`` block, and
  cleared when it ends however it ends (a failed assertion must not leave faults for the next test);
- :func:`eventually`: wait for a change made elsewhere to be seen, failing after a generous deadline
  (tests assert what is seen, never how fast).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from boxfs.emulator import BoxEmulator

#: what the admin app may do: read and write every folder it acts in, and manage the enterprise's users
ADMIN_APP_SCOPES = ("root_readwrite", "manage_managed_users")


def admin_app(emu: BoxEmulator) -> str:
    """A new JWT app with enterprise access and the As-User feature; its developer-console JSON."""
    return emu.create_jwt_app(scopes=ADMIN_APP_SCOPES, as_user_header=True, enterprise_access=True)


@contextlib.contextmanager
def injected_faults(emu: BoxEmulator, **rule: Any) -> Iterator[Any]:
    """``emu.inject_faults(**rule)`` inside the block (yielding the rule, which counts its hits); every
    fault is cleared on the way out."""
    try:
        yield emu.inject_faults(**rule)
    finally:
        emu.clear_faults()


#: seconds a change made elsewhere may take to be seen before a test fails (benchmarks measure the time)
EVENTUALLY = 15.0


def eventually(check: Callable[[], bool], what: str = "a change made elsewhere was not seen in time",
               deadline: float = EVENTUALLY) -> None:
    """Poll ``check`` every 50 ms until it is true; fail with ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, what
        time.sleep(0.05)
