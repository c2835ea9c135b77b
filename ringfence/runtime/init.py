"""The sandbox's PID 1: build the root, start the payload, reap, forward signals, clean up.

Runs as PID 1 of the new PID namespace with full capabilities in the new user namespace until
the payload is started; then it drops every capability and becomes non-dumpable, so the payload
cannot use it as a stepping stone. It forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2/
SIGWINCH to the payload, reaps every orphan, and when the payload exits kills whatever is left
(kill(-1) from PID 1 reaches the whole namespace) and exits with the payload's status (128+N on
signal N). Must never return: it ``_exit``s.
"""

from __future__ import annotations

import errno
import os

from .. import _signals as signal
from ..errors import RingfenceError, SandboxError
from ..kernel import caps, fds, net, prctl
from ..kernel import mount as m
from ..plan import Bind, Dev, Plan
from . import protocol
from .mounts import RootBuilder

STOP_GRACE = 5  # seconds between SIGTERM and SIGKILL when a session stops

FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def init_main(
    plan: Plan,
    fdmap: dict[int, int],
    status_fd: int,
    go_fd: int,
    tty: bool,
    passwords: tuple[bytes, ...] = (),
    stager_fd: int = -1,
    pool_fds: tuple[int, int] = (-1, -1),
) -> None:
    try:
        _setup(plan, fdmap, status_fd, go_fd, passwords, stager_fd, tty, pool_fds)
    except RingfenceError as e:
        protocol.send_error(status_fd, e.exit_code, str(e))
        os._exit(e.exit_code)
    except BaseException as e:
        protocol.send_error(status_fd, 2, f"sandbox setup failed: {e!r}")
        os._exit(2)
    _supervise(plan, fdmap, status_fd, go_fd, tty, pool_fds)


def _setup(
    plan: Plan,
    fdmap: dict[int, int],
    status_fd: int,
    go_fd: int,
    passwords: tuple[bytes, ...],
    stager_fd: int,
    tty: bool = False,
    pool_fds: tuple[int, int] = (-1, -1),
) -> None:
    prctl.set_pdeathsig(signal.SIGKILL)
    prctl.set_name("rf-init")
    for sig in FORWARDED:  # C ignored them (the launcher forwards); our children must not
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()
    keep = {status_fd, go_fd, stager_fd, *fdmap.values(), *plan.pass_fds, *pool_fds}
    for v in plan.vaults:
        lock = getattr(v, "lock_fd", None)
        if isinstance(lock, int) and lock >= 0:
            keep.add(lock)
    fds.close_all_except({fd for fd in keep if fd >= 0})
    from ..kernel._syscall import libc

    name = plan.hostname.encode()
    if libc.sethostname(name, len(name)) == -1:
        import ctypes

        from ..errors import KernelError

        raise KernelError("sethostname", ctypes.get_errno(), plan.hostname)
    if "net" in plan.namespaces:
        net.bring_up("lo")
    # The payload's terminal (a pty of the host's devpts) shows up as /dev/console, as in
    # bubblewrap: ttyname() then finds it by device number in our private /dev.
    console = None
    if tty and any(isinstance(op, Dev) and op.dest == "/dev" for op in plan.mounts):
        try:
            console = os.readlink(f"/proc/self/fd/{fdmap[0]}")
        except OSError:
            console = None
    builder = RootBuilder()
    builder.prepare()
    for op in plan.mounts:
        builder.apply(op)
    if console and console.startswith("/dev/pts/"):
        builder.apply(Bind(console, "/dev/console", readonly=False, device=True, why="terminal"))
    if plan.vaults:
        from . import vault

        for spec, password in zip(plan.vaults, passwords, strict=True):
            target = builder.target(spec.mountpoint)
            os.makedirs(target, exist_ok=True)
            vault.mount_in_namespace(spec, target, password, host_root="/oldroot")
    if plan.add_dir and stager_fd >= 0:
        from .stager import stager_main

        zone = builder.target(plan.add_dir)
        m.mount(None, zone, None, m.MS_SHARED)  # the stager's copy will be its peer
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        if os.fork() == 0:
            os.close(status_fd)
            os.close(go_fd)
            os.close(ready_r)
            stager_main(stager_fd, zone, ready_w)
            os._exit(0)
        os.close(stager_fd)
        os.close(ready_w)
        # The stager must copy this mount namespace before the host tree is detached.
        if os.read(ready_r, 1) != b"r":
            raise SandboxError("the session's stager failed to start")
        os.close(ready_r)
    builder.enter()


