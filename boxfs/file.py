"""``BoxFile``: what ``BoxFileSystem.open`` returns.

Reading (``rb``) is random access by HTTP ranges through fsspec's buffered-file machinery, with its
read-ahead cache (``cache_type="readahead"`` by default; ``"bytes"``, ``"blockcache"``... also work), so
``seek`` + small ``read`` costs one ranged GET per block, not a download of the whole file.

Writing (``wb``, ``xb``) collects the bytes (see :func:`boxfs.upload.make_write_buffer`) and uploads on
``close``: a new file, or a new version of an existing one. Nothing is visible on Box before ``close``,
and a failed upload leaves the previous version current. Box cannot append (``ab`` is refused) and
``modified=datetime`` sets the ``content_modified_at`` Box records for the upload.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractBufferedFile

from boxfs.api.errors import is_a_directory_error
from boxfs.upload import make_write_buffer

if TYPE_CHECKING:
    from boxfs.core import BoxFileSystem

APPEND_REFUSAL = (
    "Box cannot append to a file: every upload replaces the whole content (as a new version). "
    "Read the file, then write the complete new content with mode 'wb'."
)


class BoxFile(AbstractBufferedFile):
    """A file on Box opened for ranged reading or for writing as one upload."""

    fs: BoxFileSystem

    def __init__(
        self,
        fs: BoxFileSystem,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = "default",
        autocommit: bool = True,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        modified: datetime | None = None,
        **kwargs: Any,
    ) -> None:
        if "a" in mode:
            raise NotImplementedError(APPEND_REFUSAL)
        if mode not in ("rb", "wb", "xb"):
            raise ValueError(f"unsupported mode {mode!r} for Box files (use 'rb', 'wb' or 'xb')")
        self.modified = modified
        self.uploaded: dict[str, Any] | None = None
        # fsspec's caching layers (blockcache) pass the size they know, possibly None; Box's own
        # item (needed for its id anyway) gives the size, so a passed one is not used twice
        kwargs.pop("size", None)
        if mode == "rb":
            info = dict(fs._info_for_read(path))  # re-checks Box if only the cache says "missing"
            if info["type"] != "file":
                raise is_a_directory_error(path)
            self._box_id = info["id"]  # before fsspec's __init__: cache_type="all" reads the file there
            super().__init__(fs, path, mode, block_size, autocommit, cache_type, cache_options,
                             size=info["size"], **kwargs)
            self.details = info
        else:
            # Refuse what cannot work before anything is written: bad names, a folder in the way,
            # a missing parent when auto_mkdir is off, an existing file for 'xb'.
            fs._check_writable(path, exclusive=(mode == "xb"))
            super().__init__(fs, path, mode, block_size, autocommit, cache_type, cache_options, **kwargs)
            self._sink = make_write_buffer(fs, path)
            self._sink.callback = kwargs.get("callback")  # told of each byte uploaded

    # -------------------------------------------------------------------------------------- reading
    def _fetch_range(self, start: int, end: int) -> bytes:
        # every range of one open handle comes from the version it was opened on (see _content_url)
        return self.fs._read_range(self.path, self._box_id, start, end, version=self.details.get("version"),
                                   tag=self.details.get("sha1"))

    # -------------------------------------------------------------------------------------- writing
    def _initiate_upload(self) -> None:
        """Nothing to start on Box: the upload happens in one go when the file is closed."""

    def _upload_chunk(self, final: bool = False) -> bool:
        self._sink.write(self.buffer.getvalue())
        if final and not self.autocommit:
            return True  # in an fsspec transaction: the upload waits for commit()
        if final:
            try:
                self.uploaded = self.fs._upload_buffer(self.path, self._sink, modified=self.modified,
                                                       exclusive=(self.mode == "xb"))
            finally:
                self._sink.close()
        return True

    def close(self) -> None:
        """Upload (when writing) and close; unlike fsspec's default, the listing cache stays valid
        because the upload already recorded its result there."""
        if getattr(self, "_unclosable", False) or self.closed:
            return
        try:
            if self.mode == "rb":
                self.cache = None
            elif not self.forced:
                self.flush(force=True)
        finally:
            self.closed = True

    def commit(self) -> None:
        """Upload a file written with ``autocommit=False`` (inside ``fs.transaction``), once it is closed.

        fsspec calls this for every file of a transaction when the transaction ends without an error;
        until then nothing of it is on Box. Box has no multi-file commit: files are uploaded one by one,
        so a failure part-way leaves the earlier ones committed (fsspec then discards the rest).
        """
        if self.mode == "rb" or self.autocommit or getattr(self, "_settled", False):
            return
        if not self.closed:
            self.close()
        try:
            self.uploaded = self.fs._upload_buffer(self.path, self._sink, modified=self.modified,
                                                   exclusive=(self.mode == "xb"))
        finally:
            self._sink.close()
            self._settled = True  # committed: a second commit or a discard is a no-op

    def discard(self) -> None:
        """Drop what was written; nothing reaches Box."""
        if self.mode != "rb":
            self._sink.close()
            self.forced = True
            self._settled = True
        self.closed = True

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Leaving a ``with`` block by an exception discards the write: a half-written file never
        replaces the current version on Box."""
        if exc_type is not None and self.mode != "rb" and not self.closed:
            self.discard()
        else:
            self.close()
