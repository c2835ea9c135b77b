"""Capabilities and securebits: empty every set and lock it so nothing can bring them back.

Owns: the bounding/ambient/inheritable/permitted/effective sets and securebits of the calling
thread. Must never raise a capability: this module only ever removes.
"""

from __future__ import annotations

import ctypes

from ..errors import SandboxError
from ._syscall import check, libc, syscall

# linux/prctl.h
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_GET_SECUREBITS = 27
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# linux/securebits.h: every "no root magic" bit and every lock, but not KEEP_CAPS itself.
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7
LOCKED_SECUREBITS = (
    SECBIT_NOROOT
    | SECBIT_NOROOT_LOCKED
    | SECBIT_NO_SETUID_FIXUP
    | SECBIT_NO_SETUID_FIXUP_LOCKED
    | SECBIT_KEEP_CAPS_LOCKED
    | SECBIT_NO_CAP_AMBIENT_RAISE
    | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
)

# linux/capability.h
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63  # probe by dropping until EINVAL instead


def drop_all(cap_last: int) -> None:
    """Empty all five capability sets and lock securebits. Needs CAP_SETPCAP to start with."""
    check(libc.prctl(PR_SET_SECUREBITS, LOCKED_SECUREBITS, 0, 0, 0), "prctl", "PR_SET_SECUREBITS")
    for cap in range(cap_last + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1:
            if ctypes.get_errno() == 22 and cap > 40:  # EINVAL: past the kernel's last cap
                break
            check(-1, "prctl", f"PR_CAPBSET_DROP {cap}")
    check(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "prctl", "PR_CAP_AMBIENT")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    syscall("capset", ctypes.byref(header), ctypes.byref(data))


def current_sets() -> dict[str, int]:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    syscall("capget", ctypes.byref(header), ctypes.byref(data))

    def both(field: str) -> int:
        return int(getattr(data[0], field)) | (int(getattr(data[1], field)) << 32)

    bounding = 0
    for cap in range(64):
        r = libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0)
        if r == -1:
            break
        if r == 1:
            bounding |= 1 << cap
    return {
        "effective": both("effective"),
        "permitted": both("permitted"),
        "inheritable": both("inheritable"),
        "bounding": bounding,
        "securebits": int(libc.prctl(PR_GET_SECUREBITS, 0, 0, 0, 0)),
    }


def verify_dropped() -> None:
    """Fail closed: refuse to continue if any set is not empty."""
    sets = current_sets()
    left = {k: v for k, v in sets.items() if k != "securebits" and v}
    if left:
        raise SandboxError(f"capabilities still present after dropping them: {left}")
    if sets["securebits"] & LOCKED_SECUREBITS != LOCKED_SECUREBITS:
        raise SandboxError("securebits could not be locked")
