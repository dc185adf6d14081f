"""Validate the emulator's JSON responses against Box's official OpenAPI description.

Why: the emulator is only useful if it answers as Box documents. Box publishes an OpenAPI 3.0 description
of its API (vendored in ``data/box-openapi.json.gz``); every JSON body the emulator tests receive is checked
against the schema Box documents for that (method, path template, status code), so a field of the wrong type,
a missing ``type`` discriminator or a wrongly-shaped error fails the test that received it.

OpenAPI 3.0 schemas are not JSON Schema, so they are translated before use (Draft 2020-12):

* ``nullable: true`` becomes ``anyOf: [<schema>, {type: null}]`` (works with ``allOf`` + ``$ref`` too; Box
  also writes it as a bare ``allOf`` member ``{nullable: true}``, which makes the whole ``allOf`` nullable);
* ``oneOf`` becomes ``anyOf``: Box's variants (file / folder / web link, mini / full) do not forbid extra
  properties, so a valid full file also matches the mini schema and ``oneOf`` would reject it;
* ``$ref`` to ``#/components/schemas/X`` is rewritten to an absolute URI served from one registry;
* ``example``, ``x-box-*``, ``discriminator`` and friends are dropped; extra properties stay allowed, as in
  Box's schemas. ``date-time`` formats are asserted (Box sends RFC 3339 timestamps).

A few places where the published description is known to be narrower than Box's documented behaviour are
relaxed explicitly in :data:`RELAXATIONS` (or widened in :data:`ALTERNATIVES`), each with its reason, instead of
silently weakening everything.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_ENV = "BOXFS_OPENAPI_SPEC"
VENDORED_SPEC = Path(__file__).with_name("data") / "box-openapi.json.gz"
BASE_URI = "urn:box-openapi"

#: Keywords of OpenAPI schema objects that carry no validation meaning for a response body.
_DROPPED = {
    "example",
    "examples",
    "discriminator",
    "xml",
    "externalDocs",
    "deprecated",
    "nullable",
}

_ACCESSED_WHY = (
    "the shared-link object's `required` list names `accessed`, a property it does not define (its "
    "properties have `access`); no Box shared link carries an `accessed` field"
)

#: (schema name, JSON pointer inside that schema, keyword to drop — or ``keyword:item`` to drop one item
#: of a list-valued keyword —, why).
RELAXATIONS: tuple[tuple[str, str, str, str], ...] = (
    ("File", "/allOf/1/properties/shared_link/allOf/0", "required:accessed", _ACCESSED_WHY),
    ("Folder", "/allOf/1/properties/shared_link/allOf/0", "required:accessed", _ACCESSED_WHY),
    (
        "ClientError",
        "/properties/code",
        "enum",
        # The spec enumerates 17 generic codes, but Box's own docs (and this very spec's response
        # descriptions: POST /folders 409 "item_name_in_use", DELETE /folders/{id} 400 "folder_not_empty",
        # POST /files/upload_sessions 400 "file_size_too_small", 403 "access_denied_insufficient_permissions")
        # name many more specific codes that real Box returns.
        "Box documents endpoint-specific error codes (item_name_in_use, ...) absent from this enum",
    ),
)

#: Places where Box answers a second shape the description does not admit, as (schema name, JSON pointer of
#: the property inside that schema, the alternative schema, why); the property becomes ``anyOf`` of both.
ALTERNATIVES: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    (
        "ConflictError",
        "/allOf/1/properties/context_info/properties/conflicts",
        {"anyOf": [{"$ref": "#/components/schemas/FileConflict"}, {"$ref": "#/components/schemas/Folder--Mini"}]},
        # The spec types it as a list, but Box answers the preflight's (and uploads') 409 with one object,
        # the existing file, and clients depend on it: rclone's Box backend and Box's older Python SDK read
        # context_info.conflicts.id (docs/emulator.md, "Where Box differs from its OpenAPI description").
        "Box answers the preflight's conflict as one object (the existing file or folder), not a list",
    ),
    (
        "ResourceScope",
        "/properties/scope",
        {"enum": ["item_content_upload", "item_comment", "base_sidebar", "root_readonly", "root_readwrite"]},
        # Box's View guide documents File Tokens with the item_content_upload scope and its downscoping
        # guide the UI Elements / root scopes; a token restricted to them lists them in restricted_to.
        "scopes Box documents for downscoped and File Tokens that the enum omits",
    ),
)

#: Routes Box serves but the vendored description does not list, as (regex on the spec-relative path, why).
#: Their responses cannot be checked against a schema; everything else undocumented is reported.
UNDOCUMENTED_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^/files/upload_sessions/[^/]+/plan$"),
        "upload-session plan (cached parts), called by box_sdk_gen 10.x upload_big_file_version; "
        "newer than the vendored spec",
    ),
    (
        re.compile(r"^/realtime/subscribe$"),
        "the long-poll (real-time) server whose URL OPTIONS /events hands out; Box's events guide documents "
        "its {\"message\": \"new_change\" | \"reconnect\"} answers, the spec does not",
    ),
)

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

FORMAT_CHECKER = FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    """Box timestamps are RFC 3339 (``2012-12-12T10:53:43-08:00``); anything else breaks SDK parsing."""
    return not isinstance(value, str) or bool(_RFC3339.match(value))


@FORMAT_CHECKER.checks("date")
def _is_date(value: object) -> bool:
    """Plain dates (``2012-12-12``), used e.g. for retention and expiry dates."""
    return not isinstance(value, str) or bool(_DATE.match(value))


def _translate(schema: Any) -> Any:
    """Translate one OpenAPI 3.0 schema object (recursively) into a Draft 2020-12 schema."""
    if isinstance(schema, bool) or not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROPPED or key.startswith("x-"):
            continue
        if key == "$ref":
            out[key] = BASE_URI + value if value.startswith("#") else value
        elif key == "properties":
            out[key] = {name: _translate(sub) for name, sub in value.items()}
        elif key in ("items", "not", "additionalProperties"):
            out[key] = _translate(value)
        elif key in ("allOf", "anyOf"):
            out[key] = [_translate(sub) for sub in value]
        elif key == "oneOf":
            variants = [_translate(sub) for sub in value]
            if "anyOf" in schema:  # keep both constraints
                out.setdefault("allOf", []).append({"anyOf": variants})
            else:
                out["anyOf"] = variants
        else:
            out[key] = value
    if schema.get("nullable") is True or any(_bare_nullable(m) for m in schema.get("allOf", ())):
        return {"anyOf": [out, {"type": "null"}]}
    return out


_ANNOTATIONS = {"nullable", "description", "title", "example", "examples", "deprecated"}


def _bare_nullable(member: Any) -> bool:
    """Box writes "this field may be null" as a separate ``allOf`` member ``{nullable: true}`` (e.g.
    ``File.shared_link``, ``File.lock``); by OpenAPI 3.0's letter it constrains nothing, so the intent is
    only honoured by making the whole ``allOf`` nullable."""
    return (
        isinstance(member, dict)
        and member.get("nullable") is True
        and set(member) <= _ANNOTATIONS | {k for k in member if k.startswith("x-")}
    )


def _load_spec_document(path: Path) -> dict[str, Any]:
    """Read the spec, plain or gzip-compressed."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def _apply_relaxations(schemas: dict[str, Any]) -> None:
    """Drop the keywords listed in :data:`RELAXATIONS` and admit :data:`ALTERNATIVES` (before translation)."""
    for name, pointer, keyword, _why in RELAXATIONS:
        node = schemas[name]
        for part in pointer.strip("/").split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        if ":" in keyword:
            key, item = keyword.split(":", 1)
            node[key] = [x for x in node[key] if x != item]
        else:
            node.pop(keyword, None)
    for name, pointer, alternative, _why in ALTERNATIVES:
        *parents, last = pointer.strip("/").split("/")
        node = schemas[name]
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = {"anyOf": [node[last], alternative]}


