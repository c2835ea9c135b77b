#!/usr/bin/env bash
# The whole check, as CI runs it (`make test`, after scripts/setup.sh). Run as root.
#
#   1. lint (scripts/lint.sh)
#   2. the whole pytest suite as the unprivileged test user, from the world-readable copy
#   3. the whole suite again as root (ringfence then drops the payload to nobody; tests that only
#      make sense unprivileged skip themselves through the `unprivileged` fixture)
#   4. after each run: nothing of a sandbox may be left on the host (scripts/leakcheck.sh)
#
# Every step runs even when an earlier one failed, so one CI log shows everything; the exit status
# is non-zero if any step failed. pytest's "no tests ran" (exit 5) is a failure. A run that hangs
# is stopped after RF_SUITE_TIMEOUT seconds; a single test that takes more than 5 minutes has the
# stacks of all threads dumped (pytest's faulthandler_timeout) so the log names it.
#
# Environment: TESTS (paths, default "tests"), PYTEST_ARGS (extra pytest arguments, e.g.
# "-k vault" or "-x"),
# RF_SUITE_TIMEOUT (default 1500 s per run), RF_LEAK_CHECK=0 to skip step 4, RF_LEAK_STRICT=1
# to count leftovers as a failure outside CI (they always are when CI is set),
# RF_TEST_AS="user root" (which runs to do).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CI_DIR=${RF_CI_DIR:-/opt/ringfence-ci}
TEST_USER=${RF_TEST_USER:-rftest}
SRC=$CI_DIR/src
VENV=$CI_DIR/venv
LOGS=$CI_DIR/logs
SUITE_TIMEOUT=${RF_SUITE_TIMEOUT:-1500}
read -r -a EXTRA <<<"${PYTEST_ARGS:-}"
read -r -a TEST_PATHS <<<"${TESTS:-tests}"
# Leftovers fail the run in CI, where nothing else runs. On a shared development machine other
# people's processes and temp files show up too, so there they are only listed.
LEAK_STRICT=${RF_LEAK_STRICT:-$([[ -n ${CI:-} ]] && echo 1 || echo 0)}

[[ $(id -u) -eq 0 ]] || { echo "test: run as root (CI does): sudo make test" >&2; exit 2; }
[[ -x $VENV/bin/python && -d $SRC/tests ]] || { echo "test: run 'make setup' first" >&2; exit 2; }
install -d -m 0755 "$LOGS"

# A clean, fixed environment: what a fresh login would have, plus CI's own flag.
SYS_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
base_env=(PATH="$SYS_PATH" LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1)
[[ -n ${CI:-} ]] && base_env+=(CI="$CI")

failures=()
totals=(0 0 0)  # passed failed skipped
lines=()

count() {  # count WORD LOGFILE -> the number before WORD on pytest's closing line
    local n
    n=$(tail -n 3 "$2" | grep -oE "[0-9]+ $1" | tail -n 1 | cut -d' ' -f1 || true)
    echo "${n:-0}"
}

suite() {  # suite NAME CMD... : run the pytest suite through CMD, record its outcome
    local name=$1 log=$LOGS/pytest-$1.log rc=0 snap=$LOGS/leak-$1
    shift
    echo
    echo "=== pytest as $name: $VENV/bin/python -m pytest ${TEST_PATHS[*]} ${EXTRA[*]} (from $SRC)"
    rm -rf "$snap"
    [[ ${RF_LEAK_CHECK:-1} == 0 ]] || bash "$REPO/scripts/leakcheck.sh" snapshot "$snap"
    (
        cd "$SRC"
        timeout --kill-after=30 "$SUITE_TIMEOUT" "$@" \
            "$VENV/bin/python" -m pytest -p no:cacheprovider -o faulthandler_timeout=300 --continue-on-collection-errors \
            -q "${TEST_PATHS[@]}" "${EXTRA[@]}" </dev/null 2>&1
    ) | tee "$log" || rc=$?

    local passed failed errors skipped
    passed=$(count passed "$log")
    failed=$(count failed "$log")
    errors=$(count 'errors?' "$log")
    skipped=$(count skipped "$log")
    totals[0]=$((totals[0] + passed))
    totals[1]=$((totals[1] + failed + errors))
    totals[2]=$((totals[2] + skipped))
    local what="$passed passed, $((failed + errors)) failed, $skipped skipped"
    case $rc in
    0) ;;
    5) what="NO TESTS RAN (pytest exit 5)" ;;
    124 | 137) what="TIMED OUT after ${SUITE_TIMEOUT}s ($what before that)" ;;
    *) what="$what (pytest exit $rc)" ;;
    esac
    ((rc == 0)) || failures+=("pytest as $name")
    lines+=("$(printf '%-24s %s' "pytest as $name:" "$what")")

    if [[ ${RF_LEAK_CHECK:-1} != 0 ]]; then
        if bash "$REPO/scripts/leakcheck.sh" compare "$snap"; then
            lines+=("$(printf '%-24s %s' "leaks after $name:" none)")
        elif [[ $LEAK_STRICT == 1 ]]; then
            failures+=("leaks after $name run")
            lines+=("$(printf '%-24s %s' "leaks after $name:" "LEFT BEHIND (see above)")")
        else
            lines+=("$(printf '%-24s %s' "leaks after $name:" \
                "something new on the host (see above); not counted outside CI")")
        fi
        rm -rf "$snap"
    fi
}

echo "=== lint"
if bash "$REPO/scripts/lint.sh"; then
    lines+=("$(printf '%-24s %s' lint: ok)")
else
    failures+=(lint)
    lines+=("$(printf '%-24s %s' lint: "FAILED (see above)")")
fi

for who in ${RF_TEST_AS:-user root}; do
    case $who in
    user)
        home=$(getent passwd "$TEST_USER" | cut -d: -f6)
        suite "$TEST_USER" runuser -u "$TEST_USER" -- env -i "${base_env[@]}" \
            HOME="$home" USER="$TEST_USER" LOGNAME="$TEST_USER"
        ;;
    root)
        suite root env -i "${base_env[@]}" HOME=/root USER=root LOGNAME=root
        ;;
    *) echo "test: unknown RF_TEST_AS entry '$who' (use user and/or root)" >&2; exit 2 ;;
    esac
done

echo
echo "=== summary (logs in $LOGS)"
printf '  %s\n' "${lines[@]}"
if ((${#failures[@]})); then
    echo "make test: FAILED: $(IFS=,; echo "${failures[*]}" | sed 's/,/, /g')"
    status=1
else
    echo "make test: OK"
    status=0
fi
echo "summary: ${totals[0]} passed, ${totals[1]} failed, ${totals[2]} skipped"
exit "$status"
