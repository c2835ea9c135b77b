"""User-mode networking (``--net user``): attacks from inside a real sandbox namespace.

The harness stands in for the core runtime: a forked child unshares a user and a network
namespace (identity map, ``lo`` up) and blocks, like the sandbox's PID 1 before "go";
``usernet.start(pid, config)`` is then called from this process (the launcher). Attacks run in
a forked child that setns()es into that user and network namespace and drops every capability
(set no_new_privs too), as the payload does. Run as root, the sandbox belongs to uid 65534, as
the core runtime does for root callers (the payload is never root inside).

Only loopback, this machine's own addresses and a tap device owned by the test are ever
contacted. Attacks that would make a stack open a connection to an outside address if they
succeeded are run only where the outcome is known to stay local (slirp4netns maps its gateway to
the host, never outward), or against the tap "oracle", a namespace whose tap0 is read by the
test itself instead of a stack.
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
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _util import alive

from ringfence.errors import KernelError, SandboxError
from ringfence.kernel import rtnetlink as rt
from ringfence.runtime import usernet

libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
NOBODY = 65534
# Who owns the fake sandbox (and so runs the payload): never root.
BOX_UID, BOX_GID = (NOBODY, NOBODY) if os.geteuid() == 0 else (os.getuid(), os.getgid())
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 4, 38, 36
SO_BINDTODEVICE = 25
IP_UNICAST_IF, IP_PKTINFO, IPV6_UNICAST_IF = 50, 8, 76
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454CA, 0x0002, 0x1000
HELPER_NAMES = ("slirp4netns", "passt", "passt.avx2", "pasta", "pasta.avx2")

STACKS = [s for s in ("slirp4netns", "pasta") if usernet.which(s)]
needs_stack = pytest.mark.skipif(not STACKS, reason="neither slirp4netns nor pasta installed")
needs_pasta = pytest.mark.skipif(not usernet.which("pasta"), reason="pasta (passt) not installed")
needs_slirp = pytest.mark.skipif(not usernet.which("slirp4netns"), reason="slirp4netns missing")


# ---------------------------------------------------------------------------------------------
# Harness


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))  # SIOCSIFFLAGS


class FakeSandbox:
    """The sandbox's PID 1 before "go": new user+net namespaces, lo up, blocked.

    With ``tap=True`` it also creates tap0 and hands its fd to the test (``self.tap``), so the
    test sees every frame the namespace sends, and no stack is involved at all.
    """

    def __init__(self, tap: bool = False) -> None:
        ready_r, ready_w = os.pipe()
        self._go_r, self._go_w = os.pipe()
        parent_sock, child_sock = socket.socketpair()
        uid, gid = BOX_UID, BOX_GID
        self.tap = -1
        pid = os.fork()
        if pid == 0:
            try:
                # Keep only our own fds: another box's "go" pipe held here would keep that box
                # from ever seeing EOF.
                keep = sorted((ready_w, self._go_r, child_sock.fileno()))
                os.closerange(3, keep[0])
                os.closerange(keep[0] + 1, keep[1])
                os.closerange(keep[1] + 1, keep[2])
                os.closerange(keep[2] + 1, 1 << 20)
                _become(uid, gid)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
                    os._exit(3)
                for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"),
                                   ("gid_map", f"{gid} {gid} 1")):  # fmt: skip
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
                _lo_up()
                if tap:
                    fd = os.open("/dev/net/tun", os.O_RDWR)
                    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", b"tap0", IFF_TAP | IFF_NO_PI))
                    socket.send_fds(child_sock, [b"t"], [fd])
                    os.close(fd)
                os.write(ready_w, b"1")
                os.read(self._go_r, 1)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(self._go_r)
        child_sock.close()
        self.pid = pid
        try:
            assert os.read(ready_r, 1) == b"1", "the fake sandbox could not start"
            if tap:
                _, fds, _, _ = socket.recv_fds(parent_sock, 1, 1)
                self.tap = fds[0]
                os.set_blocking(self.tap, False)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(ready_r)
            parent_sock.close()

    def close(self) -> None:
        if self._go_w >= 0:
            os.close(self._go_w)
            self._go_w = -1
            os.waitpid(self.pid, 0)
        if self.tap >= 0:
            os.close(self.tap)
            self.tap = -1

    def frames(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(os.read(self.tap, 65536))
            except BlockingIOError:
                return out


def _drop_privileges() -> None:
    """What the payload is left with: no capabilities at all, no_new_privs."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _become(uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # a uid change cleared it; /proc/self needs it


