"""Harness for the seccomp integration tests: run one attack in a forked, unprivileged child.

The child drops to uid 65534 when the tests run as root, optionally enters a user and mount
namespace of its own (so that, without a filter, most attacks *succeed*: that is the control
showing the filter is what stops them), sets no_new_privs, installs the filter under test, runs
the attack with raw syscalls and reports ``(return value, errno)`` through a pipe. A child
killed by the filter is reported by its signal.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from ringfence.kernel import seccomp

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# asm/unistd_64.h
NR = {
    "ioctl": 16, "sched_setscheduler": 144, "personality": 135, "mmap": 9, "mprotect": 10,
    "socket": 41, "clone": 56, "chmod": 90, "ptrace": 101, "syslog": 103, "chroot": 161,
    "mount": 165, "umount2": 166, "pivot_root": 155, "getpid": 39, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "open": 2, "fchmodat": 268,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "sched_setattr": 314, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fspick": 433, "clone3": 435, "mount_setattr": 442, "open_tree_attr": 467,
    "kexec_load": 246, "init_module": 175, "reboot": 169, "swapon": 167, "acct": 163,
    "settimeofday": 164, "iopl": 172,
}  # fmt: skip

CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x00020000, 0x40000000
AT_FDCWD = -100


def call(name: str, *args: int | bytes | None | ctypes.Array[ctypes.c_char]) -> tuple[int, int]:
    """Raw syscall; returns (result, errno) with errno 0 on success."""
    conv: list[object] = []
    for a in args:
        if isinstance(a, int):
            conv.append(ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF))
        elif a is None:
            conv.append(ctypes.c_void_p(None))
        else:
            conv.append(a)
    ctypes.set_errno(0)
    result = int(libc.syscall(ctypes.c_long(NR[name]), *conv))
    return result, (ctypes.get_errno() if result == -1 else 0)


@dataclass(frozen=True)
class Outcome:
    result: int | None = None
    errno: int | None = None
    signal: int | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.signal is None and self.errno == 0 and self.error is None


def _drop_to_unprivileged() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        # A uid change clears the dumpable flag, which makes /proc/self root's.
        libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE


def _enter_userns() -> None:
    uid, gid = os.getuid(), os.getgid()
    result, err = call("unshare", CLONE_NEWUSER | CLONE_NEWNS)
    if result != 0:
        raise OSError(err, "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def set_no_new_privs() -> None:
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


Filter = seccomp.SeccompPolicy | bytes | None


def run(
    attack: Callable[[object], tuple[int, int]],
    filt: Filter,
    *,
    userns: bool = True,
    setup: Callable[[], object] | None = None,
    prepared: bool = False,
) -> Outcome:
    """Fork a child; there: drop privileges, (userns), setup(), no_new_privs, the filter
    (a policy for install(), or bytes for load_bpf()), then attack(setup's result)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            _drop_to_unprivileged()
            if userns:
                _enter_userns()
            state = setup() if setup is not None else None
            set_no_new_privs()
            if isinstance(filt, bytes):
                seccomp.load_bpf(filt)
            elif filt is not None:
                if prepared:
                    seccomp.prepare(filt)
                seccomp.install(filt)
            result, err = attack(state)
            os.write(w, json.dumps({"result": result, "errno": err}).encode())
        except BaseException as exc:  # report, never raise into pytest's copy of itself
            try:
                os.write(w, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
            finally:
                code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return Outcome(signal=os.WTERMSIG(status))
    data = json.loads(b"".join(chunks) or b"{}")
    return Outcome(data.get("result"), data.get("errno"), None, data.get("error"))


def run_program(argv: list[str], filt: Filter) -> tuple[int, bytes]:
    """execve argv in an unprivileged child under the filter; return (exit status, stdout)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            _drop_to_unprivileged()
            set_no_new_privs()
            if isinstance(filt, bytes):
                seccomp.load_bpf(filt)
            elif filt is not None:
                seccomp.install(filt)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def reap(pid: int) -> None:
    """Kill and reap a process the attack created, ignoring that it is already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
