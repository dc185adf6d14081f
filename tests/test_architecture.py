"""The layers of docs/architecture.md hold: import-linter's contracts in pyproject.toml pass, and they
would fail on an import cycle, function-level imports included (the kind once used to dodge one).

Cheap (import-linter only parses the sources; about a second each), so it runs with every test run and
not only in ``scripts/test.sh``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; "
                "sys.exit(c())", "--no-cache"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd))  # the boxfs under cwd, not the installed one
    return subprocess.run(LINT_IMPORTS, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_function_level_import_that_closes_a_cycle_is_refused(tmp_path: Path) -> None:
    """The spool folder (the bottom of the upload package) reaching up into the session, inside a function
    as a cycle used to be dodged: both the package's layers and the no-cycle contract break."""
    shutil.copytree(ROOT / "boxfs", tmp_path / "boxfs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "boxfs" / "upload" / "spoolfolder.py", "a", encoding="utf-8") as fh:
        fh.write("\n\ndef _dodge() -> None:\n    from boxfs.upload.session import upload_large  # noqa: F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    out = " ".join(result.stdout.split())
    assert "no import cycle between the client's modules BROKEN" in out
    assert "the upload package: one concern a module, each above the ones it uses BROKEN" in out
