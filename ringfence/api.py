"""The Python API: ``ringfence.run`` (shaped like ``subprocess.run``) and ``Sandbox``.

Forks in-process: no interpreter is started per sandbox. A ``Sandbox`` compiles its profile once
and can run many commands, each in a fresh sandbox.

    >>> import ringfence
    >>> r = ringfence.run(["echo", "hi"], capture_output=True, text=True)
    >>> r.stdout
    'hi\\n'
"""

from __future__ import annotations

import os
import selectors
import subprocess
from collections.abc import Mapping, Sequence

from .errors import ProfileError
from .plan import HostContext, Plan, RunRequest, compile_plan
from .profile.loader import load_profile
from .profile.model import Profile

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any

CompletedProcess = subprocess.CompletedProcess
SandboxTimeout = subprocess.TimeoutExpired

_POOLED_ARGV = ("(the command of each run)",)  # a warm sandbox's plan; never executed

_ALIASES = {
    "ro_binds": "BindReadOnlyPaths",
    "binds": "BindPaths",
    "tmpfs": "TemporaryFileSystems",
    "net": "Network",
    "hostname": "Hostname",
    "cwd": "WorkingDirectory",
}


def _options_to_keys(options: Mapping[str, Any]) -> dict[str, object]:
    keys: dict[str, object] = {}
    for name, value in options.items():
        if name == "env":
            keys["Environment"] = [f"{k}={v}" for k, v in dict(value).items()]
        elif name in ("ro_binds", "binds"):
            keys[_ALIASES[name]] = [
                f"{b[0]}:{b[1]}" if isinstance(b, (tuple, list)) else str(b) for b in value
            ]
        elif name in _ALIASES:
            keys[_ALIASES[name]] = value
        elif name[:1].isupper():
            keys[name] = value  # a profile key spelled as in TOML, e.g. ProtectHome="tmpfs"
        else:
            raise ProfileError(
                f"unknown option {name!r}: use a profile key (e.g. ProtectHome=...) or one of "
                f"{', '.join(sorted({*_ALIASES, 'env', 'pass_fds'}))}"
            )
    return keys


