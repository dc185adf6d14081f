#!/usr/bin/env bash
# Install everything from nothing, then run the whole test suite against the embedded Box emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check boxfs tests benchmarks
.venv/bin/lint-imports --no-cache  # the layer contracts in pyproject.toml ([tool.importlinter])
exec .venv/bin/python -m pytest -q "$@"
