"""`ringfence probe`: attacks run from inside a real sandbox, and proof that they can fail.

The strict profile must pass every check. Weakened profiles must make exactly the right checks
report EXPOSED and the probe exit 1. The same checks run *outside* any sandbox must report
EXPOSED, so a BLOCKED verdict means the sandbox blocked the attack, not that the check is blind.
Run as the unprivileged CI user and as root (the payload then runs as nobody).
"""

from __future__ import annotations

import ast
import glob
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _util import PYTHON, pids_with, rf, wait_until

from ringfence import probe

INSIDE = "_inside_main"  # in the command line of the probe program inside the sandbox

# Checks whose subject may simply not exist on a machine (no ~/.ssh, no X server, no DMI, no
# terminal on 0-2, no /run/user, no process limit): N/A is their honest answer.
MAY_BE_NA = {
    "ssh-keys", "tiocsti-stdio", "abstract-x11", "run-user", "dmi", "fork-limit",
    "host-loopback-v6", "keyring-session", "keyring-user", "mac-addresses", "machine-id",
    "home-canary", "home-list", "host-dev-shm", "sysv-shm", "old-root",
}  # fmt: skip


def run_probe(*opts: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    r = rf("probe", "--json", *opts, env=env, timeout=180)
    doc = json.loads(r.stdout) if r.stdout.strip() else {}
    return r.returncode, doc, r.stderr


def by_check(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in doc["checks"]}


def planted() -> set[str]:
    """Files the probe plants, owned by us."""
    found: set[str] = set()
    for pattern in ("/tmp/ringfence-probe-*", "/dev/shm/ringfence-probe-*",
                    os.path.expanduser("~/.ringfence-probe-*")):  # fmt: skip
        for path in glob.glob(pattern):
            try:
                if os.lstat(path).st_uid == os.getuid():
                    found.add(path)
            except FileNotFoundError:
                pass
    return found


def my_shm_segments() -> set[str]:
    with open("/proc/sysvipc/shm") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return {row[1] for row in rows if len(row) > 7 and row[7] == str(os.getuid())}


@pytest.fixture
def clean_host() -> Iterator[None]:
    """Asserts the probe left no file, shm segment or process behind."""
    files, shm = planted(), my_shm_segments()
    yield
    assert wait_until(lambda: not pids_with(INSIDE), timeout=10), "a probe process survived"
    assert planted() == files
    assert my_shm_segments() == shm


@pytest.fixture
def readable_home() -> Iterator[str]:
    """A home the sandbox's user could read if it were visible (as root the payload is nobody,
    who cannot enter /root)."""
    if os.geteuid() != 0:
        yield str(Path.home())
        return
    home = tempfile.mkdtemp(prefix="rf-probe-home-", dir="/home")
    os.chmod(home, 0o755)
    Path(home, "notes.txt").write_text("a file of the caller\n")
    os.chmod(Path(home, "notes.txt"), 0o644)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- the strict profile ----------------------------------------------------------------------


def test_strict_profile_passes_every_check(clean_host: None) -> None:
    code, doc, err = run_probe()
    assert code == 0, err
    assert doc["passed"] is True and doc["profile"] == "strict"
    results = by_check(doc)
    assert {c.name for c in probe.CHECKS} == set(results)
    for name, r in results.items():
        assert r["expected"] == "BLOCKED", name
        assert r["result"] == "BLOCKED" or (r["result"] == "N/A" and name in MAY_BE_NA), (
            name, r["result"], r["detail"])  # fmt: skip
    blocked = [n for n, r in results.items() if r["result"] == "BLOCKED"]
    assert len(blocked) >= 45


def test_probe_table_says_pass() -> None:
    r = rf("probe", timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["CHECK", "VECTOR", "EXPECTED", "RESULT", "DETAIL"]
    assert r.stdout.rstrip().splitlines()[-1].startswith("PASS")


# -- weakened profiles make the right checks fail --------------------------------------------


def test_net_host_exposes_host_loopback_and_fails(clean_host: None) -> None:
    code, doc, _ = run_probe("--net", "host")
    assert code == 1 and doc["passed"] is False
    results = by_check(doc)
    for name in ("host-loopback-v4", "interfaces"):
        assert results[name]["result"] == "EXPOSED", results[name]
        assert results[name]["expected"] == "allowed"
        assert results[name]["allowed_by"] == "--net host"
        assert results[name]["ok"] is False
    for name in ("host-tmp", "sysv-shm", "userns-unshare", "fd-leak", "env-leak"):
        assert results[name]["result"] in ("BLOCKED", "N/A"), results[name]


def test_accept_allowed_passes_when_only_granted_vectors_are_exposed() -> None:
    code, doc, err = run_probe("--net", "host", "--accept-allowed")
    assert code == 0, err
    exposed = [r for r in doc["checks"] if r["result"] == "EXPOSED"]
    assert exposed and all(r["allowed_by"] for r in exposed)


@pytest.mark.parametrize("weaken", [False, True], ids=["strict", "ProtectHome=no"])
def test_protect_home_no_exposes_the_home_canary(readable_home: str, weaken: bool,
                                                 clean_host: None) -> None:  # fmt: skip
    env = {**os.environ, "HOME": readable_home}
    opts = ("--set", "ProtectHome=no", "--set", "PrivateHome=no") if weaken else ()
    code, doc, err = run_probe("--check", "home-canary", "--check", "home-list", *opts, env=env)
    results = by_check(doc)
    if weaken:
        assert code == 1
        assert results["home-canary"]["result"] == "EXPOSED", results["home-canary"]
        assert results["home-list"]["result"] == "EXPOSED", results["home-list"]
        assert "ProtectHome=no" in results["home-canary"]["allowed_by"]
    else:
        assert code == 0, err
        assert results["home-canary"]["result"] == "BLOCKED", results["home-canary"]
        assert results["home-list"]["result"] == "BLOCKED", results["home-list"]


def test_private_tmp_no_exposes_host_tmp_and_its_sockets(clean_host: None) -> None:
    code, doc, _ = run_probe("--set", "PrivateTmp=no", "--check", "host-tmp",
                             "--check", "socket-path", "--check", "host-dev-shm")  # fmt: skip
    results = by_check(doc)
    assert code == 1
    assert results["host-tmp"]["result"] == "EXPOSED"
    assert results["socket-path"]["result"] == "EXPOSED"
    assert results["host-dev-shm"]["result"] in ("BLOCKED", "N/A")


def test_private_ipc_no_exposes_host_sysv_shm(clean_host: None) -> None:
    code, doc, _ = run_probe("--set", "PrivateIPC=no", "--check", "sysv-shm")
    assert code == 1
    assert by_check(doc)["sysv-shm"]["result"] == "EXPOSED"


def test_nested_user_namespaces_exposed_without_restrict_namespaces() -> None:
    code, doc, _ = run_probe("--set", "RestrictNamespaces=no", "--check", "userns-unshare",
                             "--check", "userns-clone", "--check", "mount")  # fmt: skip
    results = by_check(doc)
    assert code == 1
    assert results["userns-unshare"]["result"] == "EXPOSED"
    assert results["userns-clone"]["result"] == "EXPOSED"
    assert results["userns-unshare"]["allowed_by"] == "RestrictNamespaces not set"
    assert results["mount"]["result"] == "BLOCKED"  # still no capability in the sandbox's own


# -- the probe never hangs, never leaves anything ---------------------------------------------


def test_hanging_check_is_a_verdict_and_the_probe_completes(clean_host: None) -> None:
    code, doc, _ = run_probe("--test-inject-hang", "--deadline", "0.5", "--check",
                             "selftest-hang", "--check", "hostname", "--check", "host-tmp")  # fmt: skip
    assert code == 1
    names = [c["check"] for c in doc["checks"]]
    assert names == ["selftest-hang", "host-tmp", "hostname"]  # the checks after it still ran
    results = by_check(doc)
    assert results["selftest-hang"]["result"] == "TIMEOUT"
    assert results["selftest-hang"]["ok"] is False
    assert results["hostname"]["result"] == "BLOCKED"
    assert results["host-tmp"]["result"] == "BLOCKED"


def test_terminated_probe_removes_what_it_planted_and_hides_its_config() -> None:
    before_files, before_shm = planted(), my_shm_segments()
    proc = subprocess.Popen(
        [PYTHON, "-m", "ringfence", "probe", "--test-inject-hang", "--deadline", "60",
         "--check", "selftest-hang"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert wait_until(lambda: bool(pids_with(INSIDE)), timeout=30), "the probe never started"
        new = planted() - before_files
        assert new, "the probe planted nothing"
        # The configuration names the caller's files: it travels on an fd, never in a command
        # line that every user of the host can read.
        token = next(iter(new)).rsplit("-", 1)[-1]
        for pid in pids_with(INSIDE):
            assert token not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == 128 + signal.SIGTERM
    assert wait_until(lambda: not pids_with(INSIDE), timeout=10)
    assert planted() == before_files
    assert my_shm_segments() == before_shm


def test_void_without_python_is_a_one_line_error() -> None:
    r = rf("probe", "--profile", "void")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1
    assert "--ro-bind /usr /usr" in r.stderr and "Traceback" not in r.stderr


def test_void_with_usr_bound_passes() -> None:
    code, doc, err = run_probe("--profile", "void", "--ro-bind", "/usr", "/usr", "--symlink",
                               "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64")  # fmt: skip
    assert code == 0, err
    assert by_check(doc)["host-tmp"]["result"] == "BLOCKED"


def test_heavy_fork_bomb_stops_at_limit_nproc(clean_host: None) -> None:
    code, doc, err = run_probe("--heavy", "--set", "LimitNPROC=24", "--check", "fork-limit")
    assert code == 0, err
    result = by_check(doc)["fork-limit"]
    assert result["result"] == "BLOCKED" and "EAGAIN" in result["detail"], result


def test_fork_bomb_is_not_run_without_heavy() -> None:
    code, doc, _ = run_probe("--set", "LimitNPROC=24", "--check", "fork-limit")
    assert code == 0
    assert by_check(doc)["fork-limit"]["result"] == "N/A"


# -- controls: the same checks outside any sandbox must see the exposure ---------------------


def _sysctl(path: str) -> int | None:
    try:
        return int(Path("/proc/sys", path).read_text().split()[0])
    except (OSError, ValueError):
        return None


def _host_has_route() -> bool:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet: a route lookup
        return True
    except OSError:
        return False
    finally:
        s.close()


# Safe to run unconfined, even as root: each attack targets the check's own children or only
# reads; nothing mounts, writes system paths or changes the host.
UNCONFINED_EXPOSED = [
    "home-canary", "home-list", "host-tmp", "old-root", "host-processes", "ptrace",
    "process_vm_readv", "no-new-privs", "keyctl", "keyring-session", "keyring-user",
    "personality", "abstract-host", "socket-path", "sysv-shm", "host-dev-shm", "fd-leak",
    "host-loopback-v4", "interfaces", "hostname", "machine-id", "mac-addresses", "env-leak",
]  # fmt: skip


def test_checks_see_the_exposure_outside_a_sandbox(tmp_path: Path) -> None:
    expect = list(UNCONFINED_EXPOSED)
    if _sysctl("user/max_user_namespaces"):
        expect += ["userns-unshare", "userns-clone", "userns-clone3"]
    if (_sysctl("kernel/perf_event_paranoid") or 3) <= 2:
        expect.append("perf_event_open")
    if _sysctl("kernel/io_uring_disabled") == 0:
        expect.append("io_uring_setup")
    if _host_has_route():
        expect.append("route-v4")
    expect.append("userfaultfd")  # user-mode-only faults need no privilege (Linux 5.11+)
    home = os.path.realpath(os.path.expanduser("~"))
    with probe.Fixtures() as fx:
        facts = probe.prepare(fx, home, deadline=5.0, heavy=False, hang=False, only=expect)
        facts.config.update(nproc_limit=None, pass_fds=[])
        leak = facts.config["leak_fd"]["fd"]
        r = subprocess.run(
            ["/usr/bin/python3", "-I", "-S", "-c", probe.inside_source(),
             json.dumps(facts.config)],
            capture_output=True, text=True, timeout=120, pass_fds=(leak,), cwd=tmp_path,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = {d["check"]: d for d in map(json.loads, r.stdout.splitlines())}
    for name in expect:
        assert got[name]["result"] == "EXPOSED", (name, got[name])


def test_tiocsti_check_sees_a_reachable_terminal_without_typing_into_it() -> None:
    if _sysctl("dev/tty/legacy_tiocsti") != 1:
        pytest.skip("TIOCSTI is disabled on this kernel (dev.tty.legacy_tiocsti=0)")
    cfg = json.dumps({"checks": ["tiocsti-stdio", "tiocsti-dev-tty"], "deadline": 5})
    pid, master = pty.fork()
    if pid == 0:  # a new session whose controlling terminal is the pty: TIOCSTI would work
        try:
            os.execv("/usr/bin/python3",
                     ["python3", "-I", "-S", "-c", probe.inside_source(), cfg])  # fmt: skip
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    got = {d["check"]: d for d in lines}
    assert got["tiocsti-stdio"]["result"] == "EXPOSED", got
    assert got["tiocsti-dev-tty"]["result"] == "EXPOSED", got
    # Nothing was typed: the probe passes a NULL buffer, so the kernel fails before queueing a
    # byte. A typed byte would be echoed by the terminal; the only output is the probe's JSON.
    assert all(line.startswith("{") for line in out.decode().splitlines() if line.strip())


# -- the probe program itself ----------------------------------------------------------------


def test_every_check_runs_inside_and_none_is_missing() -> None:
    outside = {c.name for c in probe.CHECKS} | {"selftest-hang"}
    assert outside == set(probe._INSIDE_CHECKS)


def test_probe_program_is_self_contained() -> None:
    source = probe.inside_source()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("ringfence"), node.module
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("ringfence") for a in node.names)
    r = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", source, '{"checks": []}'],
                       capture_output=True, text=True, timeout=60, cwd="/")  # fmt: skip
    assert r.returncode == 0 and r.stdout == "", r.stderr
