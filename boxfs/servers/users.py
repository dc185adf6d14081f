"""Users file for the FTP(S) and SFTP servers, and password hashing.

One TOML file serves both servers, so that a login behaves the same whichever protocol the
client uses::

    [users.alice]
    password = "scrypt$16384$8$1$<salt>$<hash>"     # from `python -m boxfs.servers.users hash`
    ssh_keys = ["ssh-ed25519 AAAAC3Nza... alice@laptop"]   # optional, SFTP only
    box_user = "alice@example.com"                  # Box login email or user id to act as
    home = "/"                                      # folder in that Box user's tree, or "id:12345"
    permissions = "full"                            # or "read_only", "upload_only", a list of actions

Passwords are never stored in clear: only salted scrypt hashes, compared in constant time.
An unknown login costs the same scrypt work as a known one so that response timing does not
reveal which logins exist.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import logging
import os
import posixpath
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from boxfs.servers.permissions import PRESETS, WRITE_ACTIONS, parse_permissions
from boxfs.servers.safety import check_users_file
from boxfs.servers.throttle import ThrottlePolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

logger = logging.getLogger(__name__)

__all__ = [
    "User",
    "UsersDB",
    "UserFilesystems",
    "LoginSessions",
    "hash_password",
    "verify_password",
    "normalize_home",
    "load_users",
    "reload_on_sighup",
    "reload_users",
]

# scrypt cost: n=2**14, r=8 uses 16 MiB and ~50 ms per check: cheap for a login, costly for a
# brute-force of a stolen users file.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_PREFIX = "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    """Return a salted scrypt hash string suitable for the users file.

    The parameters are stored with the hash so they can be raised later without invalidating
    existing entries.
    """
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES, maxmem=256 * 1024 * 1024
    )
    return f"{_PREFIX}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against a hash made by :func:`hash_password` (constant-time compare)."""
    try:
        prefix, n, r, p, salt_b64, digest_b64 = encoded.split("$")
        if prefix != _PREFIX:
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        # A malformed hash never matches; the reason is not logged (it is derived from a secret).
        return False
    return hmac.compare_digest(actual, expected)


# A fixed hash used to spend the same scrypt time on unknown logins as on known ones.
_DUMMY_HASH: str | None = None
_DUMMY_LOCK = threading.Lock()


def _dummy_hash() -> str:
    global _DUMMY_HASH
    with _DUMMY_LOCK:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password(_b64(os.urandom(12)))
        return _DUMMY_HASH


#: ``home = "id:12345"``: the home is the Box folder with that id, wherever it is and whatever it
#: is called (people rename and move folders; the id stays).
_HOME_ID = re.compile(r"id:(\d+)")
#: a top-level name the filesystem would take as an item id (any case, ASCII digits: as boxfs.core reads it)
_ID_NAME = re.compile(r"(?i)id:[0-9]+")


def home_folder_id(home: str) -> str | None:
    """The Box folder id of a home given as ``id:<digits>``, else None."""
    match = _HOME_ID.fullmatch(home)
    return match.group(1) if match else None


def normalize_home(home: str) -> str:
    """Return ``home`` as an absolute, normalized POSIX path inside the Box user's tree, or as
    ``id:<digits>`` (a Box folder id, kept as is: the filesystem addresses it by id).

    ``..`` components in a configured home are refused outright rather than resolved: a
    configuration that tries to climb is a mistake worth failing loudly on.
    """
    home = (home or "/").strip()
    if home_folder_id(home) is not None:
        return home
    if home.startswith("id:"):
        raise ValueError(f"home {home!r}: a Box folder id is written id:<digits>, e.g. id:12345")
    parts = [p for p in home.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"home folder may not contain '..': {home!r}")
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class User:
    """One server login and the Box user it acts as."""

    login: str
    password_hash: str | None
    box_user: str
    home: str = "/"
    read_only: bool = False
    ssh_keys: tuple[str, ...] = field(default_factory=tuple)
    #: What the login may do (:mod:`boxfs.servers.permissions`); None: from ``read_only``.
    permissions: frozenset[str] | None = None
    #: Sessions this login may have open at once in one server process (WebDAV: requests); 0: no limit.
    max_sessions: int = 0

    def __post_init__(self) -> None:
        if self.permissions is None:
            object.__setattr__(self, "permissions", PRESETS["read_only" if self.read_only else "full"])
        # read_only stays the one-word answer the protocols' attribute displays use
        object.__setattr__(self, "read_only", not (self.permissions & WRITE_ACTIONS))

    def __repr__(self) -> str:
        # The hash is not a secret in the strict sense, but it is never useful in a log either.
        return (
            f"User(login={self.login!r}, box_user={self.box_user!r}, home={self.home!r}, "
            f"permissions={sorted(self.permissions or ())!r}, ssh_keys={len(self.ssh_keys)})"
        )

    def check_password(self, password: str) -> bool:
        """True when ``password`` matches; users without a password hash accept only keys."""
        if not self.password_hash:
            verify_password(password, _dummy_hash())
            return False
        return verify_password(password, self.password_hash)


