"""User-mode networking for a sandbox (``--net user``): slirp4netns or pasta behind one API.

Owns: the ``UserNetStack``/``AllowHostPorts``/``PublishPorts``/``IPAddressAllow``/
``IPAddressDeny`` profile keys (:func:`parse_keys` → :class:`UserNetConfig`), choosing and
running the helper that connects the sandbox's network namespace to the host's network, and the
addresses, routes, policy rules and neighbour entries inside that namespace (:func:`start` →
:class:`UserNet`). Must never: contact the network itself, leave a helper process or a
temporary directory behind, let the sandbox reach the host's loopback services unless a port is
granted one by one, or import anything heavy (this runs on the sandbox's start-up path;
``subprocess``, ``shutil``, ``socket`` and ``json`` are avoided or loaded off the hot path).

Where it sits in the start-up: the launcher L (host namespaces) forks C, which unshares the
namespaces and forks I, PID 1 of the sandbox. I brings ``lo`` up and blocks. L calls
``start(I's host pid, config)``; it returns once the sandbox's interface is up with its
addresses, default routes, rules and the DNS forwarder reachable. Then L lets I go on; I binds
:data:`RESOLV_CONF` (also ``UserNet.resolv_conf``; the same for both stacks, so it is known
before start) on /etc/resolv.conf, drops every privilege and execs the payload. The payload has
no capabilities, so it cannot change what is configured here. L calls :meth:`UserNet.stop`
when the sandbox ends.

Addressing (identical for both stacks)::

    sandbox   10.0.2.100/32   fd00::100/128     interface tap0, MTU 65520
    gateway   10.0.2.2        fe80::2           permanent neighbour 52:55:0a:00:02:02
    DNS       10.0.2.3, port 53 only (forwarded by the stack to the host's resolver)

Host loopback is blocked by every route, twice:

1. The stack: slirp4netns runs with ``--disable-host-loopback`` (10.0.2.2, the whole 10.0.2.0/24
   alias range and fd00::/64 would otherwise be the host's 127.0.0.1/::1); pasta runs with
   ``--no-map-gw`` and ``-T none -U none``: its "splice" path maps the sandbox's own loopback
   ports to the host's loopback, and with the default ``-T auto`` every port the host listens
   on, 127.0.0.1-only services included, appears at the sandbox's 127.0.0.1 (that is the
   leak "even with --no-map-gw"). ``AllowHostPorts=`` opens exactly the listed ports on that
   path (``-T PORT``: sandbox 127.0.0.1:PORT → host 127.0.0.1:PORT), which only pasta can do;
   slirp4netns maps all host ports or none.
2. The sandbox's policy rules (priority 300) ``prohibit`` the stack's host-mapping addresses
   (slirp4netns: 10.0.2.0/24, fd00::/64; pasta: 10.0.2.2, 10.0.2.3, fd00::2, fd00::3; both
   fe80::2). Rules 200/201 let only UDP/TCP port 53 to 10.0.2.3 through first: libslirp before
   4.8 forwards *every* port of 10.0.2.3 to the host's resolver, which may be a loopback
   address such as 127.0.0.53. Rules 50+ let the replies of published ports reach
   slirp4netns, whose port forwarding makes host clients appear as 10.0.2.2. A connect() to a
   blocked address fails at once with EACCES, before any packet leaves the sandbox.

Rules, not routes, and no neighbour discovery, because a socket may name its interface without
any privilege (SO_BINDTODEVICE, IP_UNICAST_IF, IP(V6)_PKTINFO): an IPv6 lookup bound to an
interface skips reject routes (their device is ``lo``), and IPv4 then treats *any* refused
destination as on-link. So ARP and NDP solicitation are off on tap0 and the gateway is a
permanent neighbour: a forced IPv4 packet can only go to the gateway itself, where the stack's
own switch (1. above) holds. The kernel's local-table route for ff00::/8 on tap0 is removed,
or IPv6 multicast would bypass every rule. What remains, proven by the test suite: an
interface-bound socket can send IPv4 *multicast* (no neighbour needed) to the stack past
IPAddressDeny=multicast; the stacks relay it to the host's network, not to its loopback.

Services on the host that listen on a wildcard address (0.0.0.0, ::) remain reachable at the
host's own external addresses, as they would be from another machine on the network (but
without the host firewall's INPUT rules): deny those addresses with ``IPAddressDeny=``.

IPAddressAllow= / IPAddressDeny= mirror systemd.resource-control(5): an address is allowed if it
matches an IPAddressAllow= entry (whatever the prefix lengths); otherwise denied if it matches
an IPAddressDeny= entry; otherwise allowed. "any", "localhost", "link-local" and "multicast"
name 0.0.0.0/0 ::/0, 127.0.0.0/8 ::1/128, 169.254.0.0/16 fe80::/64, 224.0.0.0/4 ff00::/8.
The blocked set, deny minus allow computed exactly as prefixes, becomes ``prohibit`` rules
(priority 100). Differences from systemd, all due to routing instead of a cgroup BPF filter:

- only the destination of outgoing traffic is checked (and so the replies of incoming TCP);
  systemd also drops incoming packets by source address;
- the sandbox's own addresses (its loopback, 10.0.2.100, fd00::100) are always reachable: the
  kernel's local table comes before every rule, and they are not the host's;
- PublishPorts= replies are let through before IPAddressDeny= (an explicit publish wins);
- IPAddressDeny=any also blocks the DNS forwarder unless 10.0.2.3 is allowed (as in systemd);
  the host-loopback blocks apply whatever IPAddressAllow= says.

Choice of the default stack, measured on this project's machine (kernel 6.18, 2 cores, Python
3.11; Debian 12: slirp4netns 1.2.0 with libslirp 4.7.0, passt 0.0~git20230309), with
``benchmarks/network.py`` (medians; one TCP stream of 256 MiB; "outside" is the same Python
client and server on the host; ratios against it):

==========================  ===========  ======================  =======================
median of 5 (2-4 runs)      outside      slirp4netns             pasta
==========================  ===========  ======================  =======================
start() until configured    —            5.6–9.1 ms              22–25 ms
the same, fresh interpreter —            13.6–15.0 ms            31.8 ms
stop() after the sandbox    —            0.3–0.4 ms              16–17 ms
sandbox → host (upload)     28–30 Gb/s   11.5–11.6 Gb/s (38–40%) 0.7–7.2 Gb/s (3–25%)
                                         or 5.1–5.2 (18%), below
host → sandbox (download)   29–30 Gb/s   10.8 Gb/s (36%) quickack 15.1–16.8 Gb/s (52–57%)
                                         (7.8–8.4, 26–30%, without)
host → published port       25–30 Gb/s   7.5–8.6 Gb/s (25–31%)   14.6–17.2 Gb/s (49–68%)
connect() round trip        0.05–0.07 ms 0.15–0.19 ms            0.11 ms
==========================  ===========  ======================  =======================

slirp4netns's figures are with :data:`TUNING` (reno in the sandbox's namespace) and, for
downloads, with its default routes asking for quick ACKs (RTAX_QUICKACK); without TUNING
(``benchmarks/network.py --untuned``) uploads ran at 5.1–6.2 Gbit/s (18–21%). End to end,
``ringfence run --net user -- /bin/true`` took 4.6 ms more than ``--net none`` (hyperfine, 80
runs, medians 49.8 vs 45.2 ms); later, on a machine shared with other test runs, 7.1 and 12.9
ms (medians 57.4 vs 64.5, 50.8 vs 63.8 ms).

So ``auto`` picks slirp4netns: it meets the "at most 10 ms" start-up target and pasta cannot
(20–25 ms even with its port scan off; ``-t/-u/-T/-U auto`` cost ~80 ms more; this pasta
pre-opens pools of 64 host and 64 namespace sockets and 32 pipes at start, with no option to
skip them), and pasta's uploads lose segments (guest retransmissions and RTO timeouts, nothing
dropped on tap0; some connections are reset), which neither a lower ``tcp_rto_min_us``,
``tcp_reordering=1``, reno nor a smaller MTU in the sandbox fixes. The newer pasta of Debian 13
needs libc6 >= 2.38 (Debian 12 has 2.36) and bookworm-backports has no passt.

The "half of the same transfer outside" target is not met by slirp4netns, and the limit is
slirp4netns itself: it is one thread, and with TUNING it runs at 98–99% of a core during an
upload (``--cpu``; perf: 76% of it in the kernel for its tap reads, socket sends and polls,
20% in libslirp's 16-bit checksum loop), while outside the sandbox the same transfer has two
parties, not three, on this 2-core machine. libslirp 4.7 never scales its TCP window (64 KiB,
two 32 KiB segments in flight), so downloads are bound by round trips: slirp4netns at 75–77%,
the rest waiting. The quickack route metric on the sandbox's default routes (RTAX_QUICKACK,
set for slirp4netns only: pasta's downloads fall to 0.7 Gbit/s with it) brings downloads to
10.8–11.4 Gbit/s (36–39%) with slirp4netns then at 99%, still short of half.
Uploads stay at 5 Gbit/s in some runs (18%), with slirp4netns at 38–50% of a core: all three
parties then share the two cores badly (seen with slirp4netns on the CPU of the server's
process). The reference is loopback at ~29 Gbit/s under the host's BBR; against a real link of
up to a few Gbit/s slirp4netns is not the bottleneck.

``auto`` picks pasta when AllowHostPorts= is set or a PublishPorts= address is IPv6 (both
beyond slirp4netns), or when slirp4netns is missing. slirp4netns runs with ``--enable-seccomp``
(free) but not ``--enable-sandbox`` (it needs uid 0 mapped in the sandbox's user namespace);
pasta sandboxes itself (namespaces, seccomp, no capabilities, not dumpable).

Lifetime of the helper: it is L's child with PR_SET_PDEATHSIG(SIGKILL), in its own session (a
terminal's ^C is for L to relay, not for the helper); slirp4netns also gets ``--exit-fd`` (a
pipe whose only writer is L). A watcher thread in L holds a pidfd of I and kills the helper as
soon as the sandbox's PID 1 is gone, even if L never calls stop(): neither stack notices a dead
namespace by itself (the tap fd keeps the namespace alive; pasta only watches namespaces bound
to a file). PDEATHSIG fires when the *thread* that called start() ends: call it from the thread
that outlives the sandbox. A root caller runs the helper as the owner of the sandbox's user
namespace (NS_GET_OWNER_UID), exactly as that user would; if the owner is root itself, pasta
gets ``--runas 0:0`` (its switch to "nobody" would clear PDEATHSIG) and slirp4netns keeps
root's capabilities, which is one more reason for the runtime to give root callers' sandboxes
an unprivileged owner.
"""

