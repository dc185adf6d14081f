"""Box's OAuth 2.0 endpoints: JWT bearer, client credentials, authorization code, refresh tokens,
token exchange (downscoping) and revocation; plus the developer-console side that creates apps.

The checks follow Box's JWT guide: the assertion is RS256/384/512-signed with the key the app
registered under ``kid``, ``iss`` is the client id, ``sub`` with ``box_sub_type`` names an
enterprise or user, ``aud`` is Box's token URL, ``exp`` at most 60 s ahead and ``jti`` unique.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from boxfs.emulator.errors import OAuthError
from boxfs.emulator.exchange import BOX_TOKEN_AUDIENCE, TokenExchange
from boxfs.emulator.httpserver import Request, Response, Router
from boxfs.emulator.representations import Representer
from boxfs.emulator.state import DEFAULT_SPACE, BoxState, app_token_hash
from boxfs.emulator.store import now_iso

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
DEFAULT_SCOPES = ("root_readwrite", "manage_managed_users", "manage_app_users")
NO_EXPIRY = float(2**53)  # an App Token generated with "No Expiry"


def _invalid_grant(description: str) -> OAuthError:
    return OAuthError(400, "invalid_grant", description)


class OAuthService:
    """Apps, users' creation, and the token endpoint's grants."""

    def __init__(self, state: BoxState, rep: Representer) -> None:
        self.state = state
        self.store = state.store
        self.exchange = TokenExchange(state, rep, self.issue)

    # -- developer console / admin side -------------------------------------------------------------
    def create_user(self, login: str, name: str | None = None, kind: str = "managed",
                    app_client_id: str | None = None, space_amount: int = DEFAULT_SPACE) -> str:
        now = now_iso()
        uid = self.store.next_id("user", 20000001)
        with self.store.tx() as db:
            db.execute(
                "INSERT INTO users (id, login, name, enterprise_id, kind, app_client_id, created_at, modified_at, space_amount) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, login, name or login.split("@")[0], self.state.enterprise_id, kind, app_client_id, now, now, space_amount),
            )
        return uid

    def _create_app(self, auth_type: str, scopes: Any, as_user_header: bool, enterprise_access: bool,
                    redirect_uri: str | None, name: str | None) -> tuple[str, str]:
        client_id = secrets.token_hex(16)
        client_secret = secrets.token_urlsafe(24)
        app_name = name or f"{auth_type.upper()} app {client_id[:6]}"
        service = self.create_user(f"AutomationUser_{client_id[:8]}@boxdevedition.com", app_name, kind="service",
                                   app_client_id=client_id)
        with self.store.tx() as db:
            db.execute(
                "INSERT INTO apps (client_id, client_secret, enterprise_id, auth_type, scopes, as_user_header, "
                "enterprise_access, service_account_id, redirect_uri, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (client_id, client_secret, self.state.enterprise_id, auth_type,
                 json.dumps(sorted(set(scopes if scopes is not None else DEFAULT_SCOPES))),
                 int(as_user_header), int(enterprise_access), service, redirect_uri, app_name),
            )
        return client_id, client_secret

    def create_jwt_app(self, scopes: Any = None, as_user_header: bool = True, enterprise_access: bool = True,
                       passphrase: str | None = None, name: str | None = None) -> str:
        """Create a JWT app with a Box-generated keypair; return the console's JSON config text."""
        client_id, client_secret = self._create_app("jwt", scopes, as_user_header, enterprise_access, None, name)
        passphrase = passphrase if passphrase is not None else secrets.token_hex(16)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase.encode()),
        ).decode()
        kid = self.add_public_key(client_id, key.public_key())
        config = {
            "boxAppSettings": {
                "clientID": client_id,
                "clientSecret": client_secret,
                "appAuth": {"publicKeyID": kid, "privateKey": private_pem, "passphrase": passphrase},
            },
            "enterpriseID": self.state.enterprise_id,
        }
        return json.dumps(config, indent=2)

    def add_public_key(self, client_id: str, public_key: Any) -> str:
        """Register a public key (as "Add a Public Key" in the console does); return its id."""
        pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        kid = secrets.token_hex(4)
        self.store.execute("INSERT INTO app_keys (kid, client_id, public_pem) VALUES (?, ?, ?)", kid, client_id, pem.decode())
        return kid

    def create_ccg_app(self, scopes: Any = None, as_user_header: bool = True, enterprise_access: bool = True,
                       name: str | None = None) -> tuple[str, str]:
        return self._create_app("ccg", scopes, as_user_header, enterprise_access, None, name)

    def create_oauth_app(self, redirect_uri: str, scopes: Any = None, name: str | None = None) -> tuple[str, str]:
        return self._create_app("oauth", scopes, False, False, redirect_uri, name)

    def create_app_token_app(self, name: str | None = None, expires_in: float | None = None) -> tuple[str, str, str]:
        """A Limited Access App with App Token auth: ``(client_id, primary token, secondary token)``.

        The console shows each App Token once and Box keeps only a hash of it; with no expiry (the
        default) a token works until it is revoked. Content uploaded with them belongs to the app's
        service account.
        """
        client_id, _ = self._create_app("app_token", ("root_readwrite",), False, False, None, name)
        return client_id, self.generate_app_token(client_id, expires_in), self.generate_app_token(client_id, expires_in)

    def generate_app_token(self, client_id: str, expires_in: float | None = None) -> str:
        """A new App Token for the app (the console's "Generate Key"), e.g. to roll one over."""
        token = secrets.token_urlsafe(32)
        expires_at = NO_EXPIRY if expires_in is None else time.time() + expires_in
        self.store.execute(
            "INSERT INTO tokens (token, kind, client_id, user_id, expires_at) VALUES (?, 'app', ?, ?, ?)",
            app_token_hash(token), client_id, self.service_account_id(client_id), expires_at)
        return token

    def revoke_app_token(self, token: str) -> None:
        """Revoke one App Token (the console's "Revoke"); the app's other token keeps working."""
        self.store.execute("UPDATE tokens SET revoked=1 WHERE token=? AND kind='app'", app_token_hash(token))

    def revoke_app(self, client_id: str) -> None:
        with self.store.tx() as db:
            db.execute("UPDATE apps SET revoked=1 WHERE client_id=?", (client_id,))
            db.execute("UPDATE tokens SET revoked=1 WHERE client_id=?", (client_id,))

    def service_account_id(self, client_id: str) -> str:
        row = self.store.one("SELECT service_account_id FROM apps WHERE client_id=?", client_id)
        if row is None:
            raise KeyError(client_id)
        return row["service_account_id"]

    def issue(self, client_id: str, user_id: str, *, refresh: bool = False, scopes: list[str] | None = None,
              resource: str | None = None) -> dict[str, Any]:
        token = secrets.token_urlsafe(24)
        ttl = self.state.token_ttl
        with self.store.tx() as db:
            db.execute(
                "INSERT INTO tokens (token, kind, client_id, user_id, expires_at, scopes, resource) VALUES (?, 'access', ?, ?, ?, ?, ?)",
                (token, client_id, user_id, time.time() + ttl, json.dumps(scopes) if scopes is not None else None, resource),
            )
        body: dict[str, Any] = {"access_token": token, "expires_in": int(ttl), "restricted_to": [], "token_type": "bearer"}
        if refresh:
            rt = secrets.token_urlsafe(32)
            self.store.execute(
                "INSERT INTO tokens (token, kind, client_id, user_id, expires_at) VALUES (?, 'refresh', ?, ?, ?)",
                rt, client_id, user_id, time.time() + 60 * 86400,
            )
            body["refresh_token"] = rt
        return body

    def expire_tokens(self) -> None:
        self.store.execute("UPDATE tokens SET expires_at=? WHERE kind='access'", time.time() - 1)

    # -- the token endpoint ---------------------------------------------------------------------------------
    def token(self, req: Request) -> Response:
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        form = req.json() if ctype == "application/json" else req.form()
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError(400, "invalid_request", "The \"grant_type\" parameter is missing")
        if grant == JWT_GRANT:
            body = self._jwt_grant(form)
        elif grant == "client_credentials":
            body = self._ccg_grant(form)
        elif grant == "authorization_code":
            body = self._code_grant(form)
        elif grant == "refresh_token":
            body = self._refresh_grant(form)
        elif grant == EXCHANGE_GRANT:
            body = self.exchange.grant(form)
        else:
            raise OAuthError(400, "unsupported_grant_type", "Grant type is not supported")
        return Response.json(body)

    def _app(self, form: dict[str, str], auth_type: str | None = None) -> Any:
        client_id = form.get("client_id") or ""
        app = self.store.one("SELECT * FROM apps WHERE client_id=?", client_id)
        if app is None or app["revoked"] or not secrets.compare_digest(app["client_secret"], form.get("client_secret") or ""):
            raise OAuthError(400, "invalid_client", "The client credentials are invalid")
        if auth_type and app["auth_type"] != auth_type:
            raise OAuthError(400, "unauthorized_client", "The authenticated client is not authorized to use this authorization grant type")
        return app

    def _subject_user(self, app: Any, sub_type: str | None, sub: str | None, check: str) -> str:
        if sub_type == "enterprise":
            if sub != app["enterprise_id"]:
                raise _invalid_grant(f"Please check the '{check}' claim. The enterprise is not the app's enterprise or the app is not authorized in it")
            return app["service_account_id"]
        if sub_type == "user":
            user = self.store.one("SELECT * FROM users WHERE id=?", sub or "")
            if user is None:
                raise _invalid_grant(f"Please check the '{check}' claim. The user is not found")
            if user["kind"] == "app" and user["app_client_id"] == app["client_id"]:
                return user["id"]
            if user["kind"] == "service" and user["app_client_id"] == app["client_id"]:
                return user["id"]
            if user["kind"] == "managed" and app["enterprise_access"] and user["enterprise_id"] == app["enterprise_id"]:
                return user["id"]
            raise _invalid_grant(f"Please check the '{check}' claim. The app is not authorized to act as this user")
        raise _invalid_grant("Please check the 'box_sub_type' claim: it must be 'enterprise' or 'user'")

    def _jwt_grant(self, form: dict[str, str]) -> dict[str, Any]:
        app = self._app(form, "jwt")
        assertion = form.get("assertion")
        if not assertion:
            raise OAuthError(400, "invalid_request", "The \"assertion\" parameter is missing")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            raise _invalid_grant("The assertion is not a valid JWT") from None
        key_row = self.store.one("SELECT * FROM app_keys WHERE kid=? AND client_id=?", header.get("kid") or "", app["client_id"])
        if key_row is None:
            raise _invalid_grant("Please check the 'kid' header. No public key with this id is registered for the app")
        if header.get("alg") not in ("RS256", "RS384", "RS512"):
            raise _invalid_grant("Please check the 'alg' header: RS256, RS384 or RS512 is required")
        try:
            claims = jwt.decode(
                assertion, key_row["public_pem"], algorithms=["RS256", "RS384", "RS512"],
                audience=BOX_TOKEN_AUDIENCE, options={"require": ["exp", "iss", "sub", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid_grant("Current date/time MUST be before the expiration date/time listed in the 'exp' claim") from None
        except jwt.InvalidAudienceError:
            raise _invalid_grant("Please check the 'aud' claim. Should be https://api.box.com/oauth2/token") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid_grant(f"Please check the '{exc.claim}' claim: it is required") from None
        except jwt.InvalidSignatureError:
            raise _invalid_grant("Signature verification error. The public key identified by 'kid' must correspond to the private key used for signing") from None
        except jwt.InvalidTokenError as exc:
            raise _invalid_grant(f"The assertion is not valid: {exc}") from None
        if claims.get("iss") != app["client_id"]:
            raise _invalid_grant("Please check the 'iss' claim. It must be the app's client id")
        if claims["exp"] - time.time() > 60:
            raise _invalid_grant("Please check the 'exp' claim. The 'exp' value must be at most 60 seconds in the future")
        jti = str(claims["jti"])
        if not 16 <= len(jti) <= 128:
            raise _invalid_grant("Please check the 'jti' claim. It must be 16 to 128 characters long")
        user_id = self._subject_user(app, claims.get("box_sub_type"), str(claims.get("sub")), "sub")
        with self.store.tx() as db:
            db.execute("DELETE FROM jtis WHERE exp < ?", (int(time.time()) - 120,))
            if db.execute("SELECT 1 FROM jtis WHERE jti=?", (jti,)).fetchone():
                raise _invalid_grant("Please check the 'jti' claim. A unique 'jti' value is required")
            db.execute("INSERT INTO jtis (jti, client_id, exp) VALUES (?, ?, ?)", (jti, app["client_id"], int(claims["exp"])))
        return self.issue(app["client_id"], user_id)

    def _ccg_grant(self, form: dict[str, str]) -> dict[str, Any]:
        app = self._app(form)
        if app["auth_type"] not in ("ccg", "jwt"):
            raise OAuthError(400, "unauthorized_client", "The authenticated client is not authorized to use this authorization grant type")
        sub_type = form.get("box_subject_type")
        if not sub_type:
            raise OAuthError(400, "invalid_request", "The \"box_subject_type\" parameter is missing")
        user_id = self._subject_user(app, sub_type, form.get("box_subject_id"), "box_subject_id")
        return self.issue(app["client_id"], user_id)

    def _code_grant(self, form: dict[str, str]) -> dict[str, Any]:
        app = self._app(form, "oauth")
        code = form.get("code") or ""
        with self.store.tx() as db:
            row = db.execute("SELECT * FROM auth_codes WHERE code=? AND client_id=?", (code, app["client_id"])).fetchone()
            if row is None or row["used"] or row["expires_at"] < time.time():
                raise _invalid_grant("Auth code doesn't exist or is invalid for the client")
            if row["redirect_uri"] and form.get("redirect_uri") and form["redirect_uri"] != row["redirect_uri"]:
                raise _invalid_grant("The redirect_uri does not match the one used to authorize")
            db.execute("UPDATE auth_codes SET used=1 WHERE code=?", (code,))
        return self.issue(app["client_id"], row["user_id"], refresh=True)

    def _refresh_grant(self, form: dict[str, str]) -> dict[str, Any]:
        app = self._app(form, "oauth")
        rt = form.get("refresh_token") or ""
        with self.store.tx() as db:
            row = db.execute("SELECT * FROM tokens WHERE token=? AND kind='refresh' AND client_id=?", (rt, app["client_id"])).fetchone()
            if row is None or row["revoked"] or row["expires_at"] < time.time():
                raise _invalid_grant("Invalid refresh token")
            # Box rotates refresh tokens: the one used is spent.
            db.execute("UPDATE tokens SET revoked=1 WHERE token=?", (rt,))
        return self.issue(app["client_id"], row["user_id"], refresh=True)

    def revoke(self, req: Request) -> Response:
        form = req.form()
        self._app(form)
        self.store.execute("UPDATE tokens SET revoked=1 WHERE token=?", form.get("token") or "")
        return Response(200, b"")

    # -- authorize page ---------------------------------------------------------------------------------------
    def authorize(self, req: Request) -> Response:
        q = dict(req.query)
        if req.method == "POST":
            q.update(req.form())
        app = self.store.one("SELECT * FROM apps WHERE client_id=?", q.get("client_id") or "")
        if app is None or app["revoked"] or q.get("response_type") != "code":
            return Response(400, b"<html><body>Invalid client or response_type</body></html>", {"Content-Type": "text/html"})
        redirect = q.get("redirect_uri") or app["redirect_uri"]
        if app["redirect_uri"] and redirect != app["redirect_uri"]:
            return Response(400, b"<html><body>redirect_uri mismatch</body></html>", {"Content-Type": "text/html"})
        login = q.get("login") if req.method == "POST" else self.state.auto_approve_login
        if login:
            user = self.store.one("SELECT * FROM users WHERE login=? COLLATE NOCASE", login)
            if user is None:
                return Response(400, b"<html><body>Unknown login</body></html>", {"Content-Type": "text/html"})
            code = secrets.token_urlsafe(16)
            self.store.execute(
                "INSERT INTO auth_codes (code, client_id, user_id, redirect_uri, expires_at) VALUES (?, ?, ?, ?, ?)",
                code, app["client_id"], user["id"], redirect, time.time() + 30,
            )
            params = {"code": code}
            if q.get("state"):
                params["state"] = q["state"]
            sep = "&" if "?" in redirect else "?"
            return Response(302, b"", {"Location": redirect + sep + urlencode(params)})
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in q.items() if k != "login"
        )
        page = (
            "<html><body><h1>Grant access to Box</h1>"
            f"<form method='post' action='{html.escape(req.base_url)}/oauth2/authorize'>{fields}"
            "<label>Login <input name='login'></label><button type='submit'>Grant access to Box</button></form></body></html>"
        )
        return Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})

    def register(self, router: Router) -> None:
        router.add("POST", "oauth2", "/oauth2/token", self.token)
        router.add("POST", "oauth2", "/oauth2/revoke", self.revoke)
        router.add("GET", "oauth2", "/oauth2/authorize", self.authorize)
        router.add("POST", "oauth2", "/oauth2/authorize", self.authorize)

