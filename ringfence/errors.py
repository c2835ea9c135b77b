"""The one exception hierarchy of ringfence.

Every error a user can cause or meet carries a message that names the cause and, where there
is one, the fix. The CLI prints ``ringfence: <message>`` on one line and exits with
``exit_code``; it never shows a traceback for a RingfenceError.

This module must stay import-free (it is on the CLI's hot path).
"""

from __future__ import annotations

import errno as _errno
import os as _os


class RingfenceError(Exception):
    """Base class. ``str(err)`` is the one line shown to the user."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class ProfileError(RingfenceError):
    """A profile or a command-line option is invalid (unknown key, bad value, missing path)."""


class SpecError(RingfenceError):
    """A void spec is invalid; the message names the entrypoint and the field."""


class MissingToolError(RingfenceError):
    """An external program ringfence relies on (gocryptfs, pasta, ...) is not installed."""


class UnsupportedError(RingfenceError):
    """The kernel or the host does not offer a feature that the profile requires."""


class SandboxError(RingfenceError):
    """Setting up or running the sandbox failed at run time."""


class SessionError(RingfenceError):
    """A named session does not exist, is stale, or cannot be joined."""


class KernelError(RingfenceError):
    """A syscall failed. Carries the syscall name and errno so the message can say which."""

    def __init__(self, syscall: str, err: int, detail: str = "", hint: str | None = None) -> None:
        self.syscall = syscall
        self.errno = err
        name = _errno.errorcode.get(err, str(err))
        what = f"{syscall}({detail})" if detail else syscall
        super().__init__(f"{what} failed: {name} ({_os.strerror(err)})", hint)


class CommandNotFound(RingfenceError):
    """The payload's command does not exist inside the sandbox: exit 127 like a shell."""

    exit_code = 127


class CommandNotExecutable(RingfenceError):
    """The payload's command exists inside the sandbox but cannot be executed: exit 126."""

    exit_code = 126
