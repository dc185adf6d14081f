"""WebDAV server whose users' files live in Box (wsgidav on cheroot).

Every desktop OS mounts WebDAV without extra software, so this is the server a company's desktop
users reach for. It stands on the same pieces as FTP and SFTP: the users file (same logins, homes,
``read_only``), login throttling (:mod:`boxfs.servers.throttle`), the frontend layer's literal
:class:`~boxfs.frontend.Namespace` (a name is never a pattern) and its write handles (a PUT is
spooled to disk and reaches Box in one upload when the body is complete; a failed upload answers an
error, never 2xx, and leaves the previous version in place).

Errors are mapped once: exception -> errno by the layer (:func:`boxfs.frontend.errno_of`), errno ->
HTTP status here (:data:`HTTP_STATUS`). The client sees the layer's short reason, never a path or a
Box request id; the full text goes to the log.

HTTP has no sessions: every request carries Basic credentials. Checking an scrypt hash per request
would cost ~50 ms each, so a successful login is remembered for a few minutes as a keyed digest
(HMAC with a key that lives only in this process's memory; the password itself is never kept).

Locks are wsgidav's in-memory lock manager: enough for the macOS Finder and the Windows WebDAV
redirector, which lock a file before writing it. They live in one process (see docs/servers.md on
running several processes).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import mimetypes
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlparse

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from wsgidav.dav_error import (
    HTTP_BAD_GATEWAY,
    HTTP_BAD_REQUEST,
    HTTP_CONFLICT,
    HTTP_FORBIDDEN,
    HTTP_GATEWAY_TIMEOUT,
    HTTP_INSUFFICIENT_STORAGE,
    HTTP_NOT_FOUND,
    HTTP_NOT_IMPLEMENTED,
    HTTP_PRECONDITION_FAILED,
    HTTP_SERVICE_UNAVAILABLE,
    DAVError,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider
from wsgidav.dc.base_dc import BaseDomainController
from wsgidav.util import normalize_path, re_encode_wsgi, send_status_response
from wsgidav.wsgidav_app import WsgiDAVApp

from boxfs.frontend import Namespace, errno_of, log_failure
from boxfs.frontend.stat import info_is_dir, info_mtime
from boxfs.servers.audit import Actor, AuditLog
from boxfs.servers.common import (
    DownloadFile,
    ServerHandle,
    SessionLimits,
    SessionResources,
    UploadFile,
    box_filesystem_factory,
    cleaning,
    client_reason,
    enable_server_logging,
    server_filesystems,
    spool_cleaner,
)
from boxfs.servers.permissions import ActionDenied, allows, require
from boxfs.servers.throttle import LoginLocked, LoginThrottle, ThrottlePolicy
from boxfs.servers.users import (
    LoginSessions,
    User,
    UserFilesystems,
    UsersDB,
    backend_path,
    load_users,
    reload_on_sighup,
    virtual_norm,
)

logger = logging.getLogger(__name__)

__all__ = ["HTTP_STATUS", "WebDAVServerHandle", "make_webdav_app", "run_webdav", "start_webdav_server"]

#: errno (decided once, by exception type, in boxfs.frontend.errors) -> HTTP status (RFC 4918).
#: Anything not listed is 502: Box, behind us, failed (worth retrying).
HTTP_STATUS: dict[int, int] = {
    errno.ENOENT: HTTP_NOT_FOUND,
    errno.EEXIST: HTTP_PRECONDITION_FAILED,
    errno.EACCES: HTTP_FORBIDDEN,
    errno.EPERM: HTTP_FORBIDDEN,
    errno.EROFS: HTTP_FORBIDDEN,
    errno.EISDIR: HTTP_CONFLICT,
    errno.ENOTDIR: HTTP_CONFLICT,
    errno.ENOTEMPTY: HTTP_CONFLICT,
    errno.EINVAL: HTTP_BAD_REQUEST,
    errno.ENAMETOOLONG: HTTP_BAD_REQUEST,
    errno.ENOSPC: HTTP_INSUFFICIENT_STORAGE,
    errno.EDQUOT: HTTP_INSUFFICIENT_STORAGE,
    errno.EFBIG: HTTP_INSUFFICIENT_STORAGE,
    errno.ENOTSUP: HTTP_NOT_IMPLEMENTED,
    errno.ETIMEDOUT: HTTP_GATEWAY_TIMEOUT,
    errno.EMFILE: 503,
}

#: How long a checked password is remembered (a changed users file clears it at once).
AUTH_CACHE_SECONDS = 300.0


#: The filesystem exception behind this thread's current request's error, for its audit line
#: (cheroot serves one request at a time per thread; wsgidav turns the error into a response).
_request_failure = threading.local()


def dav_error(exc: BaseException, virtual: str) -> DAVError:
    """The DAVError a client gets for ``exc``: status from the errno, the layer's safe reason."""
    if isinstance(exc, DAVError):
        return exc
    _request_failure.exc = exc
    log_failure(logger, "webdav", virtual, exc)
    code = errno_of(exc)
    return DAVError(HTTP_STATUS.get(code, HTTP_BAD_GATEWAY), f"{client_reason(exc, code)}: {virtual}")


