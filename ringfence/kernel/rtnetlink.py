"""A minimal rtnetlink (NETLINK_ROUTE) client for the current network namespace.

Owns: packing RTM_NEWLINK / RTM_NEWADDR / RTM_NEWROUTE requests, sending them in batches and
turning the kernel's acknowledgements into :class:`KernelError`. It speaks to whichever network
namespace the calling thread is in when the socket is opened.

Must never: decide policy (which addresses or routes a sandbox gets is the caller's business),
enter namespaces (the caller ``setns()``es first), or import anything heavy: it is used on the
sandbox's start-up path, so it uses ``_socket`` rather than ``socket`` (which pulls in enum).
"""

from __future__ import annotations

import _socket
import struct

from .._record import record as dataclass
from ..errors import KernelError

TYPE_CHECKING = False  # typing costs milliseconds to import; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Callable

# linux/netlink.h
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLMSGERR = struct.Struct("=i")  # error, followed by the offending header

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_NEWNEIGH = 28
RTM_NEWRULE = 32
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
RTA_METRICS = 8  # nested: RTAX_* attributes (linux/rtnetlink.h)
RTAX_QUICKACK = 15
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTPROT_BOOT = 3
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTNH_F_ONLINK = 4
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")  # len, type

# Route types (linux/rtnetlink.h, enum RTN_*): the errno a connect() meets is in the comment.
ROUTE_TYPES: dict[str, int] = {
    "unicast": 1,
    "multicast": 5,
    "blackhole": 6,  # packets dropped silently (EINVAL for connect on IPv4)
    "unreachable": 7,  # EHOSTUNREACH / ENETUNREACH
    "prohibit": 8,  # EACCES
}

# linux/fib_rules.h: struct fib_rule_hdr has the layout of struct rtmsg.
FR_ACT_TO_TBL = 1
RULE_ACTIONS: dict[str, int] = {
    "lookup": FR_ACT_TO_TBL,
    "blackhole": 6,
    "unreachable": 7,
    "prohibit": 8,
}
FRA_DST = 1
FRA_SRC = 2
FRA_PRIORITY = 6
FRA_TABLE = 15
FRA_IP_PROTO = 22
FRA_SPORT_RANGE = 23
FRA_DPORT_RANGE = 24
IPPROTO_TCP = 6
IPPROTO_UDP = 17

# linux/if_link.h, linux/if.h
IFLA_MTU = 4
IFF_UP = 0x1
IFF_MULTICAST = 0x1000
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change

# linux/if_addr.h
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80
IFA_F_NOPREFIXROUTE = 0x200
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index

# linux/neighbour.h
NDA_DST = 1
NDA_LLADDR = 2
NUD_PERMANENT = 0x80
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type

AF_INET = 2
AF_INET6 = 10

# One datagram of requests stays well below the default socket buffers (212992 bytes), so the
# acknowledgements of a whole batch always fit in the receive queue.
_BATCH_BYTES = 32 * 1024


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _show(packed: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(packed))


@dataclass(frozen=True)
class Route:
    """One route. ``dst``/``gateway`` are packed addresses (4 or 16 bytes); ``dev`` a name."""

    family: int
    dst: bytes
    dst_len: int
    kind: str = "unicast"
    gateway: bytes | None = None
    dev: str | None = None
    onlink: bool = False
    table: int = RT_TABLE_MAIN
    quickack: bool = False  # RTAX_QUICKACK: acknowledge every segment at once

    def describe(self) -> str:
        dst = f"{_show(self.dst)}/{self.dst_len}" if self.dst_len else "default"
        via = f" via {_show(self.gateway)}" if self.gateway else ""
        dev = f" dev {self.dev}" if self.dev else ""
        table = "" if self.table == RT_TABLE_MAIN else f" table {self.table}"
        quick = " quickack 1" if self.quickack else ""
        return f"{self.kind} {dst}{via}{dev}{table}{quick}"


