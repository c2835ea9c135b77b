#!/usr/bin/env bash
# scripts/locked.sh [SCRIPT ARGS...]: run scripts/setup.sh, then scripts/SCRIPT, while holding
# $RF_CI_DIR.lock. Every set-up replaces the copy of the tree in $RF_CI_DIR, so two runs at once
# on one machine (developers sharing a VM) would pull it from under each other; the second waits.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lock=${RF_CI_DIR:-/opt/ringfence-ci}.lock

[[ $(id -u) -eq 0 ]] || { echo "make: run as root (it installs packages and switches users): sudo make ..." >&2; exit 2; }
exec 9>>"$lock"
if ! flock -n 9; then
    echo "waiting for another make setup/test/demo/bench on this machine to finish ($lock)"
    flock 9
fi
# The children do not inherit the lock's fd (it would show up in fd tests); it stays held here.
bash "$here/setup.sh" 9>&-
if (($#)); then
    script=$1
    shift
    bash "$here/$script" "$@" 9>&-
fi
