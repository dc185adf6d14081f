"""Users routes: ``GET /users`` (``filter_term``), ``GET /users/me``, ``GET /users/{id}``, ``POST /users``.

Listing and creating users needs the "manage users" scopes and a service account (or admin)
caller; an app with App Access only sees its own app users, as Box's access levels define.
"""

from __future__ import annotations

from typing import Any

from boxfs.emulator.errors import ApiError, bad_request, not_found
from boxfs.emulator.httpserver import Request, Response, Router
from boxfs.emulator.oauth import OAuthService
from boxfs.emulator.representations import Representer, parse_fields
from boxfs.emulator.state import DEFAULT_SPACE, BoxState, Principal

_DENIED = ("access_denied_insufficient_permissions", "Access denied - insufficient permission")


class UserRoutes:
    def __init__(self, state: BoxState, rep: Representer, oauth: OAuthService) -> None:
        self.state = state
        self.store = state.store
        self.rep = rep
        self.oauth = oauth

    def _admin(self, p: Principal) -> Any:
        caller = self.store.one("SELECT * FROM users WHERE id=?", p.user_id)
        app = self.store.one("SELECT * FROM apps WHERE client_id=?", p.client_id)
        if caller is None or caller["kind"] != "service" or p.downscoped:
            raise ApiError(403, *_DENIED)
        if not ({"manage_managed_users", "manage_app_users", "manage_enterprise"} & set(p.scopes)):
            raise ApiError(403, *_DENIED)
        return app

    def _visible(self, app: Any, user: Any) -> bool:
        if user["kind"] in ("app", "service"):
            return user["app_client_id"] == app["client_id"] or bool(app["enterprise_access"])
        return bool(app["enterprise_access"]) and user["enterprise_id"] == app["enterprise_id"]

    def list_users(self, req: Request) -> Response:
        p = self.state.principal(req)
        app = self._admin(p)
        term = (req.query.get("filter_term") or "").casefold()
        user_type = req.query.get("user_type", "all")
        rows = self.store.all("SELECT * FROM users ORDER BY CAST(id AS INTEGER)")
        out = []
        for u in rows:
            if not self._visible(app, u):
                continue
            if u["kind"] == "service" and u["app_client_id"] != app["client_id"]:
                continue
            if user_type == "managed" and u["kind"] != "managed":
                continue
            if user_type == "external":
                continue
            # Box matches filter_term against the start of the login or name.
            if term and not (u["login"].casefold().startswith(term) or u["name"].casefold().startswith(term)):
                continue
            out.append(u)
        fields = parse_fields(req.query.get("fields"))
        try:
            offset = int(req.query.get("offset", "0"))
            limit = min(int(req.query.get("limit", "100")), 1000)
        except ValueError:
            raise bad_request("offset and limit must be integers") from None
        return Response.json({
            "total_count": len(out), "offset": offset, "limit": limit,
            "entries": [self.rep.user(u, fields) for u in out[offset:offset + limit]],
        })

    def me(self, req: Request) -> Response:
        p = self.state.principal(req)
        row = self.store.one("SELECT * FROM users WHERE id=?", p.user_id)
        if row is None:
            raise not_found("user")
        return Response.json(self.rep.user(row, parse_fields(req.query.get("fields"))))

    def get_user(self, req: Request) -> Response:
        p = self.state.principal(req)
        row = self.store.one("SELECT * FROM users WHERE id=?", req.params["user_id"])
        if row is None:
            raise not_found("user")
        if row["id"] != p.user_id:
            app = self._admin(p)
            if not self._visible(app, row):
                raise not_found("user")
        return Response.json(self.rep.user(row, parse_fields(req.query.get("fields"))))

    def create_user(self, req: Request) -> Response:
        p = self.state.principal(req)
        app = self._admin(p)
        body = req.json()
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad_request("name is required")
        app_user = bool(body.get("is_platform_access_only"))
        login = body.get("login")
        if app_user:
            if "manage_app_users" not in p.scopes and "manage_enterprise" not in p.scopes:
                raise ApiError(403, *_DENIED)
            login = login or f"AppUser_{self.store.next_id('appuser', 1)}@boxdevedition.com"
        else:
            if "manage_managed_users" not in p.scopes or not app["enterprise_access"]:
                raise ApiError(403, *_DENIED)
            if not isinstance(login, str) or "@" not in login:
                raise bad_request("login must be an email address")
        if self.store.one("SELECT 1 FROM users WHERE login=? COLLATE NOCASE", login):
            raise ApiError(409, "user_login_already_used", "User with the specified login already exists")
        uid = self.oauth.create_user(login, name, kind="app" if app_user else "managed",
                                     app_client_id=app["client_id"] if app_user else None,
                                     space_amount=int(body.get("space_amount") or 0) or DEFAULT_SPACE)
        row = self.store.one("SELECT * FROM users WHERE id=?", uid)
        return Response.json(self.rep.user(row, parse_fields(req.query.get("fields"))), 201)

    def register(self, router: Router) -> None:
        router.add("GET", "api", "/users", self.list_users)
        router.add("POST", "api", "/users", self.create_user)
        router.add("GET", "api", "/users/me", self.me)
        router.add("GET", "api", "/users/{user_id}", self.get_user)
