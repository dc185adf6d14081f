"""Logging (issue 6): ``logging.getLogger("boxfs")``; one DEBUG line per request with its method, route,
status, Box request id and duration; retries and token refreshes at INFO.

Every line is checked against the emulator's request log: the request id a line names must be the one
the emulator gave that very request (method, path and status agree), and every request the client sent
has its line.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from support import injected_faults

from boxfs import BoxFileSystem
from boxfs.emulator import BoxEmulator

LINE = re.compile(r"^(?P<method>[A-Z]+) (?P<path>/\S*|<download URL on [^>]+>) -> (?P<status>\d{3}) "
                  r"\(request id (?P<rid>[0-9a-f]+)\) "
                  r"(?P<ms>\d+\.\d) ms$")
FAIL_LINE = re.compile(r"^(?P<method>[A-Z]+) (?P<path>/\S*) -> (?P<exc>\w+) after (?P<ms>\d+\.\d) ms$")
FAST = {"max_attempts": 5, "backoff_base": 0.005, "backoff_max": 0.02}




def boxfs_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "boxfs" and r.levelno == level]


def test_one_debug_line_per_request_with_method_route_status_request_id_duration(
        emulator: BoxEmulator, fs: BoxFileSystem, caplog: pytest.LogCaptureFixture) -> None:
    fs.ls("")  # token obtained before the measured part
    start = len(emulator.request_log)
    caplog.set_level(logging.DEBUG, logger="boxfs")
    fs.pipe_file("log/a.txt", b"hello")
    fs.invalidate_cache()
    assert fs.cat_file("log/a.txt") == b"hello"
    assert fs.cat_file("log/a.txt", start=1, end=3) == b"el"
    fs.mv("log/a.txt", "log/b.txt")
    with pytest.raises(FileNotFoundError):
        fs.transport.json("GET", fs.transport.api("/files/99999999"))
    fs.rm("log", recursive=True)
    sent = [r for r in emulator.request_log.records[start:len(emulator.request_log)] if r.host != "oauth2"]
    lines = [LINE.match(r.getMessage()) for r in boxfs_records(caplog, logging.DEBUG)]
    lines_by_id = {m["rid"]: m for m in lines if m}
    # reads ask for the download URL (302, not followed) and then use it: both are requests of the
    # client's own, each with its line; a download URL is a credential, so its line shows only its host
    expected = sent
    assert len(expected) >= 8 and any(r.status == 302 for r in sent)
    assert sorted(lines_by_id) == sorted(r.request_id for r in expected), "exactly one line per request"
    for rec in expected:
        m = lines_by_id[rec.request_id]
        assert (m["method"], int(m["status"])) == (rec.method, rec.status)
        if rec.host == "download":
            assert m["path"].startswith("<download URL on ")
        else:
            assert m["path"] == rec.path
        assert float(m["ms"]) >= 0.0
    assert any(int(m["status"]) == 404 for m in lines_by_id.values()), "errors are logged with their request id"


def test_error_line_and_exception_name_the_same_request_id(emulator: BoxEmulator, fs: BoxFileSystem,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="boxfs")
    with pytest.raises(FileNotFoundError) as info:
        fs.transport.json("GET", fs.transport.api("/folders/88888888/items"), path="nowhere", action="list")
    rid = info.value.box_request_id  # type: ignore[attr-defined]
    assert rid and rid in str(info.value)
    lines = [LINE.match(r.getMessage()) for r in boxfs_records(caplog, logging.DEBUG) if rid in r.getMessage()]
    assert len(lines) == 1 and lines[0] is not None
    assert (lines[0]["method"], lines[0]["path"], lines[0]["status"]) == ("GET", "/2.0/folders/88888888/items", "404")
    assert emulator.request_log.count(request_id=rid, status=404) == 1


@pytest.mark.parametrize(("kind", "named"), [("500", "HTTP 500"), ("503", "HTTP 503"), ("429", "HTTP 429"),
                                             ("drop", "ConnectionError")])
def test_retries_are_logged_at_info(kind: str, named: str, emulator: BoxEmulator, make_fs: Any, fs_user: Any,
                                    caplog: pytest.LogCaptureFixture) -> None:
    fs = make_fs(as_user=fs_user[0], retry=FAST)
    fs.ls("")
    caplog.set_level(logging.DEBUG, logger="boxfs")
    with injected_faults(emulator, rate=1.0, kinds=(kind,), route=r"/folders/0/items$", count=2, retry_after=0):
        fs.ls("", refresh=True)
    infos = [r.getMessage() for r in boxfs_records(caplog, logging.INFO)]
    retries = [m for m in infos if m.startswith("retrying GET /2.0/folders/0/items")]
    assert len(retries) == 2, infos
    assert all(f"after {named}" in m for m in retries)
    assert [int(re.search(r"attempt (\d+)", m)[1]) for m in retries] == [1, 2]  # type: ignore[index]
    if kind == "drop":  # the failed attempts have their DEBUG lines too
        fails = [FAIL_LINE.match(r.getMessage()) for r in boxfs_records(caplog, logging.DEBUG)]
        assert sum(1 for m in fails if m and m["path"] == "/2.0/folders/0/items") == 2


def test_token_refreshes_are_logged_at_info(emulator: BoxEmulator, make_fs: Any, fs_user: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    fs = make_fs(as_user=fs_user[0])
    fs.ls("")
    caplog.set_level(logging.INFO, logger="boxfs")
    emulator.expire_tokens()
    fs.ls("", refresh=True)
    infos = [r.getMessage() for r in boxfs_records(caplog, logging.INFO)]
    assert [m for m in infos if m.startswith("HTTP 401 from GET /2.0/folders/0/items")], infos
    obtained = [m for m in infos if m.startswith("obtained a jwt access token for app ")]
    assert len(obtained) == 1, infos


def test_token_requests_have_debug_lines(emulator: BoxEmulator, jwt_config: str, fs_user: Any,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Token requests are requests too: method, route, status and duration at DEBUG."""
    fs = BoxFileSystem(jwt_config=jwt_config, base_urls=emulator.base_urls, as_user=fs_user[0],
                       skip_instance_cache=True)
    fs.ls("")
    caplog.set_level(logging.DEBUG, logger="boxfs")
    emulator.expire_tokens()
    fs.ls("", refresh=True)
    debug = [r.getMessage() for r in boxfs_records(caplog, logging.DEBUG)]
    assert [m for m in debug if re.match(r"^POST /oauth2/token -> 200 .*\d+\.\d ms$", m)], debug
