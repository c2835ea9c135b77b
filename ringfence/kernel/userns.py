"""User namespaces and namespace flags: unshare(2), setns(2), uid/gid maps.

Owns: the CLONE_NEW* constants, creating namespaces for the calling process, and writing its
own identity uid/gid map. Must never decide which namespaces a sandbox gets (that is the plan's
job) and never map more than the one id an unprivileged user owns.
"""

from __future__ import annotations

import os

from ..errors import KernelError, UnsupportedError
from ._syscall import check, libc

# linux/sched.h
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS: dict[str, int] = {
    "user": CLONE_NEWUSER,
    "mnt": CLONE_NEWNS,
    "pid": CLONE_NEWPID,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "cgroup": CLONE_NEWCGROUP,
    "net": CLONE_NEWNET,
}


def unshare(flags: int) -> None:
    if libc.unshare(flags) == -1:
        import ctypes

        err = ctypes.get_errno()
        if flags & CLONE_NEWUSER and err in (1, 28):  # EPERM, ENOSPC
            raise UnsupportedError(_userns_denied_reason(err)) from None
        raise KernelError("unshare", err, hex(flags))


def setns(fd: int, nstype: int = 0) -> None:
    check(libc.setns(fd, nstype), "setns")


def write_id_maps(inside_uid: int, outside_uid: int, inside_gid: int, outside_gid: int) -> None:
    """Map one uid and one gid; setgroups must be denied first when unprivileged."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{inside_uid} {outside_uid} 1\n")
    _write("/proc/self/gid_map", f"{inside_gid} {outside_gid} 1\n")


def _write(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise KernelError("write", e.errno or 0, path) from None


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read().strip() or b"0")
    except (OSError, ValueError):
        return None


def _userns_denied_reason(err: int) -> str:
    """Say which host setting forbids unprivileged user namespaces, and how to allow them."""
    if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
        return (
            "user namespaces are restricted by AppArmor "
            "(kernel.apparmor_restrict_unprivileged_userns=1): set it to 0, or install an "
            "AppArmor profile that grants 'userns' to ringfence's Python interpreter"
        )
    if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
        return (
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0): "
            "run 'sysctl -w kernel.unprivileged_userns_clone=1'"
        )
    if _read_int("/proc/sys/user/max_user_namespaces") == 0:
        return (
            "user namespaces are disabled (user.max_user_namespaces=0): "
            "run 'sysctl -w user.max_user_namespaces=15000'"
        )
    if err == 28:
        return "too many user namespaces (user.max_user_namespaces reached): raise that sysctl"
    return (
        "cannot create a user namespace (EPERM): this process may already be confined "
        "(seccomp or a nested sandbox), or the kernel forbids it"
    )
