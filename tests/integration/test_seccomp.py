"""seccomp against the real kernel: attacks from an unprivileged, filtered child process.

Every attack runs in a forked child that is unprivileged on the host (uid 65534 when the suite
runs as root) but root with full capabilities in a user namespace of its own, so that without
the filter most attacks succeed. Each test shows both sides: the filter refuses the attack,
and the same attack without the filter gets a different answer from the kernel (or, where the
kernel refuses too, the filter answers with a marker errno that only it can produce).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator

import pytest
from _seccomp_attacks import (
    AT_FDCWD,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUSER,
    Outcome,
    libc,
    run,
    run_program,
)
from _seccomp_attacks import call as raw

from ringfence._record import replace
from ringfence.kernel import seccomp

pytestmark = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="attack code uses x86-64 syscall numbers"
)

STRICT = seccomp.strict_policy()
# Same as strict, but deny-list hits answer with an errno no kernel path gives for these calls.
MARKER = errno.ENOTRECOVERABLE
STRICT_MARKED = replace(STRICT, error_number=MARKER)

SIGCHLD = 17
TIOCSTI, TIOCSCTTY, TIOCLINUX = 0x5412, 0x540E, 0x541C


def _strerror(o: Outcome) -> str:
    if o.signal is not None:
        return f"killed by {signal.Signals(o.signal).name}"
    if o.error is not None:
        return f"harness error {o.error}"
    return f"result {o.result}, errno {errno.errorcode.get(o.errno or 0, o.errno)}"


def refused(o: Outcome, err: int) -> bool:
    return o.signal is None and o.error is None and o.result == -1 and o.errno == err


# --- attacks (each runs in the child after the filter is in place) ---------------------------


def _forked_result(result: tuple[int, int]) -> tuple[int, int]:
    """For clone-like calls: a new child leaves at once; the caller reaps it."""
    pid, err = result
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        return 0, 0
    return pid, err


def clone_newuser(_: object) -> tuple[int, int]:
    return _forked_result(raw("clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0))


def clone3_newuser(_: object) -> tuple[int, int]:
    # struct clone_args (linux/sched.h), CLONE_ARGS_SIZE_VER0 = 64
    args = (ctypes.c_uint64 * 8)(CLONE_NEWUSER, 0, 0, 0, SIGCHLD, 0, 0, 0)
    return _forked_result(raw("clone3", ctypes.addressof(args), 64))


def setns_own_userns(_: object) -> tuple[int, int]:
    fd = os.open("/proc/self/ns/user", os.O_RDONLY)
    return raw("setns", fd, CLONE_NEWUSER)


def setns_any_type(_: object) -> tuple[int, int]:
    fd = os.open("/proc/self/ns/user", os.O_RDONLY)
    return raw("setns", fd, 0)


def ptrace_attach_sibling(_: object) -> tuple[int, int]:
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    try:
        return raw("ptrace", 16, pid, 0, 0)  # PTRACE_ATTACH
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def process_vm_readv_self(_: object) -> tuple[int, int]:
    return raw("process_vm_readv", os.getpid(), None, 0, None, 0, 0)


ATTACKS: dict[str, tuple[Callable[[object], tuple[int, int]], int]] = {
    # name: (attack, errno under strict)
    "unshare_newuser": (lambda _: raw("unshare", CLONE_NEWUSER), errno.EPERM),
    "unshare_newns": (lambda _: raw("unshare", CLONE_NEWNS), errno.EPERM),
    "unshare_newuser_high_bits": (
        lambda _: raw("unshare", CLONE_NEWUSER | 0xFFFF_FFFF_0000_0000),
        errno.EPERM,
    ),
    "clone_newuser": (clone_newuser, errno.EPERM),
    "clone3_newuser": (clone3_newuser, errno.ENOSYS),
    "setns": (setns_own_userns, errno.EPERM),
    "mount": (lambda _: raw("mount", None, b"/nonexistent-rf", b"tmpfs", 0, None), errno.EPERM),
    "umount2": (lambda _: raw("umount2", b"/nonexistent-rf", 0), errno.EPERM),
    "fsopen": (lambda _: raw("fsopen", b"tmpfs", 0), errno.EPERM),
    "fspick": (lambda _: raw("fspick", AT_FDCWD, b"/", 0), errno.EPERM),
    "open_tree": (lambda _: raw("open_tree", AT_FDCWD, b"/", 0), errno.EPERM),
    # open_tree_attr (6.15) is unknown to Debian's libseccomp: ringfence's own BPF refuses it.
    "open_tree_attr": (lambda _: raw("open_tree_attr", AT_FDCWD, b"/", 0, None, 0), errno.EPERM),
    "move_mount": (lambda _: raw("move_mount", -1, b"", -1, b"", 0), errno.EPERM),
    "mount_setattr": (
        lambda _: raw("mount_setattr", AT_FDCWD, b"/nonexistent-rf", 0, None, 0),
        errno.EPERM,
    ),
    "pivot_root": (
        lambda _: raw("pivot_root", b"/nonexistent-rf", b"/nonexistent-rf"),
        errno.EPERM,
    ),
    "chroot": (lambda _: raw("chroot", b"/nonexistent-rf"), errno.EPERM),
    "keyctl": (lambda _: raw("keyctl", 0, 0xFFFF_FFFD, 0), errno.EPERM),  # GET_KEYRING_ID session
    "add_key": (lambda _: raw("add_key", b"user", b"rf", b"x", 1, 0xFFFF_FFFE), errno.EPERM),
    "bpf": (lambda _: raw("bpf", 0, 1, 72), errno.EPERM),
    "perf_event_open": (lambda _: raw("perf_event_open", None, 0, -1, -1, 0), errno.EPERM),
    "userfaultfd": (lambda _: raw("userfaultfd", 1), errno.EPERM),  # UFFD_USER_MODE_ONLY
    "ptrace_attach": (ptrace_attach_sibling, errno.EPERM),
    "process_vm_readv": (process_vm_readv_self, errno.EPERM),
    "open_by_handle_at": (lambda _: raw("open_by_handle_at", -1, None, 0), errno.EPERM),
    "name_to_handle_at": (
        lambda _: raw("name_to_handle_at", AT_FDCWD, b"/", None, ctypes.create_string_buffer(8), 0),
        errno.EPERM,
    ),
    "syslog": (lambda _: raw("syslog", 10, None, 0), errno.EPERM),  # SYSLOG_ACTION_SIZE_BUFFER
    "personality_linux32": (lambda _: raw("personality", 0x0008), errno.EPERM),
    "io_uring_setup": (lambda _: raw("io_uring_setup", 1, None), errno.EPERM),
    "kexec_load": (lambda _: raw("kexec_load", 0, 0, None, 0), errno.EPERM),
    "init_module": (lambda _: raw("init_module", None, 0, b""), errno.EPERM),
    "reboot": (lambda _: raw("reboot", 0, 0, 0, None), errno.EPERM),
    "swapon": (lambda _: raw("swapon", b"/nonexistent-rf", 0), errno.EPERM),
    "acct": (lambda _: raw("acct", None), errno.EPERM),
    "settimeofday": (lambda _: raw("settimeofday", None, None), errno.EPERM),
    "iopl": (lambda _: raw("iopl", 3), errno.EPERM),
}

# Calls whose refusal comes from the strict deny-list (not from an argument restriction).
DENY_LISTED = {
    name
    for name, call in [
        ("setns", "setns"),
        ("mount", "mount"),
        ("umount2", "umount2"),
        ("fsopen", "fsopen"),
        ("fspick", "fspick"),
        ("open_tree", "open_tree"),
        ("open_tree_attr", "open_tree_attr"),
        ("move_mount", "move_mount"),
        ("mount_setattr", "mount_setattr"),
        ("pivot_root", "pivot_root"),
        ("chroot", "chroot"),
        ("keyctl", "keyctl"),
        ("add_key", "add_key"),
        ("bpf", "bpf"),
        ("perf_event_open", "perf_event_open"),
        ("userfaultfd", "userfaultfd"),
        ("ptrace_attach", "ptrace"),
        ("process_vm_readv", "process_vm_readv"),
        ("open_by_handle_at", "open_by_handle_at"),
        ("name_to_handle_at", "name_to_handle_at"),
        ("syslog", "syslog"),
        ("io_uring_setup", "io_uring_setup"),
        ("kexec_load", "kexec_load"),
        ("init_module", "init_module"),
        ("reboot", "reboot"),
        ("swapon", "swapon"),
        ("acct", "acct"),
        ("settimeofday", "settimeofday"),
        ("iopl", "iopl"),
    ]  # fmt: skip
    if call in STRICT.syscalls
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_cannot_under_strict(name: str) -> None:
    attack, expected = ATTACKS[name]
    outcome = run(attack, STRICT)
    assert refused(outcome, expected), f"{name} under strict: {_strerror(outcome)}"
    if name in DENY_LISTED:
        marked = run(attack, STRICT_MARKED)
        assert refused(marked, MARKER), f"{name}: filter did not answer: {_strerror(marked)}"
    else:
        control = run(attack, None)
        assert control.error is None, control.error
        assert not refused(control, expected), f"{name}: kernel refuses it anyway, no proof"


def test_strict_deny_list_covers_the_issue_list() -> None:
    required = [
        "unshare",
        "setns",
        "clone",
        "clone3",
        "mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "open_tree_attr",
        "mount_setattr",
        "umount2",
        "pivot_root",
        "chroot",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "name_to_handle_at",
        "syslog",
        "personality",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "acct",
        "swapon",
        "swapoff",
        "reboot",
        "quotactl",
        "lookup_dcookie",
        "vhangup",
        "iopl",
        "ioperm",
        "clock_settime",
        "settimeofday",
        "adjtimex",
        "clock_adjtime",
    ]
    by_restriction = {"unshare", "clone", "clone3", "personality"}
    missing = [n for n in required if n not in STRICT.syscalls and n not in by_restriction]
    assert missing == []
    assert STRICT.restrict_namespaces == () and STRICT.lock_personality


# --- terminal injection ------------------------------------------------------------------


def _controlling_pty() -> int:
    master, slave = os.openpty()
    os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    return slave


def _tiocsti(request: int) -> Callable[[object], tuple[int, int]]:
    def attack(slave: object) -> tuple[int, int]:
        assert isinstance(slave, int)
        return raw("ioctl", slave, request, b"x")

    return attack


@pytest.mark.parametrize(
    "request_value", [TIOCSTI, 0xDEADBEEF_0000_5412], ids=["plain", "high_bits"]
)
def test_cannot_inject_keystrokes_with_tiocsti(request_value: int) -> None:
    attack = _tiocsti(request_value)
    outcome = run(attack, STRICT, setup=_controlling_pty)
    assert refused(outcome, errno.EPERM), _strerror(outcome)
    control = run(attack, None, setup=_controlling_pty)
    assert control.error is None and not refused(control, errno.EPERM), _strerror(control)


def test_cannot_use_tioclinux() -> None:
    attack = _tiocsti(TIOCLINUX)
    outcome = run(attack, STRICT, setup=_controlling_pty)
    assert refused(outcome, errno.EPERM), _strerror(outcome)
    control = run(attack, None, setup=_controlling_pty)
    assert control.error is None and not refused(control, errno.EPERM), _strerror(control)


# --- other ABIs ------------------------------------------------------------------------------


def _i386_call(code: bytes) -> Callable[[object], tuple[int, int]]:
    """Run 32-bit system call code (int 0x80) from this 64-bit process; returns eax."""

    def attack(_: object) -> tuple[int, int]:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        eax = ctypes.CFUNCTYPE(ctypes.c_int)(address)()
        return (eax, 0) if eax >= 0 else (-1, -eax)

    return attack


# mov eax, 20 (getpid, asm/unistd_32.h); int 0x80; ret
I386_GETPID = bytes.fromhex("b814000000cd80c3")
# push rbx; mov eax, 310 (unshare); mov ebx, CLONE_NEWUSER; int 0x80; pop rbx; ret
I386_UNSHARE_NEWUSER = bytes.fromhex("53b836010000bb00000010cd805bc3")


def test_cannot_use_i386_abi_under_strict() -> None:
    outcome = run(_i386_call(I386_GETPID), STRICT, userns=False)
    assert outcome.signal == signal.SIGSYS or refused(outcome, errno.EPERM), _strerror(outcome)
    control = run(_i386_call(I386_GETPID), None, userns=False)
    assert control.succeeded and control.result and control.result > 0, _strerror(control)


def test_cannot_use_x32_abi_under_strict() -> None:
    # x32 is not built into this kernel (ENOSYS), but the filter must not let its numbers in.
    def x32_getpid(_: object) -> tuple[int, int]:
        ctypes.set_errno(0)
        result = raw_syscall_number(0x4000_0000 | 39)
        return result, ctypes.get_errno() if result == -1 else 0

    outcome = run(x32_getpid, STRICT, userns=False)
    assert outcome.signal == signal.SIGSYS, _strerror(outcome)
    control = run(x32_getpid, None, userns=False)
    assert control.signal is None and control.error is None, _strerror(control)


def raw_syscall_number(number: int) -> int:
    return int(libc.syscall(ctypes.c_long(number)))


def test_restrictions_cover_i386_abi_when_it_is_allowed() -> None:
    policy = seccomp.parse_keys({"RestrictNamespaces": True})
    assert policy.architectures is None
    outcome = run(_i386_call(I386_UNSHARE_NEWUSER), policy)
    assert refused(outcome, errno.EPERM), _strerror(outcome)
    control = run(_i386_call(I386_UNSHARE_NEWUSER), None)
    assert control.succeeded, _strerror(control)


# --- normal programs still work ------------------------------------------------------------


def test_shell_and_ls_work_under_strict() -> None:
    status, out = run_program(["/bin/sh", "-c", "ls / >/dev/null && echo ok"], STRICT)
    assert (status, out) == (0, b"ok\n")


def test_python_works_under_strict() -> None:
    code = "import json, socket, subprocess, threading; subprocess.run(['/bin/true'], check=True); print('ok')"
    status, out = run_program([sys.executable, "-c", code], STRICT)
    assert (status, out) == (0, b"ok\n")


def test_exported_filter_loads_without_libseccomp() -> None:
    blob = seccomp.export_bpf(STRICT)
    attack, expected = ATTACKS["fsopen"]
    assert refused(run(attack, blob), expected)
    assert run(_i386_call(I386_GETPID), blob, userns=False).signal == signal.SIGSYS
    status, out = run_program(["/bin/sh", "-c", "echo ok"], blob)
    assert (status, out) == (0, b"ok\n")


def test_prepared_filter_is_what_install_loads() -> None:
    attack, expected = ATTACKS["unshare_newuser"]
    assert refused(run(attack, STRICT, prepared=True), expected)


# --- the systemd-style restrictions one by one ----------------------------------------------


def _socket(family: int, kind: int = 3) -> Callable[[object], tuple[int, int]]:
    return lambda _: raw("socket", family, kind, 0)


AF_UNIX, AF_NETLINK, AF_PACKET = 1, 16, 17
SOCK_STREAM, SOCK_RAW = 1, 3


def test_address_family_allow_list() -> None:
    policy = seccomp.parse_keys({"RestrictAddressFamilies": ["AF_UNIX", "AF_INET", "AF_INET6"]})
    for family in (AF_PACKET, AF_NETLINK, 0xFFFF_FFFF_0000_0000 | AF_NETLINK):
        outcome = run(_socket(family), policy)
        assert refused(outcome, errno.EAFNOSUPPORT), (hex(family), _strerror(outcome))
        control = run(_socket(family), None)
        assert not refused(control, errno.EAFNOSUPPORT), (hex(family), _strerror(control))
    assert run(_socket(AF_UNIX, SOCK_STREAM), policy).succeeded


def test_address_family_deny_list() -> None:
    policy = seccomp.parse_keys({"RestrictAddressFamilies": "~AF_NETLINK AF_PACKET"})
    for family in (AF_NETLINK, 0xFFFF_FFFF_0000_0000 | AF_NETLINK):
        assert refused(run(_socket(family), policy), errno.EAFNOSUPPORT)
        assert run(_socket(family), None).succeeded
    assert run(_socket(AF_UNIX, SOCK_STREAM), policy).succeeded


def test_address_family_none_refuses_every_socket() -> None:
    policy = seccomp.parse_keys({"RestrictAddressFamilies": "none"})
    assert refused(run(_socket(AF_UNIX, SOCK_STREAM), policy), errno.EAFNOSUPPORT)
    assert run(_socket(AF_UNIX, SOCK_STREAM), None).succeeded


def _mmap(prot: int) -> Callable[[object], tuple[int, int]]:
    return lambda _: raw("mmap", None, 4096, prot, 0x22, -1, 0)  # MAP_PRIVATE | MAP_ANONYMOUS


def _mprotect_rw_to_rx(_: object) -> tuple[int, int]:
    address, err = raw("mmap", None, 4096, 3, 0x22, -1, 0)
    assert err == 0
    return raw("mprotect", address, 4096, 5)


def test_memory_deny_write_execute() -> None:
    policy = seccomp.parse_keys({"MemoryDenyWriteExecute": True})
    for attack in (_mmap(7), _mprotect_rw_to_rx):
        assert refused(run(attack, policy), errno.EPERM)
        assert run(attack, None).succeeded
    assert run(_mmap(5), policy).succeeded  # R|X without W is fine


@pytest.fixture
def shared_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="rf-seccomp-")
    os.chmod(path, 0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_cannot_create_setuid_or_setgid_files(shared_dir: str) -> None:
    policy = seccomp.parse_keys({"RestrictSUIDSGID": True})
    target = os.path.join(shared_dir, "f").encode()

    def make() -> None:
        fd = os.open(target, os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)

    def setup() -> object:
        if not os.path.exists(target):
            make()
        return None

    attacks = {
        "chmod u+s": lambda _: raw("chmod", target, 0o4755),
        "chmod g+s": lambda _: raw("chmod", target, 0o2755),
        "fchmodat u+s": lambda _: raw("fchmodat", AT_FDCWD, target, 0o4755, 0),
        "open O_CREAT 04755": lambda _: raw(
            "open", target + b"2", os.O_CREAT | os.O_WRONLY, 0o4755
        ),
    }
    for what, attack in attacks.items():
        outcome = run(attack, policy, setup=setup)
        assert refused(outcome, errno.EPERM), (what, _strerror(outcome))
        control = run(attack, None, setup=setup)
        assert control.succeeded, (what, _strerror(control))
    assert run(lambda _: raw("chmod", target, 0o755), policy, setup=setup).succeeded


def test_cannot_gain_realtime_scheduling() -> None:
    policy = seccomp.parse_keys({"RestrictRealtime": True})
    attacks = {
        # A NULL param makes the kernel answer EINVAL before any permission check.
        "SCHED_FIFO": lambda _: raw("sched_setscheduler", 0, 1, None),
        "SCHED_RR|RESET_ON_FORK": lambda _: raw("sched_setscheduler", 0, 2 | 0x4000_0000, None),
        "SCHED_DEADLINE": lambda _: raw("sched_setscheduler", 0, 6, None),
        "sched_setattr": lambda _: raw("sched_setattr", 0, None, 0),
    }
    for what, attack in attacks.items():
        assert refused(run(attack, policy), errno.EPERM), what
        assert refused(run(attack, None), errno.EINVAL), what
    param = ctypes.create_string_buffer(4)  # struct sched_param { int sched_priority = 0 }
    assert run(lambda _: raw("sched_setscheduler", 0, 0, param), policy).succeeded


def _personality(persona: int) -> Callable[[object], tuple[int, int]]:
    return lambda _: raw("personality", persona)


def test_lock_personality() -> None:
    policy = seccomp.parse_keys({"LockPersonality": True})
    # PER_LINUX32, ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, almost-the-query, upper bits set
    for persona in (0x0008, 0x0040000, 0x0400000, 0xFFFFFFFE, 0x1_0000_0000):
        assert refused(run(_personality(persona), policy), errno.EPERM), hex(persona)
        assert run(_personality(persona), None).succeeded, hex(persona)
    for persona in (0, 0xFFFFFFFF):  # PER_LINUX and the query stay allowed
        assert run(_personality(persona), policy).succeeded, hex(persona)


def test_restrict_namespaces_allow_list() -> None:
    policy = seccomp.parse_keys({"RestrictNamespaces": ["net"]})
    assert run(lambda _: raw("unshare", CLONE_NEWNET), policy).succeeded
    assert refused(run(lambda _: raw("unshare", CLONE_NEWUSER), policy), errno.EPERM)
    assert refused(run(setns_any_type, policy), errno.EPERM)
    assert refused(run(setns_any_type, None), errno.EINVAL)


def test_allow_list_refuses_everything_else() -> None:
    policy = seccomp.parse_keys(
        {"SystemCallFilter": "@system-service", "SystemCallErrorNumber": "EACCES"}
    )
    attack, _ = ATTACKS["mount"]
    assert refused(run(attack, policy), errno.EACCES)
    status, out = run_program(["/bin/sh", "-c", "ls / >/dev/null && echo ok"], policy)
    assert (status, out) == (0, b"ok\n")


def test_allow_list_without_clone3_still_starts_threads() -> None:
    policy = seccomp.parse_keys({"SystemCallFilter": ["@system-service", "~clone3"]})
    assert refused(run(clone3_newuser, policy), errno.ENOSYS)  # so libc falls back to clone
    code = "import threading; t = threading.Thread(target=print, args=('ok',)); t.start(); t.join()"
    status, out = run_program([sys.executable, "-c", code], policy)
    assert (status, out) == (0, b"ok\n")


def test_error_number_kill_kills_the_process() -> None:
    policy = seccomp.parse_keys({"SystemCallFilter": "~getppid"})  # systemd's default: kill
    outcome = run(lambda _: (raw_syscall_number(110), 0), policy)
    assert outcome.signal == signal.SIGSYS, _strerror(outcome)
    assert run(lambda _: (raw_syscall_number(110), 0), None).signal is None


def test_allow_list_with_every_restriction_still_runs_programs() -> None:
    # The allow-list does not allow seccomp() itself: it must be the last filter loaded.
    policy = seccomp.parse_keys(
        {
            "SystemCallFilter": "@system-service",
            "RestrictNamespaces": True,
            "RestrictAddressFamilies": "AF_UNIX AF_INET",
            "LockPersonality": True,
            "MemoryDenyWriteExecute": True,
            "RestrictRealtime": True,
            "RestrictSUIDSGID": True,
            "BlockTerminalInjection": True,
            "DenyUnknownSystemCalls": True,
        }
    )
    for filt in (policy, seccomp.export_bpf(policy)):
        status, out = run_program(["/bin/sh", "-c", "ls / >/dev/null && echo ok"], filt)
        assert (status, out) == (0, b"ok\n")
    assert refused(run(lambda _: raw("unshare", CLONE_NEWUSER), policy), errno.EPERM)
    attack, _ = ATTACKS["mount"]
    assert run(attack, policy).signal == signal.SIGSYS  # not allowed: systemd's default kill