def _enter(pid: int) -> None:
    _become(BOX_UID, BOX_GID)
    for ns, flag in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET)):
        fd = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY)
        if libc.setns(fd, flag) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        os.close(fd)
    _drop_privileges()


def inside(pid: int, attack: Callable[..., Any], *args: Any) -> Any:
    """Run ``attack(*args)`` as the payload would: in the sandbox, without capabilities."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            _enter(pid)
            result = {"ok": attack(*args)}
        except BaseException as exc:  # noqa: BLE001
            result = {"error": repr(exc)}
        try:
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(child, 0)
    result = json.loads(data)
    assert "error" not in result, result["error"]
    return result["ok"]


class Server:
    """A TCP server on the host that sends a secret token to whoever connects."""

    def __init__(self, family: int, addr: str, port: int = 0) -> None:
        self.token = os.urandom(8).hex()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.sock.fileno(), self._stop_r], [], [])
            if self._stop_r in ready:
                return
            conn, _ = self.sock.accept()
            with conn:
                try:
                    conn.sendall(self.token.encode())
                except OSError:
                    pass

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join()
        self.sock.close()
        os.close(self._stop_r)
        os.close(self._stop_w)


def probe(family: int, addr: str, port: int, bind_dev: str | None = None) -> str:
    """connect() and read: the token if a server answered, else the errno's name."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        if bind_dev:
            s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, bind_dev.encode())
        s.connect((addr, port))
        return "reached:" + s.recv(64).decode(errors="replace")
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    finally:
        s.close()


def probe_all(targets: list[tuple[int, str, int, str | None]]) -> list[str]:
    return [f"{addr}:{port}{' dev ' + dev if dev else ''} -> {probe(fam, addr, port, dev)}"
            for fam, addr, port, dev in targets]  # fmt: skip


def udp_route(family: int, addr: str, port: int) -> str:
    """connect() a UDP socket: a route lookup only, no packet is sent."""
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((addr, port))
            return "routed"
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))


def host_addresses() -> list[tuple[int, str]]:
    """This machine's own global addresses (connecting to them never leaves the host)."""
    out: list[tuple[int, str]] = []
    for flag, family in (("-4", socket.AF_INET), ("-6", socket.AF_INET6)):
        try:
            text = subprocess.run(["ip", "-j", flag, "addr", "show", "scope", "global"],
                                  capture_output=True, text=True, check=True).stdout  # fmt: skip
        except (OSError, subprocess.CalledProcessError):
            continue
        for link in json.loads(text or "[]"):
            for info in link.get("addr_info", []):
                if "local" in info:
                    out.append((family, info["local"]))
    return out


def wait_exit(pid: int, timeout: float = 15.0) -> bool:
    """Wait (generously) for ``pid`` to exit; True if it did."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def my_helpers() -> list[int]:
    """Helper processes (by name) that are children of this process."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if comm in HELPER_NAMES and ppid == me:
            found.append(int(entry))
    return found


@pytest.fixture
def nets() -> Iterator[Callable[..., tuple[FakeSandbox, usernet.UserNet]]]:
    """Start sandboxes with networks; afterwards every helper must be gone."""
    started: list[tuple[FakeSandbox, usernet.UserNet | None]] = []

    def make(tap: bool = False, **keys: object) -> tuple[FakeSandbox, usernet.UserNet]:
        box = FakeSandbox(tap=tap)
        started.append((box, None))
        net = usernet.start(box.pid, usernet.parse_keys(keys))
        started[-1] = (box, net)
        return box, net

    yield make
    helpers = []
    for box, net in started:
        if net is not None:
            helpers.append(net.helper_pid)
            net.stop()
        box.close()
    assert not [pid for pid in helpers if alive(pid)], "a network helper outlived stop()"
    assert my_helpers() == [], "a network helper process is left over"