@dataclass(frozen=True)
class Rule:
    """One policy-routing rule: packets matching every given selector look up ``table``."""

    family: int
    priority: int
    action: str = "lookup"  # or an error: "prohibit" (EACCES), "unreachable", "blackhole"
    table: int = RT_TABLE_MAIN
    dst: bytes | None = None
    dst_len: int = 0
    src: bytes | None = None
    src_len: int = 0
    ip_proto: int | None = None
    sport: int | None = None
    dport: int | None = None

    def describe(self) -> str:
        parts = [f"{self.priority}:"]
        if self.src is not None:
            parts.append(f"from {_show(self.src)}/{self.src_len}")
        if self.dst is not None:
            parts.append(f"to {_show(self.dst)}/{self.dst_len}")
        if self.ip_proto is not None:
            parts.append({IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp"}.get(self.ip_proto, "proto"))
        if self.sport is not None:
            parts.append(f"sport {self.sport}")
        if self.dport is not None:
            parts.append(f"dport {self.dport}")
        if self.action == "lookup":
            parts.append("lookup main" if self.table == RT_TABLE_MAIN else f"lookup {self.table}")
        else:
            parts.append(self.action)
        return " ".join(parts)


class RtNetlink:
    """A NETLINK_ROUTE socket bound to the caller's current network namespace.

    Requests are queued by the ``add_*``/``set_*`` methods and sent by :meth:`commit`, which
    raises KernelError for the first request the kernel refused (naming it in the detail).
    """

    def __init__(self) -> None:
        self._sock = _socket.socket(
            _socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        self._sock.bind((0, 0))
        self._seq = 0
        self._queue: list[tuple[int, bytes, Callable[[], str]]] = []

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RtNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _push(self, msg_type: int, flags: int, body: bytes, what: Callable[[], str]) -> None:
        # ``what`` is only rendered when the kernel refuses the request (keeps imports lazy).
        self._seq += 1
        header = _NLMSGHDR.pack(
            _NLMSGHDR.size + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, self._seq, 0
        )
        self._queue.append((self._seq, header + body, what))

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        multicast: bool | None = None,
        mtu: int | None = None,
    ) -> None:
        flags = change = 0
        for bit, wanted in ((IFF_UP, up), (IFF_MULTICAST, multicast)):
            if wanted is not None:
                change |= bit
                flags |= bit if wanted else 0
        body = _IFINFOMSG.pack(0, 0, index, flags, change)
        if mtu is not None:
            body += _attr(IFLA_MTU, struct.pack("=I", mtu))
        self._push(RTM_NEWLINK, 0, body, lambda: f"RTM_NEWLINK index {index}")

    def add_address(
        self,
        index: int,
        family: int,
        address: bytes,
        prefixlen: int,
        *,
        nodad: bool = False,
        noprefixroute: bool = False,
    ) -> None:
        flags = IFA_F_PERMANENT | (IFA_F_NODAD if nodad else 0)
        flags |= IFA_F_NOPREFIXROUTE if noprefixroute else 0
        body = _IFADDRMSG.pack(family, prefixlen, flags & 0xFF, RT_SCOPE_UNIVERSE, index)
        body += _attr(IFA_LOCAL, address) + _attr(IFA_ADDRESS, address)
        body += _attr(IFA_FLAGS, struct.pack("=I", flags))
        self._push(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            body,
            lambda: f"RTM_NEWADDR {_show(address)}/{prefixlen}",
        )

    def add_route(self, route: Route, *, replace: bool = False) -> None:
        scope = RT_SCOPE_UNIVERSE
        if route.kind == "unicast" and route.gateway is None and route.dev is not None:
            scope = RT_SCOPE_LINK
        body = _RTMSG.pack(
            route.family,
            route.dst_len,
            0,
            0,
            route.table if route.table < 256 else 0,
            RTPROT_STATIC,
            scope,
            ROUTE_TYPES[route.kind],
            RTNH_F_ONLINK if route.onlink else 0,
        )
        if route.dst_len:
            body += _attr(RTA_DST, route.dst)
        if route.gateway is not None:
            body += _attr(RTA_GATEWAY, route.gateway)
        if route.dev is not None:
            body += _attr(RTA_OIF, struct.pack("=i", if_index(route.dev)))
        if route.table >= 256:
            body += _attr(RTA_TABLE, struct.pack("=I", route.table))
        if route.quickack:
            body += _attr(RTA_METRICS, _attr(RTAX_QUICKACK, struct.pack("=I", 1)))
        flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self._push(RTM_NEWROUTE, flags, body, lambda: f"RTM_NEWROUTE {route.describe()}")

    def delete_route(self, route: Route) -> None:
        body = _RTMSG.pack(
            route.family,
            route.dst_len,
            0,
            0,
            route.table if route.table < 256 else 0,
            0,
            0,
            ROUTE_TYPES[route.kind],
            0,
        )
        if route.dst_len:
            body += _attr(RTA_DST, route.dst)
        if route.dev is not None:
            body += _attr(RTA_OIF, struct.pack("=i", if_index(route.dev)))
        if route.table >= 256:
            body += _attr(RTA_TABLE, struct.pack("=I", route.table))
        self._push(RTM_DELROUTE, 0, body, lambda: f"RTM_DELROUTE {route.describe()}")

    def add_rule(self, rule: Rule) -> None:
        lookup = rule.action == "lookup"
        body = _RTMSG.pack(
            rule.family,
            rule.dst_len if rule.dst is not None else 0,
            rule.src_len if rule.src is not None else 0,
            0,
            rule.table if lookup and rule.table < 256 else 0,
            0,
            0,
            RULE_ACTIONS[rule.action],
            0,
        )
        body += _attr(FRA_PRIORITY, struct.pack("=I", rule.priority))
        if lookup:
            body += _attr(FRA_TABLE, struct.pack("=I", rule.table))
        if rule.dst is not None:
            body += _attr(FRA_DST, rule.dst)
        if rule.src is not None:
            body += _attr(FRA_SRC, rule.src)
        if rule.ip_proto is not None:
            body += _attr(FRA_IP_PROTO, struct.pack("=B", rule.ip_proto))
        if rule.sport is not None:
            body += _attr(FRA_SPORT_RANGE, struct.pack("=HH", rule.sport, rule.sport))
        if rule.dport is not None:
            body += _attr(FRA_DPORT_RANGE, struct.pack("=HH", rule.dport, rule.dport))
        flags = NLM_F_CREATE | NLM_F_EXCL
        self._push(RTM_NEWRULE, flags, body, lambda: f"RTM_NEWRULE {rule.describe()}")

    def add_neighbour(self, index: int, family: int, address: bytes, lladdr: bytes) -> None:
        """A permanent neighbour entry: ``address`` is at ``lladdr``, never resolved again."""
        body = _NDMSG.pack(family, index, NUD_PERMANENT, 0, 0)
        body += _attr(NDA_DST, address) + _attr(NDA_LLADDR, lladdr)
        self._push(
            RTM_NEWNEIGH,
            NLM_F_CREATE | NLM_F_REPLACE,
            body,
            lambda: f"RTM_NEWNEIGH {_show(address)} lladdr {lladdr.hex(':')}",
        )

    def commit(self) -> None:
        """Send every queued request; raise KernelError for the first one refused."""
        queue, self._queue = self._queue, []
        while queue:
            size = 0
            count = 0
            for _seq, msg, _what in queue:
                if count and size + len(msg) > _BATCH_BYTES:
                    break
                size += len(msg)
                count += 1
            batch, queue = queue[:count], queue[count:]
            self._sock.send(b"".join(msg for _seq, msg, _what in batch))
            self._collect_acks(batch)

    def _collect_acks(self, batch: list[tuple[int, bytes, Callable[[], str]]]) -> None:
        pending = {seq: what for seq, _msg, what in batch}
        failure: tuple[int, Callable[[], str]] | None = None
        while pending:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, msg_type, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                if msg_type == NLMSG_ERROR and seq in pending:
                    (error,) = _NLMSGERR.unpack_from(data, offset + _NLMSGHDR.size)
                    what = pending.pop(seq)
                    if error and failure is None:
                        failure = (-error, what)
                offset += (length + 3) & ~3
        if failure is not None:
            raise KernelError("rtnetlink", failure[0], failure[1]())


def if_index(name: str) -> int:
    """The index of interface ``name`` in the current network namespace."""
    try:
        return _socket.if_nametoindex(name)
    except OSError as exc:
        raise KernelError("if_nametoindex", exc.errno or 19, name) from None
