"""The desktop use case (seed 001): a confined app sees only what it is given.

Files named on its command line, read-only; a nested X display of its own, never the host's;
no D-Bus session bus or sound unless granted. Each attack runs inside a real sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _util import rf, wait_until

DESKTOP = ("--profile", "desktop")


# -- files on the command line ------------------------------------------------------------------


@pytest.fixture
def docs(world_tmp: Path) -> Path:
    (world_tmp / "doc.txt").write_text("hello doc\n")
    (world_tmp / "other.txt").write_text("TOP-SECRET\n")
    (world_tmp / "link.txt").symlink_to(world_tmp / "doc.txt")
    (world_tmp / "doc.txt").chmod(0o666)  # writable by anyone: only the read-only bind stops it
    (world_tmp / "other.txt").chmod(0o644)
    return world_tmp


def test_a_file_named_on_the_command_line_is_readable(docs: Path) -> None:
    r = rf("run", *DESKTOP, "--display", "none", "--", "cat", str(docs / "doc.txt"))
    assert (r.returncode, r.stdout) == (0, "hello doc\n"), r.stderr


def test_cannot_write_a_file_named_on_the_command_line(docs: Path) -> None:
    # The file is "$1" of the script: an argument of the command line, so it is bound.
    r = rf("run", *DESKTOP, "--display", "none", "--", "sh", "-c",
           'echo tampered >> "$1"; echo rc=$?', "sh", str(docs / "doc.txt"))  # fmt: skip
    assert "rc=2" in r.stdout or "rc=1" in r.stdout, r.stdout + r.stderr
    assert "Read-only file system" in r.stderr
    assert (docs / "doc.txt").read_text() == "hello doc\n"


def test_cannot_read_a_sibling_of_a_file_argument(docs: Path) -> None:
    r = rf("run", *DESKTOP, "--display", "none", "--", "sh", "-c",
           'ls -A "$(dirname "$1")"; cat "$(dirname "$1")/other.txt"', "sh",
           str(docs / "doc.txt"))  # fmt: skip
    assert r.stdout.split() == ["doc.txt"]
    assert "TOP-SECRET" not in r.stdout
    assert "No such file or directory" in r.stderr


def test_relative_and_symlinked_arguments_are_rewritten_to_the_bound_path(docs: Path) -> None:
    r = subprocess.run(
        [
            *rf_argv(),
            "run",
            *DESKTOP,
            "--display",
            "none",
            "--",
            "sh",
            "-c",
            'echo "$@"',
            "sh",
            "doc.txt",
            "link.txt",
            "--opt=doc.txt",
            "missing.txt",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        cwd=docs,
        stdin=subprocess.DEVNULL,
    )
    doc = str(docs / "doc.txt")
    assert r.stdout.split() == [doc, doc, "--opt=doc.txt", "missing.txt"], r.stderr


def test_pseudo_files_and_directories_are_not_bound(docs: Path) -> None:
    # /proc/self/status would otherwise be the launcher's own, a directory a whole tree.
    r = rf("run", *DESKTOP, "--display", "none", "--json", "--", "true",
           "/proc/self/status", str(docs))  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stderr.strip().splitlines()[-1])
    mounts = [m for m in report["mounts"] if m.get("why") == "FileArguments=read-only"]
    assert mounts == []


def test_file_arguments_are_off_in_the_strict_profile(docs: Path) -> None:
    r = rf("run", "--", "cat", str(docs / "doc.txt"))
    assert r.returncode != 0 and "No such file or directory" in r.stderr


def rf_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "ringfence"]


# -- D-Bus and sound: absent unless granted -----------------------------------------------------


@pytest.fixture
def runtime_dir(world_tmp: Path) -> Iterator[Path]:
    """A stand-in $XDG_RUNTIME_DIR with a session bus and a PulseAudio socket that answer."""
    run = world_tmp / "run"
    (run / "pulse").mkdir(parents=True)
    run.chmod(0o755)
    (run / "pulse").chmod(0o755)
    servers = []
    for path in (run / "bus", run / "pulse" / "native"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        path.chmod(0o777)
        s.listen(4)
        servers.append(s)
        threading.Thread(target=_answer, args=(s, path.name.encode()), daemon=True).start()
    yield run
    for s in servers:
        s.close()


def _answer(server: socket.socket, word: bytes) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.sendall(word)


CONNECT = (
    "import os, socket, sys\n"
    "for var in sys.argv[1:]:\n"
    "    v = os.environ.get(var)\n"
    "    if v is None:\n"
    "        print(var, 'unset'); continue\n"
    "    path = v.split('=', 1)[-1] if v.startswith('unix:path=') else v.removeprefix('unix:')\n"
    "    s = socket.socket(socket.AF_UNIX)\n"
    "    try:\n"
    "        s.connect(path); print(var, s.recv(16).decode())\n"
    "    except OSError as e:\n"
    "        print(var, 'refused', e.strerror)\n"
)


def _env_with(run: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_RUNTIME_DIR": str(run),
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={run}/bus",
        "PULSE_SERVER": f"unix:{run}/pulse/native",
    }


def test_no_session_bus_or_sound_unless_granted(runtime_dir: Path) -> None:
    # The caller has both; the sandbox gets neither variable, and the paths do not exist.
    env = _env_with(runtime_dir)
    r = rf("run", *DESKTOP, "--display", "none", "--keep-env", "XDG_RUNTIME_DIR", "--",
           "python3", "-c", CONNECT + f"print(os.path.exists({str(runtime_dir)!r}))",
           "DBUS_SESSION_BUS_ADDRESS", "PULSE_SERVER", env=env)  # fmt: skip
    assert r.stdout.split("\n")[:3] == [
        "DBUS_SESSION_BUS_ADDRESS unset",
        "PULSE_SERVER unset",
        "False",
    ], r.stdout + r.stderr


def test_cannot_reach_the_session_bus_by_its_host_path(runtime_dir: Path) -> None:
    env = _env_with(runtime_dir)
    r = rf("run", *DESKTOP, "--display", "none", "--setenv", "DBUS_SESSION_BUS_ADDRESS",
           f"unix:path={runtime_dir}/bus", "--", "python3", "-c", CONNECT,
           "DBUS_SESSION_BUS_ADDRESS", env=env)  # fmt: skip
    assert r.stdout.startswith("DBUS_SESSION_BUS_ADDRESS refused"), r.stdout + r.stderr


def test_granted_session_bus_and_sound_answer(runtime_dir: Path) -> None:
    env = _env_with(runtime_dir)
    r = rf("run", *DESKTOP, "--display", "none", "--set", "SessionBus=yes", "--set",
           "Sound=yes", "--", "python3", "-c", CONNECT, "DBUS_SESSION_BUS_ADDRESS",
           "PULSE_SERVER", env=env)  # fmt: skip
    assert r.stdout.split("\n")[:2] == [
        "DBUS_SESSION_BUS_ADDRESS bus",
        "PULSE_SERVER native",
    ], r.stdout + r.stderr


def test_granting_a_missing_sound_server_is_one_clear_error(world_tmp: Path) -> None:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(world_tmp)}
    r = rf("run", *DESKTOP, "--display", "none", "--set", "Sound=yes", "--", "true", env=env)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Sound=yes" in r.stderr and "Traceback" not in r.stderr


def test_audit_marks_the_grants_as_exposures(runtime_dir: Path) -> None:
    env = _env_with(runtime_dir)
    base = json.loads(rf("audit", *DESKTOP, "--display", "xvfb", "--json", env=env).stdout)
    host = json.loads(
        rf(
            "audit", *DESKTOP, "--display", "host", "--set", "SessionBus=yes", "--json", env=env
        ).stdout  # fmt: skip
    )
    assert host["exposure"] > base["exposure"]
    items = {i["name"]: i for i in host["items"]}
    assert items["Display"]["badness"] >= 0.8 and items["SessionBus"]["badness"] == 1.0


# -- the nested display ----------------------------------------------------------------------


def _x_tools() -> None:
    for tool in ("Xvfb", "xdpyinfo"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/setup.sh (make setup)")


@pytest.fixture
def host_display(world_tmp: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A headless X server standing in for the user's real display, with its own cookie."""
    from ringfence.runtime.display import cookie_entry, encode_xauth

    _x_tools()
    # The server reads its cookie when it starts: write it first (a wildcard entry), then the
    # client's entry once the server has told its display number.
    cookie = os.urandom(16)
    server_auth, auth = world_tmp / "host-server.auth", world_tmp / "host.Xauthority"
    server_auth.write_bytes(encode_xauth([cookie_entry(cookie)]))
    r, w = os.pipe()
    server = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(w),
            "-nolisten",
            "tcp",
            "-auth",
            str(server_auth),
            "-noreset",  # like a real desktop's server (it always has clients)
            "-screen",
            "0",
            "800x600x24",
        ],  # fmt: skip
        pass_fds=[w],
        stdout=subprocess.DEVNULL,
        stderr=open(world_tmp / "host-server.log", "wb"),  # noqa: SIM115 (the child keeps it)
        start_new_session=True,
    )
    os.close(w)
    try:
        got = b""
        while not got.endswith(b"\n"):  # Xvfb writes the number, then the newline: closing
            chunk = os.read(r, 64)  # early would kill it with "cannot write display number"
            if not chunk:
                break
            got += chunk
        os.close(r)
        number = got.decode().strip()
        display = f":{number}"
        auth.write_bytes(encode_xauth([cookie_entry(cookie, number)]))
        auth.chmod(0o644)  # as root, the payload (nobody) reads it when XAUTHORITY is kept
        env = {**os.environ, "DISPLAY": display, "XAUTHORITY": str(auth)}
        assert wait_until(
            lambda: subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode == 0
        ), (number, (world_tmp / "host-server.log").read_text(errors="replace")[-2000:])
        yield display, env
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_nested_display_of_its_own(host_display: tuple[str, dict[str, str]]) -> None:
    _, env = host_display
    r = rf("run", *DESKTOP, "--display", "xvfb", "--", "sh", "-c",
           'echo "$DISPLAY"; ls -A /tmp/.X11-unix; xdpyinfo | grep dimensions', env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [":0", "X0"]
    assert "1280x800 pixels" in lines[2]  # the nested server's size, not the host's 800x600


def test_cannot_reach_the_host_display(host_display: tuple[str, dict[str, str]]) -> None:
    """By its number, with its cookie (XAUTHORITY kept on purpose), by its socket file and by
    its abstract socket: the host's 800x600 screen must never answer."""
    display, env = host_display
    number = display[1:]
    # If the host display is :0 itself, the sandbox's own :0 is the nested server (1280x800):
    # reaching it is no attack, and the dimension check below tells the two apart.
    paths = [f"\\0/tmp/.X11-unix/X{number}"]
    if number != "0":
        paths.append(f"/tmp/.X11-unix/X{number}")
    probe = (
        "import socket\n"
        f"for addr in {paths!r}:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(addr.replace('\\\\0', '\\0')); print('CONNECTED', repr(addr))\n"
        "    except OSError as e:\n"
        "        print('refused', e.strerror)\n"
    )
    r = rf("run", *DESKTOP, "--display", "xvfb", "--keep-env", "XAUTHORITY", "--", "sh", "-c",
           f"xdpyinfo -display {display} 2>&1 | grep dimensions; python3 -c \"$0\"",
           probe, env=env)  # fmt: skip
    assert "800x600" not in r.stdout and "CONNECTED" not in r.stdout, r.stdout
    refused = [line for line in r.stdout.splitlines() if line.startswith("refused")]
    assert len(refused) == len(paths), r.stdout + r.stderr


def test_the_nested_display_needs_its_cookie(host_display: tuple[str, dict[str, str]]) -> None:
    _, env = host_display
    r = rf("run", *DESKTOP, "--display", "xvfb", "--", "sh", "-c",
           "XAUTHORITY=/dev/null xdpyinfo >/dev/null 2>&1 && echo NO-COOKIE-NEEDED; "
           "xdpyinfo >/dev/null && echo with-cookie", env=env)  # fmt: skip
    assert r.stdout.split() == ["with-cookie"], r.stdout + r.stderr


def test_xephyr_shows_a_window_on_the_caller_display(
    host_display: tuple[str, dict[str, str]],
) -> None:
    if shutil.which("Xephyr") is None:
        pytest.fail("Xephyr is not installed: run scripts/setup.sh (make setup)")
    _, env = host_display
    r = rf(
        "run", *DESKTOP, "--", "sh", "-c", "xdpyinfo | grep dimensions; sleep 0.5", env=env
    )  # Display=auto: Xephyr, since the caller has a display
    assert r.returncode == 0, r.stderr
    assert "1280x800 pixels" in r.stdout


def test_no_display_server_outlives_the_sandbox(world_tmp: Path) -> None:
    _x_tools()
    before = _servers()
    r = rf("run", *DESKTOP, "--display", "xvfb", "--", "true")
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: _servers() <= before)


