"""The orchestrator: run a validated void spec, one void per part and per trigger message.

Owns: creating the spec's pipes, unix socket pairs and TCP listeners, opening the files it
names (with the caller's privileges: as root, files only root can read are still passed, as
fds, to parts that run as nobody), starting a void for every startup entrypoint and for every
message a trigger receives, delivering messages (as argv, fds or stdin), releasing each fd as
soon as no future void needs it (so pipelines reach end-of-file and finish), and tearing every
void down on exit or on a signal.

Each void is a :class:`ringfence.runtime.launcher.Launch` forked from this process: the
orchestrator is their launcher, so the launcher's PDEATHSIG chain kills every part when the
orchestrator dies, even by SIGKILL.

Must never: run code from the spec in its own process (it forks launchers, nothing else), block
on a part (every fd it reads or writes is non-blocking and served by one selector loop), read a
message beyond its declared bound, keep an fd a part could use to reach what the spec did not
grant, or start a thread (PR_SET_PDEATHSIG follows the thread that forked the void).
"""

from __future__ import annotations

import errno
import os
import signal

from .._record import replace
from ..errors import RingfenceError, SandboxError
from .spec import (
    MAX_ARG_STRLEN,
    PACKET_SIZE,
    Compiled,
    Entrypoint,
    FileRef,
    Inherit,
    ListenerRef,
    MessageRef,
    Null,
    PipeRef,
    SocketRef,
    Spec,
    Text,
)

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    import selectors
    import socket
    from collections import deque

    from ..runtime.launcher import Launch
    from .spec import Arg, Stdio

# fcntl.h (linux): resize a pipe's buffer so a whole message fits in one write.
F_SETPIPE_SZ = 1031
_FILE_FLAGS = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "rw": os.O_RDWR | os.O_CREAT,
}
STOP_GRACE = 10.0  # seconds a void has to exit after the stop signal is forwarded, then SIGKILL
QUEUE_MAX = 64  # messages waiting per trigger before the orchestrator stops reading its source
_READ_CHUNK = 1 << 16
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Message:
    """One trigger message: its bytes and the fds it carried (owned until the void starts)."""

    __slots__ = ("data", "fds", "number")

    def __init__(self, data: bytes, fds: list[int], number: int) -> None:
        self.data = data
        self.fds = fds
        self.number = number

    def close(self) -> None:
        for fd in self.fds:
            _close(fd)
        self.fds = []


class _Void:
    __slots__ = ("name", "number", "launch", "pidfd", "writer")

    def __init__(self, name: str, number: int, launch: Launch, pidfd: int) -> None:
        self.name = name
        self.number = number
        self.launch = launch
        self.pidfd = pidfd
        self.writer: _Writer | None = None

    def label(self) -> str:
        return self.name if self.number == 0 else f"{self.name} #{self.number}"


class _Writer:
    """Feeds a message to a void's stdin without ever blocking the loop."""

    __slots__ = ("fd", "data", "offset")

    def __init__(self, fd: int, data: bytes) -> None:
        self.fd = fd
        self.data = memoryview(data)
        self.offset = 0

    def pump(self) -> bool:
        """Write what the pipe takes now; True when finished (all written or reader gone)."""
        while self.offset < len(self.data):
            try:
                self.offset += os.write(self.fd, self.data[self.offset : self.offset + _READ_CHUNK])
            except BlockingIOError:
                return False
            except OSError:  # EPIPE: the part stopped reading; that is its business
                return True
        return True


