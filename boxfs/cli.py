"""The ``boxfs`` command line (also ``python -m boxfs``): Box as files, from a shell.

Built on click. Every command that talks to Box builds one :class:`~boxfs.core.BoxFileSystem` from the
global options (``--config``, ``--as-user``, ``--base-url``) or the library's environment variables, so
the command line and ``fsspec.filesystem("box")`` always agree on what a configuration means.

Path rule. Box paths are written ``box://reports/q3.csv`` or plainly ``reports/q3.csv`` (relative to the
acting user's "All Files"; ``box://`` alone or ``/`` is that root). ``cp``, ``sync`` and ``check`` also
take local paths, so there the prefix decides: an argument starting with ``box://`` is on Box, anything
else (``./x``, ``/tmp/x``, ``x``) is local.

Name rule (:func:`box_targets`, the same for ``ls``, ``cat``, ``cp``, ``rm``, ``find``, ``mv``): a name is a
pattern only when it has ``* ? [`` and no item of exactly that name exists; ``--literal`` never expands;
patterns match case-insensitively, as Box compares names (the one definition: :mod:`boxfs.names`).
``cp`` runs on the filesystem's own ``put``/``get``/``copy`` (fsspec's path rules, files in parallel):
it asks them for their plan first (:meth:`~boxfs.core.BoxFileSystem.planned_transfers`), refuses colliding
names and names Box would refuse before any write, and leaves out files whose content is already there.
``sync`` and ``check`` run on :mod:`boxfs.sync`.

Exit codes: 0 success, 1 the operation failed (Box or the local disk said no), 2 usage or configuration
error or a name refused before any request (nothing was attempted; from the frontend layer's errno
table, :func:`boxfs.frontend.errors.exit_status_of`). Errors are one line on stderr; ``--debug`` adds the traceback and DEBUG
logging of every HTTP request (never a secret: the library does not log them).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import posixpath
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

import click
from click.core import ParameterSource
from fsspec.callbacks import Callback

from boxfs.frontend.errors import exit_status_of
from boxfs.names import check_path_names, has_magic, is_pattern, name_key, pattern_regex
from boxfs.sync import (
    BoxSide,
    Entry,
    FileFilter,
    LocalSide,
    SyncReport,
    check,
    describe,
    endpoint,
    same_content,
    sync,
)

logger = logging.getLogger("boxfs.cli")

BOX_PREFIX = "box://"
DISTRIBUTION = "box-fsspec"  # what `pip install` takes; the import package is boxfs (README, "Installing")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
COPY_CHUNK = 1 << 20
_debug = False  # set by the group callback; main() reads it to decide whether to print the traceback


# ------------------------------------------------------------------------------------------ state
@dataclass
class CliState:
    """Global options, and the filesystem built from them on first use (not before: ``--help``,
    ``emulator`` and ``unmount`` must work without any Box configuration)."""

    config: str | None = None
    as_user: str | None = None
    base_url: str | None = None
    oauth_token_file: str | None = None
    as_json: bool = False
    debug: bool = False
    timeout: float | None = None
    retries: int | None = None
    max_connections: int | None = None  # cp --transfers: the filesystem's parallelism
    _fs: Any = field(default=None, repr=False)

    def fs_options(self) -> dict[str, Any]:
        """Keyword arguments for BoxFileSystem; absent options are left to the library's env lookup."""
        options: dict[str, Any] = {"skip_instance_cache": True}
        if self.oauth_token_file:
            options["oauth_token_file"] = self.oauth_token_file
        elif self.config:
            options["jwt_config"] = self.config
        if self.as_user:
            options["as_user"] = self.as_user
        if self.max_connections:
            options["max_connections"] = self.max_connections
        if self.base_url:
            options["base_urls"] = {"base_url": self.base_url.rstrip("/")}
        retry: dict[str, Any] = {}
        if self.retries is not None:
            retry["max_attempts"] = self.retries + 1
        if self.timeout is not None:
            retry["connect_timeout"] = retry["read_timeout"] = self.timeout
        if retry:
            options["retry"] = retry
        return options

    def fs(self, watch: bool | None = False) -> Any:
        """The filesystem; ``watch``: follow Box's event stream (None: the library's default, for the
        long-running mount). A one-shot command does not: the watcher's start would cost it requests it
        has no use for."""
        if self._fs is None:
            from boxfs.config import NoCredentialsError
            from boxfs.core import BoxFileSystem

            try:
                self._fs = BoxFileSystem(**self.fs_options(), watch_events=watch)
            except NoCredentialsError:
                raise click.UsageError(
                    "no Box credentials: give --config FILE (the JWT app's JSON from the Box developer console) "
                    "or set BOXFS_JWT_CONFIG; or --oauth-token-file FILE after 'boxfs login'; BOXFS_TOKEN and "
                    "BOXFS_CLIENT_ID/BOXFS_CLIENT_SECRET work too (docs/configuration.md)") from None
        return self._fs


pass_state = click.make_pass_decorator(CliState)


# ------------------------------------------------------------------------------------------ helpers
def box_path(value: str) -> str:
    """A Box path for the filesystem: ``box://a/b``, ``/a/b`` and ``a/b`` all give ``a/b``."""
    if value.startswith(BOX_PREFIX):
        value = value[len(BOX_PREFIX):]
    return value.strip("/")


def is_remote(value: str) -> bool:
    """In ``cp`` only: is this argument a Box path? (It is exactly when it starts with ``box://``.)"""
    return value.startswith(BOX_PREFIX)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=_json_default, indent=2, sort_keys=True))


def human_size(n: int) -> str:
    """``1536`` -> ``1.5K``: sizes as ``du -h`` and ``ls -h`` print them."""
    value = float(n)
    for unit in ("", "K", "M", "G", "T", "P"):
        if value < 1024 or unit == "P":
            return f"{int(value)}" if unit == "" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else "-" * 16


def box_targets(fs: Any, arg: str, literal: bool = False) -> tuple[list[str], bool]:
    """The one wildcard rule of ls, cat, cp, rm, find and mv: the Box paths an argument names, and whether
    it was expanded as a pattern.

    A name is a pattern only when it has ``* ? [`` and no item of exactly that name exists (so
    ``box://cli/a [1].txt`` is that file, never ``a 1.txt``); ``--literal`` never expands. Patterns match
    case-insensitively, as Box compares names; ``**`` crosses folders. A pattern matching nothing is
    FileNotFoundError.
    """
    path = box_path(arg)
    if literal or not is_pattern(path, fs.exists):
        return [path], False
    parts = path.split("/")
    fixed = next(i for i, part in enumerate(parts) if has_magic(part))
    top = "/".join(parts[:fixed])
    depth = None if "**" in path else len(parts) - fixed
    try:
        rule = pattern_regex(path)
    except re.error as exc:
        raise click.BadParameter(f"not a valid pattern: {exc}", param_hint=repr(arg)) from None
    found = fs.find(top, maxdepth=depth, withdirs=True) if fs.isdir(top) else []
    matches = sorted((p for p in found if p != top and rule.fullmatch(p)), key=str.casefold)
    if not matches:
        raise FileNotFoundError(2, "No Box item matches", arg)
    return matches, True


