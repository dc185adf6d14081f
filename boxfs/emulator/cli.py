"""Command line for the emulator: ``boxfs emulator`` and ``python -m boxfs.emulator``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from pathlib import Path

from boxfs.emulator.app import BoxEmulator

DEMO_LOGIN = "demo@example.com"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boxfs emulator", description="Run the local Box API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (0: any free port)")
    parser.add_argument("--data-dir", default=None, help="keep state here (default: a temporary folder)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    parser.add_argument("--config-out", default=None,
                        help="where to write the demo app's JWT config (default: <data-dir or cwd>/box-emulator-config.json)")
    parser.add_argument("--ready-file", default=None, help="write the URL here once listening (for scripts)")
    return parser


def prepare_demo(emu: BoxEmulator, config_out: Path) -> dict[str, str]:
    """Create (once per data dir) a JWT app and a demo user; write the app's config file 0600."""
    if config_out.exists():
        config = config_out.read_text()
        user = emu.store.one("SELECT id FROM users WHERE login=?", DEMO_LOGIN)
        if user is not None:
            return {"config": str(config_out), "user_id": user["id"], "login": DEMO_LOGIN}
    config = emu.create_jwt_app(name="boxfs demo")
    user = emu.store.one("SELECT id FROM users WHERE login=?", DEMO_LOGIN)
    user_id = user["id"] if user is not None else emu.create_user(DEMO_LOGIN, "Demo User")
    fd = os.open(config_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(config)
    return {"config": str(config_out), "user_id": user_id, "login": DEMO_LOGIN}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    emu = BoxEmulator(data_dir=args.data_dir, port=args.port, latency=args.latency_ms / 1000.0, host=args.host)
    emu.start()
    out = Path(args.config_out) if args.config_out else Path(args.data_dir or ".") / "box-emulator-config.json"
    demo = prepare_demo(emu, out)
    env = {"BOXFS_JWT_CONFIG": demo["config"], "BOXFS_BASE_URL": emu.url, "BOXFS_AS_USER": demo["login"]}
    print(json.dumps({"url": emu.url, **emu.base_urls, "enterprise_id": emu.enterprise_id, **demo, "env": env},
                     indent=2), flush=True)
    if args.ready_file:
        Path(args.ready_file).write_text(emu.url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    emu.stop()
    return 0