# ---------------------------------------------------------------------------------------------
# Host loopback


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_cannot_reach_host_loopback_services(nets: Any, stack: str) -> None:
    v4, v6 = Server(socket.AF_INET, "127.0.0.1"), Server(socket.AF_INET6, "::1")
    try:
        box, _net = nets(UserNetStack=stack)
        targets: list[tuple[int, str, int, str | None]] = []
        for server in (v4, v6):
            p = server.port
            targets += [
                (socket.AF_INET, "127.0.0.1", p, None),  # the sandbox's own loopback
                (socket.AF_INET6, "::1", p, None),
                (socket.AF_INET, usernet.GATEWAY_IP4, p, None),  # the stack's host mapping
                (socket.AF_INET, usernet.DNS_IP4, p, None),
                (socket.AF_INET6, "fd00::2", p, None),
                (socket.AF_INET6, "fd00::3", p, None),
                (socket.AF_INET6, f"{usernet.GATEWAY_IP6}%tap0", p, None),
            ]
            # The host's own addresses: through the stack they are local to the host, and a
            # service bound to loopback must not answer there either.
            targets += [(fam, addr, p, None) for fam, addr in host_addresses()]
            if stack == "slirp4netns":
                # slirp4netns maps all of 10.0.2.0/24 and fd00::/64 to the host; a socket bound
                # to the interface skips the routing rules (and reaches only slirp4netns).
                targets += [
                    (socket.AF_INET, "10.0.2.50", p, None),
                    (socket.AF_INET6, "fd00::1234", p, None),
                    (socket.AF_INET, usernet.GATEWAY_IP4, p, "tap0"),
                    (socket.AF_INET, usernet.DNS_IP4, p, "tap0"),
                    (socket.AF_INET6, "fd00::2", p, "tap0"),
                ]
        results = inside(box.pid, probe_all, targets)
    finally:
        v4.close()
        v6.close()
    leaks = [r for r in results if v4.token in r or v6.token in r]
    assert leaks == [], leaks
    # The host-mapping addresses are refused by the sandbox's own rules, at once.
    blocked = [r for r in results if r.split(":")[0] in ("10.0.2.2", "10.0.2.3", "fd00")]
    assert blocked and all(r.endswith("EACCES") for r in blocked if " dev " not in r), results


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_cannot_change_the_blocking_rules_from_inside(nets: Any, stack: str) -> None:
    box, net = nets(UserNetStack=stack)

    def attack() -> list[str]:
        out = []
        attempts: list[tuple[str, Callable[[rt.RtNetlink], None]]] = [
            ("add route", lambda nl: nl.add_route(
                rt.Route(rt.AF_INET, bytes([10, 0, 2, 2]), 32, gateway=bytes([10, 0, 2, 2]),
                         dev="tap0", onlink=True))),
            ("add rule", lambda nl: nl.add_rule(rt.Rule(rt.AF_INET, 1))),
            ("add neighbour", lambda nl: nl.add_neighbour(
                rt.if_index("tap0"), rt.AF_INET, bytes([10, 0, 2, 9]), bytes(6))),
        ]  # fmt: skip
        for what, op in attempts:
            try:
                with rt.RtNetlink() as nl:
                    op(nl)
                    nl.commit()
                out.append(f"{what}: done")
            except KernelError as exc:
                out.append(f"{what}: {errno.errorcode[exc.errno]}")
        try:
            with open("/proc/sys/net/ipv4/neigh/tap0/mcast_solicit", "w") as f:
                f.write("3")
            out.append("sysctl: done")
        except OSError as exc:
            out.append(f"sysctl: {errno.errorcode[exc.errno or 0]}")
        with open("/proc/self/status") as f:
            out += [line.strip() for line in f if line.startswith("CapEff")]
        return out

    results = inside(box.pid, attack)
    assert "CapEff:\t0000000000000000" in results
    assert [r for r in results if r.endswith("done")] == [], results
    assert inside(box.pid, probe, socket.AF_INET, usernet.GATEWAY_IP4, 1) == "EACCES"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_throughput_tuning_stays_in_the_sandbox_namespace(nets: Any, stack: str) -> None:
    path = "/proc/sys/net/ipv4/tcp_congestion_control"
    host_before = _read(path)
    box, _net = nets(UserNetStack=stack)
    seen = inside(box.pid, _read, path)
    assert _read(path) == host_before
    expected = dict(usernet.TUNING.get(stack, ())).get(path, host_before)
    assert seen == expected, (seen, expected)


