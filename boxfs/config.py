"""Every way a user can configure boxfs, parsed into one immutable :class:`BoxCredentials`.

The forms (issue 4) are those a Box admin meets in the developer console and in CrushFTP's Box VFS:

* ``jwt_config=``: the JSON the developer console downloads, as text, as a path, or as the parsed dict;
* separate JWT fields (``client_id``, ``client_secret``, ``enterprise_id``/``user_id``, ``public_key_id``,
  ``private_key`` as PEM text or path, ``passphrase``);
* Client Credentials Grant (``client_id`` + ``client_secret`` + ``enterprise_id`` or ``user_id``);
* a ready access token (``token=``);
* App Token auth (``app_token=``): a Limited Access App's primary App Token, or ``(primary, secondary)``;
  the secondary is used once Box refuses the primary (revoked in a rollover). ``client_id=`` may be
  given with it (annotator tokens name the app);
* the environment (``BOXFS_JWT_CONFIG``, ``BOXFS_CLIENT_ID``, ``BOXFS_CLIENT_SECRET``,
  ``BOXFS_ENTERPRISE_ID``, ``BOXFS_TOKEN``, ``BOXFS_AS_USER``, ``BOXFS_BASE_URL``) for URL-only use such as
  ``pd.read_csv("box://...")`` with no storage options.

Everything that can be checked locally is checked here, at construction, so that a wrong passphrase or a
truncated key is reported before any request is made, and with a message naming the field at fault.
Secrets never appear in a ``repr`` or in an error message.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fsspec.caching import caches

__all__ = [
    "BoxConfigError",
    "BoxCredentials",
    "BoxEndpoints",
    "BoxOptionError",
    "FSSPEC_OPTIONS",
    "NoCredentialsError",
    "check_block_size",
    "check_cache_type",
    "check_options",
    "load_private_key",
    "resolve_credentials",
    "resolve_endpoints",
    "env_as_user",
]

DEFAULT_BASE_URL = "https://api.box.com"
DEFAULT_UPLOAD_URL = "https://upload.box.com/api"
DEFAULT_OAUTH2_URL = "https://account.box.com/api/oauth2"


class BoxConfigError(ValueError):
    """The configuration cannot work; the message names the missing or bad field (never its secret value)."""


class NoCredentialsError(BoxConfigError):
    """No credentials were given at all: a frontend words the fix in its own terms (``--config``)."""


class BoxOptionError(BoxConfigError, TypeError):
    """An option boxfs does not know. Refused rather than ignored: ``asuser=`` for ``as_user=`` would
    otherwise act as the service account. Also a ``TypeError``, what Python raises for an unexpected
    keyword argument."""


#: Options every fsspec filesystem takes, accepted beside boxfs's own: fsspec's instance cache
#: (``skip_instance_cache``), its listings cache (``use_listings_cache``, ``listings_expiry_time``,
#: ``max_paths``) and its async plumbing (``asynchronous``, ``loop``: zarr passes ``asynchronous=True`` to
#: every filesystem and wraps a synchronous one). ``default_block_size``/``default_cache_type`` (the
#: convention of s3fs, gcsfs and adlfs) are BoxFileSystem parameters of their own.
FSSPEC_OPTIONS = frozenset({"skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths",
                            "asynchronous", "loop"})


def check_options(given: Iterable[str], known: Iterable[str]) -> None:
    """Refuse option names not in ``known``, naming the closest valid one and listing them all.

    Only names are quoted, never values: a misspelt ``client_secret`` carries a secret.
    """
    known = sorted(set(known))
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    described = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        described.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    raise BoxOptionError(
        f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(described)}; "
        f"the options are: {', '.join(known)}"
    )


def check_cache_type(value: Any) -> str:
    """``default_cache_type``: one of fsspec's read caches (``readahead``, ``all``, ``blockcache``...)."""
    if value not in caches or value is None:
        names = ", ".join(sorted(str(k) for k in caches if k is not None))
        raise BoxConfigError(f"default_cache_type {value!r} is not one of fsspec's caches: {names}")
    return str(value)