@contextmanager
def dav_errors(virtual: str) -> Iterator[None]:
    """Turn every filesystem exception raised inside into the DAVError for its errno."""
    try:
        yield
    except DAVError:
        raise
    except Exception as exc:  # noqa: BLE001 - mapped by type in errno_of; unknown ones are 502
        raise dav_error(exc, virtual) from exc


class _AuthCache:
    """Logins whose password was checked recently, as keyed digests (never the password)."""

    def __init__(self, ttl: float = AUTH_CACHE_SECONDS):
        self.ttl = ttl
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[bytes, float]] = {}

    def __repr__(self) -> str:
        return f"_AuthCache(entries={len(self._seen)})"

    def _digest(self, login: str, password: str) -> bytes:
        return hmac.new(self._key, f"{login}\x00{password}".encode(), hashlib.sha256).digest()

    def hit(self, login: str, password: str) -> bool:
        with self._lock:
            entry = self._seen.get(login)
        return entry is not None and entry[1] > time.monotonic() and hmac.compare_digest(
            entry[0], self._digest(login, password)
        )

    def remember(self, login: str, password: str) -> None:
        with self._lock:
            self._seen[login] = (self._digest(login, password), time.monotonic() + self.ttl)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


class ServerState:
    """What every request of one WebDAV server shares: users, filesystems, throttle, sessions."""

    def __init__(self, users: UsersDB, filesystems: UserFilesystems, login_throttle: ThrottlePolicy | None = None,
                 session_limits: SessionLimits | None = None):
        self.users = users
        self.session_limits = session_limits
        self.filesystems = filesystems
        self.throttle = LoginThrottle(login_throttle or users.throttle)
        self.auth_cache = _AuthCache()
        self.sessions = LoginSessions()
        self._resources: dict[str, SessionResources] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ServerState({self.users!r})"

    def set_users(self, users: UsersDB) -> None:
        """Use ``users`` from the next request on (a reload): remembered passwords are forgotten, so
        a removed login or a changed password takes effect at once."""
        self.users = users
        self.auth_cache.clear()

    def resources(self, login: str) -> SessionResources:
        """One login's open files, against the server's :class:`SessionLimits` (HTTP has no sessions:
        all the login's requests count together)."""
        with self._lock:
            res = self._resources.get(login)
            if res is None:
                res = self._resources[login] = SessionResources(self.session_limits)
            return res


