#!/usr/bin/env bash
# Prepare a fresh machine for the tests: Debian packages the mount tests use, then a virtualenv with
# boxfs and every extra. Safe to run again: each step is skipped when already done. (The demo needs none
# of this: scripts/demo.sh installs only its own extra.)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
command -v rclone >/dev/null 2>&1 || need_apt+=(rclone)
# the server tests drive real clients: lftp and curl (FTP), OpenSSH sftp
command -v lftp >/dev/null 2>&1 || need_apt+=(lftp)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v sftp >/dev/null 2>&1 || need_apt+=(openssh-client)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${need_apt[*]} with apt-get" >&2
        # Another apt (unattended upgrades, a second setup) may hold the lock: wait for it a while.
        apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq)
        if ! "${apt[@]}" update >/dev/null || ! "${apt[@]}" install -y "${need_apt[@]}" >/dev/null; then
            echo "setup: apt-get could not install ${need_apt[*]} (its message is above; if another apt process" \
                 "holds the lock, let it finish). Run 'apt-get install -y ${need_apt[*]}', then this again." >&2
            exit 1
        fi
    else
        echo "setup: ${need_apt[*]} not installed (needs root + apt-get); the tests that need them will skip" >&2
    fi
fi

. scripts/venv.sh
need_python
make_venv
install_extras all .venv/.boxfs-installed
