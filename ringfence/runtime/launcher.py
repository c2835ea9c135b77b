"""The launcher: start a sandbox for a Plan and see it through.

Process tree (host PIDs on the left):

    launcher L (the caller; stays in the host namespaces: relays the pty, runs helpers)
      └─ C: becomes the user (root callers only), unshares every namespace, writes the id maps
           └─ I: PID 1 of the sandbox (runtime/init.py): builds the root, waits for "go"
                └─ P: the payload (runtime/payload.py): locks down, execs the command

Teardown: C and I have PR_SET_PDEATHSIG(SIGKILL), so if L dies (even by SIGKILL) C dies, then
I dies, and the kernel kills every process of the PID namespace. Must never leave a child
running when start() fails.
"""

from __future__ import annotations

import os

from .. import _signals as signal
from .._record import field
from .._record import record as dataclass
from ..errors import RingfenceError
from ..kernel import fds, prctl, userns
from ..plan import Plan
from . import protocol
from .init import FORWARDED


@dataclass
class Launch:
    plan: Plan
    stdio: tuple[int, int, int] = (0, 1, 2)
    tty: bool = False  # stdio includes a pty slave that must become the controlling terminal
    fd_map: dict[int, int] = field(default_factory=dict)  # extra payload fds: target -> source
    stager_fd: int = -1  # sessions: the socket end handed to the stager (runtime/stager.py)
    hold_namespaces: bool = False  # sessions: keep fds of PID 1's namespaces (for joiners)
    join_fds: tuple[tuple[str, int], ...] = ()  # enter: (namespace, fd) to setns into, in order
    pool_fds: tuple[int, int] = (-1, -1)  # warm sandboxes: request and control sockets (pool.py)
    ns_fds: list[tuple[str, int]] = field(default_factory=list)
    passwords: tuple[bytes, ...] = ()
    child_pid: int = -1
    init_pid: int = -1
    reports: list[dict[str, object]] = field(default_factory=list)
    returncode: int | None = None
    _helpers: list[object] = field(default_factory=list)

    def start(self) -> None:
        if self.plan.display is not None and self.plan.join_pid is None:
            self._start_display()
        try:
            self._start()
        except BaseException:
            if self.child_pid < 0:  # nothing forked: wait() would not stop the helpers
                self.stop_helpers()
            raise

    def _start_display(self) -> None:
        """Start the sandbox's own X server (runtime/display.py) before anything is forked, so
        its socket exists when PID 1 binds it; fill its paths into the plan's binds."""
        from .._record import replace
        from ..plan import DISPLAY_COOKIE, DISPLAY_SOCKET, Bind
        from . import display

        server = display.start(self.plan.display, user=self.plan.identity.drop_to)
        self._helpers.append(server)
        paths = {DISPLAY_SOCKET: server.socket, DISPLAY_COOKIE: server.xauthority}
        mounts = tuple(
            replace(op, src=paths[op.src]) if isinstance(op, Bind) and op.src in paths else op
            for op in self.plan.mounts
        )
        self.plan = replace(self.plan, mounts=mounts)

    def _start(self) -> None:
        plan = self.plan
        flags = 0
        for ns in plan.namespaces:
            flags |= userns.NAMESPACE_FLAGS[ns]
        preload(plan)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # C
            os.close(status_r)
            os.close(go_w)
            fdmap = {0: self.stdio[0], 1: self.stdio[1], 2: self.stdio[2], **self.fd_map}
            _child_main(
                plan,
                flags,
                parent,
                fdmap,
                status_w,
                go_r,
                self.tty,
                self.passwords,
                self.stager_fd,
                self.join_fds,
                self.pool_fds,
            )
            os._exit(2)
        self.child_pid = pid
        os.close(status_w)
        os.close(go_r)
        try:
            buf = _read_until(status_r, b"\n")
            init_pid, _, error = protocol.parse(buf)
            if error is None and init_pid is not None:
                self.init_pid = init_pid
                if self.hold_namespaces:
                    self._open_namespaces()
                self._start_helpers()
                os.write(go_w, b"g")
            os.close(go_w)
            go_w = -1
            buf += protocol.read_all(status_r)
        except BaseException:
            self.kill()
            self.wait()
            raise
        finally:
            if go_w >= 0:
                os.close(go_w)
            os.close(status_r)
        _, self.reports, error = protocol.parse(buf)
        if error is not None or self.init_pid < 0:
            self.kill()  # a session's PID 1 would otherwise hold on without its payload
            self.wait()
            self.stop_helpers()
            code, message = error or (2, "the sandbox exited before it started")
            err = RingfenceError(message)
            err.exit_code = code
            raise err

    def _open_namespaces(self) -> None:
        # Opened while PID 1 still waits for "go" (it is dumpable until then): joiners get
        # these fds from the session's keeper, since PID 1 itself will refuse ptrace access.
        for ns in ("user", "mnt", "pid", "ipc", "uts", "net", "cgroup"):
            if ns in self.plan.namespaces:
                path = f"/proc/{self.init_pid}/ns/{ns}"
                self.ns_fds.append((ns, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))

    def _start_helpers(self) -> None:
        if self.plan.join_pid is not None:
            # A joiner uses the session's network as it is, and joins its cgroup (before "go",
            # so the payload never runs outside the session's limits).
            if self.plan.cgroup is not None:
                from ..kernel import cgroup

                cgroup.follow(self.plan.join_pid, self.init_pid)
            return
        if self.plan.cgroup is not None:
            from ..kernel import cgroup

            handle = cgroup.create(self.plan.cgroup)
            self._helpers.append(handle)  # stop_helpers() removes it after the sandbox ended
            handle.add(self.init_pid)  # before "go": the payload is born inside the cgroup
        if self.plan.network == "user":
            from . import usernet

            self._helpers.append(usernet.start(self.init_pid, self.plan.usernet))

    def stop_helpers(self) -> None:
        for helper in self._helpers:
            stop = getattr(helper, "stop", None)
            if stop is not None:
                try:
                    stop()
                except Exception:
                    pass
        self._helpers.clear()

    def helper_reports(self) -> list[dict[str, object]]:
        out = []
        for helper in self._helpers:
            describe = getattr(helper, "describe", None)
            if describe is not None:
                layer = getattr(helper, "report_layer", "network")
                out.append({"layer": layer, **describe()})
        return out

    def signal(self, sig: int) -> None:
        if self.init_pid > 0 and self.returncode is None:
            try:
                os.kill(self.init_pid, sig)
            except OSError:
                pass

    def kill(self) -> None:
        if self.child_pid > 0 and self.returncode is None:
            for pid in (self.init_pid, self.child_pid):
                if pid > 0:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass

    def wait(self) -> int:
        if self.returncode is None:
            while True:
                try:
                    _, status = os.waitpid(self.child_pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    status = 0
                    break
            self.returncode = protocol.exit_code(status)
            self.stop_helpers()
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.child_pid, os.WNOHANG)
            if pid == 0:
                return None
            self.returncode = protocol.exit_code(status)
            self.stop_helpers()
        return self.returncode


