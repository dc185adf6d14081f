"""Literal-path operations: a name a program gives us is a name, never a pattern.

fsspec's ``rm``, ``mv``, ``copy`` and ``expand_path`` treat ``*``, ``?`` and ``[`` as glob characters, so
``rm("report [1].pdf")`` may delete ``report 1.pdf`` and keep the file named. Frontends (the mount, FTP,
SFTP, the CLI when the user did not write a pattern) go through :class:`Namespace` instead, which only
calls the filesystem's literal primitives: ``info``, ``ls``, ``rm_file``, ``rmdir``, ``mkdir`` and a
literal move (``BoxFileSystem.mv_literal``; ``mv`` where the name has no glob character).

Rename follows POSIX ``rename(2)`` with Box's case-insensitive names:

* the same item (the identical path, or another case of its name on Box): a rename to the new spelling,
  or nothing when the spelling is already that;
* onto a different existing file: the filesystem's safe replace (BoxFileSystem puts the new file beside
  the old one, deletes the old one, then renames: never the target deleted first), or EEXIST without
  touching anything when ``overwrite=False`` (SFTP v3 ``rename``);
* file onto a folder: EISDIR; folder onto a file: ENOTDIR; folder onto a non-empty folder: ENOTEMPTY;
  folder onto an empty folder: the empty folder is removed, then the move is made.
"""

from __future__ import annotations

import errno
import logging
import posixpath
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from boxfs.core import BoxFileSystem
from boxfs.frontend.errors import oserror
from boxfs.frontend.stat import info_is_dir, info_to_stat
from boxfs.names import MAX_NAME_LENGTH, BoxNameError, check_name, has_magic, name_key

log = logging.getLogger(__name__)

__all__ = ["Namespace", "basename"]


def basename(path: str) -> str:
    """The last component of a filesystem path (trailing slashes ignored)."""
    return posixpath.basename(path.rstrip("/"))