class _Trigger:
    """The orchestrator's end of a triggered entrypoint's pipe or socket, and its queue."""

    def __init__(self, compiled: Compiled, fd: int, sock: socket.socket | None, spec: Spec) -> None:
        from collections import deque

        self.compiled = compiled
        self.ep: Entrypoint = compiled.entrypoint
        self.fd = fd
        self.sock = sock
        name = str(self.ep.trigger.name)
        if sock is None:
            pipe = spec.pipes[name]
            self.framing = pipe.framing
            self.max_message = pipe.max_message
            self.max_fds = 0
        else:
            sdecl = spec.sockets[name]
            self.framing = "seqpacket"
            self.max_message = sdecl.max_message
            self.max_fds = sdecl.max_fds
        if any(isinstance(a, MessageRef) and a.part == "data" for a in self.ep.args):
            # A longer argv string makes execve fail with E2BIG: refuse it here instead.
            self.max_message = min(self.max_message, MAX_ARG_STRLEN - 1)
        self.what = f"{self.ep.trigger.kind} {name}"
        self.buf = bytearray()
        self.skip = 0  # bytes still to discard from an over-long message
        self.discarding = False  # line framing: dropping the rest of an over-long line
        self.queue: deque[Message] = deque()
        self.eof = False
        self.registered = False
        self.running: set[_Void] = set()
        self.count = 0

    @property
    def done(self) -> bool:
        return self.eof and not self.queue and not self.running

    def next_number(self) -> int:
        self.count += 1
        return self.count


