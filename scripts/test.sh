#!/usr/bin/env bash
# Install everything from nothing, then lint, build the documentation site (a warning fails it), and run
# the whole test suite against the embedded Box emulator, two tests at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check boxfs tests benchmarks
.venv/bin/lint-imports --no-cache  # the layer contracts in pyproject.toml ([tool.importlinter])
site=$(mktemp -d "${TMPDIR:-/tmp}/boxfs-site-XXXXXX")
trap 'rm -rf "$site"' EXIT
.venv/bin/mkdocs build --strict --quiet --site-dir "$site"
# Two test processes (pytest-xdist; BOXFS_TEST_WORKERS to change): one process leaves a core idle while its
# tests wait on HTTP, FUSE, servers and subprocesses. Each process has its own session emulator; a file's tests stay
# in one process, in order (--dist loadfile).
.venv/bin/python -m pytest -q -n "${BOXFS_TEST_WORKERS:-2}" --dist loadfile "$@"
