"""Pre-warmed sandboxes for the Python API (``Sandbox(..., pool=N)``).

A warm sandbox is the whole chain of a normal launch, started ahead of time: C has unshared the
namespaces, PID 1 has built the root and pivoted into it, and the payload process P has locked
itself down completely (capabilities, no_new_privs, Landlock, seccomp: everything but the
execve) and waits for its command. A run then costs one message and an execve instead of a
whole start-up. Every run still gets a sandbox of its own: warm sandboxes are never reused.

Process tree::

    caller (the API user's process)
      └─ M: the pool manager (a fork of the caller; starts warm sandboxes, reaps them)
           └─ C → I (PID 1) → P (locked down, waiting)

Channels (all AF_UNIX, close-on-exec):
- caller ↔ M, SEQPACKET: M sends ``w`` with two fds (a warm sandbox's request and control
  sockets) or ``e<code> <message>`` (starting one failed); the caller sends ``r`` for each one
  taken, once its run is over (start another), and closes the channel when done (M kills what
  it has and exits).
- caller → P, STREAM ("request"): a 4-byte length, then argv as NUL-separated bytes, with the
  payload's fds (stdin, stdout, stderr, then the pass_fds in order) as SCM_RIGHTS. P answers
  only with an error line (protocol.send_error) when the command cannot be executed; EOF
  without one means the execve succeeded (the socket is close-on-exec).
- caller ↔ I, SEQPACKET ("control"): ``k`` kills the sandbox, ``s<signal byte>`` forwards a
  signal to the payload; I answers ``x<exit code>`` once the payload exited and everything else
  in the namespace is dead. EOF on either side means the other is gone: I then kills the
  sandbox, the caller reports 128+SIGKILL.

Teardown: M has PR_SET_PDEATHSIG(SIGKILL) tied to the caller's thread and C tied to M, so the
usual chain holds: if the caller dies, M dies, every C dies, every PID 1 dies, the kernel kills
their namespaces. A warm sandbox whose sockets were never taken dies when M closes them.

Must never: reuse a sandbox for a second command, hand the caller a sandbox whose lock-down
failed, or keep any of the caller's fds in M or in the sandbox.
"""

from __future__ import annotations

import os

from .. import _signals as signal
from ..errors import ProfileError, RingfenceError
from ..plan import Plan
from . import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket as Socket

_MAX_FDS = 253  # SCM_MAX_FD
_MSG_CMSG_CLOEXEC = 0x40000000  # linux/socket.h
_SIGKILLED = 128 + signal.SIGKILL


def check_poolable(plan: Plan) -> None:
    """Refuse what a warm sandbox cannot carry, with the reason."""
    why = None
    if plan.network == "user":
        why = "Network=user (its helper belongs to one launch)"
    elif plan.vaults:
        why = "vaults (their passwords are asked per launch)"
    elif plan.session is not None:
        why = "named sessions"
    elif plan.profile.file_arguments != "no":
        why = "FileArguments= (the files of each command are bound when it starts)"
    if why:
        raise ProfileError(f"pool= cannot pre-warm sandboxes with {why}: use pool=0")


def _unix(kind: int, fd: int) -> Socket:
    import _socket

    return _socket.socket(_socket.AF_UNIX, kind, 0, fd)


def _fds_cmsg(fds: list[int]) -> list[tuple[int, int, bytes]]:
    import _socket
    from array import array

    return [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, array("i", fds).tobytes())]


