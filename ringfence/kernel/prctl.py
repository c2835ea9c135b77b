"""Process attributes set through prctl(2): death signal, dumpable, subreaper, no_new_privs.

Owns: the PR_* constants used outside capabilities. Must never drop capabilities (caps.py does).
"""

from __future__ import annotations

from ._syscall import check, libc

# linux/prctl.h
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39


def _prctl(option: int, arg: int = 0) -> int:
    return check(libc.prctl(option, arg, 0, 0, 0), "prctl", str(option))


def set_pdeathsig(signum: int) -> None:
    _prctl(PR_SET_PDEATHSIG, signum)


def set_dumpable(on: bool) -> None:
    _prctl(PR_SET_DUMPABLE, int(on))


def set_child_subreaper() -> None:
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_no_new_privs() -> None:
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def get_no_new_privs() -> bool:
    return _prctl(PR_GET_NO_NEW_PRIVS) == 1


def set_name(name: str) -> None:
    import ctypes

    libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
