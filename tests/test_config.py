"""Every configuration form of issue 4, and the refusals that need no request (issue 6's bad inputs)."""

from __future__ import annotations

import json
import pickle
import time
import uuid
from typing import Any

import fsspec
import pytest

from boxfs import BoxFileSystem
from boxfs.config import BoxConfigError, BoxCredentials, resolve_credentials, resolve_endpoints


def _settings(cfg: str) -> dict[str, Any]:
    return json.loads(cfg)


def _acting(emulator: Any, marker: str) -> str:
    """The acting user recorded for the last request whose path contains ``marker``."""
    recs = [r for r in emulator.request_log.records if marker in r.path]
    assert recs, f"no request for {marker}"
    return str(recs[-1].user_id)


def _write_and_check_owner(fs: BoxFileSystem, emulator: Any) -> str:
    name = f"cfg-{uuid.uuid4().hex[:8]}"
    fs.mkdir(name)
    fs.pipe_file(f"{name}/x.txt", b"config form works")
    assert fs.cat_file(f"{name}/x.txt") == b"config form works"
    owner = [r for r in emulator.request_log.records if r.route == "/folders" and r.method == "POST"][-1].user_id
    fs.rm(name, recursive=True)
    return str(owner)


# ------------------------------------------------------------------------------- forms that work


@pytest.mark.parametrize("form", ["text", "path", "dict"])
def test_jwt_config_text_path_dict(form: str, emulator: Any, jwt_config: str, alice_id: str, tmp_path: Any) -> None:
    value: Any = {"text": jwt_config, "dict": json.loads(jwt_config)}.get(form)
    if form == "path":
        (tmp_path / "config.json").write_text(jwt_config)
        value = str(tmp_path / "config.json")
    fs = BoxFileSystem(jwt_config=value, as_user="alice@example.com", base_urls=emulator.base_urls,
                       skip_instance_cache=True)
    assert fs.credentials.kind == "jwt"
    assert _write_and_check_owner(fs, emulator) == alice_id


@pytest.mark.parametrize("key_as", ["pem", "path"])
def test_separate_jwt_fields(key_as: str, emulator: Any, jwt_config: str, bob_id: str, tmp_path: Any) -> None:
    cfg = _settings(jwt_config)
    app = cfg["boxAppSettings"]
    key = app["appAuth"]["privateKey"]
    if key_as == "path":
        (tmp_path / "key.pem").write_text(key)
        key = str(tmp_path / "key.pem")
    fs = BoxFileSystem(
        client_id=app["clientID"], client_secret=app["clientSecret"], enterprise_id=cfg["enterpriseID"],
        public_key_id=app["appAuth"]["publicKeyID"], private_key=key, passphrase=app["appAuth"]["passphrase"],
        as_user=bob_id, base_urls=emulator.base_urls, skip_instance_cache=True,
    )
    assert _write_and_check_owner(fs, emulator) == bob_id


def test_client_credentials_grant_as_service_account_and_as_user(emulator: Any, alice_id: str) -> None:
    client_id, secret = emulator.create_ccg_app(scopes=("root_readwrite", "manage_managed_users"))
    sa = BoxFileSystem(client_id=client_id, client_secret=secret, enterprise_id=emulator.enterprise_id,
                       base_urls=emulator.base_urls, skip_instance_cache=True)
    assert sa.credentials.kind == "ccg"
    assert _write_and_check_owner(sa, emulator) == str(emulator.service_account_id(client_id))
    as_alice = BoxFileSystem(client_id=client_id, client_secret=secret, enterprise_id=emulator.enterprise_id,
                             as_user="ALICE@example.com", base_urls=emulator.base_urls, skip_instance_cache=True)
    assert as_alice.as_user_id == alice_id
    assert _write_and_check_owner(as_alice, emulator) == alice_id


def test_ready_token(emulator: Any, jwt_config: str) -> None:
    client_id = _settings(jwt_config)["boxAppSettings"]["clientID"]
    token = emulator.developer_token(client_id)
    fs = BoxFileSystem(token=token, base_urls=emulator.base_urls, skip_instance_cache=True)
    assert fs.credentials.kind == "token"
    assert _write_and_check_owner(fs, emulator) == str(emulator.service_account_id(client_id))
    assert token not in repr(fs) and token not in repr(fs.credentials)


