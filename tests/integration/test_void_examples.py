"""Void specs end to end: the three examples, hostile parts attacking from inside their voids,
and teardown (nothing left behind, parts die with the orchestrator even on SIGKILL).

Every test runs the real CLI (`python -m ringfence void`). As root, ringfence drops each part to
nobody while the orchestrator keeps root to open what the spec names; the same assertions hold.
"""

from __future__ import annotations

import gzip as gzip_module
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _util import PYTHON, host_mounts, pids_with, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PYLIB = "/usr/lib/python3.11"
SSL_EXT = f"{PYLIB}/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"

# A hostile part: tries everything it is told to and reports what happened as JSON.
PROBE = r"""
import errno, json, os, socket, sys

def attempt(fn):
    try:
        return {"ok": True, "value": fn()}
    except OSError as e:
        return {"ok": False, "errno": errno.errorcode.get(e.errno, str(e.errno))}

def read(path):
    with open(path, "rb") as f:
        return f.read(4096).decode("latin-1")

def write(path):
    with open(path, "wb") as f:
        f.write(b"x")
    return "written"

def connect(host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(5)
    try:
        s.connect((host, int(port)))
        return "connected"
    finally:
        s.close()

def bind():
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]
    finally:
        s.close()

def abstract(name):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("\0" + name)
        return "connected"
    finally:
        s.close()

def fds(keep):
    out = {}
    for fd in range(1024):
        if fd in keep:
            continue
        try:
            os.fstat(fd)
        except OSError:
            continue
        out[fd] = attempt(lambda: os.pread(fd, 4096, 0).decode("latin-1"))
    return out

def tree():
    names = []
    for top, dirs, files in os.walk("/"):
        if top.startswith("/usr/lib/python3"):
            dirs.clear()
            continue
        names += [os.path.join(top, n) for n in files]
        names += [os.path.join(top, n) for n in dirs if os.path.islink(os.path.join(top, n))]
    return sorted(names)

def run(checks, keep):
    out = {}
    for check in checks:
        kind, _, arg = check.partition(":")
        if kind == "read":
            out[check] = attempt(lambda: read(arg))
        elif kind == "write":
            out[check] = attempt(lambda: write(arg))
        elif kind == "connect":
            out[check] = attempt(lambda: connect(*arg.rsplit(":", 1)))
        elif kind == "bind":
            out[check] = attempt(bind)
        elif kind == "abstract":
            out[check] = attempt(lambda: abstract(arg))
        elif kind == "fds":
            out[check] = fds(keep)
        elif kind == "tree":
            out[check] = tree()
        elif kind == "hostname":
            out[check] = socket.gethostname()
        elif kind == "uid":
            out[check] = os.getuid()
    return out

args = sys.argv[1:]
if args and args[0] == "http":
    # A handler: fd args[1] is the connection; answer with the report as the body.
    conn = socket.socket(fileno=int(args[1]))
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            break
        request += chunk
    body = json.dumps(run(args[2:], {0, 1, 2, conn.fileno()})).encode()
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    conn.close()
else:
    print(json.dumps(run(args, {0, 1, 2})))
"""


# --- harness -----------------------------------------------------------------------------------


@pytest.fixture
def app(world_tmp: Path) -> Path:
    """A world-readable directory with the probe (parts run as nobody when we are root)."""
    (world_tmp / "probe.py").write_text(PROBE)
    return world_tmp


@pytest.fixture(autouse=True)
def nothing_left_behind(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every test: no new host mount, nothing in the orchestrator's TMPDIR afterwards."""
    tmpdir = tmp_path / "orchestrator-tmp"
    tmpdir.mkdir()
    before = host_mounts()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    yield env
    assert host_mounts() - before == set()
    assert list(tmpdir.iterdir()) == []


def write_spec(directory: Path, text: str, name: str = "spec.toml") -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o644)
    return path


def void(
    spec: Path | str, *args: str, input: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PYTHON, "-m", "ringfence", "void", str(spec), *args],
        input=input,
        capture_output=True,
        timeout=120,
        env=env,
    )


