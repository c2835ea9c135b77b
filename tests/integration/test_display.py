"""Nested X displays (runtime/display.py) with real X servers.

Clients connect the way a sandbox does: a child unshares a user, mount, network and UTS
namespace (another hostname, no host abstract sockets), mounts a tmpfs on /tmp/.X11-unix, binds
``NestedDisplay.socket`` on X0 and runs the X client with DISPLAY=:0 and the cookie file. The
"host" display for Xephyr and Display=host is an Xvfb the test starts itself. Only unix sockets
and this machine's loopback are ever contacted.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _util import alive, wait_until

from ringfence.errors import SandboxError
from ringfence.runtime import display
from ringfence.runtime.display import DisplayConfig, NestedDisplay

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdpyinfo")), reason="Xvfb or x11-utils missing"
)
needs_xephyr = pytest.mark.skipif(not shutil.which("Xephyr"), reason="Xephyr missing")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="user= is for root callers")

# The sandbox's view: its own namespaces, the server's socket bound on X0, DISPLAY=:0.
SANDBOX = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def ck(r, what):
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
if os.environ.get("RF_AS_UID"):  # a root caller's payload runs as the sandbox's user
    user = int(os.environ["RF_AS_UID"])
    os.setgroups([])
    os.setresgid(user, user, user)
    os.setresuid(user, user, user)
    ck(libc.prctl(4, 1, 0, 0, 0), "PR_SET_DUMPABLE")  # the uid change made /proc/self root's
uid, gid = os.getuid(), os.getgid()
ck(libc.unshare(0x10000000 | 0x00020000 | 0x40000000 | 0x04000000), "unshare")
for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
    with open(f"/proc/self/{name}", "w") as f:
        f.write(text)
ck(libc.mount(None, b"/", None, 0x4000 | 0x40000, None), "make-rprivate")
ck(libc.sethostname(b"sandbox", 7), "sethostname")
# Opened in the new mount namespace: a bind source must be a mount of ours.
src = os.open(sys.argv[1], os.O_PATH)
ck(libc.mount(b"tmpfs", b"/tmp/.X11-unix", b"tmpfs", 0, b"mode=1777"), "tmpfs")
open("/tmp/.X11-unix/X0", "w").close()
ck(libc.mount(f"/proc/self/fd/{src}".encode(), b"/tmp/.X11-unix/X0", None, 0x1000, None), "bind")
os.close(src)
env = {"PATH": "/usr/bin:/bin", "DISPLAY": ":0", "XAUTHORITY": sys.argv[2]}
os.execvpe(sys.argv[3], sys.argv[3:], env)
"""


