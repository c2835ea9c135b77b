"""The payload's last steps: lock the process down and execve the command.

Runs in the child of the sandbox's PID 1, inside the new root. Order matters and is fixed:
session/terminal, fds, cwd, rlimits, keyring, signal dispositions, capabilities (all sets
emptied, securebits locked), no_new_privs, Landlock, seccomp (last, so it may forbid what the
steps before needed), execve. Must never return: it execs or ``_exit``s.
"""

from __future__ import annotations

import os

from .. import _signals as signal
from ..errors import CommandNotExecutable, CommandNotFound, RingfenceError
from ..kernel import caps, fds, keyring, prctl, rlimit
from ..plan import Plan
from . import protocol

TIOCSCTTY = 0x540E  # asm-generic/ioctls.h


def arrange_fds(fdmap: dict[int, int], keep: set[int]) -> None:
    """dup2 each source fd to its target number (0, 1, 2 and any extra) without clobbering a
    source on the way; a source of -1 means the target is closed."""
    base = max([*fdmap, *fdmap.values(), *keep, 2]) + 1
    high = {
        t: (os.dup2(src, base + i, inheritable=False) if src >= 0 else -1)
        for i, (t, src) in enumerate(sorted(fdmap.items()))
    }
    for target, fd in high.items():
        if fd >= 0:
            os.dup2(fd, target, inheritable=True)
        else:
            try:
                os.close(target)
            except OSError:
                pass
    for fd in high.values():
        if fd >= 0:
            os.close(fd)


def exec_payload(plan: Plan, fdmap: dict[int, int], status_fd: int, tty: bool) -> None:
    try:
        _lock_down(plan, fdmap, status_fd, tty)
        _exec(plan, status_fd)
    except RingfenceError as e:
        protocol.send_error(status_fd, e.exit_code, str(e))
        os._exit(e.exit_code)
    except BaseException as e:  # never let Python unwind into the launcher's code
        protocol.send_error(status_fd, 2, f"payload setup failed: {e!r}")
        os._exit(2)


def exec_pooled(plan: Plan, request_fd: int, status_fd: int) -> None:
    """A warm sandbox's payload (runtime/pool.py): lock down completely, report ready by closing
    the status pipe, then wait for the command and its fds, and execute it."""
    try:
        _lock_down(plan, {}, status_fd, False, keep_open={request_fd})
    except RingfenceError as e:
        protocol.send_error(status_fd, e.exit_code, str(e))
        os._exit(e.exit_code)
    except BaseException as e:
        protocol.send_error(status_fd, 2, f"payload setup failed: {e!r}")
        os._exit(2)
    os.close(status_fd)  # the launcher's EOF: this sandbox is warm
    try:
        from .pool import receive_request

        argv, fdmap = receive_request(request_fd)
    except BaseException:
        os._exit(2)  # the caller went away (or sent nonsense): nothing to run
    try:
        if request_fd in fdmap:  # a target number: move the socket out of the way
            moved = os.dup2(request_fd, max([*fdmap, *fdmap.values()]) + 1, inheritable=False)
            os.close(request_fd)
            request_fd = moved
        arrange_fds(fdmap, {request_fd})
        targets = set(fdmap)
        for fd in fdmap.values():
            if fd not in targets:
                os.close(fd)
        for fd in targets:
            os.set_inheritable(fd, True)
        _exec(plan, request_fd, argv)
    except RingfenceError as e:
        protocol.send_error(request_fd, e.exit_code, str(e))
        os._exit(e.exit_code)
    except BaseException as e:
        protocol.send_error(request_fd, 2, f"payload setup failed: {e!r}")
        os._exit(2)


def _lock_down(
    plan: Plan,
    fdmap: dict[int, int],
    status_fd: int,
    tty: bool,
    keep_open: set[int] | None = None,
) -> None:
    os.setsid()
    if status_fd in fdmap:  # a target number wanted by the spec: move our pipe out of the way
        status_fd = os.dup2(
            status_fd, max([*fdmap, *fdmap.values(), *plan.pass_fds]) + 1, inheritable=False
        )
    if keep_open is not None:  # a warm sandbox: its fds come later, through the request socket
        fds.close_all_except({status_fd, *keep_open}, start=0)
    else:
        keep = set(plan.pass_fds) | {status_fd}
        arrange_fds(fdmap, keep)
        keep |= set(fdmap)
        if tty:
            import fcntl

            fcntl.ioctl(0, TIOCSCTTY, 0)
        fds.close_all_except(keep)
        for fd in (*plan.pass_fds, *fdmap):
            os.set_inheritable(fd, True)
    try:
        os.chdir(plan.cwd)
    except OSError as e:
        raise RingfenceError(
            f"working directory {plan.cwd}: {e.strerror} inside the sandbox "
            "(bind it or choose another with --chdir)"
        ) from None
    rlimit.apply(plan.limits)
    if plan.keyring_private:
        keyring.join_new_session_keyring()
    # execve resets caught signals itself; only ignored ones (SIGPIPE, those the launcher's
    # child ignored) would leak into the command, so only those need a sigaction.
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if signal.getsignal(sig) != signal.SIG_DFL:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    _reset_reserved_signals()
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    caps.drop_all(plan.cap_last)
    prctl.set_no_new_privs()
    caps.verify_dropped()
    if plan.landlock is not None:
        from ..kernel import landlock

        result = landlock.apply(plan.landlock_ready or plan.landlock)
        if plan.report_runtime:
            protocol.send_report(status_fd, "landlock", result.as_dict())
    if plan.seccomp is not None:
        from ..kernel import seccomp

        seccomp.install(plan.seccomp)


def _reset_reserved_signals() -> None:
    """glibc keeps signals 32 and 33 for itself and refuses sigaction on them, so an ignored
    disposition inherited from the caller would survive into the command: reset them with the
    raw syscall. (x86-64 struct kernel_sigaction: handler, flags, restorer, mask.)"""
    import ctypes

    from ..kernel._syscall import ARCH, syscall

    if ARCH != "x86_64":
        return
    action = (ctypes.c_ulong * 4)(0, 0, 0, 0)  # SIG_DFL, no flags, no restorer, empty mask
    for sig in (32, 33):
        try:
            syscall("rt_sigaction", sig, ctypes.byref(action), None, 8)
        except RingfenceError:
            pass


def _exec(plan: Plan, status_fd: int, argv: list[str] | None = None) -> None:
    argv = list(plan.argv) if argv is None else argv
    try:
        os.execvpe(argv[0], argv, plan.env)
    except FileNotFoundError:
        e: RingfenceError = CommandNotFound(
            f"{argv[0]}: command not found inside the sandbox "
            "(is it bound in? see `ringfence plan`)"
        )
    except PermissionError:
        e = CommandNotExecutable(f"{argv[0]}: permission denied inside the sandbox")
    except OSError as err:
        e = CommandNotExecutable(f"{argv[0]}: cannot execute: {err.strerror}")
    protocol.send_error(status_fd, e.exit_code, str(e))
    os._exit(e.exit_code)
