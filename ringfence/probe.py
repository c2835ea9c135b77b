"""``ringfence probe``: attack a sandbox from inside and report what it really blocks.

Owns: the checks (one per vector of ESCAPES.md: files, processes, privileges, syscalls,
terminal, IPC, network, identity, resources), the host side that plants what they look for
(markers in /tmp and /dev/shm, a canary in the caller's home, loopback listeners, an abstract
and a pathname unix socket, a SysV shared memory segment, an inherited fd, an environment
canary) and removes all of it afterwards, and the verdict: for each check what the profile
claims (BLOCKED, or allowed and why) against what happened.

How it runs: the host side compiles the same plan as ``ringfence run`` would, then launches ONE
sandbox running ``/usr/bin/python3 -I -S -c <the probe program>`` with a JSON configuration as
its argument. The probe program is the region of this file between the ``probe-inside``
markers, sent as text: after pivot_root the sandbox cannot import ringfence, so that region
uses the standard library only and must stay self-contained. Inside, every check runs in its
own forked child, in its own process group, with a deadline: a check that hangs is killed and
reported as TIMEOUT, one killed by SIGSYS (seccomp) as BLOCKED; the probe itself never hangs,
and the host side bounds the whole run too.

Must never: leave a marker, listener, socket, shared memory segment or fd behind (cleanup runs
in ``finally``, also on SIGTERM), contact any address other than loopback (the route checks use
UDP connect(), which sends nothing), or write anything but its own marked files.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .plan import Plan

# >>> probe-inside: everything down to the closing marker is sent into the sandbox as text.

BLOCKED, EXPOSED, NA, TIMEOUT, ERROR = "BLOCKED", "EXPOSED", "N/A", "TIMEOUT", "ERROR"
CREATED = "CREATED"  # provisional: a write succeeded; the host side decides where it landed

# Syscall numbers: asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
# fmt: off
_NR: dict[str, dict[str, int]] = {
    "x86_64": {
        "capget": 125, "chroot": 161, "clone": 56, "clone3": 435, "fsopen": 430,
        "init_module": 175, "io_uring_setup": 425, "kexec_load": 246, "keyctl": 250,
        "mount": 165, "name_to_handle_at": 303, "open_by_handle_at": 304, "open_tree": 428,
        "perf_event_open": 298, "personality": 135, "pivot_root": 155, "bpf": 321,
        "process_vm_readv": 310, "ptrace": 101, "setns": 308, "syslog": 103, "umount2": 166,
        "unshare": 272, "userfaultfd": 323,
    },
    "aarch64": {
        "capget": 90, "chroot": 51, "clone": 220, "clone3": 435, "fsopen": 430,
        "init_module": 105, "io_uring_setup": 425, "kexec_load": 104, "keyctl": 219,
        "mount": 40, "name_to_handle_at": 264, "open_by_handle_at": 265, "open_tree": 428,
        "perf_event_open": 241, "personality": 92, "pivot_root": 41, "bpf": 280,
        "process_vm_readv": 270, "ptrace": 117, "setns": 268, "syslog": 116, "umount2": 39,
        "unshare": 97, "userfaultfd": 282,
    },
}
# fmt: on

# linux/sched.h, linux/mount.h, linux/ptrace.h, linux/keyctl.h, linux/prctl.h, asm/ioctls.h
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_REMOUNT = 32
MS_BIND = 4096
OPEN_TREE_CLONE = 1
FSOPEN_CLOEXEC = 1
PTRACE_SEIZE = 0x4206
KEYCTL_GET_KEYRING_ID = 0
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
PR_CAPBSET_READ = 23
PR_GET_SECCOMP = 21
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
TIOCSTI = 0x5412
SIOCGIFHWADDR = 0x8927
UFFD_USER_MODE_ONLY = 1
ADDR_NO_RANDOMIZE = 0x0040000
AT_FDCWD = -100
IPC_STAT = 2

_lib: list[Any] = []


def _libc() -> Any:
    if not _lib:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        _lib.append(lib)
    return _lib[0]


def _arg(a: object) -> object:
    if a is None:
        return ctypes.c_void_p(None)
    if isinstance(a, bool):
        return ctypes.c_long(int(a))
    if isinstance(a, int):
        return ctypes.c_long(a)
    if isinstance(a, bytes):
        return ctypes.c_char_p(a)
    return a


def _sys(name: str, *args: object) -> tuple[int, int]:
    """(return value, errno) of a raw syscall; ENOSYS when this machine has no number for it."""
    nr = _NR.get(os.uname().machine, {}).get(name)
    if nr is None:
        return -1, errno.ENOSYS
    ctypes.set_errno(0)
    ret = int(_libc().syscall(ctypes.c_long(nr), *[_arg(a) for a in args]))
    return ret, (ctypes.get_errno() if ret < 0 else 0)


def _en(err: int | None) -> str:
    return errno.errorcode.get(err or 0, str(err))


def _closing(ret: int) -> None:
    if ret >= 0:
        try:
            os.close(ret)
        except OSError:
            pass


def _syscall_verdict(what: str, ret: int, err: int, success: str) -> tuple[str, str]:
    """Blocked means the kernel refused (EPERM/EACCES), the call is filtered or absent (ENOSYS),
    or it failed for another reason after reaching the kernel (then said so)."""
    if ret >= 0:
        return EXPOSED, f"{what}: {success}"
    if err in (errno.EPERM, errno.EACCES):
        return BLOCKED, f"{what}: {_en(err)}"
    if err == errno.ENOSYS:
        return BLOCKED, f"{what}: ENOSYS (filtered, or not built into this kernel)"
    return BLOCKED, f"{what}: {_en(err)} (the call reached the kernel: not filtered)"


def _read(path: str, size: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _sleeper() -> int:
    """A child of the check that only waits (a target for ptrace and process_vm_readv)."""
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                signal.pause()
        finally:
            os._exit(0)
    return pid


# -- files -----------------------------------------------------------------------------------


def _c_home_canary(cfg: dict[str, Any]) -> tuple[str, str]:
    canary = cfg.get("home_canary")
    if not canary:
        return NA, "could not plant a canary in the caller's home (not writable)"
    path = canary["path"]
    try:
        data = _read(path)
    except OSError as e:
        return BLOCKED, f"{path}: {_en(e.errno)}"
    if canary["token"].encode() in data:
        return EXPOSED, f"read the canary {path}"
    return BLOCKED, f"{path} is not the host's file"


def _c_home_list(cfg: dict[str, Any]) -> tuple[str, str]:
    home, host = cfg["home"], set(cfg.get("home_entries") or ())
    if not host:
        return NA, f"{home} is empty or unreadable on the host"
    try:
        entries = set(os.listdir(home))
    except OSError as e:
        return BLOCKED, f"{home}: {_en(e.errno)}"
    shared = sorted(host & entries)
    if shared:
        return EXPOSED, f"{home} lists {len(shared)} of the host's entries (e.g. {shared[0]})"
    return BLOCKED, f"{home} holds none of the host's {len(host)} entries"


def _c_ssh_keys(cfg: dict[str, Any]) -> tuple[str, str]:
    ssh = os.path.join(cfg["home"], ".ssh")
    host = cfg.get("ssh_entries")
    if host is None:
        return NA, f"the host has no readable {ssh}"
    try:
        entries = os.listdir(ssh)
    except OSError as e:
        return BLOCKED, f"{ssh}: {_en(e.errno)}"
    for name in entries:
        try:
            if _read(os.path.join(ssh, name), 64):
                return EXPOSED, f"read {ssh}/{name}"
        except OSError:
            continue
    if set(entries) & set(host):
        return EXPOSED, f"{ssh} lists the host's keys ({len(entries)} entries)"
    return BLOCKED, f"{ssh} is not the host's ({len(entries)} entries)"


def _c_etc_shadow(cfg: dict[str, Any]) -> tuple[str, str]:
    try:
        data = _read("/etc/shadow")
    except OSError as e:
        return BLOCKED, f"/etc/shadow: {_en(e.errno)}"
    if b":" in data:
        return EXPOSED, "read /etc/shadow"
    return BLOCKED, "/etc/shadow holds no hashes"


def _c_root_home(cfg: dict[str, Any]) -> tuple[str, str]:
    try:
        entries = set(os.listdir("/root"))
    except OSError as e:
        return BLOCKED, f"/root: {_en(e.errno)}"
    host = cfg.get("root_entries")
    if host is not None:
        shared = sorted(entries & set(host))
        if shared:
            return EXPOSED, f"/root lists the host's entries (e.g. {shared[0]})"
        return BLOCKED, f"/root holds none of the host's entries ({len(entries)} entries)"
    if entries:
        return EXPOSED, f"/root lists {len(entries)} entries"
    return BLOCKED, "/root is empty"


def _write_into(directory: str, cfg: dict[str, Any]) -> tuple[str, str]:
    path = os.path.join(directory, cfg["write_marker"])
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        return BLOCKED, f"create {path}: {_en(e.errno)}"
    os.close(fd)
    return CREATED, path


def _c_write_usr(cfg: dict[str, Any]) -> tuple[str, str]:
    return _write_into("/usr", cfg)


def _c_write_etc(cfg: dict[str, Any]) -> tuple[str, str]:
    return _write_into("/etc", cfg)


def _c_write_root(cfg: dict[str, Any]) -> tuple[str, str]:
    return _write_into("/", cfg)


def _c_host_tmp(cfg: dict[str, Any]) -> tuple[str, str]:
    marker = cfg["tmp_marker"]
    try:
        os.lstat(marker)
    except OSError as e:
        return BLOCKED, f"the host's marker {marker}: {_en(e.errno)}"
    return EXPOSED, f"the host's marker {marker} is visible"


def _mountinfo() -> list[list[str]] | None:
    try:
        with open("/proc/self/mountinfo") as f:
            return [line.split() for line in f]
    except OSError:
        return None


def _c_old_root(cfg: dict[str, Any]) -> tuple[str, str]:
    host = cfg.get("root_mount")
    if not host:
        return NA, "the host's root mount is unknown"
    lines = _mountinfo()
    if lines is None:
        return BLOCKED, "no /proc/self/mountinfo; / is the sandbox's own"
    for parts in lines:
        if len(parts) > 4 and parts[2] == host[0] and parts[3] == host[1]:
            return EXPOSED, f"the host's root filesystem is mounted at {parts[4]}"
    return (
        BLOCKED,
        f"the host's root filesystem ({host[0]}) is not mounted whole ({len(lines)} mounts)",
    )


# -- processes -------------------------------------------------------------------------------


def _c_host_processes(cfg: dict[str, Any]) -> tuple[str, str]:
    host = cfg["host_process"]
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError as e:
        return BLOCKED, f"/proc: {_en(e.errno)} (no process list)"
    for pid in pids:
        try:
            stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        if comm == host["comm"] and len(fields) > 19 and fields[19] == str(host["starttime"]):
            return EXPOSED, f"the host's probe process is visible as pid {pid}"
    return BLOCKED, f"{len(pids)} processes visible, none of the host's"


def _c_proc_sys_write(cfg: dict[str, Any]) -> tuple[str, str]:
    results = []
    for path in (
        "/proc/sys/kernel/hostname",
        "/proc/sys/vm/overcommit_memory",
        "/proc/sys/kernel/core_pattern",
        "/proc/sysrq-trigger",
    ):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            results.append(f"{path.rsplit('/', 1)[1]}: {_en(e.errno)}")
            continue
        os.close(fd)  # opened for writing is enough: nothing is written
        return EXPOSED, f"{path} opens for writing"
    return BLOCKED, ", ".join(results)


def _c_proc_kcore(cfg: dict[str, Any]) -> tuple[str, str]:
    try:
        data = _read("/proc/kcore", 16)
    except OSError as e:
        return BLOCKED, f"/proc/kcore: {_en(e.errno)}"
    return (EXPOSED, "read /proc/kcore") if data else (BLOCKED, "/proc/kcore reads empty")


def _c_kallsyms(cfg: dict[str, Any]) -> tuple[str, str]:
    try:
        data = _read("/proc/kallsyms", 1 << 16)
    except OSError as e:
        return BLOCKED, f"/proc/kallsyms: {_en(e.errno)}"
    lines = data.splitlines()[:-1]
    for line in lines:
        addr = line.split(b" ", 1)[0]
        if addr.strip(b"0"):
            return EXPOSED, f"kernel addresses visible ({line.decode(errors='replace')[:40]})"
    return BLOCKED, f"addresses hidden (all zero in {len(lines)} lines)"


def _c_ptrace(cfg: dict[str, Any]) -> tuple[str, str]:
    target = _sleeper()
    try:
        ret, err = _sys("ptrace", PTRACE_SEIZE, target, 0, 0)
        return _syscall_verdict("ptrace(PTRACE_SEIZE) of a sandbox process", ret, err, "attached")
    finally:
        os.kill(target, signal.SIGKILL)
        os.waitpid(target, 0)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _c_process_vm_readv(cfg: dict[str, Any]) -> tuple[str, str]:
    src = ctypes.create_string_buffer(b"ringfence-probe", 16)
    target = _sleeper()  # a copy of this process: the same address holds the same bytes
    try:
        dst = ctypes.create_string_buffer(16)
        local = _Iovec(ctypes.cast(dst, ctypes.c_void_p), 16)
        remote = _Iovec(ctypes.cast(src, ctypes.c_void_p), 16)
        ret, err = _sys(
            "process_vm_readv", target, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0
        )
        return _syscall_verdict(
            "process_vm_readv of a sandbox process", ret, err, f"read {dst.value!r} from its memory"
        )
    finally:
        os.kill(target, signal.SIGKILL)
        os.waitpid(target, 0)


# -- privileges ------------------------------------------------------------------------------


def _c_capabilities(cfg: dict[str, Any]) -> tuple[str, str]:
    header = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0), 8)
    data = ctypes.create_string_buffer(24)
    ret, err = _sys("capget", header, data)
    if ret < 0:
        return ERROR, f"capget: {_en(err)}"
    eff0, prm0, inh0, eff1, prm1, inh1 = struct.unpack("6I", data.raw)
    sets = {
        "effective": eff0 | eff1 << 32,
        "permitted": prm0 | prm1 << 32,
        "inheritable": inh0 | inh1 << 32,
    }
    lib = _libc()
    bounding = ambient = 0
    for cap in range(64):
        r = lib.prctl(PR_CAPBSET_READ, cap, 0, 0, 0)
        if r < 0:
            break
        bounding |= r << cap
        if lib.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1:
            ambient |= 1 << cap
    sets["bounding"], sets["ambient"] = bounding, ambient
    held = [f"{k}={v:#x}" for k, v in sets.items() if v]
    if held:
        return EXPOSED, "capabilities held: " + ", ".join(held)
    return BLOCKED, "every capability set is empty"


def _c_no_new_privs(cfg: dict[str, Any]) -> tuple[str, str]:
    lib = _libc()
    nnp = lib.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
    mode = {0: "none", 1: "strict", 2: "filter"}.get(lib.prctl(PR_GET_SECCOMP, 0, 0, 0, 0), "?")
    if nnp == 1:
        return BLOCKED, f"no_new_privs set (setuid binaries gain nothing); seccomp {mode}"
    return EXPOSED, f"no_new_privs is not set; seccomp {mode}"


def _c_userns_unshare(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("unshare", CLONE_NEWUSER)
    return _syscall_verdict(
        "unshare(CLONE_NEWUSER)", ret, err, "a nested user namespace (full capabilities inside it)"
    )


def _clone_result(what: str, ret: int, err: int) -> tuple[str, str]:
    if ret == 0:  # the new child: leave at once, without running Python's exit handlers
        os._exit(0)
    if ret > 0:
        os.waitpid(ret, 0)
    return _syscall_verdict(what, ret, err, "a child in a nested user namespace")


def _c_userns_clone(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("clone", CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
    return _clone_result("clone(CLONE_NEWUSER)", ret, err)


def _c_userns_clone3(cfg: dict[str, Any]) -> tuple[str, str]:
    # struct clone_args (linux/sched.h), version 0: 8 u64 fields.
    args = ctypes.create_string_buffer(
        struct.pack("8Q", CLONE_NEWUSER, 0, 0, 0, signal.SIGCHLD, 0, 0, 0), 64
    )
    ret, err = _sys("clone3", args, 64)
    return _clone_result("clone3(CLONE_NEWUSER)", ret, err)


# -- syscalls --------------------------------------------------------------------------------


def _c_setns(cfg: dict[str, Any]) -> tuple[str, str]:
    try:
        fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    try:
        ret, err = _sys("setns", fd, CLONE_NEWNET)
    finally:
        _closing(fd)
    return _syscall_verdict("setns(CLONE_NEWNET)", ret, err, "joined a network namespace")


def _c_mount(cfg: dict[str, Any]) -> tuple[str, str]:
    target = b"/tmp" if os.path.isdir("/tmp") else b"/"
    ret, err = _sys("mount", b"none", target, b"tmpfs", 0, None)
    if ret == 0:
        _sys("umount2", target, 2)
    return _syscall_verdict(f"mount tmpfs on {target.decode()}", ret, err, "mounted")


def _c_remount_rw(cfg: dict[str, Any]) -> tuple[str, str]:
    target = b"/usr" if os.path.isdir("/usr") else b"/"
    ret, err = _sys("mount", None, target, None, MS_REMOUNT | MS_BIND, None)
    return _syscall_verdict(f"remount {target.decode()} read-write", ret, err, "remounted")


def _c_open_tree(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("open_tree", AT_FDCWD, b"/", OPEN_TREE_CLONE | os.O_CLOEXEC)
    _closing(ret)
    return _syscall_verdict("open_tree(/, OPEN_TREE_CLONE)", ret, err, "a detached copy of /")


def _c_fsopen(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("fsopen", b"tmpfs", FSOPEN_CLOEXEC)
    _closing(ret)
    return _syscall_verdict("fsopen(tmpfs)", ret, err, "a filesystem context")


def _c_pivot_root(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("pivot_root", b".", b".")
    return _syscall_verdict("pivot_root", ret, err, "pivoted")


def _c_chroot(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("chroot", b"/")
    return _syscall_verdict("chroot", ret, err, "changed root")


def _c_bpf(cfg: dict[str, Any]) -> tuple[str, str]:
    # union bpf_attr for BPF_MAP_CREATE: an array map of one 4-byte entry.
    attr = ctypes.create_string_buffer(struct.pack("4I", 2, 4, 4, 1) + bytes(112), 128)
    ret, err = _sys("bpf", 0, attr, 128)
    _closing(ret)
    return _syscall_verdict("bpf(BPF_MAP_CREATE)", ret, err, "created a BPF map")


def _c_perf_event_open(cfg: dict[str, Any]) -> tuple[str, str]:
    # struct perf_event_attr, PERF_ATTR_SIZE_VER0: software CPU clock of this process, user
    # space only (disabled | exclude_kernel | exclude_hv).
    attr = ctypes.create_string_buffer(
        struct.pack("IIQQQQQIIQ", 1, 64, 0, 0, 0, 0, 1 | 1 << 5 | 1 << 6, 0, 0, 0), 64
    )
    ret, err = _sys("perf_event_open", attr, 0, -1, -1, 8)
    _closing(ret)
    return _syscall_verdict("perf_event_open", ret, err, "opened a performance counter")


def _c_userfaultfd(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("userfaultfd", os.O_CLOEXEC | UFFD_USER_MODE_ONLY)
    _closing(ret)
    return _syscall_verdict("userfaultfd", ret, err, "opened a userfaultfd")


def _c_keyctl(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
    return _syscall_verdict("keyctl", ret, err, f"callable (session keyring {ret})")


def _keyring(cfg: dict[str, Any], spec: int, key: str, name: str) -> tuple[str, str]:
    host = (cfg.get("keyrings") or {}).get(key)
    ret, err = _sys("keyctl", KEYCTL_GET_KEYRING_ID, spec, 0)
    if ret < 0:
        return BLOCKED, f"keyctl({name}): {_en(err)}"
    if host is None:
        return NA, f"the host has no {name} keyring to compare with"
    if ret == host:
        return EXPOSED, f"{name} is the caller's keyring ({ret})"
    return BLOCKED, f"{name} is another keyring ({ret}, the caller's is {host})"


def _c_keyring_session(cfg: dict[str, Any]) -> tuple[str, str]:
    return _keyring(cfg, KEY_SPEC_SESSION_KEYRING, "session", "@s")


def _c_keyring_user(cfg: dict[str, Any]) -> tuple[str, str]:
    return _keyring(cfg, KEY_SPEC_USER_KEYRING, "user", "@u")


def _c_kexec_load(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("kexec_load", 0, 0, None, 0)
    return _syscall_verdict("kexec_load", ret, err, "accepted")


def _c_init_module(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("init_module", None, 0, b"")
    return _syscall_verdict("init_module", ret, err, "accepted")


def _c_open_by_handle_at(cfg: dict[str, Any]) -> tuple[str, str]:
    # struct file_handle: handle_bytes, handle_type, f_handle[]
    handle = ctypes.create_string_buffer(struct.pack("Ii", 128, 0) + bytes(128), 136)
    mount_id = ctypes.c_int(0)
    ret, _ = _sys("name_to_handle_at", AT_FDCWD, b"/", handle, ctypes.byref(mount_id), 0)
    if ret < 0:  # a made-up handle still tells whether the call is allowed
        handle = ctypes.create_string_buffer(struct.pack("Ii", 8, 1) + bytes(8), 16)
    try:
        mount_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        mount_fd = -1
    try:
        ret, err = _sys("open_by_handle_at", mount_fd, handle, os.O_RDONLY | os.O_CLOEXEC)
        _closing(ret)
    finally:
        _closing(mount_fd)
    return _syscall_verdict("open_by_handle_at", ret, err, "opened a file by handle")


def _c_syslog(cfg: dict[str, Any]) -> tuple[str, str]:
    buf = ctypes.create_string_buffer(4096)
    ret, err = _sys("syslog", 3, buf, 4096)  # SYSLOG_ACTION_READ_ALL
    return _syscall_verdict("syslog(READ_ALL)", ret, err, f"read {ret} bytes of the kernel log")


def _c_personality(cfg: dict[str, Any]) -> tuple[str, str]:
    ret, err = _sys("personality", ADDR_NO_RANDOMIZE)
    return _syscall_verdict("personality(ADDR_NO_RANDOMIZE)", ret, err, "ASLR can be turned off")


def _c_io_uring_setup(cfg: dict[str, Any]) -> tuple[str, str]:
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    ret, err = _sys("io_uring_setup", 1, params)
    _closing(ret)
    return _syscall_verdict("io_uring_setup", ret, err, "created an io_uring")


def _c_umount(cfg: dict[str, Any]) -> tuple[str, str]:
    target = b"/tmp" if os.path.isdir("/tmp") else b"/"
    ret, err = _sys("umount2", target, 0)
    return _syscall_verdict(f"umount {target.decode()}", ret, err, "unmounted")


# -- terminal --------------------------------------------------------------------------------


def _tiocsti(fd: int) -> tuple[str, str]:
    # A NULL buffer: if the kernel lets the request through, it fails with EFAULT reading the
    # byte, so nothing is ever typed into the caller's terminal.
    ctypes.set_errno(0)
    ret = _libc().ioctl(fd, TIOCSTI, ctypes.c_void_p(None))
    err = ctypes.get_errno()
    if ret == 0 or err == errno.EFAULT:
        return EXPOSED, f"fd {fd}: TIOCSTI reached the terminal (a byte could be typed)"
    return BLOCKED, f"fd {fd}: {_en(err)}"


def _c_tiocsti_stdio(cfg: dict[str, Any]) -> tuple[str, str]:
    ttys = [fd for fd in (0, 1, 2) if os.isatty(fd)]
    if not ttys:
        return NA, "no terminal on fds 0-2 (run the probe from a terminal to test this)"
    details = []
    for fd in ttys:
        verdict, detail = _tiocsti(fd)
        if verdict == EXPOSED:
            return verdict, detail
        details.append(detail)
    return BLOCKED, "; ".join(details)


def _c_tiocsti_dev_tty(cfg: dict[str, Any]) -> tuple[str, str]:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        return BLOCKED, f"/dev/tty: {_en(e.errno)} (no controlling terminal)"
    try:
        return _tiocsti(fd)
    finally:
        os.close(fd)


# -- IPC -------------------------------------------------------------------------------------


def _connect_unix(address: str) -> tuple[str, str]:
    shown = "@" + address[1:] if address.startswith("\0") else address
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(address)
    except TimeoutError:
        return BLOCKED, f"{shown}: no answer"
    except OSError as e:
        return BLOCKED, f"{shown}: {_en(e.errno)}"
    finally:
        s.close()
    return EXPOSED, f"connected to {shown}"


def _c_abstract_x11(cfg: dict[str, Any]) -> tuple[str, str]:
    verdict, detail = _connect_unix("\0/tmp/.X11-unix/X0")
    if verdict == BLOCKED and not cfg.get("host_has_x11"):
        return NA, detail + " (the host has no X11 abstract socket either)"
    return verdict, detail


def _c_abstract_host(cfg: dict[str, Any]) -> tuple[str, str]:
    return _connect_unix("\0" + cfg["abstract_name"])


def _c_socket_path(cfg: dict[str, Any]) -> tuple[str, str]:
    return _connect_unix(cfg["socket_path"])


def _c_run_user(cfg: dict[str, Any]) -> tuple[str, str]:
    path = f"/run/user/{cfg['uid']}"
    host = cfg.get("run_user_entries")
    try:
        entries = os.listdir(path)
    except OSError as e:
        if host is None:
            return NA, f"{path}: {_en(e.errno)} (the host has none either)"
        return BLOCKED, f"{path}: {_en(e.errno)}"
    if entries:
        return EXPOSED, f"{path} lists {', '.join(sorted(entries)[:4])}"
    return BLOCKED, f"{path} is empty"


def _c_sysv_shm(cfg: dict[str, Any]) -> tuple[str, str]:
    shm_id = cfg.get("shm_id")
    if shm_id is None:
        return NA, "the host could not create a segment"
    buf = ctypes.create_string_buffer(256)  # struct shmid_ds
    ctypes.set_errno(0)
    ret = _libc().shmctl(shm_id, IPC_STAT, buf)
    if ret == 0:
        return EXPOSED, f"the host's SysV shared memory segment {shm_id} is visible"
    return BLOCKED, f"segment {shm_id}: {_en(ctypes.get_errno())}"


def _c_host_dev_shm(cfg: dict[str, Any]) -> tuple[str, str]:
    marker = cfg.get("shm_marker")
    if not marker:
        return NA, "the host has no /dev/shm"
    try:
        os.lstat(marker)
    except OSError as e:
        return BLOCKED, f"the host's marker {marker}: {_en(e.errno)}"
    return EXPOSED, f"the host's marker {marker} is visible"


def _c_fd_leak(cfg: dict[str, Any]) -> tuple[str, str]:
    start = {int(k): v for k, v in cfg["_start_fds"].items()}
    leak = cfg["leak_fd"]
    if leak["fd"] in start and start[leak["fd"]] == leak["id"]:
        return EXPOSED, f"the host's fd {leak['fd']} is open inside"
    extra = sorted(set(start) - set(cfg.get("pass_fds", ())))
    if extra:
        return EXPOSED, f"fds open at start that were not passed: {extra}"
    passed = sorted(set(start) & set(cfg.get("pass_fds", ())))
    shown = "0-2" + (f" and the passed {passed}" if passed else "")
    return BLOCKED, f"only {shown} open at start (the host's fd {leak['fd']} is not)"


# -- network ---------------------------------------------------------------------------------


def _connect_tcp(family: int, host: str, port: int | None) -> tuple[str, str]:
    if port is None:
        return NA, f"the host has no {host} listener (no such address)"
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((host, port))
    except TimeoutError:
        return BLOCKED, f"{host} port {port}: no answer"
    except OSError as e:
        return BLOCKED, f"{host} port {port}: {_en(e.errno)}"
    finally:
        s.close()
    return EXPOSED, f"connected to the host's {host} port {port}"


def _c_host_loopback_v4(cfg: dict[str, Any]) -> tuple[str, str]:
    return _connect_tcp(socket.AF_INET, "127.0.0.1", cfg.get("port4"))


def _c_host_loopback_v6(cfg: dict[str, Any]) -> tuple[str, str]:
    return _connect_tcp(socket.AF_INET6, "::1", cfg.get("port6"))


def _route(family: int, address: str) -> tuple[str, str]:
    # connect() on UDP only looks the route up: no packet is sent.
    try:
        s = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as e:
        return BLOCKED, f"socket: {_en(e.errno)}"
    try:
        s.connect((address, 9))
        local = s.getsockname()[0]
    except OSError as e:
        return BLOCKED, f"no route to {address}: {_en(e.errno)}"
    finally:
        s.close()
    return EXPOSED, f"a route to {address} (from {local})"


def _c_route_v4(cfg: dict[str, Any]) -> tuple[str, str]:
    return _route(socket.AF_INET, "192.0.2.1")


def _c_route_v6(cfg: dict[str, Any]) -> tuple[str, str]:
    return _route(socket.AF_INET6, "2001:db8::1")


def _interfaces() -> list[str]:
    try:
        return [name for _, name in socket.if_nameindex()]
    except OSError:
        try:
            return os.listdir("/sys/class/net")
        except OSError:
            return []


def _c_interfaces(cfg: dict[str, Any]) -> tuple[str, str]:
    names = _interfaces()
    others = [n for n in names if n != "lo"]
    if others:
        return EXPOSED, "interfaces: " + ", ".join(names)
    return BLOCKED, "interfaces: " + (", ".join(names) or "none")


# -- identity --------------------------------------------------------------------------------


def _c_hostname(cfg: dict[str, Any]) -> tuple[str, str]:
    name = socket.gethostname()
    if name == cfg["hostname"]:
        return EXPOSED, f"hostname {name!r} is the host's"
    return BLOCKED, f"hostname {name!r}"


def _c_machine_id(cfg: dict[str, Any]) -> tuple[str, str]:
    host = cfg.get("machine_id")
    if not host:
        return NA, "the host has no machine-id"
    seen = []
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = _read(path, 64).decode(errors="replace").strip()
        except OSError as e:
            seen.append(f"{path}: {_en(e.errno)}")
            continue
        if value == host:
            return EXPOSED, f"{path} is the host's machine-id"
        seen.append(f"{path}: another id")
    return BLOCKED, "; ".join(seen)


def _c_dmi(cfg: dict[str, Any]) -> tuple[str, str]:
    host = cfg.get("dmi") or {}
    if not host:
        return NA, "the host exposes no DMI data"
    for key, value in sorted(host.items()):
        try:
            if _read(f"/sys/class/dmi/id/{key}", 256).decode(errors="replace").strip() == value:
                return EXPOSED, f"/sys/class/dmi/id/{key} is the host's"
        except OSError:
            continue
    return BLOCKED, "/sys/class/dmi/id: none of the host's values"


def _macs() -> set[str]:
    found = set()
    for name in _interfaces():
        try:
            found.add(_read(f"/sys/class/net/{name}/address", 64).decode().strip())
            continue
        except OSError:
            pass
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError:
            continue
        try:
            ifr = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("16s24x", name.encode()))
            found.add(":".join(f"{b:02x}" for b in ifr[18:24]))
        except OSError:
            pass
        finally:
            s.close()
    return found


def _c_mac_addresses(cfg: dict[str, Any]) -> tuple[str, str]:
    host = set(cfg.get("macs") or ())
    if not host:
        return NA, "the host has no MAC address to hide"
    shared = sorted(_macs() & host)
    if shared:
        return EXPOSED, f"the host's MAC address {shared[0]} is visible"
    return BLOCKED, f"none of the host's {len(host)} MAC addresses"


def _c_env_leak(cfg: dict[str, Any]) -> tuple[str, str]:
    token = cfg["env_token"]
    leaked = sorted(k for k, v in os.environ.items() if token in v)
    if leaked:
        return EXPOSED, f"the caller's {leaked[0]} reached the sandbox"
    return BLOCKED, f"{len(os.environ)} variables, no caller secret"


# -- resources -------------------------------------------------------------------------------


def _c_fork_limit(cfg: dict[str, Any]) -> tuple[str, str]:
    limit = cfg.get("nproc_limit")
    if not cfg.get("heavy"):
        return NA, "not run (needs --heavy)"
    if not limit:
        return NA, "no LimitNPROC= or TasksMax= set: a fork bomb is not bounded by this profile"
    children = 0
    try:
        for _ in range(int(limit) + 16):
            pid = os.fork()
            if pid == 0:
                signal.pause()
                os._exit(0)
            children += 1
    except OSError as e:
        return BLOCKED, f"fork failed with {_en(e.errno)} after {children} children (limit {limit})"
    return EXPOSED, f"{children} children forked past the limit of {limit}"


def _c_selftest_hang(cfg: dict[str, Any]) -> tuple[str, str]:
    while True:  # only when the tests ask for it: proves a hung check cannot hang the probe
        time.sleep(3600)


_INSIDE_CHECKS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "home-canary": _c_home_canary,
    "home-list": _c_home_list,
    "ssh-keys": _c_ssh_keys,
    "etc-shadow": _c_etc_shadow,
    "root-home": _c_root_home,
    "write-usr": _c_write_usr,
    "write-etc": _c_write_etc,
    "write-root": _c_write_root,
    "host-tmp": _c_host_tmp,
    "old-root": _c_old_root,
    "host-processes": _c_host_processes,
    "proc-sys-write": _c_proc_sys_write,
    "proc-kcore": _c_proc_kcore,
    "kallsyms": _c_kallsyms,
    "ptrace": _c_ptrace,
    "process_vm_readv": _c_process_vm_readv,
    "capabilities": _c_capabilities,
    "no-new-privs": _c_no_new_privs,
    "userns-unshare": _c_userns_unshare,
    "userns-clone": _c_userns_clone,
    "userns-clone3": _c_userns_clone3,
    "setns": _c_setns,
    "mount": _c_mount,
    "remount-rw": _c_remount_rw,
    "open_tree": _c_open_tree,
    "fsopen": _c_fsopen,
    "pivot_root": _c_pivot_root,
    "chroot": _c_chroot,
    "bpf": _c_bpf,
    "perf_event_open": _c_perf_event_open,
    "userfaultfd": _c_userfaultfd,
    "keyctl": _c_keyctl,
    "keyring-session": _c_keyring_session,
    "keyring-user": _c_keyring_user,
    "kexec_load": _c_kexec_load,
    "init_module": _c_init_module,
    "open_by_handle_at": _c_open_by_handle_at,
    "syslog": _c_syslog,
    "personality": _c_personality,
    "io_uring_setup": _c_io_uring_setup,
    "umount": _c_umount,
    "tiocsti-stdio": _c_tiocsti_stdio,
    "tiocsti-dev-tty": _c_tiocsti_dev_tty,
    "abstract-x11": _c_abstract_x11,
    "abstract-host": _c_abstract_host,
    "socket-path": _c_socket_path,
    "run-user": _c_run_user,
    "sysv-shm": _c_sysv_shm,
    "host-dev-shm": _c_host_dev_shm,
    "fd-leak": _c_fd_leak,
    "host-loopback-v4": _c_host_loopback_v4,
    "host-loopback-v6": _c_host_loopback_v6,
    "route-v4": _c_route_v4,
    "route-v6": _c_route_v6,
    "interfaces": _c_interfaces,
    "hostname": _c_hostname,
    "machine-id": _c_machine_id,
    "dmi": _c_dmi,
    "mac-addresses": _c_mac_addresses,
    "env-leak": _c_env_leak,
    "fork-limit": _c_fork_limit,
    "selftest-hang": _c_selftest_hang,
}


def _open_fds() -> dict[str, list[int]]:
    fds = {}
    for fd in range(3, 1024):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        fds[str(fd)] = [st.st_dev, st.st_ino]
    return fds


def _isolated(
    check: Callable[[dict[str, Any]], tuple[str, str]], cfg: dict[str, Any], deadline: float
) -> tuple[str, str]:
    """Run one check in a forked child with a deadline; a hang or a crash is a verdict."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setpgid(0, 0)  # so that the check's own children die with it
            result = check(cfg)
        except BaseException as e:  # noqa: BLE001 - any failure of a check is its verdict
            result = (ERROR, f"{type(e).__name__}: {e}")
        try:
            os.write(w, (json.dumps(list(result)) + "\n").encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    buf = b""
    end = time.monotonic() + deadline
    timed_out = False
    while b"\n" not in buf:
        left = end - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if not ready:
            timed_out = True
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        buf += chunk
    os.close(r)
    # The check's process group first (children it left), then the check itself.
    for target in (-pid, pid):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    status = os.waitpid(pid, 0)[1]
    if b"\n" in buf:
        verdict, detail = json.loads(buf.split(b"\n", 1)[0])
        return str(verdict), str(detail)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGSYS:
            return BLOCKED, "killed by SIGSYS (seccomp)"
        if sig == signal.SIGKILL and timed_out:
            return TIMEOUT, f"no verdict within {deadline:g} s: killed"
        return ERROR, f"the check died of {signal.Signals(sig).name}"
    return ERROR, f"the check exited with status {os.waitstatus_to_exitcode(status)}, no verdict"


def _inside_main(argv: list[str]) -> int:
    # The configuration comes on an fd ("fd:N"), not in argv: a command line is readable by
    # every user of the host, and the configuration names the caller's files. (Tests may pass
    # the JSON itself.)
    if argv[1].startswith("fd:"):
        with os.fdopen(int(argv[1][3:]), "rb") as f:
            cfg = json.loads(f.read())
    else:
        cfg = json.loads(argv[1])
    cfg["_start_fds"] = _open_fds()  # before this program opens anything else
    deadline = float(cfg.get("deadline", 2.0))
    for name in cfg["checks"]:
        check = _INSIDE_CHECKS.get(name)
        if check is None:
            verdict, detail = ERROR, "unknown check"
        else:
            verdict, detail = _isolated(check, cfg, deadline)
        sys.stdout.write(json.dumps({"check": name, "result": verdict, "detail": detail}) + "\n")
        sys.stdout.flush()
    return 0


# <<< probe-inside
# ---------------------------------------------------------------------------------------------
# Host side

INSIDE_MARKERS = ("# >>> probe-inside", "# <<< probe-inside")
_PROLOGUE = (
    "from __future__ import annotations\n"
    "import ctypes, errno, fcntl, json, os, select, signal, socket, struct, sys, time\n"
    "from collections.abc import Callable\n"
    "from typing import Any\n"
)
PYTHON = "/usr/bin/python3"


def inside_source() -> str:
    """The probe program run inside the sandbox: the marked region of this file."""
    with open(__file__, encoding="utf-8") as f:
        text = f.read()
    start = text.index(INSIDE_MARKERS[0] + ":")
    end = text.index(INSIDE_MARKERS[1])
    return _PROLOGUE + text[start:end] + "\nsys.exit(_inside_main(sys.argv))\n"


Claim = Callable[[Plan, "HostFacts"], str | None]


@dataclass(frozen=True)
class Check:
    """One attack. ``claim`` returns None when the profile claims to block it, else why the
    profile allows it (e.g. "--net host")."""

    name: str
    vector: str
    what: str
    claim: Claim


@dataclass
class HostFacts:
    """What the host side knows and planted for the checks (JSON-able parts go inside)."""

    home: str
    uid: int
    hostname: str
    token: str
    config: dict[str, Any] = field(default_factory=dict)


def _always(plan: Plan, facts: HostFacts) -> str | None:
    return None


def _path_claim(path_of: Callable[[HostFacts], str]) -> Claim:
    def claim(plan: Plan, facts: HostFacts) -> str | None:
        from .audit import host_visible

        op = host_visible(plan, path_of(facts))
        return None if op is None else f"{op.why or 'a bind'} shows it"

    return claim


def _write_claim(path: str) -> Claim:
    def claim(plan: Plan, facts: HostFacts) -> str | None:
        from .audit import host_visible

        op = host_visible(plan, path)
        return None if op is None or op.readonly else f"{op.why or 'a bind'} makes it writable"

    return claim


def _seccomp_claim(name: str) -> Claim:
    def claim(plan: Plan, facts: HostFacts) -> str | None:
        from .audit import _seccomp_denies

        return None if _seccomp_denies(plan, name) else f"SystemCallFilter allows {name}"

    return claim


def _ns_claim(ns: str, why: str) -> Claim:
    def claim(plan: Plan, facts: HostFacts) -> str | None:
        return None if ns in plan.namespaces else why

    return claim


def _userns_claim(plan: Plan, facts: HostFacts) -> str | None:
    policy = plan.seccomp
    if policy is None or policy.restrict_namespaces is None:
        return "RestrictNamespaces not set"
    return "RestrictNamespaces allows user" if "user" in policy.restrict_namespaces else None


def _network_claim(plan: Plan, facts: HostFacts) -> str | None:
    return "--net host" if plan.network == "host" else None


def _route_claim(plan: Plan, facts: HostFacts) -> str | None:
    return None if plan.network == "none" else f"--net {plan.network}"


def _abstract_claim(plan: Plan, facts: HostFacts) -> str | None:
    if plan.network != "host":
        return None
    from .kernel import landlock

    policy = plan.landlock
    if policy is not None and policy.scope_abstract_unix and landlock.abi_version() >= 6:
        return None
    return "--net host without LandlockScopes=abstract-unix"


def _keyring_claim(plan: Plan, facts: HostFacts) -> str | None:
    return None if plan.keyring_private else "KeyringMode=inherit"


def _personality_claim(plan: Plan, facts: HostFacts) -> str | None:
    policy = plan.seccomp
    return None if policy is not None and policy.lock_personality else "LockPersonality=no"


def _hostname_claim(plan: Plan, facts: HostFacts) -> str | None:
    return "Hostname= is the host's name" if plan.hostname == facts.hostname else None


def _machine_id_claim(plan: Plan, facts: HostFacts) -> str | None:
    from .audit import host_visible

    return "PrivateMachineID=no" if host_visible(plan, "/etc/machine-id") else None


def _sysfs_claim(plan: Plan, facts: HostFacts) -> str | None:
    from .plan import Sysfs

    return "MountSysfs=yes" if any(isinstance(op, Sysfs) for op in plan.mounts) else None


def _old_root_claim(plan: Plan, facts: HostFacts) -> str | None:
    from .plan import Bind

    binds = [op for op in plan.mounts if isinstance(op, Bind) and op.src == "/"]
    return f"binds the host's / at {binds[0].dest}" if binds else None


def _env_claim(plan: Plan, facts: HostFacts) -> str | None:
    return "PassEnvironment" if CANARY_VAR in plan.profile.pass_environment else None


def process_limit(plan: Plan) -> int | None:
    """The lowest bound on the sandbox's processes: LimitNPROC= or the cgroup's TasksMax=."""
    import resource

    bounds = [
        int(lim.soft)
        for lim in plan.limits
        if getattr(lim, "key", "") == "LimitNPROC" and lim.soft != resource.RLIM_INFINITY
    ]
    tasks = getattr(getattr(plan, "cgroup", None), "tasks_max", None)
    if isinstance(tasks, int):
        bounds.append(tasks)
    return min(bounds) if bounds else None


def _nproc_claim(plan: Plan, facts: HostFacts) -> str | None:
    return None  # without a limit the check is N/A, never exposed


def _kallsyms_claim(plan: Plan, facts: HostFacts) -> str | None:
    return None if plan.profile.protect_kernel_logs else "ProtectKernelLogs=no"


_F, _P, _V, _S, _T, _I, _N, _D, _R = (
    "files",
    "processes",
    "privileges",
    "syscalls",
    "terminal",
    "ipc",
    "network",
    "identity",
    "resources",
)

CHECKS: tuple[Check, ...] = (
    Check(
        "home-canary",
        _F,
        "read a canary planted in the caller's home",
        _path_claim(lambda f: f.home),
    ),
    Check("home-list", _F, "list the caller's home", _path_claim(lambda f: f.home)),
    Check("ssh-keys", _F, "list and read ~/.ssh", _path_claim(lambda f: f.home + "/.ssh")),
    Check("etc-shadow", _F, "read /etc/shadow", _always),
    Check("root-home", _F, "list /root", _path_claim(lambda f: "/root")),
    Check("write-usr", _F, "create a file in the host's /usr", _write_claim("/usr")),
    Check("write-etc", _F, "create a file in the host's /etc", _write_claim("/etc")),
    Check("write-root", _F, "create a file in the host's /", _write_claim("/")),
    Check("host-tmp", _F, "see a marker in the host's /tmp", _path_claim(lambda f: "/tmp")),
    Check("old-root", _F, "find the host's whole root filesystem mounted", _old_root_claim),
    Check(
        "host-processes",
        _P,
        "see the host's processes in /proc",
        _ns_claim("pid", "no PID namespace"),
    ),
    Check("proc-sys-write", _P, "open /proc/sys and /proc/sysrq-trigger for writing", _always),
    Check("proc-kcore", _P, "read /proc/kcore", _always),
    Check("kallsyms", _P, "read kernel addresses in /proc/kallsyms", _kallsyms_claim),
    Check("ptrace", _P, "ptrace a process", _seccomp_claim("ptrace")),
    Check(
        "process_vm_readv", _P, "read another process's memory", _seccomp_claim("process_vm_readv")
    ),
    Check("capabilities", _V, "hold any capability (effective, bounding, ambient...)", _always),
    Check("no-new-privs", _V, "gain privileges through setuid binaries", _always),
    Check("userns-unshare", _V, "unshare(CLONE_NEWUSER): a nested user namespace", _userns_claim),
    Check("userns-clone", _V, "clone(CLONE_NEWUSER)", _userns_claim),
    Check("userns-clone3", _V, "clone3(CLONE_NEWUSER)", _userns_claim),
    Check("setns", _S, "setns into a namespace", _always),
    Check("mount", _S, "mount a filesystem", _always),
    Check("remount-rw", _S, "remount a read-only path read-write", _always),
    Check("open_tree", _S, "clone a mount with open_tree", _always),
    Check("fsopen", _S, "create a filesystem context with fsopen", _always),
    Check("pivot_root", _S, "pivot_root", _always),
    Check("chroot", _S, "chroot", _always),
    Check("bpf", _S, "create a BPF map", _seccomp_claim("bpf")),
    Check("perf_event_open", _S, "open a performance counter", _seccomp_claim("perf_event_open")),
    Check("userfaultfd", _S, "open a userfaultfd", _seccomp_claim("userfaultfd")),
    Check("keyctl", _S, "call keyctl at all", _seccomp_claim("keyctl")),
    Check("keyring-session", _S, "reach the caller's session keyring (@s)", _keyring_claim),
    Check("keyring-user", _S, "reach the caller's user keyring (@u)", _keyring_claim),
    Check("kexec_load", _S, "load a new kernel", _always),
    Check("init_module", _S, "load a kernel module", _always),
    Check("open_by_handle_at", _S, "open a file by handle (escapes bind mounts)", _always),
    Check("syslog", _S, "read the kernel log", _seccomp_claim("syslog")),
    Check("personality", _S, "turn ASLR off with personality", _personality_claim),
    Check("io_uring_setup", _S, "create an io_uring", _seccomp_claim("io_uring_setup")),
    Check("umount", _S, "unmount a filesystem to see what it hides", _always),
    Check("tiocsti-stdio", _T, "type into the terminal on fds 0-2 (TIOCSTI)", _always),
    Check("tiocsti-dev-tty", _T, "open /dev/tty and type into it", _always),
    Check("abstract-x11", _I, "connect to the X server's abstract socket", _abstract_claim),
    Check("abstract-host", _I, "connect to an abstract socket of the host", _abstract_claim),
    Check(
        "socket-path",
        _I,
        "connect to a unix socket in the host's /tmp",
        _path_claim(lambda f: "/tmp"),
    ),
    Check(
        "run-user",
        _I,
        "list /run/user/UID (session bus, X, pulse sockets)",
        _path_claim(lambda f: f"/run/user/{f.uid}"),
    ),
    Check(
        "sysv-shm",
        _I,
        "see a SysV shared memory segment of the host",
        _ns_claim("ipc", "PrivateIPC=no"),
    ),
    Check(
        "host-dev-shm", _I, "see a marker in the host's /dev/shm", _path_claim(lambda f: "/dev/shm")
    ),
    Check("fd-leak", _I, "use an fd the caller had open but did not pass", _always),
    Check("host-loopback-v4", _N, "connect to a host service on 127.0.0.1", _network_claim),
    Check("host-loopback-v6", _N, "connect to a host service on ::1", _network_claim),
    Check("route-v4", _N, "find a route to the outside (IPv4)", _route_claim),
    Check("route-v6", _N, "find a route to the outside (IPv6)", _route_claim),
    Check("interfaces", _N, "see network interfaces other than lo", _route_claim),
    Check("hostname", _D, "read the host's hostname", _hostname_claim),
    Check("machine-id", _D, "read the host's machine-id", _machine_id_claim),
    Check("dmi", _D, "read DMI identifiers under /sys/class/dmi", _sysfs_claim),
    Check("mac-addresses", _D, "read the host's MAC addresses", _ns_claim("net", "--net host")),
    Check("env-leak", _D, "read a secret from the caller's environment", _env_claim),
    Check("fork-limit", _R, "fork past LimitNPROC=/TasksMax= (only with --heavy)", _nproc_claim),
)

_HANG = Check("selftest-hang", _R, "a check that never returns (tests only)", _always)
CANARY_VAR = "RINGFENCE_PROBE_CANARY"


@dataclass(frozen=True)
class CheckResult:
    check: str
    vector: str
    what: str
    expected: str  # "BLOCKED" or "allowed"
    allowed_by: str | None
    result: str  # BLOCKED, EXPOSED, N/A, TIMEOUT, ERROR
    detail: str
    ok: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "check": self.check,
            "vector": self.vector,
            "what": self.what,
            "expected": self.expected,
            "allowed_by": self.allowed_by,
            "result": self.result,
            "detail": self.detail,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class ProbeReport:
    profile: str
    results: tuple[CheckResult, ...]
    accept_allowed: bool
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.results)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.result] = out.get(r.result, 0) + 1
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "passed": self.passed,
            "kernel": os.uname().release,
            "counts": self.counts(),
            "accept_allowed": self.accept_allowed,
            "checks": [r.as_dict() for r in self.results],
        }


