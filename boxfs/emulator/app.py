"""``BoxEmulator``: the local Box API server, started in the background for tests and demos."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from boxfs.emulator.chunked import ChunkedRoutes
from boxfs.emulator.collaborations import CollaborationRoutes
from boxfs.emulator.content import ContentRoutes
from boxfs.emulator.embed import EmbedLinks
from boxfs.emulator.events import EventLog
from boxfs.emulator.faults import FaultInjector, FaultRule, RequestLog
from boxfs.emulator.httpserver import HttpApp, Request, Router
from boxfs.emulator.items import ItemRoutes
from boxfs.emulator.oauth import OAuthService
from boxfs.emulator.representations import Representer
from boxfs.emulator.state import BoxState
from boxfs.emulator.store import Store
from boxfs.emulator.users import UserRoutes

log = logging.getLogger("boxfs.emulator")


class BoxEmulator:
    """A Box API server on 127.0.0.1 that behaves as Box's documented API does.

    State lives in SQLite and file contents on disk under ``data_dir`` (a temporary folder,
    removed on stop, when None); with a data dir, a restarted emulator keeps everything.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, port: int = 0, latency: float = 0.0,
                 host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.store = Store(data_dir)
        self.state = BoxState(self.store)
        self.representer = Representer(self.state)
        self.oauth = OAuthService(self.state, self.representer)
        self.events = self.state.events = EventLog(self.state, self.representer)
        self.request_log = RequestLog()
        self.faults = FaultInjector()
        router = Router()
        content = ContentRoutes(self.state, self.representer)
        # Upload-session routes first: their paths would otherwise match /files/{file_id}.
        ChunkedRoutes(self.state, self.representer, content).register(router)
        self.oauth.register(router)
        UserRoutes(self.state, self.representer, self.oauth).register(router)
        content.register(router)
        self.embed = EmbedLinks(self.state, self.representer, self.oauth.issue)
        self.embed.register(router)
        ItemRoutes(self.state, self.representer, self.embed).register(router)
        self.events.register(router)
        CollaborationRoutes(self.state, self.representer).register(router)
        self.app = HttpApp(router, self.faults, self.request_log)
        self.app.identify = self._identify
        self.app.rate_key = self._acting_user
        self.app.latency = latency
        self._started = False

    def _identify(self, req: Request) -> None:
        if req.header("Authorization"):
            try:
                self.state.principal(req)
            except Exception:  # noqa: BLE001 - the log only wants the user where one is known
                pass

    def _acting_user(self, authorization: str, as_user: str | None) -> str | None:
        """The user a request acts as, for the rate limit (Box limits each user, not each token)."""
        if not authorization.lower().startswith("bearer "):
            return None
        row = self.state.token_row(authorization[7:].strip())
        if row is None:
            return None  # answered 401 anyway
        return as_user.strip() if as_user else row["user_id"]

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> BoxEmulator:
        host, port = self.app.start(self.host, self.port)
        self.port = port
        self.state.public_url = self.url
        self._started = True
        log.info("Box emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._started:
            self.events.close()  # held long polls answer now instead of holding up the stop
            self.app.stop()
            self._started = False
        self.store.close()

    def __enter__(self) -> BoxEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_urls(self) -> dict[str, str]:
        return {"base_url": self.url, "upload_url": self.url + "/api", "oauth2_url": self.url + "/oauth2"}

    @property
    def enterprise_id(self) -> str:
        return self.state.enterprise_id

    @property
    def data_dir(self) -> str:
        return str(self.store.root)

    # -- administration (what the Box admin and developer consoles do) -------------------------------------
    def create_user(self, login: str, name: str | None = None, space_amount: int | None = None) -> str:
        """Create a managed user of the enterprise; return its id."""
        if space_amount is None:
            return self.oauth.create_user(login, name)
        return self.oauth.create_user(login, name, space_amount=space_amount)

    def create_app_user(self, client_id: str, name: str) -> str:
        """Create an app user (``is_platform_access_only``) belonging to the app."""
        login = f"AppUser_{self.store.next_id('appuser', 1)}@boxdevedition.com"
        return self.oauth.create_user(login, name, kind="app", app_client_id=client_id)

    def create_jwt_app(self, scopes: Iterable[str] | None = None, as_user_header: bool = True,
                       enterprise_access: bool = True, passphrase: str | None = None, name: str | None = None) -> str:
        """A JWT app with a generated keypair; returns the JSON config text as Box's console downloads it."""
        return self.oauth.create_jwt_app(scopes, as_user_header, enterprise_access, passphrase, name)

    def create_ccg_app(self, scopes: Iterable[str] | None = None, as_user_header: bool = True,
                       enterprise_access: bool = True, name: str | None = None) -> tuple[str, str]:
        """A Client Credentials Grant app; returns (client_id, client_secret)."""
        return self.oauth.create_ccg_app(scopes, as_user_header, enterprise_access, name)

    def create_oauth_app(self, redirect_uri: str, scopes: Iterable[str] | None = None,
                         name: str | None = None) -> tuple[str, str]:
        """An OAuth 2.0 web app (authorization code flow); returns (client_id, client_secret)."""
        return self.oauth.create_oauth_app(redirect_uri, scopes, name)

    def create_app_token_app(self, name: str | None = None, expires_in: float | None = None) -> tuple[str, str, str]:
        """A Limited Access App with App Token auth; returns (client_id, primary token, secondary token).
        The tokens never expire unless ``expires_in`` (seconds) is given."""
        return self.oauth.create_app_token_app(name, expires_in)

    def generate_app_token(self, client_id: str, expires_in: float | None = None) -> str:
        """Generate another App Token for an App Token app (rolling a token over)."""
        return self.oauth.generate_app_token(client_id, expires_in)

    def revoke_app_token(self, token: str) -> None:
        """Revoke one App Token, as the developer console's "Revoke" does."""
        self.oauth.revoke_app_token(token)

    def annotator_of(self, token: str) -> tuple[str, str] | None:
        """``(external id, display name)`` an annotator token was issued for (None for other tokens)."""
        row = self.store.one("SELECT external_id, name FROM token_actors WHERE token=?", token)
        return (row["external_id"], row["name"]) if row is not None else None

    def add_public_key(self, client_id: str, public_key: Any) -> str:
        return self.oauth.add_public_key(client_id, public_key)

    def service_account_id(self, client_id: str) -> str:
        return self.oauth.service_account_id(client_id)

    def revoke_app(self, client_id: str) -> None:
        self.oauth.revoke_app(client_id)

    def developer_token(self, client_id: str, user_id: str | None = None) -> str:
        """A 60-minute token for the app's service account (or a user), as the console's button gives."""
        return self.oauth.issue(client_id, user_id or self.service_account_id(client_id))["access_token"]

    def set_auto_approve(self, login: str | None) -> None:
        """Make ``GET /oauth2/authorize`` approve at once as this user (tests have no browser)."""
        self.state.auto_approve_login = login

    # -- behaviour knobs ---------------------------------------------------------------------------------------
    def set_token_ttl(self, seconds: float) -> None:
        self.state.token_ttl = float(seconds)

    def expire_tokens(self) -> None:
        """Every access token (and embed link) issued so far is expired now; App Tokens are not."""
        self.oauth.expire_tokens()
        self.embed.expire_all()

    def set_session_ttl(self, seconds: float) -> None:
        self.state.session_ttl = float(seconds)

    def set_commit_retry_after(self, seconds: int | None) -> None:
        """When set, each upload session's first commit answers 202 with this Retry-After."""
        self.state.commit_retry_after = seconds

    def set_longpoll_hold(self, seconds: float) -> None:
        """How long the long-poll server holds a request without news (Box: about 10 minutes)."""
        self.events.set_hold(seconds)

    def set_latency(self, seconds: float, jitter: float = 0.0) -> None:
        self.app.latency = seconds
        self.app.jitter = jitter

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        """Pace every TCP connection to this many bytes per second each way (a WAN link's share per
        connection); None or 0 removes the limit."""
        self.app.bandwidth = float(bytes_per_second or 0.0)

    def set_rate_limit(self, per_second: float, burst: float | None = None) -> None:
        """Limit each acting user (whatever token they use) as Box does; over it: 429 + Retry-After.
        ``per_second`` 0 removes the limit."""
        self.app.rate_limiter.configure(per_second, burst)

    def inject_faults(self, rate: float = 1.0, kinds: Iterable[str] = ("500",), route: str | None = None,
                      method: str | None = None, seed: int | None = None, retry_after: int = 1,
                      count: int | None = None) -> FaultRule:
        """Fail matching requests with probability ``rate`` (kinds: 429, 500, 502, 503, 504,
        drop, drop_after, expire); ``route`` is a regex searched in the request path."""
        return self.faults.add(rate, kinds, route, method, seed, retry_after, count)

    def clear_faults(self) -> None:
        self.faults.clear()
