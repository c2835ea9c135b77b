"""Raw syscall access shared by the kernel layer.

Owns: the libc handle, the per-architecture syscall numbers for calls that glibc does not wrap
(or wraps only in recent versions), and the one helper that turns ``-1/errno`` into a
:class:`KernelError`. Must never hold policy: callers decide what a failure means.
"""

from __future__ import annotations

import ctypes
import os

from ..errors import KernelError

libc = ctypes.CDLL(None, use_errno=True)
_raw_syscall = libc.syscall
_raw_syscall.restype = ctypes.c_long

ARCH = os.uname().machine

# Syscall numbers: asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
_NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {
        "rt_sigaction": 13,
        "capget": 125,
        "capset": 126,
        "pivot_root": 155,
        "prctl": 157,
        "sethostname": 170,
        "add_key": 248,
        "request_key": 249,
        "keyctl": 250,
        "unshare": 272,
        "setns": 308,
        "seccomp": 317,
        "memfd_create": 319,
        "pidfd_send_signal": 424,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "pidfd_open": 434,
        "clone3": 435,
        "close_range": 436,
        "openat2": 437,
        "pidfd_getfd": 438,
        "mount_setattr": 442,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
    },
    "aarch64": {
        "rt_sigaction": 134,
        "capget": 90,
        "capset": 91,
        "pivot_root": 41,
        "prctl": 167,
        "sethostname": 161,
        "add_key": 217,
        "request_key": 218,
        "keyctl": 219,
        "unshare": 97,
        "setns": 268,
        "seccomp": 277,
        "memfd_create": 279,
        "pidfd_send_signal": 424,
        "open_tree": 428,
        "move_mount": 429,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "pidfd_open": 434,
        "clone3": 435,
        "close_range": 436,
        "openat2": 437,
        "pidfd_getfd": 438,
        "mount_setattr": 442,
        "landlock_create_ruleset": 444,
        "landlock_add_rule": 445,
        "landlock_restrict_self": 446,
    },
}

NR: dict[str, int] = _NUMBERS.get(ARCH, {})


def _arg(value: object) -> object:
    # ctypes passes plain ints as C int (32 bits); syscall arguments are longs.
    if isinstance(value, bool):
        return ctypes.c_long(int(value))
    if isinstance(value, int):
        return ctypes.c_ulong(value) if value > 0x7FFF_FFFF_FFFF_FFFF else ctypes.c_long(value)
    if isinstance(value, str):
        return ctypes.c_char_p(os.fsencode(value))
    if value is None:
        return ctypes.c_void_p(None)
    return value


def syscall(name: str, *args: object, detail: str = "") -> int:
    """Call syscall ``name``; return its result or raise KernelError(name, errno)."""
    try:
        number = NR[name]
    except KeyError:
        raise KernelError(name, 38, detail, f"not supported on {ARCH}") from None  # ENOSYS
    result = int(_raw_syscall(ctypes.c_long(number), *(_arg(a) for a in args)))
    if result == -1:
        raise KernelError(name, ctypes.get_errno(), detail)
    return result


def check(result: int, name: str, detail: str = "") -> int:
    """Turn a libc ``-1`` return into KernelError(name, errno)."""
    if result == -1:
        raise KernelError(name, ctypes.get_errno(), detail)
    return result