class Running:
    """An orchestrator running in the background; stderr is read line by line."""

    def __init__(self, spec: Path | str, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "ringfence", "void", str(spec), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.err = b""

    def wait_for(self, marker: bytes, timeout: float = 60) -> bytes:
        """Read stderr until a line contains marker; return that line."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while True:
            for line in self.err.splitlines():
                if marker in line:
                    return line
            left = deadline - time.monotonic()
            if (
                left <= 0
                or self.proc.poll() is not None
                and not select.select([self.proc.stderr], [], [], 0)[0]
            ):
                raise AssertionError(f"no {marker!r} on stderr: {self.err.decode()!r}")
            ready, _, _ = select.select([self.proc.stderr], [], [], left)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 65536)
                self.err += chunk

    def port(self, listener: str) -> int:
        line = self.wait_for(f"listener {listener} on ".encode())
        return int(line.rsplit(b":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.err += self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code


@pytest.fixture
def certs(world_tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (0600: only the caller can read it)."""
    cert, key = world_tmp / "cert.pem", world_tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    key.chmod(0o600)
    cert.chmod(0o644)
    return cert, key


def https_get(port: int, cert: Path, path: str = "/hello") -> bytes:
    ctx = ssl.create_default_context(cafile=str(cert))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return data


def body(response: bytes) -> bytes:
    head, _, rest = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), response
    return rest


# --- fib ---------------------------------------------------------------------------------------


def test_fib_computes_over_stdin_and_stdout(nothing_left_behind: dict[str, str]) -> None:
    r = void(EXAMPLES / "fib" / "spec.toml", input=b"0\n10\n50\n92\n", env=nothing_left_behind)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"0\n55\n12586269025\n7540113804746346429\n"


def test_fib_reports_a_failing_part(nothing_left_behind: dict[str, str]) -> None:
    r = void(EXAMPLES / "fib" / "spec.toml", input=b"93\n", env=nothing_left_behind)
    assert r.returncode == 2
    assert b"fib exited with status 2" in r.stderr


