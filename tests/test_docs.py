"""The documentation's Python examples run, unchanged, against a Box emulator.

CONVENTIONS FOR EVERY WRITER OF README.md AND docs/*.md (read before adding a ```python block)

1. Every fenced block whose info string is ``python`` (or ``py``) is executed; ``sh``/``bash``/``toml``/
   ``json``/``text`` blocks are not. A file's blocks run in order, in one shared namespace (a later block
   may use names an earlier block defined), as ``exec`` in the test process. One test per file.
2. To keep a block from running, put ``<!-- no-test -->`` on the last non-blank line before its opening
   fence. Use it only when a block cannot run here: it needs real Box (box.com is unreachable), a
   browser, a signature listing that is not valid Python, or runs forever (``run_ftp(...)``). Prefer a
   runnable example; a reader can then trust it.
3. The environment each file's blocks see (so that examples read like real use, with no emulator code):

   * a Box emulator of its own (not the session one), with the users ``alice@example.com`` ("Alice")
     and ``bob@example.com`` ("Bob"), and a JWT app with App + Enterprise access, the as-user header
     feature and the scopes ``root_readwrite`` + ``manage_managed_users``;
   * ``BOXFS_JWT_CONFIG`` = the path of that app's JSON config, ``BOXFS_AS_USER`` =
     ``alice@example.com``, ``BOXFS_BASE_URL`` = the emulator's URL. So
     ``fsspec.filesystem("box")``, ``BoxFileSystem()`` and ``pd.read_csv("box://...")`` work with no
     arguments, and explicit ``jwt_config=...`` forms work too because ``BOXFS_BASE_URL`` still applies;
   * the working directory is a fresh temporary folder holding ``config.json`` and ``app.json`` (both
     that JWT config: the names the docs use for the developer-console download);
   * alice's Box holds ``reports/q3.csv`` and ``reports/q3.parquet`` (columns ``region``, ``revenue``;
     4 rows) and ``reports/notes.txt`` (text), rewritten before each file. Anything else a block needs
     it must create itself;
   * the filesystem instance cache is cleared before each file.
4. A block must finish in a few seconds and clean up what it starts (servers, mounts, threads): use
   ``with`` or ``try/finally``. Assertions in examples are welcome: they are what makes a doc tested.
5. Shell blocks (``sh``, ``bash``, ``shell``, ``console``) are not run, but every ``boxfs ...`` command
   line in them is parsed by the real CLI (``boxfs.cli``): an unknown command or option, or a global
   option (``--config``, ``--as-user``, ``--base-url``, ``--json``...) placed after the command, fails.
   ``[optional]`` brackets are read as present; a missing required value is accepted (it may come from
   an environment variable); ``&`` and redirections end the command.
6. Relative links (``[text](other.md)``) must point at files that exist.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import admin_app

from boxfs.emulator import BoxEmulator

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SKIP_MARK = "<!-- no-test -->"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\s`]*)[^\n]*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skipped: bool


def code_blocks(path: Path) -> list[Block]:
    """All fenced code blocks of a Markdown file, with their language and skip mark."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent"))
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                      and lines[i].strip().strip(fence[0]) == ""):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        i += 1  # the closing fence
        prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        blocks.append(Block(path, start + 1, m.group("info").lower(), "\n".join(body) + "\n", prev == SKIP_MARK))
    return blocks


def python_blocks(path: Path) -> list[Block]:
    return [b for b in code_blocks(path) if b.lang in ("python", "py", "python3")]


# ------------------------------------------------------------------------------------------ the parser
def test_parser_finds_blocks_and_skip_marks(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n```python\na = 1\n```\n\n<!-- no-test -->\n\n```python\nraise SystemExit\n```\n"
        "```sh\necho hi\n```\n- item\n  ```python\n  b = a + 1\n  ```\n"
    )
    blocks = code_blocks(doc)
    assert [(b.lang, b.line, b.skipped) for b in blocks] == [
        ("python", 2, False), ("python", 8, True), ("sh", 11, False), ("python", 15, False)]
    assert blocks[3].code == "b = a + 1\n"  # list-indented block, dedented