def preload(plan: Plan) -> None:
    """Import everything the sandbox's processes will need, before fork.

    After pivot_root the payload may see no Python library at all (the void profile): every
    module and shared library used after that point must already be loaded.
    """
    import fcntl  # noqa: F401  (TIOCSCTTY in the payload)

    if plan.report_runtime:
        import json  # noqa: F401  (reports from the payload, after pivot_root)

    from . import init, payload  # noqa: F401

    if plan.landlock is not None and plan.landlock_ready is None:
        from ..kernel import landlock

        plan.landlock_ready = landlock.prepare(plan.landlock)
    if plan.seccomp is not None:
        from ..kernel import seccomp

        prepare = getattr(seccomp, "prepare", None)
        if prepare is not None:
            prepare(plan.seccomp)
    if plan.vaults:
        from . import vault  # noqa: F401
    if plan.session is not None:
        from . import stager  # noqa: F401


def _read_until(fd: int, marker: bytes) -> bytes:
    buf = b""
    while marker not in buf:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _child_main(
    plan: Plan,
    flags: int,
    parent: int,
    fdmap: dict[int, int],
    status_w: int,
    go_r: int,
    tty: bool,
    passwords: tuple[bytes, ...],
    stager_fd: int = -1,
    join_fds: tuple[tuple[str, int], ...] = (),
    pool_fds: tuple[int, int] = (-1, -1),
) -> None:
    """C: runs in a fork of the launcher; never returns."""
    try:
        # Drop every fd of the launcher's (pipe ends of the API, sockets, ...) but ours.
        keep = {status_w, go_r, stager_fd, *fdmap.values(), *plan.pass_fds, *_vault_fds(plan)}
        keep.update(pool_fds)
        keep |= {fd for _, fd in join_fds}
        fds.close_all_except({fd for fd in keep if fd >= 0})
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_IGN)  # L forwards them to I; C must not die of them
        # The launcher may be a pool manager with a SIGCHLD handler and a wake-up fd: that fd
        # is closed now and its number free for reuse, so no handler may write to it.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if plan.identity.drop_to is not None:
            uid, gid = plan.identity.drop_to
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            # A credential change clears "dumpable", which makes /proc/self/*_map root-owned.
            prctl.set_dumpable(True)
        prctl.set_pdeathsig(signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(2)  # the launcher already died
        if plan.join_pid is not None:
            _join(join_fds)
        else:
            uid, gid = os.geteuid(), os.getegid()
            userns.unshare(flags)
            userns.write_id_maps(uid, uid, gid, gid)
        pid = os.fork()
    except RingfenceError as e:
        protocol.send_error(status_w, e.exit_code, str(e))
        os._exit(e.exit_code)
    except BaseException as e:
        protocol.send_error(status_w, 2, f"cannot create the sandbox: {e!r}")
        os._exit(2)
    if pid == 0 and plan.join_pid is not None:  # a member joining a session: straight to P
        try:
            prctl.set_pdeathsig(signal.SIGKILL)
            if os.read(go_r, 1) != b"g":
                os._exit(2)
        except BaseException:
            os._exit(2)
        os.close(go_r)
        from .payload import exec_payload

        exec_payload(plan, fdmap, status_w, tty)
        os._exit(2)
    if pid == 0:  # I
        from .init import init_main

        init_main(plan, fdmap, status_w, go_r, tty, passwords, stager_fd, pool_fds)
        os._exit(2)
    protocol.send(status_w, "pid", str(pid))
    fds.close_all_except(set(), start=0)  # C holds nothing while it waits
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(2)
    os._exit(protocol.exit_code(status))


def _join(join_fds: tuple[tuple[str, int], ...]) -> None:
    """Enter a running session's namespaces, user namespace first (it grants the rest)."""
    from ..errors import SessionError

    if not join_fds or join_fds[0][0] != "user":
        raise SessionError("the session's keeper did not hand over its namespaces")
    for ns, fd in join_fds:
        try:
            userns.setns(fd, userns.NAMESPACE_FLAGS[ns])
        except RingfenceError as e:
            raise SessionError(f"cannot join the session's {ns} namespace: {e}") from None
        os.close(fd)


def _vault_fds(plan: Plan) -> list[int]:
    return [fd for v in plan.vaults if isinstance(fd := getattr(v, "lock_fd", None), int)]