def test_fib_void_holds_only_its_elf_closure(app: Path) -> None:
    """Same shape as the fib example, but the part lists its whole filesystem with sh builtins."""
    script = app / "list.sh"
    script.write_text(
        '#!/bin/sh\nfor p in /* /*/* /*/*/* /*/*/*/* /*/*/*/*/*; do echo "$p"; done\n'
    )
    script.chmod(0o755)
    spec = write_spec(app, '[entrypoints.fib]\nbinary = "list.sh"\nstdout = "inherit"\n')
    r = void(spec)
    assert r.returncode == 0, r.stderr
    from ringfence.void import elf

    closure = elf.closure(str(script))
    links = dict(closure.symlinks)

    def through_dir_links(path: str) -> str:  # the glob walks /bin/ as /usr/bin/, etc.
        parts = path.split("/")
        for i in range(2, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                target = os.path.join(os.path.dirname(prefix), links[prefix])
                return through_dir_links(os.path.normpath(target) + "/" + "/".join(parts[i:]))
        return path

    seen = {through_dir_links(p) for p in r.stdout.decode().splitlines() if "*" not in p}
    allowed = set(closure.files()) | set(links)
    for path in list(allowed):
        parts = path.split("/")
        allowed |= {"/".join(parts[:i]) for i in range(2, len(parts))}
    assert seen <= allowed
    assert str(script) in seen and "/usr/bin/dash" in seen
    assert not any(p.startswith(("/etc", "/proc", "/dev", "/home")) for p in seen)


# --- gzip --------------------------------------------------------------------------------------

GZIP_LINES = [b"hello\n", b"world " * 300 + b"\n", b"\n", b"\x00\xff binary \x01\n", b"last"]


def test_gzip_output_is_byte_identical_to_plain_gzip(nothing_left_behind: dict[str, str]) -> None:
    data = b"".join(GZIP_LINES)
    r = void(EXAMPLES / "gzip" / "spec.toml", input=data, env=nothing_left_behind)
    assert r.returncode == 0, r.stderr
    plain = b"".join(
        subprocess.run(["gzip", "-c"], input=line, capture_output=True, check=True).stdout
        for line in GZIP_LINES
    )
    assert r.stdout == plain
    assert gzip_module.decompress(r.stdout) == data


def test_gzip_void_cannot_open_any_file(app: Path) -> None:
    """The gzip part, but each message names a file for it to compress: none can be opened,
    and it cannot create a file either (next to its own binary, the only place it sees)."""
    secret = app / "secret.txt"
    secret.write_text("TOP-SECRET\n")
    spec = write_spec(
        app,
        "[pipes.names]\n"
        '[entrypoints.source]\nbinary = "/usr/bin/cat"\nstdin = "inherit"\n'
        'stdout = { pipe = "names" }\n'
        '[entrypoints.gzip]\nbinary = "/usr/bin/gzip"\nargs = ["-c", { message = "data" }]\n'
        'trigger = "pipe names"\nstdout = "inherit"\n'
        '[entrypoints.gzip-in-place]\nbinary = "/usr/bin/gzip"\nargs = ["-k", "-f", "/usr/bin/gzip"]\n',
    )
    targets = ["/etc/passwd", "/etc/hostname", str(secret), str(spec), "/proc/self/status",
               "/dev/null", "/tmp", os.path.expanduser("~/.bashrc")]  # fmt: skip
    r = void(spec, input="".join(t + "\n" for t in targets).encode())
    assert r.stdout == b""
    # The parts share stderr with the orchestrator, and gzip writes "gzip: " and the rest of its
    # message in two writes: take out the orchestrator's own (whole-line) reports first.
    err = re.sub(rb"ringfence void: [^\n]* exited with status \d+\n", b"", r.stderr)
    for target in targets:
        assert f"gzip: {target}: No such file or directory".encode() in err
    assert b"/usr/bin/gzip.gz: Read-only file system" in err
    assert r.returncode != 0


# --- TLS server --------------------------------------------------------------------------------


def test_tls_server_answers_a_real_tls_client(
    certs: tuple[Path, Path], nothing_left_behind: dict[str, str]
) -> None:
    cert, key = certs
    orch = Running(
        EXAMPLES / "tls-server" / "spec.toml",
        "--var", "address=127.0.0.1:0", "--var", f"cert={cert}", "--var", f"key={key}",
        env=nothing_left_behind,
    )  # fmt: skip
    try:
        port = orch.port("https")
        assert body(https_get(port, cert, "/one")) == b"hello from a void: GET /one\n"
        assert body(https_get(port, cert, "/two")) == b"hello from a void: GET /two\n"
        s_client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(cert),
             "-verify_return_error", "-quiet"],
            input=b"GET /openssl HTTP/1.0\r\n\r\n", capture_output=True, timeout=60,
        )  # fmt: skip
        assert b"hello from a void: GET /openssl" in s_client.stdout
    finally:
        code = orch.stop()
    assert code == 128 + signal.SIGTERM


def tls_attack_spec(app: Path, checks: list[str]) -> Path:
    handler_args = ", ".join(json.dumps(c) for c in checks)
    return write_spec(
        app,
        f"""
[vars]
cert = "cert.pem"
key = "key.pem"
[listeners.https]
address = "127.0.0.1:0"
[sockets.connections]
max_fds = 1
[entrypoints.tls]
binary = "/usr/bin/python3"
args = ["-I", "-S", "/app/terminator.py", {{ listener = "https" }}, {{ file = "${{cert}}" }},
        {{ file = "${{key}}" }}, {{ socket = "connections" }}]
libraries = ["{SSL_EXT}"]
filesystem = ["{EXAMPLES}/tls-server/terminator.py:/app/terminator.py", "{PYLIB}"]
tmpfs = ["/run/tls"]
[entrypoints.handler]
binary = "/usr/bin/python3"
args = ["-I", "-S", "/app/probe.py", "http", {{ message = "fds" }}, {handler_args}]
trigger = "socket connections"
filesystem = ["probe.py:/app/probe.py", "{PYLIB}"]
hostname = "handler"
""",
    )


