"""Resource limits, attacked from inside a real sandbox: rlimits (Limit*=) and cgroups (TasksMax=,
MemoryMax=, CPUQuota=).

rlimits work everywhere. Cgroup tests depend on what the host offers: as root on this cgroup v1
host the v1 pids/memory/cpu controllers enforce the limits; as an unprivileged user without a
delegated cgroup v2 subtree, a profile that needs them must fail with the fix, or run with a
"not applied" report when CgroupOptional is set. Each test runs the part that applies and skips
the other, so running the suite both as root and as rftest covers both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap

import pytest
from _util import PYTHON, rf, sh, wait_until

from ringfence.kernel import cgroup
from ringfence.profile.loader import all_keys

# Until the launcher knows the cgroup keys, every cgroup test skips (loudly, in -rs).
WIRED = "TasksMax" in all_keys()
PIDS = WIRED and cgroup.detect().choose(frozenset({"pids"})) is not None
MEMORY = WIRED and cgroup.detect().choose(frozenset({"memory"})) is not None
CPU = WIRED and cgroup.detect().choose(frozenset({"cpu"})) is not None


def _why(controller: str) -> str:
    return f"no usable {controller} cgroup controller here" if WIRED else "cgroup keys not wired"


needs_pids = pytest.mark.skipif(not PIDS, reason=_why("pids"))
needs_memory = pytest.mark.skipif(not MEMORY, reason=_why("memory"))
needs_cpu = pytest.mark.skipif(not CPU, reason=_why("cpu"))
no_pids = pytest.mark.skipif(
    PIDS or not WIRED, reason="this host offers a pids cgroup to this user (or not wired)"
)
PAYLOAD_UID = 65534 if os.geteuid() == 0 else os.geteuid()


def limits_line(output: str, name: str) -> list[str]:
    """The soft and hard columns of one line of /proc/self/limits."""
    for line in output.splitlines():
        if line.startswith(name):
            return line[len(name) :].split()[:2]
    raise AssertionError(f"{name!r} not in {output!r}")


# --- rlimits ----------------------------------------------------------------------------------


def test_limit_nofile_is_applied_and_cannot_be_raised():
    r = sh(
        "ulimit -n; ulimit -n 4096 2>/dev/null && echo RAISED; ulimit -n", "--set", "LimitNOFILE=64"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["64", "64"]


def test_cannot_open_more_files_than_limit_nofile():
    script = textwrap.dedent("""
        import os
        fds = []
        try:
            while True:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as e:
            print(e.errno, max(fds))
    """)
    r = rf("run", "--set", "LimitNOFILE=32", "--", "python3", "-c", script)
    err, highest = map(int, r.stdout.split())
    assert err == 24  # EMFILE
    assert highest < 32


def test_write_past_limit_fsize_fails_with_efbig():
    script = textwrap.dedent("""
        import errno, os, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        fd = os.open("/tmp/big", os.O_WRONLY | os.O_CREAT, 0o600)
        data, written = b"x" * (2 << 20), 0
        try:
            while written < len(data):  # the kernel writes up to the limit, then refuses
                written += os.write(fd, data[written:])
            print("WROTE", written)
        except OSError as e:
            print(errno.errorcode[e.errno], written)
        print(os.fstat(fd).st_size)
    """)
    r = rf("run", "--set", "LimitFSIZE=1M", "--", "python3", "-c", script)
    assert r.stdout.split() == ["EFBIG", str(1 << 20), str(1 << 20)], (r.stdout, r.stderr)


def test_write_past_limit_fsize_is_killed_by_sigxfsz():
    r = sh(
        "head -c 2M /dev/zero > /tmp/big; echo status=$?; wc -c < /tmp/big",
        "--set",
        "LimitFSIZE=1M",
    )
    status, size = r.stdout.split()
    assert status == f"status={128 + signal.SIGXFSZ}"
    assert int(size) == 1 << 20


def test_limit_core_as_nproc_are_applied():
    r = rf(
        "run",
        "--set",
        "LimitCORE=0",
        "--set",
        "LimitAS=1G",
        "--set",
        "LimitNPROC=77",
        "--",
        "cat",
        "/proc/self/limits",
    )
    assert r.returncode == 0, r.stderr
    assert limits_line(r.stdout, "Max core file size") == ["0", "0"]
    assert limits_line(r.stdout, "Max address space") == [str(1 << 30)] * 2
    assert limits_line(r.stdout, "Max processes") == ["77", "77"]


def test_cannot_allocate_past_limit_as():
    script = "x = bytearray(512 << 20); print('ALLOCATED')"
    r = rf("run", "--set", "LimitAS=256M", "--", "python3", "-c", script)
    assert "ALLOCATED" not in r.stdout
    assert "MemoryError" in r.stderr
    control = rf("run", "--set", "LimitAS=2G", "--", "python3", "-c", script)
    assert control.stdout.strip() == "ALLOCATED", control.stderr


def test_nproc_counts_this_sandbox_only_not_every_process_of_the_uid():
    # RLIMIT_NPROC is charged per (user namespace, uid) since Linux 5.14 (ucounts): processes of
    # the same uid outside the sandbox do not use up the sandbox's allowance.
    kw: dict[str, object] = (
        {"user": PAYLOAD_UID, "group": PAYLOAD_UID} if PAYLOAD_UID == 65534 else {}
    )
    host = [subprocess.Popen(["sleep", "60"], **kw) for _ in range(12)]  # type: ignore[call-overload]
    try:
        r = sh("for i in 1 2 3 4 5; do sleep 60 & done; echo forked", "--set", "LimitNPROC=10")
    finally:
        for p in host:
            p.kill()
            p.wait()
    assert r.stdout.strip() == "forked", r.stderr


# --- fork bombs -------------------------------------------------------------------------------

# A tree of processes, each forking FANOUT children down to DEPTH levels and retrying slowly when
# fork() fails; nobody exits. The shape caps it at 364 processes, so a broken limit gives a
# failed test ("SAFETY-CAP"), not a host-wide fork bomb. "SATURATED": fork() failed with EAGAIN.
BOMB = textwrap.dedent("""
    import os, select, sys, time
    FANOUT, DEPTH = 3, 5
    TOTAL = sum(FANOUT**d for d in range(DEPTH + 1))
    r, w = os.pipe()
    ns = os.readlink("/proc/self/ns/pid")
    if os.fork() == 0:
        os.close(r)
        depth, made, told = 0, 0, False
        while depth < DEPTH and made < FANOUT:
            try:
                pid = os.fork()
            except BlockingIOError:
                if not told:
                    told = True
                    os.write(w, b"E")
                time.sleep(0.05)
                continue
            if pid == 0:
                depth, made = depth + 1, 0
            else:
                made += 1
        os.write(w, b"D")
        while True:
            time.sleep(60)
    os.close(w)
    done, verdict = 0, "SAFETY-CAP"
    while done < TOTAL:
        byte = os.read(r, 1)
        if byte == b"E":
            verdict = "SATURATED"
            break
        if not byte:
            break
        done += 1
    print(verdict, ns, flush=True)
    select.select([sys.stdin], [], [], 120)  # until the test closes stdin