@needs_pasta
def test_allow_host_ports_opens_exactly_the_listed_port(nets: Any) -> None:
    wanted, other = Server(socket.AF_INET, "127.0.0.1"), Server(socket.AF_INET, "127.0.0.1")
    try:
        box, net = nets(AllowHostPorts=[wanted.port])
        assert net.stack == "pasta"
        results = inside(box.pid, probe_all, [
            (socket.AF_INET, "127.0.0.1", wanted.port, None),
            (socket.AF_INET, "127.0.0.1", other.port, None),
            (socket.AF_INET, usernet.GATEWAY_IP4, wanted.port, None),
            (socket.AF_INET, usernet.GATEWAY_IP4, other.port, None),
        ])  # fmt: skip
    finally:
        wanted.close()
        other.close()
    assert results[0].endswith("reached:" + wanted.token), results
    assert not [r for r in results[1:] if "reached" in r], results


# ---------------------------------------------------------------------------------------------
# Publishing a sandboxed server


def _serve_once(port: int, token: str, ready_w: int) -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1)
    os.write(ready_w, b"1")
    s.settimeout(20)
    conn, peer = s.accept()
    conn.sendall(token.encode())
    conn.close()
    s.close()
    return str(peer[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_published_server_answers_from_the_host(nets: Any, stack: str) -> None:
    host_port = _free_port()
    box, net = nets(UserNetStack=stack, PublishPorts=[f"{host_port}:8080/tcp"])
    token = os.urandom(8).hex()
    ready_r, ready_w = os.pipe()
    result: list[object] = []
    server = threading.Thread(target=lambda: result.append(
        inside(box.pid, _serve_once, 8080, token, ready_w)))  # fmt: skip
    server.start()
    try:
        assert select.select([ready_r], [], [], 20)[0], "the sandboxed server did not start"
        with socket.create_connection(("127.0.0.1", host_port), timeout=20) as c:
            got = b""
            while chunk := c.recv(64):
                got += chunk
    finally:
        server.join()
        os.close(ready_r)
        os.close(ready_w)
    assert got.decode() == token
    assert f"127.0.0.1:{host_port}:8080/tcp" in net.describe()["published_ports"]  # type: ignore[operator]


@needs_slirp
def test_no_api_socket_directory_is_left(nets: Any) -> None:
    before = {n for n in os.listdir("/tmp") if n.startswith("ringfence-usernet-")}
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        before |= {n for n in os.listdir(runtime) if n.startswith("ringfence-usernet-")}
    _box, net = nets(UserNetStack="slirp4netns", PublishPorts=[f"{_free_port()}:80"])
    after = {n for n in os.listdir("/tmp") if n.startswith("ringfence-usernet-")}
    if runtime and os.path.isdir(runtime):
        after |= {n for n in os.listdir(runtime) if n.startswith("ringfence-usernet-")}
    assert after == before
    assert net._api_dir is None


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_failed_start_leaves_no_helper(stack: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    box = FakeSandbox()
    try:
        config = usernet.parse_keys(
            {"UserNetStack": stack, "PublishPorts": [f"{taken.getsockname()[1]}:80"]}
        )
        with pytest.raises(SandboxError):
            usernet.start(box.pid, config)
        assert my_helpers() == []
    finally:
        box.close()
        taken.close()


# ---------------------------------------------------------------------------------------------
# IPAddressAllow= / IPAddressDeny= and DNS


def _host_v4() -> str | None:
    return next((addr for fam, addr in host_addresses() if fam == socket.AF_INET), None)


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_ip_address_deny_refuses_a_prefix_at_once(nets: Any, stack: str) -> None:
    addr = _host_v4()
    if addr is None:
        pytest.skip("this machine has no global IPv4 address to serve a test from")
    server = Server(socket.AF_INET, addr)
    try:
        box, _ = nets(UserNetStack=stack)
        reachable = inside(box.pid, probe, socket.AF_INET, addr, server.port)
        box, net = nets(UserNetStack=stack, IPAddressDeny=f"{addr}/24")
        denied = inside(box.pid, probe, socket.AF_INET, addr, server.port)
        box, _ = nets(UserNetStack=stack, IPAddressDeny="any", IPAddressAllow=addr)
        allowed = inside(box.pid, probe_all, [(socket.AF_INET, addr, server.port, None)])
        dns = inside(box.pid, udp_route, socket.AF_INET, usernet.DNS_IP4, 53)
    finally:
        server.close()
    assert reachable == "reached:" + server.token  # the control: the route works
    assert denied == "EACCES"
    assert allowed[0].endswith("reached:" + server.token)
    assert dns == "EACCES"  # IPAddressDeny=any covers the DNS forwarder too, as in systemd


@needs_stack
def test_ip_address_deny_ipv6_and_any(nets: Any) -> None:
    box, _ = nets(IPAddressDeny="2001:db8::/32 203.0.113.0/24")
    got = inside(box.pid, lambda: [
        udp_route(socket.AF_INET6, "2001:db8::1", 9),
        udp_route(socket.AF_INET6, "2001:db9::1", 9),
        udp_route(socket.AF_INET, "203.0.113.9", 9),
        udp_route(socket.AF_INET, "198.51.100.9", 9),
    ])  # fmt: skip
    assert got == ["EACCES", "routed", "EACCES", "routed"]


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_dns_forwarder_is_routed_on_port_53_only(nets: Any, stack: str) -> None:
    box, net = nets(UserNetStack=stack)
    assert net.resolv_conf == usernet.RESOLV_CONF == f"nameserver {usernet.DNS_IP4}\n"
    got = inside(box.pid, lambda: [
        udp_route(socket.AF_INET, usernet.DNS_IP4, 53),
        udp_route(socket.AF_INET, usernet.DNS_IP4, 5353),
    ])  # fmt: skip
    assert got == ["routed", "EACCES"]


# ---------------------------------------------------------------------------------------------
# An interface-bound socket against the rules, with the test reading tap0 instead of a stack


def _oif_attacks(targets: list[tuple[int, str]]) -> list[str]:
    ifindex = socket.if_nametoindex("tap0")
    done = []
    for family, addr in targets:
        for how in ("plain", "bindtodevice", "unicast_if", "pktinfo"):
            s = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if how == "bindtodevice":
                    s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, b"tap0")
                elif how == "unicast_if":
                    if family == socket.AF_INET:
                        s.setsockopt(socket.IPPROTO_IP, IP_UNICAST_IF, socket.htonl(ifindex))
                    else:
                        s.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_IF, ifindex)
                if how == "pktinfo" and family == socket.AF_INET:
                    info = struct.pack("=i4s4s", ifindex, bytes(4), bytes(4))
                    s.sendmsg([b"x"], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, (addr, 9))
                elif how == "pktinfo":
                    info = struct.pack("=16si", bytes(16), ifindex)
                    s.sendmsg([b"x"], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)], 0,
                              (addr, 9))  # fmt: skip
                else:
                    s.sendto(b"x", (addr, 9))
                done.append(f"{addr} {how}: sent")
            except OSError as exc:
                done.append(f"{addr} {how}: {errno.errorcode.get(exc.errno or 0)}")
            finally:
                s.close()
    return done