from __future__ import annotations

import os

from .._record import record as dataclass
from ..errors import MissingToolError, ProfileError, RingfenceError, SandboxError

TYPE_CHECKING = False  # not "from typing import": typing costs 2 ms to import; mypy knows
if TYPE_CHECKING:
    from _thread import LockType
    from collections.abc import Callable, Iterable, Mapping
    from ipaddress import IPv4Network, IPv6Network
    from typing import TypeAlias, TypeVar

    from ..kernel.rtnetlink import Route, Rule

    IPNetwork: TypeAlias = IPv4Network | IPv6Network
    _N = TypeVar("_N", IPv4Network, IPv6Network)

# ---------------------------------------------------------------------------------------------
# Addressing shared by both stacks

IFNAME = "tap0"
MTU = 65520
SANDBOX_IP4 = "10.0.2.100"
GATEWAY_IP4 = "10.0.2.2"
DNS_IP4 = "10.0.2.3"
SANDBOX_IP6 = "fd00::100"
GATEWAY_IP6 = "fe80::2"
RESOLV_CONF = f"nameserver {DNS_IP4}\n"

# Where the host is reachable (or would be, were the stack's own switch off), per stack.
HOST_MAPPED: dict[str, tuple[str, ...]] = {
    "slirp4netns": ("10.0.2.0/24", "fd00::/64", "fe80::2/128"),
    "pasta": ("10.0.2.2/32", "10.0.2.3/32", "fd00::2/128", "fd00::3/128", "fe80::2/128"),
}
# The stack's MAC address as the sandbox sees it (slirp4netns's fixed one; pasta is told to use
# it rather than the host's, which would be a host identifier).
GATEWAY_MAC = "52:55:0a:00:02:02"

# Policy rules, in the order the kernel evaluates them (the local table, priority 0, first).
RULE_PUBLISHED = 50  # replies of published ports to slirp4netns (10.0.2.2) → main
RULE_DENY = 100  # IPAddressDeny= minus IPAddressAllow= → prohibit
RULE_DNS = 200  # 10.0.2.3, UDP and TCP port 53 only → main
RULE_HOST = 300  # the stack's host-mapping addresses → prohibit

SYMBOLIC_NETWORKS: dict[str, tuple[str, str]] = {
    "any": ("0.0.0.0/0", "::/0"),
    "localhost": ("127.0.0.0/8", "::1/128"),
    "link-local": ("169.254.0.0/16", "fe80::/64"),
    "multicast": ("224.0.0.0/4", "ff00::/8"),
}

STACKS = ("auto", "pasta", "slirp4netns")
KEYS = ("UserNetStack", "AllowHostPorts", "PublishPorts", "IPAddressAllow", "IPAddressDeny")

READY_TIMEOUT_S = 10.0

# linux/nsfs.h: _IO(0xb7, 0x4)
NS_GET_OWNER_UID = 0xB704
# linux/sched.h
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
# asm-generic/signal.h
SIGKILL = 9
SIGPIPE = 13
SIGXFSZ = 25
SIG_DFL = 0
SIG_SETMASK = 2


