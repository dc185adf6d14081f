"""Shared fixtures: one Box emulator per test process and BoxFileSystems acting as its users.

Everything talks to the emulator (:class:`boxfs.emulator.BoxEmulator`) over real HTTP on 127.0.0.1;
nothing is mocked. Other test modules (servers, mount, data stack, reliability) reuse these fixtures;
keep their names and meaning stable. tests/emulator/conftest.py adds box_sdk_gen clients of the same
emulator, app and users (``admin_client``, ``alice_client``, ``bob_client``); helpers that are not fixtures
(the admin app, injected faults) are in tests/support.py.

Session-scoped (one per pytest-xdist worker: a worker's tests run one at a time)
    ``emulator``       the running ``BoxEmulator`` (``emulator.url``, ``.base_urls``, ``.request_log``...).
    ``jwt_config``     JSON text of the admin JWT app (developer-console format, :func:`support.admin_app`):
                       as-user header, App + Enterprise access, ``root_readwrite`` + ``manage_managed_users``.
    ``alice_id``, ``bob_id``  user ids of ``alice@example.com`` and ``bob@example.com``.

Function-scoped (a new filesystem instance each test: empty caches, ``skip_instance_cache=True``)
    ``fs``             acting as a brand-new user created for this test: an empty root, nothing to clean.
    ``fs_user``        that new user's ``(id, login)``.
    ``fast_fs``        the ``fs`` user with fast retries (3 attempts, millisecond waits), for tests that make
                       Box fail on purpose.
    ``box_view``       ``box_view()`` -> a new filesystem for the ``fs`` user with empty caches: what Box
                       holds, not what ``fs`` believes.
    ``alice_fs``       acting as alice (as_user by email); ``bob_fs`` as bob (as_user by id). Their data
                       persists across tests: write under a unique folder (see ``unique``).
    ``make_fs``        factory: ``make_fs(as_user=..., **options)`` -> BoxFileSystem for ``jwt_config``.
    ``new_user``       factory: ``new_user(prefix="u")`` -> ``(user_id, login)`` of a fresh user.
    ``unique``         a unique folder-safe name for this test (``t-<hex>``).
    ``faults``         ``faults(**rule)`` -> ``emulator.inject_faults(**rule)``; every fault cleared when the test
                       ends (to end them sooner, ``with support.injected_faults(...)``).
    ``tiny_disk``      an 8 MB tmpfs folder (a full local disk on demand); skips where tmpfs cannot be mounted.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import admin_app, faults_cleared, openapi_summary

from boxfs.emulator import BoxEmulator

# The background change watcher (boxfs.watch) is off by default in the tests, subprocesses included: its
# requests would blur the per-operation API-call counts many tests assert. tests/test_watch*.py turn it on
# with watch_events=True.
os.environ.setdefault("BOXFS_WATCH_EVENTS", "0")

#: responses tests/emulator's OpenAPI check validated in pytest-xdist workers: (all, JSON bodies)
_OPENAPI_CHECKED = [0, 0]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A pytest-xdist worker finished: add up what its OpenAPI check validated (tests/emulator/conftest.py)."""
    checked, json_checked = node.workeroutput.get("openapi_checked", (0, 0))
    _OPENAPI_CHECKED[0] += checked
    _OPENAPI_CHECKED[1] += json_checked


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Under pytest-xdist, the workers' OpenAPI check totals (run alone, tests/emulator/conftest.py says it)."""
    if _OPENAPI_CHECKED[0]:
        terminalreporter.write_line(openapi_summary(*_OPENAPI_CHECKED))


@pytest.fixture(scope="session")
def emulator() -> Iterator[BoxEmulator]:
    """One emulator for the whole session; tests isolate themselves by user or by folder."""
    with BoxEmulator() as emu:
        yield emu


@pytest.fixture(scope="session")
def jwt_config(emulator: BoxEmulator) -> str:
    """A JWT app able to impersonate any managed user (as-user header, enterprise access)."""
    return admin_app(emulator)


@pytest.fixture(scope="session")
def alice_id(emulator: BoxEmulator) -> str:
    return emulator.create_user("alice@example.com", name="Alice")


@pytest.fixture(scope="session")
def bob_id(emulator: BoxEmulator) -> str:
    return emulator.create_user("bob@example.com", name="Bob")


@pytest.fixture
def new_user(emulator: BoxEmulator) -> Callable[..., tuple[str, str]]:
    """Create a fresh enterprise user: returns ``(user_id, login)``."""

    def make(prefix: str = "u") -> tuple[str, str]:
        login = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
        return emulator.create_user(login, name=login.split("@")[0]), login

    return make


@pytest.fixture
def make_fs(emulator: BoxEmulator, jwt_config: str) -> Callable[..., Any]:
    """Build a BoxFileSystem for the session JWT app at the emulator (keyword options override)."""
    from boxfs import BoxFileSystem

    def make(**kwargs: Any) -> Any:
        options: dict[str, Any] = {"base_urls": emulator.base_urls, "skip_instance_cache": True}
        if not any(k in kwargs for k in ("jwt_config", "token", "client_id", "credentials")):
            options["jwt_config"] = jwt_config
        options.update(kwargs)
        return BoxFileSystem(**options)

    return make


@pytest.fixture
def fs_user(new_user: Callable[..., tuple[str, str]]) -> tuple[str, str]:
    return new_user("fs")


@pytest.fixture
def fs(make_fs: Callable[..., Any], fs_user: tuple[str, str]) -> Any:
    """A filesystem acting as a user created for this test (an empty "All Files")."""
    return make_fs(as_user=fs_user[0])


@pytest.fixture
def fast_fs(make_fs: Callable[..., Any], fs_user: tuple[str, str]) -> Any:
    """The ``fs`` user with retries that give up fast: failures injected on purpose end quickly."""
    return make_fs(as_user=fs_user[0], retry={"max_attempts": 3, "backoff_base": 0.005, "backoff_max": 0.02,
                                              "max_retry_after": 0.1})


@pytest.fixture
def box_view(make_fs: Callable[..., Any], fs_user: tuple[str, str]) -> Callable[[], Any]:
    """A fresh look at what Box holds for the ``fs`` user (no cache shared with ``fs``)."""
    return lambda: make_fs(as_user=fs_user[0])


@pytest.fixture
def alice_fs(make_fs: Callable[..., Any], alice_id: str) -> Any:
    return make_fs(as_user="alice@example.com")


@pytest.fixture
def bob_fs(make_fs: Callable[..., Any], bob_id: str) -> Any:
    return make_fs(as_user=bob_id)


@pytest.fixture
def faults(emulator: BoxEmulator) -> Iterator[Callable[..., Any]]:
    """Inject faults into the session emulator for the rest of the test; cleared however it ends."""
    with faults_cleared(emulator) as inject:
        yield inject


@pytest.fixture
def unique() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs, private to this account (a spool root must be): writing more fails with ENOSPC."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
