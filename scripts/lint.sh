#!/usr/bin/env bash
# Lint the checkout this script lives in: ruff check and ruff format --check (rules in
# pyproject.toml; ruff also formats the Python blocks of Markdown files) and mypy --strict on the
# package. Uses the CI venv made by scripts/setup.sh unless RF_VENV names another one.
# `ruff format FILES` fixes what the format check reports.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CI_DIR=${RF_CI_DIR:-/opt/ringfence-ci}
VENV=${RF_VENV:-$CI_DIR/venv}
CACHE=${RF_LINT_CACHE:-$CI_DIR/cache}

[[ -x $VENV/bin/ruff && -x $VENV/bin/mypy ]] || {
    echo "lint: no ruff/mypy in $VENV: run 'make setup' (as root) or set RF_VENV" >&2
    exit 2
}
cd "$REPO"
mkdir -p "$CACHE" 2>/dev/null || CACHE=$(mktemp -d)

status=0
echo "lint: ruff check ."
RUFF_CACHE_DIR=$CACHE/ruff "$VENV/bin/ruff" check --quiet . || status=1
echo "lint: ruff format --check ."
RUFF_CACHE_DIR=$CACHE/ruff "$VENV/bin/ruff" format --check --quiet . || status=1
# pyproject.toml sets warn_unused_ignores = false; --strict on the command line would turn it
# back on, so restate the project's choice.
echo "lint: mypy --strict ringfence"
"$VENV/bin/mypy" --strict --no-warn-unused-ignores --cache-dir "$CACHE/mypy" ringfence || status=1

if ((status)); then
    echo "lint: FAILED" >&2
else
    echo "lint: ok"
fi
exit "$status"
