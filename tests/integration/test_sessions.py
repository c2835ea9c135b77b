"""Named sessions: start, enter, add, ls, stop, attacked and checked from real sandboxes."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import uuid

import pytest
from _util import PYTHON, pids_with, rf, wait_until


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    d = tmp_path / "xdg"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


@pytest.fixture
def session(runtime_dir):  # type: ignore[no-untyped-def]
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    rf("stop", name, "--timeout", "2")


def _state(runtime_dir, name):  # type: ignore[no-untyped-def]
    with open(runtime_dir / "ringfence" / "sessions" / name / "state.json") as f:
        return json.load(f)


def test_enter_sees_what_the_session_wrote_and_outsiders_do_not(session, runtime_dir):
    r = rf("start", session, "--", "sh", "-c", "echo shared > /tmp/note; exec sleep 300")
    assert r.returncode == 0, r.stderr
    last = []

    def sees_note() -> bool:
        last.append(rf("enter", session, "--", "cat", "/tmp/note"))
        return last[-1].stdout == "shared\n"

    assert wait_until(sees_note), last[-1]
    # A fresh sandbox, or the host, does not see the session's /tmp.
    assert rf("run", "--", "cat", "/tmp/note").returncode != 0
    if os.path.exists("/tmp/note"):
        with open("/tmp/note") as f:
            assert f.read() != "shared\n"


def test_joiner_gets_every_restriction(session):
    assert rf("start", session).returncode == 0
    r = rf(
        "enter",
        session,
        "--",
        "sh",
        "-c",
        "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
        "unshare -r true 2>/dev/null && echo NESTED; touch /usr/x 2>/dev/null && echo WROTE; "
        "cat /proc/1/status 2>/dev/null | head -1; exit 0",
    )
    fields = dict(line.split(":\t") for line in r.stdout.splitlines() if ":\t" in line)
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    assert "NESTED" not in r.stdout and "WROTE" not in r.stdout
    assert "rf-init" not in r.stdout  # PID 1 is not dumpable: its /proc entries are closed


def test_joiner_is_inside_the_sessions_pid_namespace(session):
    assert rf("start", session, "--", "sleep", "300").returncode == 0
    r = rf("enter", session, "--", "sh", "-c", "echo $$")
    assert r.returncode == 0 and int(r.stdout) < 100  # a pid of the session's namespace


def test_enter_propagates_exit_code(session):
    assert rf("start", session).returncode == 0
    assert rf("enter", session, "--", "sh", "-c", "exit 5").returncode == 5


def test_add_makes_a_file_visible_read_only(session, world_tmp):
    doc = world_tmp / "doc.txt"
    doc.write_text("added later")
    doc.chmod(0o644)
    assert rf("start", session, "--", "sleep", "300").returncode == 0
    r = rf("add", session, str(doc))
    assert r.returncode == 0, r.stderr
    inside = r.stdout.strip()
    assert inside == "/run/ringfence/add/doc.txt"
    r = rf("enter", session, "--", "sh", "-c", f"cat {inside}; echo more >> {inside} && echo WROTE")
    assert r.stdout.startswith("added later")
    assert "WROTE" not in r.stdout
    assert doc.read_text() == "added later"


def test_add_rw_is_writable(session, world_tmp):
    work = world_tmp / "work"
    work.mkdir()
    work.chmod(0o777)
    assert rf("start", session).returncode == 0
    r = rf("add", session, str(work), "work", "--rw")
    assert r.returncode == 0, r.stderr
    r = rf("enter", session, "--", "sh", "-c", "echo hi > /run/ringfence/add/work/out")
    assert r.returncode == 0, r.stderr
    assert (work / "out").read_text() == "hi\n"


def test_add_outside_the_drop_zone_is_refused(session, world_tmp):
    assert rf("start", session).returncode == 0
    r = rf("add", session, str(world_tmp), "/etc/evil")
    assert r.returncode == 2 and "drop zone" in r.stderr


def test_payload_cannot_write_into_the_drop_zone(session):
    assert rf("start", session).returncode == 0
    r = rf("enter", session, "--", "sh", "-c", "touch /run/ringfence/add/x && echo WROTE")
    assert "WROTE" not in r.stdout


def test_ls_lists_sessions_with_members(session):
    assert rf("start", session, "--", "sleep", "300").returncode == 0
    r = rf("ls", "--json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows[session]["members"] >= 1


def test_stop_leaves_no_process_behind(session, runtime_dir):
    marker = f"rf-sess-{uuid.uuid4().hex[:8]}"
    assert (
        rf(
            "start", session, "--", "bash", "-c", f"trap '' TERM; exec -a {marker} sleep 300"
        ).returncode
        == 0
    )
    assert wait_until(lambda: bool(pids_with(marker)))
    state = _state(runtime_dir, session)
    assert rf("stop", session, "--timeout", "1").returncode == 0
    assert wait_until(lambda: not pids_with(marker), timeout=15)
    if os.path.exists(f"/proc/{state['init_pid']}/stat"):
        with open(f"/proc/{state['init_pid']}/stat") as f:
            assert f.read().split(") ")[1][0] == "Z"  # gone, or a zombie nobody reaped yet
    assert rf("ls", "--json").stdout.strip() == "[]"


def test_sigkill_of_keeper_ends_the_session(session, runtime_dir):
    marker = f"rf-keep-{uuid.uuid4().hex[:8]}"
    assert rf("start", session, "--", "bash", "-c", f"exec -a {marker} sleep 300").returncode == 0
    assert wait_until(lambda: bool(pids_with(marker)))
    os.kill(_state(runtime_dir, session)["keeper_pid"], signal.SIGKILL)
    assert wait_until(lambda: not pids_with(marker), timeout=15)
    r = rf("enter", session, "--", "true")
    assert r.returncode == 2 and (
        "ended" in r.stderr or "no session" in r.stderr or "does not answer" in r.stderr
    )


def test_until_empty_stops_when_the_last_member_exits(runtime_dir):
    name = f"t{uuid.uuid4().hex[:8]}"
    assert rf("start", name, "--until-empty", "--", "sleep", "0.5").returncode == 0
    assert wait_until(lambda: rf("ls", "--json").stdout.strip() == "[]", timeout=15)


def test_starting_a_running_session_again_is_refused(session):
    assert rf("start", session).returncode == 0
    r = rf("start", session)
    assert r.returncode == 2 and "already running" in r.stderr and "enter" in r.stderr


def test_entering_an_unknown_session_is_one_clear_line(runtime_dir):
    r = rf("enter", "nope", "--", "true")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no session named nope" in r.stderr


def test_bad_session_name(runtime_dir):
    r = rf("start", "../evil")
    assert r.returncode == 2 and "invalid session name" in r.stderr


def test_another_user_cannot_enter(session, runtime_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second user")
    # As root the session runs as nobody; a different unprivileged user must not get in,
    # neither through the state directory nor through the kernel's namespace checks.
    assert rf("start", session, "--", "sleep", "300").returncode == 0
    state = _state(runtime_dir, session)
    r = subprocess.run(
        [
            "runuser",
            "-u",
            "daemon",
            "--",
            PYTHON,
            "-c",
            "import os,sys\n"
            f"fd=os.open('/proc/{state['init_pid']}/ns/user', os.O_RDONLY)\n"
            "print('opened')",
        ],
        capture_output=True,
        text=True,
    )
    assert "opened" not in r.stdout
    # Pointed at the owner's state directory, the other user gets nothing (it cannot even read
    # it, so ringfence falls back to /tmp/ringfence-UID for that user: removed afterwards).
    daemon_dir = f"/tmp/ringfence-{pwd.getpwnam('daemon').pw_uid}"
    existed = os.path.exists(daemon_dir)
    try:
        r = subprocess.run(
            [
                "runuser",
                "-u",
                "daemon",
                "--",
                PYTHON,
                "-m",
                "ringfence",
                "enter",
                session,
                "--",
                "true",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)},
        )
        assert r.returncode != 0
    finally:
        if not existed:
            shutil.rmtree(daemon_dir, ignore_errors=True)