def check_block_size(value: Any) -> int | None:
    """``default_block_size``: a positive number of bytes, or None for fsspec's default (5 MiB)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():  # from fsspec's config (FSSPEC_BOX_...) or a CLI
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BoxConfigError(f"default_block_size must be a positive number of bytes, not {value!r}")
    return value


@dataclass(frozen=True)
class BoxEndpoints:
    """The three Box API roots (box_sdk_gen's ``BaseUrls`` has the same three)."""

    base_url: str = DEFAULT_BASE_URL
    upload_url: str = DEFAULT_UPLOAD_URL
    oauth2_url: str = DEFAULT_OAUTH2_URL

    def as_dict(self) -> dict[str, str]:
        return {"base_url": self.base_url, "upload_url": self.upload_url, "oauth2_url": self.oauth2_url}


@dataclass(frozen=True)
class BoxCredentials:
    """How to obtain an access token. ``kind`` is ``"jwt"``, ``"ccg"``, ``"token"``, ``"oauth"`` or
    ``"app_token"``.

    The secret fields are excluded from ``repr`` and comparison output; they travel only through pickling
    (a dask worker needs them to authenticate on its own).
    """

    kind: str
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    enterprise_id: str | None = None
    user_id: str | None = None
    public_key_id: str | None = None
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None  # kind "oauth": the token file written by ``boxfs login``
    app_tokens: tuple[str, ...] = field(default=(), repr=False)  # kind "app_token": primary[, secondary]

    def __repr__(self) -> str:
        shown = [f"kind={self.kind!r}"]
        for name in ("client_id", "enterprise_id", "user_id", "public_key_id"):
            value = getattr(self, name)
            if value is not None:
                shown.append(f"{name}={value!r}")
        return f"BoxCredentials({', '.join(shown)}, fingerprint={self.fingerprint!r}, secrets hidden)"

    @property
    def fingerprint(self) -> str:
        """A short one-way digest of the whole configuration, secrets included.

        It makes two configurations that differ only in a secret (two tokens) distinguishable where fsspec
        keys its instance cache on ``str`` of the arguments, without revealing anything about them.
        """
        text = "\0".join(str(getattr(self, f)) for f in (
            "kind", "client_id", "client_secret", "enterprise_id", "user_id", "public_key_id", "private_key",
            "passphrase", "token", "token_file", "app_tokens"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    __str__ = __repr__

    @property
    def subject(self) -> tuple[str, str]:
        """The token subject: ``("enterprise", id)``, ``("user", id)`` or ``("token", digest)``."""
        if self.kind == "oauth":
            return ("oauth", self.token_file or "")
        if self.kind == "token":
            assert self.token is not None
            return ("token", hashlib.sha256(self.token.encode()).hexdigest()[:16])
        if self.kind == "app_token":
            return ("app_token", hashlib.sha256("\0".join(self.app_tokens).encode()).hexdigest()[:16])
        if self.enterprise_id:
            return ("enterprise", self.enterprise_id)
        return ("user", self.user_id or "")

    @property
    def registry_key(self) -> tuple[str, ...]:
        """Identity of the token this configuration yields: one provider per key per process."""
        return (self.kind, self.client_id or "", *self.subject)

    def decrypted_key(self) -> Any:
        """The private key object (JWT only), decrypted once per process and key."""
        if self.kind != "jwt" or self.private_key is None:
            raise BoxConfigError("only JWT credentials have a private key")
        return load_private_key(self.private_key, self.passphrase)


# --------------------------------------------------------------------------------------------- key


def _key_digest(pem: str, passphrase: str | None) -> str:
    return hashlib.sha256(pem.encode() + b"\0" + (passphrase or "").encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def _decrypt_cached(digest: str, pem: str, passphrase: str | None) -> Any:
    # The digest is the cache key; pem/passphrase are passed along but lru_cache keys on all args. That is
    # fine (the process already holds them); the cache exists because a file-transfer server constructs
    # one filesystem per login and key decryption (PBKDF2/scrypt) costs tens of milliseconds.
    from cryptography.hazmat.primitives import serialization

    data = pem.encode("ascii", errors="strict")
    password = passphrase.encode() if passphrase else None
    try:
        return serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:
        text = str(exc)
        if "not given" in text:
            raise BoxConfigError(
                "the private key is encrypted but no passphrase was given (appAuth.passphrase)"
            ) from None
        if "not encrypted" in text:
            return serialization.load_pem_private_key(data, password=None)
        raise BoxConfigError("the private key could not be read") from None
    except ValueError as exc:
        if "password" in str(exc).lower() or "decrypt" in str(exc).lower():
            raise BoxConfigError("the passphrase does not decrypt the private key") from None
        raise BoxConfigError(
            "the private key is not a valid PEM key (is it truncated or corrupted?)"
        ) from None


def load_private_key(pem: str, passphrase: str | None) -> Any:
    """Decrypt a PEM private key, raising BoxConfigError with a message saying what is wrong with it."""
    text = pem.strip()
    if "-----BEGIN" not in text:
        raise BoxConfigError("the private key is not PEM text (no '-----BEGIN ...' line)")
    if "-----END" not in text:
        raise BoxConfigError("the private key is truncated (no '-----END ...' line)")
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        raise BoxConfigError("the private key contains non-ASCII characters") from None
    return _decrypt_cached(_key_digest(text, passphrase), text + "\n", passphrase)


def _read_private_key(value: str) -> str:
    """``private_key=`` is PEM text or a path to a PEM file."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n") if "\n" not in value.strip() else value
    path = os.path.expanduser(value)
    if os.path.isfile(path):
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    raise BoxConfigError("private_key is neither PEM text nor the path of an existing file")


# ---------------------------------------------------------------------------------------- JWT JSON


def _load_jwt_json(jwt_config: str | bytes | os.PathLike | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(jwt_config, Mapping):
        return jwt_config
    if isinstance(jwt_config, bytes):
        jwt_config = jwt_config.decode("utf-8")
    if isinstance(jwt_config, os.PathLike):
        jwt_config = os.fspath(jwt_config)
    if not isinstance(jwt_config, str):
        raise BoxConfigError(f"jwt_config must be JSON text, a path or a dict, not {type(jwt_config).__name__}")
    text = jwt_config
    if not text.lstrip().startswith(("{", "[")):
        path = os.path.expanduser(text.strip())
        if not os.path.isfile(path):
            # quote a mistyped path, never text that may be a mis-pasted secret (a config without its "{")
            pathlike = len(path) < 512 and not any(s in path for s in ("\n", '"', "{", "-----"))
            shown = repr(path) if pathlike else "(not shown: it is not a path and may hold secrets)"
            raise BoxConfigError(f"jwt_config is neither JSON text nor an existing file: {shown}")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg/lineno/colno describe the position only: no part of the (secret) document is echoed.
        raise BoxConfigError(
            f"JWT config is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "was it pasted completely?"
        ) from None
    if not isinstance(data, dict):
        raise BoxConfigError("JWT config must be a JSON object with a boxAppSettings member")
    return data


def _need(obj: Mapping[str, Any], key: str, where: str) -> Any:
    value = obj.get(key)
    if value is None or value == "":
        raise BoxConfigError(f"JWT config is missing {where}{key}")
    return value


def _jwt_from_json(data: Mapping[str, Any], user_id: str | None) -> BoxCredentials:
    settings = data.get("boxAppSettings")
    if not isinstance(settings, Mapping):
        raise BoxConfigError("JWT config is missing boxAppSettings (is this the JSON from the Box developer console?)")
    client_id = _need(settings, "clientID", "boxAppSettings.")
    client_secret = _need(settings, "clientSecret", "boxAppSettings.")
    app_auth = settings.get("appAuth")
    if not isinstance(app_auth, Mapping):
        raise BoxConfigError("JWT config is missing boxAppSettings.appAuth")
    public_key_id = _need(app_auth, "publicKeyID", "boxAppSettings.appAuth.")
    private_key = _need(app_auth, "privateKey", "boxAppSettings.appAuth.")
    passphrase = app_auth.get("passphrase") or None
    enterprise_id = data.get("enterpriseID") or None
    if user_id is None and data.get("userID"):
        user_id = str(data["userID"])
    if not enterprise_id and not user_id:
        raise BoxConfigError("JWT config is missing enterpriseID (or give user_id= to authenticate as a user)")
    creds = BoxCredentials(
        kind="jwt",
        client_id=str(client_id),
        client_secret=str(client_secret),
        enterprise_id=str(enterprise_id) if enterprise_id else None,
        user_id=None if enterprise_id else user_id,
        public_key_id=str(public_key_id),
        private_key=str(private_key),
        passphrase=str(passphrase) if passphrase else None,
    )
    creds.decrypted_key()
    return creds


# ----------------------------------------------------------------------------------------- resolve


def _s(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _oauth_credentials(token_file: Any) -> BoxCredentials:
    """Credentials naming a ``boxfs login`` token file; boxfs.auth reads and checks the file itself."""
    return BoxCredentials(kind="oauth", token_file=os.fspath(token_file))


def resolve_credentials(
    *,
    jwt_config: Any = None,
    client_id: Any = None,
    client_secret: Any = None,
    enterprise_id: Any = None,
    user_id: Any = None,
    public_key_id: Any = None,
    private_key: Any = None,
    passphrase: Any = None,
    token: Any = None,
    credentials: BoxCredentials | None = None,
    oauth_token_file: Any = None,
    app_token: Any = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[BoxCredentials, bool]:
    """Turn constructor arguments (or, when none are given, the environment) into BoxCredentials.

    Returns ``(credentials, from_environment)``. Explicit arguments always win over the environment; the
    environment is only consulted when no credential argument is given at all.
    """
    if credentials is not None:
        if credentials.kind == "jwt":
            credentials.decrypted_key()
        return credentials, False
    given = any(
        v not in (None, "")
        for v in (jwt_config, client_id, client_secret, enterprise_id, public_key_id, private_key, token,
                  oauth_token_file, app_token)
    )
    if not given:
        env = os.environ if environ is None else environ
        if env.get("BOXFS_OAUTH_TOKEN_FILE"):
            return _oauth_credentials(env["BOXFS_OAUTH_TOKEN_FILE"]), True
        if env.get("BOXFS_TOKEN"):
            return BoxCredentials(kind="token", token=_token_value(env["BOXFS_TOKEN"], "BOXFS_TOKEN")), True
        if env.get("BOXFS_JWT_CONFIG"):
            return _jwt_from_json(_load_jwt_json(env["BOXFS_JWT_CONFIG"]), _s(user_id)), True
        if env.get("BOXFS_CLIENT_ID") or env.get("BOXFS_CLIENT_SECRET"):
            creds, _ = resolve_credentials(
                client_id=env.get("BOXFS_CLIENT_ID"),
                client_secret=env.get("BOXFS_CLIENT_SECRET"),
                enterprise_id=env.get("BOXFS_ENTERPRISE_ID"),
                user_id=user_id,
                environ={},
            )
            return creds, True
        raise NoCredentialsError(
            "no Box credentials: give jwt_config=, client_id=/client_secret= (CCG or JWT fields) or token=, "
            "or set BOXFS_JWT_CONFIG, BOXFS_CLIENT_ID/BOXFS_CLIENT_SECRET or BOXFS_TOKEN"
        )
    if oauth_token_file not in (None, ""):
        return _oauth_credentials(oauth_token_file), False
    if app_token not in (None, ""):
        return _app_token_credentials(app_token, client_id), False
    if token not in (None, ""):
        return BoxCredentials(kind="token", token=_token_value(token, "token")), False
    if jwt_config is not None:
        return _jwt_from_json(_load_jwt_json(jwt_config), _s(user_id)), False
    if public_key_id is not None or private_key is not None:
        for name, value in (
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("public_key_id", public_key_id),
            ("private_key", private_key),
        ):
            if value in (None, ""):
                raise BoxConfigError(f"JWT configuration is missing {name}")
        if not enterprise_id and not user_id:
            raise BoxConfigError("JWT configuration is missing enterprise_id (or user_id)")
        creds = BoxCredentials(
            kind="jwt",
            client_id=str(client_id),
            client_secret=str(client_secret),
            enterprise_id=_s(enterprise_id),
            user_id=None if enterprise_id else _s(user_id),
            public_key_id=str(public_key_id),
            private_key=_read_private_key(str(private_key)),
            passphrase=_s(passphrase),
        )
        creds.decrypted_key()
        return creds, False
    if client_id in (None, ""):
        raise BoxConfigError("Client Credentials Grant configuration is missing client_id")
    if client_secret in (None, ""):
        raise BoxConfigError("Client Credentials Grant configuration is missing client_secret")
    if not enterprise_id and not user_id:
        raise BoxConfigError("Client Credentials Grant configuration is missing enterprise_id (or user_id)")
    return (
        BoxCredentials(
            kind="ccg",
            client_id=str(client_id),
            client_secret=str(client_secret),
            enterprise_id=_s(enterprise_id),
            user_id=None if enterprise_id else _s(user_id),
        ),
        False,
    )


def _app_token_credentials(app_token: Any, client_id: Any) -> BoxCredentials:
    """``app_token=``: the primary App Token, or ``(primary, secondary)`` as the developer console shows them."""
    tokens = (app_token,) if isinstance(app_token, str) else tuple(app_token) if isinstance(app_token, (list, tuple)) else None
    if not tokens or len(tokens) > 2:
        raise BoxConfigError("app_token must be the primary App Token, or (primary, secondary)")
    checked = tuple(_token_value(value, f"app_token: the {which} App Token")
                    for which, value in zip(("primary", "secondary"), tokens, strict=False))
    return BoxCredentials(kind="app_token", client_id=_s(client_id), app_tokens=checked)


def _token_value(value: Any, what: str) -> str:
    """A token given as it is sent (``Authorization: Bearer <token>``): stripped of surrounding white space
    (a token file or a Kubernetes secret ends in a newline), and refused if anything but printable ASCII
    without spaces is left. Checked here because an HTTP library refusing such a header quotes it whole
    in its error: the token would end up in an exception and a log."""
    token = value.strip() if isinstance(value, str) else ""
    if not token or not all("!" <= c <= "~" for c in token):
        raise BoxConfigError(f"{what} must be a non-empty string of printable ASCII characters without spaces "
                             "(the value is not shown: it is a secret)")
    return token


def resolve_endpoints(
    base_urls: Mapping[str, str] | BoxEndpoints | None = None, environ: Mapping[str, str] | None = None
) -> BoxEndpoints:
    """``base_urls=`` (the dict ``BoxEmulator.base_urls`` returns), else ``BOXFS_BASE_URL``, else Box's."""
    if isinstance(base_urls, BoxEndpoints):
        return base_urls
    if base_urls:
        unknown = set(base_urls) - {"base_url", "upload_url", "oauth2_url", "oauth_2_url"}
        if unknown:
            raise BoxConfigError(f"base_urls has unknown keys {sorted(unknown)}; expected base_url, upload_url, oauth2_url")
        if "base_url" not in base_urls:
            raise BoxConfigError("base_urls is missing base_url")
        base = _api_url(base_urls["base_url"], "base_urls['base_url']")
        return BoxEndpoints(
            base_url=base,
            upload_url=_api_url(base_urls.get("upload_url") or base + "/api", "base_urls['upload_url']"),
            oauth2_url=_api_url(base_urls.get("oauth2_url") or base_urls.get("oauth_2_url") or base + "/oauth2",
                                "base_urls['oauth2_url']"),
        )
    env = os.environ if environ is None else environ
    root = env.get("BOXFS_BASE_URL")
    if root:
        root = _api_url(root, "BOXFS_BASE_URL")
        return BoxEndpoints(base_url=root, upload_url=root + "/api", oauth2_url=root + "/oauth2")
    return BoxEndpoints()


def _api_url(value: Any, what: str) -> str:
    """An API root as given: ``http(s)://host[:port][/path]``, without a trailing slash. A user name or
    password in it is refused without showing it: it would be in every ``repr`` and error message, and
    requests would send it as Basic auth in place of the Bearer token."""
    try:
        parts = urlsplit(value.strip()) if isinstance(value, str) else None
        if parts is not None:
            parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        parts = None
    if parts is not None and (parts.username is not None or parts.password is not None):
        raise BoxConfigError(f"{what} must not hold a user name or password (the URL is not shown: it holds "
                             "a secret); boxfs authenticates with the Box token alone")
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise BoxConfigError(f"{what} must be an http:// or https:// URL such as https://api.box.com, not {value!r}")
    return str(value).strip().rstrip("/")


def env_as_user(environ: Mapping[str, str] | None = None) -> str | None:
    """``BOXFS_AS_USER`` (used only when the credentials themselves came from the environment)."""
    env = os.environ if environ is None else environ
    return env.get("BOXFS_AS_USER") or None
