#!/usr/bin/env bash
# A short, real demonstration: a "hostile" shell script, run by an ordinary user under
# `ringfence run`, tries to read the user's secrets, write to the system, reach the caller's
# processes, environment, file descriptors and a localhost service, and to outlive the sandbox.
# Each line prints what really happened. Then the enforcement report (--json) and the Python API.
#
# As root (make demo), it runs itself again as the test user from the copy made by setup.sh.
# As a normal user it uses $RINGFENCE, else the CI venv's ringfence, else `ringfence` on PATH.
# It leaves nothing behind: its temporary files, the listener and any process it started are
# removed on exit, and it checks that no sandbox process or mount is left.
set -euo pipefail

CI_DIR=${RF_CI_DIR:-/opt/ringfence-ci}
TEST_USER=${RF_TEST_USER:-rftest}

if [[ $(id -u) -eq 0 ]]; then
    [[ -f $CI_DIR/src/scripts/demo.sh ]] || { echo "demo: run 'make setup' first" >&2; exit 2; }
    home=$(getent passwd "$TEST_USER" | cut -d: -f6)
    cd "$CI_DIR/src"
    exec runuser -u "$TEST_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
        HOME="$home" USER="$TEST_USER" LOGNAME="$TEST_USER" TERM="${TERM:-dumb}" \
        RINGFENCE="$CI_DIR/venv/bin/ringfence" PYTHON="$CI_DIR/venv/bin/python" \
        bash "$CI_DIR/src/scripts/demo.sh" </dev/null
fi

if [[ -z ${RINGFENCE:-} ]]; then
    if [[ -x $CI_DIR/venv/bin/ringfence ]]; then RINGFENCE=$CI_DIR/venv/bin/ringfence
    else RINGFENCE=$(command -v ringfence) || { echo "demo: ringfence not found" >&2; exit 2; }
    fi
fi
PYTHON=${PYTHON:-$(dirname "$RINGFENCE")/python}
[[ -x $PYTHON ]] || PYTHON=python3

heading() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[[ -t 1 ]] || heading() { printf '\n== %s\n' "$*"; }
shown() { printf '$ %s\n' "$*"; }

# --- props: a secret in the home directory, an open fd on it, a secret in the environment, a
# service on the host's loopback, a directory the sandbox is given -----------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/ringfence-demo.XXXXXX")
secret_dir=$(mktemp -d "$HOME/.ringfence-demo.XXXXXX")
listener=
cleanup() {
    set +e
    if [[ -n $listener ]]; then
        kill "$listener" 2>/dev/null
        wait "$listener" 2>/dev/null
    fi
    rm -rf -- "$work" "$secret_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
echo "-----BEGIN DEMO PRIVATE KEY----- do not leak me" >"$secret_dir/id_rsa"
export DEMO_TOKEN="caller-secret-token-123"
exec 7<"$secret_dir/id_rsa"
mounts_before=$(awk '{print $5}' /proc/self/mountinfo | sort)

# A TCP service on the host's 127.0.0.1 (a stand-in for a database or a dev server).
"$PYTHON" -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); sys.stdout.close()
while True:
    c, _ = s.accept(); c.sendall(b"host service says hi\n"); c.close()
' >"$work/port" 7<&- &
listener=$!
until [[ -s $work/port ]]; do sleep 0.02; done
port=$(cat "$work/port")
mkdir "$work/granted"

# --- the hostile program ----------------------------------------------------------------------
# shellcheck disable=SC2016 # expanded inside the sandbox
ATTACK='
exec 2>&1
try() {  # try DESCRIPTION COMMAND...: run an attack, say whether it worked
    desc=$1; shift
    if out=$("$@" 2>&1); then
        printf "  %-48s ALLOWED  %s\n" "$desc" "$(printf "%s" "$out" | head -n 1)"
    else
        why=$(printf "%s\n" "$out" | grep -v "dmesg(1)" | tail -n 1 | sed "s/.*: //" | cut -c1-60)
        printf "  %-48s blocked  (%s)\n" "$desc" "$why"
    fi
}
secret=$1 caller=$2 port=$3 work=$4
echo "  inside: $(id)"
echo "  inside: hostname $(hostname), $(ps -e --no-headers | wc -l) processes visible, home $HOME holds [$(ls -A "$HOME")]"
echo "  inside: $(grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr -s "\t\n" "  ")"
try "read the secret key in the real home"        cat "$secret"
try "write to /usr/bin"                           touch /usr/bin/evil
try "plant a file in the caller /tmp"          touch "$work/planted"
try "remount /usr read-write"                     mount -o remount,rw /usr
try "signal the calling shell (host pid $caller)" kill -0 "$caller"
try "read the caller environment (DEMO_TOKEN)"    sh -c "[ -n \"\$DEMO_TOKEN\" ] && echo \$DEMO_TOKEN || ! echo DEMO_TOKEN is not set"
try "read the caller open fd 7 (the key)"         sh -c "cat <&7"
try "connect to host service 127.0.0.1:$port"     python3 -c "import socket; s=socket.create_connection((\"127.0.0.1\", $port), 2); print(s.recv(99).decode())"
try "create a user namespace to regain caps"      unshare --user --map-root-user true
try "write into the granted directory /work"      sh -c "echo written from inside > /work/note.txt && echo ok"
setsid sleep 4242 </dev/null >/dev/null 2>&1 &
echo "  started a background process (setsid sleep 4242) meant to outlive the sandbox"
'