def _destinations(frames: list[bytes]) -> list[tuple[str, str]]:
    """(ethertype, destination) of each frame: IP destination, or ARP/NDP target."""
    out = []
    for frame in frames:
        kind = frame[12:14]
        if kind == b"\x08\x00":
            out.append(("ipv4", socket.inet_ntop(socket.AF_INET, frame[30:34])))
        elif kind == b"\x86\xdd":
            dst = socket.inet_ntop(socket.AF_INET6, frame[38:54])
            if frame[20] == 58 and frame[54] in (133, 135, 143):  # RS, NS, MLD report
                out.append(("ndp", dst))
            else:
                out.append(("ipv6", dst))
        elif kind == b"\x08\x06":
            out.append(("arp", socket.inet_ntop(socket.AF_INET, frame[38:42])))
        else:
            out.append((kind.hex(), ""))
    return out


def test_interface_bound_sockets_cannot_skip_the_rules() -> None:
    """SO_BINDTODEVICE, IP(V6)_UNICAST_IF and IP(V6)_PKTINFO need no privilege. On IPv4 they
    turn a refused destination into an on-link one; the neighbour lockdown leaves nothing but
    the gateway to send to. On IPv6 the rules hold whatever the interface."""
    box = FakeSandbox(tap=True)
    try:
        config = usernet.parse_keys({"IPAddressDeny": "203.0.113.0/24 2001:db8::/32 multicast"})
        usernet.configure_namespace(box.pid, config, "slirp4netns")
        box.frames()  # whatever the kernel sent while the link came up
        blocked = [
            (socket.AF_INET, "203.0.113.5"),  # IPAddressDeny=
            (socket.AF_INET, usernet.DNS_IP4),  # port 9 is not DNS
            (socket.AF_INET, "10.0.2.77"),  # host-mapping range
            (socket.AF_INET6, "2001:db8::5"),
            (socket.AF_INET6, "fd00::2"),
            (socket.AF_INET6, "ff02::fb"),  # multicast
            (socket.AF_INET6, "ff05::fb"),
        ]
        ipv4_multicast = [(socket.AF_INET, "224.0.0.251"), (socket.AF_INET, "239.1.2.3")]
        gateway = [(socket.AF_INET, usernet.GATEWAY_IP4)]
        allowed = [(socket.AF_INET, "198.51.100.7"), (socket.AF_INET6, "2001:db9::7")]
        attempts = inside(box.pid, _oif_attacks, blocked + ipv4_multicast + gateway + allowed)
        seen = _destinations(box.frames())
    finally:
        box.close()
    # The control: allowed destinations do leave, through the gateway.
    assert ("ipv4", "198.51.100.7") in seen and ("ipv6", "2001:db9::7") in seen, seen
    leaked = [d for d in seen if d[1] in {addr for _, addr in blocked}]
    assert leaked == [], (leaked, attempts)
    assert [d for d in seen if d[0] in ("arp", "ndp")] == [], seen  # nothing is solicited
    # Ordinary sockets are refused by a rule at once.
    plain = [a for a in attempts if " plain: " in a]
    assert [a for a in plain if not a.endswith("EACCES")] == [
        "198.51.100.7 plain: sent",
        "2001:db9::7 plain: sent",
    ], attempts
    # Known residue, documented in usernet: an interface-bound socket reaches the gateway itself
    # (the stack refuses it: --disable-host-loopback / --no-map-gw) and can send IPv4
    # multicast, which needs no neighbour. Nothing else.
    forced = [d for d in seen if d[1] in ("224.0.0.251", "239.1.2.3", usernet.GATEWAY_IP4)]
    assert sorted(set(forced)) == [
        ("ipv4", usernet.GATEWAY_IP4),
        ("ipv4", "224.0.0.251"),
        ("ipv4", "239.1.2.3"),
    ], (seen, attempts)