class UsersDB:
    """The parsed users file: lookup and authentication of logins."""

    def __init__(self, users: Iterable[User], throttle: ThrottlePolicy | None = None):
        self._users = {u.login: u for u in users}
        self.throttle = throttle or ThrottlePolicy()

    def __contains__(self, login: object) -> bool:
        return login in self._users

    def __len__(self) -> int:
        return len(self._users)

    def __repr__(self) -> str:
        return f"UsersDB(logins={sorted(self._users)!r})"

    def logins(self) -> list[str]:
        """All logins, sorted."""
        return sorted(self._users)

    def get(self, login: str) -> User | None:
        """The user with that login, or None."""
        return self._users.get(login)

    def authenticate(self, login: str, password: str) -> User | None:
        """Return the user when ``login``/``password`` are valid, else None.

        Unknown logins run a dummy scrypt so both failures take the same time.
        """
        user = self._users.get(login)
        if user is None:
            verify_password(password, _dummy_hash())
            return None
        return user if user.check_password(password) else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsersDB:
        """Build from the TOML structure (``{"users": {login: {...}}}``), validating every entry.

        An optional ``[login_throttle]`` table sets the failed-login policy of both servers.
        """
        unknown_tables = set(data) - {"users", "login_throttle"}
        if unknown_tables:
            raise ValueError(
                f"users file: unknown tables {sorted(unknown_tables)}; valid: ['login_throttle', 'users']"
            )
        throttle_table = data.get("login_throttle", {})
        if not isinstance(throttle_table, dict):
            raise ValueError("login_throttle must be a table")
        throttle = ThrottlePolicy.from_options(throttle_table)
        section = data.get("users")
        if not isinstance(section, dict) or not section:
            raise ValueError("users file needs a [users.<login>] table for each login")
        users = []
        for login, entry in section.items():
            if not isinstance(entry, dict):
                raise ValueError(f"users.{login} must be a table")
            unknown = set(entry) - {"password", "ssh_keys", "box_user", "home", "read_only", "permissions",
                                    "max_sessions"}
            if unknown:
                raise ValueError(f"users.{login}: unknown keys {sorted(unknown)}")
            password = entry.get("password")
            if password is not None and not str(password).startswith(_PREFIX + "$"):
                # Refuse plain-text passwords instead of silently accepting them.
                raise ValueError(
                    f"users.{login}.password must be a scrypt hash "
                    "(make one with `python -m boxfs.servers.users hash`)"
                )
            keys = entry.get("ssh_keys", [])
            if isinstance(keys, str):
                keys = [keys]
            if password is None and not keys:
                raise ValueError(f"users.{login} needs a password or ssh_keys")
            box_user = entry.get("box_user")
            if not box_user:
                raise ValueError(f"users.{login}.box_user is required (Box login email or user id)")
            if "permissions" in entry and "read_only" in entry:
                raise ValueError(f"users.{login}: give permissions or read_only, not both")
            permissions = (
                parse_permissions(entry["permissions"], f"users.{login}.permissions")
                if "permissions" in entry else None
            )
            max_sessions = entry.get("max_sessions", 0)
            if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 0:
                raise ValueError(f"users.{login}.max_sessions must be a whole number >= 0 (0: no limit)")
            users.append(
                User(
                    login=str(login),
                    password_hash=password,
                    box_user=str(box_user),
                    home=normalize_home(str(entry.get("home", "/"))),
                    read_only=bool(entry.get("read_only", False)),
                    ssh_keys=tuple(str(k).strip() for k in keys),
                    permissions=permissions,
                    max_sessions=max_sessions,
                )
            )
        return cls(users, throttle)


def load_users(users_file: str | os.PathLike[str] | UsersDB, allow_loose: bool = False) -> UsersDB:
    """Read and validate a users TOML file (an existing :class:`UsersDB` is returned as is).

    A file other local accounts could change is refused unless ``allow_loose`` (see
    :func:`boxfs.servers.safety.check_users_file`).
    """
    if isinstance(users_file, UsersDB):
        return users_file
    check_users_file(users_file, allow_loose)
    with open(users_file, "rb") as fh:
        data = tomllib.load(fh)
    db = UsersDB.from_dict(data)
    logger.info("loaded %d server users from %s", len(db), users_file)
    return db


def reload_users(
    users_file: str | os.PathLike[str], current: UsersDB, apply: Callable[[UsersDB], None],
    allow_loose: bool = False,
) -> bool:
    """Read the users file again and hand it to ``apply`` (SIGHUP); True if the new file is in use.

    A file that does not load (unreadable, invalid TOML, an invalid entry, loose permissions, or one
    ``apply`` refuses) is refused and logged: the server keeps serving with ``current``. Sessions
    already logged in keep their login either way; only new logins see the change.
    """
    try:
        new = load_users(users_file, allow_loose)
        apply(new)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        logger.error("users file %s not reloaded (%s: %s): still serving the %d logins loaded before",
                     users_file, type(exc).__name__, exc, len(current))
        return False
    added = sorted(set(new.logins()) - set(current.logins()))
    removed = sorted(set(current.logins()) - set(new.logins()))
    logger.warning("users file %s reloaded: %d logins, added %s, removed %s", users_file, len(new), added, removed)
    return True


