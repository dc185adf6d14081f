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

   * a Box emulator of its own (not the session one), started as the docs say, with
     ``eval "$(boxfs emulator --env)"`` (a subprocess; ``--stop`` ends it): the users ``alice@example.com``
     ("Alice") and ``bob@example.com`` ("Bob"), and a JWT app with App + Enterprise access, the as-user
     header feature and the scopes ``root_readwrite`` + ``manage_managed_users``;
   * the variables it exports: ``BOXFS_JWT_CONFIG`` = the path of that app's JSON config,
     ``BOXFS_AS_USER`` = ``alice@example.com``, ``BOXFS_BASE_URL`` = the emulator's URL. So
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
5. Shell blocks (``sh``, ``bash``, ``shell``, ``console``) are not run unless ``<!-- run -->`` is on the
   last non-blank line before the fence: such a block runs with ``bash -euo pipefail`` in an empty
   temporary folder holding ``.venv`` (this interpreter's virtualenv), with no ``BOXFS_*`` variable set,
   and must exit 0 (it starts and stops its own emulator: ``eval "$(boxfs emulator --env ...)"``). Every
   ``boxfs ...`` command line in any shell block is parsed by the real CLI (``boxfs.cli``): an unknown command or option, or a global
   option (``--config``, ``--as-user``, ``--base-url``, ``--json``...) placed after the command, fails.
   ``[optional]`` brackets are read as present; a missing required value is accepted (it may come from
   an environment variable); ``&`` and redirections end the command.
6. Relative links (``[text](other.md)``) must point at files that exist.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from boxfs.emulator import samples

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
SKIP_MARK = "<!-- no-test -->"
RUN_MARK = "<!-- run -->"
SHELL_LANGS = ("sh", "bash", "shell", "console")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\s`]*)[^\n]*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skipped: bool
    run: bool = False  # a shell block marked to be executed (convention 5)


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
        blocks.append(Block(path, start + 1, m.group("info").lower(), "\n".join(body) + "\n", prev == SKIP_MARK,
                            prev == RUN_MARK))
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
def parse_exports(text: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of ``boxfs emulator --env``, as the shell's ``eval`` would set them."""
    env = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            for word in words[1:]:
                name, _, value = word.partition("=")
                env[name] = value
    return env


def emulator_command(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``boxfs emulator ARGS`` as a shell user would; its stdout (the lines to eval)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    done = subprocess.run([sys.executable, "-m", "boxfs", "emulator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**base, **(env or {})})
    assert done.returncode == 0, f"boxfs emulator {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def docs_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Convention 3's emulator, started the documented way: ``eval "$(boxfs emulator --env)"``."""
    home = tmp_path_factory.mktemp("docs-config")
    exports = parse_exports(emulator_command("--env", "--port", "0", cwd=home))
    assert set(exports) == {"BOXFS_BASE_URL", "BOXFS_JWT_CONFIG", "BOXFS_AS_USER", "BOXFS_EMULATOR_PID"}
    assert exports["BOXFS_JWT_CONFIG"] == str(home / "config.json")
    try:
        yield {**exports, "config": (home / "config.json").read_text()}
    finally:
        unset = emulator_command("--stop", cwd=home, env={"BOXFS_EMULATOR_PID": exports["BOXFS_EMULATOR_PID"]})
        assert unset.startswith("unset BOXFS_")


def seed_reports(config: str, emu_url: str) -> None:
    """(Re)write alice's ``reports/`` seed files, so one doc's writes never change what the next one reads."""
    from boxfs import BoxFileSystem

    fs = BoxFileSystem(config, as_user="alice@example.com", base_urls={"base_url": emu_url},
                       skip_instance_cache=True)
    fs.pipe({"reports/q3.csv": samples.Q3_CSV.encode(), "reports/notes.txt": samples.NOTES.encode()})
    parquet = samples.q3_parquet()  # None without pyarrow: parquet examples will say so
    if parquet is not None:
        fs.pipe("reports/q3.parquet", parquet)


@pytest.fixture
def docs_env(docs_setup: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # the documented defaults, the change watcher included (conftest turns it off for the other tests)
    for name in ("BOXFS_TOKEN", "BOXFS_CLIENT_ID", "BOXFS_CLIENT_SECRET", "BOXFS_ENTERPRISE_ID",
                 "BOXFS_WATCH_EVENTS"):
        monkeypatch.delenv(name, raising=False)
    for name in ("BOXFS_JWT_CONFIG", "BOXFS_AS_USER", "BOXFS_BASE_URL", "BOXFS_EMULATOR_PID"):
        monkeypatch.setenv(name, docs_setup[name])
    for name in ("config.json", "app.json"):
        (tmp_path / name).write_text(docs_setup["config"])
    monkeypatch.chdir(tmp_path)
    seed_reports(docs_setup["config"], docs_setup["BOXFS_BASE_URL"])
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


RUN_BLOCKS = [b for doc in DOC_FILES for b in code_blocks(doc) if b.run and b.lang in SHELL_LANGS]


def test_readme_has_a_shell_block_that_runs() -> None:
    assert any(b.path.name == "README.md" for b in RUN_BLOCKS)


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: f"{b.path.relative_to(ROOT)}:{b.line}")
def test_marked_shell_blocks_run(block: Block, tmp_path: Path) -> None:
    """A ``<!-- run -->`` shell block runs verbatim, as a reader would paste it (convention 5)."""
    (tmp_path / ".venv").symlink_to(sys.prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXFS_")}
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # if the block fails halfway, its background emulator must not outlive the test
    guard = 'trap \'[ -n "${BOXFS_EMULATOR_PID:-}" ] && kill "$BOXFS_EMULATOR_PID"\' EXIT\n'
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", guard + block.code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (f"the shell block at {block.path.relative_to(ROOT)}:{block.line} exited "
                                  f"{done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}")


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
        if block.lang not in SHELL_LANGS:
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


# ------------------------------------------------------------------------------------------ the benchmark plot
def _plot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "plot_benchmarks.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_performance_picture_is_drawn_from_the_doc_table(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    done = _plot("--from-doc", str(ROOT / "docs" / "performance.md"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    # the rows of the first results table (header "| Workload | Tool | ..."), not of the doc's other tables
    tables = [t.split("\n\n", 1)[0] for t in (ROOT / "docs" / "performance.md").read_text().split("| Workload | Tool |")[1:2]]
    rows = sum(1 for t in tables for line in t.splitlines()
               if re.match(r"^\| [^|]+ \| (boxfs|sdk|ibm-boxfs|rclone) \|", line))
    assert f"{rows} results plotted" in done.stderr and rows >= 20  # two tools or more, every workload
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "images/performance.png" in (ROOT / "docs" / "performance.md").read_text()
    assert (ROOT / "docs" / "images" / "performance.png").is_file()


def test_performance_picture_is_drawn_from_a_benchmarks_json(tmp_path: Path) -> None:
    """The JSON that ``python -m benchmarks`` writes (its own Row type), failures included."""
    pytest.importorskip("matplotlib")
    import json
    from dataclasses import asdict

    from benchmarks.run import Row

    rows = [Row("ls-wide", "ls of a folder", "boxfs", "ok", 1.0, "", 12, 1, 70.0),
            Row("ls-wide", "ls of a folder", "sdk", "failed", None, "", 3, 1, 50.0, "boom")]
    results = tmp_path / "results-tiny-1.json"
    results.write_text(json.dumps({"header": "x", "scale": "tiny", "rows": [asdict(r) for r in rows]}))
    out = tmp_path / "p.png"
    done = _plot("--json", str(results), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 results plotted" in done.stderr and out.read_bytes()[:4] == b"\x89PNG"
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    refused = _plot("--json", str(bad), "--out", str(out))
    assert refused.returncode != 0 and "not a benchmarks results file" in refused.stderr