def judge(result: str, allowed_by: str | None, accept_allowed: bool) -> bool:
    """Whether a check passes: blocked or not applicable; exposed only when the profile allows
    it on purpose and the caller accepts that; a hang or an error never passes."""
    if result in (BLOCKED, NA):
        return True
    if result == EXPOSED:
        return allowed_by is not None and accept_allowed
    return False


# ---------------------------------------------------------------------------------------------
# What the host plants and knows (all of it removed again by Fixtures.close)


class Fixtures:
    """Markers, listeners, sockets, a shm segment, an fd and an env canary for the checks."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], object]] = []

    def on_close(self, undo: Callable[[], object]) -> None:
        self._undo.append(undo)

    def close(self) -> None:
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception:  # noqa: BLE001 - clean up everything else regardless
                pass

    def __enter__(self) -> Fixtures:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- planted things ------------------------------------------------------------------
    def marker(self, directory: str, token: str, content: bytes = b"") -> str | None:
        if not os.path.isdir(directory):
            return None
        path = os.path.join(directory, f"ringfence-probe-{token}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.on_close(lambda: os.unlink(path))
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        return path

    def home_canary(self, home: str, token: str) -> dict[str, str] | None:
        path = os.path.join(home, f".ringfence-probe-{token}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError:
            return None
        self.on_close(lambda: os.unlink(path))
        try:
            os.write(fd, f"ringfence probe canary {token}\n".encode())
        finally:
            os.close(fd)
        return {"path": path, "token": token}

    def listener(self, family: int, address: str) -> int | None:
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            return None
        self.on_close(s.close)
        try:
            s.bind((address, 0))
            s.listen(8)
        except OSError:
            return None
        return int(s.getsockname()[1])

    def unix_listener(self, address: str) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.on_close(s.close)
        try:
            s.bind(address)
        except OSError:
            return False
        if not address.startswith("\0"):
            self.on_close(lambda: os.unlink(address))
            os.chmod(address, 0o777)  # so that only the sandbox, not permissions, decides
        s.listen(8)
        return True

    def shm_segment(self) -> int | None:
        lib = ctypes.CDLL(None, use_errno=True)
        shm_id = int(lib.shmget(0, 4096, 0o1000 | 0o644))  # IPC_PRIVATE, IPC_CREAT
        if shm_id < 0:
            return None
        self.on_close(lambda: lib.shmctl(shm_id, 0, None))  # IPC_RMID
        return shm_id

    def leaked_fd(self) -> dict[str, Any]:
        r, w = os.pipe()
        self.on_close(lambda: os.close(w))
        self.on_close(lambda: os.close(r))
        os.set_inheritable(r, True)  # the launcher, not CLOEXEC, must keep it out
        st = os.fstat(r)
        return {"fd": r, "id": [st.st_dev, st.st_ino]}

    def environment(self, name: str, value: str) -> None:
        old = os.environ.get(name)
        os.environ[name] = value

        def restore() -> None:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old

        self.on_close(restore)

    def remove_later(self, path: str) -> None:
        self.on_close(lambda: os.unlink(path) if os.path.lexists(path) else None)


def _listdir(path: str) -> list[str] | None:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def _some(names: list[str] | None, most: int = 64) -> list[str] | None:
    # Enough names to recognise a directory, few enough for the configuration pipe's buffer.
    return None if names is None else names[:most]


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _own_stat() -> dict[str, object]:
    stat = _read_text("/proc/self/stat") or ""
    fields = stat[stat.rfind(")") + 2 :].split()
    return {
        "comm": stat[stat.find("(") + 1 : stat.rfind(")")],
        "starttime": fields[19] if len(fields) > 19 else "",
    }


def _root_mount() -> list[str] | None:
    for line in (_read_text("/proc/self/mountinfo") or "").splitlines():
        parts = line.split()
        if len(parts) > 4 and parts[4] == "/":
            return [parts[2], parts[3]]
    return None


def _host_keyrings() -> dict[str, int]:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    nr = _NR.get(os.uname().machine, {}).get("keyctl")
    out: dict[str, int] = {}
    if nr is None:
        return out
    for key, spec in (("session", KEY_SPEC_SESSION_KEYRING), ("user", KEY_SPEC_USER_KEYRING)):
        ret = int(
            lib.syscall(
                ctypes.c_long(nr),
                ctypes.c_long(KEYCTL_GET_KEYRING_ID),
                ctypes.c_long(spec),
                ctypes.c_long(0),
            )
        )
        if ret >= 0:
            out[key] = ret
    return out


def _host_macs() -> list[str]:
    macs = []
    for name in _listdir("/sys/class/net") or []:
        mac = _read_text(f"/sys/class/net/{name}/address")
        if mac and mac.strip("0:"):
            macs.append(mac)
    return macs


def _host_dmi() -> dict[str, str]:
    out = {}
    for key in (
        "product_uuid",
        "product_serial",
        "board_serial",
        "chassis_serial",
        "product_name",
        "sys_vendor",
        "board_name",
        "board_vendor",
    ):
        value = _read_text(f"/sys/class/dmi/id/{key}")
        if value and value.lower() not in ("", "none", "to be filled by o.e.m.", "default string"):
            out[key] = value
    return out


def _host_has_x11() -> bool:
    return "@/tmp/.X11-unix/X0" in (_read_text("/proc/net/unix") or "")


def prepare(
    fx: Fixtures,
    home: str,
    *,
    deadline: float,
    heavy: bool,
    hang: bool,
    only: list[str] | None = None,
) -> HostFacts:
    """Plant what the checks look for and gather the host's side of each comparison."""
    token = os.urandom(8).hex()
    uid = os.getuid()
    facts = HostFacts(home=home, uid=uid, hostname=os.uname().nodename, token=token)
    # An injected hang goes first, so the run shows that the checks after it still happen.
    checks = ([_HANG.name] if hang else []) + [c.name for c in CHECKS]
    if only:
        unknown = sorted(set(only) - set(checks))
        if unknown:
            from .errors import ProfileError

            raise ProfileError(
                f"probe: unknown check {unknown[0]!r}", "see `ringfence probe --list`"
            )
        checks = [c for c in checks if c in only]
    write_marker = f"ringfence-probe-w-{token}"
    for d in ("/usr", "/etc", "/"):
        fx.remove_later(os.path.join(d, write_marker))
    ssh = _listdir(os.path.join(home, ".ssh"))
    run_user = _listdir(f"/run/user/{uid}")
    socket_path = f"/tmp/ringfence-probe-{token}.sock"
    abstract = f"ringfence-probe-{token}"
    facts.config = {
        "deadline": deadline,
        "checks": checks,
        "home": home,
        "home_canary": fx.home_canary(home, token),
        "home_entries": _some(_listdir(home)),
        "ssh_entries": _some(ssh),
        "root_entries": _some(_listdir("/root")),
        "write_marker": write_marker,
        "tmp_marker": fx.marker("/tmp", token),
        "shm_marker": fx.marker("/dev/shm", token),
        "root_mount": _root_mount(),
        "host_process": _own_stat(),
        "uid": uid,
        "run_user_entries": run_user,
        "socket_path": socket_path if fx.unix_listener(socket_path) else "/nonexistent",
        "abstract_name": abstract if fx.unix_listener("\0" + abstract) else "nonexistent",
        "host_has_x11": _host_has_x11(),
        "shm_id": fx.shm_segment(),
        "leak_fd": fx.leaked_fd(),
        "port4": fx.listener(socket.AF_INET, "127.0.0.1"),
        "port6": fx.listener(socket.AF_INET6, "::1"),
        "keyrings": _host_keyrings(),
        "hostname": facts.hostname,
        "machine_id": _read_text("/etc/machine-id"),
        "dmi": _host_dmi(),
        "macs": _host_macs(),
        "env_token": token,
        "heavy": heavy,
    }
    fx.environment(CANARY_VAR, f"secret-{token}")
    return facts


