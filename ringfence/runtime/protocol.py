"""The tiny line protocol between the sandbox's processes and the launcher.

Children write one line per message to the status pipe (O_CLOEXEC, so the payload's successful
execve closes it and the launcher sees EOF):
    pid <host pid of the sandbox's PID 1>
    report <json>            a layer's run-time result (e.g. the Landlock ABI in force)
    error <exit code> <message>
Must never carry anything but these three messages. Also the one helper that reads a pipe to EOF,
and the one that turns a wait status into the exit code the sandbox reports.
"""

from __future__ import annotations

import os


def send(fd: int, kind: str, text: str) -> None:
    data = f"{kind} {text}".replace("\n", " ") + "\n"
    try:
        os.write(fd, data.encode(errors="replace"))
    except OSError:
        pass


def send_error(fd: int, code: int, message: str) -> None:
    if os.environ.get("RINGFENCE_DEBUG"):
        import traceback

        message += " | " + traceback.format_exc().replace("\n", " | ")
    send(fd, "error", f"{code} {message}")


def send_report(fd: int, layer: str, data: dict[str, object]) -> None:
    import json

    send(fd, "report", json.dumps({"layer": layer, **data}, separators=(",", ":")))


def parse(buf: bytes) -> tuple[int | None, list[dict[str, object]], tuple[int, str] | None]:
    """Parse everything read from the status pipe: (init pid, reports, first error)."""
    pid: int | None = None
    reports: list[dict[str, object]] = []
    error: tuple[int, str] | None = None
    for raw in buf.decode(errors="replace").splitlines():
        kind, _, rest = raw.partition(" ")
        if kind == "pid":
            pid = int(rest)
        elif kind == "report":
            import json

            try:
                reports.append(json.loads(rest))
            except ValueError:
                pass
        elif kind == "error" and error is None:
            code, _, msg = rest.partition(" ")
            error = (int(code) if code.isdigit() else 2, msg)
    return pid, reports, error


def read_all(fd: int) -> bytes:
    """Everything up to EOF (a pipe whose writers have all gone)."""
    buf = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf
        buf += chunk


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for death by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
