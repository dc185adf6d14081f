"""Command line for the emulator: ``boxfs emulator`` and ``python -m boxfs.emulator``.

It prepares what the documentation's examples expect (a JWT app whose console JSON is ``config.json``,
the users ``alice@example.com`` and ``bob@example.com``, alice's ``reports/`` files) and prints the shell
lines that point boxfs at it, so that every example runs as written:

* ``eval "$(boxfs emulator --env)"`` starts it in the background, waits until it is ready, and prints
  ``export BOXFS_...`` lines (``BOXFS_EMULATOR_PID`` among them); ``eval "$(boxfs emulator --stop)"``
  ends it and unsets them. The background process keeps its log in the data folder (or a temp file).
* ``boxfs emulator`` (no flag) serves in the foreground until Ctrl-C; its first lines on stdout are the
  same ``export`` lines, for another terminal.

``config.json`` is written 0600 and marked as the emulator's (a ``boxEmulator`` member real configs do
not have). An existing file without that mark is never replaced: it may be a real app's credentials.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from boxfs.emulator.app import BoxEmulator
from boxfs.emulator.samples import SAMPLE_OWNER, USERS, prepare_users

MARKER = "boxEmulator"
ENV_NAMES = ("BOXFS_BASE_URL", "BOXFS_JWT_CONFIG", "BOXFS_AS_USER", "BOXFS_EMULATOR_PID")
SCOPES = ("root_readwrite", "manage_managed_users")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class SetupError(Exception):
    """The emulator cannot start as asked; the message says why and what to do (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boxfs emulator",
        description="Run the local Box API emulator with the app, users and files the boxfs docs use.",
        epilog='In a shell: eval "$(boxfs emulator --env)" ... eval "$(boxfs emulator --stop)"')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--env", action="store_true",
                      help="start in the background and print the export lines to eval (then return)")
    mode.add_argument("--stop", action="store_true",
                      help="stop the background emulator named by BOXFS_EMULATOR_PID and print unset lines")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (0: any free port)")
    parser.add_argument("--data-dir", default=None, help="keep state here (default: a temporary folder)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    parser.add_argument("--config-out", default=None,
                        help="where to write the app's JWT config (default: config.json in the data dir "
                             "if one is given, else in this folder)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document (URLs, config path, users, pid) instead of export lines")
    parser.add_argument("--no-samples", action="store_true", help="do not create alice's reports/ files")
    parser.add_argument("--ready-file", default=None, help="write the URL here once ready (for scripts)")
    parser.add_argument("--report-file", default=None, help=argparse.SUPPRESS)  # --env's child -> parent
    return parser


# ------------------------------------------------------------------------------------------ the app's config
def _client_id_if_ours(path: Path) -> str | None:
    """The clientID of a config this emulator wrote; None when absent; SetupError for anyone else's file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or not data.get(MARKER):
        raise SetupError(f"{path} exists and was not written by the emulator (a real Box app's config?); "
                         "not replacing it: move it away or give --config-out FILE")
    settings = data.get("boxAppSettings")
    client_id = settings.get("clientID") if isinstance(settings, dict) else None
    return client_id if isinstance(client_id, str) else ""


def prepare_config(emu: BoxEmulator, path: Path) -> str:
    """Reuse the app of an emulator-written ``path`` this emulator knows, or create one and write it; client id."""
    known = _client_id_if_ours(path)
    if known and emu.store.one("SELECT client_id FROM apps WHERE client_id=?", known) is not None:
        return known
    config = json.loads(emu.create_jwt_app(scopes=SCOPES, as_user_header=True, enterprise_access=True,
                                           name="boxfs emulator"))
    config[MARKER] = "written by boxfs emulator for its local app; safe to delete"
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=path.parent)  # 0600, same folder
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(config["boxAppSettings"]["clientID"])


# ------------------------------------------------------------------------------------------ shell lines
def env_values(url: str, config: Path, pid: int) -> dict[str, str]:
    return {"BOXFS_BASE_URL": url, "BOXFS_JWT_CONFIG": str(config), "BOXFS_AS_USER": SAMPLE_OWNER,
            "BOXFS_EMULATOR_PID": str(pid)}


def export_lines(url: str, config: Path, pid: int) -> str:
    values = env_values(url, config, pid)
    return "".join(f"export {name}={shlex.quote(values[name])}\n" for name in ENV_NAMES)


def json_report(url: str, config: Path, pid: int, enterprise_id: str, users: dict[str, str]) -> str:
    """The same facts for scripts: URLs as box_sdk_gen's BaseUrls names them, the config, the users."""
    return json.dumps({"url": url, "base_url": url, "upload_url": url + "/api", "oauth2_url": url + "/oauth2",
                       "enterprise_id": enterprise_id, "config": str(config), "login": SAMPLE_OWNER,
                       "user_id": users.get(SAMPLE_OWNER, ""), "users": users, "pid": pid,
                       "env": env_values(url, config, pid)}, indent=2) + "\n"