class Namespace:
    """Literal operations on the names of one filesystem (paths are the filesystem's own paths).

    ``box_names``: whether Box's naming rules apply (refused before any request, EINVAL/ENAMETOOLONG)
    and names compare case-insensitively; by default, when ``fs`` is a :class:`BoxFileSystem`.
    """

    def __init__(self, fs: Any, *, box_names: bool | None = None) -> None:
        self.fs = fs
        self.box_names = isinstance(fs, BoxFileSystem) if box_names is None else box_names

    # ------------------------------------------------------------------ names
    def check_new_name(self, path: str) -> None:
        """Refuse, before any request, a name the filesystem would refuse (EINVAL, ENAMETOOLONG).

        The message says which rule was broken (a trailing space, a control character, a slash...).
        """
        if not self.box_names:
            return
        name = basename(path)
        try:
            check_name(name)
        except BoxNameError as exc:
            code = errno.ENAMETOOLONG if len(name) > MAX_NAME_LENGTH else errno.EINVAL
            raise oserror(code, path, str(exc)) from None

    def check_parent(self, path: str) -> None:
        """ENOENT/ENOTDIR unless the folder that would hold ``path`` exists: as ``open(O_CREAT)`` and
        ``rename(2)``, a new name never brings its folders into being (the filesystem's ``mv`` and
        uploads would make them, so a client's typo became a tree of new folders)."""
        parent = posixpath.dirname(path.strip("/"))
        if not parent:
            return
        info = self.try_info(parent)
        if info is None:  # another client may have made it since we listed: ask Box before saying ENOENT
            self.fs.ls(posixpath.dirname(parent), detail=False, refresh=True)
            info = self.info(parent)
        if not info_is_dir(info):
            raise oserror(errno.ENOTDIR, parent)

    # ------------------------------------------------------------------ reading
    def info(self, path: str) -> dict[str, Any]:
        """The info dict of exactly ``path`` (FileNotFoundError when there is none)."""
        return self.fs.info(path)

    def try_info(self, path: str) -> dict[str, Any] | None:
        """``info`` or None when nothing has that name; any other failure is raised."""
        try:
            return self.fs.info(path)
        except FileNotFoundError:
            return None

    def exists(self, path: str) -> bool:
        """Whether an item of exactly this name exists; unlike fsspec's ``exists``, failures other than
        "not found" (refused credentials, Box down) are raised, not answered False."""
        return self.try_info(path) is not None

    def stat(self, path: str, read_only: bool = False, **kwargs: Any) -> Any:
        """``os.stat_result`` of ``path`` (see :func:`~boxfs.frontend.stat.info_to_stat`)."""
        return info_to_stat(self.info(path), read_only, **kwargs)

    def list(self, path: str, refresh: bool = False) -> list[dict[str, Any]]:
        """The info dicts of a folder's children (ENOTDIR for a file); ``refresh`` re-lists from the server."""
        info = self.info(path)
        if not info_is_dir(info):
            raise oserror(errno.ENOTDIR, path)
        if refresh:
            return list(self.fs.ls(path, detail=True, refresh=True))
        return list(self.fs.ls(path, detail=True))

    # ------------------------------------------------------------------ changes
    def mkdir(self, path: str) -> None:
        """Create one folder (its parent must exist; EEXIST when the name is taken)."""
        self.check_new_name(path)
        self.fs.mkdir(path, create_parents=False)

    def remove_file(self, path: str) -> None:
        """Delete exactly the file ``path`` (EISDIR for a folder)."""
        if info_is_dir(self.info(path)):
            raise oserror(errno.EISDIR, path)
        self.fs.rm_file(path)

    def remove_folder(self, path: str) -> None:
        """Delete exactly the empty folder ``path`` (ENOTDIR for a file, ENOTEMPTY when it holds anything)."""
        if not info_is_dir(self.info(path)):
            raise oserror(errno.ENOTDIR, path)
        self.fs.rmdir(path)

    def remove_tree(self, path: str) -> None:
        """Delete exactly the folder ``path`` with everything in it (WebDAV DELETE; ENOTDIR for a file).

        fsspec's recursive ``rm`` expands ``*?[`` as a pattern (BoxFileSystem's only once no item has
        the name: a folder called ``[a]*`` deleted meanwhile took its siblings ``a1``, ``ab`` with it), so
        only a path without them goes to ``rm`` (Box: one request); one with them is walked with the
        literal primitives (``ls``, ``rm_file``, ``rmdir``: a request per item).
        """
        if not path.strip("/"):
            raise oserror(errno.EPERM, path, "the root folder is not deleted")
        if not info_is_dir(self.info(path)):
            raise oserror(errno.ENOTDIR, path)
        if not has_magic(path):
            self.fs.rm(path, recursive=True)
            return
        for child in self.fs.ls(path, detail=True):
            if info_is_dir(child):
                self.remove_tree(str(child["name"]))
            else:
                self.fs.rm_file(str(child["name"]))
        self.fs.rmdir(path)

    def copy(self, src: str, dst: str, *, overwrite: bool = True) -> None:
        """Server-side copy of exactly ``src`` to exactly ``dst`` (WebDAV COPY).

        A file goes onto a free name or over a file (the filesystem's ``cp_file``; BoxFileSystem puts
        the copy beside the old file before that one goes), EISDIR onto a folder. Without ``overwrite``
        a file goes to a free name only, EEXIST otherwise: on Box create-only to the end
        (``BoxFileSystem.cp_file_exclusive``: Box's copy refuses a taken name, nothing is replaced even
        when another client takes the name after this check). A folder is copied
        with everything in it to a free name only (EEXIST otherwise): fsspec's recursive ``copy`` when
        neither path holds ``*?[`` (Box: one request), else walked with ``ls``, ``mkdir`` and ``cp_file``
        (``copy`` would take the name for a pattern, as ``rm`` does).
        """
        sinfo = self.info(src)
        self.check_new_name(dst)
        is_dir = info_is_dir(sinfo)
        if is_dir and self._below(dst, src):
            raise oserror(errno.EINVAL, dst, "a folder cannot be copied into itself or one of its subfolders")
        self.check_parent(dst)
        dinfo = self.try_info(dst)
        if dinfo is not None and (is_dir or info_is_dir(dinfo)):
            raise oserror(errno.EEXIST if is_dir else errno.EISDIR, dst)
        if not is_dir:
            if dinfo is not None and not overwrite:
                raise oserror(errno.EEXIST, dst)
            exclusive = getattr(self.fs, "cp_file_exclusive", None)
            if not overwrite and callable(exclusive):
                exclusive(src, dst)
            elif dinfo is None or not self.same_item(sinfo, dinfo):
                self.fs.cp_file(src, dst)
        elif has_magic(src + dst):
            self._copy_tree(src, dst)
        else:
            self.fs.copy(src, dst, recursive=True)

    def _copy_tree(self, src: str, dst: str) -> None:
        """Copy the folder ``src`` to the free name ``dst`` item by item, with literal primitives only."""
        self.fs.mkdir(dst, create_parents=False)
        for child in self.fs.ls(src, detail=True):
            target = posixpath.join(dst, basename(str(child["name"])))
            if info_is_dir(child):
                self._copy_tree(str(child["name"]), target)
            else:
                self.fs.cp_file(str(child["name"]), target)

    def same_item(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Whether two info dicts describe one item (its id on Box, its path elsewhere)."""
        if a.get("id") is not None and b.get("id") is not None:
            return str(a["id"]) == str(b["id"])
        return str(a.get("name", "")).rstrip("/") == str(b.get("name", "")).rstrip("/")

    def rename(self, src: str, dst: str, *, overwrite: bool = True) -> None:
        """POSIX ``rename(2)`` of exactly ``src`` to exactly ``dst`` (see the module docstring)."""
        sinfo = self.info(src)
        if src.rstrip("/") == dst.rstrip("/"):
            return  # rename onto itself: nothing to do, and nothing may be lost
        self.check_new_name(dst)
        if info_is_dir(sinfo) and self._below(dst, src):
            # POSIX EINVAL, and before anything: an empty folder at dst would otherwise be removed first
            raise oserror(errno.EINVAL, dst, "a folder cannot be moved into itself or one of its subfolders")
        self.check_parent(dst)
        dinfo = self.try_info(dst)
        if dinfo is not None and self.same_item(sinfo, dinfo):
            if basename(dst) == basename(str(sinfo["name"])):
                return  # another spelling of the path whose last name is already the item's name
            self._move(src, dst, info_is_dir(sinfo))  # a case-only rename on Box
            return
        if dinfo is not None:
            if not overwrite:
                raise oserror(errno.EEXIST, dst)
            src_dir, dst_dir = info_is_dir(sinfo), info_is_dir(dinfo)
            if dst_dir and not src_dir:
                raise oserror(errno.EISDIR, dst)
            if src_dir and not dst_dir:
                raise oserror(errno.ENOTDIR, dst)
            if dst_dir:
                if self.fs.ls(dst, detail=False):
                    raise oserror(errno.ENOTEMPTY, dst)
                self.fs.rmdir(dst)  # an empty folder holds no data; the move needs its name free
        self._move(src, dst, info_is_dir(sinfo))

    def _below(self, path: str, folder: str) -> bool:
        """Whether ``path`` is strictly inside ``folder`` (Box: names compared case-insensitively)."""
        path, folder = path.strip("/"), folder.strip("/")
        if self.box_names:
            path, folder = name_key(path), name_key(folder)
        return folder == "" or path.startswith(folder + "/")

    def _move(self, src: str, dst: str, is_dir: bool) -> None:
        """Move exactly ``src`` to ``dst`` (free, or a file the filesystem replaces safely)."""
        literal = getattr(self.fs, "mv_literal", None)
        if callable(literal):
            literal(src, dst)
        elif isinstance(self.fs, LocalFileSystem) or not has_magic(src):
            self.fs.mv(src, dst, recursive=is_dir)  # LocalFileSystem.mv is literal (shutil.move)
        elif not is_dir:
            self.fs.cp_file(src, dst)  # fsspec's literal primitives, for filesystems without a move
            self.fs.rm_file(src)
        else:
            raise oserror(errno.ENOTSUP, src, "this filesystem cannot move a folder whose name has *?[")