def reload_on_sighup(
    users_file: str | os.PathLike[str], current: Callable[[], UsersDB], apply: Callable[[UsersDB], None],
    allow_loose: bool = False,
) -> None:
    """Reload the users file on SIGHUP (see :func:`reload_users`); for a server run in the foreground."""

    def on_hangup(signum: int, frame: Any) -> None:
        reload_users(users_file, current(), apply, allow_loose)

    signal.signal(signal.SIGHUP, on_hangup)


class LoginSessions:
    """How many sessions each login has open in this server process, against its ``max_sessions``.

    One login shared by a whole department, or a client opening connections in a loop, would
    otherwise take every connection the server has.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"LoginSessions({self._open!r})"

    def acquire(self, user: User) -> bool:
        """Count one more session of ``user``; False (and nothing counted) past its limit."""
        with self._lock:
            count = self._open.get(user.login, 0)
            if user.max_sessions and count >= user.max_sessions:
                logger.warning("login %s refused: %d sessions open, its limit (max_sessions)", user.login, count)
                return False
            self._open[user.login] = count + 1
            return True

    def has_room(self, user: User) -> bool:
        """Whether ``user`` could open one more session now (nothing counted: a check before proof)."""
        with self._lock:
            return not user.max_sessions or self._open.get(user.login, 0) < user.max_sessions

    def release(self, login: str) -> None:
        with self._lock:
            count = self._open.get(login, 0) - 1
            if count > 0:
                self._open[login] = count
            else:
                self._open.pop(login, None)

    def count(self, login: str) -> int:
        with self._lock:
            return self._open.get(login, 0)


class UserFilesystems:
    """One filesystem per Box user, created lazily on first login and then reused.

    Several logins may act as the same Box user; they share its filesystem (and therefore its
    directory cache). The factory receives the ``box_user`` string from the users file.
    """

    def __init__(self, factory: Callable[[str], Any]):
        self._factory = factory
        self._lock = threading.Lock()
        self._filesystems: dict[str, Any] = {}
        self._homes_ready: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"UserFilesystems(box_users={sorted(self._filesystems)!r})"

    def all(self) -> list[Any]:
        """Every filesystem created so far (one per Box user that logged in)."""
        with self._lock:
            return list(self._filesystems.values())

    def get(self, box_user: str) -> Any:
        """The filesystem acting as ``box_user`` (created on first use)."""
        with self._lock:
            fs = self._filesystems.get(box_user)
            if fs is None:
                logger.info("creating filesystem for Box user %s", box_user)
                fs = self._factory(box_user)
                self._filesystems[box_user] = fs
            return fs

    def for_user(self, user: User) -> Any:
        """The user's filesystem, with the user's home folder created if it does not exist yet."""
        fs = self.get(user.box_user)
        key = (user.box_user, user.home)
        if user.home != "/" and key not in self._homes_ready:
            path = backend_path(user.home, "/")
            if home_folder_id(user.home) is not None:
                # a folder given by id is never created: it must exist, as a folder, for this Box user
                if fs.info(path).get("type") != "directory":
                    raise NotADirectoryError(f"home {user.home} of {user.login} is not a folder")
            elif not fs.exists(path):
                logger.info("creating home folder %s for Box user %s", user.home, user.box_user)
                fs.makedirs(path, exist_ok=True)
            self._homes_ready.add(key)
        return fs


def virtual_norm(path: str, cwd: str = "/") -> str | None:
    """Normalize a client path against ``cwd`` into an absolute virtual path.

    Returns None when the path climbs above the virtual root (``/..``): such requests are refused
    rather than silently clamped, so a client learns it tried to leave its home.
    """
    if not path:
        path = cwd
    if not path.startswith("/"):
        path = posixpath.join(cwd or "/", path)
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def backend_path(home: str, virtual: str) -> str:
    """Map a normalized virtual path to the filesystem path under the user's ``home``.

    Backend paths carry no leading slash (fsspec convention; the root is ``""``).
    """
    joined = posixpath.join(home, virtual.lstrip("/")).strip("/")
    if not home.strip("/") and _ID_NAME.fullmatch(joined.split("/", 1)[0]):
        # at the Box root, a client's name like ``id:5`` is a name: reached through the root's own id
        # (``RETR id:5`` must never read item 5 elsewhere; a home given as ``id:<digits>`` is what uses ids)
        return f"id:0/{joined}"
    return joined


def _main(argv: list[str] | None = None) -> int:
    """``python -m boxfs.servers.users hash``: print a hash for the users file.

    The password is read with getpass on a terminal, or from the first line of stdin otherwise,
    so it never appears in the shell history or the process list.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["hash"]:
        sys.stderr.write("usage: python -m boxfs.servers.users hash   (reads the password)\n")
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            sys.stderr.write("passwords differ\n")
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        sys.stderr.write("empty password refused\n")
        return 1
    sys.stdout.write(hash_password(password) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