# ------------------------------------------------------------------------------------------ environment
@pytest.fixture(scope="module")
def docs_emulator() -> Iterator[BoxEmulator]:
    with BoxEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def docs_setup(docs_emulator: BoxEmulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The app and users of convention 3 (created once per module)."""
    emu = docs_emulator
    config = admin_app(emu)
    emu.create_user("alice@example.com", name="Alice")
    emu.create_user("bob@example.com", name="Bob")
    home = tmp_path_factory.mktemp("docs-config")
    (home / "config.json").write_text(config)
    return {"config": config, "config_path": str(home / "config.json"), "url": emu.url}


def seed_reports(config: str, emu_url: str) -> None:
    """(Re)write alice's ``reports/`` seed files, so one doc's writes never change what the next one reads."""
    from boxfs import BoxFileSystem

    fs = BoxFileSystem(config, as_user="alice@example.com", base_urls={"base_url": emu_url},
                       skip_instance_cache=True)
    csv = "region,revenue\nnorth,120.5\nsouth,98.0\neast,143.25\nwest,77.0\n"
    fs.pipe({"reports/q3.csv": csv.encode(), "reports/notes.txt": b"Q3 numbers are preliminary.\n"})
    try:
        import pandas as pd

        buf = io.BytesIO()
        pd.read_csv(io.StringIO(csv)).to_parquet(buf, index=False)
        fs.pipe("reports/q3.parquet", buf.getvalue())
    except ImportError:  # the data extra is not installed: parquet examples will say so
        pass


@pytest.fixture
def docs_env(docs_setup: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("BOXFS_TOKEN", "BOXFS_CLIENT_ID", "BOXFS_CLIENT_SECRET", "BOXFS_ENTERPRISE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOXFS_JWT_CONFIG", docs_setup["config_path"])
    monkeypatch.setenv("BOXFS_AS_USER", "alice@example.com")
    monkeypatch.setenv("BOXFS_BASE_URL", docs_setup["url"])
    for name in ("config.json", "app.json"):
        (tmp_path / name).write_text(docs_setup["config"])
    monkeypatch.chdir(tmp_path)
    seed_reports(docs_setup["config"], docs_setup["url"])
    from boxfs import BoxFileSystem

    BoxFileSystem.clear_instance_cache()
    return tmp_path


# ------------------------------------------------------------------------------------------ the docs
def test_doc_files_are_found() -> None:
    names = {p.name for p in DOC_FILES}
    assert {"README.md", "emulator.md"} <= names


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(doc: Path, docs_env: Path) -> None:
    blocks = python_blocks(doc)
    runnable = [b for b in blocks if not b.skipped]
    if not runnable:
        pytest.skip(f"{doc.name}: no runnable python block ({len(blocks)} marked no-test)")
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in runnable:
        where = f"{doc.relative_to(ROOT)}:{block.line}"
        try:
            code = compile(block.code, where, "exec")
            exec(code, namespace)
        except BaseException as exc:  # noqa: BLE001 - reported with the block's location
            if isinstance(exc, KeyboardInterrupt):
                raise
            pytest.fail(f"the python block at {where} failed: {type(exc).__name__}: {exc}\n"
                        f"(mark it with {SKIP_MARK} if it cannot run against the emulator)", pytrace=True)


_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links inside code are not links
    broken = []
    for m in _LINK.finditer(text):
        target = m.group("target").split("#", 1)[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        if not (doc.parent / target).exists():
            broken.append(m.group("target"))
    assert not broken, f"{doc.name}: links to missing files: {broken}"


def _boxfs_invocations(doc: Path) -> list[tuple[int, list[str]]]:
    """``boxfs ...`` command lines in a file's shell blocks (continuations joined, comments dropped)."""
    import shlex

    found = []
    for block in code_blocks(doc):
        if block.lang not in ("sh", "bash", "shell", "console"):
            continue
        text = block.code.replace("\\\n", " ")
        for offset, line in enumerate(text.splitlines()):
            for part in re.split(r"\s*(?:;|&&|\|\|?)\s*", line.split(" #", 1)[0].strip().removeprefix("$ ")):
                if part.startswith("boxfs "):
                    try:
                        words = shlex.split(part)[1:]
                    except ValueError:
                        continue
                    # the command ends where the shell takes over: `&`, redirections
                    cut = next((i for i, w in enumerate(words) if w == "&" or re.match(r"^\d*[<>]", w)), len(words))
                    found.append((block.line + 1 + offset, words[:cut]))
    return found


def _check_invocation(args: list[str]) -> str | None:
    """Parse a documented ``boxfs`` command line with the real CLI; the problem found, or None.

    ``[optional]`` brackets are read as present. A missing required value is accepted (docs may rely on
    an environment variable); an unknown command or option, or a misplaced global option, is not.
    """
    import click

    from boxfs.cli import cli

    args = [a.strip("[]") for a in args if a.strip("[]")]
    try:
        ctx = cli.make_context("boxfs", list(args))
        command: click.Command = cli
        while isinstance(command, click.Group):
            with warnings.catch_warnings():  # click 8.2 deprecates protected_args (merged into args in 9)
                warnings.simplefilter("ignore", DeprecationWarning)
                rest = [*ctx.protected_args, *ctx.args]
            if not rest:
                return None
            sub = command.get_command(ctx, rest[0])
            if sub is None:
                return f"no command {rest[0]!r}"
            if sub.name == "emulator":  # its options belong to the emulator's own parser
                return None
            ctx = sub.make_context(rest[0], rest[1:], parent=ctx)
            command = sub
    except click.MissingParameter:
        return None
    except click.exceptions.Exit:
        return None
    except click.UsageError as exc:
        return exc.format_message()
    return None


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_boxfs_commands_in_docs_parse(doc: Path) -> None:
    """Every ``boxfs ...`` line of a shell example is accepted by the CLI's parser (docs follow the CLI)."""
    wrong = []
    for line, args in _boxfs_invocations(doc):
        problem = _check_invocation(args)
        if problem:
            wrong.append(f"line {line}: boxfs {' '.join(args)}: {problem}")
    assert not wrong, f"{doc.name} shows command lines the CLI refuses:\n" + "\n".join(wrong)