""")


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def sandbox_size(init_pid: int) -> int:
    """Processes in the sandbox, counted from the host: its PID 1 and every descendant (an
    orphan inside is re-parented to PID 1, so this is the whole PID namespace)."""
    ppids = _ppids()
    if init_pid not in ppids:
        return 0
    members = {init_pid}
    grew = True
    while grew:
        new = {p for p, pp in ppids.items() if pp in members and p not in members}
        members |= new
        grew = bool(new)
    return len(members)


def in_pid_namespace(ns: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def run_bomb(*opts: str) -> dict[str, object]:
    """Start the bomb in a sandbox; sample it from the host while it is saturated; end it."""
    p = subprocess.Popen(
        [PYTHON, "-m", "ringfence", "run", "--json", *opts, "--", "python3", "-c", BOMB],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdin and p.stdout and p.stderr
    try:
        report = json.loads(p.stderr.readline() or "{}")
        line = p.stdout.readline()
        assert line, f"the sandbox ended early: {p.stderr.read()}"
        verdict, ns = line.split()
        init_pid = int(report["sandbox_pid"])
        sizes = [sandbox_size(init_pid) for _ in range(30)]
        host_fork = subprocess.run(["true"]).returncode
        p.stdin.close()
        code = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return {
        "verdict": verdict,
        "sizes": sizes,
        "host_fork": host_fork,
        "code": code,
        "left": in_pid_namespace(ns) + ([init_pid] if sandbox_size(init_pid) else []),
        "report": report,
    }


def test_fork_bomb_is_contained_by_limit_nproc():
    limit = 50
    r = run_bomb("--set", f"LimitNPROC={limit}")
    assert r["verdict"] == "SATURATED"  # fork() failed with EAGAIN before the safety cap
    sizes: list[int] = r["sizes"]  # type: ignore[assignment]
    # The sandbox's user namespace also holds the launcher's child C (outside the PID
    # namespace), so at most limit - 1 processes are inside.
    assert max(sizes) <= limit - 1, sizes
    assert max(sizes) >= limit // 2, sizes  # the bomb really filled its allowance
    assert r["host_fork"] == 0
    assert r["code"] == 0
    assert r["left"] == []  # the bomb ended with the sandbox


@needs_pids
def test_fork_bomb_is_contained_by_tasks_max():
    limit = 30
    r = run_bomb("--set", f"TasksMax={limit}")
    assert r["verdict"] == "SATURATED"
    sizes: list[int] = r["sizes"]  # type: ignore[assignment]
    assert max(sizes) <= limit, sizes
    assert max(sizes) >= limit // 2, sizes
    assert r["host_fork"] == 0
    assert r["code"] == 0
    assert r["left"] == []
    paths = _cgroup_paths(r["report"])  # type: ignore[arg-type]
    assert paths and not any(os.path.exists(p) for p in paths)  # removed after the run


# --- cgroup limits ----------------------------------------------------------------------------


def _cgroup_paths(report: dict[str, object]) -> list[str]:
    for entry in report.get("runtime", []):  # type: ignore[attr-defined]
        if entry.get("layer") == "cgroup" and entry.get("applied"):
            return list(entry["paths"])
    return []


@needs_memory
def test_cannot_allocate_past_memory_max():
    script = "x = b'1' * (256 << 20); print('ALLOCATED', len(x))"
    r = rf("run", "--set", "MemoryMax=64M", "--", "python3", "-c", script)
    assert "ALLOCATED" not in r.stdout
    assert r.returncode in (128 + signal.SIGKILL, 1), (r.returncode, r.stderr)  # OOM kill
    control = rf("run", "--set", "MemoryMax=1G", "--", "python3", "-c", script)
    assert control.stdout.split()[0] == "ALLOCATED", control.stderr


@needs_cpu
def test_cpu_quota_throttles_a_busy_loop():
    loop = "import select, sys\nwhile not select.select([sys.stdin], [], [], 0)[0]: pass"
    p = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "ringfence",
            "run",
            "--json",
            "--set",
            "CPUQuota=10%",
            "--",
            "python3",
            "-c",
            loop,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdin and p.stderr
    try:
        paths = _cgroup_paths(json.loads(p.stderr.readline()))
        assert len(paths) == 1
        with open(paths[0] + "/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open(paths[0] + "/cpu.cfs_period_us") as f:
            period = int(f.read())

        def throttled() -> bool:
            with open(paths[0] + "/cpu.stat") as f:
                stat = dict(line.split() for line in f)
            return int(stat["nr_throttled"]) > 0

        assert wait_until(throttled, timeout=30)
    finally:
        p.stdin.close()
        p.wait(timeout=60)
    assert quota * 10 == period
    assert not os.path.exists(paths[0])


@needs_pids
def test_payload_is_born_inside_the_sandbox_cgroup():
    p = subprocess.Popen(
        [PYTHON, "-m", "ringfence", "run", "--json", "--set", "TasksMax=10", "--", "sleep", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stderr
    try:
        report = json.loads(p.stderr.readline())
        init = int(report["sandbox_pid"])
        path = _cgroup_paths(report)[0]
        assert wait_until(lambda: sandbox_size(init) == 2)
        payload = next(pid for pid, pp in _ppids().items() if pp == init)
        with open(path + "/cgroup.procs") as f:
            procs = f.read().split()
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    assert str(init) in procs and str(payload) in procs


@needs_pids
def test_stale_cgroup_of_a_sigkilled_launcher_is_removed_by_the_next_run():
    p = subprocess.Popen(
        [PYTHON, "-m", "ringfence", "run", "--json", "--set", "TasksMax=10", "--", "sleep", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stderr
    report = json.loads(p.stderr.readline())
    init = int(report["sandbox_pid"])
    paths = _cgroup_paths(report)
    p.kill()
    p.wait()
    assert wait_until(lambda: sandbox_size(init) == 0)  # the sandbox died with its launcher
    assert all(os.path.isdir(path) for path in paths)  # a SIGKILLed launcher cannot rmdir
    r = rf("run", "--set", "TasksMax=10", "--", "true")
    assert r.returncode == 0, r.stderr
    assert not any(os.path.exists(path) for path in paths)


@no_pids
def test_tasks_max_without_a_cgroup_fails_with_the_fix():
    r = rf("run", "--set", "TasksMax=50", "--", "echo", "RAN")
    assert r.returncode == 2
    assert "RAN" not in r.stdout
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "TasksMax" in r.stderr
    assert "Delegate=yes" in r.stderr and "CgroupOptional" in r.stderr


@no_pids
def test_cgroup_optional_runs_and_reports_not_applied():
    r = rf(
        "run", "--json", "--set", "TasksMax=50", "--set", "CgroupOptional=yes", "--", "echo", "RAN"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "RAN\n"
    doc = json.loads(r.stderr.strip().splitlines()[-1])
    planned = [layer for layer in doc["layers"] if layer["layer"] == "cgroup"]
    assert [layer["applied"] for layer in planned] == [False]
    assert "not applied" in planned[0]["why"]
    ran = [e for e in doc["runtime"] if e.get("layer") == "cgroup"]
    assert [e["applied"] for e in ran] == [False]
    assert "not applied" in str(ran[0]["why"])


@pytest.fixture
def session_name(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    name = f"t{os.urandom(4).hex()}"
    yield name
    rf("stop", name, "--timeout", "2")


@needs_pids
def test_a_process_entering_a_session_is_bounded_by_its_cgroup(session_name):
    started = rf("start", session_name, "--set", "TasksMax=10", "--", "sleep", "300")
    assert started.returncode == 0, started.stderr
    p = subprocess.Popen(
        [PYTHON, "-m", "ringfence", "enter", session_name, "--json", "--", "sleep", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stderr
    try:
        joiner = int(json.loads(p.stderr.readline())["sandbox_pid"])
        with open(f"/proc/{joiner}/cgroup") as f:
            pids_line = next(line for line in f if ":pids:" in line)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    assert f"/{cgroup.GROUP}/" in pids_line
