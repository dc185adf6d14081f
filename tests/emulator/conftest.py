"""Fixtures for the emulator tests: one emulator per session, SDK clients, and OpenAPI checking of every response.

Why the hook: the issue requires that every JSON response the tests receive conforms to the schema Box
documents for its endpoint. Every ``requests.Session`` handed out here (the SDK's, through
``BoxNetworkClient(requests_session=...)``, and the raw-HTTP one) carries :class:`ResponseRecorder` as a
response hook, and :func:`pytest_runtest_call` fails the test that received a non-conforming body.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest
import requests
from box_sdk_gen import (
    BaseUrls,
    BoxClient,
    BoxJWTAuth,
    BoxNetworkClient,
    CreateFolderParent,
    FolderFull,
    JWTConfig,
    NetworkSession,
)

from boxfs.emulator import BoxEmulator

from .helpers import client_credentials_token
from .openapi_check import ResponseRecorder, load_spec

RECORDER = ResponseRecorder(load_spec())

ADMIN_SCOPES = ("root_readwrite", "manage_managed_users", "manage_enterprise_properties")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long-running test (e.g. the 1 GB transfer)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Fail a test that received a JSON response not matching Box's OpenAPI schema for its endpoint."""
    try:
        return (yield)
    finally:
        failures = RECORDER.take_failures()
        if failures:
            text = "\n".join(f"  - {f}" for f in failures[:20])
            if sys.exc_info()[0] is not None:
                item.add_report_section("call", "openapi", text)
            else:
                raise AssertionError(f"responses not matching Box's OpenAPI description:\n{text}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how much traffic was checked, so a green run visibly rests on real validation."""
    if RECORDER.checked:
        terminalreporter.write_line(
            f"OpenAPI check: {RECORDER.checked} emulator responses validated against Box's spec "
            f"({RECORDER.json_checked} JSON bodies)"
        )


# -- the emulator and HTTP plumbing -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def emu() -> Iterator[BoxEmulator]:
    """One emulator for the whole session; tests isolate themselves by user and by folder."""
    with BoxEmulator() as emulator:
        yield emulator


def checked_session() -> requests.Session:
    """A ``requests`` session whose every response is validated against the OpenAPI spec."""
    return RECORDER.install(requests.Session())


def sdk_network_session(emulator: BoxEmulator | str, **kwargs: Any) -> NetworkSession:
    """The SDK's network session pointed at the emulator (object or root URL) only through ``BaseUrls``."""
    url = emulator if isinstance(emulator, str) else emulator.url
    return NetworkSession(
        network_client=BoxNetworkClient(requests_session=checked_session()),
        base_urls=BaseUrls(base_url=url, upload_url=url + "/api", oauth_2_url=url + "/oauth2"),
        **kwargs,
    )


@pytest.fixture(scope="session")
def network_session(emu: BoxEmulator) -> NetworkSession:
    return sdk_network_session(emu)


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    """Raw HTTP, for what the SDK has no method for; validated like the SDK's traffic."""
    with checked_session() as session:
        yield session


# -- apps, users, clients ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def jwt_config_text(emu: BoxEmulator) -> str:
    """An app with enterprise access and the as-user feature, as its developer-console JSON."""
    return emu.create_jwt_app(scopes=ADMIN_SCOPES, as_user_header=True, enterprise_access=True)


@pytest.fixture(scope="session")
def admin(emu: BoxEmulator, jwt_config_text: str, network_session: NetworkSession) -> BoxClient:
    """The app's service account (JWT, enterprise subject)."""
    auth = BoxJWTAuth(config=JWTConfig.from_config_json_string(jwt_config_text))
    return BoxClient(auth=auth, network_session=network_session)


@pytest.fixture(scope="session")
def alice_id(emu: BoxEmulator) -> str:
    return emu.create_user("alice@example.com", name="Alice")


@pytest.fixture(scope="session")
def bob_id(emu: BoxEmulator) -> str:
    return emu.create_user("bob@example.com", name="Bob")


@pytest.fixture(scope="session")
def alice(admin: BoxClient, alice_id: str) -> BoxClient:
    """The service account acting as Alice through ``As-User``."""
    return admin.with_as_user_header(alice_id)


@pytest.fixture(scope="session")
def bob(admin: BoxClient, bob_id: str) -> BoxClient:
    return admin.with_as_user_header(bob_id)


@pytest.fixture(scope="session")
def token_for(emu: BoxEmulator, http: requests.Session) -> Callable[..., str]:
    """Issue an access token through the client-credentials grant over raw HTTP (for raw-HTTP tests)."""
    apps: dict[tuple[str, ...], tuple[str, str]] = {}

    def issue(user_id: str | None = None, scopes: tuple[str, ...] = ADMIN_SCOPES) -> str:
        if scopes not in apps:
            apps[scopes] = emu.create_ccg_app(scopes=scopes, as_user_header=True, enterprise_access=True)
        return client_credentials_token(emu, http, *apps[scopes], user_id)

    return issue


@pytest.fixture
def workdir(alice: BoxClient, request: pytest.FixtureRequest) -> FolderFull:
    """A fresh folder in Alice's root for one test, so tests never see each other's items."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:80] + "-" + uuid.uuid4().hex[:8]
    return alice.folders.create_folder(name, CreateFolderParent(id="0"))
