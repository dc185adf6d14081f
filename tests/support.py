"""Helpers the tests share (a module, not a fixture file: import what you need from it).

- :func:`admin_app`: the JWT app most tests act through, able to impersonate any managed user;
- :func:`injected_faults`: faults injected into the emulator for the length of a ``with`` block, and
  cleared when it ends however it ends (a failed assertion must not leave faults for the next test);
  :func:`faults_cleared` the same for a block that injects several rules, or injects them as it goes;
- :func:`openapi_summary`: the closing line of a run that checked emulator responses against Box's spec.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

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
