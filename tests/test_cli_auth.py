"""Auth beyond JWT, end to end against an emulator: ``boxfs login`` (OAuth 2.0 authorization code), the
token file shared by processes while Box rotates refresh tokens, downscoped tokens (token exchange) and
``fs.sign``.

These tests change token lifetimes, so they use an emulator of their own rather than the session one.
The browser is played by ``requests``: it opens the authorize URL the CLI printed and submits Box's
"Grant access" form as the user would.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from support import admin_app

from boxfs.api.errors import BoxAuthError
from boxfs.emulator import BoxEmulator


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def emu() -> Iterator[BoxEmulator]:
    with BoxEmulator() as e:
        yield e


@pytest.fixture(scope="module")
def dana(emu: BoxEmulator) -> tuple[str, str]:
    return emu.create_user("dana@example.com", name="Dana"), "dana@example.com"


@pytest.fixture(scope="module")
def oauth_app(emu: BoxEmulator) -> dict[str, str]:
    redirect = f"http://127.0.0.1:{_free_port()}/callback"
    client_id, client_secret = emu.create_oauth_app(redirect)
    return {"client_id": client_id, "client_secret": client_secret, "redirect_uri": redirect}


def grant_in_browser(authorize_url: str, login: str) -> requests.Response:
    """What a person does: open the page, type the login, click "Grant access to Box" (redirects followed)."""
    page = requests.get(authorize_url, timeout=10)
    assert page.status_code == 200 and "Grant access to Box" in page.text
    form = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    action = authorize_url.split("?", 1)[0]
    return requests.post(action, data={**form, "login": login}, timeout=10)


def run_login(emu: BoxEmulator, app: dict[str, str], token_file: Path, login: str) -> subprocess.CompletedProcess:
    """``boxfs login`` as a subprocess, with the secret in the environment (never in argv)."""
    env = _clean_env() | {"BOXFS_CLIENT_SECRET": app["client_secret"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "boxfs", "--base-url", emu.url, "login", "--client-id", app["client_id"],
         "--redirect-uri", app["redirect_uri"], "--token-file", str(token_file), "--no-browser", "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    assert proc.stderr is not None
    url = None
    deadline = time.monotonic() + 30
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        m = re.search(r"(http://\S+/oauth2/authorize\?\S+)", line)
        url = m.group(1) if m else None
    assert url is not None, f"no authorize URL printed; exit {proc.poll()}"
    assert f"client_id={app['client_id']}" in url and "state=" in url
    answer = grant_in_browser(url, login)
    assert answer.status_code == 200 and "logged in" in answer.text
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_login_saves_a_private_token_file_and_the_cli_uses_it(emu: BoxEmulator, oauth_app: dict[str, str],
                                                              dana: tuple[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "cfg" / "token.json"
    done = run_login(emu, oauth_app, token_file, dana[1])
    assert done.returncode == 0, done.stderr
    assert f"Logged in as {dana[1]}" in done.stdout
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    saved = json.loads(token_file.read_text())
    assert saved["user_id"] == dana[0] and saved["refresh_token"] and saved["access_token"]
    for secret in (oauth_app["client_secret"], saved["access_token"], saved["refresh_token"]):
        assert secret not in done.stdout + done.stderr

    env = _clean_env() | {"BOXFS_BASE_URL": emu.url, "BOXFS_OAUTH_TOKEN_FILE": str(token_file)}
    me = subprocess.run([sys.executable, "-m", "boxfs", "--json", "whoami"], capture_output=True, env=env,
                        timeout=60, text=True)
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["id"] == dana[0]
    local = tmp_path / "up.txt"
    local.write_text("mine")
    cp = subprocess.run([sys.executable, "-m", "boxfs", "cp", str(local), "box://oauth/up.txt"], capture_output=True,
                        env=env, timeout=60, text=True)
    assert cp.returncode == 0, cp.stderr

    from boxfs import BoxFileSystem

    fs = BoxFileSystem(oauth_token_file=str(token_file), base_urls=emu.base_urls, skip_instance_cache=True)
    assert fs.cat("oauth/up.txt") == b"mine"
    assert fs.user_id == dana[0]
    assert "secrets hidden" in repr(fs.credentials) and saved["refresh_token"] not in repr(fs.credentials)


def test_login_refused_when_the_user_denies_or_the_file_is_missing(emu: BoxEmulator, tmp_path: Path) -> None:
    from boxfs import BoxFileSystem
    from boxfs.config import BoxConfigError

    with pytest.raises(BoxConfigError, match="run 'boxfs login' first"):
        BoxFileSystem(oauth_token_file=str(tmp_path / "absent.json"), base_urls=emu.base_urls)
    proc = subprocess.run(
        [sys.executable, "-m", "boxfs", "--base-url", emu.url, "--oauth-token-file", str(tmp_path / "absent.json"),
         "ls"], capture_output=True, env=_clean_env(), timeout=60, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "boxfs login" in proc.stderr


def _login_in_process(emu: BoxEmulator, app: dict[str, str], token_file: Path, user: str) -> None:
    from boxfs.auth.login import login

    result: dict[str, Any] = {}

    def browser(url: str) -> None:
        threading.Thread(target=lambda: result.setdefault("answer", grant_in_browser(url, user)), daemon=True).start()

    login(app["client_id"], app["client_secret"], token_file, endpoints=_endpoints(emu),
          redirect_uri=app["redirect_uri"], open_browser=False, timeout=20, show_url=browser)


def _endpoints(emu: BoxEmulator) -> Any:
    from boxfs.config import resolve_endpoints

    return resolve_endpoints(emu.base_urls)


_WORKER = r"""
import sys, time
from boxfs import BoxFileSystem
fs = BoxFileSystem(oauth_token_file=sys.argv[1], base_urls={"base_url": sys.argv[2]}, skip_instance_cache=True)
end = time.monotonic() + float(sys.argv[3])
n = 0
while time.monotonic() < end:
    fs.ls("", refresh=True)
    n += 1