@dataclass(frozen=True)
class _Template:
    """One OpenAPI path template, compiled for matching request paths against it."""

    template: str
    regex: re.Pattern[str]
    rank: tuple[int, ...]


def _compile_template(template: str) -> _Template:
    segments = template.strip("/").split("/")
    parts = ["[^/]+" if seg.startswith("{") and seg.endswith("}") else re.escape(seg) for seg in segments]
    # Prefer literal segments, leftmost first: /files/content beats /files/{file_id},
    # /users/me beats /users/{user_id}.
    rank = tuple(0 if seg.startswith("{") else 1 for seg in segments)
    return _Template(template, re.compile("^/" + "/".join(parts) + "/?$"), rank)


class OpenAPISpec:
    """Box's OpenAPI description, translated once, able to validate (method, template, status, body)."""

    #: URL prefixes that Box's servers put in front of the spec's paths: the upload host's ``/api/2.0``,
    #: the API host's ``/2.0``; OAuth paths (``/oauth2/token``) are spec paths as they are.
    PREFIXES = ("/api/2.0", "/2.0")

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        schemas = json.loads(json.dumps(document["components"]["schemas"]))
        _apply_relaxations(schemas)
        translated = {"components": {"schemas": {k: _translate(v) for k, v in schemas.items()}}}
        resource = Resource(contents=translated, specification=DRAFT202012)
        self._registry: Registry = Registry().with_resource(BASE_URI, resource)
        self._templates = sorted(
            (_compile_template(t) for t in document["paths"]),
            key=lambda t: (len(t.rank), t.rank),
            reverse=True,
        )
        self._validators: dict[tuple[str, str, str], Draft202012Validator | None] = {}
        self._lock = threading.Lock()

    # -- lookup ---------------------------------------------------------------------------------------

    def match_path(self, url_path: str) -> str | None:
        """The spec path template a request path (as sent to the emulator) is for, or None."""
        path = self._strip_prefix(url_path)
        for template in self._templates:
            if template.regex.match(path):
                return template.template
        return None

    def is_known_undocumented(self, url_path: str) -> bool:
        """Whether a path is one of :data:`UNDOCUMENTED_ROUTES` (Box has it, the spec does not)."""
        path = self._strip_prefix(url_path)
        return any(pattern.match(path) for pattern, _why in UNDOCUMENTED_ROUTES)

    def _strip_prefix(self, url_path: str) -> str:
        for prefix in self.PREFIXES:
            if url_path == prefix or url_path.startswith(prefix + "/"):
                return url_path[len(prefix) :]
        return url_path

    def response_entry(self, method: str, template: str, status: int) -> tuple[str, dict[str, Any]] | None:
        """The documented response object for a status (exact, then ``4XX``-style, then ``default``)."""
        operation = self.document["paths"].get(template, {}).get(method.lower())
        if operation is None:
            return None
        responses = operation.get("responses", {})
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                return key, responses[key]
        return None

    def _validator(self, method: str, template: str, status_key: str) -> Draft202012Validator | None:
        cache_key = (method.lower(), template, status_key)
        with self._lock:
            if cache_key not in self._validators:
                response = self.document["paths"][template][method.lower()]["responses"][status_key]
                media = response.get("content", {}).get("application/json")
                if media is None or "schema" not in media:
                    self._validators[cache_key] = None
                else:
                    schema = _translate(media["schema"])
                    self._validators[cache_key] = Draft202012Validator(
                        schema, registry=self._registry, format_checker=FORMAT_CHECKER
                    )
            return self._validators[cache_key]

    def schema_name(self, method: str, template: str, status: int) -> str | None:
        """Human-readable name of the documented schema (for messages)."""
        entry = self.response_entry(method, template, status)
        if entry is None:
            return None
        media = entry[1].get("content", {}).get("application/json", {})
        ref = media.get("schema", {}).get("$ref", "")
        return ref.rsplit("/", 1)[-1] or ("inline" if media else None)

    # -- validation -----------------------------------------------------------------------------------

    def validate(self, method: str, template: str, status: int, body: Any) -> list[str]:
        """Errors of a decoded JSON body against the documented schema; empty when it conforms."""
        entry = self.response_entry(method, template, status)
        if entry is None:
            return [f"{method.upper()} {template} -> {status}: status not documented and no default response"]
        validator = self._validator(method, template, entry[0])
        if validator is None:
            return [
                f"{method.upper()} {template} -> {status}: a JSON body where Box documents none "
                f"(response {entry[0]!r} has no application/json content)"
            ]
        errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
        messages = [
            f"{method.upper()} {template} -> {status} ({self.schema_name(method, template, status)}): "
            f"at /{'/'.join(str(p) for p in err.absolute_path)}: {_short(_explain(err))}"
            for err in errors
        ]
        return list(dict.fromkeys(messages))  # allOf layers can report one problem twice

    def validate_response(self, response: requests.Response) -> list[str]:
        """Check one HTTP response the tests received; reads the body only when it is (or must be) JSON."""
        request = response.request
        method = (request.method or "GET").upper()
        url_path = urlsplit(response.url or request.url or "").path
        template = self.match_path(url_path)
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        is_json = content_type == "application/json" or content_type.endswith("+json")
        if template is None:
            if is_json and not self.is_known_undocumented(url_path):
                return [
                    f"{method} {url_path} -> {response.status_code}: JSON from a path Box does not document"
                ]
            return []  # e.g. the download host (/download/{token}), which Box does not describe either
        entry = self.response_entry(method, template, response.status_code)
        documents_json = bool(entry and "application/json" in entry[1].get("content", {}))
        if not is_json:
            # An error or API answer documented as JSON must come as JSON (HEAD has no body).
            if documents_json and method != "HEAD" and response.content:
                return [
                    f"{method} {template} -> {response.status_code}: Content-Type {content_type!r}, "
                    "Box documents application/json"
                ]
            return []
        if not response.content:
            return (
                []
                if not documents_json or response.status_code in (202, 204)
                else [
                    f"{method} {template} -> {response.status_code}: empty body, Box documents a JSON object"
                ]
            )
        try:
            body = response.json()
        except ValueError:
            return [f"{method} {template} -> {response.status_code}: Content-Type JSON but body is not JSON"]
        return self.validate(method, template, response.status_code, body)