def test_environment_only(monkeypatch: Any, emulator: Any, jwt_config: str, alice_id: str, tmp_path: Any) -> None:
    path = tmp_path / "config.json"
    path.write_text(jwt_config)
    monkeypatch.setenv("BOXFS_JWT_CONFIG", str(path))
    monkeypatch.setenv("BOXFS_BASE_URL", emulator.url)
    monkeypatch.setenv("BOXFS_AS_USER", "alice@example.com")
    name = f"env-{uuid.uuid4().hex[:8]}"
    with fsspec.open(f"box://{name}/hello.txt", "wb") as f:  # URL only, no storage options
        f.write(b"from the environment")
    fs = fsspec.filesystem("box", skip_instance_cache=True)
    assert fs.as_user_id == alice_id
    assert fs.cat_file(f"/{name}/hello.txt") == b"from the environment"
    # the JSON text in the variable works as well as a path
    monkeypatch.setenv("BOXFS_JWT_CONFIG", jwt_config)
    fs2 = BoxFileSystem(skip_instance_cache=True)
    assert fs2.cat_file(f"box://{name}/hello.txt") == b"from the environment"
    fs2.rm(name, recursive=True)


def test_explicit_arguments_win_over_environment(monkeypatch: Any, emulator: Any, jwt_config: str,
                                                 bob_id: str) -> None:
    monkeypatch.setenv("BOXFS_TOKEN", "not-a-token")
    monkeypatch.setenv("BOXFS_AS_USER", "alice@example.com")
    fs = BoxFileSystem(jwt_config=jwt_config, as_user=bob_id, base_urls=emulator.base_urls, skip_instance_cache=True)
    assert fs.credentials.kind == "jwt" and fs.as_user_id == bob_id


def test_base_url_environment_derives_upload_and_oauth_urls(monkeypatch: Any) -> None:
    monkeypatch.setenv("BOXFS_BASE_URL", "http://box.internal:8080/")
    ep = resolve_endpoints(None)
    assert (ep.base_url, ep.upload_url, ep.oauth2_url) == (
        "http://box.internal:8080", "http://box.internal:8080/api", "http://box.internal:8080/oauth2")
    monkeypatch.delenv("BOXFS_BASE_URL")
    assert resolve_endpoints(None).base_url == "https://api.box.com"


def test_fsspec_registry_and_instance_cache(emulator: Any, jwt_config: str, alice_id: str, bob_id: str) -> None:
    cls = fsspec.get_filesystem_class("box")
    assert cls is BoxFileSystem
    a1 = fsspec.filesystem("box", jwt_config=jwt_config, as_user=alice_id, base_urls=emulator.base_urls)
    a2 = fsspec.filesystem("box", jwt_config=jwt_config, as_user=alice_id, base_urls=emulator.base_urls)
    b = fsspec.filesystem("box", jwt_config=jwt_config, as_user=bob_id, base_urls=emulator.base_urls)
    assert a1 is a2
    assert b is not a1 and b.cache is not a1.cache
    assert b.provider is a1.provider  # one app token shared by every user of the app


# ---------------------------------------------------------------------- refusals without a request


def _no_request(emulator: Any, fn: Any) -> BaseException:
    before = time.monotonic()
    with pytest.raises(Exception) as info:
        fn()
    time.sleep(0.05)
    sent = [r.path for r in emulator.request_log.records if r.started >= before]
    assert not sent, f"requests were sent for a locally refusable error: {sent}"
    return info.value


def test_malformed_json(emulator: Any, jwt_config: str) -> None:
    err = _no_request(emulator, lambda: BoxFileSystem(jwt_config=jwt_config[:-5], base_urls=emulator.base_urls,
                                                       skip_instance_cache=True))
    assert isinstance(err, BoxConfigError) and isinstance(err, ValueError)
    assert "not valid JSON" in str(err)


def test_json_without_box_app_settings(emulator: Any) -> None:
    err = _no_request(emulator, lambda: BoxFileSystem(jwt_config='{"enterpriseID": "1"}',
                                                       base_urls=emulator.base_urls, skip_instance_cache=True))
    assert "boxAppSettings" in str(err)


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("boxAppSettings", "appAuth", "privateKey"), "boxAppSettings.appAuth.privateKey"),
        (("boxAppSettings", "appAuth", "publicKeyID"), "boxAppSettings.appAuth.publicKeyID"),
        (("boxAppSettings", "clientID"), "boxAppSettings.clientID"),
        (("boxAppSettings", "clientSecret"), "boxAppSettings.clientSecret"),
        (("enterpriseID",), "enterpriseID"),
    ],
)
def test_missing_field_is_named(drop: tuple[str, ...], named: str, emulator: Any, jwt_config: str) -> None:
    cfg = json.loads(jwt_config)
    node = cfg
    for key in drop[:-1]:
        node = node[key]
    del node[drop[-1]]
    err = _no_request(emulator, lambda: BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls,
                                                       skip_instance_cache=True))
    assert isinstance(err, BoxConfigError)
    assert f"missing {named}" in str(err)


def test_wrong_passphrase(emulator: Any, jwt_config: str) -> None:
    cfg = json.loads(jwt_config)
    secret = cfg["boxAppSettings"]["appAuth"]["passphrase"]
    cfg["boxAppSettings"]["appAuth"]["passphrase"] = "not the passphrase"
    err = _no_request(emulator, lambda: BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls,
                                                       skip_instance_cache=True))
    assert "the passphrase does not decrypt the private key" in str(err)
    assert secret not in str(err)