def _serving_note(url: str, config: Path, background: bool) -> str:
    users = ", ".join(login for login, _ in USERS)
    how = 'eval "$(boxfs emulator --stop)" stops it' if background else "Ctrl-C stops it"
    return f"# Box emulator at {url}; app config {config}; users {users}; {how}\n"


# ------------------------------------------------------------------------------------------ modes
def serve(args: argparse.Namespace, config: Path) -> int:
    """Foreground: start, prepare, print the export lines, serve until SIGTERM or Ctrl-C."""
    emu = BoxEmulator(data_dir=args.data_dir, port=args.port, latency=args.latency_ms / 1000.0, host=args.host)
    try:
        emu.start()
    except OSError as exc:
        emu.stop()
        if exc.errno == errno.EADDRINUSE:
            raise SetupError(f"port {args.port} on {args.host} is in use (an emulator already running? "
                             'eval "$(boxfs emulator --stop)"), or give --port 0 for any free port') from None
        raise
    try:
        client_id = prepare_config(emu, config)
        users = prepare_users(emu, client_id, samples=not args.no_samples)
        report = json_report(emu.url, config, os.getpid(), emu.enterprise_id, users)
        if args.json:
            sys.stdout.write(report)
        else:
            sys.stdout.write(export_lines(emu.url, config, os.getpid()) + _serving_note(emu.url, config, False))
        sys.stdout.flush()
        if args.report_file:  # before the ready file: whoever waits for that one reads this one next
            Path(args.report_file).write_text(report)
        if args.ready_file:
            Path(args.ready_file).write_text(emu.url)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        stop.wait()
    finally:
        emu.stop()
    return 0


def start_background(args: argparse.Namespace, config: Path) -> int:
    """``--env``: run :func:`serve` in a detached process; print its export lines once it is ready."""
    _client_id_if_ours(config)  # refuse a foreign config.json here, with the message, not in a log file
    with tempfile.TemporaryDirectory(prefix="box-emulator-start-") as tmp:
        ready = Path(tmp) / "ready"
        if args.data_dir:
            log_path = Path(args.data_dir) / "emulator.log"
        else:
            fd, name = tempfile.mkstemp(prefix="box-emulator-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        argv = [sys.executable, "-m", "boxfs.emulator", "--host", args.host, "--port", str(args.port),
                "--latency-ms", str(args.latency_ms), "--config-out", str(config), "--ready-file", str(ready),
                "--report-file", str(Path(tmp) / "report.json")]
        if args.data_dir:
            argv += ["--data-dir", str(Path(args.data_dir).resolve())]
        if args.no_samples:
            argv.append("--no-samples")
        with open(log_path, "ab") as log:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not (ready.exists() and ready.read_text().strip()):
            if child.poll() is not None:
                tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
                raise SetupError(tail[-1].removeprefix("boxfs emulator: error: ") if tail
                                 else f"the emulator exited with {child.returncode} (log: {log_path})")
            if time.monotonic() > deadline:
                child.terminate()
                raise SetupError(f"the emulator was not ready within {START_TIMEOUT:.0f} s (log: {log_path})")
            time.sleep(0.05)
        url = ready.read_text().strip()
        report = json.loads((Path(tmp) / "report.json").read_text())
    if args.json:
        sys.stdout.write(json.dumps({**report, "log": str(log_path)}, indent=2) + "\n")
    else:
        sys.stdout.write(export_lines(url, config, child.pid) + _serving_note(url, config, True)
                         + f"# log: {log_path}\n")
    return 0


def _is_emulator(pid: int) -> bool:
    """Whether ``pid`` runs this emulator (the variable is only a hint: never signal a stranger)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: trust that the process exists at all
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"boxfs.emulator" in cmdline


def stop_background() -> int:
    """``--stop``: end the emulator BOXFS_EMULATOR_PID names; print ``unset`` lines for eval."""
    value = os.environ.get("BOXFS_EMULATOR_PID", "")
    if not value.isdigit():
        raise SetupError('BOXFS_EMULATOR_PID is not set: run eval "$(boxfs emulator --stop)" in the shell where '
                         'eval "$(boxfs emulator --env)" ran')
    pid = int(value)
    if _is_emulator(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _is_emulator(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_emulator(pid):
            raise SetupError(f"the emulator (pid {pid}) did not stop within {STOP_TIMEOUT:.0f} s")
    else:
        print(f"boxfs emulator: no emulator runs as pid {pid} (already stopped)", file=sys.stderr)
    sys.stdout.write(f"unset {' '.join(ENV_NAMES)}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.stop:
            return stop_background()
        default = Path(args.data_dir) / "config.json" if args.data_dir else Path("config.json")
        config = Path(args.config_out).resolve() if args.config_out else default.resolve()
        if args.data_dir:
            Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        if not config.parent.is_dir():
            raise SetupError(f"cannot write {config}: the folder {config.parent} does not exist")
        return start_background(args, config) if args.env else serve(args, config)
    except SetupError as exc:
        print(f"boxfs emulator: error: {exc}", file=sys.stderr, flush=True)
        return 2