def _recv_with_fds(sock: Socket, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    import _socket
    from array import array

    # MSG_CMSG_CLOEXEC: a program the caller starts meanwhile must not inherit a sandbox's
    # control socket (it could kill it or read its exit status).
    data, anc, _flags, _addr = sock.recvmsg(
        size, _socket.CMSG_SPACE(max_fds * 4), _MSG_CMSG_CLOEXEC
    )
    fds = array("i")
    for level, kind, raw in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(raw[: len(raw) - len(raw) % fds.itemsize])
    return data, list(fds)


def _wake_on_sigchld() -> int:
    """A non-blocking pipe that becomes readable when a child exits (for a poll loop)."""
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    return wake_r


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass
    except BlockingIOError:
        pass


# -- the caller's side ---------------------------------------------------------------------------


class Pool:
    """The caller's handle on M. ``take()`` returns a warm sandbox, blocking until one is ready."""

    def __init__(self, plan: Plan, size: int) -> None:
        import _socket

        check_poolable(plan)
        if size < 1:
            raise ProfileError(f"pool={size}: give a number of sandboxes ≥ 1, or 0 for none")
        mine, theirs = _socket.socketpair(
            _socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC
        )
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                mine.detach()
                _manager_main(plan, size, theirs.detach(), parent)
            finally:
                os._exit(0)
        theirs.close()
        self.pid = pid
        self._chan: Socket | None = mine

    def take(self) -> WarmSandbox:
        chan = self._chan
        if chan is None:
            raise RingfenceError("this Sandbox's pool is closed")
        data, fds = _recv_with_fds(chan, 4096, 2)
        if data[:1] == b"w" and len(fds) == 2:
            return WarmSandbox(fds[0], fds[1])
        for fd in fds:
            os.close(fd)
        if data[:1] == b"e":
            code, _, message = data[1:].decode(errors="replace").partition(" ")
            err = RingfenceError(message)
            err.exit_code = int(code) if code.isdigit() else 2
            raise err
        self.close()
        raise RingfenceError("the sandbox pool's manager exited")

    def refill(self) -> None:
        """Ask M for a sandbox in place of the one taken. Called once that one's run is over,
        so that building the next one does not compete with it for the CPU."""
        if self._chan is not None:
            try:
                self._chan.send(b"r")
            except OSError:
                pass

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()  # M kills its warm sandboxes and exits
            self._chan = None
            while True:
                try:
                    os.waitpid(self.pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break


class WarmSandbox:
    """One warm sandbox, used once. Has the launch interface the API's run loop needs:
    ``poll``, ``wait``, ``kill``, ``signal`` and ``returncode``."""

    def __init__(self, request_fd: int, control_fd: int) -> None:
        import _socket

        self._request: Socket | None = _unix(_socket.SOCK_STREAM, request_fd)
        self._control = _unix(_socket.SOCK_SEQPACKET, control_fd)
        self.returncode: int | None = None

    def start(self, argv: list[str], fds: dict[int, int]) -> None:
        """Hand P its command and fds (target number → the caller's fd); returns once it has
        executed (or raises why not)."""
        request = self._request
        assert request is not None
        if len(fds) > _MAX_FDS:
            raise ProfileError(f"a pooled run can pass at most {_MAX_FDS - 3} extra fds")
        if any("\0" in a for a in argv):
            raise ValueError("embedded null byte")  # as execve (and subprocess) would say
        targets = " ".join(str(t) for t in fds).encode()
        body = targets + b"\n" + b"\0".join(os.fsencode(a) for a in argv)
        head = len(body).to_bytes(4, "little")
        try:
            request.sendmsg([head + body[:4096]], _fds_cmsg(list(fds.values())))
            if len(body) > 4096:
                request.sendall(body[4096:])
            answer = b""
            while chunk := request.recv(4096):
                answer += chunk
        except OSError as e:
            self.kill()
            self.wait()
            raise RingfenceError(f"the warm sandbox is gone ({e.strerror})") from None
        finally:
            request.close()
            self._request = None
        _, _, error = protocol.parse(answer)
        if error is not None:
            self.wait()
            code, message = error
            err = RingfenceError(message)
            err.exit_code = code
            raise err

    def signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                self._control.send(b"s" + bytes([sig]))
            except OSError:
                pass

    def kill(self) -> None:
        if self.returncode is None:
            try:
                self._control.send(b"k")
            except OSError:
                pass

    def _finish(self, message: bytes) -> int:
        text = message[1:].decode(errors="replace") if message[:1] == b"x" else ""
        self.returncode = int(text) if text.isdigit() else _SIGKILLED
        self._control.close()
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            try:
                return self._finish(self._control.recv(64))
            except InterruptedError:
                continue
            except OSError:
                return self._finish(b"")
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self._control.setblocking(False)
                message = self._control.recv(64)
            except BlockingIOError:
                return None
            except OSError:
                message = b""
            finally:
                if self.returncode is None:
                    self._control.setblocking(True)
            return self._finish(message)
        return self.returncode

    def close(self) -> None:
        if self._request is not None:
            self._request.close()
            self._request = None
        if self.returncode is None:
            self._control.close()  # PID 1 kills the sandbox
            self.returncode = _SIGKILLED


# -- M, the manager ---------------------------------------------------------------------------


def _manager_main(plan: Plan, size: int, chan_fd: int, parent: int) -> None:
    import _socket
    import select

    from ..kernel import fds, prctl
    from ..plan import fresh_identifiers
    from .launcher import Launch, preload

    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        return
    os.setsid()  # the caller's terminal signals are for the caller
    prctl.set_name("rf-pool")
    fds.close_all_except({chan_fd}, start=0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    chan = _unix(_socket.SOCK_SEQPACKET, chan_fd)
    preload(plan)
    running: dict[int, Launch] = {}
    wake_r = _wake_on_sigchld()

    def start_one() -> None:
        req_mine, req_theirs = _socket.socketpair(
            _socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC
        )
        ctl_mine, ctl_theirs = _socket.socketpair(
            _socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC
        )
        launch = Launch(
            fresh_identifiers(plan),  # no machine-id shared by two runs
            stdio=(-1, -1, -1),
            pool_fds=(req_theirs.fileno(), ctl_theirs.fileno()),
        )
        try:
            launch.start()
        except RingfenceError as e:
            message = f"e{e.exit_code} {e}".encode(errors="replace")[:4000]
            chan.send(message)
            return
        finally:
            req_theirs.close()
            ctl_theirs.close()
            if launch.child_pid > 0 and launch.returncode is None:
                running[launch.child_pid] = launch
        try:
            chan.sendmsg([b"w"], _fds_cmsg([req_mine.fileno(), ctl_mine.fileno()]))
        finally:
            req_mine.close()  # the caller has them now (or nobody: the sandbox then dies)
            ctl_mine.close()

    def reap() -> None:
        while running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            launch = running.pop(pid, None)
            if launch is not None:
                launch.returncode = os.waitstatus_to_exitcode(status)
                launch.stop_helpers()

    try:
        for _ in range(size):
            start_one()
        poller = select.poll()
        poller.register(chan_fd, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        while True:
            events = poller.poll()
            reap()
            for fd, _ev in events:
                if fd == wake_r:
                    _drain(wake_r)
                    continue
                message = chan.recv(16)
                if not message:
                    return
                if message == b"r":
                    start_one()
    except OSError:
        return
    finally:
        # Kill each PID 1 (its namespace dies with it) and let C reap it: killing C too would
        # leave PID 1's zombie to the host's init.
        for launch in running.values():
            if launch.init_pid > 0:
                try:
                    os.kill(launch.init_pid, signal.SIGKILL)
                except OSError:
                    pass
        for launch in running.values():
            launch.wait()


# -- inside the sandbox -------------------------------------------------------------------------


def receive_request(request_fd: int) -> tuple[list[str], dict[int, int]]:
    """P: wait for the caller's command and fds (P is locked down already)."""
    import _socket

    sock = _unix(_socket.SOCK_STREAM, request_fd)
    try:
        data, fds = _recv_with_fds(sock, 4 + 4096, _MAX_FDS)
        if len(data) < 4:
            raise EOFError
        size = int.from_bytes(data[:4], "little")
        body = data[4:]
        while len(body) < size:
            chunk = sock.recv(min(1 << 20, size - len(body)))
            if not chunk:
                raise EOFError
            body += chunk
    finally:
        sock.detach()
    targets, _, command = body.partition(b"\n")
    argv = [os.fsdecode(a) for a in command.split(b"\0")]
    numbers = [int(t) for t in targets.split()]
    if not argv[0] or len(numbers) != len(fds):
        raise EOFError
    return argv, dict(zip(numbers, fds, strict=True))


def supervise(payload: int, control_fd: int) -> int:
    """I: wait for the payload while obeying the control socket; returns the exit code.

    Orphans are reaped as they come (SIGCHLD wakes the poll). A ``k`` or EOF on the control
    socket kills the payload (the caller timed out or went away)."""
    import select

    wake_r = _wake_on_sigchld()
    poller = select.poll()
    poller.register(control_fd, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        while True:
            try:
                child, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return _SIGKILLED
            if child == 0:
                break
            if child == payload:
                return protocol.exit_code(status)
        for fd, _ev in poller.poll():
            if fd == wake_r:
                _drain(wake_r)
                continue
            try:
                message = os.read(control_fd, 64)
            except OSError:
                message = b""
            if message[:1] == b"s" and len(message) == 2:
                try:
                    os.kill(payload, message[1])
                except OSError:
                    pass
            elif not message or message[:1] == b"k":
                os.kill(payload, signal.SIGKILL)
                poller.unregister(control_fd)