def test_tls_handler_cannot_read_the_key(app: Path, certs: tuple[Path, Path]) -> None:
    cert, key = certs
    key_pem = key.read_bytes()
    marker = key_pem.splitlines()[1][:40].decode()  # a line of the key's base64 body
    spec = tls_attack_spec(
        app, [f"read:{key}", f"read:{cert}", "read:/app/key.pem", "read:/run/tls/key.pem",
              "read:/proc/1/environ", "fds", "tree", "uid"],
    )  # fmt: skip
    orch = Running(spec, "--var", f"cert={cert}", "--var", f"key={key}")
    try:
        port = orch.port("https")
        response = https_get(port, cert)
    finally:
        orch.stop()
    assert response, orch.err.decode()
    assert marker.encode() not in response
    report = json.loads(body(response))
    for path in (str(key), str(cert), "/app/key.pem", "/run/tls/key.pem", "/proc/1/environ"):
        assert report[f"read:{path}"] == {"ok": False, "errno": "ENOENT"}, path
    assert report["fds"] == {}  # nothing but stdio and its one connection
    assert not any("pem" in p or p.startswith(("/run", "/proc", "/etc")) for p in report["tree"])
    assert report["uid"] != 0


def test_tls_handler_cannot_connect_out_or_bind(app: Path, certs: tuple[Path, Path]) -> None:
    cert, key = certs
    host_server = socket.socket()
    host_server.bind(("127.0.0.1", 0))
    host_server.listen(8)
    host_server.setblocking(False)
    target = f"127.0.0.1:{host_server.getsockname()[1]}"
    spec = tls_attack_spec(app, [f"connect:{target}", "connect:1.1.1.1:443", "bind",
                                 "abstract:/tmp/.X11-unix/X0"])  # fmt: skip
    orch = Running(spec, "--var", f"cert={cert}", "--var", f"key={key}")
    try:
        port = orch.port("https")
        report = json.loads(body(https_get(port, cert)))
    finally:
        orch.stop()
        with pytest.raises(BlockingIOError):
            host_server.accept()  # nobody reached the host's listener
        host_server.close()
    for check in (f"connect:{target}", "connect:1.1.1.1:443", "bind", "abstract:/tmp/.X11-unix/X0"):
        assert report[check]["ok"] is False, (check, report[check])


def test_terminator_gets_the_key_as_an_fd_it_cannot_write(
    app: Path, certs: tuple[Path, Path]
) -> None:
    """The part that does get the key (read-only fd) cannot write through it or reach the
    file by path; it sees the listener without holding any bind right."""
    cert, key = certs
    spec = write_spec(
        app,
        f"""
[listeners.l]
address = "127.0.0.1:0"
[entrypoints.p]
binary = "/usr/bin/python3"
args = ["-I", "-S", "/app/probe.py", {{ file = "{key}" }}, {{ listener = "l" }},
        "read:{key}", "write:{key}", "bind", "fds"]
filesystem = ["probe.py:/app/probe.py", "{PYLIB}"]
""",
    )
    r = void(spec)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.splitlines()[-1])
    assert report[f"read:{key}"]["errno"] == "ENOENT"
    assert report[f"write:{key}"]["ok"] is False
    assert report["bind"]["ok"] is False
    assert report["fds"]["3"]["value"] == key.read_text()  # the fd it was given
    assert set(report["fds"]) == {"3", "4"}
    with open(key, "rb") as f:
        assert f.read() == key.read_bytes()


# --- generic parts -----------------------------------------------------------------------------


def test_part_cannot_open_files_or_connect_out(app: Path) -> None:
    secret = app / "secret.txt"
    secret.write_text("TOP-SECRET\n")
    host_server = socket.socket()
    host_server.bind(("127.0.0.1", 0))
    host_server.listen(8)
    host_server.setblocking(False)
    target = f"127.0.0.1:{host_server.getsockname()[1]}"
    checks = [f"read:{secret}", "read:/etc/shadow", "read:/etc/passwd", "write:/app/new",
              f"write:{PYLIB}/evil.py", "write:/evil", f"connect:{target}",
              "connect:[::1]:22", "bind", "abstract:/tmp/.X11-unix/X0", "hostname"]  # fmt: skip
    spec = write_spec(
        app,
        '[entrypoints.p]\nbinary = "/usr/bin/python3"\n'
        f'args = ["-I", "-S", "/app/probe.py", {", ".join(json.dumps(c) for c in checks)}]\n'
        f'filesystem = ["probe.py:/app/probe.py", "{PYLIB}"]\nhostname = "part"\n',
    )
    try:
        r = void(spec)
        with pytest.raises(BlockingIOError):
            host_server.accept()
    finally:
        host_server.close()
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    for check in checks[:-1]:
        assert report[check]["ok"] is False, (check, report[check])
    assert report[f"read:{secret}"]["errno"] == "ENOENT"
    assert report["hostname"] == "part"
    assert not os.path.exists(f"{PYLIB}/evil.py")


