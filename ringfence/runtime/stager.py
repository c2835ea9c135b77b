"""The session's stager: makes host paths appear in a running sandbox (`ringfence add`).

Design. A running payload is already locked (no capabilities, Landlock in force), and an
unprivileged user cannot create mounts in the host's mount namespace, so `add` cannot simply
bind a file in from outside. Instead, while PID 1 builds the root, it mounts a drop zone (a tmpfs,
read-only to the payload, with a Landlock rule that already permits it) and marks it MS_SHARED.
Before pivot_root it forks the stager, which unshares its own mount namespace: a copy in which
the host tree is still reachable at /oldroot and the drop zone is a *peer* of the sandbox's. To
add a path, the stager clones it (open_tree, resolved as on the host with RESOLVE_IN_ROOT below
/oldroot), makes the clone read-only unless asked otherwise, and moves it onto a fresh mountpoint
in its peer of the drop zone; mount propagation makes it appear in the sandbox. Nothing changes
for the payload's Landlock domain, and nothing is mounted in the host's namespace.

The stager keeps the capabilities it needs (in the sandbox's user namespace only), is not
dumpable (the payload cannot open its /proc entries or ptrace it), and only obeys requests on its
socket, which only the session's keeper holds. Must never act on a path the user did not name.
"""

from __future__ import annotations

import json
import os
import socket
import stat

from ..errors import KernelError, RingfenceError
from ..kernel import mount as m
from ..kernel import prctl, userns

HOST = "/oldroot"


def stager_main(sock_fd: int, zone: str, ready_fd: int) -> None:
    """Runs in a fork of PID 1, before pivot_root. ``zone`` is the drop zone's current path."""
    try:
        prctl.set_pdeathsig(9)
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        prctl.set_name("rf-stager")
        prctl.set_dumpable(False)
        userns.unshare(userns.CLONE_NEWNS)
        host_fd = os.open(HOST, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        zone_fd = os.open(zone, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # PID 1 makes the sandbox's peer of the drop zone read-only; ours stays writable so we
        # can create mountpoints in it (the flag is per mount, the files are shared).
        m.set_attrs(zone_fd, 0, m.MOUNT_ATTR_RDONLY, recursive=False)
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    except BaseException:
        os._exit(2)
    sock = socket.socket(fileno=sock_fd)
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except InterruptedError:
            continue
        except OSError:
            os._exit(0)
        if not chunk:
            os._exit(0)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                reply = _handle(json.loads(line), host_fd, zone_fd)
            except RingfenceError as e:
                reply = {"ok": False, "error": str(e)}
            except Exception as e:  # a bad request must not kill the stager
                reply = {"ok": False, "error": f"add failed: {e!r}"}
            sock.sendall(json.dumps(reply).encode() + b"\n")


def _handle(req: dict[str, object], host_fd: int, zone_fd: int) -> dict[str, object]:
    src = str(req["src"])
    dest = str(req["dest"]).strip("/")
    rw = bool(req.get("rw"))
    if not src.startswith("/"):
        raise RingfenceError(f"add: {src}: the source must be an absolute host path")
    parts = [p for p in dest.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise RingfenceError(f"add: {dest!r}: not a valid name inside the drop zone")
    try:
        src_fd = m.open_in_root(host_fd, src, os.O_PATH)
    except KernelError as e:
        raise RingfenceError(f"add: {src}: {os.strerror(e.errno)} on the host") from None
    try:
        is_dir = stat.S_ISDIR(os.fstat(src_fd).st_mode)  # no /proc in the stager's view
        tree = m.open_tree_clone("", recursive=is_dir, dirfd=src_fd)
    finally:
        os.close(src_fd)
    try:
        attrs = m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV | (0 if rw else m.MOUNT_ATTR_RDONLY)
        m.set_attrs(tree, attrs, recursive=True)
        rel = "/".join(parts)
        try:
            existing = m.open_in_root(zone_fd, rel)
            os.close(existing)
            raise RingfenceError(f"add: {rel} already exists in the drop zone; choose another DEST")
        except KernelError as e:
            if e.errno != 2:
                raise
        m.attach_in_root(tree, zone_fd, rel, is_dir)
    finally:
        os.close(tree)
    return {"ok": True, "dest": rel, "rw": rw, "dir": is_dir}
