"""FTP(S) server whose users' files live in Box (pyftpdlib).

Each login acts as its own Box user (through the app's As-User access) and is confined to a home
folder in that user's tree. The "real" paths pyftpdlib handles here are *virtual* paths, always
absolute and normalized (``/docs/a.txt``); they are mapped to filesystem paths under the user's
home only at the moment a filesystem call is made, so no client input can name anything outside
the home. A path that climbs above the virtual root (``/..``) is refused with 550 instead of being
clamped to ``/``.

Connections are served by one thread each (``ThreadedFTPServer``) because every filesystem call
is a blocking HTTP request to Box.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.filesystems import AbstractedFS, FilesystemError
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from boxfs.frontend import Namespace, errno_of, log_failure
from boxfs.frontend.stat import info_is_dir, info_mtime, info_to_stat
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
    set_mtime,
    spool_cleaner,
)
from boxfs.servers.permissions import ActionDenied, allows, require
from boxfs.servers.safety import warn_ftp_setup
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

__all__ = ["BoxAuthorizer", "BoxFTPFS", "FTPServerHandle", "make_ftp_server", "run_ftp", "start_ftp_server"]

# What pyftpdlib calls a "real" path for a request that tried to climb out of the home.
_OUTSIDE = "\x00outside-home"

READ_PERMS = "elr"
WRITE_PERMS = "elradfmwMT"


class BoxAuthorizer:
    """pyftpdlib authorizer backed by the users file.

    Implements the duck-typed interface pyftpdlib expects (it has no abstract base class). The
    authenticated :class:`User` is attached to the handler so the filesystem knows who it acts as.
    """

    def __init__(self, users: UsersDB, login_throttle: ThrottlePolicy | None = None):
        self.users = users
        self.throttle = LoginThrottle(login_throttle or users.throttle)
        self.sessions = LoginSessions()

    def __repr__(self) -> str:
        return f"BoxAuthorizer({self.users!r})"

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        address = str(getattr(handler, "remote_ip", "?"))
        # pyftpdlib waits handler.auth_failed_timeout before answering a failure: the class value
        # is the configured minimum, the throttle's growing delay overrides it per connection.
        minimum = float(getattr(type(handler), "auth_failed_timeout", 0.0))
        handler.auth_failed_timeout = minimum
        try:
            self.throttle.check(address, username)
        except LoginLocked as locked:
            logger.warning("ftp login refused for %r from %s: %s", username, address, locked)
            raise AuthenticationFailed("Too many failed logins: try again later.") from None
        user = self.users.authenticate(username, password)
        if user is None:
            handler.auth_failed_timeout = max(minimum, self.throttle.failed(address, username, "ftp"))
            # Same message for unknown login and wrong password: no login enumeration.
            raise AuthenticationFailed("Authentication failed.")
        self.throttle.succeeded(address, username)
        try:
            # Acting as the Box user (and creating the home folder) can fail: an unknown or
            # deactivated Box user, an app without As-User rights. Refuse the login cleanly
            # rather than break the session after "230 Login successful".
            handler.filesystems.for_user(user)
        except Exception as exc:  # noqa: BLE001 - any failure means this login cannot work
            logger.error(
                "ftp login %s: cannot act as Box user %s: %s: %s",
                username,
                user.box_user,
                type(exc).__name__,
                exc,
            )
            raise AuthenticationFailed("Box account unavailable.") from None
        previous: User | None = getattr(handler, "boxfs_user", None)
        if previous is not None:  # a second USER/PASS on one connection: its first session ends
            self.sessions.release(previous.login)
            handler.boxfs_user = None
        if not self.sessions.acquire(user):
            raise AuthenticationFailed("Too many sessions for this login: close one first.")
        handler.boxfs_user = user

    def get_home_dir(self, username: str) -> str:
        # The virtual root; the Box home folder is applied by BoxFTPFS.
        return "/"

    def has_user(self, username: str) -> bool:
        return username in self.users

    def get_perms(self, username: str) -> str:
        user = self.users.get(username)
        if user is None:
            return ""
        return READ_PERMS if user.read_only else WRITE_PERMS

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return perm in self.get_perms(username)

    def get_msg_login(self, username: str) -> str:
        return "Login successful."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        """Nothing to do: the Box user is chosen per filesystem, not per process."""

    def terminate_impersonation(self, username: str) -> None:
        """Nothing to do (see impersonate_user)."""


#: errno (decided once, by exception type, in boxfs.frontend.errors) -> FTP reply code (RFC 959).
#: Anything not listed is 550 ("file unavailable").
_FTP_REPLY: dict[int, int] = {
    errno.EINVAL: 553,  # file name not allowed
    errno.ENAMETOOLONG: 553,
    errno.ENOSPC: 452,  # insufficient storage space (spool disk full)
    errno.EDQUOT: 552,  # exceeded storage allocation (Box quota)
    errno.EFBIG: 552,
    errno.EIO: 451,  # local error in processing: worth retrying
    errno.ETIMEDOUT: 451,
    errno.ENOMEM: 451,
    errno.EMFILE: 451,  # a session limit (too many files open at once): later, or after closing some
}


def ftp_reply(exc: BaseException) -> tuple[int, str]:
    """``(reply code, short safe reason)`` for a filesystem exception."""
    code = errno_of(exc)
    return _FTP_REPLY.get(code, 550), client_reason(exc, code)


class BoxFilesystemError(FilesystemError):
    """A FilesystemError that knows its FTP reply code (pyftpdlib answers every one with 550)."""

    def __init__(self, reply: int, message: str):
        super().__init__(message)
        self.reply = reply


def ftp_error(exc: BaseException, virtual: str) -> FilesystemError:
    """Turn a filesystem exception into a FilesystemError with a short, safe client message."""
    if isinstance(exc, FilesystemError):
        return exc
    log_failure(logger, "ftp", virtual, exc)
    reply, reason = ftp_reply(exc)
    return BoxFilesystemError(reply, f"{reason}: {virtual}")


class BoxFTPFS(AbstractedFS):
    """pyftpdlib filesystem over an fsspec filesystem, confined to the user's home folder."""

    def __init__(self, root: str, cmd_channel: Any):
        super().__init__("/", cmd_channel)
        user: User = cmd_channel.boxfs_user
        self.user = user
        self.home = user.home
        self.fs = cmd_channel.filesystems.for_user(user)
        self.ns = Namespace(self.fs)  # literal names: never a pattern
        self.resources = SessionResources(cmd_channel.session_limits)  # the server's, as SFTP's
        self.audit: AuditLog = getattr(cmd_channel, "audit", None) or AuditLog(None)
        self.actor = Actor("ftp", user.login, user.box_user, f"{cmd_channel.remote_ip}:{cmd_channel.remote_port}")
        self.files = self.resources.open_files_for(self.fs)  # upload spools (the layer's)

    def __repr__(self) -> str:
        return f"BoxFTPFS(login={self.user.login!r}, cwd={self.cwd!r})"

    # --- path mapping: "real" paths are virtual, normalized, absolute

    def ftpnorm(self, ftppath: str) -> str:
        virtual = virtual_norm(ftppath, self.cwd)
        return _OUTSIDE if virtual is None else virtual

    def ftp2fs(self, ftppath: str) -> str:
        return self.ftpnorm(ftppath)

    def fs2ftp(self, fspath: str) -> str:
        return fspath if self.validpath(fspath) else "/"

    def validpath(self, path: str) -> bool:
        return path != _OUTSIDE and path.startswith("/")

    def realpath(self, path: str) -> str:
        return path

    def _backend(self, path: str) -> str:
        if not self.validpath(path):
            # Defence in depth: every command path already went through validpath.
            raise FilesystemError("Path is outside the home folder")
        return backend_path(self.home, path)

    def _info(self, path: str) -> dict[str, Any]:
        # LIST/MLSD stat every entry right after listing: the filesystem's cache answers, no request
        return self.ns.info(self._backend(path))

    def _check_new_name(self, path: str) -> None:
        """Refuse a name Box would refuse before any request (553), saying which rule it breaks."""
        try:
            self.ns.check_new_name(self._backend(path))
        except OSError as exc:  # the layer's message names the rule; the home prefix stays out
            raise BoxFilesystemError(553, f"Invalid name: {exc.strerror}") from None

    # --- file objects

    def _require(self, action: str, path: str) -> None:
        """The login's permissions (:mod:`boxfs.servers.permissions`), checked before any request."""
        try:
            require(self.user, action, path, "ftp")
        except ActionDenied as exc:
            raise ftp_error(exc, path) from None

    def open(self, filename: str, mode: str) -> Any:
        """A transfer's file; a refused open is audited here, a transfer by ``log_transfer``."""
        try:
            return self._open(filename, mode)
        except Exception as exc:
            self.audit.record(self.actor, "download" if mode == "rb" else "upload", filename, error=exc)
            raise

    def _open(self, filename: str, mode: str) -> Any:
        try:
            if mode == "rb":
                self._require("download", filename)
                return DownloadFile(self.fs, self._backend(filename), filename, self.resources)
            if mode == "wb":
                self._check_new_name(filename)
                existing = self.ns.try_info(self._backend(filename))
                if existing is not None and info_is_dir(existing):
                    raise IsADirectoryError(filename)
                self._require("upload" if existing is None else "overwrite", filename)
                if existing is None:
                    self.ns.check_parent(self._backend(filename))
                # without ``overwrite`` the upload creates or fails: a file another client creates
                # under the name while this one is open is refused at close, never replaced
                return UploadFile(self.files, self._backend(filename), filename, self.resources,
                                  create_only=not allows(self.user, "overwrite"))
        except FilesystemError:
            raise
        except Exception as exc:
            raise ftp_error(exc, filename) from None
        # APPE and REST+STOR: Box has no way to append to or resume an upload.
        raise FilesystemError("Box cannot append to or resume an upload")

    def mkstemp(self, suffix: str = "", prefix: str = "", dir: str | None = None, mode: str = "wb") -> Any:
        raise FilesystemError("STOU is not supported")

    # --- directory and file operations

    def chdir(self, path: str) -> None:
        if not self.isdir(path):
            raise FilesystemError(f"Not a directory: {path}")
        self.cwd = path

    def mkdir(self, path: str) -> None:
        with self.audit.action(self.actor, "mkdir", path):
            self._mkdir(path)

    def _mkdir(self, path: str) -> None:
        self._require("mkdir", path)
        self._check_new_name(path)
        try:
            if self.ns.exists(self._backend(path)):
                raise FileExistsError(path)
            self.ns.mkdir(self._backend(path))
        except Exception as exc:
            raise ftp_error(exc, path) from None

    def listdir(self, path: str) -> list[str]:
        with self.audit.action(self.actor, "list", path):
            return self._listdir(path)

    def _listdir(self, path: str) -> list[str]:
        self._require("list", path)
        try:
            # no refresh: the filesystem's cache is kept true by Box's event stream (or expires
            # quickly without it), so changes made elsewhere show up (docs/coherence.md)
            entries = self.ns.list(self._backend(path))
        except Exception as exc:
            raise ftp_error(exc, path) from None
        names = []
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if not name:
                continue
            names.append(name)
        return sorted(names)

    def listdirinfo(self, path: str) -> list[str]:
        return self.listdir(path)

    def rmdir(self, path: str) -> None:
        with self.audit.action(self.actor, "delete", path):
            self._require("delete", path)
            try:
                self.ns.remove_folder(self._backend(path))
            except Exception as exc:
                raise ftp_error(exc, path) from None

    def remove(self, path: str) -> None:
        with self.audit.action(self.actor, "delete", path):
            self._require("delete", path)
            try:
                self.ns.remove_file(self._backend(path))
            except Exception as exc:
                raise ftp_error(exc, path) from None
        logger.info("ftp %s deleted %s", self.user.login, path)

    def rename(self, src: str, dst: str) -> None:
        """RNFR/RNTO: another case of the same name is a rename; an existing other target is refused
        (550 File exists) rather than replaced, as most FTP servers' clients expect."""
        with self.audit.action(self.actor, "rename", f"{src} -> {dst}"):
            self._require("rename", src)
            self._check_new_name(dst)
            try:
                self.ns.rename(self._backend(src), self._backend(dst), overwrite=False)
            except Exception as exc:
                raise ftp_error(exc, f"{src} -> {dst}") from None
        logger.info("ftp %s renamed %s to %s", self.user.login, src, dst)

    def chmod(self, path: str, mode: int) -> None:
        raise FilesystemError("Box has no file modes")

    def stat(self, path: str) -> os.stat_result:
        try:
            return info_to_stat(self._info(path), self.user.read_only)
        except FilesystemError:
            raise
        except Exception as exc:
            raise ftp_error(exc, path) from None

    lstat = stat

    def utime(self, path: str, timeval: float) -> None:
        with self.audit.action(self.actor, "set_mtime", path):
            self._require("overwrite", path)  # Box sets a time only with a new upload of the content
            try:
                set_mtime(self.fs, self._backend(path), timeval)
            except Exception as exc:
                raise ftp_error(exc, path) from None
        logger.info("ftp %s set modification time of %s", self.user.login, path)

    def readlink(self, path: str) -> str:
        raise FilesystemError("Box has no symbolic links")

    def _safe_info(self, path: str) -> dict[str, Any] | None:
        # pyftpdlib calls isfile/isdir/lexists outside its error handling: they must not raise.
        if not self.validpath(path):
            return None
        try:
            return self.ns.info(self._backend(path))
        except Exception:  # noqa: BLE001 - "does not exist / cannot tell" is the answer
            return None

    def isfile(self, path: str) -> bool:
        info = self._safe_info(path)
        return info is not None and not info_is_dir(info)

    def isdir(self, path: str) -> bool:
        if path == "/":
            return True
        info = self._safe_info(path)
        return info is not None and info_is_dir(info)

    def islink(self, path: str) -> bool:
        return False

    def lexists(self, path: str) -> bool:
        return self._safe_info(path) is not None

    def getsize(self, path: str) -> int:
        try:
            return int(self.ns.info(self._backend(path)).get("size") or 0)
        except Exception as exc:
            raise ftp_error(exc, path) from None

    def getmtime(self, path: str) -> float:
        try:
            return info_mtime(self.ns.info(self._backend(path)))
        except Exception as exc:
            raise ftp_error(exc, path) from None

    def get_user_by_uid(self, uid: int) -> str:
        return "box"

    def get_group_by_gid(self, gid: int) -> str:
        return "box"


class _UploadResultMixin:
    """Data channel change: report a failed Box upload instead of "226 Transfer complete".

    pyftpdlib closes the file after the client closes the data connection and then replies with
    the response chosen before; an upload that fails at that point (Box refuses it) must turn that
    reply into an error, or the client would believe its file is stored.
    """

    def close(self) -> None:
        file_obj = getattr(self, "file_obj", None)
        if not getattr(self, "_closed", True) and file_obj is not None and not file_obj.closed:
            if getattr(self, "receive", False) and (
                not getattr(self, "transfer_finished", False) or self._client_gone()
            ):
                # ABOR or a broken connection: never store a truncated file in Box.
                logger.warning("upload of %s aborted; nothing stored", file_obj.name)
                file_obj.discard()
                super().close()  # type: ignore[misc]
                return
            try:
                file_obj.close()
            except Exception as exc:  # noqa: BLE001 - any failure means the file is not stored
                log_failure(logger, "ftp upload", file_obj.name, exc)
                reply, reason = ftp_reply(exc)
                if reply == 550 and errno_of(exc) != errno.EEXIST:
                    reply = 451  # worth retrying; a name taken meanwhile (create-only upload) is not
                self._resp = (f"{reply} Upload failed: {reason}.", logger.warning)
                self.transfer_finished = False
        super().close()  # type: ignore[misc]

    #: How long a finished upload waits to see whether the client closed its control connection too.
    client_gone_wait = 0.1

    def _client_gone(self) -> bool:
        """Whether the client closed its control connection too: the end of an upload's data is only
        a closed data connection, which a killed client (curl, lftp) also sends, the control
        connection's close following within microseconds. A client that means it keeps the control
        connection open and waits for the reply: it costs that client ``client_gone_wait``."""
        cmd = getattr(self, "cmd_channel", None)
        fileno = cmd.socket.fileno() if cmd is not None and getattr(cmd, "socket", None) is not None else -1
        if fileno < 0:
            return True
        raw = socket.socket(fileno=os.dup(fileno))  # the TCP stream itself, also under TLS
        try:
            if not select.select([raw], [], [], self.client_gone_wait)[0]:
                return False  # nothing, not even an end: the client is waiting for the reply
            return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""  # EOF: the client is gone
        except BlockingIOError:
            return False
        except OSError:
            return True  # reset
        finally:
            raw.close()

    def handle_error(self) -> None:
        """A read or write of the transfer failed (a full spool disk): say so with its reply code.

        pyftpdlib answers "426 <strerror>" from an exception that lost its errno ("426 None"); the
        cause is mapped like every other filesystem error instead, and an upload is discarded.
        """
        try:
            raise  # noqa: PLE0704 - called from an except block, like pyftpdlib's own
        except Exception as exc:  # noqa: BLE001
            cause = exc.__cause__ if isinstance(exc.__cause__, BaseException) else exc
            log_failure(logger, "ftp transfer", getattr(getattr(self, "file_obj", None), "name", None), cause)
            reply, reason = ftp_reply(cause)
            self._resp = (f"{reply if reply != 550 else 426} {reason}; transfer aborted.", logger.warning)
            self.transfer_finished = False
            self.close()


