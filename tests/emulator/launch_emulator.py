"""Run a BoxEmulator in its own process for tests that measure the server (e.g. its memory).

Why a launcher and not the CLI: the test needs, besides the URL, an app's credentials and a user, and
those are created through the emulator's documented Python interface. The launcher prints one JSON line
(url, client id/secret, user id, enterprise id) and serves until its stdin is closed, so the server never
outlives the test that started it.

Usage: ``python -m tests.emulator.launch_emulator DATA_DIR`` or ``python launch_emulator.py DATA_DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from boxfs.emulator import BoxEmulator


def main(argv: list[str]) -> int:
    data_dir = Path(argv[1]) if len(argv) > 1 else None
    with BoxEmulator(data_dir=data_dir) as emu:
        client_id, client_secret = emu.create_ccg_app(
            scopes=("root_readwrite", "manage_managed_users"), as_user_header=True, enterprise_access=True
        )
        user_id = emu.create_user("big@example.com", name="Big")
        sys.stdout.write(
            json.dumps(
                {
                    "url": emu.url,
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "user_id": user_id,
                    "enterprise_id": emu.enterprise_id,
                }
            )
            + "\n"
        )
        sys.stdout.flush()
        sys.stdin.read()  # serve until the parent closes our stdin (or dies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