# ---------------------------------------------------------------------------------------------
# Configuration (pure)


@dataclass(frozen=True)
class PortForward:
    """A host port forwarded into the sandbox: ``[HOSTADDR:]HOSTPORT:SANDBOXPORT[/tcp|udp]``.

    HOSTADDR defaults to 127.0.0.1, so a published service is reachable from the host only;
    that is safer than 0.0.0.0 (every network the host is on), which must be asked for. An
    IPv6 HOSTADDR is written in brackets: ``[::1]:8080:80``.
    """

    host_port: int
    sandbox_port: int
    proto: str = "tcp"
    host_addr: str = "127.0.0.1"

    @classmethod
    def parse(cls, text: str, key: str = "PublishPorts") -> PortForward:
        def bad(why: str) -> ProfileError:
            return ProfileError(
                f"{key}: {text!r} {why}",
                "use [HOSTADDR:]HOSTPORT:SANDBOXPORT[/tcp|udp], e.g. 127.0.0.1:8080:80/tcp",
            )

        body, slash, proto = text.strip().partition("/")
        proto = proto.lower() if slash else "tcp"
        if proto not in ("tcp", "udp"):
            raise bad(f"has protocol {proto!r}, not tcp or udp")
        host_addr = "127.0.0.1"
        if body.startswith("["):
            addr, bracket, rest = body[1:].partition("]")
            if not bracket or not rest.startswith(":"):
                raise bad("has an unclosed [IPv6 address]")
            host_addr, parts = addr, rest[1:].split(":")
            if len(parts) != 2:
                raise bad("is not HOSTPORT:SANDBOXPORT after the address")
        else:
            parts = body.split(":")
            if len(parts) == 3:
                host_addr, parts = parts[0], parts[1:]
            elif len(parts) != 2:
                raise bad("is not [HOSTADDR:]HOSTPORT:SANDBOXPORT")
        import ipaddress

        try:
            host_addr = str(ipaddress.ip_address(host_addr))
        except ValueError:
            raise bad(f"has {host_addr!r}, which is not an IP address") from None
        host_port = _port(parts[0], key, text)
        sandbox_port = _port(parts[1], key, text)
        return cls(host_port, sandbox_port, proto, host_addr)

    def __str__(self) -> str:
        addr = f"[{self.host_addr}]" if ":" in self.host_addr else self.host_addr
        return f"{addr}:{self.host_port}:{self.sandbox_port}/{self.proto}"


def _port(value: object, key: str, text: object = None) -> int:
    shown = repr(text if text is not None else value)
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ProfileError(f"{key}: {shown} is not a port number", "use 1-65535") from None
    if not 1 <= port <= 65535:
        raise ProfileError(f"{key}: {shown} is outside 1-65535", "use 1-65535")
    return port


def parse_network(text: str, key: str) -> tuple[IPNetwork, ...]:
    """One IPAddressAllow=/IPAddressDeny= entry: ADDRESS[/PREFIXLEN] or a symbolic name."""
    import ipaddress

    name = text.strip()
    if name in SYMBOLIC_NETWORKS:
        return tuple(ipaddress.ip_network(n) for n in SYMBOLIC_NETWORKS[name])
    try:
        # strict=False as systemd: host bits after the prefix length are ignored.
        return (ipaddress.ip_network(name, strict=False),)
    except ValueError:
        raise ProfileError(
            f"{key}: {text!r} is not an IP address or prefix",
            "use ADDRESS[/PREFIXLEN], any, localhost, link-local or multicast",
        ) from None


@dataclass(frozen=True)
class UserNetConfig:
    """What ``--net user`` must provide. Validated on construction; build it with
    :func:`parse_keys` from profile keys or CLI values."""

    stack: str = "auto"
    allow_host_ports: tuple[int, ...] = ()
    publish: tuple[PortForward, ...] = ()
    ip_allow: tuple[IPNetwork, ...] = ()
    ip_deny: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        if self.stack not in STACKS:
            raise ProfileError(
                f"UserNetStack: {self.stack!r} is not a network stack",
                "use auto, pasta or slirp4netns",
            )
        for port in self.allow_host_ports:
            _port(port, "AllowHostPorts")
        seen: set[tuple[str, str, int]] = set()
        allowed = set(self.allow_host_ports)
        for fwd in self.publish:
            ident = (fwd.host_addr, fwd.proto, fwd.host_port)
            if ident in seen:
                raise ProfileError(f"PublishPorts: {fwd} is listed twice", "list it once")
            seen.add(ident)
            # With pasta both go through the sandbox's and the host's loopback: the same port
            # on both lists would forward a port to itself.
            if fwd.proto == "tcp" and fwd.sandbox_port in allowed:
                raise ProfileError(
                    f"PublishPorts: {fwd} uses sandbox port {fwd.sandbox_port}, which "
                    "AllowHostPorts= maps to the host",
                    "pick another sandbox port",
                )
            if fwd.proto == "tcp" and fwd.host_port in allowed:
                raise ProfileError(
                    f"PublishPorts: {fwd} binds host port {fwd.host_port}, which "
                    "AllowHostPorts= forwards to from the sandbox",
                    "pick another host port",
                )

    def blocked(self) -> tuple[IPNetwork, ...]:
        """The exact set IPAddressDeny= minus IPAddressAllow=, as collapsed prefixes."""
        return blocked_networks(self.ip_allow, self.ip_deny)


def blocked_networks(
    allow: Iterable[IPNetwork], deny: Iterable[IPNetwork]
) -> tuple[IPNetwork, ...]:
    """systemd's rule (allow wins wherever it matches) as prefixes for prohibit routes."""
    from ipaddress import IPv4Network, IPv6Network

    allow, deny = list(allow), list(deny)
    v4 = _subtract(
        [n for n in deny if isinstance(n, IPv4Network)],
        [n for n in allow if isinstance(n, IPv4Network)],
    )
    v6 = _subtract(
        [n for n in deny if isinstance(n, IPv6Network)],
        [n for n in allow if isinstance(n, IPv6Network)],
    )
    return (*v4, *v6)


def _subtract(deny: list[_N], allow: list[_N]) -> list[_N]:
    """The addresses in ``deny`` and not in ``allow``, as collapsed prefixes of one family."""
    from ipaddress import collapse_addresses

    pieces = list(collapse_addresses(deny))
    for hole in collapse_addresses(allow):
        rest: list[_N] = []
        for piece in pieces:
            if not piece.overlaps(hole):
                rest.append(piece)
            elif not piece.subnet_of(hole):  # the hole is inside this piece
                rest.extend(piece.address_exclude(hole))
        pieces = rest
    return list(collapse_addresses(pieces))