class Sandbox:
    """A reusable sandbox definition. Each ``run`` starts a fresh sandbox from it.

    With ``pool=N`` it keeps N sandboxes pre-warmed (namespaces made, root built, payload
    locked down, waiting for its command): a run then costs about one execve. Each run still
    gets a sandbox of its own. Close the pool with ``close()`` or a ``with`` block; it also
    ends with the calling process.
    """

    def __init__(
        self,
        profile: str | Profile = "strict",
        *,
        pass_fds: Sequence[int] = (),
        pool: int = 0,
        **options: Any,
    ) -> None:
        if isinstance(profile, Profile):
            if options:
                raise ProfileError("give options or a Profile object, not both")
            self.profile = profile
        else:
            self.profile = load_profile(profile, _options_to_keys(options))
        self.pass_fds = tuple(pass_fds)
        self._ctx = HostContext.current()
        self._pool: Any = None
        if pool:
            from .runtime.pool import Pool

            pooled = compile_plan(self.profile, RunRequest(_POOLED_ARGV), self._ctx)
            self._pool = Pool(pooled, pool)

    def close(self) -> None:
        """Stop the pool's warm sandboxes (a Sandbox without a pool has nothing to close)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_pool", None) is not None:
            try:
                self.close()
            except Exception:
                pass  # at interpreter exit; the pool dies with this process anyway

    def plan(self, cmd: Sequence[str]) -> Plan:
        return compile_plan(self.profile, RunRequest(tuple(cmd), pass_fds=self.pass_fds), self._ctx)

    def run(
        self,
        cmd: Sequence[str] | str,
        *,
        input: bytes | str | None = None,
        capture_output: bool = False,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        timeout: float | None = None,
        check: bool = False,
        text: bool = False,
    ) -> subprocess.CompletedProcess[Any]:
        argv = [cmd] if isinstance(cmd, str) else list(cmd)
        if not argv:
            raise ProfileError("no command given")
        taken: list[bool] = []
        try:
            return self._run(
                argv, taken, input, capture_output, stdin, stdout, stderr, timeout, check, text
            )
        finally:
            if taken and self._pool is not None:
                self._pool.refill()

    def _run(
        self,
        argv: list[str],
        taken: list[bool],
        input: bytes | str | None,
        capture_output: bool,
        stdin: int | None,
        stdout: int | None,
        stderr: int | None,
        timeout: float | None,
        check: bool,
        text: bool,
    ) -> subprocess.CompletedProcess[Any]:
        from .runtime.launcher import Launch

        plan = None if self._pool is not None else self.plan(argv)
        if capture_output:
            if stdout is not None or stderr is not None:
                raise ValueError("stdout and stderr may not be used with capture_output")
            stdout = stderr = subprocess.PIPE
        if input is not None:
            if stdin is not None:
                raise ValueError("stdin and input may not both be used")
            stdin = subprocess.PIPE
        ours: list[int] = []  # our ends of pipes
        theirs: list[int] = []  # the sandbox's ends, closed after start
        pipes: dict[str, int] = {}

        def setup(which: str, spec: int | None, default: int, reading: bool) -> int:
            if spec is None:
                return default
            if spec == subprocess.DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                theirs.append(fd)
                return fd
            if spec == subprocess.PIPE:
                r, w = os.pipe2(os.O_CLOEXEC)
                mine, child = (w, r) if reading else (r, w)
                ours.append(mine)
                theirs.append(child)
                pipes[which] = mine
                return child
            if spec == subprocess.STDOUT and which == "stderr":
                return -2
            return spec

        fd_in = setup("stdin", stdin, 0, True)
        fd_out = setup("stdout", stdout, 1, False)
        fd_err = setup("stderr", stderr, 2, False)
        if fd_err == -2:
            fd_err = fd_out
        launch: Any
        try:
            if plan is None:
                taken.append(True)  # from here on, the pool is one short: refill it after the run
                launch = self._pool.take()
                try:
                    launch.start(
                        argv, {0: fd_in, 1: fd_out, 2: fd_err, **{f: f for f in self.pass_fds}}
                    )
                except BaseException:
                    launch.close()
                    raise
            else:
                launch = Launch(plan, stdio=(fd_in, fd_out, fd_err))
                launch.start()
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        try:
            out, err = _communicate(pipes, input, timeout, argv, launch)
        except BaseException:
            launch.kill()
            launch.wait()
            for fd in ours:
                try:
                    os.close(fd)
                except OSError:
                    pass
            raise
        code = launch.wait()
        out_v: Any = out
        err_v: Any = err
        if text:
            out_v = out.decode() if out is not None else None
            err_v = err.decode() if err is not None else None
        result = subprocess.CompletedProcess(argv, code, out_v, err_v)
        if check:
            result.check_returncode()
        return result


def _communicate(
    pipes: dict[str, int],
    input: bytes | str | None,
    timeout: float | None,
    argv: list[str],
    launch: Any,
) -> tuple[bytes | None, bytes | None]:
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    data = input.encode() if isinstance(input, str) else input
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    sel = selectors.DefaultSelector()
    if "stdin" in pipes:
        if data:
            sel.register(pipes["stdin"], selectors.EVENT_WRITE, "stdin")
        else:
            os.close(pipes.pop("stdin"))
    for name in ("stdout", "stderr"):
        if name in pipes:
            sel.register(pipes[name], selectors.EVENT_READ, name)
    offset = 0
    with sel:
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(argv, timeout or 0)
            for key, _ in sel.select(left):
                name = key.data
                if name == "stdin":
                    assert data is not None
                    try:
                        offset += os.write(key.fd, data[offset : offset + 65536])
                    except BrokenPipeError:
                        offset = len(data)
                    if offset >= len(data):
                        sel.unregister(key.fd)
                        os.close(key.fd)
                else:
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        chunks[name].append(chunk)
                    else:
                        sel.unregister(key.fd)
                        os.close(key.fd)
    if deadline is not None:
        while launch.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(argv, timeout or 0)
            time.sleep(0.005)
    out = b"".join(chunks["stdout"]) if "stdout" in pipes else None
    err = b"".join(chunks["stderr"]) if "stderr" in pipes else None
    return out, err


def run(
    cmd: Sequence[str] | str,
    profile: str | Profile = "strict",
    *,
    input: bytes | str | None = None,
    capture_output: bool = False,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
    timeout: float | None = None,
    check: bool = False,
    text: bool = False,
    pass_fds: Sequence[int] = (),
    **options: Any,
) -> subprocess.CompletedProcess[Any]:
    """Run ``cmd`` in a fresh sandbox; the signature follows :func:`subprocess.run`."""
    return Sandbox(profile, pass_fds=pass_fds, **options).run(
        cmd,
        input=input,
        capture_output=capture_output,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        timeout=timeout,
        check=check,
        text=text,
    )
