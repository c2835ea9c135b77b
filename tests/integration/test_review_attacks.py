"""A reviewer's attacks on pre-warmed sandboxes and on the desktop use case that must fail.

Each attack runs from inside a real sandbox (a pooled one where the pool is the subject), with
a control showing that the probe could have seen the thing it looks for.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
from _util import alive, comm, descendants, pids_with, rf, wait_until

import ringfence

_FD_PROBE = textwrap.dedent("""
    import os
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            print(fd, os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the listing's own directory fd, closed by now
""")


def test_pooled_payload_holds_no_socket_of_the_pool_after_exec() -> None:
    """The warm payload waited on its request socket, PID 1 on the control socket: after the
    execve neither may be left in the command (it could forge an exit or kill its sandbox)."""
    mine, passed = socket.socketpair()
    number = passed.fileno()
    try:
        with ringfence.Sandbox("strict", pool=1, pass_fds=[passed.fileno()]) as sb:
            r = sb.run(["python3", "-c", _FD_PROBE], capture_output=True, text=True)
    finally:
        mine.close()
        passed.close()
    assert r.returncode == 0, r.stderr
    links = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    sockets = {fd for fd, target in links.items() if target.startswith("socket:")}
    assert sockets == {str(number)}, links  # control: the passed socket is seen


def test_pooled_payload_cannot_outlive_its_run() -> None:
    marker = f"4242.{os.getpid()}"
    script = (
        f"(setsid sleep {marker} </dev/null >/dev/null 2>&1 &); sleep 0.3; "
        f"grep -l {marker} /proc/[0-9]*/cmdline >/dev/null && echo daemon-running"
    )
    with ringfence.Sandbox("strict", pool=1) as sb:
        r = sb.run(["sh", "-c", script], capture_output=True, text=True)
        # PID 1 answers only once its namespace is empty: nothing may be left right now.
        left = pids_with(marker)
    assert r.stdout.strip() == "daemon-running", r.stderr  # control: the daemon did start
    assert left == []


def test_pooled_payload_cannot_signal_pid1_or_forge_its_exit_status() -> None:
    """PID 1 has signal handlers (it forwards signals) and holds the control socket: the
    payload must neither signal it, nor see its fds, nor change the exit status it reports."""
    script = (
        "for s in TERM INT HUP CHLD USR1 STOP; do kill -$s 1 2>/dev/null && echo SIGNALLED-$s; "
        "done; ls /proc/1/fd >/dev/null 2>&1 && echo PID1-FDS; "
        "kill -0 $$ && echo can-signal-self; exit 5"
    )
    with ringfence.Sandbox("strict", pool=1) as sb:
        r = sb.run(["sh", "-c", script], capture_output=True, text=True)
        after = sb.run(["sh", "-c", "kill -TERM $$"])
    assert (r.returncode, r.stdout) == (5, "can-signal-self\n"), r.stdout + r.stderr
    assert after.returncode == 128 + signal.SIGTERM  # the pool still reports honestly


_ATTACKS = textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    def attempt(name, fn):
        try:
            ok = fn()
        except OSError as e:
            ok = False
        print(name, "SUCCEEDED" if ok else "blocked")
    attempt("unshare-user", lambda: libc.unshare(0x10000000) == 0)
    attempt("pid1-environ", lambda: bool(open("/proc/1/environ", "rb").read(1)))
    attempt("shadow", lambda: bool(open("/etc/shadow", "rb").read(1)))
    attempt("write-usr", lambda: bool(open("/usr/.rv", "w")))
    attempt("setuid0", lambda: libc.setuid(0) == 0 and os.getuid() == 0)
    attempt("ptrace-pid1", lambda: libc.ptrace(16, 1, 0, 0) == 0)
    print("caps", open("/proc/self/status").read().split("CapEff:")[1].split()[0])
""")


def test_a_pooled_sandbox_blocks_what_a_fresh_one_blocks() -> None:
    fresh = ringfence.run(["python3", "-c", _ATTACKS], "strict", capture_output=True, text=True)
    with ringfence.Sandbox("strict", pool=1) as sb:
        pooled = sb.run(["python3", "-c", _ATTACKS], capture_output=True, text=True)
    assert fresh.returncode == 0 and pooled.returncode == 0, fresh.stderr + pooled.stderr
    assert len(fresh.stdout.splitlines()) == 7  # control: every attempt ran
    assert "SUCCEEDED" not in fresh.stdout, fresh.stdout
    assert pooled.stdout == fresh.stdout
    assert "caps 0000000000000000" in pooled.stdout


def test_file_arguments_never_bind_sockets_or_fifos(world_tmp: Path) -> None:
    (world_tmp / "doc.txt").write_text("the doc\n")
    (world_tmp / "doc.txt").chmod(0o644)
    os.mkfifo(world_tmp / "fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(world_tmp / "sock"))
    try:
        r = rf("run", "--profile", "desktop", "--display", "none", "--", "sh", "-c",
               'test -e "$0" && echo SOCKET-BOUND; test -e "$1" && echo FIFO-BOUND; cat "$2"',
               str(world_tmp / "sock"), str(world_tmp / "fifo"), str(world_tmp / "doc.txt"))  # fmt: skip
    finally:
        listener.close()
    assert r.stdout == "the doc\n", r.stdout + r.stderr  # control: the regular file is bound


def test_pooled_display_servers_end_with_the_pool() -> None:
    if subprocess.run(["sh", "-c", "command -v Xvfb xdpyinfo"], capture_output=True).returncode:
        pytest.fail("Xvfb/xdpyinfo are not installed: run scripts/setup.sh (make setup)")
    sb = ringfence.Sandbox("strict", pool=1, Display="xvfb")
    try:
        r = sb.run(["sh", "-c", "xdpyinfo | grep -c dimensions"], capture_output=True, text=True)
        assert r.stdout.strip() == "1", r.stderr  # control: the pooled run had its display
        assert sb._pool is not None
        manager = sb._pool.pid
        # The refilled warm sandbox's server (M starts it after the run).
        assert wait_until(lambda: any(comm(p) == "Xvfb" for p in descendants(manager)))
        servers = [p for p in descendants(manager) if comm(p) == "Xvfb"]
    finally:
        sb.close()
    assert not [p for p in servers if alive(p)]