def test_triggered_part_gets_a_fresh_file_per_void(app: Path) -> None:
    """Files are opened once by the orchestrator, and re-opened for every void (own offset)."""
    (app / "data.txt").write_text("DATA\n")
    spec = write_spec(
        app,
        '[pipes.go]\nframing = "packet"\n'
        '[entrypoints.source]\nbinary = "/usr/bin/cat"\nstdin = "inherit"\nstdout = { pipe = "go" }\n'
        '[entrypoints.reader]\nbinary = "/usr/bin/cat"\ntrigger = "pipe go"\n'
        'stdin = { file = "data.txt" }\nstdout = "inherit"\n',
    )
    r = void(spec, input=b"x")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"DATA\n"
    r = void(spec, input=b"x" * 10000)  # 10000 bytes: 3 packets of at most 4096 bytes
    assert r.stdout == b"DATA\n" * 3


def test_length_framing_and_oversized_messages(app: Path) -> None:
    """Length-prefixed messages through a pipe written by a part; one over max_message is
    dropped and reported, the others are delivered in order."""
    writer = app / "writer.sh"
    writer.write_text(
        "#!/bin/sh\n"
        "printf '\\000\\000\\000\\005hello'\n"
        "printf '\\000\\000\\000\\040%s' 'this one is longer than 16 bytes'\n"
        "printf '\\000\\000\\000\\003end'\n"
    )
    writer.chmod(0o755)
    spec = write_spec(
        app,
        '[pipes.m]\nframing = "length"\nmax_message = 16\n'
        '[entrypoints.writer]\nbinary = "writer.sh"\nstdout = { pipe = "m" }\n'
        '[entrypoints.echo]\nbinary = "/usr/bin/cat"\ntrigger = "pipe m"\nstdin = "message"\n'
        'stdout = "inherit"\n',
    )
    r = void(spec)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"helloend"
    assert b"message of 32 bytes is longer than max_message (16); dropped" in r.stderr


def test_spec_error_runs_nothing(app: Path) -> None:
    flag = app / "ran"
    spec = write_spec(
        app,
        f'[pipes.p]\n[entrypoints.a]\nbinary = "/usr/bin/touch"\nargs = ["{flag}"]\n'
        'stdout = { pipe = "p" }\n'
        '[entrypoints.b]\nbinary = "/usr/bin/cat"\nstdout = { pipe = "p" }\n'
        '[entrypoints.c]\nbinary = "/usr/bin/cat"\nstdin = { pipe = "p" }\n',
    )
    r = void(spec)
    assert r.returncode == 2
    assert r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr
    assert (
        b"pipe 'p' has 2 writers: entrypoint 'a' (stdout) and entrypoint 'b' (stdout)" in r.stderr
    )
    assert not flag.exists()


def test_explain_prints_closure_and_plan_and_runs_nothing(app: Path) -> None:
    flag, out = app / "ran", app / "out.txt"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    spec = write_spec(
        app,
        f'[listeners.l]\naddress = "127.0.0.1:{port}"\n'
        f'[entrypoints.a]\nbinary = "/usr/bin/touch"\nargs = ["{flag}", {{ listener = "l" }}]\n'
        f'stdout = {{ file = "{out}", mode = "w" }}\n',
    )
    try:
        r = void(spec, "--explain")
        j = void(spec, "--explain", "--json")
    finally:
        taken.close()
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "ELF closure of /usr/bin/touch" in text and "libc.so.6" in text
    assert "mounts (in order):" in text and "seccomp" in text and "landlock" in text
    assert "TCP listener l" in text and f"file {out} (mode w" in text
    doc = json.loads(j.stdout)
    assert doc["entrypoints"]["a"]["plan"]["network"] == "none"
    assert any(e["path"] == "/usr/bin/touch" for e in doc["entrypoints"]["a"]["closure"]["entries"])
    assert not flag.exists() and not out.exists()


