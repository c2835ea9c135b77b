"""Named sessions: long-lived sandboxes that other programs can join, and add files to.

Layout: ``$XDG_RUNTIME_DIR/ringfence/sessions/NAME/`` (or ``/tmp/ringfence-UID/...`` when there
is no XDG_RUNTIME_DIR), every directory 0700 and owned by the user, holding:
  state.json    who the session is (keeper and PID 1 host pids with their start times, the
                profile keys and options it was started with, the drop zone, vaults)
  control.sock  the keeper's socket (`add`, `info`, `stop`); peers must have our uid
  output.log    the initial command's stdout and stderr

Processes: ``ringfence start`` forks a detached *keeper* (setsid) that launches the sandbox
and stays as its host-side parent (so the PDEATHSIG chain holds: kill the keeper and the session
dies), serves the control socket, and removes the state when the sandbox ends. ``enter`` does
not go through the keeper: it verifies the state, recompiles the same profile, and joins PID 1's
namespaces with one setns(pidfd) (the kernel refuses anyone who does not own the namespaces).

State is never trusted blindly: a pid is only used if its start time matches the one recorded,
and a session whose keeper or PID 1 is gone is stale; it is cleaned up, not joined.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time

from .._record import record
from ..errors import SessionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def sessions_dir() -> str:
    from .._rundir import private_dir

    try:
        return private_dir("sessions")
    except OSError as e:
        raise SessionError(str(e)) from None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SessionError(
            f"invalid session name {name!r}: use letters, digits, '.', '_' and '-' (at most 64)"
        )
    return name


def session_dir(name: str) -> str:
    return os.path.join(sessions_dir(), check_name(name))


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat); None if it is
    gone or a zombie (a dead process whose parent has not reaped it is not a live session)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


@record
class SessionState:
    name: str
    keeper_pid: int
    keeper_start: int
    init_pid: int
    init_start: int
    created: float
    profile: str
    keys: dict[str, object]
    add_dir: str
    argv: list[str]
    vaults: list[str]
    pass_env: dict[str, str]
    pidns: str = ""  # "pid:[inode]" of the session's PID namespace (PID 1 is not readable)

    def alive(self) -> bool:
        return (
            start_time(self.init_pid) == self.init_start
            and start_time(self.keeper_pid) == self.keeper_start
        )


def write_state(state: SessionState) -> None:
    path = os.path.join(session_dir(state.name), "state.json")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({k: getattr(state, k) for k in state.__record_fields__}, f)  # type: ignore[attr-defined]
    os.rename(tmp, path)


def read_state(name: str) -> SessionState | None:
    path = os.path.join(session_dir(name), "state.json")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as f:
        try:
            data = json.load(f)
            return SessionState(**data)
        except (ValueError, TypeError):
            return None


def remove_session_dir(name: str) -> None:
    import shutil

    shutil.rmtree(session_dir(name), ignore_errors=True)


def live_state(name: str) -> SessionState:
    """The state of a running session, or SessionError (and stale state is cleaned up)."""
    state = read_state(name)
    if state is None:
        if os.path.isdir(session_dir(name)):
            # A keeper still starting up, or a crashed one that never wrote its state.
            raise SessionError(
                f"session {name} is starting or broken; try again or `ringfence stop {name}`"
            )
        raise SessionError(f"no session named {name} (see `ringfence ls`)")
    if not state.alive():
        cleanup_stale(state)
        raise SessionError(f"session {name} had ended (stale state cleaned up)")
    return state


def cleanup_stale(state: SessionState) -> None:
    # Kill only processes whose start time proves they are the ones we recorded.
    for pid, started in (
        (state.init_pid, state.init_start),
        (state.keeper_pid, state.keeper_start),
    ):
        if start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    remove_session_dir(state.name)


def list_sessions() -> list[SessionState]:
    out = []
    for name in sorted(os.listdir(sessions_dir())):
        if not _NAME.match(name):
            continue
        state = read_state(name)
        if state is None:
            continue
        if state.alive():
            out.append(state)
        else:
            cleanup_stale(state)
    return out


def members(state: SessionState) -> list[int]:
    """Host pids of the processes inside the session, except its own machinery."""
    ns = state.pidns
    if not ns:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == state.init_pid:
            continue
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != ns:
                continue
            with open(f"/proc/{pid}/comm", "rb") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in (b"rf-stager", b"gocryptfs", b"memfd:gocryptfs"):
            continue
        found.append(pid)
    return found


# --- the keeper's control socket ----------------------------------------------------------


def namespace_fds(name: str) -> tuple[tuple[str, int], ...]:
    """Ask the session's keeper for its namespaces (fds over SCM_RIGHTS, peer uid checked)."""
    s = _connect(name)
    try:
        s.sendall(b'{"op": "namespaces"}\n')
        data, fds, _flags, _addr = socket.recv_fds(s, 65536, 16)
    except OSError as e:
        raise SessionError(f"session {name}: its keeper does not answer ({e})") from None
    finally:
        s.close()
    try:
        names = json.loads(data)["namespaces"]
    except (ValueError, KeyError):
        names = []
    if len(names) != len(fds) or not fds:
        for fd in fds:
            os.close(fd)
        raise SessionError(f"session {name}: its keeper did not hand over its namespaces")
    return tuple(zip(names, fds, strict=True))


