"""The one layer every frontend (FUSE mount, FTP, SFTP, CLI) stands on, with the filesystem below it.

* :mod:`~boxfs.frontend.errors` - exception -> errno by type, once; a client-facing reason per errno.
* :mod:`~boxfs.frontend.paths` - literal-path operations (a name is never a pattern) and POSIX rename
  through the filesystem's safe replace.
* :mod:`~boxfs.frontend.stat` - fsspec info dicts -> ``os.stat_result``.
* :mod:`~boxfs.frontend.handles` - write handles over private spool files that stay dirty (and keep
  failing) until their data has landed in Box.

Frontends keep only what is theirs: their protocol's error table (errno -> FTP reply, errno -> SFTP
status, errno -> exit status), path mapping (mount root, a user's home) and sessions.
"""

from boxfs.frontend.errors import (
    PendingLimitError,
    errno_of,
    error_reason,
    exit_status_of,
    log_failure,
    oserror,
    reason_of,
    upload_errno,
)
from boxfs.frontend.handles import OpenFiles, Spool, WriteHandle
from boxfs.frontend.paths import Namespace
from boxfs.frontend.stat import info_to_stat

__all__ = [
    "Namespace", "OpenFiles", "PendingLimitError", "Spool", "WriteHandle",
    "errno_of", "error_reason", "exit_status_of", "info_to_stat", "log_failure", "oserror", "reason_of",
    "upload_errno",
]