# --- teardown ----------------------------------------------------------------------------------


def sleeper_spec(app: Path, marker: str) -> Path:
    """A startup sleeper and, through a pipe, one triggered sleeper per line."""
    return write_spec(
        app,
        f"[pipes.p]\n"
        f'[entrypoints.sleeper]\nbinary = "/usr/bin/sleep"\nargs = ["{marker}"]\n'
        f'[entrypoints.source]\nbinary = "/usr/bin/cat"\nstdin = "inherit"\nstdout = {{ pipe = "p" }}\n'
        f'[entrypoints.triggered]\nbinary = "/usr/bin/sleep"\nargs = [{{ message = "data" }}]\n'
        f'trigger = "pipe p"\nparallel = 2\n',
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_parts_die_with_the_orchestrator(
    app: Path, sig: int, nothing_left_behind: dict[str, str]
) -> None:
    marker = f"{4000 + os.getpid() % 1000}.{uuid.uuid4().int % 10**9}"  # a unique sleep length
    spec = sleeper_spec(app, marker)
    proc = subprocess.Popen(
        [PYTHON, "-m", "ringfence", "void", "-v", str(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=nothing_left_behind,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(f"{marker}\n{marker}\n".encode())
    proc.stdin.flush()
    try:
        # The startup sleeper and two triggered ones (parallel = 2) are running.
        assert wait_until(lambda: len(pids_with(marker)) >= 3, timeout=60), pids_with(marker)
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stderr.close()
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + signal.SIGTERM)
    assert wait_until(lambda: not pids_with(marker), timeout=30), pids_with(marker)


def test_pipeline_ends_when_its_writers_are_done(
    app: Path, nothing_left_behind: dict[str, str]
) -> None:
    """No signal needed: cat ends, the trigger sees end-of-file, the last voids finish, the
    orchestrator exits 0 and has closed everything (the fixture checks mounts and TMPDIR)."""
    spec = write_spec(
        app,
        "[pipes.a]\n[pipes.b]\n"
        '[entrypoints.source]\nbinary = "/usr/bin/cat"\nstdin = "inherit"\nstdout = { pipe = "a" }\n'
        '[entrypoints.middle]\nbinary = "/usr/bin/cat"\ntrigger = "pipe a"\nstdin = "message"\n'
        'stdout = { pipe = "b" }\n'
        '[entrypoints.last]\nbinary = "/usr/bin/cat"\ntrigger = "pipe b"\nstdin = "message"\n'
        'stdout = "inherit"\n',
    )
    r = void(spec, input=b"1\n2\n3\n", env=nothing_left_behind)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"1\n2\n3\n"


# --- the ELF closure from `ringfence run` ---------------------------------------------------


def test_run_profile_void_with_add_binary_runs_the_program_and_nothing_else() -> None:
    data = b"the same closure, from ringfence run\n"
    r = subprocess.run(
        [PYTHON, "-m", "ringfence", "run", "--profile", "void", "--add-binary", "/usr/bin/gzip",
         "--", "/usr/bin/gzip", "-c"],
        input=data, capture_output=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == subprocess.run(["gzip", "-c"], input=data, capture_output=True).stdout
    r = subprocess.run(
        [PYTHON, "-m", "ringfence", "run", "--profile", "void", "--add-binary", "/bin/sh",
         "--", "/bin/sh", "-c", "echo /* /usr/*; read x < /etc/passwd"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
    )  # fmt: skip
    assert r.stdout.split() == [b"/bin", b"/lib", b"/lib64", b"/usr", b"/usr/bin", b"/usr/lib",
                                b"/usr/lib64"]  # fmt: skip
    assert r.returncode != 0 and b"cannot open /etc/passwd: No such file" in r.stderr


def test_part_limits_are_enforced(app: Path) -> None:
    script = app / "limits.sh"
    script.write_text("#!/bin/sh\nulimit -n\nulimit -f\n")
    script.chmod(0o755)
    spec = write_spec(
        app,
        '[entrypoints.p]\nbinary = "limits.sh"\nlimits = { LimitNOFILE = 16, LimitFSIZE = "1M" }\n',
    )
    r = void(spec)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"16", b"2048"]  # dash reports -f in 512-byte blocks
