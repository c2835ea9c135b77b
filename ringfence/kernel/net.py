"""Network interfaces inside the sandbox's own network namespace.

Owns: bringing the loopback interface up (SIOCSIFFLAGS). Must never touch the host's network
namespace: callers run this only after unshare(CLONE_NEWNET).
"""

from __future__ import annotations

import fcntl
import socket
import struct

from ..errors import KernelError

# linux/sockios.h, linux/if.h
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def bring_up(ifname: str = "lo") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            req = struct.pack("16sH14x", ifname.encode(), 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(
                s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags | IFF_UP)
            )
        except OSError as e:
            raise KernelError("ioctl", e.errno or 0, f"SIOCSIFFLAGS {ifname}") from None
