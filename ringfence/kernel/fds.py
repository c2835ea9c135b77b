"""File descriptors: close everything a sandbox was not explicitly given.

Owns: close_range(2) with a keep-list. Must never open anything.
"""

from __future__ import annotations

import os

from ._syscall import NR, syscall

_MAX_FD = 0xFFFFFFFF


def close_all_except(keep: set[int], start: int = 3) -> None:
    """Close every fd >= start that is not in ``keep`` (fds in keep are left untouched)."""
    low = start
    for fd in sorted(k for k in keep if k >= start):
        if fd > low:
            _close_range(low, fd - 1)
        low = fd + 1
    _close_range(low, _MAX_FD)


def _close_range(first: int, last: int) -> None:
    if "close_range" in NR:
        syscall("close_range", first, last, 0)
    else:  # pragma: no cover - architectures without the number in our table
        os.closerange(first, min(last + 1, os.sysconf("SC_OPEN_MAX")))
