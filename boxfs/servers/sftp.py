"""SFTP server whose users' files live in Box (asyncssh).

Same users file and confinement rules as the FTP server: each login acts as its own Box user
and sees only its home folder; a path that climbs above the virtual root is refused with
"permission denied" rather than clamped. Every filesystem call is a blocking HTTP request to Box,
so they run in a thread pool and the event loop keeps serving the other sessions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import functools
import logging
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncssh
from asyncssh import (
    FXF_APPEND,
    FXF_CREAT,
    FXF_EXCL,
    FXF_READ,
    FXF_TRUNC,
    FXF_WRITE,
    SFTPAttrs,
    SFTPDirNotEmpty,
    SFTPError,
    SFTPFailure,
    SFTPFileAlreadyExists,
    SFTPFileIsADirectory,
    SFTPInvalidFilename,
    SFTPName,
    SFTPNoSpaceOnFilesystem,
    SFTPNoSuchFile,
    SFTPNotADirectory,
    SFTPOpUnsupported,
    SFTPPermissionDenied,
    SFTPQuotaExceeded,
)

from boxfs.frontend import Namespace, OpenFiles, PendingLimitError, errno_of, log_failure, reason_of
from boxfs.frontend.cleaning import SpoolCleaner
from boxfs.frontend.stat import info_is_dir, info_to_stat
from boxfs.servers.audit import Actor, AuditLog
from boxfs.servers.common import (
    DownloadFile,
    ServerHandle,
    SessionLimitError,
    SessionLimits,
    SessionResources,
    UploadFile,
    box_filesystem_factory,
    client_reason,
    enable_server_logging,
    server_filesystems,
    set_mtime,
    spool_cleaner,
)
from boxfs.servers.permissions import ActionDenied, allows, require
from boxfs.servers.safety import UnsafeSetupError, default_state_dir, private_dir, warn_if_loose
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

__all__ = ["BoxSFTPServer", "BoxSSHServer", "SFTPServerHandle", "run_sftp", "start_sftp_server"]


class _ServerState:
    """What every connection of one server shares: users, filesystems, key index, thread pool."""

    def __init__(
        self,
        users: UsersDB,
        filesystems: UserFilesystems,
        max_workers: int = 32,
        session_limits: SessionLimits | None = None,
        login_throttle: ThrottlePolicy | None = None,
        audit: AuditLog | None = None,
    ):
        self.users = users
        self.audit = audit or AuditLog(None)
        self.sessions = LoginSessions()
        self.filesystems = filesystems
        self.session_limits = session_limits or SessionLimits()
        self.throttle = LoginThrottle(login_throttle or users.throttle)
        self.cleaner: SpoolCleaner | None = None
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="boxfs-sftp")
        self.keys: dict[str, list[bytes]] = {}
        self.set_users(users)

    def set_users(self, users: UsersDB) -> None:
        """Use ``users`` for the next logins (a reload); sessions already open keep their login.

        Authorized keys are parsed here, before anything changes: a malformed key fails at
        start-up, or refuses the reload.
        """
        keys: dict[str, list[bytes]] = {}
        for login in users.logins():
            user = users.get(login)
            assert user is not None
            keys[login] = []
            for number, text in enumerate(user.ssh_keys, 1):
                try:
                    keys[login].append(asyncssh.import_public_key(text).public_data)
                except (asyncssh.KeyImportError, ValueError):
                    raise ValueError(
                        f"users.{login}.ssh_keys: key {number} is not an OpenSSH public key"
                    ) from None
        self.users, self.keys = users, keys

    def __repr__(self) -> str:
        return f"_ServerState({self.users!r})"


class BoxSSHServer(asyncssh.SSHServer):
    """SSH authentication against the users file (password and/or public keys)."""

    def __init__(self, state: _ServerState):
        self._state = state
        self._peer = "?"
        self._address = "?"
        self._login = ""
        self._method = ""
        self._session_of: str | None = None  # the login whose session slot this connection holds
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._address = str(peer[0]) if peer else "?"

    def begin_auth(self, username: str) -> bool:
        self._login = username
        return True  # authentication is always required

    def auth_completed(self) -> None:
        """The login is proven: only now does it take one of its ``max_sessions`` slots.

        A public-key query (``validate_public_key`` without a signature) proves nothing: an attacker
        holding only a user's public key would otherwise fill that user's sessions. The validators
        refuse a login whose slots are full (the usual answer, "authentication failed"); two proven
        logins racing for the last slot are settled here, the loser disconnected before any channel.
        """
        user = self._state.users.get(self._login)
        if user is None:  # pragma: no cover - asyncssh only completes after a validate_* success
            return
        if self._session_of is None:
            if not self._state.sessions.acquire(user):
                if self._conn is not None:
                    self._conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, "Too many sessions for this login")
                return
            self._session_of = user.login
        logger.info(
            "sftp login %s from %s (Box user %s, home %s%s, %s)",
            user.login,
            self._peer,
            user.box_user,
            user.home,
            ", read-only" if user.read_only else "",
            self._method,
        )

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        throttle = self._state.throttle
        try:
            throttle.check(self._address, username)
        except LoginLocked as locked:
            logger.warning("sftp login refused for %r from %s: %s", username, self._peer, locked)
            return False
        loop = asyncio.get_running_loop()
        # scrypt is deliberately slow: keep it off the event loop.
        user = await loop.run_in_executor(
            self._state.executor, self._state.users.authenticate, username, password
        )
        if user is None:
            delay = throttle.failed(self._address, username, "sftp")
            logger.warning("sftp login refused for %r from %s (password)", username, self._peer)
            await asyncio.sleep(delay)  # this client waits; the other sessions go on
            return False
        throttle.succeeded(self._address, username)
        self._method = "password"
        return await self._box_ready(user)

    async def _box_ready(self, user: User) -> bool:
        """Create (or reuse) the user's filesystem now, so a Box-side problem refuses the login.

        An unknown or deactivated Box user, or an app without As-User rights, would otherwise
        only show as failures of every SFTP request after a successful login.
        """
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._state.executor, self._state.filesystems.for_user, user)
        except Exception as exc:  # noqa: BLE001 - any failure means this login cannot work
            logger.error(
                "sftp login %s: cannot act as Box user %s: %s: %s",
                user.login,
                user.box_user,
                type(exc).__name__,
                exc,
            )
            return False
        if not self._state.sessions.has_room(user):  # counted in auth_completed, once proven
            logger.warning("sftp login refused for %r from %s: too many sessions", user.login, self._peer)
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn = None
        login, self._session_of = self._session_of, None
        if login is not None:
            self._state.sessions.release(login)

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Called once to ask whether a key is acceptable and again with the signature: no login
        # is logged here, only in auth_completed. An unknown key is not a failed guess (clients
        # offer each of their keys in turn), but a locked-out address gets nothing.
        if self._state.throttle.is_address_locked(self._address):
            logger.warning("sftp key login refused for %r from %s: address locked out", username, self._peer)
            return False
        if key.public_data not in self._state.keys.get(username, []):
            logger.info(
                "sftp key %s not authorized for %r from %s", key.get_fingerprint(), username, self._peer
            )
            return False
        user = self._state.users.get(username)
        if user is None or not await self._box_ready(user):
            return False
        self._method = f"public key {key.get_fingerprint()}"
        return True


#: errno (decided once, by exception type, in boxfs.frontend.errors) -> SFTP status. asyncssh sends
#: statuses a client's protocol version lacks as "failure", with the reason text.
_SFTP_STATUS: dict[int, type[SFTPError]] = {
    errno.ENOENT: SFTPNoSuchFile,
    errno.EEXIST: SFTPFileAlreadyExists,
    errno.EACCES: SFTPPermissionDenied,
    errno.EPERM: SFTPPermissionDenied,
    errno.EROFS: SFTPPermissionDenied,
    errno.EISDIR: SFTPFileIsADirectory,
    errno.ENOTDIR: SFTPNotADirectory,
    errno.ENOTEMPTY: SFTPDirNotEmpty,
    errno.EINVAL: SFTPInvalidFilename,
    errno.ENAMETOOLONG: SFTPInvalidFilename,
    errno.ENOSPC: SFTPNoSpaceOnFilesystem,
    errno.EDQUOT: SFTPQuotaExceeded,
    errno.ENOTSUP: SFTPOpUnsupported,
}


def sftp_error(exc: BaseException, virtual: str) -> SFTPError:
    """A filesystem exception as an SFTP status with a short, safe reason (logged once, here).

    The reason is the errno's generic text and the client's own path; only errors raised by this
    server before any request (a session limit) carry their own message, which says what to do.
    """
    if isinstance(exc, SFTPError):
        return exc
    code = log_failure(logger, "sftp", virtual, exc)
    if isinstance(exc, (SessionLimitError, PendingLimitError)):
        return SFTPFailure(client_reason(exc, code))  # says which limit, and what to do
    return _SFTP_STATUS.get(code, SFTPFailure)(f"{reason_of(code)}: {virtual}")


def refuse_bad_name(ns: Namespace, backend: str) -> None:
    """Refuse a name Box would refuse, before any request, saying which rule it breaks."""
    try:
        ns.check_new_name(backend)
    except OSError as exc:  # the layer's message names the rule; the path (with the home) stays out
        raise SFTPInvalidFilename(f"Invalid name: {exc.strerror}") from None


class BoxSFTPServer(asyncssh.SFTPServer):
    """An SFTP session for one authenticated login, over that login's Box filesystem."""

    def __init__(self, chan: asyncssh.SSHServerChannel, state: _ServerState):
        super().__init__(chan)
        self._state = state
        login = chan.get_extra_info("username")
        user = state.users.get(login)
        if user is None:  # cannot happen after authentication; refuse rather than guess
            raise SFTPPermissionDenied("unknown login")
        self.user: User = user
        self._fs: Any = None
        self._ns: Namespace | None = None
        self._resources = SessionResources(state.session_limits)
        self._files: OpenFiles | None = None  # this session's write spools (the layer's)
        peer = chan.get_extra_info("peername")
        self.audit: AuditLog = state.audit
        self.actor = Actor("sftp", user.login, user.box_user, f"{peer[0]}:{peer[1]}" if peer else "?")

    def __repr__(self) -> str:
        return f"BoxSFTPServer(login={self.user.login!r})"

    def format_user(self, uid: int | None) -> str:
        return self.user.login

    def format_group(self, gid: int | None) -> str:
        return "box"

    # --- helpers

    async def _run(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._state.executor, functools.partial(func, *args, **kwargs))

    async def _filesystem(self) -> Any:
        if self._fs is None:
            # Creating the filesystem (and the home folder) talks to Box: not on the event loop.
            self._fs = await self._run(self._state.filesystems.for_user, self.user)
        return self._fs

    async def _namespace(self) -> Namespace:
        """Literal-path operations on the user's filesystem (a name is never a pattern)."""
        if self._ns is None:
            self._ns = Namespace(await self._filesystem())
        return self._ns

    def _virtual(self, path: bytes) -> str:
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise SFTPNoSuchFile("path is not valid UTF-8") from None
        virtual = virtual_norm(text, "/")
        if virtual is None:
            raise SFTPPermissionDenied(f"path is outside the home folder: {text}")
        return virtual

    def _backend(self, virtual: str) -> str:
        return backend_path(self.user.home, virtual)

    def _check_writable(self, virtual: str) -> None:
        if self.user.read_only:
            raise SFTPPermissionDenied(f"read-only account: {virtual}")

    def _require(self, action: str, virtual: str) -> None:
        """The login's permissions (:mod:`boxfs.servers.permissions`), checked before any request."""
        try:
            require(self.user, action, virtual, "sftp")
        except ActionDenied as exc:
            raise sftp_error(exc, virtual) from None

    async def _call(self, virtual: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._run(func, *args, **kwargs)
        except SFTPError:
            raise
        except Exception as exc:
            raise sftp_error(exc, virtual) from None

    async def _info(self, virtual: str) -> dict[str, Any]:
        ns = await self._namespace()
        if virtual == "/" and self.user.home == "/":
            # The Box root always exists; no request needed.
            return {"name": "", "type": "directory", "size": 0, "id": "0"}
        return await self._call(virtual, ns.info, self._backend(virtual))

    # --- paths and attributes

    async def realpath(self, path: bytes) -> bytes:
        return self._virtual(path).encode("utf-8")

    async def stat(self, path: bytes) -> os.stat_result:
        virtual = self._virtual(path)
        return info_to_stat(await self._info(virtual), self.user.read_only)

    lstat = stat

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        virtual = self._virtual(path)
        info = await self._info(virtual)
        if attrs.size is not None and attrs.size != int(info.get("size") or 0):
            raise SFTPOpUnsupported("Box files cannot be truncated in place")
        if attrs.mtime is not None:
            with self.audit.action(self.actor, "set_mtime", virtual):
                self._check_writable(virtual)
                self._require("overwrite", virtual)  # Box sets a time only with a new upload of the content
                if info_is_dir(info):
                    raise SFTPOpUnsupported("Box folders have no settable modification time")
                fs = await self._filesystem()
                await self._call(virtual, set_mtime, fs, self._backend(virtual), float(attrs.mtime))
            logger.info("sftp %s set modification time of %s", self.user.login, virtual)
        # Permissions, owners and access times do not exist in Box: accepted and ignored so
        # that clients preserving attributes do not fail.

    lsetstat = setstat

    async def fstat(self, file_obj: Any) -> os.stat_result:
        if isinstance(file_obj, UploadFile):
            return info_to_stat({"type": "file", "size": file_obj.bytes_written, "name": file_obj.name})
        return await self.stat(file_obj.name.encode("utf-8"))

    async def fsetstat(self, file_obj: Any, attrs: SFTPAttrs) -> None:
        if isinstance(file_obj, UploadFile):
            if attrs.mtime is not None:
                # Sent with the upload (Box sets times only with content): no extra request.
                file_obj.set_mtime(float(attrs.mtime))
            return
        await self.setstat(file_obj.name.encode("utf-8"), attrs)

    async def fsync(self, file_obj: Any) -> None:
        """fsync@openssh.com: an upload is sent to Box now, and fails here if Box does not take it."""
        if isinstance(file_obj, UploadFile):
            await self._call(file_obj.name, file_obj.fsync)

    # --- files

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> Any:
        """A transfer's file; a refused open is audited here, a transfer at its close."""
        try:
            return await self._open(path, pflags)
        except Exception as exc:
            action = "upload" if pflags & FXF_WRITE else "download"
            self.audit.record(self.actor, action, self._virtual(path), error=exc)
            raise

    async def _open(self, path: bytes, pflags: int) -> Any:
        virtual = self._virtual(path)
        fs = await self._filesystem()
        ns = await self._namespace()
        backend = self._backend(virtual)
        if pflags & FXF_WRITE:
            self._check_writable(virtual)
            if pflags & (FXF_READ | FXF_APPEND):
                raise SFTPOpUnsupported("Box files can only be written whole: open write-only")
            info = await self._call(virtual, ns.try_info, backend)
            if info is None:
                if not pflags & FXF_CREAT:
                    raise SFTPNoSuchFile(f"No such file or directory: {virtual}")
                refuse_bad_name(ns, backend)
                self._require("upload", virtual)
                await self._call(virtual, ns.check_parent, backend)
            else:
                if info_is_dir(info):
                    raise SFTPFileIsADirectory(f"Is a directory: {virtual}")
                if pflags & FXF_EXCL:
                    raise SFTPFileAlreadyExists(f"File exists: {virtual}")
                if not pflags & FXF_TRUNC:
                    raise SFTPOpUnsupported("Box files cannot be modified in place: open with truncate")
                self._require("overwrite", virtual)
            if self._files is None:
                self._files = self._resources.open_files_for(fs)
            # O_EXCL, or a login without ``overwrite``: the upload creates or fails at close (a name
            # another client takes while this one is open is refused, never replaced)
            create_only = bool(pflags & FXF_EXCL) or not allows(self.user, "overwrite")
            upload = await self._call(virtual, UploadFile, self._files, backend, virtual, self._resources,
                                      create_only=create_only)
            logger.info("sftp %s upload started %s", self.user.login, virtual)
            return upload
        self._require("download", virtual)
        info = await self._info(virtual)
        if info_is_dir(info):
            raise SFTPFileIsADirectory(f"Is a directory: {virtual}")
        download = await self._call(virtual, DownloadFile, fs, backend, virtual, self._resources)
        logger.info("sftp %s download started %s", self.user.login, virtual)
        return download

    async def read(self, file_obj: Any, offset: int, size: int) -> bytes:
        if not isinstance(file_obj, DownloadFile):
            raise SFTPPermissionDenied("file not open for reading")
        return await self._call(file_obj.name, file_obj.pread, size, offset)

    async def write(self, file_obj: Any, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, UploadFile):
            raise SFTPPermissionDenied("file not open for writing")
        return await self._call(file_obj.name, file_obj.pwrite, data, offset)

    def _session_ending(self) -> bool:
        """True when asyncssh is closing leftover handles because the session ended.

        asyncssh closes every still-open handle through :meth:`close` when a client disconnects;
        for an upload that would store a truncated file in Box. A client's own close request is
        always made on an open channel (it waits for the answer), so a closing channel or a
        channel that already saw the client's EOF means the transfer was abandoned.
        """
        chan = self.channel
        return chan.is_closing() or getattr(chan, "_recv_state", "open") != "open"

    async def close(self, file_obj: Any) -> None:
        if isinstance(file_obj, UploadFile) and self._session_ending():
            logger.warning(
                "sftp %s upload abandoned %s after %d bytes: nothing stored",
                self.user.login,
                file_obj.name,
                file_obj.bytes_written,
            )
            await self._run(file_obj.discard)
            self.audit.record(self.actor, "upload", file_obj.name, nbytes=file_obj.bytes_written,
                              error=OSError(errno.EIO, "upload abandoned"))
            return
        if isinstance(file_obj, UploadFile):
            try:
                await self._run(file_obj.close)
            except Exception as exc:
                self.audit.record(self.actor, "upload", file_obj.name, nbytes=file_obj.bytes_written, error=exc)
                code = errno_of(exc)
                logger.warning(
                    "sftp %s upload failed %s: %s (%s: %s)",
                    self.user.login,
                    file_obj.name,
                    reason_of(code),
                    type(exc).__name__,
                    exc,
                )
                raise _SFTP_STATUS.get(code, SFTPFailure)(f"Upload failed: {reason_of(code)}") from None
            self.audit.record(self.actor, "upload", file_obj.name, nbytes=file_obj.bytes_written)
            logger.info(
                "sftp %s upload completed %s: %d bytes",
                self.user.login,
                file_obj.name,
                file_obj.bytes_written,
            )
        elif isinstance(file_obj, DownloadFile):
            await self._run(file_obj.close)
            self.audit.record(self.actor, "download", file_obj.name, nbytes=file_obj.bytes_read)
            logger.info(
                "sftp %s download closed %s: %d bytes", self.user.login, file_obj.name, file_obj.bytes_read
            )

    def exit(self) -> None:
        logger.info("sftp session of %s ended", self.user.login)

    # --- directories

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        virtual = self._virtual(path)
        with self.audit.action(self.actor, "list", virtual):
            names = [name async for name in self._scandir(virtual)]
        for name in names:
            yield name

    async def _scandir(self, virtual: str) -> AsyncIterator[SFTPName]:
        self._require("list", virtual)
        ns = await self._namespace()
        info = await self._info(virtual)
        if not info_is_dir(info):
            raise SFTPNotADirectory(f"Not a directory: {virtual}")
        # the filesystem's cache is kept true by Box's event stream (docs/coherence.md): no refresh
        entries = await self._call(virtual, ns.list, self._backend(virtual))
        here = info_to_stat(info, self.user.read_only)
        yield SFTPName(b".", attrs=SFTPAttrs.from_local(here))
        yield SFTPName(b"..", attrs=SFTPAttrs.from_local(here))
        for entry in sorted(entries, key=lambda e: e["name"]):
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if not name:
                continue
            attrs = SFTPAttrs.from_local(info_to_stat(entry, self.user.read_only))
            yield SFTPName(name.encode("utf-8"), attrs=attrs)

    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        virtual = self._virtual(path)
        with self.audit.action(self.actor, "mkdir", virtual):
            await self._mkdir(virtual)

    async def _mkdir(self, virtual: str) -> None:
        self._check_writable(virtual)
        self._require("mkdir", virtual)
        ns = await self._namespace()
        backend = self._backend(virtual)
        refuse_bad_name(ns, backend)
        if await self._call(virtual, ns.exists, backend):
            raise SFTPFileAlreadyExists(f"File exists: {virtual}")
        await self._call(virtual, ns.mkdir, backend)
        logger.info("sftp %s created folder %s", self.user.login, virtual)

    async def rmdir(self, path: bytes) -> None:
        virtual = self._virtual(path)
        with self.audit.action(self.actor, "delete", virtual):
            await self._rmdir(virtual)

    async def _rmdir(self, virtual: str) -> None:
        self._check_writable(virtual)
        self._require("delete", virtual)
        if virtual == "/":
            raise SFTPPermissionDenied("cannot remove the home folder")
        ns = await self._namespace()
        await self._call(virtual, ns.remove_folder, self._backend(virtual))
        logger.info("sftp %s removed folder %s", self.user.login, virtual)

    async def remove(self, path: bytes) -> None:
        virtual = self._virtual(path)
        with self.audit.action(self.actor, "delete", virtual):
            await self._remove(virtual)

    async def _remove(self, virtual: str) -> None:
        self._check_writable(virtual)
        self._require("delete", virtual)
        ns = await self._namespace()
        await self._call(virtual, ns.remove_file, self._backend(virtual))
        logger.info("sftp %s deleted %s", self.user.login, virtual)

    async def _rename(self, oldpath: bytes, newpath: bytes, overwrite: bool) -> None:
        """POSIX rename through the layer: onto itself a no-op, a case-only rename a rename, onto
        another file Box's safe replace (the new file in place before the old one goes)."""
        src = self._virtual(oldpath)
        dst = self._virtual(newpath)
        with self.audit.action(self.actor, "rename", f"{src} -> {dst}"):
            await self._rename_checked(src, dst, overwrite)

    async def _rename_checked(self, src: str, dst: str, overwrite: bool) -> None:
        self._check_writable(src)
        self._require("rename", src)
        if src == "/" or dst == "/":
            raise SFTPPermissionDenied("cannot rename the home folder")
        ns = await self._namespace()
        refuse_bad_name(ns, self._backend(dst))
        may_replace = overwrite and allows(self.user, "overwrite")
        if overwrite and not may_replace and await self._call(dst, ns.exists, self._backend(dst)):
            self._require("overwrite", dst)
        # without ``overwrite`` a target another client creates meanwhile is EEXIST, never replaced
        await self._call(f"{src} -> {dst}", ns.rename, self._backend(src), self._backend(dst), overwrite=may_replace)
        logger.info("sftp %s renamed %s to %s", self.user.login, src, dst)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._rename(oldpath, newpath, overwrite=False)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._rename(oldpath, newpath, overwrite=True)

    # --- not in Box

    def readlink(self, path: bytes) -> bytes:
        raise SFTPOpUnsupported("Box has no symbolic links")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise SFTPOpUnsupported("Box has no symbolic links")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise SFTPOpUnsupported("Box has no hard links")


HOST_KEY_NAME = "ssh_host_ed25519_key"


def load_host_key(
    host_key: str | os.PathLike[str] | asyncssh.SSHKey | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    *,
    ephemeral: bool = False,
) -> asyncssh.SSHKey:
    """The server's SSH host key: given, or kept in a private state folder, or (``ephemeral``) temporary.

    Without ``host_key`` the key is ``<state_dir>/ssh_host_ed25519_key`` (``state_dir`` defaults to
    ``$XDG_STATE_HOME/boxfs``): generated once (0600 in a 0700 folder) and reused, so clients see
    the same fingerprint at every start. ``ephemeral`` (tests, embedding without a state folder)
    generates a new key when neither is given.
    """
    if isinstance(host_key, asyncssh.SSHKey):
        return host_key
    if host_key is not None:
        warn_if_loose(host_key, "SSH host key")
        return asyncssh.read_private_key(os.fspath(host_key))
    if state_dir is None and ephemeral:
        key = asyncssh.generate_private_key("ssh-ed25519")
        logger.warning(
            "no host key or state folder given: generated a temporary one (%s); clients will see a new key "
            "at every start",
            key.get_fingerprint(),
        )
        return key
    path = private_dir(default_state_dir() if state_dir is None else state_dir) / HOST_KEY_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise UnsafeSetupError(f"{path} must be a regular file, not a symlink") from None
        warn_if_loose(path, "SSH host key")
        key = asyncssh.read_private_key(str(path))
        logger.info("SSH host key %s from %s", key.get_fingerprint(), path)
        return key
    key = asyncssh.generate_private_key("ssh-ed25519")
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key())
    logger.warning("generated SSH host key %s in %s (kept for later starts)", key.get_fingerprint(), path)
    return key


async def create_sftp_server(
    users: str | os.PathLike[str] | UsersDB,
    filesystems: UserFilesystems | Callable[[str], Any],
    host: str = "127.0.0.1",
    port: int = 2222,
    *,
    host_key: str | os.PathLike[str] | asyncssh.SSHKey | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    max_workers: int = 32,
    login_timeout: float = 60,
    session_limits: SessionLimits | None = None,
    login_throttle: ThrottlePolicy | None = None,
    allow_loose_users_file: bool = False,
    spool_clean_interval: float = 3600.0,
    spool_max_age: float | None = None,
    audit_log: AuditLog | None = None,
) -> asyncssh.SSHAcceptor:
    """Start serving SFTP on the running event loop; returns the asyncssh acceptor.

    ``login_throttle`` overrides the users file's ``[login_throttle]`` table. The host key is
    :func:`load_host_key`'s (persistent in ``state_dir``, default ``$XDG_STATE_HOME/boxfs``).
    Every ``spool_clean_interval`` seconds (0: never) spool files older than ``spool_max_age`` that
    no upload uses are removed.
    """
    users_db = load_users(users, allow_loose_users_file)
    if not isinstance(filesystems, UserFilesystems):
        filesystems = UserFilesystems(filesystems)
    state = _ServerState(users_db, filesystems, max_workers, session_limits, login_throttle, audit_log)
    key = load_host_key(host_key, state_dir)
    acceptor = await asyncssh.create_server(
        functools.partial(BoxSSHServer, state),
        host,
        port,
        server_host_keys=[key],
        sftp_factory=functools.partial(BoxSFTPServer, state=state),
        allow_scp=False,
        login_timeout=login_timeout,
    )
    state.cleaner = spool_cleaner(filesystems, spool_clean_interval, spool_max_age)
    if state.cleaner is not None:
        state.cleaner.start()
    acceptor._boxfs_state = state  # type: ignore[attr-defined]  # kept for shutdown
    return acceptor


def _shutdown_state(acceptor: asyncssh.SSHAcceptor) -> None:
    """Stop what the server runs besides the listener: the spool cleaner and the thread pool."""
    state = getattr(acceptor, "_boxfs_state", None)
    if state is not None:
        if state.cleaner is not None:
            state.cleaner.stop()
        state.executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class SFTPServerHandle(ServerHandle):
    """An SFTP server running on its own event loop in a background thread (tests, embedding)."""

    acceptor: asyncssh.SSHAcceptor
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    host: str
    port: int
    host_key: asyncssh.SSHKey

    @property
    def state(self) -> _ServerState:
        """What the server's sessions share (users, filesystems, login throttle)."""
        return self.acceptor._boxfs_state  # type: ignore[attr-defined, no-any-return]

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every session, then stop the loop and its thread."""

        async def shutdown() -> None:
            self.acceptor.close()
            await self.acceptor.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            _shutdown_state(self.acceptor)


def start_sftp_server(
    users: str | os.PathLike[str] | UsersDB,
    filesystems: UserFilesystems | Callable[[str], Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    base_urls: Mapping[str, str] | None = None,
    host_key: str | os.PathLike[str] | asyncssh.SSHKey | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SFTPServerHandle:
    """Start an SFTP server in a background thread; returns once it accepts connections.

    Give either ``filesystems`` (a :class:`UserFilesystems` or factory) or a Box app ``config``
    (+ ``base_urls`` for the emulator). ``port=0`` picks a free port (see ``handle.port``);
    ``handle.host_key`` is the server key clients should trust: ``host_key``, else the one kept in
    ``state_dir``, else (neither given) a temporary one.
    """
    filesystems = server_filesystems(filesystems, config, base_urls)
    key = load_host_key(host_key, state_dir, ephemeral=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="boxfs-sftp", daemon=True)
    thread.start()
    future = asyncio.run_coroutine_threadsafe(
        create_sftp_server(users, filesystems, host, port, host_key=key, **options), loop
    )
    try:
        acceptor = future.result(30)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        raise
    bound = acceptor.sockets[0].getsockname()
    logger.info("SFTP server listening on %s:%d", bound[0], bound[1])
    return SFTPServerHandle(acceptor, loop, thread, bound[0], bound[1], key)


def run_sftp(
    users_file: str | os.PathLike[str],
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
    host: str = "0.0.0.0",
    port: int = 2222,
    *,
    host_key: str | os.PathLike[str] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    base_urls: Mapping[str, str] | None = None,
    fs_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> None:
    """Run the SFTP server in the foreground until interrupted (what ``boxfs serve sftp`` calls).

    Without ``host_key`` the key kept in ``state_dir`` (default ``$XDG_STATE_HOME/boxfs``) is used,
    generated at the first start. ``options`` are :func:`create_sftp_server`'s.
    """
    enable_server_logging()

    async def main() -> None:
        acceptor = await create_sftp_server(
            users_file,
            box_filesystem_factory(config, base_urls, **(fs_options or {})),
            host,
            port,
            host_key=host_key,
            state_dir=state_dir,
            **options,
        )
        bound = acceptor.sockets[0].getsockname()
        logger.info("SFTP server for Box listening on %s:%d", bound[0], bound[1])
        state: _ServerState = acceptor._boxfs_state  # type: ignore[attr-defined]
        reload_on_sighup(users_file, lambda: state.users, state.set_users, options.get("allow_loose_users_file", False))
        try:
            await acceptor.wait_closed()
        finally:
            acceptor.close()
            _shutdown_state(acceptor)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        logger.info("SFTP server stopped")
