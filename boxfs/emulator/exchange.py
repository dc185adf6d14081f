"""Token exchange (``urn:ietf:params:oauth:grant-type:token-exchange``): downscoped, file and annotator tokens.

Box's rules, from its downscoping guide and the Box View guide (App Token auth, File Tokens, Annotator
Tokens): the new token holds at most the subject token's scopes; ``resource`` is the full API URL of one
file or folder (``https://api.box.com/2.0/files/123``), and one that is malformed, names nothing, or is
not viewable with the subject token is ``400 invalid_resource``; an ``actor_token`` (``actor_token_type``
``urn:ietf:params:oauth:token-type:id_token``) is an unsigned JWT (``alg: none``) naming an external
annotator (``box_sub_type: external``, ``sub`` of at most 48 characters, a display ``name``), and turns
the file token into an annotator token. Refusals are OAuth errors (``error``, ``error_description``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

import jwt

from boxfs.emulator.errors import OAuthError
from boxfs.emulator.representations import Representer
from boxfs.emulator.state import ROOT, BoxState

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
BOX_TOKEN_AUDIENCE = "https://api.box.com/oauth2/token"
#: Every scope a token may be exchanged for: Box's downscoping guide and UI Elements scopes, plus the
#: Box View guide's File Token scopes (``item_content_upload``).
DOWNSCOPES = frozenset({
    "item_preview", "item_read", "item_download", "item_upload", "item_content_upload", "item_delete",
    "item_rename", "item_share", "item_comment", "annotation_edit", "annotation_view_all",
    "annotation_view_self", "base_explorer", "base_picker", "base_preview", "base_upload", "base_sidebar",
    "root_readonly", "root_readwrite",
})
MAX_EXTERNAL_ID = 48  # the annotator's external id ("sub"), as the Box View guide limits it
_RESOURCE = re.compile(r"^https?://[^/?#]+(?:/api)?/2\.0/(files|folders)/(\d+)/?$")


def _invalid_resource(why: str) -> OAuthError:
    return OAuthError(400, "invalid_resource", f"The target resource is invalid: {why}")


def _bad_actor(why: str) -> OAuthError:
    return OAuthError(400, "invalid_request", f"The actor token is invalid: {why}")


def parse_resource(url: str) -> tuple[str, str]:
    """``(type, id)`` of a resource URL (``.../2.0/files/{id}`` or ``.../2.0/folders/{id}``)."""
    m = _RESOURCE.match(url.strip())
    if m is None:
        raise _invalid_resource("expected the item's API URL, such as https://api.box.com/2.0/files/123")
    return ("file" if m.group(1) == "files" else "folder"), m.group(2)


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    """A NumericDate claim: a finite JSON number (a string, a boolean or NaN is a malformed token)."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad_actor(f"'{name}' must be a NumericDate (seconds since the epoch, a number)")
    return float(value)


def actor_claims(token: str, token_type: str | None, client_id: str) -> dict[str, Any]:
    """The claims of a valid actor token (an annotator), or the OAuth error saying what is wrong."""
    if token_type != ID_TOKEN_TYPE:
        raise OAuthError(400, "invalid_request", f"actor_token_type must be {ID_TOKEN_TYPE}")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False, "verify_aud": False})
    except jwt.InvalidTokenError:
        raise _bad_actor("not a JWT (base64url header and claims, an empty signature)") from None
    if str(header.get("alg", "")).lower() != "none" or token.rsplit(".", 1)[-1]:
        raise _bad_actor("the 'alg' header must be 'none' and the signature empty")
    missing = [c for c in ("iss", "sub", "aud", "jti", "exp", "box_sub_type", "name") if c not in claims]
    if missing:
        raise _bad_actor(f"the {', '.join(repr(c) for c in missing)} claim is required")
    if claims["iss"] != client_id:
        raise _bad_actor("'iss' must be the API key (client id) of the app the subject token belongs to")
    if claims["box_sub_type"] != "external":
        raise _bad_actor("'box_sub_type' must be 'external'")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub.strip() or len(sub) > MAX_EXTERNAL_ID:
        raise _bad_actor(f"'sub' (the external user id) must be a string of 1 to {MAX_EXTERNAL_ID} characters")
    if not isinstance(claims["name"], str) or not claims["name"].strip():
        raise _bad_actor("'name' (the annotator's display name) must be a non-empty string")
    if claims["aud"] != BOX_TOKEN_AUDIENCE:
        raise _bad_actor(f"'aud' must be {BOX_TOKEN_AUDIENCE}")
    if not isinstance(claims["jti"], str) or not 16 <= len(claims["jti"]) <= 128:
        raise _bad_actor("'jti' must be a string 16 to 128 characters long")
    now = time.time()
    exp = _numeric_date(claims, "exp")
    if exp <= now:
        raise _bad_actor("it has expired ('exp')")
    if exp - now > 60:
        raise _bad_actor("'exp' must be at most 60 seconds in the future")
    for claim in ("iat", "nbf"):
        if claim in claims and _numeric_date(claims, claim) > now + 5:
            raise _bad_actor(f"'{claim}' is in the future")
    return claims