class ByteRate(click.ParamType):
    """``10M``, ``512K``, ``1.5G`` or plain bytes: a rate in bytes per second."""

    name = "rate"
    _UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().upper().removesuffix("/S").removesuffix("B")
        unit = text[-1:] if text[-1:] in self._UNITS else ""
        try:
            rate = float(text[: len(text) - len(unit)]) * self._UNITS[unit]
        except ValueError:
            self.fail(f"{value!r} is not a rate such as 10M, 512K or 1000000", param, ctx)
        if rate <= 0:
            self.fail("the rate must be positive", param, ctx)
        return rate


# Options several commands share, declared once.
def _into_state(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Where a connection option lands, given globally (``boxfs --config F ls``) or after the command
    that also takes it (``boxfs mount --config F ...``): one :class:`CliState`. After the command only
    what was typed there overrides; its environment value already reached the global option."""
    state = ctx.ensure_object(CliState)
    typed = ctx.get_parameter_source(str(param.name)) is ParameterSource.COMMANDLINE
    if value is not None and (ctx.parent is None or typed):
        setattr(state, str(param.name), value)
    return value


CONFIG_OPTION = click.option("--config", "config", metavar="FILE", envvar="BOXFS_JWT_CONFIG", show_envvar=True,
                             expose_value=False, callback=_into_state,
                             help="JWT app config: the JSON file from the Box developer console (or its text).")
AS_USER_OPTION = click.option("--as-user", "as_user", metavar="LOGIN", envvar="BOXFS_AS_USER", show_envvar=True,
                              expose_value=False, callback=_into_state,
                              help="Act as this enterprise user (login email or user id) via the As-User header.")
SPOOL_DIR_OPTION = click.option("--spool-dir", default=None, type=click.Path(file_okay=False),
                                help="Private folder where files being written are staged before upload "
                                     "(default: the temp folder).")
LITERAL_OPTION = click.option("--literal", is_flag=True,
                              help="Names are never patterns, even where no item has that name ('*?[' are characters).")
PROGRESS_OPTION = click.option("--progress/--no-progress", default=None,
                               help="Show a progress bar (default: when stderr is a terminal and --json is off).")
TRANSFERS_OPTION = click.option("--transfers", type=click.IntRange(min=1, max=64), default=8, show_default=True,
                                help="Files transferred at the same time.")


def FILTER_OPTIONS(f: Callable[..., Any]) -> Callable[..., Any]:  # noqa: N802 - used like the options above
    """--include/--exclude (repeatable; see boxfs.sync.FileFilter for the rule)."""
    f = click.option("--exclude", multiple=True, metavar="PATTERN",
                     help="Leave out paths matching PATTERN (repeatable; 'name' anywhere, 'dir/**' anchored).")(f)
    return click.option("--include", multiple=True, metavar="PATTERN",
                        help="Only paths matching PATTERN (repeatable; case-insensitive as Box).")(f)


# ------------------------------------------------------------------------------------------ progress
class _Bar:
    """One tqdm bar in bytes shared by all files of a transfer (on stderr); a no-op when disabled."""

    def __init__(self, enabled: bool, total: int | None) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                            dynamic_ncols=True, leave=True)
        self._lock = threading.Lock()

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def __call__(self, inc: int) -> None:
        if self.bar is not None:
            with self._lock:
                self.bar.update(inc)


@contextlib.contextmanager
def progress_bar(state: CliState, wanted: bool | None, total: int | None) -> Iterator[_Bar]:
    """The bar shown when asked for (--progress), by default when stderr is a terminal and not --json."""
    show = wanted if wanted is not None else (sys.stderr.isatty() and not state.as_json)
    bar = _Bar(bool(show), total)
    try:
        yield bar
    finally:
        if bar.bar is not None:
            bar.bar.close()


# ------------------------------------------------------------------------------------------ retry notice
class _RetryNotice(logging.Handler):
    """Says once, on stderr, that a request is being retried, so a slow failure is not silence.

    The retry policy logs each retry at INFO (``retrying <request> after <cause> ...``); the CLI shows
    WARNING and up, so without this an unreachable host means tens of seconds with no word.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.said = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.said or not str(record.msg).startswith("retrying ") or not record.args:
            return
        self.said = True
        what = record.args[0] if isinstance(record.args, tuple) else "a request"
        click.echo(f"boxfs: {what} failed; retrying (--retries N and --timeout SECONDS change how long)",
                   err=True)

    @classmethod
    def install(cls) -> None:
        """Let the boxfs logger pass INFO to this handler, and keep the root's handlers as they were."""
        for handler in logging.getLogger().handlers:
            handler.addFilter(_hide_enabled_info)
        box_logger = logging.getLogger("boxfs")
        box_logger.addHandler(cls())
        box_logger.setLevel(logging.INFO)


def _hide_enabled_info(record: logging.LogRecord) -> bool:
    """Drop a boxfs record below WARNING that shows only because _RetryNotice lowered "boxfs" to INFO.

    A logger under "boxfs" that set its own level (the servers log logins at INFO) still decides.
    """
    if record.levelno >= logging.WARNING or not (record.name == "boxfs" or record.name.startswith("boxfs.")):
        return True
    name = record.name
    while name != "boxfs":
        level = logging.getLogger(name).level
        if level:
            return record.levelno >= level
        name = name.rpartition(".")[0]
    return False


# ------------------------------------------------------------------------------------------ group
class BoxfsGroup(click.Group):
    """Lists commands in the order they were added (most used first), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=BoxfsGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@CONFIG_OPTION
@AS_USER_OPTION
@click.option("--base-url", "base_url", metavar="URL", envvar="BOXFS_BASE_URL", show_envvar=True,
              help="Box API root (default https://api.box.com); the emulator's URL for local use.")
@click.option("--oauth-token-file", "oauth_token_file", metavar="FILE", envvar="BOXFS_OAUTH_TOKEN_FILE",
              show_envvar=True, help="Act as yourself with the tokens 'boxfs login' saved in FILE.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS", envvar="BOXFS_TIMEOUT",
              show_envvar=True, help="Give up on a connection or an answer after SECONDS (default 10 to connect, "
                                     "120 to answer).")
@click.option("--retries", type=click.IntRange(min=0), metavar="N", envvar="BOXFS_RETRIES", show_envvar=True,
              help="Repeat a request that failed for a transient reason up to N times (default 7).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
@click.option("--debug", is_flag=True, help="Log every request at DEBUG level; print tracebacks on errors.")
@click.version_option(package_name=DISTRIBUTION, prog_name="boxfs")
@click.pass_context
def cli(ctx: click.Context, base_url: str | None, oauth_token_file: str | None, timeout: float | None, retries: int | None, as_json: bool,
        debug: bool) -> None:
    """Box (box.com) storage from the command line.

    Box paths: box://folder/file or folder/file (relative to the user's All Files). In cp, only
    arguments starting with box:// are Box paths; all others are local.

    Exit codes: 0 ok, 1 operation failed, 2 usage or configuration error.
    """
    first_setup = not logging.getLogger().handlers
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if debug:
        # urllib3 would log every URL with its query, including the signed download URLs Box redirects
        # to (a credential while it lasts); boxfs logs each request itself, without them.
        logging.getLogger("urllib3").setLevel(logging.INFO)
    elif first_setup:  # the real command, not click called inside another program's logging
        _RetryNotice.install()
    global _debug
    _debug = debug
    state = ctx.ensure_object(CliState)  # --config and --as-user are in it already (_into_state)
    state.base_url, state.oauth_token_file, state.timeout, state.retries = base_url, oauth_token_file, timeout, retries
    state.as_json, state.debug = as_json, debug


# ------------------------------------------------------------------------------------------ reading
@cli.command("ls")
@click.argument("path", default="")
@click.option("-l", "long", is_flag=True, help="Long format: type, size, modified time, name.")
@click.option("-H", "--human", is_flag=True, help="Sizes as 1.5K, 20.0M (with -l).")
@LITERAL_OPTION
@pass_state
def ls_cmd(state: CliState, path: str, long: bool, human: bool, literal: bool) -> None:
    """List a folder (or show one file); a pattern (box://r/*.CSV) lists the items it matches."""
    fs = state.fs()
    targets, expanded = box_targets(fs, path, literal)
    if expanded:
        entries = [fs.info(t) for t in targets]
    else:
        entries = fs.ls(targets[0], detail=True)
    entries.sort(key=lambda e: e["name"].casefold())
    if state.as_json:
        emit_json(entries)
        return
    for e in entries:
        name = (e["name"] if expanded else _basename(e["name"])) + ("/" if e["type"] == "directory" else "")
        if long:
            size = human_size(e["size"]) if human else str(e["size"])
            kind = "d" if e["type"] == "directory" else "-"
            click.echo(f"{kind} {size:>12} {_time(e['modified'])} {name}")
        else:
            click.echo(name)


@cli.command("tree")
@click.argument("path", default="")
@click.option("-L", "--depth", type=click.IntRange(min=1), default=None, help="Descend at most this many levels.")
@pass_state
def tree_cmd(state: CliState, path: str, depth: int | None) -> None:
    """Show a folder and everything below it as a tree."""
    fs = state.fs()
    top = box_path(path)
    found = fs.find(top, maxdepth=depth, withdirs=True, detail=True)
    children: dict[str, list[dict[str, Any]]] = {}
    for name, info in found.items():
        if name == top:
            continue
        children.setdefault(posixpath.dirname(name), []).append(info)
    for lst in children.values():
        lst.sort(key=lambda i: i["name"].casefold())

    def node(info: dict[str, Any]) -> dict[str, Any]:
        out = {"name": _basename(info["name"]) if info["name"] else "", "path": info["name"],
               "type": info["type"], "size": info["size"], "id": info["id"]}
        if info["type"] == "directory":
            out["children"] = [node(c) for c in children.get(info["name"], [])]
        return out

    root = node(fs.info(top))
    if state.as_json:
        emit_json(root)
        return
    click.echo(BOX_PREFIX + top)
    counts = {"directory": 0, "file": 0}

    def walk(n: dict[str, Any], prefix: str) -> None:
        kids = n.get("children", [])
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            counts[kid["type"]] = counts.get(kid["type"], 0) + 1
            suffix = "/" if kid["type"] == "directory" else ""
            click.echo(f"{prefix}{'└── ' if last else '├── '}{kid['name']}{suffix}")
            walk(kid, prefix + ("    " if last else "│   "))

    walk(root, "")
    click.echo(f"\n{counts['directory']} folders, {counts['file']} files")


@cli.command("info")
@click.argument("path")
@pass_state
def info_cmd(state: CliState, path: str) -> None:
    """Show the details of one file or folder (id, size, sha1, times...)."""
    info = state.fs().info(box_path(path))
    if state.as_json:
        emit_json(info)
        return
    for key in sorted(info):
        value = info[key]
        click.echo(f"{key}: {value.isoformat() if isinstance(value, datetime) else value}")


@cli.command("cat")
@click.argument("paths", nargs=-1, required=True)
@LITERAL_OPTION
@pass_state
def cat_cmd(state: CliState, paths: tuple[str, ...], literal: bool) -> None:
    """Write files' contents to stdout (streamed); patterns are expanded as in ls."""
    fs = state.fs()
    targets = [t for p in paths for t in box_targets(fs, p, literal)[0]]
    out = click.get_binary_stream("stdout")
    for t in targets:
        with fs.open(t, "rb") as fh:
            _pump(fh, out)
    out.flush()


def _pump(src: BinaryIO, dst: BinaryIO) -> None:
    while True:
        chunk = src.read(COPY_CHUNK)
        if not chunk:
            return
        dst.write(chunk)


@cli.command("du")
@click.argument("path", default="")
@click.option("-s", "--summarize", is_flag=True, help="Only the total.")
@click.option("-H", "--human", is_flag=True, help="Sizes as 1.5K, 20.0M.")
@pass_state
def du_cmd(state: CliState, path: str, summarize: bool, human: bool) -> None:
    """Disk usage: bytes under each item of a folder, and the total (one listing per folder)."""
    fs = state.fs()
    top = box_path(path)
    info = fs.info(top)
    usage: dict[str, int] = {}
    total = 0
    if info["type"] == "directory":
        for child in fs.ls(top, detail=True):
            usage[child["name"]] = 0  # files are counted by find below, folders by what they hold
        for name, f in fs.find(top, detail=True).items():
            rel = name[len(top):].lstrip("/") if top else name
            head = posixpath.join(top, rel.split("/", 1)[0]) if top else rel.split("/", 1)[0]
            usage[head] = usage.get(head, 0) + f["size"]
            total += f["size"]
    else:
        usage[top] = total = info["size"]
    if state.as_json:
        emit_json({"path": top, "total": total, **({} if summarize else {"items": usage})})
        return
    fmt = human_size if human else str
    if not summarize:
        for name in sorted(usage, key=str.casefold):
            click.echo(f"{fmt(usage[name])}\t{BOX_PREFIX}{name}")
    click.echo(f"{fmt(total)}\t{BOX_PREFIX}{top}" + ("" if summarize else "  (total)"))


@cli.command("find")
@click.argument("path", default="")
@click.option("--name", "pattern", default=None, help="Only names matching this wildcard (case-insensitive, as Box).")
@click.option("--type", "kind", type=click.Choice(["f", "d"]), default=None, help="f: files, d: folders.")
@click.option("--maxdepth", type=click.IntRange(min=1), default=None, help="Descend at most this many levels.")
@LITERAL_OPTION
@pass_state
def find_cmd(state: CliState, path: str, pattern: str | None, kind: str | None, maxdepth: int | None,
             literal: bool) -> None:
    """Print every path below a folder (files and folders), like find(1)."""
    fs = state.fs()
    name_rule = pattern_regex(pattern) if pattern else None
    out: dict[str, dict[str, Any]] = {}
    for top in box_targets(fs, path, literal)[0]:
        for name, info in fs.find(top, maxdepth=maxdepth, withdirs=True, detail=True).items():
            if name == top and info["type"] == "directory":
                continue
            if kind == "f" and info["type"] != "file" or kind == "d" and info["type"] != "directory":
                continue
            if name_rule is not None and not name_rule.fullmatch(_basename(name)):
                continue
            out[name] = info
    found = [out[n] for n in sorted(out, key=str.casefold)]
    if state.as_json:
        emit_json(found)
        return
    for info in found:
        click.echo(BOX_PREFIX + info["name"])


# ------------------------------------------------------------------------------------------ writing
@cli.command("mkdir")
@click.argument("paths", nargs=-1, required=True)
@click.option("-p", "--parents", is_flag=True, help="Create missing parents; no error if it exists.")
@pass_state
def mkdir_cmd(state: CliState, paths: tuple[str, ...], parents: bool) -> None:
    """Create folders."""
    fs = state.fs()
    for p in paths:
        if parents:
            fs.makedirs(box_path(p), exist_ok=True)
        else:
            fs.mkdir(box_path(p), create_parents=False)


@cli.command("rm")
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Delete folders with everything in them.")
@click.option("-f", "--force", is_flag=True, help="No error for paths that do not exist.")
@LITERAL_OPTION
@pass_state
def rm_cmd(state: CliState, paths: tuple[str, ...], recursive: bool, force: bool, literal: bool) -> None:
    """Delete files (and, with -r, folders). Deleted items go to the owner's Box trash.

    A name is deleted as written; it is a pattern only when no item has that exact name.
    """
    fs = state.fs()
    side = BoxSide(fs)
    chosen: list[Entry] = []
    for p in paths:  # everything is resolved and checked before the first deletion
        if not box_path(p):
            raise click.UsageError("refusing to delete the root folder")
        try:
            targets = box_targets(fs, p, literal)[0]
        except FileNotFoundError:
            if force:
                continue
            raise
        for t in targets:
            entry = side.entry(t)
            if entry is None:
                if force:
                    continue
                raise FileNotFoundError(2, "No such file or directory", BOX_PREFIX + t)
            if entry.kind == "directory" and not recursive:
                raise IsADirectoryError(21, "is a folder (use -r to delete it with its contents)", BOX_PREFIX + t)
            chosen.append(entry)
    for entry in chosen:
        side.remove(entry)


@cli.command("mv")
@click.argument("src")
@click.argument("dst")
@LITERAL_OPTION
@pass_state
def mv_cmd(state: CliState, src: str, dst: str, literal: bool) -> None:
    """Move or rename a file or folder on Box (one server-side request).

    Into an existing folder DST the item keeps its name; an existing file DST is replaced (the new one
    is in place before the old one goes). SRC is a pattern only as in ls; several matches need a folder DST.
    """
    fs = state.fs()
    sources, expanded = box_targets(fs, src, literal)
    target = box_path(dst)
    if expanded and len(sources) > 1 and not (target == "" or fs.isdir(target)):
        raise click.UsageError(f"{src} matches {len(sources)} items: DST must be an existing folder")
    for source in sources:
        fs.mv_literal(source, target)


def _side_of(state: CliState, arg: str) -> tuple[LocalSide | BoxSide, str]:
    """The side an argument names (box://... is Box, anything else local) and its path there."""
    return endpoint(arg, fs=state.fs() if is_remote(arg) else None)


class _BarCallback(Callback):
    """fsspec's callback for ``fs.put``/``fs.get``: the top level counts files (not shown); each file's
    branch reports its bytes to the one shared bar."""

    def __init__(self, bar: _Bar) -> None:
        super().__init__()
        self.bar = bar

    def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Callback:
        return _FileBytes(self.bar)


class _FileBytes(Callback):
    """One file's bytes, fed to the shared bar (from the transfer's threads; the bar locks)."""

    def __init__(self, bar: _Bar) -> None:
        super().__init__()
        self.bar = bar

    def relative_update(self, inc: int = 1) -> None:
        self.bar(inc)


Job = tuple[str, str, str, dict[str, Any]]  # (kind, source, destination, kwargs): BoxFileSystem.planned_transfers


def _refuse_collisions(jobs: list[Job], dst: LocalSide | BoxSide) -> None:
    """Two sources landing on one destination name (Box: in any letter case) are refused up front,
    before anything is written: one would silently overwrite the other."""
    landing: dict[str, list[str]] = {}
    for kind, source, target, _kw in jobs:
        if kind == "file":
            key = name_key(target) if dst.is_box else os.path.normpath(os.path.abspath(target))
            landing.setdefault(key, []).append(source)
    clashes = {k: v for k, v in landing.items() if len(v) > 1}
    if clashes:
        key, srcs = next(iter(clashes.items()))
        raise click.UsageError(f"{len(clashes)} destination name(s) would receive several sources, e.g. "
                               f"{dst.show(key)} from {', '.join(srcs[:3])}; nothing was copied")


def _identical(jobs: list[Job], found: dict[str, Entry | None], src: LocalSide | BoxSide,
               dst: LocalSide | BoxSide) -> list[Job]:
    """The file jobs whose destination already holds the same content (size and SHA-1): left alone,
    so no new Box version of an unchanged file. Box's side costs its folder's listing, nothing more.
    ``found``: each source's entry."""
    same: list[Job] = []
    for job in jobs:
        entry = found.get(job[1]) if job[0] == "file" else None
        there = dst.entry(job[2]) if entry is not None else None
        if entry is not None and there is not None and same_content(src, entry, dst, there):
            same.append(job)
    return same


def _cp_sources(fs: Any, src: LocalSide | BoxSide, sources: list[str], literal: bool,
                recursive: bool) -> dict[str, str]:
    """Each source as fsspec will take it (a name as written, its trailing slash counting, or each
    match of a Box pattern) with its kind; a missing one, or a folder without ``-r``, stops cp here."""
    kinds: dict[str, str] = {}
    for arg in sources:
        matches, expanded = box_targets(fs, arg, literal) if src.is_box else ([arg], False)
        for source in matches if expanded else [arg]:
            path = box_path(source) if src.is_box else source
            entry = src.entry(path)
            if entry is None:
                raise FileNotFoundError(2, "No such file or directory", src.show(path))
            if entry.kind == "directory" and not recursive:
                raise click.UsageError(f"{src.show(path)} is a folder (use -r to copy it with its contents)")
            kinds[source] = entry.kind
    return kinds


def _cp_plan(fs: Any, src: LocalSide | BoxSide, kinds: dict[str, str], dst: LocalSide | BoxSide,
             dst_arg: str) -> list[Job]:
    """What ``fs.put``/``get``/``copy`` would do for these sources, by fsspec's path rules, checked
    whole before anything is written: colliding destinations and names Box would refuse stop cp here.
    Box paths in the jobs are the filesystem's (no ``box://``)."""
    target = box_path(dst_arg) if dst.is_box else dst_arg
    existing = dst.entry(target)
    dst_is_dir = dst_arg.endswith(("/", os.sep)) or target == "" or (
        existing is not None and existing.kind == "directory")
    if len(kinds) > 1 and not dst_is_dir:
        raise click.UsageError(f"copying several sources needs DST to be an existing folder: {dst_arg}")
    transfer = fs.copy if src.is_box and dst.is_box else fs.get if src.is_box else fs.put
    with fs.planned_transfers() as planned:  # nothing is written in here
        for source, kind in kinds.items():
            transfer(source, dst_arg, recursive=kind == "directory")
    jobs = [(kind, box_path(a) if src.is_box else a, box_path(b) if dst.is_box else b, kw)
            for kind, a, b, kw in planned]
    _refuse_collisions(jobs, dst)
    if dst.is_box:
        for job in jobs:  # a name Box would refuse stops the copy before anything is written
            check_path_names(job[2])
    return jobs


@cli.command("cp")
@click.argument("paths", nargs=-1, required=True, metavar="SOURCES... DST")
@click.option("-r", "--recursive", is_flag=True, help="Copy folders with their contents.")
@PROGRESS_OPTION
@TRANSFERS_OPTION
@LITERAL_OPTION
@pass_state
def cp_cmd(state: CliState, paths: tuple[str, ...], recursive: bool, progress: bool | None, transfers: int,
           literal: bool) -> None:
    """Copy files: local to Box, Box to local, or Box to Box (server side).

    Only arguments starting with box:// are Box paths; everything else is local (./x, /tmp/x, x).
    Box sources may be patterns (box://reports/*.csv; quote them), expanded as in ls. Path rules are
    fsspec's put/get/copy: each source lands inside DST under its own name when DST is an existing
    folder or ends with '/' (a folder written 'src/': its contents), else at DST. A file whose content
    DST already holds is not copied again (no new Box version).
    """
    if len(paths) < 2:
        raise click.UsageError(f"cp needs a destination after {paths[0]}: boxfs cp SOURCES... DST "
                               "(e.g. boxfs cp box://reports/q3.csv . or boxfs cp ./q3.csv box://reports/)")
    *sources, dst = paths
    if len({is_remote(s) for s in sources}) > 1:
        raise click.UsageError("all sources must be on the same side (all box://... or all local)")
    if not is_remote(sources[0]) and not is_remote(dst):
        raise click.UsageError("neither side is on Box: prefix Box paths with box:// (use cp(1) for local copies)")
    state.max_connections = transfers  # fs.put/get/copy run on the filesystem's threads
    fs = state.fs()
    src, _ = _side_of(state, sources[0])
    dst_side, _ = _side_of(state, dst)
    jobs = _cp_plan(fs, src, _cp_sources(fs, src, sources, literal, recursive), dst_side, dst)
    found = {job[1]: src.entry(job[1]) for job in jobs if job[0] == "file"}
    # a pipe, a device, a symlink loop, a file gone since: fails alone, never opened (a FIFO blocks forever)
    unfit = {id(job): (found[job[1]] or Entry(job[1], "file", problem="No such file or directory")).problem
             for job in jobs if job[0] == "file" and (found[job[1]] is None or found[job[1]].problem)}
    same = {id(job) for job in _identical([j for j in jobs if id(j) not in unfit], found, src, dst_side)}
    todo = [job for job in jobs if id(job) not in same and id(job) not in unfit]
    server_side = src.is_box and dst_side.is_box
    transfer = fs.copy if server_side else fs.get if src.is_box else fs.put
    sizes = {path: entry.size if entry else 0 for path, entry in found.items()}
    total = None if server_side else sum(sizes[job[1]] for job in todo if job[0] == "file")
    with progress_bar(state, progress, total) as bar:
        for _kind, source, target_path, _kw in (job for job in todo if job[0] == "tree"):
            fs.copy(source, target_path, recursive=True)  # a whole folder to a new name: one request
        pairs = [job for job in todo if job[0] != "tree"]
        if pairs:
            extra = {} if server_side else {"callback": _BarCallback(bar)}
            transfer([job[1] for job in pairs], [job[2] for job in pairs], **extra)
    _close_hashes(src, dst_side)
    failed = [(src.show(job[1]), unfit[id(job)]) for job in jobs if id(job) in unfit]
    if state.as_json:
        status = {**{key: "identical" for key in same}, **{key: "failed" for key in unfit}}
        emit_json([{"src": src.show(job[1]), "dst": dst_side.show(job[2]), "size": sizes.get(job[1], 0),
                    "status": status.get(id(job), "copied"), **({"error": unfit[id(job)]} if id(job) in unfit else {})}
                   for job in jobs if job[0] != "dir"])
    else:
        for job in jobs:
            if id(job) in same:
                click.echo(f"identical, not copied: {dst_side.show(job[2])}")
    _raise_failures(failed)


def _raise_failures(failed: list[tuple[str, str]]) -> None:
    """Every failed item on stderr, then exit 1."""
    if failed:
        for path, error in failed[:-1]:
            click.echo(f"boxfs: error: {path}: {error}", err=True)
        path, error = failed[-1]
        raise click.ClickException(f"{path}: {error}" + (f" ({len(failed)} items failed)" if len(failed) > 1 else ""))


def _filters(include: tuple[str, ...], exclude: tuple[str, ...]) -> FileFilter:
    try:
        return FileFilter(include, exclude)
    except re.error as exc:
        raise click.BadParameter(f"not a valid pattern: {exc}", param_hint="--include/--exclude") from None


def _two_sides(state: CliState, src_arg: str, dst_arg: str) -> tuple[Any, str, Any, str]:
    if not is_remote(src_arg) and not is_remote(dst_arg):
        raise click.UsageError("neither side is on Box: prefix Box paths with box://")
    src, src_root = _side_of(state, src_arg)
    dst, dst_root = _side_of(state, dst_arg)
    return src, src_root, dst, dst_root


@cli.command("sync")
@click.argument("src")
@click.argument("dst")
@click.option("--dry-run", "-n", is_flag=True, help="Show what would be copied and deleted; change nothing.")
@click.option("--delete", is_flag=True, help="Also delete from DST what SRC lacks (Box: to the trash).")
@FILTER_OPTIONS
@click.option("--size-only", is_flag=True, help="Files of the same size are identical (no hashing).")
@click.option("--checksum", "-c", is_flag=True, help="Re-hash every local file (ignore the hash cache).")
@TRANSFERS_OPTION
@click.option("--bwlimit", type=ByteRate(), default=None, metavar="RATE",
              help="Limit the transfer rate, bytes per second (suffixes K, M, G: 10M).")
@PROGRESS_OPTION
@pass_state
def sync_cmd(state: CliState, src: str, dst: str, dry_run: bool, delete: bool, include: tuple[str, ...],
             exclude: tuple[str, ...], size_only: bool, checksum: bool, transfers: int, bwlimit: float | None,
             progress: bool | None) -> None:
    """Make the folder DST match the folder SRC (local to Box, Box to local, Box to Box).

    Files already identical (same size and SHA-1) are skipped; Box's listings carry each file's SHA-1 and
    local hashes are cached by path, size and mtime. Run again after an interruption, it copies only what
    is still missing. Exit 1 when any item failed (the others are still done).
    """
    if size_only and checksum:
        raise click.UsageError("--size-only and --checksum contradict each other")
    src_side, src_root, dst_side, dst_root = _two_sides(state, src, dst)
    for side in (src_side, dst_side):
        if isinstance(side, LocalSide):
            side.rehash = checksum
    with progress_bar(state, False if dry_run else progress, None) as bar:
        report = sync(src_side, src_root, dst_side, dst_root, delete=delete, dry_run=dry_run,
                      filters=_filters(include, exclude), size_only=size_only, transfers=transfers,
                      bwlimit=bwlimit, advance=bar,
                      on_plan=lambda plan: bar.set_total(sum(a.size for a in plan if a.op == "copy")))
    _close_hashes(src_side, dst_side)
    if state.as_json:
        emit_json(report.as_dict())
    else:
        verb = "would " if dry_run else ""
        for a in report.copied:
            click.echo(f"{verb}copy ({a.reason}): {a.rel}")
        for a in report.deleted:
            click.echo(f"{verb}delete: {a.rel}")
        click.echo(summary_line(report), err=not dry_run)
    _raise_failures(report.failed)


def summary_line(report: SyncReport) -> str:
    d = report.as_dict()["summary"]
    head = "dry run: would copy" if report.dry_run else "copied"
    line = (f"{head} {d['copied']} files ({human_size(d['bytes'])}B), skipped {d['skipped']} identical, "
            f"{'would delete' if report.dry_run else 'deleted'} {d['deleted']}, failed {d['failed']}")
    if not report.dry_run:
        line += f" in {report.elapsed:.1f} s ({human_size(d['bytes_per_second'])}B/s)"
    return line


def _close_hashes(*sides: Any) -> None:
    for side in sides:
        if isinstance(side, LocalSide):
            side.hashes.close()


@cli.command("check")
@click.argument("src")
@click.argument("dst")
@FILTER_OPTIONS
@pass_state
def check_cmd(state: CliState, src: str, dst: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """Compare two folders file by file by SHA-1; exit 1 if anything differs or is missing on either side."""
    src_side, src_root, dst_side, dst_root = _two_sides(state, src, dst)
    report = check(src_side, src_root, dst_side, dst_root, filters=_filters(include, exclude))
    _close_hashes(src_side, dst_side)
    if state.as_json:
        emit_json(report.as_dict())
    else:
        for rel in report.differ:
            click.echo(f"differs: {rel}")
        for rel in report.only_src:
            click.echo(f"missing on {dst}: {rel}")
        for rel in report.only_dst:
            click.echo(f"missing on {src}: {rel}")
        click.echo(f"{report.same} identical, {len(report.differ)} differ, {len(report.only_src)} missing on DST, "
                   f"{len(report.only_dst)} missing on SRC", err=True)
    if not report.ok:
        raise SystemExit(EXIT_FAILED)


@cli.command("sign")
@click.argument("path")
@click.option("--expiration", type=click.IntRange(min=1), default=900, show_default=True,
              help="Seconds the URL must stay valid (above 900: an expiring shared link).")
@pass_state
def sign_cmd(state: CliState, path: str, expiration: int) -> None:
    """Print a URL that downloads a file without any credentials, for a limited time."""
    url = state.fs().sign(box_path(path), expiration=expiration)
    if state.as_json:
        emit_json({"path": box_path(path), "url": url, "expiration": expiration})
    else:
        click.echo(url)


@cli.command("watch")
@click.argument("path", default="")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many changes.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds without a change.")
@pass_state
def watch_cmd(state: CliState, path: str, count: int | None, timeout: float | None) -> None:
    """Print one JSON line per change made on Box at or below PATH, by anyone, until interrupted."""
    fs = state.fs(watch=True)
    where = box_path(path)
    fs.info(where)  # a missing path is an error now, not an endless wait
    changes = fs.watch(where, timeout=timeout)
    click.echo(f"watching {BOX_PREFIX}{where}", err=True)  # ready: changes from now on are reported
    for n, change in enumerate(changes, 1):
        click.echo(json.dumps(change, default=_json_default, sort_keys=True))
        if count is not None and n >= count:
            break


# ------------------------------------------------------------------------------------------ users
@cli.command("whoami")
@pass_state
def whoami_cmd(state: CliState) -> None:
    """Show the acting user (the --as-user one, else the app's service account)."""
    fs = state.fs()
    me = fs.transport.json("GET", fs.transport.api("/users/me"),
                           params={"fields": "id,name,login,status,space_used,space_amount,enterprise"},
                           action="who am I")
    if state.as_json:
        emit_json(me)
        return
    click.echo(f"{me.get('login')} (id {me.get('id')}, {me.get('name')})")


@cli.command("users")
@click.argument("query", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many users.")
@pass_state
def users_cmd(state: CliState, query: str | None, limit: int | None) -> None:
    """List the enterprise's users, or those whose name or login starts with QUERY.

    Needs an app with the 'Manage users' scope. Requests are made as the app (never As-User).
    """
    fs = state.fs()
    url = fs.transport.api("/users")
    users: list[dict[str, Any]] = []
    offset = 0
    page = 1000 if limit is None else min(limit, 1000)
    while True:
        params: dict[str, Any] = {"fields": "id,name,login,status", "limit": page, "offset": offset}
        if query:
            params["filter_term"] = query
        data = fs.transport.json("GET", url, params=params, act_as_user=False, action="list users")
        entries = data.get("entries") or []
        users.extend(entries)
        offset += len(entries)
        if not entries or offset >= int(data.get("total_count", 0)) or (limit and len(users) >= limit):
            break
    if limit:
        users = users[:limit]
    if state.as_json:
        emit_json(users)
        return
    for u in users:
        click.echo(f"{u.get('id')}\t{u.get('login')}\t{u.get('name')}\t{u.get('status', '')}")


@cli.command("login")
@click.option("--client-id", envvar="BOXFS_CLIENT_ID", show_envvar=True, required=True,
              help="Client ID of a Box app with User Authentication (OAuth 2.0).")
@click.option("--client-secret", envvar="BOXFS_CLIENT_SECRET", show_envvar=True, default=None,
              help="Its client secret (asked for when not given; avoid putting it on the command line).")
@click.option("--token-file", default=None, metavar="FILE",
              help="Where to keep the tokens (default: --oauth-token-file, else ~/.config/boxfs/oauth-token.json).")
@click.option("--redirect-uri", default=None, metavar="URI",
              help="The app's redirect URI, on this machine (default http://127.0.0.1:8765/callback).")
@click.option("--no-browser", is_flag=True, help="Only print the login URL; do not open a browser.")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds to wait for the browser login.")
@pass_state
def login_cmd(state: CliState, client_id: str, client_secret: str | None, token_file: str | None,
              redirect_uri: str | None, no_browser: bool, timeout: float) -> None:
    """Log in to Box as yourself (OAuth 2.0) and save the tokens in a private (0600) file.

    Then use that account with: boxfs --oauth-token-file FILE ..., BOXFS_OAUTH_TOKEN_FILE, or
    BoxFileSystem(oauth_token_file=FILE). Refreshed tokens are saved back to the file.
    """
    from boxfs.auth.login import DEFAULT_REDIRECT_URI, login
    from boxfs.auth.tokenfile import default_token_file
    from boxfs.config import resolve_endpoints

    if not client_secret:
        client_secret = click.prompt("Client secret", hide_input=True, err=True)
    endpoints = resolve_endpoints({"base_url": state.base_url.rstrip("/")} if state.base_url else None)

    def show(url: str) -> None:
        click.echo("Open this URL in a browser and grant access to Box:", err=True)
        click.echo(f"  {url}", err=True)

    who = login(client_id, str(client_secret), token_file or state.oauth_token_file or default_token_file(),
                endpoints=endpoints, redirect_uri=redirect_uri or DEFAULT_REDIRECT_URI,
                open_browser=not no_browser, timeout=timeout, show_url=show)
    if state.as_json:
        emit_json(who)
    else:
        click.echo(f"Logged in as {who.get('login')} (id {who.get('id')}); tokens saved in {who['token_file']}")


# ------------------------------------------------------------------------------------------ delegates
@cli.command("emulator", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                            "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def emulator_cmd(args: tuple[str, ...]) -> None:
    """Run the local Box API emulator (options: boxfs emulator --help)."""
    from boxfs.emulator.cli import main as emulator_main

    code = emulator_main(list(args))
    if code:
        raise SystemExit(code)


@cli.command("mount")
@click.argument("remote")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@AS_USER_OPTION
@CONFIG_OPTION
@click.option("--foreground", is_flag=True, help="Serve in this process until unmounted or Ctrl-C.")
@click.option("--read-only", is_flag=True, help="Refuse every change.")
@click.option("--allow-other", is_flag=True, help="Let other local users see the mount (libfuse allow_other).")
@SPOOL_DIR_OPTION
@pass_state
def mount_cmd(state: CliState, remote: str, mountpoint: str, foreground: bool, read_only: bool, allow_other: bool, spool_dir: str | None) -> None:
    """Mount the Box folder REMOTE (box://path; box:// for All Files) at MOUNTPOINT (FUSE).

    Without --foreground the mount is served by a background process and this command returns once
    the folder is mounted; `boxfs unmount MOUNTPOINT` (or fusermount3 -u) ends it.
    """
    try:
        import mfusepy  # noqa: F401 - imported here only to say what is missing before anything starts

        from boxfs.mount import mount
    except ImportError as exc:
        raise click.ClickException(f"mount needs the FUSE extra: pip install '{DISTRIBUTION}[mount]' ({exc})") from None
    except OSError as exc:  # mfusepy loads libfuse when imported
        raise click.ClickException(f"mount needs libfuse3 (Debian/Ubuntu: apt-get install fuse3): {exc}") from None
    if not foreground:
        _mount_in_background(mountpoint)
        return
    options: dict[str, Any] = {"allow_other": True} if allow_other else {}
    fs = state.fs(watch=None)
    if not box_path(remote):  # All Files mounted: /mnt/id:5 is a file of that name, never the item 5
        fs.id_paths = False
    mount(fs, mountpoint, foreground=True, read_only=read_only, root=box_path(remote), spool_dir=spool_dir,
          **options)


def _mount_in_background(mountpoint: str, timeout: float = 60.0) -> None:
    """Run this same command with --foreground in a detached process; return once it has mounted.

    A re-executed child rather than fork(): the parent may already hold threads and sockets that a
    forked FUSE server must not inherit.
    """
    import subprocess
    import tempfile
    import time

    log = tempfile.NamedTemporaryFile(prefix="boxfs-mount-", suffix=".log", delete=False)  # noqa: SIM115
    child = subprocess.Popen([sys.executable, "-m", "boxfs", *sys.argv[1:], "--foreground"],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mountpoint):
        if child.poll() is not None:
            with open(log.name, encoding="utf-8", errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
            last = lines[-1].removeprefix("boxfs: error: ") if lines else ""  # the child's own error line
            raise click.ClickException(last or f"the mount process exited with {child.returncode}")
        if time.monotonic() > deadline:
            child.terminate()
            raise click.ClickException(f"{mountpoint} was not mounted within {timeout:.0f} s (log: {log.name})")
        time.sleep(0.1)
    click.echo(f"mounted at {mountpoint} (pid {child.pid}, log {log.name}); end it with: boxfs unmount {mountpoint}",
               err=True)


@cli.command("unmount")
@click.argument("mountpoint", type=click.Path(file_okay=False))
def unmount_cmd(mountpoint: str) -> None:
    """Unmount a boxfs FUSE mount."""
    from boxfs.mount import unmount

    try:
        unmount(mountpoint)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group("serve", cls=BoxfsGroup)
def serve_group() -> None:
    """Run an FTP(S), SFTP or WebDAV server whose users' files live in Box (see docs/servers.md)."""


def _server_listen_options(port: int) -> Callable[[Any], Any]:
    """--users, --host and --port (``port``: the server's default) of every serve command."""
    def apply(command: Any) -> Any:
        command = click.option("--port", type=int, default=port, show_default=True)(command)
        command = click.option("--host", default="0.0.0.0", show_default=True)(command)
        return click.option("--users", "users_file", required=True, type=click.Path(dir_okay=False),
                            help="users.toml")(command)
    return apply


def _server_tls_options(what: str) -> Callable[[Any], Any]:
    """--cert and --key; ``what`` a certificate turns on (FTPS, HTTPS)."""
    def apply(command: Any) -> Any:
        command = click.option("--key", "keyfile", default=None, help="TLS private key (PEM).")(command)
        return click.option("--cert", "certfile", default=None, help=f"TLS certificate (PEM): {what}.")(command)
    return apply


def _server_safety_options(command: Any) -> Any:
    """Options both servers share: the users-file permission override and spool cleaning."""
    command = click.option("--spool-max-age", type=float, default=None, metavar="SECONDS",
                           help="Hourly, remove unused spool files older than this (default: one day).")(command)
    return click.option("--allow-loose-users-file", is_flag=True,
                        help="Start even if other accounts can write the users file (warns).")(command)


def _server_box_options(command: Any) -> Any:
    """The Box credential forms and spool options every server takes (like every other command: the
    global --config and the BOXFS_* environment work too)."""
    for option in reversed([
        click.option("--client-id", default=None, help="Box app client id (CCG, or JWT with the key fields)."),
        click.option("--client-secret", envvar="BOXFS_SERVE_CLIENT_SECRET", show_envvar=True, default=None,
                     help="Box app client secret (better from the environment than the command line)."),
        click.option("--enterprise-id", default=None, help="Enterprise id (CCG or JWT fields)."),
        click.option("--public-key-id", default=None, help="JWT key id (JWT fields)."),
        click.option("--private-key-file", default=None, type=click.Path(dir_okay=False, exists=True),
                     help="JWT private key, PEM (JWT fields)."),
        click.option("--passphrase", envvar="BOXFS_JWT_PASSPHRASE", show_envvar=True, default=None,
                     help="Passphrase of the JWT private key."),
        SPOOL_DIR_OPTION,
        click.option("--spool-threshold", type=click.IntRange(min=1), default=None, metavar="BYTES",
                     help="Uploads up to this size go to Box in one request; larger ones in chunks."),
        click.option("--audit-log", default=None, metavar="FILE|-",
                     help="Append one JSON line per action to FILE (- for stdout); see docs/servers.md."),
    ]):
        command = option(command)
    return command


def _audit_log(box: dict[str, Any]) -> Any:
    """The --audit-log of a serve command (None when not given)."""
    if not box.get("audit_log"):
        return None
    from boxfs.servers.audit import AuditLog

    return AuditLog(box["audit_log"])


def _server_config(state: CliState, box: dict[str, Any]) -> tuple[
        str | None, dict[str, str] | None, dict[str, Any]]:
    """``(jwt config or None, base_urls, filesystem options)`` from the global and the serve options."""
    box.pop("audit_log", None)  # not a filesystem option: see _audit_log
    fields = {key: box.pop(key) for key in ("client_id", "client_secret", "enterprise_id", "public_key_id",
                                             "private_key_file", "passphrase") if box.get(key) is not None}
    key_file = fields.pop("private_key_file", None)
    if key_file:
        from boxfs.servers.safety import warn_if_loose

        warn_if_loose(key_file, "JWT private key")
        with open(key_file, encoding="utf-8") as fh:
            fields["private_key"] = fh.read()
    options: dict[str, Any] = dict(fields)
    if box.get("spool_dir"):
        from boxfs.servers.safety import private_dir

        options["spool_dir"] = str(private_dir(box["spool_dir"]))
    if box.get("spool_threshold"):
        options["spool_threshold"] = box["spool_threshold"]
    base_urls = {"base_url": state.base_url.rstrip("/")} if state.base_url else None
    if not fields and not state.config:
        from boxfs.config import BoxConfigError, resolve_credentials

        try:
            resolve_credentials()  # the library's BOXFS_* lookup, checked now rather than at the first login
        except BoxConfigError:
            raise click.UsageError(
                "serve needs the Box app's credentials: --config FILE (or BOXFS_JWT_CONFIG), "
                "--client-id/--client-secret/--enterprise-id (CCG, or JWT with --public-key-id and "
                "--private-key-file), or BOXFS_CLIENT_ID/BOXFS_CLIENT_SECRET"
            ) from None
    # explicit fields win over a config from the environment; neither: the library's BOXFS_* lookup
    return (None if fields else state.config), base_urls, options


@serve_group.command("ftp")
@_server_listen_options(port=2121)
@_server_tls_options("enables explicit FTPS")
@click.option("--tls-required", is_flag=True, help="Refuse logins and transfers without TLS.")
@click.option("--passive-ports", default=None, metavar="FIRST-LAST", help="Passive port range, e.g. 60000-60100.")
@click.option("--masquerade-address", default=None, help="Address announced for passive mode (behind NAT).")
@_server_safety_options
@_server_box_options
@CONFIG_OPTION
@pass_state
def serve_ftp(state: CliState, users_file: str, host: str, port: int, certfile: str | None, keyfile: str | None,
              tls_required: bool, passive_ports: str | None, masquerade_address: str | None,
              allow_loose_users_file: bool, spool_max_age: float | None, **box: Any) -> None:
    """FTP/FTPS server (foreground, until Ctrl-C)."""
    try:
        from boxfs.servers.ftp import run_ftp
    except ImportError as exc:
        raise click.ClickException(f"serve ftp needs the servers extra: pip install '{DISTRIBUTION}[servers]' ({exc})") from None
    audit_log = _audit_log(box)
    config, base_urls, fs_options = _server_config(state, box)
    ports = None
    if passive_ports:
        try:
            first, last = (int(x) for x in passive_ports.split("-", 1))
        except ValueError:
            raise click.BadParameter("expected FIRST-LAST, e.g. 60000-60100", param_hint="--passive-ports") from None
        ports = range(first, last + 1)
    run_ftp(users_file, config, host, port, base_urls=base_urls, fs_options=fs_options, certfile=certfile, keyfile=keyfile,
            tls_required=tls_required, passive_ports=ports, masquerade_address=masquerade_address,
            allow_loose_users_file=allow_loose_users_file, spool_max_age=spool_max_age, audit_log=audit_log)


@serve_group.command("sftp")
@_server_listen_options(port=2222)
@click.option("--host-key", default=None,
              help="SSH host private key (default: one generated once into --state-dir and reused).")
@click.option("--state-dir", default=None, help="Private folder for the host key (default: $XDG_STATE_HOME/boxfs).")
@_server_safety_options
@_server_box_options
@CONFIG_OPTION
@pass_state
def serve_sftp(state: CliState, users_file: str, host: str, port: int, host_key: str | None, state_dir: str | None,
               allow_loose_users_file: bool, spool_max_age: float | None, **box: Any) -> None:
    """SFTP server (foreground, until Ctrl-C)."""
    try:
        from boxfs.servers.sftp import run_sftp
    except ImportError as exc:
        raise click.ClickException(f"serve sftp needs the servers extra: pip install '{DISTRIBUTION}[servers]' ({exc})") from None
    audit_log = _audit_log(box)
    config, base_urls, fs_options = _server_config(state, box)
    run_sftp(users_file, config, host, port, host_key=host_key, state_dir=state_dir,
             base_urls=base_urls, fs_options=fs_options, allow_loose_users_file=allow_loose_users_file, spool_max_age=spool_max_age,
             audit_log=audit_log)


@serve_group.command("webdav")
@_server_listen_options(port=8080)
@_server_tls_options("serves HTTPS")
@click.option("--threads", type=click.IntRange(min=1), default=16, show_default=True,
              help="Requests served at once.")
@_server_safety_options
@_server_box_options
@CONFIG_OPTION
@pass_state
def serve_webdav(state: CliState, users_file: str, host: str, port: int, certfile: str | None, keyfile: str | None,
                 threads: int, allow_loose_users_file: bool, spool_max_age: float | None,
                 **box: Any) -> None:
    """WebDAV server, HTTPS with --cert (foreground, until Ctrl-C)."""
    try:
        from boxfs.servers.webdav import run_webdav
    except ImportError as exc:
        raise click.ClickException(f"serve webdav needs the servers extra: pip install '{DISTRIBUTION}[servers]' ({exc})") from None
    audit_log = _audit_log(box)
    config, base_urls, fs_options = _server_config(state, box)
    run_webdav(users_file, config, host, port, base_urls=base_urls, fs_options=fs_options, certfile=certfile,
               keyfile=keyfile, threads=threads, allow_loose_users_file=allow_loose_users_file,
               spool_max_age=spool_max_age, audit_log=audit_log)


# ------------------------------------------------------------------------------------------ errors
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``boxfs`` script; returns the exit code (0 ok, 1 failed, 2 usage)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # What the imports made lives as long as the process: set it aside from the garbage collector, whose
    # full passes (during the run and several at interpreter exit) would otherwise walk it each time.
    # A one-shot command such as a no-op `boxfs sync` spent 0.1 s of its 0.6 s doing that.
    gc.freeze()
    try:
        result = cli.main(args=args, prog_name="boxfs", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("boxfs: interrupted", err=True)
        return 130
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"boxfs: usage error: {' '.join(exc.format_message().split())}{hint}", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"boxfs: error: {exc.format_message()}", err=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        click.echo("boxfs: interrupted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_FAILED
    except BrokenPipeError:
        # `boxfs cat x | head`: the reader went away; that is not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at interpreter exit
        except OSError:
            pass
        return EXIT_OK
    except Exception as exc:
        from boxfs.config import BoxConfigError

        if _debug:
            traceback.print_exc()
        click.echo(f"boxfs: error: {describe(exc)}", err=True)
        return EXIT_USAGE if isinstance(exc, BoxConfigError) else exit_status_of(exc)
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