def _items(key: str, value: object) -> list[str]:
    """A key's value as a flat list of entries: lists, and whitespace inside strings, split."""
    if isinstance(value, bool):
        raise ProfileError(f"{key}: {value!r} is not a list", "give a string or a list")
    if isinstance(value, (str, int)):
        values: list[object] = [value]
    elif isinstance(value, (list, tuple)):
        values = list(value)
    else:
        raise ProfileError(f"{key}: {value!r} is not a list", "give a string or a list")
    out: list[str] = []
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ProfileError(f"{key}: {item!r} is not a string", "give strings")
        text = str(item)
        if text.strip() == "":
            out = []  # systemd: an empty assignment resets the list
            continue
        out.extend(text.replace(",", " ").split())
    return out


def parse_keys(mapping: Mapping[str, object]) -> UserNetConfig:
    """Build a UserNetConfig from profile keys (TOML values or CLI strings).

    ``UserNetStack``: auto | pasta | slirp4netns. ``AllowHostPorts``: ports. ``PublishPorts``:
    ``[HOSTADDR:]HOSTPORT:SANDBOXPORT[/tcp|udp]`` entries. ``IPAddressAllow``/``IPAddressDeny``:
    ADDRESS[/PREFIXLEN] or any/localhost/link-local/multicast. List values may be lists or
    whitespace-separated strings; an empty entry resets what came before, as in systemd.
    """
    for key in mapping:
        if key not in KEYS:
            raise ProfileError(
                f"{key}: not a user-mode network key", f"known keys: {', '.join(KEYS)}"
            )
    stack = mapping.get("UserNetStack", "auto")
    if not isinstance(stack, str):
        raise ProfileError(f"UserNetStack: {stack!r} is not a string", "use auto|pasta|slirp4netns")
    ports: list[int] = []
    for item in _items("AllowHostPorts", mapping.get("AllowHostPorts", [])):
        port = _port(item, "AllowHostPorts")
        if port not in ports:
            ports.append(port)
    publish = tuple(
        PortForward.parse(item) for item in _items("PublishPorts", mapping.get("PublishPorts", []))
    )
    nets: dict[str, list[IPNetwork]] = {}
    for key in ("IPAddressAllow", "IPAddressDeny"):
        nets[key] = [
            n for item in _items(key, mapping.get(key, [])) for n in parse_network(item, key)
        ]
    return UserNetConfig(
        stack=stack.strip(),
        allow_host_ports=tuple(ports),
        publish=publish,
        ip_allow=tuple(nets["IPAddressAllow"]),
        ip_deny=tuple(nets["IPAddressDeny"]),
    )


# ---------------------------------------------------------------------------------------------
# Choosing the stack (pure, given a lookup function)


def which(name: str) -> str | None:
    """shutil.which without importing shutil (7 ms on the start-up path)."""
    for directory in os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def choose_stack(
    config: UserNetConfig, lookup: Callable[[str], str | None] = which
) -> tuple[str, str]:
    """(stack name, executable path) for this config, or a ProfileError/MissingToolError."""
    if config.stack == "slirp4netns" and config.allow_host_ports:
        raise ProfileError(
            f"AllowHostPorts: {' '.join(map(str, config.allow_host_ports))} needs pasta",
            "slirp4netns maps all host loopback ports or none; set UserNetStack=pasta or auto",
        )
    ipv6_publish = [str(f) for f in config.publish if ":" in f.host_addr]
    if config.stack == "slirp4netns" and ipv6_publish:
        raise ProfileError(
            f"PublishPorts: {' '.join(ipv6_publish)} needs pasta",
            "slirp4netns forwards from IPv4 host addresses only; set UserNetStack=pasta or auto",
        )
    if config.stack == "auto":
        needs_pasta = config.allow_host_ports or ipv6_publish
        order = ("pasta",) if needs_pasta else ("slirp4netns", "pasta")
    else:
        order = (config.stack,)
    for stack in order:
        path = lookup(stack)
        if path is not None:
            return stack, path
    if config.stack == "auto" and (config.allow_host_ports or ipv6_publish):
        what = "AllowHostPorts=" if config.allow_host_ports else "an IPv6 PublishPorts= address"
        raise MissingToolError(f"{what} needs pasta, which is not installed", "install passt")
    if config.stack != "auto":
        package = "passt" if config.stack == "pasta" else "slirp4netns"
        raise MissingToolError(f"{config.stack} is not installed", f"install {package}")
    raise MissingToolError(
        "--net user needs a user-mode network stack and none is installed",
        "install passt or slirp4netns",
    )


# ---------------------------------------------------------------------------------------------
# What to configure inside the sandbox's network namespace (pure)


@dataclass(frozen=True)
class NetnsPlan:
    """Routes and policy rules for the sandbox's namespace, in the order they are added."""

    routes: tuple[Route, ...]
    rules: tuple[Rule, ...]
    blocked: tuple[IPNetwork, ...]  # IPAddressDeny= minus IPAddressAllow=
    host_mapped: tuple[IPNetwork, ...]

    def describe(self) -> list[str]:
        return [r.describe() for r in self.rules] + [r.describe() for r in self.routes]