def _explain(error: ValidationError) -> str:
    """The most specific message: ``anyOf`` (from ``nullable``/``oneOf``) hides the real cause in its context."""
    if error.context:
        # the {"type": "null"} branch added for ``nullable`` is never the interesting one
        real = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        inner = best_match(real or error.context)
        if inner is not None:
            where = "/".join(str(p) for p in inner.relative_path)
            return (f"{where}: " if where else "") + _explain(inner)
    return error.message


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + "..."


@lru_cache(maxsize=1)
def load_spec() -> OpenAPISpec:
    """The spec, loaded and translated once per process (``$BOXFS_OPENAPI_SPEC`` overrides the vendored copy)."""
    path = Path(os.environ.get(SPEC_ENV) or VENDORED_SPEC)
    return OpenAPISpec(_load_spec_document(path))


@dataclass(eq=False)
class ResponseRecorder:
    """A ``requests`` response hook that validates every response and remembers what it saw.

    Install it on every session the tests use (the SDK's, raw ``requests`` ones); the autouse fixture
    fails the test if :attr:`failures` is non-empty after it ran.
    """

    spec: OpenAPISpec
    failures: list[str] = field(default_factory=list)
    checked: int = 0
    json_checked: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        problems = self.spec.validate_response(response)
        is_json = "json" in response.headers.get("Content-Type", "")
        with self._lock:
            self.checked += 1
            self.json_checked += int(is_json)
            self.failures.extend(problems)
        return response

    def install(self, session: requests.Session) -> requests.Session:
        """Add this hook to a session (idempotent) and return the session."""
        hooks = session.hooks.setdefault("response", [])
        if self not in hooks:
            hooks.append(self)
        return session

    def take_failures(self) -> list[str]:
        """Return and forget the failures collected so far."""
        with self._lock:
            failures, self.failures = self.failures, []
        return failures