heading "1. The plan: what ringfence will set up (nothing runs yet)"
shown ringfence plan --bind "$work/granted" /work -- sh -c ATTACK
timeout 60 "$RINGFENCE" plan --bind "$work/granted" /work -- sh -c ATTACK

heading "2. A hostile program, run confined as $(id -un)"
shown ringfence run --json --bind "$work/granted" /work -- sh -c ATTACK "~/${secret_dir##*/}/id_rsa" $$ "$port" "$work"
echo "  (the caller has DEMO_TOKEN set, fd 7 open on the key, and a service on 127.0.0.1:$port)"
set +e
timeout 60 "$RINGFENCE" run --json --bind "$work/granted" /work -- sh -c "$ATTACK" attack \
    "$secret_dir/id_rsa" $$ "$port" "$work" 2>"$work/report.json"
rc=$?
set -e
echo "  exit status $rc"
echo "  host side: $work/planted is $([[ -e $work/planted ]] && echo PRESENT || echo absent)"
echo "  host side: /work/note.txt is $work/granted/note.txt: \"$(cat "$work/granted/note.txt" 2>/dev/null || echo missing)\""
if pgrep -u "$(id -u)" -f '^sleep 4242$' >/dev/null; then
    echo "  host side: the background process SURVIVED the sandbox"
else
    echo "  host side: the background process is gone (killed with the sandbox)"
fi

heading "3. What ringfence says it enforced (ringfence run --json)"
"$PYTHON" - "$work/report.json" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
report = next((json.loads(l) for l in lines if l.startswith("{")), None)
for l in lines:
    if not l.startswith("{"):
        print("  stderr:", l)
if report is None:
    sys.exit("  no report: ringfence failed before the payload started")
print(f"  profile {report['profile']}, uid {report['uid']}, network {report['network']}, "
      f"namespaces {', '.join(report['namespaces'])}")
# "applied" is true, false, or null for a layer the sandbox decides as it starts (e.g. Landlock
# on this kernel's ABI); what it then did is in "runtime".
runtime = {r.get("layer"): r for r in report.get("runtime", [])}
for layer in report["layers"]:
    state = {True: "applied", False: "NOT applied", None: "at start"}[layer["applied"]]
    text = layer["detail"] or layer["why"]
    done = runtime.get(layer["layer"])
    if done is not None:
        state = "applied" if done.get("enforced") else "NOT applied"
        text = ", ".join(
            f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in done.items()
            if k in ("abi", "fs_rules", "net_rules", "scopes", "dropped") and v not in ([], None)
        )
    print(f"  {state:11}  {layer['layer']:22} {text}")
for w in report.get("warnings", []):
    print("  warning:", w)
EOF

heading "4. The same from Python: ringfence.run (forks in-process)"
PY='import ringfence
r = ringfence.run(["sh", "-c", "id -un; ls -A ~ | wc -l"], capture_output=True, text=True)
print(r.returncode, r.stdout.split())'
shown python -c "'$PY'"
timeout 60 "$PYTHON" -c "$PY" | sed 's/^/  /'

heading "5. ringfence probe: the threat checklist, attempted from inside a sandbox"
shown ringfence probe
set +e
probe_out=$(timeout 120 "$RINGFENCE" probe 2>&1)
set -e
# every check that was not blocked (or not applicable here), then the verdict
awk '$1 != "CHECK" && NF >= 4 && $4 != "BLOCKED" && $4 != "N/A" && $2 != "checks:" && $1 !~ /:$/' \
    <<<"$probe_out" | sed 's/^/  not blocked: /'
tail -n 2 <<<"$probe_out" | sed 's/^/  /'

heading "6. A desktop app: the file it was given, read-only, and an X display of its own"
echo "my notes" >"$work/notes.txt"
DESK='cat "$1"; echo more >>"$1"; ls -A ~ | wc -l; echo "DISPLAY=$DISPLAY"; xdpyinfo | grep dimensions'
shown ringfence run --profile desktop --display xvfb -- sh -c "'$DESK'" sh "$work/notes.txt"
timeout 60 "$RINGFENCE" run --profile desktop --display xvfb -- sh -c "$DESK" sh "$work/notes.txt" \
    2>&1 | sed 's/^/  /' || true
echo "  (the home directory is empty; the display is a headless Xvfb of the sandbox's own,"
echo "   itself confined; with a screen, --display xephyr shows it as a window)"

heading "7. Afterwards, on the host"
exec 7<&-
mounts_after=$(awk '{print $5}' /proc/self/mountinfo | sort)
if [[ $mounts_before == "$mounts_after" ]]; then
    echo "  mounts: unchanged"
else
    echo "  mounts: CHANGED:"; diff <(echo "$mounts_before") <(echo "$mounts_after") | sed 's/^/    /'
fi
left=$(pgrep -u "$(id -u)" -a -f '^sleep 4242$' || true)
echo "  processes left by the sandbox: ${left:-none}"
echo "  temporary files: removed on exit ($work, $secret_dir)"
