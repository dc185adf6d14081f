"""Box View from a filesystem: a file's expiring embed link, and annotator tokens for external users.

Both are what an application hands to a browser: the embed URL goes into an ``iframe`` (it must be opened
within 60 seconds; the preview session then lasts up to an hour), an annotator token into Box's Preview
SDK so that annotations are attributed to one of the application's own users, who has no Box account.
An annotator token is a File Token (``item_preview`` on one file) exchanged with an *actor token*: an
unsigned JWT (``alg: none``) naming the external user (``sub``, at most 48 characters) and the display
name, issued by the app (``iss``, its client id). Box's "New Box View" guide describes both.

A file is named by its path or, where paths cannot be resolved (App Token auth may not list folders),
by its id.
"""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from typing import Any

from boxfs.api.errors import BoxAPIError, is_a_directory_error
from boxfs.auth.endpoint import ACCESS_TOKEN_TYPE, EXCHANGE_GRANT, token_request
from boxfs.config import BoxConfigError

logger = logging.getLogger("boxfs")

ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_AUDIENCE = "https://api.box.com/oauth2/token"
MAX_EXTERNAL_ID = 48  # Box refuses a longer annotator id ("sub")
ACTOR_LIFETIME = 30  # seconds; Box allows at most 60 between issuing and use


def resolve_file(fs: Any, path: str | None, file_id: str | int | None) -> tuple[str, str]:
    """``(file id, what to call it in messages)`` for a path or an id (exactly one of them)."""
    if (path is None) == (file_id is None):
        raise BoxConfigError("name the file by its path or by file_id=, not both and not neither")
    if file_id is not None:
        value = str(file_id).strip()
        if not (value.isascii() and value.isdigit()):  # not "\u0665": Box ids are ASCII digits
            raise BoxConfigError(f"file_id must be a Box file id (digits), not {file_id!r}")
        return value, f"file {value}"
    stripped = fs._strip_protocol(path)
    info = fs.info(stripped)
    if info["type"] != "file":
        raise is_a_directory_error(stripped)
    return str(info["id"]), stripped


def embed_url(fs: Any, path: str | None = None, *, file_id: str | int | None = None) -> str:
    """The file's expiring embed URL (``GET /files/{id}?fields=expiring_embed_link``): one request."""
    fid, where = resolve_file(fs, path, file_id)
    entry = fs.transport.json("GET", fs.transport.api(f"/files/{fid}"), params={"fields": "expiring_embed_link"},
                              path=where, action="get an embed link")
    url = (entry.get("expiring_embed_link") or {}).get("url")
    if not url:
        raise BoxAPIError(f"{where}: Box answered no expiring_embed_link (is the file type previewable?)")
    return str(url)


def actor_token(client_id: str, external_id: str, display_name: str) -> str:
    """An annotator's actor token: the unsigned JWT (``alg: none``) Box's guide describes."""
    if not isinstance(external_id, str) or not external_id.strip():
        raise BoxConfigError("external_id (the annotator's id in your application) must be a non-empty string")
    if len(external_id) > MAX_EXTERNAL_ID:
        raise BoxConfigError(f"external_id is {len(external_id)} characters; Box allows at most {MAX_EXTERNAL_ID} "
                             "(use a shorter unique id for the user)")
    if not isinstance(display_name, str) or not display_name.strip():
        raise BoxConfigError("display_name (shown with the user's annotations) must be a non-empty string")
    if any(unicodedata.category(c) == "Cc" for c in external_id + display_name):
        raise BoxConfigError("external_id and display_name may not contain control characters")
    import jwt  # here, not at the top: PyJWT pulls in cryptography, which no CLI command but this needs

    now = int(time.time())
    claims = {"iss": client_id, "sub": external_id, "box_sub_type": "external", "aud": TOKEN_AUDIENCE,
              "jti": uuid.uuid4().hex, "exp": now + ACTOR_LIFETIME, "iat": now, "name": display_name}
    return jwt.encode(claims, None, algorithm="none")


def annotator_token(fs: Any, path: str | None = None, *, external_id: str, display_name: str,
                    file_id: str | int | None = None) -> str:
    """A token previewing (and annotating) one file as an external user of the application (one request
    to Box's token endpoint; the file's path costs what resolving it costs)."""
    client_id = fs.credentials.client_id
    if not client_id:
        raise BoxConfigError("an annotator token names the app that issues it: give client_id= (the app's "
                             "client id, its API key) together with app_token= or token=")
    if fs.as_user_id:
        raise BoxConfigError("a token used through As-User cannot be exchanged: configure the user as the "
                             "token's subject (user_id=) instead of as_user= to issue annotator tokens")
    actor = actor_token(client_id, external_id, display_name)
    fid, where = resolve_file(fs, path, file_id)
    form = {"grant_type": EXCHANGE_GRANT, "subject_token": fs.provider.token(),
            "subject_token_type": ACCESS_TOKEN_TYPE, "scope": "item_preview",
            "resource": f"{fs.endpoints.base_url}/2.0/files/{fid}",
            "actor_token": actor, "actor_token_type": ID_TOKEN_TYPE}
    body = token_request(fs.endpoints, form, fs.policy, f"an annotator token for {where}")
    logger.info("issued an annotator token for %s (external user %r)", where, external_id)
    return str(body["access_token"])