def test_sigkill_of_the_launcher_kills_the_display_server(world_tmp: Path) -> None:
    _x_tools()
    before = _servers()
    proc = subprocess.Popen([*rf_argv(), "run", *DESKTOP, "--display", "xvfb", "--", "sleep",
                             "60"], stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_until(lambda: bool(_servers() - before), timeout=20)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_until(lambda: not (_servers() - before))
    finally:
        proc.kill()
        proc.wait()


def test_json_report_names_the_display(world_tmp: Path) -> None:
    _x_tools()
    r = rf("run", *DESKTOP, "--display", "xvfb", "--json", "--", "true")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stderr.strip().splitlines()[-1])
    layers = {entry["layer"]: entry for entry in report["layers"]}
    assert layers["display"]["applied"] is True and "xvfb" in layers["display"]["detail"]


def _servers() -> set[int]:
    found = set()
    uid = os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            if comm in ("Xvfb", "Xephyr") and os.stat(f"/proc/{entry}").st_uid in (uid, 65534):
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(") ", 1)[1][0] != "Z":
                        found.add(int(entry))
        except OSError:
            continue
    return found


def test_a_desktop_session_shares_its_display_and_takes_added_files(docs: Path) -> None:
    _x_tools()
    name = f"desk-{os.getpid()}"
    before = _servers()
    r = rf("start", name, *DESKTOP, "--display", "xvfb", "--", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        joined = rf("enter", name, "--", "sh", "-c", "xdpyinfo | grep -c dimensions")
        assert joined.stdout.strip() == "1", joined.stderr
        assert rf("add", name, str(docs / "doc.txt")).returncode == 0
        read = rf("enter", name, "--", "cat", "/run/ringfence/add/doc.txt")
        assert read.stdout == "hello doc\n", read.stderr
    finally:
        rf("stop", name)
    assert wait_until(lambda: not (_servers() - before))


def test_cannot_use_the_display_server_to_reach_host_loopback(world_tmp: Path) -> None:
    """The nested X server runs on the host. A client may set its font path, and a font path
    element "tcp/HOST:PORT" asks the server to connect to a font server: that would be a
    connect() from the host's network namespace, on the sandbox's behalf."""
    if shutil.which("xset") is None:
        pytest.fail("xset is not installed: run scripts/setup.sh (make setup)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(3)
    port = listener.getsockname()[1]
    try:
        r = rf("run", *DESKTOP, "--display", "xvfb", "--", "sh", "-c",
               f"xset fp+ tcp/127.0.0.1:{port}; xset fp+ /usr/share/fonts/X11/misc; "
               "echo added=$?")  # fmt: skip
        try:
            conn, _ = listener.accept()
            conn.close()
            connected = True
        except TimeoutError:
            connected = False
    finally:
        listener.close()
    assert not connected, "the nested X server connected to a host loopback port"
    assert "added=0" in r.stdout, r.stdout + r.stderr  # control: font paths can be set at all


def test_display_host_gets_an_untrusted_client_only(
    host_display: tuple[str, dict[str, str]],
) -> None:
    """Display=host is the marked exposure, but the app never holds the user's own cookie: an
    untrusted one, for which the X SECURITY extension hides XTEST (inject keys), RECORD (log
    them) and the rest of the extensions."""
    _, env = host_display
    r = rf("run", *DESKTOP, "--display", "host", "--", "sh", "-c",
           "xdpyinfo | sed -n '/number of extensions/,/default screen/p'", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "RECORD" not in r.stdout and "XTEST" not in r.stdout, r.stdout
    assert "number of extensions:    2" in r.stdout, r.stdout
    # The control: the user's own (trusted) connection sees them.
    own = subprocess.run(["xdpyinfo"], env=env, capture_output=True, text=True)
    assert "XTEST" in own.stdout and "RECORD" in own.stdout


@pytest.mark.parametrize("swap", ["symlink to a directory", "another file"])
def test_a_file_argument_swapped_after_planning_is_not_bound(world_tmp: Path, swap: str) -> None:
    """Between the plan and the mount, whoever can write the file's directory replaces the
    file: by a link to a directory of secrets, or by another file. Neither may be bound."""
    from ringfence.plan import RunRequest, compile_plan
    from ringfence.profile.loader import load_profile
    from ringfence.runtime.launcher import Launch

    secrets = world_tmp / "secrets"
    secrets.mkdir()
    (secrets / "id_rsa").write_text("VICTIM-PRIVATE-KEY\n")
    secrets.chmod(0o755)
    (secrets / "id_rsa").chmod(0o644)
    doc = world_tmp / "doc.pdf"
    doc.write_text("just a document\n")
    doc.chmod(0o644)
    script = 'cat "$0" "$0/id_rsa" 2>/dev/null'
    plan = compile_plan(
        load_profile("desktop", {"Display": "none"}), RunRequest(("sh", "-c", script, str(doc)))
    )
    doc.unlink()
    if swap == "symlink to a directory":
        doc.symlink_to(secrets)
    else:
        doc.write_text("VICTIM-PRIVATE-KEY (another file)\n")
        doc.chmod(0o644)
    r, w = os.pipe()
    launch = Launch(plan, stdio=(0, w, 2))
    try:
        with pytest.raises(Exception, match="since the plan was made"):
            launch.start()
    finally:
        os.close(w)
        out = os.read(r, 4096)
        os.close(r)
    assert b"VICTIM" not in out
    # The control: with the file restored and planned again, the same launch shows it.
    doc.unlink()
    doc.write_text("just a document\n")
    doc.chmod(0o644)
    plan = compile_plan(
        load_profile("desktop", {"Display": "none"}), RunRequest(("sh", "-c", script, str(doc)))
    )
    r, w = os.pipe()
    launch = Launch(plan, stdio=(0, w, 2))
    launch.start()
    os.close(w)
    launch.wait()
    got = os.read(r, 4096)
    os.close(r)
    assert got == b"just a document\n"


def test_no_other_host_display_by_path_even_with_the_host_tmp(
    host_display: tuple[str, dict[str, str]],
) -> None:
    """PrivateTmp=no shares the host's /tmp: /tmp/.X11-unix must still hold only the nested
    server's X0 (found by review: the host's other X sockets were reachable)."""
    display, env = host_display
    r = rf("run", *DESKTOP, "--display", "xvfb", "--set", "PrivateTmp=no", "--keep-env",
           "XAUTHORITY", "--", "sh", "-c",
           f"ls -A /tmp/.X11-unix; xdpyinfo -display {display} 2>&1 | grep dimensions; "
           "ls -d /tmp/rf-test-* >/dev/null && echo host-tmp-visible", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "X0", r.stdout
    assert "800x600" not in r.stdout
    assert "host-tmp-visible" in lines  # the control: /tmp really is the host's here


def test_the_display_server_cannot_read_fonts_planted_in_the_sandbox(world_tmp: Path) -> None:
    """A client may set its server's font path; through /proc/PID/root the server (running as
    the same user) could read a font directory the payload wrote in its own /tmp and parse
    what it planted there (found by review). The server has a sandbox of its own, with its own
    /proc: the path leads nowhere."""
    if shutil.which("xset") is None:
        pytest.fail("xset is not installed: run scripts/setup.sh (make setup)")
    marker = f"rf-font-{os.getpid()}"
    script = (
        "cp -r /usr/share/fonts/X11/misc /tmp/f; "
        f"exec -a {marker} sh -c 'read pid; "
        "xset fp+ /usr/share/fonts/X11/misc && echo control-ok; "
        'xset fp+ "/proc/$pid/root/tmp/f" 2>/dev/null && echo PLANTED-FONTS-READ; echo done\''
    )
    proc = subprocess.Popen(
        [*rf_argv(), "run", *DESKTOP, "--display", "xvfb", "--", "bash", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: bool(_pids(marker)), timeout=20)
        out, err = proc.communicate(f"{_pids(marker)[0]}\n", timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert "PLANTED-FONTS-READ" not in out
    assert "control-ok" in out and "done" in out, out + err


def _pids(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().startswith(marker.encode()):
                        found.append(int(entry))
            except OSError:
                pass
    return found
