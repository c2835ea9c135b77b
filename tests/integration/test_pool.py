"""Pre-warmed sandboxes (``Sandbox(pool=N)``): as confined as a fresh one, one per run, gone
with the pool or with the caller.

The hostile payload here runs in a sandbox that was built before its command was known; each
attack is the one the core tests make against a fresh sandbox, with a control where the attack
could otherwise "fail" for an unrelated reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from _util import alive, children, comm, descendants, pids_with, wait_until

import ringfence
from ringfence.errors import ProfileError, RingfenceError


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.fixture
def box():  # type: ignore[no-untyped-def]
    with ringfence.Sandbox("strict", pool=1) as sb:
        yield sb


def test_pooled_run_returns_output_and_exit_codes(box: ringfence.Sandbox) -> None:
    r = box.run(["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert box.run(["sh", "-c", "kill -TERM $$"]).returncode == 128 + signal.SIGTERM
    assert box.run(["cat"], input=b"fed", capture_output=True).stdout == b"fed"
    with pytest.raises(subprocess.CalledProcessError):
        box.run(["false"], check=True)


def test_pooled_command_not_found_is_127(box: ringfence.Sandbox) -> None:
    with pytest.raises(RingfenceError, match="command not found") as e:
        box.run(["no-such-command-here"])
    assert e.value.exit_code == 127
    assert box.run(["true"]).returncode == 0  # the pool goes on


def test_each_pooled_run_gets_a_fresh_sandbox(box: ringfence.Sandbox) -> None:
    first = box.run(["sh", "-c", "echo $$; touch /tmp/mark; ls /tmp"], capture_output=True)
    second = box.run(["sh", "-c", "echo $$; ls /tmp"], capture_output=True)
    assert first.stdout == b"2\nmark\n"
    assert second.stdout == b"2\n"  # PID 2 again, and no trace of the first run's file


def test_warm_payload_is_locked_down_before_its_command_arrives(
    box: ringfence.Sandbox,
) -> None:
    # The waiting payload is the grandchild of the pool's PID 1: look at it from the host.
    assert box._pool is not None
    manager = box._pool.pid
    assert wait_until(lambda: any(comm(p) == "rf-init" for p in descendants(manager)))
    init = next(p for p in descendants(manager) if comm(p) == "rf-init")
    assert wait_until(lambda: bool(children(init)))
    payload = children(init)[0]
    assert wait_until(lambda: _status(payload).get("Seccomp") == "2")
    status = _status(payload)
    assert status["NoNewPrivs"] == "1"
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, key
    assert status.get("Seccomp_filters", "1") != "0"


def test_cannot_read_host_secrets_or_see_host_processes(box: ringfence.Sandbox) -> None:
    home = os.path.expanduser("~")
    script = textwrap.dedent(f"""
        cat {home}/.bash_history {home}/.ssh/id_rsa /root/.bashrc 2>/dev/null && echo READ
        ls /proc | grep -c '^[0-9]'
        kill -0 {os.getpid()} 2>/dev/null && echo SIGNALLED
        grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status
        grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status
        touch /usr/x /etc/x 2>/dev/null && echo WROTE
        echo done
    """)
    r = box.run(["sh", "-c", script], capture_output=True, text=True)
    lines = r.stdout.splitlines()
    assert lines[-1] == "done"
    assert "READ" not in lines and "SIGNALLED" not in lines and "WROTE" not in lines
    assert int(lines[0]) <= 3  # the shell, grep, ls: nothing of the host
    assert "CapEff:\t0000000000000000" in lines
    assert "CapBnd:\t0000000000000000" in lines
    assert "NoNewPrivs:\t1" in lines and "Seccomp:\t2" in lines


def test_caller_fds_and_env_do_not_reach_a_pooled_run(
    box: ringfence.Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RF_POOL_SECRET", "hunter2")
    r_end, w_end = os.pipe()  # inheritable on purpose: only pass_fds may cross
    os.set_inheritable(r_end, True)
    try:
        r = box.run(
            ["sh", "-c", "ls /proc/self/fd; env"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(r_end)
        os.close(w_end)
    fds = sorted(int(x) for x in r.stdout.split() if x.isdigit())
    assert fds == [0, 1, 2, 3]  # 3 is ls's own directory fd
    assert "hunter2" not in r.stdout


def test_pass_fds_reach_a_pooled_run() -> None:
    r_end, w_end = os.pipe()
    os.write(w_end, b"through the pool\n")
    os.close(w_end)
    try:
        with ringfence.Sandbox("strict", pool=1, pass_fds=[r_end]) as sb:
            r = sb.run(["bash", "-c", f"cat <&{r_end}"], capture_output=True)  # dash: fds 0-9 only
    finally:
        os.close(r_end)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"through the pool\n", b"")


def test_timeout_kills_the_pooled_sandbox(box: ringfence.Sandbox, world_tmp) -> None:  # type: ignore[no-untyped-def]
    marker = f"30.{os.getpid()}"  # a unique argument for sleep, to find it by
    with pytest.raises(subprocess.TimeoutExpired):
        box.run(["sleep", marker], timeout=0.5)
    assert wait_until(lambda: not pids_with(marker))
    assert box.run(["true"]).returncode == 0


def test_close_leaves_no_process(box: ringfence.Sandbox) -> None:
    assert box._pool is not None
    manager = box._pool.pid
    assert wait_until(lambda: any(comm(p) == "rf-init" for p in descendants(manager)))
    tree = [manager, *descendants(manager)]
    box.close()
    assert wait_until(lambda: not any(alive(p) for p in tree))


def test_sigkill_of_the_caller_kills_the_pool(world_tmp) -> None:  # type: ignore[no-untyped-def]
    ready = world_tmp / "ready"
    code = textwrap.dedent(f"""
        import os, time, ringfence
        sb = ringfence.Sandbox("strict", pool=2)
        assert sb.run(["true"]).returncode == 0
        with open({str(ready)!r}, "w") as f:
            f.write(str(sb._pool.pid))
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(ringfence.__file__))}
    caller = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        assert wait_until(lambda: ready.exists() and ready.read_text() != "", timeout=30)
        manager = int(ready.read_text())
        # Two warm sandboxes: two PID 1s, each with its waiting payload (named like its parent).
        assert wait_until(
            lambda: sum(comm(p) == "rf-init" for p in descendants(manager)) == 4, timeout=30
        )
        tree = [manager, *descendants(manager)]
        caller.kill()
        caller.wait()
        assert wait_until(lambda: not any(alive(p) for p in tree)), [
            (p, comm(p)) for p in tree if alive(p)
        ]
    finally:
        caller.kill()
        caller.wait()