def test_truncated_private_key_in_pasted_json(emulator: Any, jwt_config: str) -> None:
    cfg = json.loads(jwt_config)
    key = cfg["boxAppSettings"]["appAuth"]["privateKey"]
    cfg["boxAppSettings"]["appAuth"]["privateKey"] = key[: len(key) // 2]
    err = _no_request(emulator, lambda: BoxFileSystem(jwt_config=json.dumps(cfg), base_urls=emulator.base_urls,
                                                       skip_instance_cache=True))
    assert "truncated" in str(err)


def test_corrupted_private_key(emulator: Any, jwt_config: str) -> None:
    cfg = json.loads(jwt_config)
    key = cfg["boxAppSettings"]["appAuth"]["privateKey"]
    lines = key.strip().split("\n")
    lines[3] = lines[3][:10]
    cfg["boxAppSettings"]["appAuth"]["privateKey"] = "\n".join(lines)
    err = _no_request(emulator, lambda: BoxFileSystem(jwt_config=cfg, base_urls=emulator.base_urls,
                                                       skip_instance_cache=True))
    assert "private key" in str(err)


def test_jwt_config_path_that_does_not_exist(tmp_path: Any) -> None:
    with pytest.raises(BoxConfigError, match="neither JSON text nor an existing file"):
        resolve_credentials(jwt_config=str(tmp_path / "missing.json"))


def test_no_credentials_at_all() -> None:
    with pytest.raises(BoxConfigError, match="no Box credentials"):
        resolve_credentials(environ={})


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"client_id": "x"}, "client_secret"),
        ({"client_secret": "x"}, "client_id"),
        ({"client_id": "x", "client_secret": "y"}, "enterprise_id"),
        ({"client_id": "x", "client_secret": "y", "enterprise_id": "1", "private_key": "k"}, "public_key_id"),
    ],
)
def test_incomplete_separate_fields(kwargs: dict[str, str], named: str) -> None:
    with pytest.raises(BoxConfigError, match=f"missing {named}"):
        resolve_credentials(**kwargs)


def test_unknown_as_user_login(emulator: Any, jwt_config: str) -> None:
    with pytest.raises(BoxConfigError, match="nobody-here@example.com"):
        BoxFileSystem(jwt_config=jwt_config, as_user="nobody-here@example.com", base_urls=emulator.base_urls,
                      skip_instance_cache=True)


def test_bad_as_user_value_is_refused_locally(emulator: Any, jwt_config: str) -> None:
    err = _no_request(emulator, lambda: BoxFileSystem(jwt_config=jwt_config, as_user="alice",
                                                       base_urls=emulator.base_urls, skip_instance_cache=True))
    assert "as_user" in str(err)


# ----------------------------------------------------------------------------------- secrecy


def test_repr_and_pickle_of_credentials_hide_nothing_needed_and_show_no_secret(jwt_config: str) -> None:
    creds, _ = resolve_credentials(jwt_config=jwt_config)
    app = json.loads(jwt_config)["boxAppSettings"]
    for secret in (app["clientSecret"], app["appAuth"]["passphrase"], app["appAuth"]["privateKey"][40:80]):
        assert secret not in repr(creds) and secret not in str(creds)
    assert app["clientID"] in repr(creds)
    again = pickle.loads(pickle.dumps(creds))
    assert isinstance(again, BoxCredentials) and again == creds


def test_filesystem_repr_shows_no_secret(alice_fs: BoxFileSystem, jwt_config: str) -> None:
    app = json.loads(jwt_config)["boxAppSettings"]
    text = repr(alice_fs) + str(alice_fs)
    assert app["clientSecret"] not in text and app["appAuth"]["passphrase"] not in text
    alice_fs.ls("")
    assert alice_fs.provider.token() not in repr(alice_fs)


def test_environment_changes_are_not_hidden_by_the_instance_cache(monkeypatch: Any, emulator: Any,
                                                                  jwt_config: str, alice_id: str, bob_id: str,
                                                                  tmp_path: Any) -> None:
    (tmp_path / "config.json").write_text(jwt_config)
    monkeypatch.setenv("BOXFS_JWT_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("BOXFS_BASE_URL", emulator.url)
    monkeypatch.setenv("BOXFS_AS_USER", "alice@example.com")
    as_alice = fsspec.filesystem("box")
    assert fsspec.filesystem("box") is as_alice and as_alice.as_user_id == alice_id
    monkeypatch.setenv("BOXFS_AS_USER", "bob@example.com")
    as_bob = fsspec.filesystem("box")
    assert as_bob is not as_alice and as_bob.as_user_id == bob_id
    for value in as_bob.storage_options.values():
        assert jwt_config not in str(value)
