"""The chunked upload session: the path for uploads above ``spool_threshold``.

One upload is: preflight (``OPTIONS /files/content``) -> create a session (new file, or new version of an
existing one) -> upload the parts Box asked for (``part_size``, the last one shorter), by a pool of
``fs.upload_workers`` threads, each part with its ``Digest: sha=<base64 SHA1>`` -> commit with the parts
list and the whole file's SHA1, polling while Box answers 202 + ``Retry-After``.

Parts are read into the workers' buffers (:mod:`boxfs.upload.parts`): whole, read once, for the workers
within the memory budget (``PART_MEMORY``, 24 MiB: 3 of 8 MiB parts), in 1 MiB pieces, read twice (to
hash, then to send) for the others. So memory is bounded by the budget + 1 MiB a worker (24 + 5 MiB with
the default 8 workers), whatever part size Box picks, and more parts travel at once than the budget
holds. When the whole file's SHA1 is folded from the parts, a source whose size or mtime changed by the
end is refused before the commit. ``put_file`` reads parts straight from the source file (no spool copy).

Resume: the session, the content's SHA1 (when known) and the parts done are kept in a state file in the
acting user's spool folder (:mod:`boxfs.upload.resume`), keyed by destination and size. Running the same upload
again (same destination, same bytes) finds it, asks Box which parts it has (``GET .../parts``) and sends
the rest; when the SHA1 is being folded, the parts Box has are read again for it and must match the
digests Box reports (else the upload starts over with a new session).
The state is untrusted: every session URL is built from the configured upload host and the session id
(:func:`boxfs.upload.resume.session_url`); a state made for another host, or whose session Box no longer knows,
is discarded and the upload starts over.

Races: two uploads creating the same new path in overwrite mode both pass the preflight; Box lets the
first commit win and answers the other with 409. The loser then becomes a new version of the winner's
file (as a small upload does), sending its content again from the spool, which it keeps until then.

Safety: nothing is visible on Box before the commit, so a failure never leaves a partial file nor touches
the current version. Failures that may pass (5xx or 429 after retries, a lost connection, an unreadable
source) keep the session and the state for resume and raise :class:`UploadIncomplete`, naming where the
content and the state are; refusals (400, 403, 412...) abort the session and remove the state.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import stat
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from boxfs.api.errors import (
    BoxAPIError,
    conflicts_of,
    error_from_response,
    exists_error,
    is_a_directory_error,
)
from boxfs.names import check_name
from boxfs.retry import parse_retry_after
from boxfs.upload.buffers import SpoolReader
from boxfs.upload.cleaning import auto_clean
from boxfs.upload.job import UploadJob
from boxfs.upload.multipart import box_time, sha1_of, upload_small
from boxfs.upload.parts import (
    PART_MEMORY,
    SMALL_BUFFER,
    Cancelled,
    Part,
    PartBody,
    PartFeed,
    PartSource,
    Progress,
    ResumedPartDiffers,
    digest_header,
)
from boxfs.upload.preflight import landed, preflight
from boxfs.upload.resume import (
    FOLDED,
    STATE_SUFFIX,
    STATE_VERSION,
    read_state,
    remove_state,
    session_of,
    session_url,
    spool_name_of,
    state_key,
    write_state,
)
from boxfs.upload.spoolfolder import LOCK_SUFFIX, PathLock, remove_spool_file, user_spool_dir

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

logger = logging.getLogger("boxfs")

#: Box refuses upload sessions for files under 20 MB; smaller "large" uploads go in one request.
MIN_SESSION_SIZE = 20_000_000
#: A session this close to its expiry is not worth resuming.
_EXPIRY_MARGIN = 300.0
#: How long to keep polling a commit Box answers with 202 (it is assembling the file).
COMMIT_TIMEOUT = 3600.0


class UploadIncomplete(BoxAPIError):
    """A large upload stopped for a reason that may pass; running it again resumes it.

    ``spool_path``: where the content waits (the spool file of a writer, or the source of ``put_file``);
    ``state_path``: the resume state; ``session_id``: Box's upload session.
    """

    def __init__(self, message: str, *, spool_path: str | None, state_path: str | None, session_id: str | None) -> None:
        super().__init__(message)
        self.spool_path = spool_path
        self.state_path = state_path
        self.session_id = session_id


def _fatal(exc: BaseException) -> bool:
    """True for Box refusals that another attempt with the same session cannot overcome."""
    if not isinstance(exc, Exception) or isinstance(exc, UploadIncomplete):
        return False
    if isinstance(exc, BoxAPIError):
        return False  # 5xx/429 after retries, lost connections: may pass
    status = getattr(exc, "box_status", None)
    if status is None:
        return not isinstance(exc, OSError)  # a local read error may pass; programming errors do not
    return True


def upload_large(fs: BoxFileSystem, job: UploadJob) -> dict[str, Any]:
    """Upload above ``spool_threshold``: a chunked session (one request when under Box's 20 MB minimum).

    ``job.sha1`` None: the whole file's SHA-1 is folded from the parts as they are read and sent (a
    regular file; anything else is hashed first). Keeps a writer's spool file after a failure (the error
    says where); see the module docstring.
    """
    fileobj, name = job.fileobj, job.name
    if job.sha1 is None and job.size < MIN_SESSION_SIZE:
        job = replace(job, sha1=sha1_of(fileobj)[0])
    spool = fileobj if isinstance(fileobj, SpoolReader) and fileobj.name else None
    if job.progress is None and isinstance(fileobj, SpoolReader) and job.size >= MIN_SESSION_SIZE:
        # a writer's callback: parts are read with pread, not through read()
        job = replace(job, progress=fileobj.progress)
    if job.size < MIN_SESSION_SIZE:
        try:
            return upload_small(fs, job)
        except BoxAPIError as exc:
            if spool is not None:
                spool.keep_for_resume()
                raise UploadIncomplete(f"{exc}; the content is kept in {spool.name}", spool_path=spool.name,
                                       state_path=None, session_id=None) from exc
            raise
    check_name(name)
    conflict = preflight(fs, parent_id=job.parent_id, name=name, size=job.size, file_id=job.file_id)
    if conflict is not None:
        if conflict.get("type") != "file":
            raise is_a_directory_error(name)
        if not job.overwrite:
            raise exists_error(name)
        job = replace(job, file_id=str(conflict["id"]), etag=conflict.get("etag"))
        logger.debug("%s exists on Box as file %s: uploading a new version", name, job.file_id)
    auto_clean(fs)
    start = fileobj.tell()
    for attempt in (1, 2):
        upload = ChunkedUpload(fs, job)
        try:
            return upload.run()
        except FileExistsError as exc:
            # Someone created the name while we uploaded (Box refuses our session or our commit): overwrite
            # semantics make our content its new version, sent again from the spool we still hold (once).
            if attempt == 2 or job.file_id is not None or not job.overwrite:
                raise
            winner = _winner(fs, exc, parent_id=job.parent_id, name=name, size=job.size)
            if winner is None:
                raise
            job = replace(job, file_id=str(winner["id"]), etag=winner.get("etag"), sha1=upload.sha1)
            logger.info("%s was created by another upload while this one ran; uploading again as a new "
                        "version of file %s", name, job.file_id)
            fileobj.seek(start)
        except BaseException as exc:
            # kept when running the upload again can resume it; a refusal (the session was aborted) is final
            if spool is not None and not _fatal(exc):
                spool.keep_for_resume()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _winner(fs: BoxFileSystem, exc: FileExistsError, *, parent_id: str, name: str, size: int) -> dict[str, Any] | None:
    """The file that took our name (from Box's 409, else a preflight); a folder in the way is an error."""
    taken = conflicts_of(exc) or [c for c in [preflight(fs, parent_id=parent_id, name=name, size=size, file_id=None)]
                                  if c is not None]
    if not taken:
        return None
    if taken[0].get("type") != "file":
        raise is_a_directory_error(name) from None
    return taken[0]


def file_stamp(fileobj: BinaryIO) -> str | None:
    """A regular file's identity and last change (device, inode, size, mtime in ns); None for anything else.

    Compared before and after the parts are read: a source changed meanwhile would upload a mix of two
    versions of it (each part is read once, so no digest could tell), and is refused instead.
    """
    try:
        st = os.fstat(fileobj.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return f"{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"


class ChunkedUpload:
    """One chunked upload, resumable through its state file."""

    def __init__(self, fs: BoxFileSystem, job: UploadJob) -> None:
        self.fs = fs
        self.t = fs.transport
        fileobj, progress = job.fileobj, job.progress
        self.parent_id = job.parent_id
        self.name = job.name
        self.size = job.size
        #: None until folded from the parts (put_file of a large file: the file is read once, while sent)
        self.sha1 = job.sha1
        self.file_id = job.file_id
        self.etag = job.etag
        self.modified = job.modified
        self.source = PartSource(fileobj, fileobj.tell(), self.size)
        self.stamp = file_stamp(fileobj)
        self._fileobj = fileobj
        self.progress = Progress(progress)
        name_attr = getattr(fileobj, "name", None)
        self.content_path = (os.path.abspath(name_attr) if isinstance(name_attr, str) and os.path.isfile(name_attr)
                             else None)
        self.folder = user_spool_dir(fs)
        #: the content's entry in the spool folder (a writer's spool file, or a kept one given to put_file)
        self.spool_name = (fileobj.spool_name if isinstance(fileobj, SpoolReader)
                           else spool_name_of({"spool": self.folder.name_of(self.content_path)}))
        self.key = state_key(user_id=fs.user_id, parent_id=self.parent_id, name=self.name, file_id=self.file_id,
                             size=self.size, sha1=FOLDED)
        self.lock = PathLock(self.folder, f"{self.key}{LOCK_SUFFIX}")
        self.state: dict[str, Any] = {}
        self.parts: dict[int, dict[str, Any]] = {}
        self._state_lock = threading.Lock()

    @property
    def state_path(self) -> str:
        return self.folder.show(f"{self.key}{STATE_SUFFIX}")

    def _url(self, tail: str = "") -> str:
        return session_url(self.fs, self.state["session_id"], tail)

    # ---------------------------------------------------------------------------------------- state
    def _save(self) -> None:
        if not self.lock.held:
            return
        with self._state_lock:
            self.state["parts_done"] = [self.parts[o] for o in sorted(self.parts)]
            self.state["updated"] = time.time()
            try:
                write_state(self.folder, self.key, self.state)
            except OSError as exc:
                # the state is a hint (Box's parts list is the authority): a full disk must not stop uploads
                logger.warning("%s: cannot save the resume state in %s: %s", self.name, self.folder.path, exc)

    def _new_state(self, session: dict[str, Any]) -> None:
        expires = session.get("session_expires_at")
        try:
            expires_at = datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp()
        except ValueError:
            expires_at = time.time() + 24 * 3600
        self.state = {
            "version": STATE_VERSION,
            "session_id": session["id"],
            "upload_url": self.t.endpoints.upload_url,
            "expires_at": expires_at,
            "part_size": int(session["part_size"]),
            "total_parts": int(session["total_parts"]),
            "size": self.size,
            "sha1": self.sha1 or FOLDED,
            "destination": {"parent_id": self.parent_id, "name": self.name, "file_id": self.file_id},
            "source": self.content_path,
            "spool": self.spool_name,
            "pid": os.getpid(),
            "created": time.time(),
        }
        self.parts = {}

    def _resumable_state(self) -> dict[str, Any] | None:
        """The state of an earlier attempt, when it can be resumed; read back from disk, so untrusted:
        only the session id is taken from it (the URLs are built from the configured host), and the parts
        done come from Box, not from the file."""
        state = read_state(self.folder, self.key)
        if not state:
            return None
        session = session_of(self.fs, state)
        if session is None:
            remove_state(self.folder, self.key)  # the caller holds the lock
            logger.warning("%s: discarding resume state %s: it is not of this version of boxfs or not for the "
                           "configured upload host %s; starting over", self.name, self.state_path,
                           self.t.endpoints.upload_url)
            return None
        if state.get("size") != self.size:
            return None
        if self.sha1 is not None and state.get("sha1") != self.sha1:
            return None  # another content's session (our SHA-1 unknown: the parts are checked as read)
        try:
            part_size, total = int(state["part_size"]), int(state["total_parts"])
            expires_at = float(state["expires_at"])
        except (KeyError, TypeError, ValueError):
            return None
        if part_size <= 0 or total != math.ceil(self.size / part_size):
            return None
        if expires_at < time.time() + _EXPIRY_MARGIN:
            logger.info("%s: upload session %s has expired; starting over", self.name, session)
            return None
        return {**state, "session_id": session, "part_size": part_size, "total_parts": total, "expires_at": expires_at}

    # ---------------------------------------------------------------------------------- Box calls
    def _create_session(self) -> None:
        body: dict[str, Any] = {"file_size": self.size, "file_name": self.name}
        if self.file_id is None:
            body["folder_id"] = self.parent_id
            url = self.t.upload_api("/files/upload_sessions")
        else:
            url = self.t.upload_api(f"/files/{self.file_id}/upload_sessions")
        # repeating a create after an ambiguous failure at worst leaves an unused session that expires
        session = self.t.json("POST", url, json=body, idempotent=True, path=self.name, action="create upload session")
        self._new_state(session)
        logger.debug("%s: upload session %s, %d parts of %d bytes", self.name, session["id"],
                     self.state["total_parts"], self.state["part_size"])

    def _list_parts(self) -> dict[int, dict[str, Any]]:
        url = self._url("/parts")
        found: dict[int, dict[str, Any]] = {}
        offset = 0
        while True:
            data = self.t.json("GET", url, params={"offset": offset, "limit": 1000}, path=self.name,
                               action="list uploaded parts")
            entries = data.get("entries") or []
            for e in entries:
                found[int(e["offset"])] = {"part_id": e["part_id"], "offset": int(e["offset"]), "size": int(e["size"]),
                                           "sha1": e.get("sha1")}
            offset += len(entries)
            if not entries or offset >= int(data.get("total_count") or 0):
                return found

    def _upload_part(self, part: Part, buf: bytearray, stop: threading.Event) -> bool:
        """PUT one part; False when Box says it already has it (an earlier attempt's answer was lost). A
        retried attempt sends the same buffer again, or reads the part again when the buffer is small."""
        offset, length = part.offset, part.length
        part_sha1 = part.digest()
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {offset}-{offset + length - 1}/{self.size}",
            "Digest": digest_header(part_sha1),
        }

        def body() -> PartBody:
            if stop.is_set():
                raise Cancelled("another part failed")
            return PartBody(part, self.source, buf, self.progress, stop)

        resp = self.t.request(
            "PUT", self._url(), headers=headers, data=body,
            ok_statuses=(409,), path=self.name, action=f"upload part at {offset}",
        )
        assert not isinstance(resp, dict)
        if resp.status_code == 409:
            exc = error_from_response(resp, self.name, f"upload part at {offset}")
            if getattr(exc, "box_code", None) != "range_overlaps_existing_part":
                raise exc
            self.progress.advance(offset, length)
            return False
        answer = resp.json()["part"]
        with self._state_lock:
            self.parts[offset] = {"part_id": answer["part_id"], "offset": int(answer["offset"]),
                                  "size": int(answer["size"]), "sha1": answer.get("sha1", part_sha1)}
        self._save()
        return True

    def _worker(self, feed: PartFeed, stop: threading.Event, buffer_size: int) -> bool:
        """Send parts from the feed until none is left, from one buffer: ``part_size`` for the workers
        within the upload's memory budget, 1 MiB for the others (see :data:`PART_MEMORY`)."""
        buf = bytearray(buffer_size)
        all_new = True
        while not stop.is_set():
            part = feed.next_part(buf)
            if part is None:
                break
            all_new = self._upload_part(part, buf, stop) and all_new
        return all_new

    def _upload_missing(self) -> None:
        part_size = self.state["part_size"]
        missing = [o for o in range(0, self.size, part_size) if o not in self.parts]
        for o, p in self.parts.items():
            self.progress.advance(o, p["size"])
        if not missing and self.sha1 is not None:
            return
        feed = PartFeed(self.source, part_size, self.size, dict(self.parts),
                         hashlib.sha1() if self.sha1 is None else None)
        stop = threading.Event()
        workers = max(1, min(int(self.fs.upload_workers), len(missing)))
        whole = int(getattr(self.fs, "upload_memory", PART_MEMORY)) // part_size  # workers holding a whole part
        sizes = [part_size if i < whole else SMALL_BUFFER for i in range(workers)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="boxfs-part") as pool:
            futures = [pool.submit(self._worker, feed, stop, size) for size in sizes]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
            if failed:
                stop.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                raise failed[0].exception()  # type: ignore[misc]
            results = [f.result() for f in futures]
        if self.stamp is not None and file_stamp(self._fileobj) != self.stamp:
            raise ValueError(f"{self.name}: the source changed while it was being uploaded, so no digest could "
                             "describe one version of it; upload aborted (nothing was committed)")
        if feed.whole is not None:
            self.sha1 = feed.whole.hexdigest()  # folded from the parts in file order, as they were read
            logger.debug("%s: SHA-1 %s folded from the parts", self.name, self.sha1)
        if not all(results):  # some part was already there: learn its id from Box
            for o, p in self._list_parts().items():
                self.parts.setdefault(o, p)
            self._save()

    def _commit(self) -> dict[str, Any]:
        commit_url = self._url("/commit")
        total = math.ceil(self.size / self.state["part_size"])
        parts = [self.parts[o] for o in sorted(self.parts)]
        if len(parts) != total:
            raise BoxAPIError(f"{self.name}: {len(parts)} of {total} parts uploaded; cannot commit")
        body: dict[str, Any] = {"parts": [{"part_id": p["part_id"], "offset": p["offset"], "size": p["size"]}
                                          for p in parts]}
        if self.modified is not None:
            body["attributes"] = {"content_modified_at": box_time(self.modified)}
        headers = {"Digest": digest_header(self.sha1)}
        deadline = time.monotonic() + COMMIT_TIMEOUT
        while True:
            resp = self.t.request("POST", commit_url, json=body, headers=headers, recover=self._commit_landed, path=self.name, action="commit upload")
            if isinstance(resp, dict):
                data = resp
            elif resp.status_code == 202:
                delay = min(parse_retry_after(resp.headers.get("Retry-After")) or 1.0, self.fs.policy.max_retry_after)
                if time.monotonic() + delay > deadline:
                    raise BoxAPIError(f"{self.name}: Box was still processing the commit after {COMMIT_TIMEOUT:.0f}s")
                logger.debug("%s: commit accepted, not done yet; polling again in %.1fs", self.name, delay)
                time.sleep(delay)
                continue
            else:
                data = resp.json()
            entries = data.get("entries") or []
            if not entries:
                raise BoxAPIError(f"{self.name}: Box committed the upload but returned no file")
            return entries[0]

    def _commit_landed(self) -> dict[str, Any] | None:
        """After an ambiguous commit failure: did the earlier attempt create the file or version?"""
        try:
            self.t.request("GET", self._url(), path=self.name, action="upload status")
            return None  # the session is still open: the commit did not happen
        except FileNotFoundError:
            pass
        item = landed(self.fs, parent_id=self.parent_id, name=self.name, size=self.size, sha1=self.sha1,
                      file_id=self.file_id, etag=self.etag)
        return None if item is None else {"entries": [item]}

    def _abort(self) -> None:
        if not self.state.get("session_id"):
            return
        try:
            self.t.request("DELETE", self._url(), path=self.name, action="abort upload session")
        except (OSError, ValueError) as exc:
            logger.debug("%s: abort of session %s: %s", self.name, self.state.get("session_id"), exc)

    def _finish(self, previous_spool: str | None) -> None:
        """After success: forget the state, and spool files of this content (one an earlier attempt kept,
        or a kept spool file given to ``put_file``); a live writer's spool is locked and left to it."""
        if not self.lock.held:  # the state and spool files belong to the process that holds the lock
            return
        remove_state(self.folder, self.key)
        for leftover in {previous_spool, self.spool_name}:
            if leftover is not None:
                remove_spool_file(self.folder, leftover)

    # -------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        if not self.lock.acquire():
            logger.info("%s: another process is uploading the same content; uploading separately", self.name)
        try:
            return self._run()
        finally:
            self.lock.release(remove=True)
            self.folder.close()

    def _run(self) -> dict[str, Any]:
        previous = self._resumable_state() if self.lock.held else None
        previous_spool = spool_name_of(previous) if previous else None
        for attempt in (1, 2):
            if previous is not None:
                self.state = dict(previous)
                try:
                    self.parts = self._list_parts()
                except FileNotFoundError:
                    logger.info("%s: upload session %s is gone on Box; starting over", self.name, previous["session_id"])
                    previous = None
                except BaseException as exc:
                    self._fail(exc)
                    raise
                else:
                    logger.info("%s: resuming upload session %s: Box has %d of %d parts", self.name,
                                previous["session_id"], len(self.parts), previous["total_parts"])
                    self.state["source"] = self.content_path
                    self.state["spool"] = self.spool_name
                    self._save()
            try:
                if previous is None:
                    self._create_session()
                    self._save()
                self._upload_missing()
                entry = self._commit()
            except ResumedPartDiffers as exc:
                if attempt == 2:
                    self._fail(exc)
                    raise
                logger.info("%s: %s (the source changed since); starting over with a new session", self.name, exc)
                self._abort()
                self.state, self.parts, previous = {}, {}, None
                continue
            except FileNotFoundError as exc:
                if attempt == 1 and getattr(exc, "box_status", None) == 404 and self._session_gone():
                    logger.info("%s: upload session expired during the upload; starting over once", self.name)
                    previous = None
                    continue
                self._fail(exc)
                raise
            except BaseException as exc:
                self._fail(exc)
                raise
            self._finish(previous_spool)
            return entry
        raise AssertionError("unreachable")  # pragma: no cover

    def _session_gone(self) -> bool:
        if not self.state.get("session_id"):
            return False  # no session yet: the 404 is about the destination
        try:
            self.t.request("GET", self._url(), path=self.name, action="upload status")
        except FileNotFoundError:
            return True
        return False

    def _fail(self, exc: BaseException) -> None:
        """Decide what a failure leaves: a resumable session and state, or nothing on Box at all."""
        if _fatal(exc):
            logger.warning("%s: upload refused (%s); aborting upload session %s", self.name, exc,
                           self.state.get("session_id"))
            self._abort()
            if self.lock.held:
                remove_state(self.folder, self.key)
            return
        where = self.content_path or "memory (the same bytes uploaded again resume it)"
        state = str(self.state_path) if self.lock.held and self.state.get("session_id") else None
        if self.state.get("session_id"):
            done = f"after {len(self.parts)} of {self.state.get('total_parts')} parts"
        else:
            done = "before an upload session could be created"
        logger.warning("%s: upload interrupted %s (%s); content in %s, state in %s", self.name, done, exc, where, state)
        if isinstance(exc, Exception) and not isinstance(exc, UploadIncomplete):
            raise UploadIncomplete(
                f"{self.name}: upload interrupted {done} ({exc}); run the same upload again to resume. "
                f"Content: {where}; resume state: {state or 'none'}",
                spool_path=self.content_path, state_path=state, session_id=self.state.get("session_id"),
            ) from exc
