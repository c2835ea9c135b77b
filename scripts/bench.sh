#!/usr/bin/env bash
# Run every benchmarks/*.py (files starting with _ are helpers) as the unprivileged test user,
# from the world-readable copy made by scripts/setup.sh. BENCH="startup vault" runs only those;
# BENCH_ARGS are passed to each.
# A benchmark that fails is reported and the others still run; the exit status says if any did.
set -euo pipefail

CI_DIR=${RF_CI_DIR:-/opt/ringfence-ci}
TEST_USER=${RF_TEST_USER:-rftest}
SRC=$CI_DIR/src
VENV=$CI_DIR/venv
read -r -a ARGS <<<"${BENCH_ARGS:-}"

[[ $(id -u) -eq 0 ]] || { echo "bench: run as root (it switches to $TEST_USER): sudo make bench" >&2; exit 2; }
shopt -s nullglob
benches=()
for f in "$SRC"/benchmarks/*.py; do
    name=$(basename "$f" .py)
    [[ $name == _* ]] && continue
    [[ -z ${BENCH:-} || " $BENCH " == *" $name "* ]] && benches+=("$f")
done
if ((${#benches[@]} == 0)); then
    if [[ -n ${BENCH:-} ]]; then
        echo "bench: no benchmarks/{${BENCH// /,}}.py" >&2
        exit 2
    fi
    echo "bench: no benchmarks/*.py yet: nothing to run"
    exit 0
fi

home=$(getent passwd "$TEST_USER" | cut -d: -f6)
failed=()
for f in "${benches[@]}"; do
    echo "=== benchmarks/$(basename "$f") (as $TEST_USER)"
    if ! (cd "$SRC" && runuser -u "$TEST_USER" -- env -i \
        PATH="$VENV/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 \
        HOME="$home" USER="$TEST_USER" LOGNAME="$TEST_USER" \
        "$VENV/bin/python" "$f" "${ARGS[@]}" </dev/null); then
        failed+=("$(basename "$f")")
    fi
done
if ((${#failed[@]})); then
    echo "bench: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "bench: ${#benches[@]} benchmark(s) done"