class BoxDTPHandler(_UploadResultMixin, DTPHandler):
    """Plain data channel with upload-failure reporting."""


class BoxFTPHandler(FTPHandler):
    """Control channel: Box filesystem, login/transfer logging, no password kept in memory."""

    abstracted_fs = BoxFTPFS
    dtp_handler = BoxDTPHandler
    use_sendfile = False
    banner = "boxfs FTP server ready."
    filesystems: UserFilesystems  # set on the per-server subclass
    session_limits: SessionLimits | None = None  # each connection's (None: the defaults)
    boxfs_user: User | None = None

    def _drop_queued_upload(self) -> None:
        """Abandon an upload whose STOR is waiting for its data connection: nothing is stored.

        pyftpdlib closes such a file when the client goes away (for an upload: store it, empty) and
        forgets it when another STOR comes; either way no byte of it was sent.
        """
        queued = getattr(self, "_in_dtp_queue", None)
        if queued is not None and isinstance(queued[0], UploadFile):
            logger.info("ftp %s upload of %s abandoned before its data connection: nothing stored",
                        self.username, queued[0].name)
            queued[0].discard()
            self._in_dtp_queue = None

    def ftp_STOR(self, file: str, mode: str = "w") -> Any:
        self._drop_queued_upload()
        return super().ftp_STOR(file, mode)

    def flush_account(self) -> None:
        """REIN and a new USER (pyftpdlib's ``flush_account``) forget the queued transfers without
        closing them: the upload is dropped first, so its open-file slot and its locked spool file go
        with it, and the previous version of the file stays."""
        self._drop_queued_upload()
        super().flush_account()

    def close(self) -> None:
        self._drop_queued_upload()
        super().close()

    def handle_auth_success(self, home: str, password: str, msg_login: str) -> None:
        super().handle_auth_success(home, password, msg_login)
        self.password = ""  # pyftpdlib keeps it for impersonation, which Box does not need

    _fs_reply: int | None = None

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        self._fs_reply = None
        super().process_command(cmd, *args, **kwargs)

    def run_as_current_user(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """pyftpdlib makes every filesystem call through here and answers any failure with 550:
        remember the reply code the error asks for, so that :meth:`respond` can use it."""
        try:
            return super().run_as_current_user(function, *args, **kwargs)
        except BoxFilesystemError as exc:
            self._fs_reply = exc.reply
            raise

    def respond(self, resp: str, logfun: Callable[..., Any] = logger.debug) -> None:
        reply, self._fs_reply = self._fs_reply, None
        if reply is not None and resp.startswith("550 "):
            resp = f"{reply} {resp[4:]}"
        super().respond(resp, logfun)

    def on_login(self, username: str) -> None:
        user = self.boxfs_user
        logger.info(
            "ftp login %s from %s (Box user %s, home %s%s)",
            username,
            self.remote_ip,
            user.box_user if user else "?",
            user.home if user else "?",
            ", read-only" if user and user.read_only else "",
        )

    def on_login_failed(self, username: str, password: str) -> None:
        logger.warning("ftp login refused for %r from %s", username, self.remote_ip)

    def on_logout(self, username: str) -> None:
        logger.info("ftp logout %s", username)

    def on_disconnect(self) -> None:
        user, self.boxfs_user = self.boxfs_user, None
        if user is not None:
            self.authorizer.sessions.release(user.login)

    def log_transfer(
        self, cmd: str, filename: str, receive: bool, completed: bool, elapsed: float, bytes: int
    ) -> None:  # noqa: A002
        logger.info(
            "ftp %s %s %s %s: %d bytes in %.3fs",
            self.username,
            cmd,
            filename,
            "completed" if completed else "incomplete",
            bytes,
            elapsed,
        )
        fs = self.fs
        if isinstance(fs, BoxFTPFS):
            failed = None if completed else OSError(errno.EIO, "transfer incomplete")
            fs.audit.record(fs.actor, "upload" if receive else "download", filename, nbytes=bytes, error=failed)


def _tls_handler_classes() -> tuple[type, type]:
    """FTPS classes (need pyOpenSSL, imported only when a certificate is configured)."""
    try:
        from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
    except ImportError as exc:  # pragma: no cover - pyOpenSSL is in the servers extra
        raise RuntimeError("FTPS needs pyOpenSSL: pip install 'box-fsspec[servers]'") from exc

    class BoxTLSDTPHandler(_UploadResultMixin, TLS_DTPHandler):
        """TLS data channel with upload-failure reporting."""

    class BoxTLSFTPHandler(BoxFTPHandler, TLS_FTPHandler):
        """Explicit FTPS (AUTH TLS) control channel."""

        dtp_handler = BoxTLSDTPHandler

    return BoxTLSFTPHandler, BoxTLSDTPHandler


class _IsolatedThreadedFTPServer(ThreadedFTPServer):
    """ThreadedFTPServer with its own exit event and lock.

    pyftpdlib keeps those at class level, so stopping one server would stop every other server
    in the process (tests run several).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        self._exit = threading.Event()
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)


def make_ftp_server(
    users: str | os.PathLike[str] | UsersDB,
    filesystems: UserFilesystems | Callable[[str], Any],
    host: str = "127.0.0.1",
    port: int = 2121,
    *,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    tls_required: bool = False,
    passive_ports: range | None = None,
    masquerade_address: str | None = None,
    max_connections: int = 256,
    auth_failed_delay: float = 0.0,
    login_throttle: ThrottlePolicy | None = None,
    timeout: int = 300,
    allow_loose_users_file: bool = False,
    spool_clean_interval: float = 3600.0,
    spool_max_age: float | None = None,
    audit_log: AuditLog | None = None,
    session_limits: SessionLimits | None = None,
) -> ThreadedFTPServer:
    """Build (without starting) a threaded FTP server over the given per-Box-user filesystems.

    ``filesystems`` is a :class:`UserFilesystems` or a ``factory(box_user)`` callable. With a
    ``certfile`` the server offers explicit FTPS (AUTH TLS); ``tls_required`` then refuses
    logins and transfers over plain connections. ``login_throttle`` overrides the users file's
    ``[login_throttle]`` table; ``auth_failed_delay`` is a minimum wait before any failed login.
    Plain FTP on a non-loopback address, or a certificate without ``tls_required``, is warned about.
    ``session_limits`` caps what each connection holds (open files, bytes ahead of a gap), as for SFTP.
    ``server.boxfs_cleaner`` (started by :func:`start_ftp_server` and :func:`run_ftp`) removes, every
    ``spool_clean_interval`` seconds, spool files older than ``spool_max_age`` no upload uses.
    """
    users_db = load_users(users, allow_loose_users_file)
    warn_ftp_setup(host, certfile, tls_required)
    if not isinstance(filesystems, UserFilesystems):
        filesystems = UserFilesystems(filesystems)
    attrs: dict[str, Any] = {
        "authorizer": BoxAuthorizer(users_db, login_throttle),
        "filesystems": filesystems,
        "auth_failed_timeout": auth_failed_delay,
        "timeout": timeout,
        "passive_ports": list(passive_ports) if passive_ports else None,
        "masquerade_address": masquerade_address,
        "audit": audit_log or AuditLog(None),
        "session_limits": session_limits,
    }
    if certfile:
        base, _dtp = _tls_handler_classes()
        attrs.update(certfile=os.fspath(certfile), keyfile=os.fspath(keyfile) if keyfile else None)
        attrs.update(tls_control_required=tls_required, tls_data_required=tls_required)
    else:
        base = BoxFTPHandler
    handler = type("ConfiguredBoxFTPHandler", (base,), attrs)
    server = _IsolatedThreadedFTPServer((host, port), handler, ioloop=IOLoop())
    server.max_cons = max_connections
    server.boxfs_cleaner = spool_cleaner(filesystems, spool_clean_interval, spool_max_age)
    return server


@dataclass
class FTPServerHandle(ServerHandle):
    """An FTP server running in a background thread (tests, embedding)."""

    server: ThreadedFTPServer
    thread: threading.Thread
    host: str
    port: int
    _stop: threading.Event

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, close every session and wait for the thread."""
        self._stop.set()
        self.thread.join(timeout)


def start_ftp_server(
    users: str | os.PathLike[str] | UsersDB,
    filesystems: UserFilesystems | Callable[[str], Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    base_urls: Mapping[str, str] | None = None,
    **options: Any,
) -> FTPServerHandle:
    """Start an FTP server in a background thread and return once it accepts connections.

    Give either ``filesystems`` (a :class:`UserFilesystems` or factory) or a Box app ``config``
    (+ ``base_urls`` for the emulator). ``port=0`` picks a free port (see ``handle.port``).
    Other options are those of :func:`make_ftp_server`.
    """
    filesystems = server_filesystems(filesystems, config, base_urls)
    server = make_ftp_server(users, filesystems, host, port, **options)
    bound_host, bound_port = server.address[:2]
    stop = threading.Event()

    def loop() -> None:
        with cleaning(server.boxfs_cleaner):
            try:
                while not stop.is_set():
                    server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
                    time.sleep(0.005)
            finally:
                server.close_all()

    thread = threading.Thread(target=loop, name=f"boxfs-ftp-{bound_port}", daemon=True)
    thread.start()
    logger.info("FTP server listening on %s:%d", bound_host, bound_port)
    return FTPServerHandle(server, thread, bound_host, bound_port, stop)


def run_ftp(
    users_file: str | os.PathLike[str],
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
    host: str = "0.0.0.0",
    port: int = 2121,
    *,
    base_urls: Mapping[str, str] | None = None,
    fs_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> None:
    """Run the FTP(S) server in the foreground until interrupted (what ``boxfs serve ftp`` calls).

    ``options`` are :func:`make_ftp_server`'s (certfile, keyfile, tls_required, passive_ports...).
    """
    enable_server_logging()
    server = make_ftp_server(users_file, box_filesystem_factory(config, base_urls, **(fs_options or {})), host, port, **options)
    authorizer: BoxAuthorizer = server.handler.authorizer

    def use(users: UsersDB) -> None:
        authorizer.users = users  # sessions already logged in keep their User

    reload_on_sighup(users_file, lambda: authorizer.users, use, options.get("allow_loose_users_file", False))
    tls = "S" if options.get("certfile") else ""
    logger.info("FTP%s server for Box listening on %s:%d", tls, *server.address[:2])
    with cleaning(server.boxfs_cleaner):
        try:
            server.serve_forever(timeout=1.0, blocking=True, handle_exit=True)
        finally:
            server.close_all()