# ---------------------------------------------------------------------------------------------
# Lifetime of the helper


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_helper_is_gone_after_stop(stack: str) -> None:
    box = FakeSandbox()
    try:
        net = usernet.start(box.pid, usernet.parse_keys({"UserNetStack": stack}))
        helper = net.helper_pid
        assert alive(helper)
        net.stop()
        net.stop()  # idempotent
        assert not os.path.exists(f"/proc/{helper}")  # killed and reaped
    finally:
        box.close()


def _link_details() -> str:
    return subprocess.run(
        ["ip", "-d", "link", "show", "tap0"], capture_output=True, text=True, check=True
    ).stdout


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_tap_is_persistent_so_stop_does_not_wait_for_its_removal(nets: Any, stack: str) -> None:
    # A non-persistent tap is unregistered (synchronize_rcu, tens of ms) by the exiting helper.
    box, _net = nets(UserNetStack=stack)
    details = inside(box.pid, _link_details)
    assert "tap" in details and "persist on" in details, details


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_helper_dies_with_the_sandbox_without_stop(stack: str) -> None:
    box = FakeSandbox()
    net = usernet.start(box.pid, usernet.parse_keys({"UserNetStack": stack}))
    try:
        box.close()  # PID 1 exits; the launcher does not call stop()
        assert wait_exit(net.helper_pid), "the helper outlived the sandbox"
    finally:
        net.stop()


@needs_stack
@pytest.mark.parametrize("stack", STACKS)
def test_helper_dies_when_the_launcher_is_killed(stack: str) -> None:
    # As a child subreaper this test inherits the orphans and can reap them: nothing is left,
    # not even a zombie under init.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    r, w = os.pipe()
    try:
        launcher = os.fork()
        if launcher == 0:
            try:
                os.close(r)
                box = FakeSandbox()
                net = usernet.start(box.pid, usernet.parse_keys({"UserNetStack": stack}))
                os.write(w, f"{net.helper_pid} {box.pid}\n".encode())
                signal.pause()
            finally:
                os._exit(1)
        os.close(w)
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(r, 64)
            if not chunk:
                break
            line += chunk
        try:
            helper, sandbox = map(int, line.split())
            assert alive(helper)
            os.kill(launcher, signal.SIGKILL)
        finally:
            os.waitpid(launcher, 0)
        assert wait_exit(helper), "the helper outlived its launcher"
        assert wait_exit(sandbox)
        for orphan in (helper, sandbox):
            os.waitpid(orphan, 0)  # ours now: reaped, so gone for good
            assert not os.path.exists(f"/proc/{orphan}")
    finally:
        os.close(r)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
