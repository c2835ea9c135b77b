"""Benchmark ``--net user``: start-up cost, TCP throughput both ways and connect latency.

For each installed stack (slirp4netns, pasta) and for "outside" (the same client and server,
both on the host), this measures:

- start: ``usernet.start()`` from call to return (helper running, namespace configured);
  stop: ``UserNet.stop()`` after the sandbox ended; cold: import of ``usernet`` plus start()
  in a fresh interpreter, as one CLI run pays it; +publish: start() with one PublishPorts=
  entry;
- up / down: one TCP stream, sandbox → host and host → sandbox, to a server on this machine's
  own global IPv4 address (the ordinary outbound path through the stack; nothing leaves the
  machine);
- publish: host → sandbox through a published port (``PublishPorts=``), which pasta splices
  between loopback sockets and slirp4netns carries over its TCP stack;
- connect: connect()+first byte round trip, sandbox → host;
- with ``--cpu``: the helper's CPU time during up / down as a share of one core (100% means
  the stack's one thread is the bottleneck).

Medians of ``--runs`` runs; ratios are against "outside". Not a test: run it by hand,
``python benchmarks/network.py [--bytes 268435456] [--runs 5] [--stacks slirp4netns]
[--cpu] [--untuned]``; ``--untuned`` drops usernet's per-stack TUNING (the figures before it).
Only this machine's own addresses are contacted.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
CHUNK = 256 * 1024


# -- a stand-in for the sandbox's PID 1 -----------------------------------------------------


def _lo_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, ifr))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))


class Box:
    """Blocked child in new user+net namespaces (owned by nobody when run as root)."""

    def __init__(self) -> None:
        ready_r, ready_w = os.pipe()
        go_r, self.go_w = os.pipe()
        uid, gid = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
        pid = os.fork()
        if pid == 0:
            try:
                os.closerange(3, min(ready_w, go_r))
                os.closerange(max(ready_w, go_r) + 1, 1 << 20)
                libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setresgid(gid, gid, gid)
                    os.setresuid(uid, uid, uid)
                    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
                if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
                    os._exit(3)
                for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"),
                                   ("gid_map", f"{gid} {gid} 1")):  # fmt: skip
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
                _lo_up()
                os.write(ready_w, b"1")
                os.read(go_r, 1)
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(go_r)
        assert os.read(ready_r, 1) == b"1"
        os.close(ready_r)
        self.pid = pid
        self.uid, self.gid = uid, gid

    def close(self) -> None:
        if self.go_w >= 0:
            os.close(self.go_w)
            self.go_w = -1
            os.waitpid(self.pid, 0)


def inside(box: Box | None, fn: Callable[[], object]) -> object:
    """Run ``fn`` in the box's namespaces (or here, for "outside") in a forked child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if box is not None:
                if os.geteuid() == 0:
                    os.setgroups([])
                    os.setresgid(box.gid, box.gid, box.gid)
                    os.setresuid(box.uid, box.uid, box.uid)
                for ns, flag in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET)):
                    fd = os.open(f"/proc/{box.pid}/ns/{ns}", os.O_RDONLY)
                    if libc.setns(fd, flag) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                    os.close(fd)
            os.write(w, json.dumps(fn()).encode())
        except BaseException as exc:  # noqa: BLE001
            os.write(w, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    result = json.loads(data)
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(result["error"])
    return result


# -- traffic ------------------------------------------------------------------------------


def sink(conn: socket.socket) -> int:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    got = 0
    while n := conn.recv_into(view):
        got += n
    return got


def source(conn: socket.socket, total: int) -> None:
    view = memoryview(bytearray(CHUNK))
    sent = 0
    while sent < total:
        conn.sendall(view)
        sent += CHUNK
    conn.shutdown(socket.SHUT_WR)


class Listener:
    """A host server in a thread: 'sink' counts bytes, 'source' sends, 'pong' sends one byte."""

    def __init__(self, addr: str, mode: str, total: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.mode, self.total = mode, total
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if self.mode == "sink":
                    sink(conn)
                elif self.mode == "source":
                    source(conn, self.total)
                    conn.recv(1)
                else:
                    conn.sendall(b"!")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def client_upload(addr: str, port: int, total: int) -> Callable[[], object]:
    def run() -> object:
        with socket.create_connection((addr, port)) as c:
            start = time.perf_counter()
            source(c, total)
            c.recv(1)  # the server closes after reading everything
            return time.perf_counter() - start

    return run


def client_download(addr: str, port: int) -> Callable[[], object]:
    def run() -> object:
        with socket.create_connection((addr, port)) as c:
            start = time.perf_counter()
            got = sink(c)
            return [time.perf_counter() - start, got]

    return run


def client_connects(addr: str, port: int, count: int) -> Callable[[], object]:
    def run() -> object:
        times = []
        for _ in range(count):
            start = time.perf_counter()
            with socket.create_connection((addr, port)) as c:
                c.recv(1)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return run


def gbit(total: int, seconds: float) -> float:
    return total * 8 / seconds / 1e9


# -- measurements ------------------------------------------------------------------------


def host_ipv4() -> str | None:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=False).stdout  # fmt: skip
    for link in json.loads(out or "[]"):
        for info in link.get("addr_info", []):
            if "local" in info:
                return str(info["local"])
    return None


def helper_cpu_ns(pid: int) -> int:
    """CPU time of all the helper's threads so far (schedstat: nanoseconds on a CPU)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def measure(stack: str | None, addr: str, total: int, runs: int) -> dict[str, float]:
    from ringfence.runtime import usernet

    out: dict[str, list[float]] = {"start_ms": [], "stop_ms": [], "cold_ms": [],
                                   "publish_start_ms": [],
                                   "up": [], "down": [], "publish": [], "connect_ms": [],
                                   "up_cpu": [], "down_cpu": [], "failed": []}  # fmt: skip
    if stack is not None:
        for _ in range(3 * runs):
            plain_box = Box()
            try:
                begin = time.perf_counter()
                plain = usernet.start(plain_box.pid, usernet.parse_keys({"UserNetStack": stack}))
                out["start_ms"].append((time.perf_counter() - begin) * 1000)
                plain_box.close()
                begin = time.perf_counter()
                plain.stop()
                out["stop_ms"].append((time.perf_counter() - begin) * 1000)
            finally:
                plain_box.close()
        for _ in range(runs):
            out["cold_ms"].append(cold_start_ms(stack))
    for _ in range(runs):
        box = Box() if stack else None
        net = None
        publish_port = 0
        try:
            if box is not None and stack is not None:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    publish_port = s.getsockname()[1]
                config = usernet.parse_keys(
                    {"UserNetStack": stack, "PublishPorts": [f"{publish_port}:9000"]}
                )
                start = time.perf_counter()
                net = usernet.start(box.pid, config)
                out["publish_start_ms"].append((time.perf_counter() - start) * 1000)
            up = Listener(addr, "sink", total)
            try:
                cpu = helper_cpu_ns(net.helper_pid) if net else 0
                seconds = float(inside(box, client_upload(addr, up.port, total)))  # type: ignore[arg-type]
                out["up"].append(gbit(total, seconds))
                if net is not None:
                    out["up_cpu"].append((helper_cpu_ns(net.helper_pid) - cpu) / seconds / 1e7)
            except RuntimeError as exc:  # a stack that resets the connection: counted as 0
                print(f"{stack} upload failed: {exc}", file=sys.stderr)
                out["up"].append(0.0)
                out["failed"].append(1)
            finally:
                up.close()
            down = Listener(addr, "source", total)
            try:
                cpu = helper_cpu_ns(net.helper_pid) if net else 0
                result = inside(box, client_download(addr, down.port))
                assert isinstance(result, list)
                out["down"].append(gbit(int(result[1]), float(result[0])))
                if net is not None:
                    used = helper_cpu_ns(net.helper_pid) - cpu
                    out["down_cpu"].append(used / float(result[0]) / 1e7)
            except RuntimeError as exc:
                print(f"{stack} download failed: {exc}", file=sys.stderr)
                out["down"].append(0.0)
                out["failed"].append(1)
            finally:
                down.close()
            pong = Listener(addr, "pong", total)
            try:
                ms = float(inside(box, client_connects(addr, pong.port, 50))) * 1000  # type: ignore[arg-type]
                out["connect_ms"].append(ms)
            finally:
                pong.close()
            out["publish"].append(publish_throughput(box, publish_port, total))
        finally:
            if net is not None:
                net.stop()
            if box is not None:
                box.close()
    medians = {k: statistics.median(v) for k, v in out.items() if v and k != "failed"}
    return medians | {"failed": float(len(out["failed"]))}


def publish_throughput(box: Box | None, port: int, total: int) -> float:
    """Host → sandbox through the published port (outside: plain loopback)."""
    ready_r, ready_w = os.pipe()

    def server() -> object:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0" if box else "127.0.0.1", 9000 if box else 0))
        s.listen(1)
        os.write(ready_w, struct.pack("=H", s.getsockname()[1]))
        conn, _ = s.accept()
        got = sink(conn)
        conn.sendall(b"!")
        return got

    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(inside(box, server)))
    t.start()
    (inner_port,) = struct.unpack("=H", os.read(ready_r, 2))
    os.close(ready_r)
    os.close(ready_w)
    with socket.create_connection(("127.0.0.1", port if box else inner_port)) as c:
        start = time.perf_counter()
        source(c, total)
        c.recv(1)
        seconds = time.perf_counter() - start
    t.join()
    return gbit(total, seconds)


def cold_start_ms(stack: str) -> float:
    """import usernet + start() in a fresh interpreter, as one CLI run pays it."""
    from ringfence.runtime import usernet

    untuned = [] if usernet.TUNING else ["--untuned"]
    argv = [sys.executable, __file__, "--cold-start", stack, *untuned]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return float(out)


def _cold_start(stack: str, untuned: bool) -> None:
    import ringfence.errors  # noqa: F401 - the CLI has it already

    box = Box()
    try:
        begin = time.perf_counter()
        from ringfence.runtime import usernet

        if untuned:
            usernet.TUNING.clear()
        net = usernet.start(box.pid, usernet.parse_keys({"UserNetStack": stack}))
        print((time.perf_counter() - begin) * 1000)
        net.stop()
    finally:
        box.close()


def import_cost_ms(runs: int) -> float:
    code = "import time; t=time.perf_counter(); import ringfence.runtime.usernet; " \
           "print((time.perf_counter()-t)*1000)"  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True).stdout  # fmt: skip
        times.append(float(out))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=256 * 1024 * 1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stacks", default="slirp4netns,pasta", help="comma-separated")
    parser.add_argument("--cpu", action="store_true", help="the helper's CPU share up/down")
    parser.add_argument("--untuned", action="store_true", help="without usernet.TUNING")
    parser.add_argument("--cold-start", metavar="STACK", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_start:
        _cold_start(args.cold_start, args.untuned)
        return 0
    from ringfence.runtime import usernet

    if args.untuned:
        usernet.TUNING.clear()

    addr = host_ipv4()
    if addr is None:
        print("no global IPv4 address on this machine: nothing to measure against")
        return 1
    stacks = [s for s in args.stacks.split(",") if s in usernet.STACKS[1:] and usernet.which(s)]
    print(f"{args.runs} runs, {args.bytes >> 20} MiB per transfer, server on {addr}, "
          f"python {sys.version.split()[0]}, a fresh interpreter imports usernet in "
          f"{import_cost_ms(args.runs):.1f} ms, load {os.getloadavg()[0]:.2f}"
          f"{', untuned' if args.untuned else ''}")  # fmt: skip
    results = {"outside": measure(None, addr, args.bytes, args.runs)}
    for stack in stacks:
        results[stack] = measure(stack, addr, args.bytes, args.runs)
    base = results["outside"]
    columns = [("start_ms", "start ms", "{:.1f}"), ("stop_ms", "stop ms", "{:.1f}"),
               ("cold_ms", "cold ms", "{:.1f}"),
               ("publish_start_ms", "+publish ms", "{:.1f}"), ("up", "up Gbit/s", "{:.2f}"),
               ("down", "down Gbit/s", "{:.2f}"), ("publish", "publish Gbit/s", "{:.2f}"),
               ("connect_ms", "connect ms", "{:.3f}")]  # fmt: skip
    if args.cpu:
        columns += [("up_cpu", "up helper %", "{:.0f}"), ("down_cpu", "down helper %", "{:.0f}")]
    columns += [("failed", "failed", "{:.0f}")]  # transfers reset by the stack (counted as 0)
    print(f"{'':12}" + "".join(f"{title:>17}" for _, title, _ in columns))
    for name, r in results.items():
        cells = [_cell(r, base, name != "outside", key, fmt) for key, _, fmt in columns]
        print(f"{name:12}" + "".join(f"{c:>17}" for c in cells))
    return 0


def _cell(r: dict[str, float], base: dict[str, float], ratio: bool, key: str, fmt: str) -> str:
    if key not in r:
        return "-"
    text = fmt.format(r[key])
    if ratio and base.get(key):
        text += f" ({r[key] / base[key]:.0%})"
    return text


if __name__ == "__main__":
    sys.exit(main())
