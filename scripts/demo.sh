#!/usr/bin/env bash
# Install, then run the demo against the embedded Box emulator (no Box account needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m boxfs.demo "$@"
