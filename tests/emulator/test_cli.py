"""``python -m boxfs.emulator --json``: runs in the foreground, prints its URLs and writes a JWT config that
box_sdk_gen can use as it is; state and config survive a restart on the same data directory."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from box_sdk_gen import BoxClient, BoxJWTAuth, CreateFolderParent, JWTConfig

from boxfs.emulator import BoxEmulator

from .conftest import sdk_network_session


@contextmanager
def cli_emulator(data_dir: Path) -> Iterator[dict[str, Any]]:
    """Start the CLI on a free port; yield what it printed; stop it with SIGTERM and check it exits cleanly."""
    ready = data_dir / "ready"
    ready.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "boxfs.emulator",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--ready-file",
            str(ready),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert process.poll() is None, f"the emulator CLI exited with {process.returncode}"
            assert time.monotonic() < deadline, "the emulator CLI did not get ready in 30 s"
            time.sleep(0.05)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.rstrip() == "}":
                break
        printed = json.loads("".join(lines))
        assert printed["url"] == ready.read_text().strip()
        yield printed
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0


def test_cli_config_works_with_the_sdk_and_persists(tmp_path: Path) -> None:
    with cli_emulator(tmp_path) as printed:
        url = printed["url"]
        assert printed["base_url"] == url and printed["upload_url"] == url + "/api"
        assert printed["oauth2_url"] == url + "/oauth2"
        config_path = Path(printed["config"])
        assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o600  # it holds a private key
        config_text = config_path.read_text()
        auth = BoxJWTAuth(config=JWTConfig.from_config_file(str(config_path)))
        client = BoxClient(auth=auth, network_session=sdk_network_session(url))
        assert client.users.get_user_me().id
        demo = client.with_as_user_header(printed["user_id"])
        assert demo.users.get_user_me().login == printed["login"]
        folder = demo.folders.create_folder("made-through-the-cli", CreateFolderParent(id="0"))

    with cli_emulator(tmp_path) as again:
        assert again["user_id"] == printed["user_id"]
        assert Path(again["config"]).read_text() == config_text  # the same app, not a new one each start
        auth = BoxJWTAuth(config=JWTConfig.from_config_file(again["config"]))
        client = BoxClient(auth=auth, network_session=sdk_network_session(again["url"]))
        demo = client.with_as_user_header(again["user_id"])
        assert demo.folders.get_folder_by_id(folder.id).name == "made-through-the-cli"


def test_python_interface_and_cli_share_the_data_format(tmp_path: Path) -> None:
    """A data directory made by the CLI opens with ``BoxEmulator(data_dir=...)``."""
    with cli_emulator(tmp_path) as printed:
        pass
    with BoxEmulator(data_dir=tmp_path) as emulator:
        assert emulator.enterprise_id == printed["enterprise_id"]
