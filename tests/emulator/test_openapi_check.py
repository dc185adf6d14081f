"""Tests of the OpenAPI validation helper itself: a checker that accepts everything would prove nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from box_sdk_gen import BoxClient

from .conftest import RECORDER
from .openapi_check import OpenAPISpec, ResponseRecorder, load_spec

FOLDER = {
    "id": "12345",
    "type": "folder",
    "etag": "1",
    "sequence_id": "3",
    "name": "Contracts",
    "created_at": "2012-12-12T10:53:43-08:00",
    "modified_at": "2012-12-12T10:53:43Z",
    "parent": None,
    "path_collection": {"total_count": 1, "entries": [{"id": "0", "type": "folder", "name": "All Files"}]},
    "item_status": "active",
}
FILE = {
    "id": "42",
    "type": "file",
    "etag": "0",
    "sequence_id": "0",
    "name": "a.txt",
    "sha1": "85136c79cbf9fe36bb9d05d0639c70c265c18d37",
    "size": 629644,
    "content_modified_at": "2012-12-12T10:53:43.123-08:00",
    "file_version": {"id": "7", "type": "file_version", "sha1": "85136c79cbf9fe36bb9d05d0639c70c265c18d37"},
}


@pytest.fixture(scope="module")
def spec() -> OpenAPISpec:
    return load_spec()


@pytest.mark.parametrize(
    ("url_path", "template"),
    [
        ("/2.0/folders/0/items", "/folders/{folder_id}/items"),
        ("/2.0/folders/0", "/folders/{folder_id}"),
        ("/api/2.0/files/content", "/files/content"),
        ("/2.0/users/me", "/users/me"),
        ("/2.0/users/77", "/users/{user_id}"),
        ("/oauth2/token", "/oauth2/token"),
        ("/api/2.0/files/upload_sessions/abc/commit", "/files/upload_sessions/{upload_session_id}/commit"),
        ("/api/2.0/files/9/upload_sessions", "/files/{file_id}/upload_sessions"),
        ("/download/sometoken", None),
    ],
)
def test_paths_map_to_spec_templates(spec: OpenAPISpec, url_path: str, template: str | None) -> None:
    assert spec.match_path(url_path) == template


def test_valid_bodies_pass(spec: OpenAPISpec) -> None:
    assert spec.validate("GET", "/folders/{folder_id}", 200, FOLDER) == []
    assert spec.validate("GET", "/files/{file_id}", 200, FILE) == []
    listing = {"total_count": 2, "offset": 0, "limit": 100, "entries": [FOLDER, FILE]}
    assert spec.validate("GET", "/folders/{folder_id}/items", 200, listing) == []
    assert spec.validate("POST", "/files/content", 201, {"total_count": 1, "entries": [FILE]}) == []
    token = {"access_token": "x", "expires_in": 3600, "token_type": "bearer", "restricted_to": []}
    assert spec.validate("POST", "/oauth2/token", 200, token) == []
    assert (
        spec.validate("POST", "/oauth2/token", 400, {"error": "invalid_grant", "error_description": "x"})
        == []
    )


def test_error_codes_beyond_the_spec_enum_are_accepted(spec: OpenAPISpec) -> None:
    """Box documents item_name_in_use for 409s even though ClientError.code's enum omits it."""
    error = {
        "type": "error",
        "status": 409,
        "code": "item_name_in_use",
        "message": "Item with the same name already exists",
        "request_id": "abc",
        "context_info": {"conflicts": [FOLDER]},
    }
    assert spec.validate("POST", "/folders", 409, error) == []


def test_preflight_conflict_may_be_one_object_or_a_list(spec: OpenAPISpec) -> None:
    """Box answers the preflight's 409 with one conflict object; the spec's list stays accepted, other
    shapes do not."""
    error = {"type": "error", "status": 409, "code": "item_name_in_use", "message": "taken", "request_id": "r"}
    for conflicts in (FILE, FOLDER, [FILE]):
        assert spec.validate("OPTIONS", "/files/content", 409, error | {"context_info": {"conflicts": conflicts}}) == []
    assert spec.validate("OPTIONS", "/files/content", 409, error | {"context_info": {"conflicts": "x"}})
    assert spec.validate("OPTIONS", "/files/content", 409, error | {"context_info": {"conflicts": {"type": "file"}}})


