"""Helpers for integration tests: run the real CLI, find leftover processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence

PYTHON = sys.executable


def rf(
    *args: str,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `ringfence ARGS...` as a real process, capture text output."""
    return subprocess.run(
        [PYTHON, "-m", "ringfence", *args],
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        pass_fds=pass_fds,
        stdin=subprocess.DEVNULL if input is None else None,
    )


def sh(script: str, *opts: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a sandbox with the given ringfence run options."""
    return rf("run", *opts, "--", "sh", "-c", script, **kw)  # type: ignore[arg-type]


def pids_with(marker: str) -> list[int]:
    """Host pids whose command line contains marker (excluding ourselves)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmd:
            found.append(int(entry))
    return found


def comm(pid: int) -> str:
    """The process's name ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def wait_until(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def host_mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}