class TokenExchange:
    """The token-exchange grant: checks the subject, scopes, resource and actor, then issues."""

    def __init__(self, state: BoxState, rep: Representer, issue: Callable[..., dict[str, Any]]) -> None:
        self.state = state
        self.store = state.store
        self.rep = rep
        self.issue = issue

    def grant(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise OAuthError(400, "invalid_request", "subject_token_type must be " + ACCESS_TOKEN_TYPE)
        row = self.state.token_row(form.get("subject_token") or "")
        if row is None or row["revoked"] or row["expires_at"] <= time.time():
            raise OAuthError(400, "invalid_grant", "The subject token is invalid or expired")
        requested = (form.get("scope") or "").split()
        if not requested:
            raise OAuthError(400, "invalid_request", "The \"scope\" parameter is missing")
        unknown = [s for s in requested if s not in DOWNSCOPES]
        if unknown:
            raise OAuthError(400, "invalid_scope", f"Unknown scopes: {' '.join(unknown)}")
        if row["scopes"] is not None and not set(requested) <= set(json.loads(row["scopes"])):
            raise OAuthError(400, "invalid_scope", "Cannot exchange for scopes the subject token does not hold")
        resource = form.get("resource") or None
        item = self._resource_item(row, resource) if resource else None
        if resource is None:
            resource = row["resource"]
        actor = None
        if form.get("actor_token") or form.get("actor_token_type"):
            if item is None:
                raise OAuthError(400, "invalid_request", "An annotator token needs the file's \"resource\"")
            actor = actor_claims(form.get("actor_token") or "", form.get("actor_token_type"), row["client_id"])
            self._spend_jti(row["client_id"], actor)
        body = self.issue(row["client_id"], row["user_id"], scopes=requested, resource=resource)
        if actor is not None:
            self.store.execute("INSERT INTO token_actors (token, external_id, name) VALUES (?, ?, ?)",
                               body["access_token"], str(actor["sub"]), actor["name"])
        body["issued_token_type"] = ACCESS_TOKEN_TYPE
        if item is None and resource:
            item = self._held_item(row, resource)
        body["restricted_to"] = [
            {"scope": s, "object": self.rep.item(item, None, mini=True)} for s in requested
        ] if item is not None else []
        return body

    def _resource_item(self, subject: Any, resource: str) -> Any:
        """The item a ``resource`` names, as the subject token's user may see it."""
        kind, item_id = parse_resource(resource)
        if item_id == ROOT:
            if kind != "folder":
                raise _invalid_resource("no such file")
            item: Any = self.state.root_row(subject["user_id"])
        else:
            item = self.store.one("SELECT * FROM items WHERE id=? AND type=? AND trashed_at IS NULL", item_id, kind)
            # an item the subject sees (owns, or is a collaborator on), or (a service account's token) an
            # item of a user it may act as: the As-User header then applies when the new token is used
            if item is None or (self.state.role_of(subject["user_id"], item) is None and not self.state.can_act_as(
                    subject["client_id"], subject["user_id"], item["owner_id"])):
                raise _invalid_resource(f"no {kind} {item_id} is viewable with the subject token")
        if subject["resource"] and not self.state.within(subject["resource"], item):
            raise _invalid_resource("outside the subject token's own resource")
        return item

    def _held_item(self, subject: Any, resource: str) -> Any:
        """The item of a resource inherited from the subject token (None if it has gone since)."""
        try:
            return self._resource_item(subject, resource)
        except OAuthError:
            return None

    def _spend_jti(self, client_id: str, claims: dict[str, Any]) -> None:
        """An actor token is single-use, like a JWT assertion: its ``jti`` may not be replayed."""
        jti = str(claims["jti"])
        with self.store.tx() as db:
            db.execute("DELETE FROM jtis WHERE exp < ?", (int(time.time()) - 120,))
            if db.execute("SELECT 1 FROM jtis WHERE jti=?", (jti,)).fetchone():
                raise _bad_actor("its 'jti' was already used")
            db.execute("INSERT INTO jtis (jti, client_id, exp) VALUES (?, ?, ?)", (jti, client_id, int(float(claims["exp"]))))

