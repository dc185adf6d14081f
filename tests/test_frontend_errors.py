"""The one exception -> errno mapping (boxfs.frontend.errors), with errors raised by Box itself.

Mapping is by type: a message that *says* "No such file" is not ENOENT, and a FileNotFoundError whose
message says "Permission denied" is still ENOENT. The client-facing reasons never carry paths or ids.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest

from boxfs.api.errors import BoxAPIError, BoxAuthError, BoxPreconditionError
from boxfs.frontend import (
    Namespace,
    PendingLimitError,
    errno_of,
    error_reason,
    log_failure,
    oserror,
    reason_of,
)
from boxfs.frontend.errors import EXIT_BAD_INPUT, EXIT_FAILED, exit_status_of, upload_errno
from boxfs.names import BoxNameError


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (FileNotFoundError("Permission denied"), errno.ENOENT),  # the class decides, not the text
        (OSError("No such file or directory"), errno.EIO),
        (FileExistsError("x"), errno.EEXIST),
        (PermissionError("x"), errno.EACCES),
        (BoxAuthError("key revoked"), errno.EACCES),
        (IsADirectoryError("x"), errno.EISDIR),
        (NotADirectoryError("x"), errno.ENOTDIR),
        (OSError(errno.ENOTEMPTY, "folder_not_empty"), errno.ENOTEMPTY),
        (OSError(errno.ENOSPC, "storage_limit_exceeded"), errno.ENOSPC),
        (PendingLimitError(10, 5), errno.ENOSPC),
        (NotImplementedError("append"), errno.ENOTSUP),
        (BoxNameError("Box item names must not end with a space"), errno.EINVAL),
        (ValueError("anything Box answered 400 to"), errno.EINVAL),
        (BoxAPIError("Box HTTP 503"), errno.EIO),
        (BoxPreconditionError("etag"), errno.EIO),
        (TimeoutError(), errno.ETIMEDOUT),
        (RuntimeError("a bug"), errno.EIO),
        (KeyError("a bug"), errno.EIO),
    ],
)
def test_errno_by_type(exc: BaseException, code: int) -> None:
    assert errno_of(exc) == code


def test_box_name_too_long_code() -> None:
    exc = ValueError("Item name too long")
    exc.box_code = "item_name_too_long"  # type: ignore[attr-defined]
    assert errno_of(exc) == errno.ENAMETOOLONG


def test_upload_and_exit_status_views_of_the_same_table() -> None:
    """What close/fsync report for a failed upload, and the CLI's exit status, derive from errno_of."""
    assert upload_errno(OSError(errno.ENOSPC, "quota")) == errno.ENOSPC
    assert upload_errno(FileNotFoundError("parent folder deleted meanwhile")) == errno.EIO
    assert upload_errno(PermissionError("share revoked")) == errno.EIO
    assert exit_status_of(BoxNameError("trailing space")) == EXIT_BAD_INPUT
    assert exit_status_of(FileNotFoundError("x")) == EXIT_FAILED
    assert exit_status_of(BoxAPIError("503")) == EXIT_FAILED


def test_oserror_picks_the_builtin_subclass() -> None:
    assert isinstance(oserror(errno.ENOENT, "a"), FileNotFoundError)
    assert isinstance(oserror(errno.EEXIST), FileExistsError)
    assert oserror(errno.EINVAL, "a", "why").strerror == "why"


def test_reasons_never_carry_internal_details() -> None:
    exc = FileNotFoundError(errno.ENOENT, "users/4242/secret-home/x: request id abc123", "users/4242/secret-home/x")
    code, reason = error_reason(exc)
    assert (code, reason) == (errno.ENOENT, "No such file or directory")
    assert reason_of(errno.ENOSPC).startswith("No space left")
    assert reason_of(errno.EIO) == "Box request failed"
    assert reason_of(errno.EXDEV)  # any errno has some text


def test_errors_raised_by_box(fs: Any, emulator: Any) -> None:
    """What the emulator answers over HTTP reaches frontends as the right errno."""
    ns = Namespace(fs)
    with pytest.raises(OSError) as missing:
        ns.info("no-such-file.txt")
    assert errno_of(missing.value) == errno.ENOENT

    # a name Box itself refuses (400 item_name_invalid), sent past the local checks
    with pytest.raises(ValueError) as refused:
        fs.transport.json("POST", fs.transport.api("/folders"), json={"name": "bad ", "parent": {"id": "0"}})
    assert errno_of(refused.value) == errno.EINVAL
    with pytest.raises(ValueError) as too_long:
        fs.transport.json("POST", fs.transport.api("/folders"), json={"name": "n" * 300, "parent": {"id": "0"}})
    assert errno_of(too_long.value) == errno.ENAMETOOLONG

    fs.mkdir("full")
    fs.pipe_file("full/a.txt", b"x")
    with pytest.raises(OSError) as not_empty:
        ns.remove_folder("full")
    assert errno_of(not_empty.value) == errno.ENOTEMPTY


def test_full_account_is_enospc(make_fs: Any, emulator: Any) -> None:
    user = emulator.create_user("tiny-frontend@example.com", space_amount=1000)
    fs = make_fs(as_user=user)
    with pytest.raises(OSError) as full:
        fs.pipe_file("big.bin", b"x" * 5000)
    assert errno_of(full.value) == errno.ENOSPC
    assert error_reason(full.value)[1] == "No space left (storage quota or spool full)"


def test_log_failure_levels(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.frontend")
    bug_exc = RuntimeError("bug")
    with caplog.at_level(logging.DEBUG, logger="test.frontend"):
        assert log_failure(log, "unlink", "a", bug_exc) == errno.EIO
        assert log_failure(log, "mkdir", "b ", BoxNameError("trailing space")) == errno.EINVAL
        assert log_failure(log, "stat", "c", FileNotFoundError("c")) == errno.ENOENT
    levels = {r.getMessage().split(" ")[0]: r.levelno for r in caplog.records}
    assert levels == {"unlink": logging.ERROR, "mkdir": logging.WARNING, "stat": logging.DEBUG}
    bug = next(r for r in caplog.records if r.getMessage().startswith("unlink"))
    assert bug.exc_info is not None and bug.exc_info[1] is bug_exc  # a bug keeps its traceback in the log