def _socket_address(name: str) -> tuple[str, int]:
    """A short path for the control socket: unix socket paths are limited to 107 bytes, and a
    runtime directory can be long, so go through a directory fd (/proc/self/fd/N/...)."""
    dfd = os.open(session_dir(name), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dfd}/control.sock", dfd


def bind_control_socket(name: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    path, dfd = _socket_address(name)
    old = os.umask(0o177)
    try:
        server.bind(path)
    finally:
        os.umask(old)
        os.close(dfd)
    server.listen(16)
    return server


def _connect(name: str, timeout: float = 30.0) -> socket.socket:
    import struct

    path, dfd = _socket_address(name)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        finally:
            os.close(dfd)
        _pid, uid, _gid = struct.unpack(
            "3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        )
    except OSError as e:
        s.close()
        raise SessionError(f"session {name}: its keeper does not answer ({e})") from None
    if uid != os.geteuid():
        s.close()
        raise SessionError(f"session {name}: the control socket is not ours (uid {uid})")
    return s


def request(name: str, message: dict[str, object], timeout: float = 30.0) -> dict[str, Any]:
    s = _connect(name, timeout)
    try:
        s.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (TimeoutError, OSError) as e:
        raise SessionError(f"session {name}: its keeper does not answer ({e})") from None
    finally:
        s.close()
    try:
        reply: dict[str, Any] = json.loads(buf)
    except ValueError:
        raise SessionError(f"session {name}: bad answer from its keeper") from None
    return reply


class Keeper:
    """The session's host-side parent. Runs in a detached process; never returns."""

    def __init__(
        self,
        state_base: SessionState,
        launch: Any,
        stager_sock: socket.socket | None,
        until_empty: bool,
        server: socket.socket,
    ) -> None:
        self.state = state_base
        self.launch = launch
        self.stager = stager_sock
        self.until_empty = until_empty
        self.server = server

    def serve(self) -> None:
        import selectors

        from ..kernel._syscall import syscall

        server = self.server
        pidfd = syscall("pidfd_open", self.launch.child_pid, 0)
        sel = selectors.DefaultSelector()
        sel.register(server, selectors.EVENT_READ, "accept")
        sel.register(pidfd, selectors.EVENT_READ, "ended")
        seen_member = bool(self.state.argv)
        while True:
            for key, _ in sel.select(0.25 if self.until_empty else None):
                if key.data == "ended":
                    self.finish()
                conn, _ = server.accept()
                self._handle(conn)
            if self.until_empty:
                count = len(members(self.state))
                if count:
                    seen_member = True
                elif seen_member:
                    self.launch.signal(signal.SIGTERM)

    def _handle(self, conn: socket.socket) -> None:
        import struct

        with conn:
            conn.settimeout(30)
            try:
                _pid, uid, _gid = struct.unpack(
                    "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                )
                if uid != os.geteuid():
                    conn.sendall(b'{"ok": false, "error": "permission denied"}\n')
                    return
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                req = json.loads(buf)
                if req.get("op") == "namespaces":
                    names = [ns for ns, _ in self.launch.ns_fds]
                    data = json.dumps({"ok": True, "namespaces": names}).encode() + b"\n"
                    socket.send_fds(conn, [data], [fd for _, fd in self.launch.ns_fds])
                    return
                reply = self._dispatch(req)
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except (OSError, ValueError):
                return

    def _dispatch(self, req: dict[str, Any]) -> dict[str, object]:
        op = req.get("op")
        if op == "info":
            return {"ok": True, "members": len(members(self.state))}
        if op == "add":
            if self.stager is None:
                return {"ok": False, "error": "this session has no drop zone"}
            msg = {k: req.get(k) for k in ("src", "dest", "rw")}
            try:
                self.stager.sendall(json.dumps(msg).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = self.stager.recv(65536)
                    if not chunk:
                        return {"ok": False, "error": "the session's stager is gone"}
                    buf += chunk
            except OSError as e:
                return {"ok": False, "error": f"the session's stager is gone ({e})"}
            reply: dict[str, object] = json.loads(buf)
            if reply.get("ok"):
                reply["path"] = self.state.add_dir.rstrip("/") + "/" + str(reply["dest"])
            return reply
        if op == "stop":
            self.launch.signal(signal.SIGTERM)
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {op!r}"}

    def finish(self) -> None:
        self.launch.wait()
        remove_session_dir(self.state.name)
        os._exit(0)


def wait_gone(state: SessionState, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if start_time(state.init_pid) != state.init_start:
            return True
        time.sleep(0.02)
    return start_time(state.init_pid) != state.init_start
