#!/usr/bin/env bash
# Install everything from nothing, then lint, build the documentation site (a warning fails it), and run
# the whole test suite against the embedded Box emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check boxfs tests benchmarks
.venv/bin/lint-imports --no-cache  # the layer contracts in pyproject.toml ([tool.importlinter])
site=$(mktemp -d "${TMPDIR:-/tmp}/boxfs-site-XXXXXX")
trap 'rm -rf "$site"' EXIT
.venv/bin/mkdocs build --strict --quiet --site-dir "$site"
.venv/bin/python -m pytest -q "$@"
