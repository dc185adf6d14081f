"""Box limits each user's request rate; the emulator's limiter answers 429 with Retry-After past it."""

from __future__ import annotations

import requests

from boxfs.emulator import BoxEmulator

from .conftest import checked_session
from .helpers import client_credentials_token


def test_rate_limit_is_per_acting_user_and_says_when_to_retry() -> None:
    with BoxEmulator() as emu:
        http = checked_session()  # every JSON answer checked against Box's OpenAPI, tokens' too
        cid, secret = emu.create_ccg_app()
        alice, bob = emu.create_user("alice@example.com"), emu.create_user("bob@example.com")
        token = client_credentials_token(emu, http, cid, secret)
        emu.set_rate_limit(3, burst=3)
        with http:

            def get(as_user: str) -> requests.Response:
                return http.get(
                    emu.url + "/2.0/folders/0",
                    headers={"Authorization": f"Bearer {token}", "As-User": as_user},
                    timeout=10,
                )

            alice_codes = [get(alice).status_code for _ in range(4)]
            assert alice_codes[:3] == [200, 200, 200] and alice_codes[3] == 429
            limited = get(alice)
            assert limited.status_code == 429
            assert int(limited.headers["Retry-After"]) >= 1
            assert limited.json()["code"] == "rate_limit_exceeded"
            assert get(bob).status_code == 200  # another user's budget is untouched
        emu.set_rate_limit(0)
        assert emu.request_log.count(status=429) == 2


def test_rate_limit_counts_a_user_across_all_tokens() -> None:
    """Box limits each user: a second token (another worker of the same job) shares the budget."""
    with BoxEmulator() as emu:
        http = checked_session()  # every JSON answer checked against Box's OpenAPI, tokens' too
        cid, secret = emu.create_ccg_app()
        alice = emu.create_user("alice@example.com")
        tokens = [client_credentials_token(emu, http, cid, secret, alice) for _ in range(2)]
        service = client_credentials_token(emu, http, cid, secret)
        emu.set_rate_limit(1, burst=2)
        with http:

            def status(token: str, as_user: str | None = None) -> int:
                headers = {"Authorization": f"Bearer {token}", **({"As-User": as_user} if as_user else {})}
                return http.get(emu.url + "/2.0/folders/0", headers=headers, timeout=10).status_code

            assert [status(tokens[0]), status(tokens[1])] == [200, 200]
            assert status(tokens[1]) == 429  # the fresh token did not bring a fresh budget
            assert status(service, as_user=alice) == 429  # nor does acting as alice through As-User
            assert status(service) == 200  # the service account is another user
        emu.set_rate_limit(0)
