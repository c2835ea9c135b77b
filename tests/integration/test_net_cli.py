"""`--net user` through the real CLI: DNS config, host loopback blocked, one port on purpose."""

from __future__ import annotations

import shutil
import socket
import threading

import pytest
from _util import rf

pytestmark = pytest.mark.skipif(
    not (shutil.which("slirp4netns") or shutil.which("pasta")), reason="no user-mode stack"
)

CONNECT = (
    "import socket, sys\n"
    "s = socket.socket()\n"
    "s.settimeout(5)\n"
    "try:\n"
    "    s.connect((sys.argv[1], int(sys.argv[2])))\n"
    "    print('CONNECTED', s.recv(16).decode())\n"
    "except OSError as e:\n"
    "    print('refused', e.errno)\n"
)


@pytest.fixture
def host_service():  # type: ignore[no-untyped-def]
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(1)
            conn.sendall(b"hello")
            conn.close()

    t = threading.Thread(target=serve)
    t.start()
    yield server.getsockname()[1], accepted
    stop.set()
    t.join()
    server.close()


def test_net_user_uses_the_stacks_dns_forwarder():
    r = rf("run", "--net", "user", "--", "cat", "/etc/resolv.conf")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "nameserver 10.0.2.3\n"


def test_net_user_cannot_reach_host_loopback(host_service):
    port, accepted = host_service
    for addr in ("127.0.0.1", "10.0.2.2", "10.0.2.3"):
        r = rf("run", "--net", "user", "--", "python3", "-c", CONNECT, addr, str(port))
        assert "CONNECTED" not in r.stdout, (addr, r.stdout, r.stderr)
    assert not accepted


def test_allow_host_port_opens_exactly_that_port(host_service):
    if not shutil.which("pasta"):
        pytest.skip("--allow-host-port needs pasta")
    port, accepted = host_service
    r = rf(
        "run",
        "--net",
        "user",
        "--allow-host-port",
        str(port),
        "--",
        "python3",
        "-c",
        CONNECT,
        "127.0.0.1",
        str(port),
    )
    assert "CONNECTED hello" in r.stdout, r.stdout + r.stderr
    assert accepted
