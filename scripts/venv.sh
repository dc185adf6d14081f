# Sourced by setup.sh and demo.sh: a Python 3.10+ virtualenv in .venv with boxfs and the extras asked
# for, each step skipped when already done, and every failure said with what to do about it.

die() {
    echo "$*" >&2
    exit 1
}

# need_python: python3 3.10 or newer, with the venv module
need_python() {
    command -v python3 >/dev/null 2>&1 \
        || die "setup: python3 not found: install Python 3.10 or newer (Debian/Ubuntu: apt-get install python3 python3-venv)"
    python3 -c 'import sys; raise SystemExit(sys.version_info < (3, 10))' \
        || die "setup: $(python3 --version 2>&1) is too old: boxfs needs Python 3.10 or newer"
}

# make_venv: .venv, unless a working one is there
make_venv() {
    [ -x .venv/bin/python ] && .venv/bin/python -c 'import pip' >/dev/null 2>&1 && return 0
    rm -rf .venv
    if ! python3 -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        die "setup: 'python3 -m venv' failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv), then run this again"
    fi
}

# install_extras EXTRAS STAMP: pip install -e ".[EXTRAS]" unless STAMP is newer than pyproject.toml
install_extras() {
    local extras=$1 stamp=$2 log
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
        return 0
    fi
    log=$(mktemp "${TMPDIR:-/tmp}/boxfs-pip-XXXXXX")
    # Before the distribution was renamed box-fsspec it was installed as "boxfs", the name of another
    # project with the same import package: the two must not be installed together.
    if .venv/bin/python -m pip show -q boxfs >/dev/null 2>&1; then
        .venv/bin/python -m pip uninstall -y -q boxfs >/dev/null 2>&1 || true
    fi
    echo "setup: installing box-fsspec[$extras] into .venv (log: $log)" >&2
    if ! .venv/bin/python -m pip install --disable-pip-version-check --no-compile -e ".[$extras]" >"$log" 2>&1; then
        grep -E '^(ERROR|error):' "$log" | tail -n 5 >&2 || tail -n 5 "$log" >&2
        die "setup: pip could not install box-fsspec[$extras] (full log: $log). Check the network and any proxy or index settings (HTTPS_PROXY, PIP_INDEX_URL), then run this again."
    fi
    rm -f "$log"
    touch "$stamp"
}