print(n, fs.provider.refresh_count)
"""


def test_two_processes_share_the_token_file_while_refresh_tokens_rotate(
        emu: BoxEmulator, oauth_app: dict[str, str], dana: tuple[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "shared.json"
    _login_in_process(emu, oauth_app, token_file, dana[1])
    emu.set_token_ttl(1.2)  # every process must refresh several times while the other one does too
    refreshes_before = sum(1 for r in emu.request_log.records if r.route == "/oauth2/token")
    stop = threading.Event()

    def revoke_early() -> None:  # also make Box reject live tokens: the 401 path must use the file too
        while not stop.wait(0.7):
            emu.expire_tokens()

    killer = threading.Thread(target=revoke_early, daemon=True)
    killer.start()
    try:
        workers = [subprocess.Popen([sys.executable, "-c", _WORKER, str(token_file), emu.url, "4"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env(), text=True)
                   for _ in range(2)]
        results = [w.communicate(timeout=60) for w in workers]
    finally:
        stop.set()
        killer.join()
        emu.set_token_ttl(3600)
    for w, (_out, err) in zip(workers, results, strict=True):
        assert w.returncode == 0, f"a worker lost the refresh token race: {err[-2000:]}"
    refreshed = [int(out.split()[1]) for out, _ in results]
    assert sum(refreshed) >= 4, refreshed  # the race really happened, several times
    token_calls = sum(1 for r in emu.request_log.records if r.route == "/oauth2/token") - refreshes_before
    assert token_calls == sum(refreshed)  # no refresh token was ever spent twice (each call succeeded once)
    # the newest refresh token is in the file: a third process can still refresh with it
    emu.expire_tokens()
    from boxfs import BoxFileSystem

    fs = BoxFileSystem(oauth_token_file=str(token_file), base_urls=emu.base_urls, skip_instance_cache=True)
    assert fs.ls("", refresh=True) is not None


def test_a_spent_refresh_token_is_reported_clearly(emu: BoxEmulator, oauth_app: dict[str, str],
                                                   dana: tuple[str, str], tmp_path: Path) -> None:
    token_file = tmp_path / "t.json"
    _login_in_process(emu, oauth_app, token_file, dana[1])
    stale = json.loads(token_file.read_text())
    from boxfs import BoxFileSystem

    fs = BoxFileSystem(oauth_token_file=str(token_file), base_urls=emu.base_urls, skip_instance_cache=True)
    emu.expire_tokens()
    fs.ls("", refresh=True)  # refreshes: the refresh token in `stale` is spent now
    token_file.write_text(json.dumps({**stale, "expires_at": 0}))  # someone restores an old copy
    from boxfs.auth import clear_registry

    clear_registry()
    fs2 = BoxFileSystem(oauth_token_file=str(token_file), base_urls=emu.base_urls, skip_instance_cache=True)
    with pytest.raises(BoxAuthError) as err:
        fs2.ls("", refresh=True)
    assert "invalid_grant" in str(err.value) and stale["refresh_token"] not in str(err.value)


# ------------------------------------------------------------------------------------------ token exchange
@pytest.fixture(scope="module")
def jwt_app(emu: BoxEmulator) -> str:
    return admin_app(emu)


def test_downscoped_filesystem_reads_but_cannot_write(emu: BoxEmulator, jwt_app: str, dana: tuple[str, str]) -> None:
    from boxfs import BoxFileSystem

    full = BoxFileSystem(jwt_app, as_user=dana[1], base_urls=emu.base_urls, skip_instance_cache=True)
    full.pipe({"ds/a.txt": b"A", "ds/b.txt": b"B"})
    before = emu.request_log.count(route="/oauth2/token")
    ro = BoxFileSystem(jwt_app, as_user=dana[1], base_urls=emu.base_urls, skip_instance_cache=True,
                       scopes=["item_preview", "item_download"])
    assert ro.cat("ds/a.txt") == b"A"
    assert emu.request_log.count(route="/oauth2/token") == before + 1  # one exchange
    with pytest.raises(PermissionError):
        ro.pipe("ds/c.txt", b"C")
    with pytest.raises(PermissionError):
        ro.rm("ds/a.txt")

    file_url = f"{emu.url}/2.0/files/{full.info('ds/a.txt')['id']}"
    one = BoxFileSystem(jwt_app, as_user=dana[1], base_urls=emu.base_urls, skip_instance_cache=True,
                        scopes="item_download", resource=file_url)
    # the token is limited to a.txt (a path lookup would list folders, so go by id): a.txt is readable,
    # b.txt, next to it, is not
    a_id, b_id = full.info("ds/a.txt")["id"], full.info("ds/b.txt")["id"]
    assert one.transport.request("GET", one.transport.api(f"/files/{a_id}/content")).content == b"A"
    with pytest.raises(PermissionError):
        one.transport.request("GET", one.transport.api(f"/files/{b_id}/content"))
    with pytest.raises(PermissionError):
        one.transport.json("GET", one.transport.api(f"/files/{b_id}"))


def test_sign_gives_a_credential_free_download_url(emu: BoxEmulator, jwt_app: str, dana: tuple[str, str]) -> None:
    from boxfs import BoxFileSystem

    fs = BoxFileSystem(jwt_app, as_user=dana[1], base_urls=emu.base_urls, skip_instance_cache=True)
    fs.pipe("signed/report.csv", b"a,b\n1,2\n")
    url = fs.sign("box://signed/report.csv", expiration=300)
    assert "/download/" in url
    got = requests.get(url, timeout=10)  # no Authorization header at all
    assert got.status_code == 200 and got.content == b"a,b\n1,2\n"
    ro = BoxFileSystem(jwt_app, as_user=dana[1], base_urls=emu.base_urls, skip_instance_cache=True,
                       scopes=["item_download"])
    assert requests.get(ro.sign("signed/report.csv", expiration=60), timeout=10).content == b"a,b\n1,2\n"
    with pytest.raises(IsADirectoryError):
        fs.sign("signed")


def test_sign_for_longer_than_box_download_urls_uses_an_expiring_shared_link(
        emu: BoxEmulator, jwt_app: str, dana: tuple[str, str]) -> None:
    from datetime import datetime, timedelta, timezone

    from boxfs import BoxFileSystem

    fs = BoxFileSystem(jwt_app, as_user=dana[1], base_urls=emu.base_urls, skip_instance_cache=True)
    fs.pipe("signed/long.csv", b"x,y\n3,4\n")
    url = fs.sign("signed/long.csv", expiration=2 * 3600)
    assert requests.get(url, timeout=10).content == b"x,y\n3,4\n"  # no credentials
    link = fs.transport.json("GET", fs.transport.api(f"/files/{fs.info('signed/long.csv')['id']}"),
                             params={"fields": "shared_link"})["shared_link"]
    until = datetime.fromisoformat(link["unshared_at"])
    assert timedelta(hours=1, minutes=55) < until - datetime.now(timezone.utc) <= timedelta(hours=2)
    assert link["download_url"] == url


def test_cli_with_client_credentials_grant_from_the_environment(emu: BoxEmulator, dana: tuple[str, str]) -> None:
    client_id, client_secret = emu.create_ccg_app(scopes=("root_readwrite", "manage_managed_users"),
                                                  as_user_header=True, enterprise_access=True)
    env = _clean_env() | {"BOXFS_CLIENT_ID": client_id, "BOXFS_CLIENT_SECRET": client_secret,
                          "BOXFS_ENTERPRISE_ID": emu.enterprise_id, "BOXFS_BASE_URL": emu.url}
    proc = subprocess.run([sys.executable, "-m", "boxfs", "--as-user", dana[1], "--json", "whoami"],
                          capture_output=True, env=env, timeout=60, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == dana[0]
    assert client_secret not in proc.stdout + proc.stderr
    service = subprocess.run([sys.executable, "-m", "boxfs", "--json", "whoami"], capture_output=True, env=env,
                             timeout=60, text=True)
    assert json.loads(service.stdout)["id"] == emu.service_account_id(client_id)