def _finish_writes(raw: dict[str, tuple[str, str]], facts: HostFacts) -> None:
    """A write inside succeeded: exposed if the file landed in the host's tree."""
    for name, (verdict, detail) in list(raw.items()):
        if verdict != CREATED:
            continue
        if os.path.lexists(detail):
            raw[name] = (EXPOSED, f"created {detail} on the host")
        else:
            raw[name] = (
                BLOCKED,
                f"{os.path.dirname(detail) or '/'} is writable inside, but private to the sandbox",
            )


def verdicts(
    plan: Plan, facts: HostFacts, raw: dict[str, tuple[str, str]], accept_allowed: bool
) -> tuple[CheckResult, ...]:
    by_name = {c.name: c for c in (*CHECKS, _HANG)}
    out = []
    for name in facts.config["checks"]:
        check = by_name[name]
        allowed_by = check.claim(plan, facts)
        result, detail = raw.get(name, (TIMEOUT, "the probe stopped before this check"))
        out.append(
            CheckResult(
                check=name,
                vector=check.vector,
                what=check.what,
                expected="BLOCKED" if allowed_by is None else "allowed",
                allowed_by=allowed_by,
                result=result,
                detail=detail,
                ok=judge(result, allowed_by, accept_allowed),
            )
        )
    return tuple(out)


