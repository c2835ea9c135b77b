#!/usr/bin/env bash
# Prepare a Debian 12 machine to build, test and demo ringfence. Run as root; idempotent.
#
#   1. Debian packages (skipped when every one is already installed)
#   2. /dev/fuse and /dev/net/tun usable by a normal user (they are 0600 on some VMs)
#   3. the unprivileged user the tests and the demo run as
#   4. a world-readable copy of this checkout (CI clones may live under /root, which a normal
#      user cannot enter) and a venv that has it installed in editable mode
#
# Re-running is cheap: apt is skipped, the venv is reused while pyproject.toml and the pins below
# are unchanged; only the copy of the tree is refreshed.
#
# Environment: RF_CI_DIR (default /opt/ringfence-ci), RF_TEST_USER (default rftest).
set -euo pipefail

# Debian packages ringfence needs at run time, plus what the tests and benchmarks cross-check
# against (bubblewrap, hyperfine); file, gcc and libc6-dev are for the ELF-closure tests, which
# build small programs; xvfb and xserver-xephyr are the nested displays of `--display`, x11-utils
# (xdpyinfo, xwininfo) and x11-xserver-utils (xset) what the display tests look through.
# Add to this list; keep it in one place.
PACKAGES=(
    python3 python3-venv
    bubblewrap
    gocryptfs fuse3
    passt slirp4netns
    libseccomp2
    iproute2 openssl procps util-linux
    hyperfine
    file gcc libc6-dev
    xvfb xserver-xephyr xauth x11-utils x11-xserver-utils
)

# Test and lint tools, pinned so that a new release on PyPI cannot break CI overnight.
# Keep in step with the developers' .venv (`.venv/bin/pip list`).
TOOL_PINS=(
    "pytest==9.2.0"
    "ruff==0.17.6"
    "mypy==2.4.1"
)

CI_DIR=${RF_CI_DIR:-/opt/ringfence-ci}
TEST_USER=${RF_TEST_USER:-rftest}
SRC_DIR=$CI_DIR/src
VENV=$CI_DIR/venv
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs Debian packages and creates a user): sudo make setup"
[[ -f $REPO/pyproject.toml ]] || die "$REPO does not look like the ringfence checkout (no pyproject.toml)"
umask 022

# --- 1. Debian packages -------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${PACKAGES[@]}" </dev/null
else
    say "Debian packages: all ${#PACKAGES[@]} installed"
fi

# --- 2. devices a normal user needs (FUSE for vaults, TUN for --net user) -----------------------
for dev in /dev/fuse /dev/net/tun; do
    if [[ -c $dev ]]; then
        chmod 0666 "$dev"
    else
        say "warning: $dev is missing: vault or --net user tests will fail or skip"
    fi
done

# --- 3. the unprivileged user -------------------------------------------------------------------
if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    say "creating user $TEST_USER"
    useradd -m -s /bin/bash "$TEST_USER"
fi
TEST_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
if [[ ! -d $TEST_HOME ]]; then
    install -d -o "$TEST_USER" -g "$(id -g "$TEST_USER")" -m 0755 "$TEST_HOME"
fi
# ringfence needs unprivileged user namespaces; say so plainly rather than fail 200 tests.
if ! runuser -u "$TEST_USER" -- unshare --user --map-root-user true 2>/dev/null; then
    die "user $TEST_USER cannot create a user namespace (check sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)"
fi

# --- 4. world-readable copy of the tree and its venv --------------------------------------------
install -d -m 0755 "$CI_DIR"
if [[ $REPO != "$SRC_DIR" ]]; then
    # A fresh copy each time so that files deleted in the checkout disappear here too. tar keeps
    # mtimes, so mypy's cache stays valid; the package is recompiled below (well under a second).
    staging=$CI_DIR/src.new
    rm -rf "$staging"
    mkdir -m 0755 "$staging"
    tar -C "$REPO" -cf - \
        --exclude=./.git --exclude=./.venv --exclude='__pycache__' --exclude='*.pyc' \
        --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache \
        --exclude='*.egg-info' --exclude=./build --exclude=./dist . |
        tar -C "$staging" --no-same-owner -xf -
    chmod -R a+rX,go-w "$staging"
    rm -rf "$SRC_DIR"
    mv "$staging" "$SRC_DIR"
fi

# "compat" editable mode puts the source directory on sys.path with a plain .pth line; the default
# mode installs an import hook whose own imports (pathlib, importlib.util, re...) cost every
# ringfence start 5-8 ms, which would skew `make bench`.
EDITABLE_MODE=compat
want_stamp=$( (cat "$SRC_DIR/pyproject.toml"; printf '%s\n' "${TOOL_PINS[@]}" "$EDITABLE_MODE"
    /usr/bin/python3 -VV) | sha256sum | cut -d' ' -f1)
have_stamp=$(cat "$VENV/.ringfence-stamp" 2>/dev/null || true)
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating venv $VENV"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
    have_stamp=
fi
if [[ $want_stamp != "$have_stamp" ]] || ! "$VENV/bin/python" -c 'import ringfence' 2>/dev/null; then
    say "installing ringfence (editable) and test tools into $VENV"
    constraints=$CI_DIR/constraints.txt
    printf '%s\n' "${TOOL_PINS[@]}" >"$constraints"
    # (the filter drops pip's complaints about this machine's optional local indexes)
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q \
        -c "$constraints" --config-settings editable_mode="$EDITABLE_MODE" \
        -e "$SRC_DIR[test]" </dev/null \
        2> >(grep -v "^WARNING: Location 'file:" >&2)
    printf '%s\n' "$want_stamp" >"$VENV/.ringfence-stamp"
else
    say "venv $VENV is up to date"
fi
# pip's editable install leaves build metadata in the tree; keep the copy as clean as the checkout.
rm -rf "$SRC_DIR"/*.egg-info
"$VENV/bin/python" -m compileall -q "$SRC_DIR/ringfence" >/dev/null
chmod -R a+rX,go-w "$CI_DIR"

say "ready: $SRC_DIR (copy of $REPO), $VENV, user $TEST_USER"