def in_sandbox(
    nested: NestedDisplay, *argv: str, xauthority: str | None = None, as_uid: int | None = None
) -> subprocess.CompletedProcess[str]:
    cookie = nested.xauthority if xauthority is None else xauthority
    if as_uid is None and os.geteuid() == 0:
        as_uid = NOBODY  # a root caller's sandboxes (and display servers) run as nobody
    env = {**os.environ, "RF_AS_UID": str(as_uid)} if as_uid is not None else None
    return subprocess.run(
        [sys.executable, "-c", SANDBOX, nested.socket, cookie, *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def x_servers() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() in ("Xvfb", "Xephyr") and alive(int(entry)):
                    found.add(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.fixture(autouse=True)
def rundir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime directory of this test's own (display files land in it), and the promise that
    the test leaves no X server and no display file behind."""
    before = x_servers()
    shared_before = {n for n in os.listdir("/tmp") if n.startswith("ringfence-display-")}
    path = Path(tempfile.mkdtemp(prefix="rf-display-xdg-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(path))
    try:
        yield path
        assert x_servers() - before == set(), "an X server was left running"
        leftovers = list((path / "ringfence" / "display").glob("*"))
        leftovers += [
            Path("/tmp", n)
            for n in os.listdir("/tmp")
            if n.startswith("ringfence-display-") and n not in shared_before
        ]
        assert leftovers == [], "display files were left behind"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host_x(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An Xvfb standing in for the user's real display, with its own cookie."""
    cookie = os.urandom(16)
    server_auth = tmp_path / "host-server.auth"
    client_auth = tmp_path / "host.Xauthority"
    server_auth.write_bytes(display.encode_xauth([display.cookie_entry(cookie)]))
    r, w = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-auth", str(server_auth), "-nolisten", "tcp"]
        + ["-noreset", "-screen", "0", "1024x768x24"],
        pass_fds=(w,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], 15)
        assert ready, "the test's host Xvfb did not start"
        number = int(os.read(r, 64).decode().strip())
        client_auth.write_bytes(display.encode_xauth([display.cookie_entry(cookie, str(number))]))
        yield {
            "DISPLAY": f":{number}",
            "XAUTHORITY": str(client_auth),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
    finally:
        os.close(r)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dimensions(out: str) -> str:
    return next(line.split()[1] for line in out.splitlines() if "dimensions:" in line)


# -- Xvfb -------------------------------------------------------------------------------------


def test_xvfb_serves_its_size_to_the_sandbox_with_the_cookie() -> None:
    with display.start(DisplayConfig("xvfb", "800x600")) as nested:
        out = in_sandbox(nested, "xdpyinfo")
        assert out.returncode == 0, out.stderr
        assert dimensions(out.stdout) == "800x600"
        # And from the host, as the describe() report says.
        host = subprocess.run(
            ["xdpyinfo", "-display", f":{nested.number}"],
            env={"PATH": "/usr/bin:/bin", "XAUTHORITY": "/dev/null"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert host.returncode != 0  # no cookie: refused, even from the host
        info = nested.describe()
        assert info["kind"] == "xvfb" and info["size"] == "800x600"
        assert info["number"] == nested.number and "nested" in str(info["exposure"])


def test_cannot_connect_without_the_cookie() -> None:
    with display.start(DisplayConfig("xvfb")) as nested:
        out = in_sandbox(nested, "xdpyinfo", xauthority="/dev/null")
        assert out.returncode != 0
        assert "Authorization required" in out.stderr or "unable to open" in out.stderr


def test_cannot_connect_with_another_cookie(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_bytes(display.encode_xauth([display.cookie_entry(os.urandom(16))]))
    wrong.chmod(0o644)
    with display.start(DisplayConfig("xvfb")) as nested:
        out = in_sandbox(nested, "xdpyinfo", xauthority=str(wrong))
        assert out.returncode != 0


def test_cannot_reach_the_server_over_tcp() -> None:
    with display.start(DisplayConfig("xvfb")) as nested:
        port = 6000 + nested.number
        for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family, socket.SOCK_STREAM) as s, pytest.raises(OSError):
                s.connect((addr, port))


ABSTRACT_ATTACK = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect("\\0/tmp/.X11-unix/X" + sys.argv[1])
except ConnectionRefusedError:
    print("refused")
else:
    print("CONNECTED")
"""


def test_sandbox_cannot_reach_the_host_display_by_its_abstract_socket(
    host_x: dict[str, str],
) -> None:
    # Clients try @/tmp/.X11-unix/XN before the path; in its own network namespace the sandbox
    # has no such name, so DISPLAY=:0 cannot fall through to a host display :0.
    host_number = host_x["DISPLAY"][1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(f"\0/tmp/.X11-unix/X{host_number}")  # there, on the host
    with display.start(DisplayConfig("xvfb")) as nested:
        for number in (host_number, str(nested.number)):
            out = in_sandbox(nested, sys.executable, "-c", ABSTRACT_ATTACK, number)
            assert out.stdout.strip() == "refused", out.stderr


def test_no_mit_shm_for_the_sandbox() -> None:
    # The server runs in the host's IPC namespace: MIT-SHM would attach host segments by id.
    with display.start(DisplayConfig("xvfb")) as nested:
        out = in_sandbox(nested, "xdpyinfo", "-queryExtensions")
        assert out.returncode == 0, out.stderr
        assert "BIG-REQUESTS" in out.stdout
        assert "MIT-SHM" not in out.stdout


def test_socket_and_cookie_files() -> None:
    with display.start(DisplayConfig("xvfb")) as nested:
        st = os.lstat(nested.socket)
        # The server runs in a sandbox of its own; its socket lands in our display directory.
        assert nested.socket == f"{nested.directory}/sockets/X{nested.number}"
        owner = NOBODY if os.geteuid() == 0 else os.geteuid()
        assert (st.st_mode & 0o170000) == 0o140000 and st.st_uid == owner
        cookie = os.stat(nested.xauthority)
        assert cookie.st_mode & 0o777 == 0o600
        mode = 0o711 if os.geteuid() == 0 else 0o700
        assert os.stat(os.path.dirname(nested.xauthority)).st_mode & 0o777 == mode
        (entry,) = display.decode_xauth(Path(nested.xauthority).read_bytes())
        assert entry.family == display.FAMILY_WILD and entry.number == "0"
        assert entry.name == b"MIT-MAGIC-COOKIE-1" and len(entry.data) == 16
        server_auth = Path(nested.directory, "server.auth")
        assert server_auth.stat().st_mode & 0o777 == 0o600
        (server_entry,) = display.decode_xauth(server_auth.read_bytes())
        assert server_entry.data == entry.data


def test_two_displays_have_different_cookies() -> None:
    with display.start(DisplayConfig("xvfb")) as one, display.start(DisplayConfig("xvfb")) as two:
        # Each server has namespaces of its own: both may be :0, never one socket.
        assert one.socket != two.socket
        assert Path(one.xauthority).read_bytes() != Path(two.xauthority).read_bytes()
        out = in_sandbox(one, "xdpyinfo", xauthority=two.xauthority)
        assert out.returncode != 0


def test_stop_leaves_no_process_and_no_file() -> None:
    nested = display.start(DisplayConfig("xvfb"))
    pid, number, directory = nested.pid, nested.number, nested.directory
    assert alive(pid)
    nested.stop()
    nested.stop()  # idempotent
    assert not alive(pid)
    assert not os.path.exists(f"/tmp/.X11-unix/X{number}")
    assert not os.path.exists(directory)


CHILD = """
import json, sys, time
from ringfence.runtime import display
nested = display.start(display.DisplayConfig("xvfb", "640x480"))
print(json.dumps({"pid": nested.pid, "number": nested.number, "dir": nested.directory}), flush=True)
time.sleep(600)
"""


def test_server_dies_with_a_sigkilled_caller_and_a_later_start_cleans_up(
    host_x: dict[str, str],
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 30)
        assert ready
        info = json.loads(child.stdout.readline())
        assert alive(info["pid"])
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert wait_until(lambda: not alive(info["pid"])), "the X server outlived its caller"
        # Nobody ran stop(): its files (its socket among them) are left for the next start
        stale_socket = f"{info['dir']}/sockets/X{info['number']}"
        assert os.path.isdir(info["dir"]) and os.path.exists(stale_socket)
        # (Display=host: no new server takes the number back)
        with display.start(DisplayConfig("host"), env=host_x):
            assert not os.path.exists(info["dir"])
            assert not os.path.exists(stale_socket)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()
        child.stderr.close()


@root_only
def test_root_runs_the_server_as_the_given_user() -> None:
    with display.start(DisplayConfig("xvfb"), user=(NOBODY, NOBODY)) as nested:
        with open(f"/proc/{nested.pid}/status") as f:
            ids = {line.split(":")[0]: line.split()[1:] for line in f}
        assert ids["Uid"] == [str(NOBODY)] * 4 and ids["Gid"] == [str(NOBODY)] * 4
        assert ids["Groups"] == []
        assert os.lstat(nested.socket).st_uid == NOBODY
        assert os.stat(nested.xauthority).st_uid == NOBODY
        assert nested.directory.startswith("/tmp/ringfence-display-")
        st = os.stat(nested.directory)
        assert st.st_uid == 0 and st.st_mode & 0o777 == 0o711
        out = in_sandbox(nested, "xdpyinfo", as_uid=NOBODY)
        assert out.returncode == 0, out.stderr


def test_a_failing_server_is_a_clear_error_and_leaves_nothing() -> None:
    import shutil

    # Reachable by nobody too: as root, the server's own sandbox runs as nobody.
    where = Path(tempfile.mkdtemp(prefix="rf-fake-x-", dir="/tmp"))
    try:
        where.chmod(0o755)
        fake = where / "Xvfb"
        fake.write_text("#!/bin/sh\necho 'Fatal server error: no screens today' >&2\nexit 1\n")
        fake.chmod(0o755)
        with pytest.raises(SandboxError) as err:
            display.start(DisplayConfig("xvfb"), env={"PATH": str(where)})
    finally:
        shutil.rmtree(where)
    assert "exited before it was ready" in str(err.value)
    assert "no screens today" in str(err.value) and "\n" not in str(err.value)


# -- Xephyr and the host's display --------------------------------------------------------------


@needs_xephyr
def test_xephyr_is_a_titled_window_on_the_host_display(host_x: dict[str, str]) -> None:
    with display.start(DisplayConfig("xephyr", "640x480"), env=host_x) as nested:
        assert nested.kind == "xephyr"
        tree = subprocess.run(
            ["xwininfo", "-root", "-tree"],
            env=host_x,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert tree.returncode == 0, tree.stderr
        assert '"ringfence sandbox"' in tree.stdout
        out = in_sandbox(nested, "xdpyinfo")
        assert out.returncode == 0, out.stderr
        assert dimensions(out.stdout) == "640x480"
        assert in_sandbox(nested, "xdpyinfo", xauthority="/dev/null").returncode != 0
        # The sandbox's cookie is not the host's: it cannot open the host display.
        assert Path(nested.xauthority).read_bytes() != Path(host_x["XAUTHORITY"]).read_bytes()


@needs_xephyr
@root_only
def test_xephyr_as_the_given_user_reaches_the_host_display(host_x: dict[str, str]) -> None:
    with display.start(DisplayConfig("xephyr"), user=(NOBODY, NOBODY), env=host_x) as nested:
        assert in_sandbox(nested, "xdpyinfo", as_uid=NOBODY).returncode == 0


@needs_xephyr
def test_xephyr_refused_by_the_host_is_a_clear_error(host_x: dict[str, str]) -> None:
    env = {**host_x, "XAUTHORITY": "/dev/null"}
    with pytest.raises(SandboxError) as err:
        display.start(DisplayConfig("xephyr"), env=env)
    assert "exited before it was ready" in str(err.value) and "\n" not in str(err.value)


@needs_xephyr
def test_auto_picks_xephyr_in_a_graphical_session(host_x: dict[str, str]) -> None:
    with display.start(DisplayConfig("auto"), env=host_x) as nested:
        assert nested.kind == "xephyr"


def test_auto_picks_xvfb_without_a_display() -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    with display.start(DisplayConfig("auto"), env=env) as nested:
        assert nested.kind == "xvfb"


def test_host_mode_hands_over_the_real_display_and_says_so(host_x: dict[str, str]) -> None:
    number = int(host_x["DISPLAY"][1:])
    with display.start(DisplayConfig("host"), env=host_x) as nested:
        assert nested.socket == f"/tmp/.X11-unix/X{number}" and nested.number == number
        assert nested.pid == -1
        assert str(nested.describe()["exposure"]).startswith("EXPOSED")
        out = in_sandbox(nested, "xdpyinfo")
        assert out.returncode == 0, out.stderr
        assert dimensions(out.stdout) == "1024x768"
    # stop() removed our cookie copy, not the host's server
    assert os.path.exists(f"/tmp/.X11-unix/X{number}")
    assert subprocess.run(["xdpyinfo"], env=host_x, capture_output=True, timeout=30).returncode == 0


def test_host_mode_refuses_a_tcp_display(host_x: dict[str, str]) -> None:
    with pytest.raises(SandboxError, match="not a local display"):
        display.start(DisplayConfig("host"), env={**host_x, "DISPLAY": "localhost:0"})


def test_host_mode_refuses_a_display_with_no_socket(host_x: dict[str, str]) -> None:
    with pytest.raises(SandboxError, match="does not exist"):
        display.start(DisplayConfig("host"), env={**host_x, "DISPLAY": ":4711"})


@pytest.mark.skipif(os.geteuid() != 0, reason="root runs the server as another user")
def test_another_local_user_cannot_read_a_root_callers_cookie() -> None:
    """A root caller's display directory is searchable (0711) and named in the server's
    command line; the cookie in it must still be the sandbox user's alone."""
    import pwd

    other = pwd.getpwnam("rftest").pw_uid if _has_user("rftest") else 1
    with display.start(DisplayConfig("xvfb"), user=(65534, 65534)) as nested:
        st = os.stat(nested.xauthority)
        assert (st.st_uid, st.st_mode & 0o777) == (65534, 0o600)
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setresgid(other, other, other)
                os.setresuid(other, other, other)
                try:
                    open(nested.xauthority, "rb").close()  # noqa: SIM115
                    os._exit(1)  # read it: the attack worked
                except PermissionError:
                    os._exit(0)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The control: the sandbox's user itself can read it.
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                open(nested.xauthority, "rb").close()  # noqa: SIM115
                os._exit(0)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