def _packed(text: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(text).packed


def netns_plan(config: UserNetConfig, stack: str) -> NetnsPlan:
    """The routes and rules that put ``config`` into effect for ``stack`` (pure).

    Blocks are policy rules, not routes: a rule matches whatever interface the socket names
    (SO_BINDTODEVICE, IP_UNICAST_IF, IPV6_PKTINFO need no privilege), while an IPv6 lookup
    bound to an interface skips reject routes, whose device is ``lo``.
    """
    import ipaddress

    from ..kernel import rtnetlink as rt

    def family(net: IPNetwork) -> int:
        return rt.AF_INET if net.version == 4 else rt.AF_INET6

    # slirp4netns never scales its TCP window (64 KiB): downloads are bounded by round trips,
    # and acknowledging every segment at once (quickack) keeps its window moving (measured:
    # downloads 7.8-8.4 -> 10.8-11.4 Gbit/s). pasta's downloads collapse with it (0.7 Gbit/s).
    quick = stack == "slirp4netns"
    routes = (
        rt.Route(
            rt.AF_INET,
            bytes(4),
            0,
            gateway=_packed(GATEWAY_IP4),
            dev=IFNAME,
            onlink=True,
            quickack=quick,
        ),
        rt.Route(
            rt.AF_INET6, bytes(16), 0, gateway=_packed(GATEWAY_IP6), dev=IFNAME, quickack=quick
        ),
    )
    rules: list[Rule] = []
    if stack == "slirp4netns":
        # slirp4netns's port forwarding connects from 10.0.2.2: the published server's replies
        # must reach it, whatever IPAddressDeny= says (an explicit PublishPorts= wins).
        for offset, fwd in enumerate(config.publish):
            proto = rt.IPPROTO_TCP if fwd.proto == "tcp" else rt.IPPROTO_UDP
            rules.append(
                rt.Rule(
                    rt.AF_INET,
                    RULE_PUBLISHED + offset,
                    src=_packed(SANDBOX_IP4),
                    src_len=32,
                    dst=_packed(GATEWAY_IP4),
                    dst_len=32,
                    ip_proto=proto,
                    sport=fwd.sandbox_port,
                )
            )
    blocked = config.blocked()
    for net in blocked:
        rules.append(
            rt.Rule(
                family(net),
                RULE_DENY,
                "prohibit",
                dst=net.network_address.packed,
                dst_len=net.prefixlen,
            )
        )
    for offset, proto in enumerate((rt.IPPROTO_UDP, rt.IPPROTO_TCP)):
        rules.append(
            rt.Rule(
                rt.AF_INET,
                RULE_DNS + offset,
                dst=_packed(DNS_IP4),
                dst_len=32,
                ip_proto=proto,
                dport=53,
            )
        )
    host_mapped = tuple(ipaddress.ip_network(n) for n in HOST_MAPPED[stack])
    for net in host_mapped:
        rules.append(
            rt.Rule(
                family(net),
                RULE_HOST,
                "prohibit",
                dst=net.network_address.packed,
                dst_len=net.prefixlen,
            )
        )
    return NetnsPlan(routes, tuple(rules), blocked, host_mapped)


def helper_argv(
    stack: str,
    path: str,
    pid: int,
    config: UserNetConfig,
    *,
    ready_fd: int,
    exit_fd: int | None = None,
    api_socket: str | None = None,
    as_root: bool = False,
) -> list[str]:
    """The helper's command line (pure). ``ready_fd``/``exit_fd`` are numbers in the helper."""
    if stack == "slirp4netns":
        argv = [
            path,
            "--disable-host-loopback",
            "--enable-seccomp",
            "--enable-ipv6",
            f"--mtu={MTU}",
            f"--ready-fd={ready_fd}",
        ]
        if exit_fd is not None:
            argv.append(f"--exit-fd={exit_fd}")
        if api_socket is not None:
            argv.append(f"--api-socket={api_socket}")
        return [*argv, str(pid), IFNAME]

    def spec(proto: str) -> str:
        fwds = [f for f in config.publish if f.proto == proto]
        return ",".join(f"{f.host_addr}/{f.host_port}:{f.sandbox_port}" for f in fwds) or "none"

    argv = [
        path,
        "--foreground",
        "--quiet",
        # pasta writes its PID file after configuring the namespace and binding its ports:
        # a pipe as PID file tells when it is ready.
        "--pid",
        f"/dev/fd/{ready_fd}",
        "--ns-ifname",
        IFNAME,
        "--address",
        SANDBOX_IP4,
        "--netmask",
        "24",
        "--gateway",
        GATEWAY_IP4,
        "--address",
        SANDBOX_IP6,
        "--dns-forward",
        DNS_IP4,
        "--no-map-gw",
        "--mac-addr",
        GATEWAY_MAC,
        "--no-dhcp",
        "--no-dhcpv6",
        "--no-ra",
        "--tcp-ports",
        spec("tcp"),
        "--udp-ports",
        spec("udp"),
        "--tcp-ns",
        ",".join(map(str, config.allow_host_ports)) or "none",
        "--udp-ns",
        "none",
    ]
    if as_root:
        # pasta would switch to "nobody", which clears PR_SET_PDEATHSIG; it drops its
        # capabilities and enters its own namespaces anyway.
        argv += ["--runas", "0:0"]
    return [*argv, str(pid)]


# ---------------------------------------------------------------------------------------------
# Running it


class UserNet:
    """A running user-mode network for one sandbox. Returned by :func:`start`.

    A handle, not data (and a plain class: one dataclass fewer to build at import time).
    """

    resolv_conf: str = RESOLV_CONF

    def __init__(self, sandbox_pid: int, config: UserNetConfig, stack: str, path: str) -> None:
        self.sandbox_pid = sandbox_pid
        self.config = config
        self.stack = stack
        self.path = path
        self.helper_pid = -1
        self.startup_ms = 0.0
        self._plan: NetnsPlan | None = None
        self._configurator: _Configurator | None = None
        self._helper_pidfd = -1
        self._sandbox_pidfd = -1
        self._exit_w = -1
        self._log_fd = -1
        self._wake_r = -1
        self._wake_w = -1
        self._watching: LockType | None = None  # held by the watcher thread while it runs
        self._api_dir: str | None = None
        self._stopped = False
        self._version: str | None = None
        self._fds: list[int] = []

    @property
    def plan(self) -> NetnsPlan:
        """The routes and rules in force (computed in the configuring child during start)."""
        if self._plan is None:
            self._plan = netns_plan(self.config, self.stack)
        return self._plan

    # -- lifetime ------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill and reap the helper and release everything. Idempotent; never raises."""
        if self._stopped:
            return
        self._stopped = True
        self._kill_helper()
        configurator, self._configurator = self._configurator, None
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        lock = self._watching
        if lock is not None:
            lock.acquire()  # returns once the watcher thread has finished
            lock.release()
        if configurator is not None:
            configurator.cancel()
            os.close(configurator.pidfd)
        _remove_private_dir(self._api_dir)
        self._api_dir = None
        for fd in (
            self._helper_pidfd,
            self._sandbox_pidfd,
            self._exit_w,
            self._log_fd,
            self._wake_r,
            self._wake_w,
            *self._fds,
        ):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._helper_pidfd = self._sandbox_pidfd = self._exit_w = self._log_fd = -1
        self._wake_r = self._wake_w = -1
        self._fds.clear()

    def __enter__(self) -> UserNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _kill_helper(self) -> None:
        from ..kernel._syscall import syscall

        fd = self._helper_pidfd
        if fd < 0:
            return
        try:
            syscall("pidfd_send_signal", fd, SIGKILL, None, 0)
        except RingfenceError:
            pass  # already gone
        try:
            os.waitid(os.P_PIDFD, fd, os.WEXITED)
        except ChildProcessError:
            pass  # reaped by the watcher thread

    def _watch(self) -> None:
        # Runs in a thread: when the sandbox's PID 1 is gone, so is the helper.
        import select

        if self._configurator is not None:
            self._configurator.reap()  # it exits right after reporting success
        wake_r = self._wake_r
        poller = select.poll()
        poller.register(self._sandbox_pidfd, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        try:
            while True:
                events = dict(poller.poll())
                if wake_r in events:
                    return
                if self._sandbox_pidfd in events:
                    self._kill_helper()
                    return
        finally:
            if self._watching is not None:
                self._watching.release()

    # -- report --------------------------------------------------------------------------

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = _tool_version(self.path)
        return self._version

    def describe(self) -> dict[str, object]:
        """What the --json report says about the network."""
        return {
            "net": "user",
            "stack": self.stack,
            "version": self.version,
            "helper_pid": self.helper_pid,
            "startup_ms": round(self.startup_ms, 2),
            "interface": IFNAME,
            "addresses": [f"{SANDBOX_IP4}/32", f"{SANDBOX_IP6}/128"],
            "gateway": [GATEWAY_IP4, GATEWAY_IP6],
            "dns": [DNS_IP4],
            "host_loopback": (
                f"blocked except ports {', '.join(map(str, self.config.allow_host_ports))}"
                if self.config.allow_host_ports
                else "blocked"
            ),
            "host_mapped_blocked": [str(n) for n in self.plan.host_mapped],
            "allowed_host_ports": list(self.config.allow_host_ports),
            "published_ports": [str(f) for f in self.config.publish],
            "ip_address_allow": [str(n) for n in self.config.ip_allow],
            "ip_address_deny": [str(n) for n in self.config.ip_deny],
            "ip_blocked": [str(n) for n in self.plan.blocked],
            "rules": self.plan.describe(),
        }


def _tool_version(path: str) -> str:
    import subprocess

    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = [line.strip() for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    wanted = [
        line
        for line in lines
        if ("version" in line and "GPL" not in line) or line.startswith("libslirp")
    ]
    return "; ".join(wanted) or "unknown"


def start(pid: int, config: UserNetConfig | None = None) -> UserNet:
    """Connect the network namespace of ``pid`` (the sandbox's PID 1, host pid) to the host.

    Preconditions: ``pid`` is blocked inside its new user and network namespaces, whose user
    namespace belongs to the caller's uid (or the caller is root), and nothing else in it has
    run yet. Returns once the namespace is fully configured. Raises ProfileError,
    MissingToolError or SandboxError; on error nothing is left running.

    Start-up is on the sandbox's critical path, so the work overlaps: the helper is started;
    while it starts, a child enters the namespaces, computes the plan and opens its netlink
    socket; once the helper says it is ready (tap0 exists) the child configures, while this
    process makes tap0 *persistent* through a copy of the helper's tap fd (pidfd_getfd): when
    the helper exits, tap0 is then only detached and goes with the namespace, in the kernel's
    background cleanup. Otherwise its removal (20-60 ms of synchronize_rcu here) would happen
    in the exiting helper, and stop() or a CLI run would wait for it. pasta is not dumpable,
    so for pasta the child creates tap0 persistent before pasta attaches to it.
    """
    import time

    begin = time.monotonic()
    config = config if config is not None else UserNetConfig()
    stack, path = choose_stack(config)
    net = UserNet(pid, config, stack, path)
    try:
        # pasta is not dumpable, so its tap fd cannot be taken later: create tap0 first.
        if stack == "pasta":
            configurator = net._configurator = _Configurator(pid, config, stack, create_tap=True)
            configurator.wait_for_tap()
            ready_r = _launch(net)
        else:
            ready_r = _launch(net)
            configurator = net._configurator = _Configurator(pid, config, stack, create_tap=False)
        _wait_ready(net, ready_r)
        configurator.run(then=lambda: _make_tap_persistent(net))
        if stack == "slirp4netns" and config.publish:
            _publish_slirp(net)
        _start_watcher(net)
    except BaseException:
        net.stop()
        raise
    net.startup_ms = (time.monotonic() - begin) * 1000
    return net


def _launch(net: UserNet) -> int:
    """Start the helper; return the pipe on which it will say it is ready."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    net._fds.append(ready_r)
    keep = [ready_w]
    exit_fd_child: int | None = None
    api_dir = None
    user = _namespace_owner(net.sandbox_pid)
    try:
        if user is not None:
            # pasta reopens it through /dev/fd, which checks the pipe's owner and mode (0600).
            os.fchown(ready_w, user[0], user[1])
        net._log_fd = os.memfd_create("ringfence-usernet-log", os.MFD_CLOEXEC)
        if net.stack == "slirp4netns":
            exit_r, net._exit_w = os.pipe2(os.O_CLOEXEC)
            keep.append(exit_r)
            exit_fd_child = 3 + 1
            if net.config.publish:
                api_dir = net._api_dir = _private_dir(user)
        argv = helper_argv(
            net.stack,
            net.path,
            net.sandbox_pid,
            net.config,
            ready_fd=3,
            exit_fd=exit_fd_child,
            api_socket=f"{api_dir}/api.sock" if api_dir else None,
            as_root=os.geteuid() == 0 and user is None,
        )
        net._sandbox_pidfd = _pidfd_open(net.sandbox_pid)
        net.helper_pid, net._helper_pidfd = _spawn(argv, keep, net._log_fd, user)
    finally:
        for fd in keep:
            os.close(fd)
    return ready_r


def _private_dir(user: tuple[int, int] | None) -> str:
    """A fresh 0700 directory for slirp4netns's API socket, owned by whoever runs the helper."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    if user is not None or not os.path.isdir(base) or not os.access(base, os.W_OK):
        base = "/tmp"
    path = f"{base}/ringfence-usernet-{os.getpid()}-{os.urandom(6).hex()}"
    os.mkdir(path, 0o700)
    if user is not None:
        os.chown(path, user[0], user[1])
    return path


def _remove_private_dir(path: str | None) -> None:
    if not path:
        return
    for name in ("api.sock",):
        try:
            os.unlink(f"{path}/{name}")
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _pidfd_open(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except OSError as exc:
        raise SandboxError(
            f"the sandbox's PID 1 ({pid}) is gone before its network was set up "
            f"({os.strerror(exc.errno or 3)})"
        ) from None


def _spawn(
    argv: list[str], keep: list[int], log_fd: int, user: tuple[int, int] | None = None
) -> tuple[int, int]:
    """fork+exec ``argv`` with ``keep`` as fds 3, 4, ...; PDEATHSIG; own session.

    ``user`` (uid, gid) is switched to first (a root caller running the helper as the owner of
    the sandbox's user namespace). Returns (pid, pidfd). If the exec fails, the child says why
    in ``log_fd`` and exits 127, which the caller sees as the helper dying.
    """
    import fcntl

    from ..kernel import prctl
    from ..kernel._syscall import libc

    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            if user is not None:
                os.setgroups([])
                os.setresgid(user[1], user[1], user[1])
                os.setresuid(user[0], user[0], user[0])
                # The uid change made us non-dumpable, which makes /proc/self root's and breaks
                # pasta's "--pid /dev/fd/N"; be what a child of that user would be.
                prctl.set_dumpable(True)
            # After any uid change: changing credentials clears the death signal.
            prctl.set_pdeathsig(SIGKILL)
            if os.getppid() != parent:
                os._exit(1)  # the launcher died before PDEATHSIG was armed
            os.setsid()
            # Python ignores SIGPIPE/SIGXFSZ and the caller may block signals: exec'd programs
            # must start with the defaults.
            libc.signal(SIGPIPE, SIG_DFL)
            libc.signal(SIGXFSZ, SIG_DFL)
            libc.sigprocmask(SIG_SETMASK, bytes(128), None)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in keep]
            null = os.open("/dev/null", os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            for index, fd in enumerate(high):
                os.dup2(fd, 3 + index)  # inheritable: the only fds the helper gets
            os.closerange(3 + len(high), 1 << 20)
            os.execv(argv[0], argv)
        except BaseException as exc:  # noqa: BLE001 - must never return into the caller
            try:
                os.write(2, f"cannot run {argv[0]}: {exc}\n".encode())
            except OSError:
                pass
        os._exit(127)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        os.kill(pid, SIGKILL)
        os.waitpid(pid, 0)
        raise
    return pid, pidfd


def _namespace_owner(pid: int) -> tuple[int, int] | None:
    """For a root caller: (uid, gid) owning the sandbox's user namespace, if not root.

    The helper then runs as that user, exactly as for an unprivileged caller, instead of with
    root's capabilities in the host's namespaces.
    """
    if os.geteuid() != 0:
        return None
    import fcntl
    import struct

    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            buf = fcntl.ioctl(fd, NS_GET_OWNER_UID, bytes(4))
        finally:
            os.close(fd)
        (uid,) = struct.unpack("=I", buf)
        gid = uid
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Gid:"):
                    gid = int(line.split()[1])
    except OSError:
        return None
    return None if uid == 0 else (uid, gid)


def _helper_log(net: UserNet) -> str:
    if net._log_fd < 0:
        return ""
    try:
        data = os.pread(net._log_fd, 8192, 0)
    except OSError:
        return ""
    lines = [
        line.strip()
        for line in data.decode(errors="replace").splitlines()
        if line.strip() and "tapfd" not in line
    ]
    return " | ".join(lines[-4:])


def _wait_ready(net: UserNet, ready_r: int) -> None:
    import select
    import time

    poller = select.poll()
    poller.register(ready_r, select.POLLIN)
    poller.register(net._helper_pidfd, select.POLLIN)
    deadline = time.monotonic() + READY_TIMEOUT_S
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxError(
                f"{net.stack} did not get ready within {READY_TIMEOUT_S:.0f} s: "
                f"{_helper_log(net) or 'no message'}"
            )
        events = dict(poller.poll(left * 1000))
        if ready_r in events:
            chunk = os.read(ready_r, 64)
            buf += chunk
            # slirp4netns writes "1"; pasta writes its PID and a newline.
            if buf and (net.stack == "slirp4netns" or buf.endswith(b"\n")):
                return
            if not chunk:
                poller.unregister(ready_r)
        if net._helper_pidfd in events:
            raise SandboxError(
                f"{net.stack} exited while setting up the sandbox's network: "
                f"{_helper_log(net) or 'no message'}"
            )


def configure_namespace(
    sandbox_pid: int, config: UserNetConfig | None = None, stack: str = "slirp4netns"
) -> None:
    """Set up tap0 (which must exist), addresses, routes and rules in ``sandbox_pid``'s
    network namespace for ``config`` as run by ``stack``.

    :func:`start` does this once the stack has created tap0; tests call it on a tap device of
    their own to see what leaves the namespace.
    """
    configurator = _Configurator(sandbox_pid, config or UserNetConfig(), stack, create_tap=False)
    try:
        configurator.wait_for_tap()
        configurator.run()
    finally:
        configurator.cancel()
        os.close(configurator.pidfd)


class _Configurator:
    """A short-lived child that setns()es into the sandbox's user and network namespaces (the
    caller owns the user namespace, so the child has every capability there), prepares, and
    configures when told to. Forked at once; :meth:`run` says go and returns as soon as the
    child reports success (its exit is reaped later, off the start-up path, by :meth:`reap`).
    """

    def __init__(
        self, sandbox_pid: int, config: UserNetConfig, stack: str, *, create_tap: bool
    ) -> None:
        go_r, self._go_w = os.pipe2(os.O_CLOEXEC)
        self._err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(self._go_w)
                os.close(self._err_r)
                code = _configure_in_child(sandbox_pid, config, stack, go_r, err_w, create_tap)
                if code == 0:
                    os.write(err_w, CONFIGURED)
            except BaseException as exc:  # noqa: BLE001 - must never return into the caller
                try:
                    os.write(err_w, str(exc).encode(errors="replace")[:2000] or b"?")
                except OSError:
                    pass
            os._exit(code)
        os.close(go_r)
        os.close(err_w)
        self.pidfd = os.pidfd_open(self.pid)
        self._in_namespaces = False

    def wait_for_tap(self) -> None:
        """Return once the child is in the namespaces (and tap0 exists, if it creates it)."""
        if self._in_namespaces:
            return
        answer = os.read(self._err_r, 1)
        if answer != TAP_READY:
            self._fail(answer, "setting up the sandbox's network failed")
        self._in_namespaces = True

    def _fail(self, answer: bytes, what: str) -> None:
        while chunk := os.read(self._err_r, 4096):
            answer += chunk
        status = self.reap()
        message = answer.decode(errors="replace") or f"wait status {status}"
        raise SandboxError(f"{what}: {message}")

    def run(self, then: Callable[[], None] | None = None) -> None:
        """Say go; run ``then`` meanwhile; return when the child reports success."""
        self.wait_for_tap()
        os.write(self._go_w, b"g")
        os.close(self._go_w)
        self._go_w = -1
        if then is not None:
            then()
        answer = os.read(self._err_r, len(CONFIGURED))
        if answer != CONFIGURED:
            self._fail(answer, "configuring the sandbox's network failed")

    def cancel(self) -> None:
        """Tell the child to give up (EOF without "g") and reap it."""
        if self._go_w >= 0:
            os.close(self._go_w)
            self._go_w = -1
        self.reap()

    def reap(self) -> int | None:
        """Wait for the child's exit; idempotent, and safe from any thread (a pidfd)."""
        status = None
        if self.pidfd >= 0:
            try:
                result = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED)
                status = result.si_status if result is not None else None
            except ChildProcessError:
                pass
        if self._err_r >= 0:
            os.close(self._err_r)
            self._err_r = -1
        return status


TAP_READY = b"t"
CONFIGURED = b"c"
# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def _configure_in_child(
    sandbox_pid: int, config: UserNetConfig, stack: str, go_r: int, out_w: int, create_tap: bool
) -> int:
    """Runs in the configurator child. Returns its exit status: 0 done, 2 told to give up."""
    from ..kernel._syscall import syscall

    for ns, flag in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET)):
        path = f"/proc/{sandbox_pid}/ns/{ns}"
        if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{ns}").st_ino:
            continue  # already there (a root caller without a user namespace)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscall("setns", fd, flag, detail=path)
        finally:
            os.close(fd)
    if create_tap:
        _create_persistent_tap(IFNAME)
    os.write(out_w, TAP_READY)
    # From here on the helper is starting in parallel: the imports cost nothing on the path.
    from ..kernel import rtnetlink as rt

    plan = netns_plan(config, stack)
    mac = bytes.fromhex(GATEWAY_MAC.replace(":", ""))
    with rt.RtNetlink() as nl:
        if os.read(go_r, 1) != b"g":
            return 2  # the helper never got ready
        for path, value in SYSCTLS:
            _write_sysctl(path.format(ifname=IFNAME), value)
        for path, value in TUNING.get(stack, ()):
            try:
                _write_sysctl(path, value)
            except OSError:
                pass  # only slower, never less confined
        lo, tap = rt.if_index("lo"), rt.if_index(IFNAME)
        nl.set_link(lo, up=True)
        nl.set_link(tap, mtu=MTU)
        nl.add_neighbour(tap, rt.AF_INET, _packed(GATEWAY_IP4), mac)
        nl.add_neighbour(tap, rt.AF_INET6, _packed(GATEWAY_IP6), mac)
        nl.set_link(tap, up=True)
        nl.add_address(tap, rt.AF_INET, _packed(SANDBOX_IP4), 32)
        nl.add_address(tap, rt.AF_INET6, _packed(SANDBOX_IP6), 128, nodad=True)
        for route in plan.routes:
            nl.add_route(route)
        for rule in plan.rules:
            nl.add_rule(rule)
        # The kernel adds "multicast ff00::/8 dev tap0" to the local table, which is looked up
        # before any rule: without this, IPAddressDeny=multicast would not hold for IPv6.
        nl.delete_route(
            rt.Route(
                rt.AF_INET6,
                _packed("ff00::"),
                8,
                kind="multicast",
                dev=IFNAME,
                table=rt.RT_TABLE_LOCAL,
            )
        )
        nl.commit()
    return 0