class BoxDomainController(BaseDomainController):
    """HTTP Basic authentication against the users file, throttled like FTP and SFTP logins."""

    def __init__(self, wsgidav_app: Any, config: dict[str, Any]):
        super().__init__(wsgidav_app, config)
        self.state: ServerState = config["boxfs"]

    def __repr__(self) -> str:
        return f"BoxDomainController({self.state!r})"

    def get_domain_realm(self, path_info: str, environ: dict[str, Any]) -> str:
        return "boxfs"

    def require_authentication(self, realm: str, environ: dict[str, Any]) -> bool:
        return True

    def supports_http_digest_auth(self) -> bool:
        return False  # digest needs the clear password (or an MD5 of it) on the server

    def basic_auth_user(self, realm: str, user_name: str, password: str, environ: dict[str, Any]) -> bool:
        state = self.state
        address = str(environ.get("REMOTE_ADDR", "?"))
        user = state.users.get(user_name)
        if user is not None and state.auth_cache.hit(user_name, password):
            # no throttle.succeeded() here: a client polling with a cached password must not keep
            # clearing the failures a guesser piles up against the same login
            self._begin(user, environ)
            return True
        try:
            state.throttle.check(address, user_name)
        except LoginLocked as locked:
            logger.warning("webdav login refused for %r from %s: %s", user_name, address, locked)
            return False
        user = state.users.authenticate(user_name, password)
        if user is None:
            delay = state.throttle.failed(address, user_name, "webdav")
            logger.info("webdav login failed for %r from %s", user_name, address)
            time.sleep(delay)
            return False
        state.throttle.succeeded(address, user_name)
        try:
            state.filesystems.for_user(user)
        except Exception as exc:  # noqa: BLE001 - any failure means this login cannot work
            logger.error("webdav login %s: cannot act as Box user %s: %s: %s",
                         user_name, user.box_user, type(exc).__name__, exc)
            return False
        logger.info("webdav login %s from %s (Box user %s)", user_name, address, user.box_user)
        state.auth_cache.remember(user_name, password)
        self._begin(user, environ)
        return True

    def _begin(self, user: User, environ: dict[str, Any]) -> None:
        """This request counts as one of the login's sessions until it is answered (``max_sessions``)."""
        if not self.state.sessions.acquire(user):
            raise DAVError(HTTP_SERVICE_UNAVAILABLE, "too many requests of this login at once: try again")
        environ["boxfs.user"] = user
        environ["boxfs.session"] = self.state.sessions


@dataclass
class _Session:
    """What one request knows about its login: user, filesystem, namespace."""

    user: User
    fs: Any
    ns: Namespace
    resources: SessionResources

    def backend(self, virtual: str) -> str:
        return backend_path(self.user.home, virtual)

    @property
    def scope(self) -> str:
        """Names one tree (a Box user's, seen from one home): the first segment of lock and
        property keys, so that two logins on different trees never share a lock on ``/a.txt``."""
        key = f"{self.user.box_user}\x00{self.user.home}".encode()
        return hashlib.sha256(key).hexdigest()[:24]

    def ref_url(self, virtual: str, collection: bool) -> str:
        path = virtual.rstrip("/") + ("/" if collection else "")
        return "/" + self.scope + quote(path or "/")

    def require(self, action: str, virtual: str) -> None:
        """The login's permissions (:mod:`boxfs.servers.permissions`), checked before any request."""
        try:
            require(self.user, action, virtual, "webdav")
        except ActionDenied as exc:
            raise dav_error(exc, virtual) from None


def _etag(info: Mapping[str, Any]) -> str | None:
    for key in ("sha1", "etag", "id"):
        value = info.get(key)
        if value:
            return str(value)
    return None