def _supervise(
    plan: Plan,
    fdmap: dict[int, int],
    status_fd: int,
    go_fd: int,
    tty: bool,
    pool_fds: tuple[int, int] = (-1, -1),
) -> None:
    # Wait until the launcher has finished its side (network helper, cgroup): "g" means go.
    try:
        go = os.read(go_fd, 1)
    except OSError:
        go = b""
    if go != b"g":
        os._exit(2)
    os.close(go_fd)
    if plan.cgroup is not None and "cgroup" in plan.namespaces:
        # Now that the launcher has put us in the sandbox's cgroup, root our cgroup namespace
        # there: the payload sees neither the host's cgroup path nor anything above its own.
        from ..kernel import userns

        userns.unshare(userns.CLONE_NEWCGROUP)
    request_fd, control_fd = pool_fds
    pid = os.fork() if plan.argv else -1
    if pid == 0:
        if control_fd >= 0:
            os.close(control_fd)
            from .payload import exec_pooled

            exec_pooled(plan, request_fd, status_fd)
        from .payload import exec_payload

        exec_payload(plan, fdmap, status_fd, tty)
        os._exit(2)  # not reached
    if request_fd >= 0:
        os.close(request_fd)
    os.close(status_fd)
    for fd in set(fdmap.values()):
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
    if plan.session is not None:
        _hold_session(plan)
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _forward(pid, s))
    try:
        prctl.set_dumpable(False)
        caps.drop_all(plan.cap_last)
        prctl.set_no_new_privs()
    except RingfenceError:
        pass  # PID 1 keeps running the payload either way; it never execs anything
    if control_fd >= 0:  # a warm sandbox also obeys its caller's control socket
        from .pool import supervise

        code = supervise(pid, control_fd)
    else:
        code = _reap_until(pid)
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except OSError as e:
            if e.errno != errno.EINTR:
                break
    if control_fd >= 0:
        try:
            os.write(control_fd, b"x%d" % code)  # only now: the namespace is empty
        except OSError:
            pass
    os._exit(code)


def _reap_until(payload: int) -> int:
    """Reap every child until the payload exits; its exit code (128+N on signal N)."""
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 2
        if child == payload:
            return protocol.exit_code(status)


def _hold_session(plan: Plan) -> None:
    """A named session's PID 1: reap everything until asked to stop (SIGTERM/SIGINT/SIGHUP),
    then pass SIGTERM to every process of the namespace and leave once they are gone."""
    stopping = False

    def stop(_s: int, _f: object) -> None:
        nonlocal stopping
        if not stopping:
            signal.alarm(STOP_GRACE)  # then SIGKILL whatever ignored SIGTERM
        stopping = True
        try:
            os.kill(-1, signal.SIGTERM)
        except OSError:
            pass

    def kill_all(_s: int, _f: object) -> None:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(signal.SIGALRM, kill_all)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        prctl.set_dumpable(False)
        caps.drop_all(plan.cap_last)
        prctl.set_no_new_privs()
    except RingfenceError:
        pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            if stopping:
                os._exit(0)
            # Nothing to reap yet: wait for an orphan (SIGCHLD) or a stop request.
            signal.sigtimedwait({signal.SIGCHLD}, 1.0)
        except InterruptedError:
            continue


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass
