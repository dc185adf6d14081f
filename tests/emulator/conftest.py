"""Fixtures for the emulator tests: SDK clients of the session emulator, and OpenAPI checking of every response.

The emulator, the admin JWT app (``jwt_config``) and the users' ids (``alice_id``, ``bob_id``) are
tests/conftest.py's, shared with the client's tests; here the same app and users as box_sdk_gen clients:
``admin_client`` (the app's service account), ``alice_client`` and ``bob_client`` (acting as them).

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
from support import openapi_summary

from boxfs.emulator import BoxEmulator

from .helpers import client_credentials_token
from .openapi_check import ResponseRecorder, load_spec

RECORDER = ResponseRecorder(load_spec())

#: the scopes of the client-credentials apps ``token_for`` issues tokens through
CCG_SCOPES = ("root_readwrite", "manage_managed_users", "manage_enterprise_properties")


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
        terminalreporter.write_line(openapi_summary(RECORDER.checked, RECORDER.json_checked))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A pytest-xdist worker prints no summary: it hands its counts to the controller, whose
    tests/conftest.py adds them up and prints :func:`openapi_summary`."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["openapi_checked"] = (RECORDER.checked, RECORDER.json_checked)


# -- the emulator and HTTP plumbing -----------------------------------------------------------------------


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
def network_session(emulator: BoxEmulator) -> NetworkSession:
    return sdk_network_session(emulator)


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    """Raw HTTP, for what the SDK has no method for; validated like the SDK's traffic."""
    with checked_session() as session:
        yield session


# -- apps, users, clients ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def admin_client(emulator: BoxEmulator, jwt_config: str, network_session: NetworkSession) -> BoxClient:
    """The admin app's service account (JWT, enterprise subject) through box_sdk_gen."""
    auth = BoxJWTAuth(config=JWTConfig.from_config_json_string(jwt_config))
    return BoxClient(auth=auth, network_session=network_session)


@pytest.fixture(scope="session")
def alice_client(admin_client: BoxClient, alice_id: str) -> BoxClient:
    """The service account acting as Alice through ``As-User``."""
    return admin_client.with_as_user_header(alice_id)


@pytest.fixture(scope="session")
def bob_client(admin_client: BoxClient, bob_id: str) -> BoxClient:
    return admin_client.with_as_user_header(bob_id)


@pytest.fixture(scope="session")
def token_for(emulator: BoxEmulator, http: requests.Session) -> Callable[..., str]:
    """Issue an access token through the client-credentials grant over raw HTTP (for raw-HTTP tests)."""
    apps: dict[tuple[str, ...], tuple[str, str]] = {}

    def issue(user_id: str | None = None, scopes: tuple[str, ...] = CCG_SCOPES) -> str:
        if scopes not in apps:
            apps[scopes] = emulator.create_ccg_app(scopes=scopes, as_user_header=True, enterprise_access=True)
        return client_credentials_token(emulator, http, *apps[scopes], user_id)

    return issue


@pytest.fixture
def workdir(alice_client: BoxClient, request: pytest.FixtureRequest) -> FolderFull:
    """A fresh folder in Alice's root for one test, so tests never see each other's items."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:80] + "-" + uuid.uuid4().hex[:8]
    return alice_client.folders.create_folder(name, CreateFolderParent(id="0"))