def python_reachable(plan: Plan) -> bool:
    from .audit import covering
    from .plan import Bind

    return isinstance(covering(plan, PYTHON), Bind) or isinstance(covering(plan, "/usr"), Bind)


def run_probe(
    args: Any,
    *,
    deadline: float = 2.0,
    heavy: bool = False,
    hang: bool = False,
    only: list[str] | None = None,
    accept_allowed: bool = False,
) -> ProbeReport:
    """Launch one sandbox built from ``args`` (sandbox options, as for ``ringfence run``), run
    the checks inside, and judge them. Everything planted is removed before returning."""
    from .commands._options import build_plan
    from .errors import ProfileError
    from .plan import HostContext

    home = os.path.realpath(HostContext.current().home)
    with Fixtures() as fx:
        previous = signal.signal(signal.SIGTERM, _terminate)
        fx.on_close(lambda: signal.signal(signal.SIGTERM, previous))
        facts = prepare(fx, home, deadline=deadline, heavy=heavy, hang=hang, only=only)
        plan = build_plan(args, [PYTHON])
        if not python_reachable(plan):
            raise ProfileError(
                f"probe: {PYTHON} is not reachable inside this sandbox (profile "
                f"{plan.profile.name} binds no /usr)",
                "add --ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64, or use --profile strict",
            )
        facts.config["nproc_limit"] = process_limit(plan)
        facts.config["pass_fds"] = list(plan.pass_fds)
        config_fd = max([3, *(fd + 1 for fd in plan.pass_fds)])
        plan.argv = (PYTHON, "-I", "-S", "-c", inside_source(), f"fd:{config_fd}")
        if not getattr(args, "chdir", None):
            plan.cwd = "/"  # the probe needs no working directory; the home may not exist
        overall = deadline * (len(facts.config["checks"]) + 2) + 20
        raw, stderr = _launch(plan, args, fx, overall, facts.config, config_fd)
        _finish_writes(raw, facts)
        results = verdicts(plan, facts, raw, accept_allowed)
        return ProbeReport(plan.profile.name, results, accept_allowed, stderr)


