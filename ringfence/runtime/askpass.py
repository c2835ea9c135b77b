"""Reading a secret (a vault password) on the host side, before any sandbox exists.

Owns: the three password sources — an askpass program (like ``gocryptfs -extpass``), a
password file, the controlling terminal with echo off — and the checks every password must pass
(one line, not empty, at most 2048 bytes like gocryptfs).

Must never put a password in argv or in an environment, never log or print it, never fall back
from the terminal to stdin (stdin may belong to the payload), and never be called inside a
sandbox: it runs in the launcher and the bytes reach the sandbox in memory (fork).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import MissingToolError, ProfileError, SandboxError

# gocryptfs internal/readpassword: maxPasswordLen.
MAX_PASSWORD_BYTES = 2048

# Where the prompt text goes for an askpass program (it gets no arguments, like -extpass).
PROMPT_ENV = "RINGFENCE_ASKPASS_PROMPT"

TTY_DEVICE = "/dev/tty"


@dataclass(frozen=True)
class PasswordSource:
    """Where a password comes from: ``askpass`` program, ``passfile``, or (neither) the tty."""

    askpass: str | None = None
    passfile: str | None = None

    def __post_init__(self) -> None:
        if self.askpass is not None and self.passfile is not None:
            raise ProfileError("--askpass and --passfile exclude each other; give one of them")
        if self.askpass is not None and not self.askpass.strip():
            raise ProfileError("--askpass needs a program")
        if self.passfile is not None and not self.passfile:
            raise ProfileError("--passfile needs a file name")

    @property
    def kind(self) -> str:
        if self.askpass is not None:
            return "askpass"
        if self.passfile is not None:
            return "passfile"
        return "terminal"


def read_password(
    source: PasswordSource, prompt: str = "Password: ", *, confirm: bool = False
) -> bytes:
    """Return the password (without its newline) from ``source``.

    ``confirm`` asks twice on a terminal (for creating a vault); files and askpass programs are
    trusted to give what the user meant.
    """
    if source.askpass is not None:
        return _from_askpass(source.askpass, prompt)
    if source.passfile is not None:
        return _from_passfile(source.passfile)
    first = _from_terminal(prompt)
    if confirm:
        again = _from_terminal("Repeat: ")
        if again != first:
            raise SandboxError("the two passwords differ; nothing was changed, try again")
    return first


def check_password(data: bytes, origin: str) -> bytes:
    """Validate ``data`` as one password line; ``origin`` names where it came from."""
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise SandboxError(f"{origin} gave an empty password")
    if b"\n" in data or b"\0" in data:
        raise SandboxError(f"{origin}: a password must be one line without NUL bytes")
    if len(data) > MAX_PASSWORD_BYTES:
        raise SandboxError(
            f"{origin}: the password is longer than {MAX_PASSWORD_BYTES} bytes (gocryptfs' limit)"
        )
    return data


def _first_line(data: bytes) -> bytes:
    # Like gocryptfs -passfile/-extpass: the first line is the password, a newline ends it.
    line, nl, _rest = data.partition(b"\n")
    return line + nl


def _from_passfile(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ProfileError(f"--passfile {path}: no such file") from None
    except OSError as e:
        raise ProfileError(f"--passfile {path}: cannot open it ({e.strerror})") from None
    try:
        data = os.read(fd, MAX_PASSWORD_BYTES + 3)
    except OSError as e:
        raise ProfileError(f"--passfile {path}: cannot read it ({e.strerror})") from None
    finally:
        os.close(fd)
    return check_password(_first_line(data), f"--passfile {path}")


def _from_askpass(command: str, prompt: str) -> bytes:
    import shlex
    import subprocess

    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise ProfileError(f"--askpass {command!r}: {e}") from None
    if not argv:
        raise ProfileError("--askpass needs a program")
    env = dict(os.environ)
    env[PROMPT_ENV] = prompt
    try:
        # stdin and stderr stay the caller's so a terminal askpass can talk to the user.
        proc = subprocess.run(argv, stdout=subprocess.PIPE, env=env, check=False)
    except FileNotFoundError:
        raise MissingToolError(
            f"--askpass program {argv[0]!r} not found; give its full path"
        ) from None
    except PermissionError:
        raise ProfileError(f"--askpass program {argv[0]!r} is not executable") from None
    if proc.returncode != 0:
        raise SandboxError(
            f"--askpass program {argv[0]!r} failed (exit status {proc.returncode}); "
            "no password was read"
        )
    return check_password(_first_line(proc.stdout), f"--askpass program {argv[0]!r}")


def _from_terminal(prompt: str) -> bytes:
    import termios

    try:
        fd = os.open(TTY_DEVICE, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        raise SandboxError(
            "no terminal to ask for the vault password; use --askpass PROGRAM or --passfile FILE"
        ) from None
    try:
        try:
            old = termios.tcgetattr(fd)
        except termios.error:
            raise SandboxError(
                f"{TTY_DEVICE} is not a terminal; use --askpass PROGRAM or --passfile FILE"
            ) from None
        new = list(old)
        new[3] = new[3] & ~termios.ECHO  # lflags
        termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        try:
            os.write(fd, prompt.encode(errors="replace"))
            data = bytearray()
            while not data.endswith(b"\n") and len(data) <= MAX_PASSWORD_BYTES + 2:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
            os.write(fd, b"\n")
    finally:
        os.close(fd)
    return check_password(bytes(data), "the terminal")