def _make_tap_persistent(net: UserNet) -> None:
    """Best effort: mark the helper's tap0 persistent via a copy of its fd (see start())."""
    if net._helper_pidfd < 0:
        return
    import fcntl

    from ..kernel._syscall import syscall

    try:
        for name in os.listdir(f"/proc/{net.helper_pid}/fdinfo"):
            with open(f"/proc/{net.helper_pid}/fdinfo/{name}", "rb") as f:
                if f"iff:\t{IFNAME}\n".encode() not in f.read():
                    continue
            fd = syscall("pidfd_getfd", net._helper_pidfd, int(name), 0)
            try:
                fcntl.ioctl(fd, TUNSETPERSIST, 1)
            finally:
                os.close(fd)
            return
    except (OSError, RingfenceError):
        pass  # only the teardown gets slower


def _create_persistent_tap(name: str) -> None:
    """Create tap ``name`` in the current namespace, detached: the helper attaches to it."""
    import fcntl
    import struct

    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(
            f"cannot open /dev/net/tun: {os.strerror(exc.errno or 0)}",
            "user-mode networking needs it; as root: modprobe tun; chmod 0666 /dev/net/tun",
        ) from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


# Written before the link goes up. The routes are ours alone: no router advertisements, no
# autoconfiguration, no duplicate address detection (the link has one peer, the stack). And no
# neighbour solicitation at all: the gateway is a permanent entry, so a socket bound to the
# interface (which makes IPv4 treat a refused destination as on-link) reaches no other address.
SYSCTLS: tuple[tuple[str, str], ...] = (
    ("/proc/sys/net/ipv6/conf/{ifname}/accept_ra", "0"),
    ("/proc/sys/net/ipv6/conf/{ifname}/autoconf", "0"),
    ("/proc/sys/net/ipv6/conf/{ifname}/accept_dad", "0"),
    ("/proc/sys/net/ipv6/conf/{ifname}/router_solicitations", "0"),
    ("/proc/sys/net/ipv4/neigh/{ifname}/mcast_solicit", "0"),
    ("/proc/sys/net/ipv4/neigh/{ifname}/ucast_solicit", "0"),
    ("/proc/sys/net/ipv4/neigh/{ifname}/app_solicit", "0"),
    ("/proc/sys/net/ipv6/neigh/{ifname}/mcast_solicit", "0"),
    ("/proc/sys/net/ipv6/neigh/{ifname}/ucast_solicit", "0"),
    ("/proc/sys/net/ipv6/neigh/{ifname}/app_solicit", "0"),
)