def _terminate(sig: int, frame: object) -> None:
    raise SystemExit(128 + sig)  # unwinds through the cleanup of everything planted


def _launch(
    plan: Plan, args: Any, fx: Fixtures, overall: float, config: dict[str, Any], config_fd: int
) -> tuple[dict[str, tuple[str, str]], str]:
    from .commands.run import read_passwords
    from .errors import ProfileError, RingfenceError
    from .runtime.launcher import Launch

    passwords = read_passwords(args, plan)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    fx.on_close(lambda: _close_quietly(out_r))
    fx.on_close(lambda: _close_quietly(err_r))
    cfg_r, cfg_w = os.pipe2(os.O_CLOEXEC)
    try:
        data = json.dumps(config).encode()
        if len(data) > 60000:  # a pipe holds 64 KiB; the lists in it are capped well below
            raise ProfileError("probe: the configuration for the sandbox is too large")
        os.write(cfg_w, data)
    finally:
        os.close(cfg_w)
    launch = Launch(plan, stdio=(0, out_w, err_w), fd_map={config_fd: cfg_r}, passwords=passwords)
    try:
        launch.start()
    except RingfenceError as e:
        if e.exit_code in (126, 127):
            raise ProfileError(
                f"probe: {PYTHON} cannot run inside this sandbox ({e})",
                "add --ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64, or use --profile strict",
            ) from None
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
        os.close(cfg_r)
    raw: dict[str, tuple[str, str]] = {}
    chunks = {out_r: b"", err_r: b""}
    end = time.monotonic() + overall
    open_fds = [out_r, err_r]
    try:
        while open_fds:
            left = end - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(open_fds, [], [], left)
            if not ready:
                break
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd] += chunk
                else:
                    open_fds.remove(fd)
    finally:
        launch.kill()
        launch.wait()
    for line in chunks[out_r].decode(errors="replace").splitlines():
        try:
            doc = json.loads(line)
            raw[str(doc["check"])] = (str(doc["result"]), str(doc["detail"]))
        except (ValueError, KeyError, TypeError):
            continue
    return raw, chunks[err_r].decode(errors="replace")


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def format_table(report: ProbeReport) -> str:
    rows = [("CHECK", "VECTOR", "EXPECTED", "RESULT", "DETAIL")]
    for r in report.results:
        expected = r.expected if r.allowed_by is None else f"allowed ({r.allowed_by})"
        result = r.result if r.ok else f"{r.result} !"
        rows.append((r.check, r.vector, expected, result, r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    widths[2] = min(widths[2], 48)
    lines = []
    for row in rows:
        cells = [row[i][: widths[i]].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + "  " + row[4])
    counts = report.counts()
    summary = ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items()))
    failed = [r.check for r in report.results if not r.ok]
    lines.append("")
    lines.append(f"{len(report.results)} checks: {summary}")
    if failed:
        lines.append(f"FAIL: {', '.join(failed)}")
    else:
        lines.append(
            "PASS: every check is blocked (or not applicable)"
            if not any(r.result == EXPOSED for r in report.results)
            else "PASS: only what the profile allows on purpose is exposed"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "Fixtures",
    "ProbeReport",
    "format_table",
    "inside_source",
    "judge",
    "prepare",
    "run_probe",
    "verdicts",
]
