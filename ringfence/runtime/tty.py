"""Interactive runs: a fresh pseudo-terminal for the payload, relayed by the launcher.

The payload never gets the caller's terminal (TIOCSTI and friends would act on it); it gets
the slave side of a new pty as its controlling terminal, and the launcher copies bytes between
the caller's terminal (in raw mode) and the master side, and forwards window-size changes.
Must never leave the caller's terminal in raw mode, whatever happens.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import termios
import tty as _tty
from types import FrameType

from .. import _signals as signal

TIOCGWINSZ = termios.TIOCGWINSZ
TIOCSWINSZ = termios.TIOCSWINSZ


def open_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    return master, slave


def copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, TIOCSWINSZ, size)
    except OSError:
        pass


def relay(master: int, in_fd: int, out_fd: int) -> None:
    """Copy in_fd -> master and master -> out_fd until the payload side closes."""
    saved = None
    if os.isatty(in_fd):
        saved = termios.tcgetattr(in_fd)
        _tty.setraw(in_fd)
        copy_winsize(in_fd, master)
    previous = signal.getsignal(signal.SIGWINCH)

    def on_winch(sig: int, frame: FrameType | None) -> None:
        copy_winsize(in_fd, master)
        if callable(previous):
            previous(sig, frame)

    signal.signal(signal.SIGWINCH, on_winch)
    reading = [master, in_fd]
    try:
        while True:
            try:
                ready, _, _ = select.select(reading, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:
                        break
                    raise
                if not data:
                    break
                _write_all(out_fd, data)
            if in_fd in ready:
                data = os.read(in_fd, 65536)
                if not data:
                    reading.remove(in_fd)
                    _write_all(master, b"\x04")  # EOF on the caller's side: send ^D
                else:
                    _write_all(master, data)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved is not None:
            termios.tcsetattr(in_fd, termios.TCSAFLUSH, saved)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno == errno.EIO:
                return
            raise
        data = data[n:]