# Throughput, per stack, best effort (benchmarks/network.py; the docstring has the figures).
# Every TCP connection that leaves the sandbox ends at the stack, one hop away over a lossless
# virtual link; the stack has its own connection to the real peer, with the host's congestion
# control. Inherited from the host, BBR paces the sandbox's side of that hop: with
# slirp4netns's unscaled 64 KiB window (two 32 KiB segments in flight) each paced send waits,
# and uploads ran at 5.1-6.2 Gbit/s with slirp4netns at 86-87% of a core; with reno (no
# pacing) slirp4netns is busy all the time (98-99%) and uploads run at 11.5 Gbit/s. reno is
# always allowed in a non-initial namespace (it is never "restricted"). pasta (2023) stalls
# more often with reno, so it keeps the host's choice.
TUNING: dict[str, tuple[tuple[str, str], ...]] = {
    "slirp4netns": (("/proc/sys/net/ipv4/tcp_congestion_control", "reno"),),
}


def _write_sysctl(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _publish_slirp(net: UserNet) -> None:
    """Add each PublishPorts= entry through slirp4netns's API socket, then remove the socket."""
    import json
    import socket

    api_dir = net._api_dir
    try:
        for fwd in net.config.publish:
            request = {
                "execute": "add_hostfwd",
                "arguments": {
                    "proto": fwd.proto,
                    "host_addr": fwd.host_addr,
                    "host_port": fwd.host_port,
                    "guest_addr": SANDBOX_IP4,
                    "guest_port": fwd.sandbox_port,
                },
            }
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
                s.settimeout(READY_TIMEOUT_S)
                s.connect(f"{api_dir}/api.sock")
                s.sendall(json.dumps(request).encode())
                s.shutdown(socket.SHUT_WR)
                reply = b""
                while chunk := s.recv(4096):
                    reply += chunk
            try:
                answer = json.loads(reply or b"{}")
            except ValueError:
                answer = {"error": {"desc": reply.decode(errors="replace")}}
            if "error" in answer or "return" not in answer:
                desc = answer.get("error", {}).get("desc", "no answer")
                raise SandboxError(f"PublishPorts: slirp4netns could not forward {fwd}: {desc}")
    finally:
        # Nothing else may use the API (it could add forwards): remove it from the filesystem.
        _remove_private_dir(api_dir)
        net._api_dir = None


def _start_watcher(net: UserNet) -> None:
    import _thread

    net._wake_r, net._wake_w = os.pipe2(os.O_CLOEXEC)
    lock = _thread.allocate_lock()
    lock.acquire()
    net._watching = lock
    _thread.start_new_thread(net._watch, ())