class BoxFile(DAVNonCollection):
    """A Box file (or one about to be created by a PUT: ``info`` None)."""

    def __init__(self, path: str, environ: dict[str, Any], session: _Session, info: dict[str, Any] | None):
        super().__init__(path, environ)
        self.session = session
        self.info = info
        self._upload: UploadFile | None = None

    def __repr__(self) -> str:
        return f"BoxFile({self.path!r})"

    def get_ref_url(self) -> str:
        return self.session.ref_url(self.path, False)

    def get_content_length(self) -> int | None:
        return int(self.info.get("size") or 0) if self.info else 0

    def get_content_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    def get_creation_date(self) -> float | None:
        return info_mtime(self.info) if self.info else None

    def get_last_modified(self) -> float | None:
        return info_mtime(self.info) if self.info else None

    def get_etag(self) -> str | None:
        return _etag(self.info) if self.info else None

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> DownloadFile:
        """A seekable reader: wsgidav seeks to a Range's start and reads only what was asked."""
        self.session.require("download", self.path)
        backend = self.session.backend(self.path)
        with dav_errors(self.path):
            return DownloadFile(self.session.fs, backend, self.path, self.session.resources)

    def begin_write(self, *, content_type: str | None = None) -> UploadFile:
        """The layer's write handle: the body is spooled, and uploaded at ``close`` (raises if that fails).

        Each PUT has its own spool (two PUTs of one path never mix bytes; the last complete one wins).
        """
        self.session.require("upload" if self.info is None else "overwrite", self.path)
        backend = self.session.backend(self.path)
        # a new file, for a login without ``overwrite`` or a client that asked ``If-None-Match: *``:
        # the upload creates or fails (412), never replacing a file another client created meanwhile
        create_only = self.info is None and (
            not allows(self.session.user, "overwrite") or self.environ.get("HTTP_IF_NONE_MATCH") == "*")
        with dav_errors(self.path):
            self.session.ns.check_new_name(backend)
            files = self.session.resources.open_files_for(self.session.fs)
            self._upload = _CheckedUpload(files, backend, self.path, self.session.resources,
                                          expected=_declared_length(self.environ), create_only=create_only)
        return self._upload

    def end_write(self, *, with_errors: bool) -> None:
        upload, self._upload = self._upload, None
        if upload is None:
            return
        self.environ["boxfs.bytes"] = upload.bytes_written  # for the audit line (chunked bodies have no length)
        if with_errors:
            upload.discard()
            return
        with dav_errors(self.path):
            self.info = self.session.ns.try_info(self.session.backend(self.path))

    def delete(self) -> None:
        self.session.require("delete", self.path)
        with dav_errors(self.path):
            self.session.ns.remove_file(self.session.backend(self.path))
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def handle_move(self, dest_path: str) -> bool:
        return _move(self, dest_path)

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        """COPY of a file, done here: wsgidav's own COPY deletes an existing destination before copying,
        so a copy failing at Box would lose it; the filesystem's copy places the new file first."""
        _check_destination(self.environ)
        self.copy_move_single(dest_path, is_move=False)
        return True

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        """COPY of a file: one server-side copy (MOVE is ``handle_move``). A login without ``overwrite``
        copies create-only, so a file another client creates after the check stays (412)."""
        session = self.session
        dest = session.backend(dest_path)
        with dav_errors(dest_path):
            session.ns.check_new_name(dest)
            session.require("overwrite" if session.ns.exists(dest) else "upload", dest_path)
            session.ns.copy(session.backend(self.path), dest, overwrite=allows(session.user, "overwrite"))


def _declared_length(environ: dict[str, Any]) -> int | None:
    """The body length a PUT announced (Content-Length), or None for a chunked body."""
    if "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
        return None
    try:
        return int(environ["CONTENT_LENGTH"])
    except (KeyError, ValueError):
        return None


class _CheckedUpload(UploadFile):
    """An upload whose failure at close is already a DAVError with the errno's status, and that is never
    stored short: cheroot ends a Content-Length body early, without an error, when the client goes away."""

    def __init__(self, *args: Any, expected: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def close(self) -> None:
        if self.expected is not None and not self.closed and self.bytes_written != self.expected:
            got = self.bytes_written
            self.discard()
            raise DAVError(HTTP_BAD_REQUEST, f"the body ended after {got} of {self.expected} bytes: nothing stored")
        with dav_errors(self.name):
            super().close()


class BoxFolder(DAVCollection):
    """A Box folder; its listing builds its members from one request (no ``info`` per child)."""

    def __init__(self, path: str, environ: dict[str, Any], session: _Session, info: dict[str, Any]):
        super().__init__(path, environ)
        self.session = session
        self.info = info

    def __repr__(self) -> str:
        return f"BoxFolder({self.path!r})"

    def get_ref_url(self) -> str:
        return self.session.ref_url(self.path, True)

    def get_last_modified(self) -> float | None:
        return info_mtime(self.info)

    def get_creation_date(self) -> float | None:
        return info_mtime(self.info)

    def get_etag(self) -> str | None:
        return None

    def support_etag(self) -> bool:
        return False

    def _member(self, info: dict[str, Any]) -> BoxFile | BoxFolder:
        name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        path = self.path.rstrip("/") + "/" + name
        cls = BoxFolder if info_is_dir(info) else BoxFile
        return cls(path, self.environ, self.session, info)

    def _children(self) -> list[dict[str, Any]]:
        self.session.require("list", self.path)
        # refresh: a client listing a folder expects to see changes made outside this server
        with dav_errors(self.path):
            return self.session.ns.list(self.session.backend(self.path), refresh=True)

    def get_member_names(self) -> list[str]:
        return [str(i["name"]).rstrip("/").rsplit("/", 1)[-1] for i in self._children()]

    def get_member_list(self) -> list[BoxFile | BoxFolder]:
        return [self._member(info) for info in self._children()]

    def get_member(self, name: str) -> BoxFile | BoxFolder | None:
        path = self.path.rstrip("/") + "/" + name
        return _resource(path, self.environ, self.session)

    def create_empty_resource(self, name: str) -> BoxFile:
        """A file to be created by the PUT that asked: nothing reaches Box until its body is complete.

        A LOCK of an unmapped URL creates an empty file (RFC 4918 7.3; the Windows redirector and
        Office lock a new name before writing it).
        """
        path = self.path.rstrip("/") + "/" + name
        session = self.session
        session.require("upload", path)
        backend = session.backend(path)
        with dav_errors(path):
            session.ns.check_new_name(backend)
            if self.environ.get("REQUEST_METHOD") != "LOCK":
                return BoxFile(path, self.environ, session, None)
            # the empty file is created, never written over one another client made meanwhile
            _CheckedUpload(session.resources.open_files_for(session.fs), backend, path, session.resources,
                           create_only=True).close()
            return BoxFile(path, self.environ, session, session.ns.info(backend))

    def create_collection(self, name: str) -> None:
        path = self.path.rstrip("/") + "/" + name
        self.session.require("mkdir", path)
        with dav_errors(path):
            self.session.ns.mkdir(self.session.backend(path))

    def support_recursive_delete(self) -> bool:
        return True

    def delete(self) -> None:
        """DELETE of a folder removes it with everything in it (RFC 4918 9.6.1); never the home."""
        session = self.session
        session.require("delete", self.path)
        if self.path.strip("/") == "":
            raise DAVError(HTTP_FORBIDDEN, "the home folder cannot be deleted")
        with dav_errors(self.path):
            session.ns.remove_tree(session.backend(self.path))  # literal: the name is never a pattern
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def handle_move(self, dest_path: str) -> bool:
        return _move(self, dest_path)

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        """COPY of a folder to a free name, done here through the layer's literal copy (Box: one
        request for the whole tree); onto an existing folder wsgidav merges member by member
        (RFC 4918 9.8.4), through :meth:`copy_move_single` and the members' literal operations; onto a
        file 409 (wsgidav would delete the file first, and a copy failing then would lose it)."""
        _check_destination(self.environ)
        session = self.session
        dest = virtual_norm(dest_path)
        if dest is None:
            raise DAVError(HTTP_FORBIDDEN, "outside the home folder")
        session.require("mkdir", dest)
        if depth_infinity:
            session.require("upload", dest)  # the folder's files are new files at the destination
        with dav_errors(dest):
            backend = session.backend(dest)
            session.ns.check_new_name(backend)
            existing = session.ns.try_info(backend)
            if existing is not None and not info_is_dir(existing):
                # wsgidav would delete the file before copying: refused, as MOVE refuses it (ENOTDIR)
                raise DAVError(HTTP_CONFLICT, "a folder cannot be copied over a file: delete the file first")
            if existing is not None:
                return False
            if depth_infinity:
                session.ns.copy(session.backend(self.path), backend)
            else:
                session.ns.mkdir(backend)  # Depth: 0 copies the collection, not its members
        return True

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        """COPY of a folder, one level: wsgidav then copies the members one by one."""
        self.session.require("mkdir", dest_path)
        with dav_errors(dest_path):
            dest = self.session.backend(dest_path)
            if not self.session.ns.exists(dest):
                self.session.ns.mkdir(dest)


def _check_destination(environ: dict[str, Any]) -> None:
    """Refuse a COPY/MOVE whose Destination names ``?`` or ``;`` percent-encoded: wsgidav decodes the
    header before parsing it as a URL, so ``a%3Fb.txt`` would be taken as ``a`` (the rest a query) and
    ``x%3By.txt`` as ``x``: the request would act on, and could replace, another name."""
    raw = environ.get("HTTP_DESTINATION", "")
    meant = unquote(urlparse(raw, allow_fragments=False).path)
    taken = urlparse(unquote(raw), allow_fragments=False).path
    if meant != taken:
        raise DAVError(HTTP_BAD_REQUEST, f"the destination {meant!r} holds '?' or ';', which this WebDAV "
                       "server cannot take in a Destination header; choose a name without them")


def _move(res: BoxFile | BoxFolder, dest_path: str) -> bool:
    """MOVE through the layer's POSIX rename (a replaced target is removed only once the new name is
    in place); wsgidav has already refused Overwrite: F onto an existing target."""
    _check_destination(res.environ)
    session = res.session
    session.require("rename", res.path)
    dest = virtual_norm(dest_path)
    if dest is None:
        raise DAVError(HTTP_FORBIDDEN, "outside the home folder")
    with dav_errors(dest_path):
        may_replace = allows(session.user, "overwrite")
        if not may_replace and session.ns.exists(session.backend(dest)):
            session.require("overwrite", dest)
        session.ns.rename(session.backend(res.path), session.backend(dest), overwrite=may_replace)
    return True




#: Requests whose answer carries the resource's size and etag: those must come from Box, not from a
#: listing cached before another client (or another server process behind the same load balancer)
#: replaced the file; the change watcher would tell within about a second, a GET cannot wait for it.
_FRESH_METHODS = frozenset({"GET", "HEAD"})


def _resource(path: str, environ: dict[str, Any], session: _Session) -> BoxFile | BoxFolder | None:
    virtual = virtual_norm(path)
    if virtual is None:
        return None
    backend = session.backend(virtual)
    with dav_errors(virtual):
        if environ.get("REQUEST_METHOD") in _FRESH_METHODS:
            session.fs.invalidate_cache(backend)
        info = session.ns.try_info(backend)
    if info is None:
        return None
    return (BoxFolder if info_is_dir(info) else BoxFile)(virtual, environ, session, info)


class BoxDAVProvider(DAVProvider):
    """Resources of the logged-in user's home, in that user's Box tree."""

    def __init__(self, state: ServerState):
        super().__init__()
        self.state = state

    def __repr__(self) -> str:
        return f"BoxDAVProvider({self.state!r})"

    def is_readonly(self) -> bool:
        return False

    def ref_url_to_path(self, ref_url: str) -> str:
        """Inverse of the resources' ``get_ref_url``: drop the tree's scope segment."""
        rest = ref_url.lstrip("/").partition("/")[2]
        return "/" + unquote(rest)

    def _session(self, environ: dict[str, Any]) -> _Session:
        user: User | None = environ.get("boxfs.user")
        if user is None:
            raise DAVError(HTTP_FORBIDDEN, "not logged in")
        fs = self.state.filesystems.for_user(user)
        return _Session(user, fs, Namespace(fs), self.state.resources(user.login))

    def get_resource_inst(self, path: str, environ: dict[str, Any]) -> BoxFile | BoxFolder | None:
        return _resource(path, environ, self._session(environ))


#: What each method does, in the audit log's words (OPTIONS, HEAD, PROPFIND depth 0: lookups, not logged).
_AUDITED_METHODS = {
    "GET": "download", "PUT": "upload", "DELETE": "delete", "MKCOL": "mkdir", "MOVE": "rename",
    "COPY": "copy", "PROPFIND": "list", "PROPPATCH": "set_properties", "LOCK": "lock", "UNLOCK": "unlock",
}


class AuditMiddleware:
    """One audit line per WebDAV request that acts (see :mod:`boxfs.servers.audit`), written when its
    response has been sent, with the bytes that crossed and the result; and the end of the request's
    session slot (``max_sessions``), whatever happened."""

    def __init__(self, app: Any, audit: AuditLog):
        self.app = app
        self.audit = audit

    def __repr__(self) -> str:
        return f"AuditMiddleware({self.audit!r})"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        _request_failure.exc = None
        seen: dict[str, Any] = {"status": 500}
        escape = _path_escaping_root(environ)
        if escape is not None:
            # wsgidav refuses this too, but from inside a generator, which drops the body after its headers
            # promised one: the client then waits for bytes that never come (60 s, a server thread held)
            yield from send_status_response(environ, start_response, escape)
            return

        def recording_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        sent = 0
        inner = self.app(environ, recording_start_response)
        try:
            for chunk in inner:
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(inner, "close", None)
            if callable(close):
                close()  # wsgidav's file iterators let go of the Box download here
            sessions: LoginSessions | None = environ.pop("boxfs.session", None)
            if sessions is not None:
                sessions.release(environ["boxfs.user"].login)
            if self.audit.enabled:
                self._record(environ, seen["status"], sent)

    def _record(self, environ: dict[str, Any], status: int, sent: int) -> None:
        user: User | None = environ.get("boxfs.user")
        method = environ.get("REQUEST_METHOD", "")
        action = _AUDITED_METHODS.get(method)
        if user is None or action is None or (method == "PROPFIND" and environ.get("HTTP_DEPTH") == "0"):
            return
        path = environ.get("PATH_INFO", "")
        if method in ("MOVE", "COPY"):
            path = f"{path} -> {urlparse(environ.get('HTTP_DESTINATION', '')).path}"
        if method == "PUT" and status == 204:
            action = "overwrite"
        nbytes = sent if method == "GET" else environ.get("boxfs.bytes") if method == "PUT" else None
        error: BaseException | None = None
        if status >= 400:
            error = getattr(_request_failure, "exc", None) or OSError(_ERRNO_OF_STATUS.get(status, errno.EIO), "")
        remote = f"{environ.get('REMOTE_ADDR', '?')}:{environ.get('REMOTE_PORT', '?')}"
        self.audit.record(Actor("webdav", user.login, user.box_user, remote), action, path, nbytes=nbytes, error=error)
        _request_failure.exc = None


def _path_escaping_root(environ: dict[str, Any]) -> DAVError | None:
    """The 400 for a request path whose ``..`` climbs above the root (``/../x``), as wsgidav words it."""
    path = environ.get("PATH_INFO", "")
    if path == "*":
        return None
    try:
        normalize_path(re_encode_wsgi(path))
    except DAVError as exc:
        return exc
    return None


#: A status wsgidav decided by itself (no filesystem exception behind it), as the errno for its reason.
_ERRNO_OF_STATUS = {HTTP_NOT_FOUND: errno.ENOENT, HTTP_FORBIDDEN: errno.EACCES, HTTP_CONFLICT: errno.ENOENT,
                    HTTP_PRECONDITION_FAILED: errno.EEXIST, 423: errno.EACCES}


def make_webdav_app(
    users: str | os.PathLike[str] | UsersDB,
    filesystems: UserFilesystems | Callable[[str], Any],
    *,
    login_throttle: ThrottlePolicy | None = None,
    allow_loose_users_file: bool = False,
    audit_log: AuditLog | None = None,
    session_limits: SessionLimits | None = None,
) -> Any:
    """The WSGI application: wsgidav over the users' Box trees (serve it with any WSGI server).

    ``session_limits`` caps what each login holds at once over all its requests (open files)."""
    users_db = load_users(users, allow_loose_users_file)
    if not isinstance(filesystems, UserFilesystems):
        filesystems = UserFilesystems(filesystems)
    state = ServerState(users_db, filesystems, login_throttle, session_limits)
    config = {
        "provider_mapping": {"/": BoxDAVProvider(state)},
        "boxfs": state,
        "http_authenticator": {
            "domain_controller": BoxDomainController,
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "lock_storage": True,  # in-memory locks: what the macOS and Windows clients need
        "property_manager": True,  # in-memory dead properties: Finder and Windows PROPPATCH them
        "hotfixes": {"emulate_win32_lastmod": True},
        "dir_browser": {"enable": False},
        "suppress_version_info": True,
        "verbose": 1,
        "logging": {"enable": False},
    }
    app = AuditMiddleware(WsgiDAVApp(config), audit_log or AuditLog(None))
    app.boxfs_state = state
    return app


def make_webdav_server(
    users: str | os.PathLike[str] | UsersDB,
    filesystems: UserFilesystems | Callable[[str], Any],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    threads: int = 16,
    spool_clean_interval: float = 3600.0,
    spool_max_age: float | None = None,
    **app_options: Any,
) -> wsgi.Server:
    """A cheroot server (not started) serving :func:`make_webdav_app`; HTTPS when given a certificate."""
    app = make_webdav_app(users, filesystems, **app_options)
    state: ServerState = app.boxfs_state
    if not certfile and host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning("WebDAV on %s without TLS: passwords and files cross the network in clear "
                       "(give --cert/--key)", host)
    # Desktop clients keep connections open between requests, and a busy server has many at once:
    # cheroot's defaults (5 pending connections, 10 idle kept-alive ones) reset the rest.
    server = wsgi.Server((host, port), app, numthreads=threads, server_name="boxfs",
                         request_queue_size=max(128, threads), timeout=60)
    server.keep_alive_conn_limit = max(256, 4 * threads)
    if certfile:
        server.ssl_adapter = BuiltinSSLAdapter(os.fspath(certfile), os.fspath(keyfile or certfile))
    server.boxfs_state = state
    server.boxfs_cleaner = spool_cleaner(state.filesystems, spool_clean_interval, spool_max_age)
    return server


@dataclass
class WebDAVServerHandle(ServerHandle):
    """A WebDAV server running in a background thread (tests, embedding)."""

    server: wsgi.Server
    thread: threading.Thread
    host: str
    port: int

    @property
    def state(self) -> ServerState:
        return self.server.boxfs_state

    @property
    def url(self) -> str:
        scheme = "https" if self.server.ssl_adapter is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (the spool cleaner with it) and wait for the thread."""
        self.server.stop()
        self.thread.join(timeout)


def start_webdav_server(
    users: str | os.PathLike[str] | UsersDB,
    filesystems: UserFilesystems | Callable[[str], Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    base_urls: Mapping[str, str] | None = None,
    **options: Any,
) -> WebDAVServerHandle:
    """Start a WebDAV server in a background thread; returns once it accepts connections."""
    filesystems = server_filesystems(filesystems, config, base_urls)
    server = make_webdav_server(users, filesystems, host, port, **options)
    server.prepare()
    bound_host, bound_port = server.bind_addr[:2]

    def serve() -> None:
        with cleaning(server.boxfs_cleaner):
            server.serve()  # returns once stopped

    thread = threading.Thread(target=serve, name=f"boxfs-webdav-{bound_port}", daemon=True)
    thread.start()
    logger.info("WebDAV server listening on %s:%d", bound_host, bound_port)
    return WebDAVServerHandle(server, thread, bound_host, bound_port)


def run_webdav(
    users_file: str | os.PathLike[str],
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
    host: str = "0.0.0.0",
    port: int = 8080,
    *,
    base_urls: Mapping[str, str] | None = None,
    fs_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> None:
    """Run the WebDAV server in the foreground until interrupted (what ``boxfs serve webdav`` calls)."""
    enable_server_logging()
    server = make_webdav_server(users_file, box_filesystem_factory(config, base_urls, **(fs_options or {})), host, port, **options)
    state: ServerState = server.boxfs_state
    reload_on_sighup(users_file, lambda: state.users, state.set_users, options.get("allow_loose_users_file", False))
    server.prepare()
    scheme = "https" if options.get("certfile") else "http"
    logger.info("WebDAV server for Box listening on %s://%s:%d", scheme, *server.bind_addr[:2])
    with cleaning(server.boxfs_cleaner):
        try:
            server.serve()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
