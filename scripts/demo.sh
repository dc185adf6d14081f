#!/usr/bin/env bash
# Install only what the demo needs (boxfs with the `demo` extra: pandas and pyarrow; no apt, no test or
# server packages), then run it against the embedded Box emulator: no Box account needed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
need_python
make_venv
if [ ! -f .venv/.boxfs-installed ] || [ pyproject.toml -nt .venv/.boxfs-installed ]; then
    install_extras demo .venv/.boxfs-demo-installed   # a full setup.sh install has the demo extra too
fi
exec .venv/bin/python -m boxfs.demo "$@"
