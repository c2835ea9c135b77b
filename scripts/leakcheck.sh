#!/usr/bin/env bash
# Did a test run leave anything of a sandbox on the host? Run as root.
#
#   scripts/leakcheck.sh snapshot DIR   record processes, mounts and temp entries now
#   scripts/leakcheck.sh compare DIR    list what appeared since (exit 1 if anything did)
#
# Watched: processes of the test user, of nobody (root runs drop payloads to it) and any process
# of ringfence's helpers (gocryptfs, slirp4netns, pasta); mount points in the host's mount
# namespace; entries in /tmp, /var/tmp and /dev/shm other than pytest's own base directories and
# ringfence's per-user runtime directories (whose sessions/ entries are watched instead).
# On a shared machine something another person started can show up here too: the listing says
# what it is, so it can be judged.
set -euo pipefail

TEST_USER=${RF_TEST_USER:-rftest}
mode=${1:?usage: leakcheck.sh snapshot|compare DIR}
dir=${2:?usage: leakcheck.sh snapshot|compare DIR}

processes() {
    local uid
    uid=$(id -u "$TEST_USER" 2>/dev/null || echo -1)
    # "pid uid comm args", sorted as text for join
    ps -e -o pid=,uid=,comm=,args= | awk -v uid="$uid" '
        $2 == uid || $2 == 65534 || $3 ~ /^(gocryptfs|slirp4netns|pasta|passt)/ { $1 = $1; print }
    ' | sort -k1,1
}

mounts() { awk '{print $5}' /proc/self/mountinfo | sort -u; }

temps() {
    local d
    {
        for d in /tmp /var/tmp /dev/shm; do
            find "$d" -mindepth 1 -maxdepth 1 ! -name 'pytest-of-*' ! -name 'ringfence-[0-9]*' \
                -print 2>/dev/null || true
        done
        # /tmp/ringfence-UID is ringfence's per-user runtime directory (when there is no
        # XDG_RUNTIME_DIR) and stays, with its cache and vault lock files; a session that is
        # still registered there after the run is a leftover.
        find /tmp/ringfence-[0-9]*/sessions -mindepth 1 -maxdepth 1 -print 2>/dev/null || true
    } | sort
}

snapshot() {
    processes >"$1/processes"
    mounts >"$1/mounts"
    temps >"$1/temps"
}

new_lines() { comm -13 "$1" "$2"; }

case $mode in
snapshot)
    mkdir -p "$dir"
    snapshot "$dir"
    ;;
compare)
    now=$dir/now
    mkdir -p "$now"
    # Sandboxes torn down at the very end of a run may still be exiting: give them a moment.
    for _ in $(seq 50); do
        snapshot "$now"
        # processes are compared by pid
        leaked_procs=$(join -v2 <(cut -d' ' -f1 "$dir/processes") "$now/processes")
        leaked_mounts=$(new_lines "$dir/mounts" "$now/mounts")
        leaked_temps=$(new_lines "$dir/temps" "$now/temps")
        [[ -z $leaked_procs$leaked_mounts$leaked_temps ]] && break
        sleep 0.1
    done
    if [[ -z $leaked_procs$leaked_mounts$leaked_temps ]]; then
        echo "leakcheck: no process, mount or temp entry left behind"
        exit 0
    fi
    echo "leakcheck: LEFT BEHIND on the host:" >&2
    [[ -n $leaked_procs ]] && sed 's/^/  process /' <<<"$leaked_procs" >&2
    [[ -n $leaked_mounts ]] && sed 's/^/  mount   /' <<<"$leaked_mounts" >&2
    [[ -n $leaked_temps ]] && sed 's/^/  temp    /' <<<"$leaked_temps" >&2
    exit 1
    ;;
*)
    echo "usage: leakcheck.sh snapshot|compare DIR" >&2
    exit 2
    ;;
esac
