"""Network interfaces inside the sandbox's own network namespace.

Owns: bringing the loopback interface up (SIOCSIFFLAGS). Must never touch the host's network
namespace: callers run this only after unshare(CLONE_NEWNET). Uses libc's socket() directly:
the socket module costs more to import than the whole call.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

from ..errors import KernelError
from ._syscall import check, libc

# linux/socket.h, linux/sockios.h, linux/if.h
AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_up(ifname: str = "lo") -> None:
    fd = check(libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket", "AF_INET")
    try:
        name = ifname.encode()
        req = struct.pack("16sH14x", name, 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(fd, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(fd, SIOCSIFFLAGS, struct.pack("16sH14x", name, flags | IFF_UP))
    except OSError as e:
        raise KernelError(
            "ioctl", e.errno or ctypes.get_errno(), f"SIOCSIFFLAGS {ifname}"
        ) from None
    finally:
        os.close(fd)