class Orchestrator:
    """Runs one spec. ``run()`` returns the exit status: 0 when every void exited 0, else the
    status of the first that did not (128+N when the orchestrator was stopped by signal N)."""

    def __init__(
        self, spec: Spec, compiled: dict[str, Compiled], log_fd: int = 2, verbose: bool = False
    ) -> None:
        self.spec = spec
        self.compiled = compiled
        self.log_fd = log_fd
        self.verbose = verbose
        self.status = 0
        self.stop_signal = 0
        self._stop_deadline = 0.0
        self.ends: dict[tuple[str, str], int] = {}  # (entrypoint, field) -> our fd for it
        self.files: dict[tuple[str, str], int] = {}
        self.holders: dict[int, set[str]] = {}  # fd -> entrypoints that will still pass it
        self.sockets: list[socket.socket] = []
        self.listeners: dict[str, socket.socket] = {}
        self.null_fd = -1
        self.triggers: dict[str, _Trigger] = {}
        self.voids: dict[int, _Void] = {}  # pidfd -> void
        self.writers: dict[int, _Void] = {}  # stdin writer fd -> void
        self.sel: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = -1
        self._old_handlers: dict[int, object] = {}

    # -- logging -----------------------------------------------------------------------------
    def log(self, message: str) -> None:
        try:
            os.write(self.log_fd, f"ringfence void: {message}\n".encode(errors="replace"))
        except OSError:
            pass

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> int:
        # The payload's Landlock report is JSON, encoded after pivot_root where a void has no
        # Python library: load json now (runtime/launcher.preload does not, yet).
        import json  # noqa: F401
        import selectors

        from ..runtime.launcher import preload

        for c in self.compiled.values():
            preload(c.plan)  # Landlock rules resolved and seccomp built once, not per void
        self.sel = selectors.DefaultSelector()
        try:
            self._install_signals()
            self._open_resources()
            for c in self.compiled.values():
                if c.entrypoint.trigger.kind == "startup":
                    self._start(c, None)
                    self._release(c.entrypoint.name)
            self._loop()
            return 128 + self.stop_signal if self.stop_signal else self.status
        finally:
            self._teardown()

    def _loop(self) -> None:
        import time

        assert self.sel is not None
        while True:
            self._pump()
            if not self.voids and all(t.done or self.stop_signal for t in self.triggers.values()):
                return
            timeout = None
            if self.stop_signal:
                timeout = self._stop_deadline - time.monotonic()
                if timeout <= 0:  # a part ignored the signal: it does not get to stay
                    for void in self.voids.values():
                        void.launch.kill()
                    timeout = None
            for key, _mask in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "wake":
                    self._on_wake()
                elif kind == "void":
                    self._on_exit(obj)
                elif kind == "writer":
                    self._on_writable(obj)
                else:
                    self._on_readable(obj)

    # -- resources ---------------------------------------------------------------------------
    def _open_resources(self) -> None:
        import socket

        spec = self.spec
        uses = spec.endpoints()
        for name, decl in spec.pipes.items():
            flags = os.O_CLOEXEC | (os.O_DIRECT if decl.framing == "packet" else 0)
            r, w = os.pipe2(flags)
            for e in uses[("pipe", name)]:
                self._hold(e.entrypoint, e.field, r if e.end == "read" else w)
        for name in spec.sockets:
            kind = (
                socket.SOCK_SEQPACKET
                if spec.sockets[name].type == "seqpacket"
                else socket.SOCK_STREAM
            )
            pair = socket.socketpair(socket.AF_UNIX, kind)
            self.sockets.extend(pair)
            for e, s in zip(uses[("socket", name)], pair, strict=True):
                self._hold(e.entrypoint, e.field, s.fileno())
        for name, ldecl in spec.listeners.items():
            self.listeners[name] = self._listen(name, ldecl.family, ldecl.host, ldecl.port,
                                                ldecl.backlog)  # fmt: skip
        for ep in spec.entrypoints.values():
            for field, ref in _fields(ep):
                if isinstance(ref, FileRef):
                    self.files[(ep.name, field)] = self._open_file(ep, field, ref)
                    self._add_holder(self.files[(ep.name, field)], ep.name)
                elif isinstance(ref, ListenerRef):
                    self._add_holder(self.listeners[ref.name].fileno(), ep.name)
                elif isinstance(ref, Null):
                    if self.null_fd < 0:
                        self.null_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    self._add_holder(self.null_fd, ep.name)
        for c in self.compiled.values():
            t = c.entrypoint.trigger
            if t.kind == "startup":
                continue
            fd = self.ends.pop((c.entrypoint.name, "trigger"))
            self.holders.pop(fd, None)
            os.set_blocking(fd, False)
            sock = next((s for s in self.sockets if s.fileno() == fd), None)
            self.triggers[c.entrypoint.name] = _Trigger(c, fd, sock, spec)

    def _hold(self, ep: str, field: str, fd: int) -> None:
        self.ends[(ep, field)] = fd
        self._add_holder(fd, ep)

    def _add_holder(self, fd: int, ep: str) -> None:
        self.holders.setdefault(fd, set()).add(ep)

    def _release(self, ep: str) -> None:
        """``ep`` will start no more voids: close every fd nobody else will pass on."""
        for fd, names in list(self.holders.items()):
            names.discard(ep)
            if not names:
                del self.holders[fd]
                self._close_resource(fd)

    def _close_resource(self, fd: int) -> None:
        for s in self.sockets:
            if s.fileno() == fd:
                s.close()
                return
        for lsock in self.listeners.values():
            if lsock.fileno() == fd:
                lsock.close()
                return
        if fd == self.null_fd:
            self.null_fd = -1
        _close(fd)

    def _listen(self, name: str, family: int, host: str, port: int, backlog: int) -> socket.socket:
        import socket

        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
            s.listen(backlog)
        except OSError as e:
            s.close()
            where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            hint = "ports below 1024 need root" if e.errno == errno.EACCES else None
            raise SandboxError(f"listener {name!r}: cannot listen on {where}: {e.strerror}",
                               hint) from None  # fmt: skip
        addr = s.getsockname()
        shown = f"[{addr[0]}]:{addr[1]}" if family == socket.AF_INET6 else f"{addr[0]}:{addr[1]}"
        self.log(f"listener {name} on {shown}")
        return s

    def _open_file(self, ep: Entrypoint, field: str, ref: FileRef) -> int:
        try:
            return os.open(ref.path, _FILE_FLAGS[ref.mode] | os.O_CLOEXEC | os.O_NOCTTY, 0o600)
        except OSError as e:
            raise SandboxError(
                f"entrypoint {ep.name!r}, field {field}: cannot open {ref.path} (mode "
                f"{ref.mode}): {e.strerror}"
            ) from None

    def _reopen(self, fd: int, mode: str) -> int:
        """A fresh open file description of the same inode (its own offset), without a path
        lookup a part could redirect with a symlink."""
        flags = _FILE_FLAGS[mode] & ~(os.O_CREAT | os.O_TRUNC)
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC | os.O_NOCTTY)

    # -- starting voids ----------------------------------------------------------------------
    def _start(self, c: Compiled, msg: Message | None) -> _Void:
        from ..runtime.launcher import Launch

        ep = c.entrypoint
        temps: list[int] = []
        writer: _Writer | None = None
        try:
            fd_map: dict[int, int] = {}
            next_static, next_fd = 3, 3 + len(ep.fd_args())  # message fds after static ones
            argv = [ep.binary]
            for i, arg in enumerate(ep.args):
                if isinstance(arg, Text):
                    argv.append(arg.value)
                elif isinstance(arg, MessageRef):
                    assert msg is not None
                    if arg.part == "data":
                        argv.append(os.fsdecode(self._as_argv(ep, msg.data)))
                    else:
                        for fd in msg.fds:
                            fd_map[next_fd] = fd
                            argv.append(str(next_fd))
                            next_fd += 1
                else:
                    fd_map[next_static] = self._fd_for(ep, f"args[{i}]", arg, temps)
                    argv.append(str(next_static))
                    next_static += 1
            stdio: list[int] = []
            for n, field in enumerate(("stdin", "stdout", "stderr")):
                ref: Stdio = getattr(ep, field)
                if isinstance(ref, MessageRef):
                    assert msg is not None
                    r, w = os.pipe2(os.O_CLOEXEC)
                    temps.append(r)
                    writer = _Writer(w, msg.data)
                    _grow_pipe(w, len(msg.data))
                    os.set_blocking(w, False)
                    stdio.append(r)
                else:
                    stdio.append(
                        n if isinstance(ref, Inherit) else self._fd_for(ep, field, ref, temps)
                    )
            plan = replace(c.plan, argv=tuple(argv))
            launch = Launch(plan, stdio=(stdio[0], stdio[1], stdio[2]), fd_map=fd_map)
            try:
                launch.start()
            except RingfenceError as e:
                err = SandboxError(f"entrypoint {ep.name!r}: {e}")
                err.exit_code = e.exit_code
                raise err from None
        except BaseException:
            if writer is not None:
                _close(writer.fd)
            raise
        finally:
            for fd in temps:
                _close(fd)
            if msg is not None:
                msg.close()
        number = msg.number if msg is not None else 0
        void = _Void(ep.name, number, launch, os.pidfd_open(launch.child_pid))
        self.voids[void.pidfd] = void
        assert self.sel is not None
        self.sel.register(void.pidfd, _READ, ("void", void))
        if writer is not None:
            if writer.pump():
                _close(writer.fd)
            else:
                void.writer = writer
                self.writers[writer.fd] = void
                self.sel.register(writer.fd, _WRITE, ("writer", void))
        if self.verbose:
            self.log(f"started {void.label()} (sandbox pid {launch.init_pid})")
        return void

    def _as_argv(self, ep: Entrypoint, data: bytes) -> bytes:
        """A line's newline belongs to the stream, not to an argv string: leave it out there."""
        t = ep.trigger
        if t.kind == "pipe" and self.spec.pipes[str(t.name)].framing == "line":
            return data[:-1] if data.endswith(b"\n") else data
        return data

    def _fd_for(self, ep: Entrypoint, field: str, ref: Arg | Stdio, temps: list[int]) -> int:
        if isinstance(ref, FileRef):
            fd = self.files[(ep.name, field)]
            if ep.trigger.kind == "startup":
                return fd
            new = self._reopen(fd, ref.mode)
            temps.append(new)
            return new
        if isinstance(ref, (PipeRef, SocketRef)):
            return self.ends[(ep.name, field)]
        if isinstance(ref, ListenerRef):
            return self.listeners[ref.name].fileno()
        if isinstance(ref, Null):
            return self.null_fd
        raise AssertionError(f"no fd for {ref!r}")

    # -- the loop's work ---------------------------------------------------------------------
    def _pump(self) -> None:
        """Start queued messages where a trigger has room; read sources that are not full."""
        assert self.sel is not None
        for name, t in list(self.triggers.items()):
            while t.queue and len(t.running) < t.ep.parallel and not self.stop_signal:
                t.running.add(self._start(t.compiled, t.queue.popleft()))
            want = not t.eof and len(t.queue) < QUEUE_MAX and not self.stop_signal
            if want and not t.registered:
                self.sel.register(t.fd, _READ, ("trigger", t))
                t.registered = True
            elif not want and t.registered:
                self.sel.unregister(t.fd)
                t.registered = False
            if t.eof and not t.running and not t.queue and t.fd >= 0:
                self._close_trigger(t)
                self._release(name)

    def _close_trigger(self, t: _Trigger) -> None:
        if t.registered:
            assert self.sel is not None
            self.sel.unregister(t.fd)
            t.registered = False
        if t.sock is not None:
            t.sock.close()
        else:
            _close(t.fd)
        t.fd = -1
        for msg in t.queue:
            msg.close()
        t.queue.clear()
        t.eof = True

    def _on_readable(self, t: _Trigger) -> None:
        if t.sock is not None:
            self._read_socket(t)
        else:
            self._read_pipe(t)

    def _read_pipe(self, t: _Trigger) -> None:
        size = PACKET_SIZE if t.framing == "packet" else _READ_CHUNK
        try:
            chunk = os.read(t.fd, size)
        except BlockingIOError:
            return
        except OSError as e:
            self.log(f"{t.what}: read failed ({e.strerror}); no more messages")
            chunk = b""
        if not chunk:
            t.eof = True
            if t.framing == "line" and t.buf and not t.discarding:
                self._queue(t, bytes(t.buf))
            elif t.framing == "length" and (t.buf or t.skip):
                self.log(f"{t.what}: the writer stopped in the middle of a message; dropped")
            t.buf.clear()
            return
        if t.framing == "packet":
            self._queue(t, chunk)
        elif t.framing == "line":
            self._split_lines(t, chunk)
        else:
            self._split_lengths(t, chunk)

    def _split_lines(self, t: _Trigger, chunk: bytes) -> None:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if t.discarding:
                t.discarding = False
            else:
                t.buf += chunk[start : end + 1]
                if len(t.buf) <= t.max_message:
                    self._queue(t, bytes(t.buf))
                else:
                    self._too_long(t, len(t.buf))
            t.buf.clear()
            start = end + 1
        if not t.discarding:
            t.buf += chunk[start:]
            if len(t.buf) > t.max_message:
                self._too_long(t, len(t.buf))
                t.buf.clear()
                t.discarding = True

    def _split_lengths(self, t: _Trigger, chunk: bytes) -> None:
        view = memoryview(chunk)
        if t.skip:
            n = min(t.skip, len(view))
            t.skip -= n
            view = view[n:]
        t.buf += view
        while len(t.buf) >= 4:
            size = int.from_bytes(t.buf[:4], "big")
            if size > t.max_message:
                self._too_long(t, size)
                dropped = min(size, len(t.buf) - 4)
                t.skip = size - dropped
                del t.buf[: 4 + dropped]
                continue
            if len(t.buf) < 4 + size:
                break
            self._queue(t, bytes(t.buf[4 : 4 + size]))
            del t.buf[: 4 + size]

    def _read_socket(self, t: _Trigger) -> None:
        import array
        import socket

        assert t.sock is not None
        anc = socket.CMSG_SPACE(t.max_fds * 4) if t.max_fds else 0
        try:
            data, ancdata, flags, _ = t.sock.recvmsg(t.max_message, anc, socket.MSG_CMSG_CLOEXEC)
        except BlockingIOError:
            return
        except OSError as e:
            self.log(f"{t.what}: receive failed ({e.strerror}); no more messages")
            t.eof = True
            return
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                ints = array.array("i")
                ints.frombytes(payload[: len(payload) - len(payload) % ints.itemsize])
                fds.extend(ints)
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                _close(fd)
            why = "more than max_fds fds" if flags & socket.MSG_CTRUNC else "too long"
            self.log(f"{t.what}: message {why}; dropped")
            return
        if not data and not fds:
            # The peer closed its end (a message with neither bytes nor fds also ends it).
            t.eof = True
            return
        self._queue(t, data, fds)

    def _queue(self, t: _Trigger, data: bytes, fds: list[int] | None = None) -> None:
        if b"\0" in data and any(isinstance(a, MessageRef) and a.part == "data" for a in t.ep.args):
            self.log(f"{t.what}: a message with a NUL byte cannot be an argv string; dropped")
            for fd in fds or []:
                _close(fd)
            return
        t.queue.append(Message(data, fds or [], t.next_number()))

    def _too_long(self, t: _Trigger, size: int) -> None:
        self.log(f"{t.what}: message of {size} bytes is longer than max_message "
                 f"({t.max_message}); dropped")  # fmt: skip

    def _on_writable(self, void: _Void) -> None:
        w = void.writer
        if w is not None and w.pump():
            self._drop_writer(void)

    def _drop_writer(self, void: _Void) -> None:
        w = void.writer
        if w is None:
            return
        assert self.sel is not None
        self.sel.unregister(w.fd)
        self.writers.pop(w.fd, None)
        _close(w.fd)
        void.writer = None

    def _on_exit(self, void: _Void) -> None:
        code = void.launch.poll()
        if code is None:
            return
        assert self.sel is not None
        self.sel.unregister(void.pidfd)
        _close(void.pidfd)
        del self.voids[void.pidfd]
        self._drop_writer(void)
        t = self.triggers.get(void.name)
        if t is not None:
            t.running.discard(void)
        if code != 0:
            if not self.stop_signal:
                self.log(f"{void.label()} exited with status {code}")
            if self.status == 0:
                self.status = code
        elif self.verbose:
            self.log(f"{void.label()} exited with status 0")

    # -- signals and teardown ----------------------------------------------------------------
    def _install_signals(self) -> None:
        assert self.sel is not None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.sel.register(self._wake_r, _READ, ("wake", None))
        wake = self._wake_w

        def note(sig: int, _frame: object) -> None:
            # A Python-level handler, not signal.set_wakeup_fd: that one is C-level state the
            # forked launchers would inherit and write to whatever reuses the fd number.
            try:
                os.write(wake, bytes((sig,)))
            except OSError:
                pass

        for sig in _STOP_SIGNALS:
            self._old_handlers[sig] = signal.signal(sig, note)

    def _on_wake(self) -> None:
        try:
            data = os.read(self._wake_r, 64)
        except BlockingIOError:
            return
        for sig in data:
            if sig not in _STOP_SIGNALS:
                continue
            if self.stop_signal:  # a second signal: no more waiting
                for void in self.voids.values():
                    void.launch.kill()
                continue
            import time

            self.stop_signal = sig
            self._stop_deadline = time.monotonic() + STOP_GRACE
            for t in self.triggers.values():
                if t.fd >= 0:
                    self._close_trigger(t)
            for void in self.voids.values():
                void.launch.signal(sig)

    def _teardown(self) -> None:
        for void in list(self.voids.values()):
            void.launch.kill()
            void.launch.wait()
            _close(void.pidfd)
            if void.writer is not None:
                _close(void.writer.fd)
        self.voids.clear()
        for t in self.triggers.values():
            if t.fd >= 0:
                if t.registered and self.sel is not None:
                    self.sel.unregister(t.fd)
                    t.registered = False
                if t.sock is not None:
                    t.sock.close()
                else:
                    _close(t.fd)
                t.fd = -1
            for msg in t.queue:
                msg.close()
        for fd in list(self.holders):
            self._close_resource(fd)
        self.holders.clear()
        for s in (*self.sockets, *self.listeners.values()):
            s.close()
        if self.null_fd >= 0:
            _close(self.null_fd)
        if self._wake_w >= 0:
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
            _close(self._wake_r)
            _close(self._wake_w)
            self._wake_r = self._wake_w = -1
        if self.sel is not None:
            self.sel.close()


_READ = 1  # selectors.EVENT_READ
_WRITE = 2  # selectors.EVENT_WRITE


def _fields(ep: Entrypoint) -> list[tuple[str, Arg | Stdio]]:
    out: list[tuple[str, Arg | Stdio]] = [(f"args[{i}]", a) for i, a in enumerate(ep.args)]
    return out + [("stdin", ep.stdin), ("stdout", ep.stdout), ("stderr", ep.stderr)]


def _grow_pipe(fd: int, size: int) -> None:
    if size <= 65536:
        return
    import fcntl

    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, min(size, 1 << 20))
    except OSError:
        pass  # over the per-user pipe budget: the loop writes it in pieces instead


def _close(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def run_spec(
    spec: Spec, compiled: dict[str, Compiled], log_fd: int = 2, verbose: bool = False
) -> int:
    """Run a validated, compiled spec to the end; the exit status as :meth:`Orchestrator.run`."""
    return Orchestrator(spec, compiled, log_fd=log_fd, verbose=verbose).run()
