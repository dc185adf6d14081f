"""The users and files the documentation's examples expect, put into a running emulator.

The README and docs act as ``alice@example.com`` (and sometimes ``bob@example.com``) and read
``reports/q3.csv``, ``reports/q3.parquet`` and ``reports/notes.txt``. ``boxfs emulator`` seeds exactly
these, so an example copied from the docs runs as written. Files go in through the emulator's own HTTP
API (an upload as the user, with a token the emulator mints as the developer console's button would),
so they are stored exactly as any client's upload would be; the package imports nothing from the client.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from boxfs.emulator.app import BoxEmulator

log = logging.getLogger("boxfs.emulator")

USERS = (("alice@example.com", "Alice"), ("bob@example.com", "Bob"))
SAMPLE_OWNER = "alice@example.com"
Q3_CSV = "region,revenue\nnorth,120.5\nsouth,98.0\neast,143.25\nwest,77.0\n"
NOTES = "Q3 numbers are preliminary.\n"


def q3_parquet() -> bytes | None:
    """``reports/q3.csv`` as parquet, or None when pyarrow is not installed (the parquet examples say so)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    rows = [line.split(",") for line in Q3_CSV.strip().splitlines()[1:]]
    table = pa.table({"region": [r[0] for r in rows], "revenue": [float(r[1]) for r in rows]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def user_id(emu: BoxEmulator, login: str) -> str | None:
    row = emu.store.one("SELECT id FROM users WHERE login=?", login)
    return None if row is None else str(row["id"])


def _call(req: urllib.request.Request) -> dict[str, object]:
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - our own local server
        return json.loads(resp.read() or b"{}")


def _upload(emu: BoxEmulator, token: str, folder_id: str, name: str, data: bytes) -> None:
    boundary = secrets.token_hex(16)
    attributes = json.dumps({"name": name, "parent": {"id": folder_id}})
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"attributes\"\r\n\r\n{attributes}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    _call(urllib.request.Request(f"{emu.url}/api/2.0/files/content", data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}))


def seed_reports(emu: BoxEmulator, client_id: str, owner_id: str) -> list[str]:
    """Create ``reports/`` with the sample files in ``owner_id``'s All Files; return the paths written."""
    token = emu.developer_token(client_id, owner_id)
    folder = _call(urllib.request.Request(
        f"{emu.url}/2.0/folders", method="POST", data=json.dumps({"name": "reports", "parent": {"id": "0"}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}))
    files = {"q3.csv": Q3_CSV.encode(), "notes.txt": NOTES.encode()}
    parquet = q3_parquet()
    if parquet is not None:
        files["q3.parquet"] = parquet
    for name, data in files.items():
        _upload(emu, token, str(folder["id"]), name, data)
    written = [f"reports/{name}" for name in files]
    log.info("seeded %s for %s", ", ".join(written), SAMPLE_OWNER)
    return written


def prepare_users(emu: BoxEmulator, client_id: str, samples: bool = True) -> dict[str, str]:
    """Create the documentation's users where missing (and alice's sample files with her); login -> id."""
    ids: dict[str, str] = {}
    for login, name in USERS:
        existing = user_id(emu, login)
        ids[login] = existing or emu.create_user(login, name)
        if existing is None and login == SAMPLE_OWNER and samples:
            seed_reports(emu, client_id, ids[login])
    return ids