def test_wrong_types_fail(spec: OpenAPISpec) -> None:
    errors = spec.validate("GET", "/folders/{folder_id}", 200, {**FOLDER, "name": 5})
    assert len(errors) == 1 and "/name" in errors[0] and "not of type 'string'" in errors[0]
    errors = spec.validate("GET", "/files/{file_id}", 200, {**FILE, "size": "629644"})
    assert any("/size" in e for e in errors)
    # a nullable field still has to have the right shape when it is not null
    errors = spec.validate("GET", "/folders/{folder_id}", 200, {**FOLDER, "parent": {"id": 3}})
    assert any("/parent" in e for e in errors)
    # an entry that is neither file, folder nor web link
    listing = {"total_count": 1, "entries": [{"id": "1", "type": "banana"}]}
    assert spec.validate("GET", "/folders/{folder_id}/items", 200, listing)
    # error bodies: status must be an integer, type must be "error"
    assert spec.validate("GET", "/folders/{folder_id}", 404, {"type": "error", "status": "404"})
    assert spec.validate("GET", "/folders/{folder_id}", 404, {"type": "oops", "status": 404})
    assert spec.validate("POST", "/oauth2/token", 200, {"access_token": "x", "expires_in": "3600"})


def test_timestamps_must_be_rfc3339(spec: OpenAPISpec) -> None:
    assert spec.validate("GET", "/folders/{folder_id}", 200, {**FOLDER, "created_at": "12/12/2012"})
    assert spec.validate("GET", "/folders/{folder_id}", 200, {**FOLDER, "created_at": "2012-12-12 10:53:43"})


def test_undocumented_json_is_reported(spec: OpenAPISpec) -> None:
    # 202 from commit is documented with a Retry-After header and no body
    assert spec.validate("POST", "/files/upload_sessions/{upload_session_id}/commit", 202, {"x": 1})


class _Handler(BaseHTTPRequestHandler):
    """A tiny real HTTP server answering fixed bodies, to exercise the response hook end to end."""

    ROUTES: dict[str, tuple[int, str, bytes]] = {
        "/2.0/folders/1": (200, "application/json", json.dumps(FOLDER).encode()),
        "/2.0/folders/2": (200, "application/json", json.dumps({**FOLDER, "name": 5}).encode()),
        "/2.0/folders/3": (404, "text/html", b"<h1>Not Found</h1>"),
        "/2.0/folders/4": (200, "application/json", b"{not json"),
        "/download/abc": (200, "application/octet-stream", b"\x00" * 10),
        "/api/2.0/files/upload_sessions/S1/plan": (200, "application/json", b'{"hits": []}'),
        "/2.0/made/up": (200, "application/json", b"{}"),
    }

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status, ctype, body = self.ROUTES[self.path]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass


@pytest.fixture(scope="module")
def fixed_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_response_hook_over_http(spec: OpenAPISpec, fixed_server: str) -> None:
    recorder = ResponseRecorder(spec)
    with requests.Session() as session:
        recorder.install(session)
        recorder.install(session)  # idempotent: one hook, one check per response
        session.get(fixed_server + "/2.0/folders/1")
        assert recorder.take_failures() == []
        assert recorder.checked == 1
        session.get(fixed_server + "/2.0/folders/2")
        failures = recorder.take_failures()
        assert len(failures) == 1 and "/name" in failures[0]
        session.get(fixed_server + "/2.0/folders/3")
        assert "Content-Type 'text/html'" in recorder.take_failures()[0]
        session.get(fixed_server + "/2.0/folders/4")
        assert "not JSON" in recorder.take_failures()[0]
        session.get(fixed_server + "/api/2.0/files/upload_sessions/S1/plan")  # known, newer than the spec
        assert recorder.take_failures() == []
        session.get(fixed_server + "/2.0/made/up")
        assert "does not document" in recorder.take_failures()[0]
        response = session.get(fixed_server + "/download/abc", stream=True)
        assert recorder.take_failures() == []
        assert response.raw.read() == b"\x00" * 10  # a binary body is left unread for the caller


def test_nullable_written_as_allof_member(spec: OpenAPISpec) -> None:
    """``File.shared_link`` is ``allOf: [<object>, {description}, {nullable: true}]`` in Box's spec."""
    assert spec.validate("GET", "/files/{file_id}", 200, {**FILE, "shared_link": None}) == []
    assert spec.validate("GET", "/files/{file_id}", 200, {**FILE, "shared_link": "nope"})
    # nullable: false members do not make a field nullable
    assert spec.validate("GET", "/files/{file_id}", 200, {**FILE, "owned_by": None})


def test_sdk_traffic_passes_through_the_checker(admin_client: BoxClient) -> None:
    """The suite-wide guarantee rests on the SDK using the checked session: prove that it does."""
    before_all, before_json = RECORDER.checked, RECORDER.json_checked
    admin_client.users.get_user_me()
    admin_client.folders.get_folder_items("0")
    assert RECORDER.checked >= before_all + 2 and RECORDER.json_checked >= before_json + 2