def test_pool_refuses_what_it_cannot_prewarm() -> None:
    with pytest.raises(ProfileError, match="Network=user"):
        ringfence.Sandbox("strict", pool=1, net="user")


def test_a_failed_warm_start_is_reported_by_run(world_tmp) -> None:  # type: ignore[no-untyped-def]
    doomed = world_tmp / "gone"
    doomed.mkdir()
    sb = ringfence.Sandbox("strict", pool=1, ro_binds=[(str(doomed), "/data")])
    try:
        # The warm sandbox was built from the path; remove it and the next one cannot be.
        assert sb.run(["test", "-d", "/data"]).returncode == 0
        doomed.rmdir()
        time.sleep(0.2)
        with pytest.raises(RingfenceError) as e:
            sb.run(["true"])
        assert e.value.exit_code == 2
        doomed.mkdir()
        assert wait_until(lambda: _retry_ok(sb), timeout=10)
    finally:
        sb.close()


def _retry_ok(sb: ringfence.Sandbox) -> bool:
    try:
        return sb.run(["test", "-d", "/data"]).returncode == 0
    except RingfenceError:
        return False


def test_a_nul_in_an_argument_is_refused_like_execve(box: ringfence.Sandbox) -> None:
    # Split at the NUL, "a\0--b" would smuggle an extra option "--b" into the command.
    with pytest.raises(ValueError, match="null byte"):
        box.run(["printf", "%s|", "a\0--b"])
    assert box.run(["printf", "%s|", "a", "--b"], capture_output=True).stdout == b"a|--b|"


def test_pooled_runs_get_different_machine_ids(box: ringfence.Sandbox) -> None:
    ids = {box.run(["cat", "/etc/machine-id"], capture_output=True).stdout for _ in range(3)}
    assert len(ids) == 3 and all(len(i) == 33 for i in ids)


def test_the_callers_copies_of_a_warm_sandboxs_sockets_are_close_on_exec(
    box: ringfence.Sandbox,
) -> None:
    assert box._pool is not None
    warm = box._pool.take()
    try:
        for sock in (warm._request, warm._control):
            assert sock is not None and not os.get_inheritable(sock.fileno())
            import fcntl

            assert fcntl.fcntl(sock.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        warm.close()
        box._pool.refill()
