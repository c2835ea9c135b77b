"""The terminal: an interactive payload gets a fresh pseudo-terminal, never the caller's."""

from __future__ import annotations

import os
import pty
import select
import sys
import time

PROBE = r"""
import fcntl, os, termios
print("TTY", os.ttyname(0), flush=True)
print("SID-LEADER", os.getsid(0) == os.getpid(), flush=True)
try:
    fd = os.open("/dev/tty", os.O_RDWR)
    fcntl.ioctl(fd, termios.TIOCSTI, b"X")
    print("TIOCSTI-DEVTTY injected", flush=True)
except OSError as e:
    print("TIOCSTI-DEVTTY blocked", e.errno, flush=True)
line = input()
print("GOT", line, flush=True)
"""


def _run_in_pty(argv: list[str], send: bytes, timeout: float = 30) -> tuple[bytes, int]:
    pid, master = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    out = b""
    deadline = time.monotonic() + timeout
    sent = False
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.1)
        if master in r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not sent and b"TIOCSTI-DEVTTY" in out:
            os.write(master, send)
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(master)
    return out, os.waitstatus_to_exitcode(status)


def test_interactive_payload_gets_its_own_pty_and_cannot_inject_into_the_callers():
    out, code = _run_in_pty(
        [sys.executable, "-m", "ringfence", "run", "--", "python3", "-c", PROBE], b"hello\r"
    )
    text = out.decode(errors="replace")
    assert code == 0, text
    assert "GOT hello" in text  # input is relayed through the launcher
    assert "TTY /dev/console" in text  # a fresh pty, found by ttyname() inside
    assert "SID-LEADER True" in text  # its own session, controlling terminal = the new pty
    assert "TIOCSTI-DEVTTY injected" not in text  # seccomp blocks TIOCSTI even on its own tty
    # Nothing was typed into the caller's terminal: the only input is what we sent.
    assert "X" not in text.split("TIOCSTI-DEVTTY")[1].split("GOT")[0].replace("EPERM", "")
