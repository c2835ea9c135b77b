"""The sandbox's X display: a nested X server of its own (Xvfb or Xephyr), or the host's.

Owns: the ``Display``/``DisplaySize`` profile keys (:func:`parse_keys` → :class:`DisplayConfig`),
starting and stopping the nested X server on the host (:func:`start` → :class:`NestedDisplay`),
its MIT-MAGIC-COOKIE-1 and the Xauthority files (:func:`encode_xauth`/:func:`decode_xauth`).
Must never: hand the sandbox the host's X socket unless ``Display=host`` asked for it (reported
as an exposure), nor ever the user's own cookie (it gets an untrusted one), let the nested
server listen on TCP or
run unconfined, leave a server process or a file behind, or import anything heavy (desktop
runs start through here: no ``subprocess``, ``shutil`` or ``json`` at module level).

Where it sits in the start-up: the launcher L calls :func:`start` on the host before it builds
the sandbox's root (the server must exist before its socket can be bound), from the thread
that outlives the sandbox (PR_SET_PDEATHSIG fires when the *thread* that forked the server
ends). L then binds ``NestedDisplay.socket`` on :data:`SANDBOX_SOCKET` (a file bind; the
sandbox's /tmp/.X11-unix is a fresh tmpfs directory) and ``NestedDisplay.xauthority`` read-only
on :data:`SANDBOX_XAUTHORITY`, and sets ``DISPLAY=:0`` and ``XAUTHORITY`` for the payload. L
calls :meth:`NestedDisplay.stop` when the sandbox ends. The sandbox needs a network namespace
of its own: X clients try the *abstract* socket ``@/tmp/.X11-unix/X0`` before the path, and
abstract sockets belong to the network namespace, so with the host's network ``DISPLAY=:0``
would reach the host's display :0.

The server (Xvfb or Xephyr) runs in a strict ringfence sandbox of its own (:func:`_start_confined`:
its own namespaces, /usr and /etc read-only, no home, no network, every lock-down layer,
:data:`SERVER_LIMITS`): a client may ask its server to read font paths (even
/proc/PID/root/... of the client's own sandbox) and to allocate memory, and confined it can do
neither harm. Its command line::

    :N                    :0 (Xephyr :1, since the host display is bound as its :0); in its
                          own network and mount namespaces no other server can collide
    -displayfd 3          written when ready to serve
    -auth FILE            our random cookie, the only way in (no -ac, no host-based access)
    -nolisten tcp         no TCP port 6000+N (and its network is its own loopback anyway)
    -noreset              the last client leaving must not reset the server (and re-read -auth)
    -extension MIT-SHM    a client naming a SysV shm id would make the server attach a segment
                          of the server's IPC namespace; clients fall back to the socket
    Xephyr only: -title "ringfence sandbox", -no-host-grab (the sandbox never gets the
                          keyboard and pointer grabbed away from the host's other windows)

The server's /tmp/.X11-unix is ``sockets/`` of our display directory, bound in: its socket
appears there, and the launcher binds that one file on the sandbox's X0. Its abstract socket
lives in its own network namespace, out of everyone's reach.

The cookie: 16 random bytes, written as FamilyWild entries (they match whatever hostname the
sandbox has); the sandbox's file names display "0", as it sees ``:0``, is 0600 and belongs to
the sandbox's user. Files live in a private directory per display, named
``CREATORPID.STARTTIME.RANDOM``: a later :func:`start` removes those whose creator is gone (a
launcher killed with SIGKILL), sockets included. For a root caller the server runs as ``user``
(nobody by default) and the directory is ``/tmp/ringfence-display-…`` (root's runtime directory
is not searchable by ``user``), owned by root, mode 0711, the files inside owned by ``user``.

Lifetime of the server: a ringfence launch whose launcher is the caller (the PR_SET_PDEATHSIG
chain kills it with the caller), stdin /dev/null, stdout/stderr to ``server.log`` (its tail is
in every error message), only the displayfd pipe as an extra fd, environment PATH (+ DISPLAY
and XAUTHORITY for Xephyr, the latter a copy of just the host display's cookie).
"""

from __future__ import annotations

import os

from .._record import record as dataclass
from ..errors import MissingToolError, ProfileError, RingfenceError, SandboxError

TYPE_CHECKING = False  # not "from typing import": typing costs 2 ms to import; mypy knows
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .launcher import Launch

DISPLAY_KEYS = ("Display", "DisplaySize")
SANDBOX_DISPLAY = ":0"
SANDBOX_SOCKET = "/tmp/.X11-unix/X0"
SANDBOX_XAUTHORITY = "/run/ringfence/Xauthority"

KINDS = ("auto", "xvfb", "xephyr", "host")
DEFAULT_SIZE = "1280x800"
SIZE_RANGE = (64, 8192)
# name, Debian package
SERVERS = {"xvfb": ("Xvfb", "xvfb"), "xephyr": ("Xephyr", "xserver-xephyr")}
XEPHYR_TITLE = "ringfence sandbox"
READY_TIMEOUT_S = 10.0
STOP_GRACE_S = 1.0

X11_UNIX = "/tmp/.X11-unix"
COOKIE_NAME = b"MIT-MAGIC-COOKIE-1"
# X11/Xauth.h
FAMILY_LOCAL = 256
FAMILY_WILD = 0xFFFF
# asm-generic/signal.h
SIGKILL = 9
SIGTERM = 15

_SHARED_PREFIX = "ringfence-display-"  # per-display directories in /tmp (root running `user`)


# ---------------------------------------------------------------------------------------------
# Configuration (pure)


@dataclass(frozen=True)
class DisplayConfig:
    """What ``Display=`` asks for. ``auto``: Xephyr when the caller has a display, else Xvfb
    (decided by :func:`resolve_kind` at start, never when a profile is read)."""

    kind: str
    size: str = DEFAULT_SIZE

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ProfileError(
                f"Display: {self.kind!r} is not a display kind", "use none|auto|xvfb|xephyr|host"
            )
        parse_size(self.size)

    @property
    def width(self) -> int:
        return parse_size(self.size)[0]

    @property
    def height(self) -> int:
        return parse_size(self.size)[1]


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` → (W, H), each within :data:`SIZE_RANGE`; ProfileError naming DisplaySize."""
    low, high = SIZE_RANGE
    hint = f"use WIDTHxHEIGHT, each {low}-{high}, e.g. {DEFAULT_SIZE}"
    if not isinstance(text, str):
        raise ProfileError(f"DisplaySize: {text!r} is not a string", hint)
    w, x, h = text.strip().lower().partition("x")
    if not (x and w.isascii() and w.isdigit() and h.isascii() and h.isdigit()):
        raise ProfileError(f"DisplaySize: {text!r} is not WIDTHxHEIGHT", hint)
    width, height = int(w), int(h)
    if not (low <= width <= high and low <= height <= high):
        raise ProfileError(f"DisplaySize: {text!r} is out of range", hint)
    return width, height


def parse_keys(mapping: Mapping[str, object]) -> DisplayConfig | None:
    """Build a DisplayConfig from profile keys (TOML values or CLI strings); None for none.

    ``Display``: none | auto | xvfb | xephyr | host. ``DisplaySize``: WIDTHxHEIGHT.
    """
    for key in mapping:
        if key not in DISPLAY_KEYS:
            raise ProfileError(
                f"{key}: not a display key", f"known keys: {', '.join(DISPLAY_KEYS)}"
            )
    if "Display" not in mapping:
        raise ProfileError(
            "DisplaySize: set without Display=", "add Display=auto|xvfb|xephyr, or drop it"
        )
    kind = mapping["Display"]
    if not isinstance(kind, str) or kind.strip().lower() not in ("none", *KINDS):
        raise ProfileError(
            f"Display: {kind!r} is not a display kind", "use none|auto|xvfb|xephyr|host"
        )
    kind = kind.strip().lower()
    size = mapping.get("DisplaySize", DEFAULT_SIZE)
    if not isinstance(size, str):
        raise ProfileError(
            f"DisplaySize: {size!r} is not a string",
            f"use WIDTHxHEIGHT, e.g. {DEFAULT_SIZE}",
        )
    width, height = parse_size(size)
    if kind == "none":
        return None
    return DisplayConfig(kind, f"{width}x{height}")


def parse_host_display(display: str) -> int:
    """The display number of a *local* DISPLAY (``:N``, ``:N.S``, ``unix:N``); else an error."""
    host, colon, rest = display.strip().rpartition(":")
    number = rest.partition(".")[0]
    if not colon or not number.isascii() or not number.isdigit():
        raise SandboxError(
            f"DISPLAY={display!r} is not an X display name", "it looks like :0 or :1.0"
        )
    if host not in ("", "unix"):
        raise SandboxError(
            f"DISPLAY={display!r} is not a local display (Display=host binds a local socket)",
            "use Display=xephyr or xvfb, or a local display such as :0",
        )
    return int(number)


def resolve_kind(config: DisplayConfig, env: Mapping[str, str] | None = None) -> str:
    """The server kind ``config`` means here: ``auto`` → xephyr with a display, else xvfb."""
    if config.kind != "auto":
        return config.kind
    environ = os.environ if env is None else env
    if environ.get("DISPLAY") and _which("Xephyr", environ) is not None:
        return "xephyr"
    return "xvfb"


# ---------------------------------------------------------------------------------------------
# Xauthority files (pure): a sequence of entries, each family (u16 big-endian) then address,
# display number (ASCII), auth name and auth data, each a u16 big-endian length and bytes.


@dataclass(frozen=True)
class XauthEntry:
    family: int
    address: bytes
    number: str
    name: bytes
    data: bytes


def cookie_entry(cookie: bytes, number: str = "0") -> XauthEntry:
    """A FamilyWild MIT-MAGIC-COOKIE-1 entry: it matches any hostname the client has."""
    return XauthEntry(FAMILY_WILD, b"", number, COOKIE_NAME, cookie)


def encode_xauth(entries: Iterable[XauthEntry]) -> bytes:
    out = bytearray()
    for e in entries:
        out += e.family.to_bytes(2, "big")
        for field in (e.address, e.number.encode("ascii"), e.name, e.data):
            if len(field) > 0xFFFF:
                raise ValueError("Xauthority field longer than 65535 bytes")
            out += len(field).to_bytes(2, "big") + field
    return bytes(out)


def decode_xauth(data: bytes) -> list[XauthEntry]:
    """Parse an Xauthority file; ValueError if it is truncated."""
    entries = []
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise ValueError("truncated Xauthority file")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    while pos < len(data):
        family = int.from_bytes(take(2), "big")
        fields = [take(int.from_bytes(take(2), "big")) for _ in range(4)]
        entries.append(
            XauthEntry(family, fields[0], fields[1].decode("ascii", "replace"), *fields[2:])
        )
    return entries


def host_cookies(data: bytes, number: int, hostname: str) -> list[XauthEntry]:
    """The entries of an Xauthority file that Xlib would use for local display ``number``."""
    return [
        e
        for e in decode_xauth(data)
        if e.number in ("", str(number))
        and (
            e.family == FAMILY_WILD or (e.family == FAMILY_LOCAL and e.address == hostname.encode())
        )
    ]


# ---------------------------------------------------------------------------------------------
# Running it


class NestedDisplay:
    """A display for one sandbox. Returned by :func:`start`; a handle, not data."""

    report_layer = "display"  # its layer in the launcher's --json report

    def __init__(self, config: DisplayConfig, kind: str, server: str) -> None:
        self.config = config
        self.kind = kind
        self.server = server  # the server's executable, or the host's DISPLAY for host
        self.socket = ""
        self.xauthority = ""
        self.number = -1
        self.pid = -1
        self.cookie_source = "random MIT-MAGIC-COOKIE-1, this display only"
        self.directory = ""
        self._pidfd = -1
        self._log_fd = -1
        self._server: Launch | None = None  # the server's own sandbox
        self._stopped = False

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL after STOP_GRACE_S, reap it, remove our files.
        Idempotent; never raises."""
        if self._stopped:
            return
        self._stopped = True
        if self._pidfd >= 0:
            _terminate(self._pidfd)  # the server's sandbox: its PID 1 passes SIGTERM on
            os.close(self._pidfd)
            self._pidfd = -1
        if self._server is not None:
            self._server.kill()
            self._server.wait()  # reaps the sandbox's C (PID 1 is not our child)
            self._server = None
        if self._log_fd >= 0:
            os.close(self._log_fd)
            self._log_fd = -1
        if self.directory:
            _remove_dir(self.directory)

    def __enter__(self) -> NestedDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def describe(self) -> dict[str, object]:
        """What the --json report says about the display."""
        if self.kind == "host":
            exposure = (
                f"EXPOSED: the host's real X display :{self.number}, as an untrusted client: "
                "its own windows share your real screen, and X SECURITY is all that keeps it "
                "from the other windows"
            )
        elif self.kind == "xephyr":
            exposure = (
                "nested Xephyr window on the host display: the sandbox sees only its own "
                "server; it gets keyboard input only while its window has focus (no host grab)"
            )
        else:
            exposure = "nested headless Xvfb: the sandbox sees only its own server"
        return {
            "kind": self.kind,
            "server": self.server,
            "pid": self.pid,
            "size": self.config.size if self.kind != "host" else "host's",
            "number": self.number,
            "socket": self.socket,
            "sandbox_display": SANDBOX_DISPLAY,
            "sandbox_socket": SANDBOX_SOCKET,
            "cookie": self.cookie_source,
            "listens": "unix sockets only (no TCP)"
            if self.kind != "host"
            else "as the host's server does",
            "exposure": exposure,
        }

    def log_tail(self, lines: int = 3) -> str:
        if self._log_fd < 0:
            return ""
        text = os.pread(self._log_fd, 65536, max(0, os.fstat(self._log_fd).st_size - 65536))
        kept = [line.strip() for line in text.decode(errors="replace").splitlines()]
        return " | ".join([line for line in kept if line][-lines:])


def start(
    config: DisplayConfig,
    user: tuple[int, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> NestedDisplay:
    """Start the display ``config`` asks for; return once clients can connect to it.

    ``user`` (uid, gid): a root caller runs the server as that user and the sandbox's cookie
    file belongs to it. ``env``: where DISPLAY/XAUTHORITY/PATH come from (default os.environ).
    Raises MissingToolError or SandboxError; on error nothing is left running or on disk.
    """
    environ = os.environ if env is None else env
    if user is not None and os.geteuid() != 0:
        raise SandboxError("display: only root can run the X server as another user")
    if user is not None and user[0] == os.geteuid():
        user = None
    if user is None and os.geteuid() == 0:
        user = (65534, 65534)  # root's sandboxes never run as root: the server's neither
    kind = resolve_kind(config, environ)
    host_display = environ.get("DISPLAY", "")
    if kind in ("xephyr", "host") and not host_display:
        raise SandboxError(
            f"Display={kind} needs a graphical session and DISPLAY is not set",
            "use Display=xvfb, or run from a graphical session",
        )
    path = ""
    if kind in SERVERS:
        name, package = SERVERS[kind]
        found = _which(name, environ)
        if found is None:
            raise MissingToolError(f"Display={kind} needs {name}", f"apt install {package}")
        path = found
    display = NestedDisplay(config, kind, path or host_display)
    try:
        display.directory = _make_dir(user)
        if kind == "host":
            _use_host(display, host_display, environ, user)
        else:
            _launch(display, host_display, environ, user)
    except BaseException:
        display.stop()
        raise
    return display


def _which(name: str, environ: Mapping[str, str]) -> str | None:
    """shutil.which without importing shutil."""
    for directory in environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _write(directory: str, name: str, data: bytes, mode: int, owner: int | None) -> str:
    path = f"{directory}/{name}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # not the umask's
        if owner is not None:
            os.fchown(fd, owner, -1)
        os.write(fd, data)
    finally:
        os.close(fd)
    return path


def _host_auth(host_display: str, environ: Mapping[str, str]) -> list[XauthEntry]:
    """The host display's cookies from $XAUTHORITY (or ~/.Xauthority), as FamilyWild entries."""
    number = parse_host_display(host_display)
    source = environ.get("XAUTHORITY") or os.path.join(environ.get("HOME", "/"), ".Xauthority")
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError:
        return []
    try:
        found = host_cookies(data, number, os.uname().nodename)
    except ValueError:
        raise SandboxError(f"{source} is not an Xauthority file", "check XAUTHORITY") from None
    return [XauthEntry(FAMILY_WILD, b"", "0", e.name, e.data) for e in found]


def _untrusted_cookie(
    display: NestedDisplay, host_display: str, environ: Mapping[str, str]
) -> list[XauthEntry]:
    """A fresh *untrusted* cookie for the host display (``xauth generate ... untrusted``), as a
    FamilyWild entry for :0. Untrusted clients of the X SECURITY extension cannot read other
    clients' windows or properties nor watch their input: never the user's own cookie, which
    would let the app log every keystroke of the real display. Fails closed."""
    xauth = _which("xauth", environ)
    if xauth is None:
        raise MissingToolError(
            "Display=host needs xauth (for an untrusted cookie)", "apt install xauth"
        )
    source = environ.get("XAUTHORITY") or os.path.join(environ.get("HOME", "/"), ".Xauthority")
    target = f"{display.directory}/untrusted.auth"
    import subprocess

    try:
        done = subprocess.run(
            [xauth, "-f", target, "generate", host_display, ".", "untrusted", "timeout", "0"],
            env={
                "PATH": environ.get("PATH", "/usr/bin:/bin"),
                "DISPLAY": host_display,
                "XAUTHORITY": source,
            },  # fmt: skip
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=READY_TIMEOUT_S,
        )
        with open(target, "rb") as f:
            data = f.read()
        os.unlink(target)
        found = host_cookies(data, parse_host_display(host_display), os.uname().nodename)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        done, found = None, []
    if not found:
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] if done else []
        raise SandboxError(
            f"Display=host: the X server of {host_display} gave no untrusted cookie"
            + (f" ({why[0]})" if why else ""),
            "its SECURITY extension is needed; use Display=xephyr instead",
        )
    return [XauthEntry(FAMILY_WILD, b"", "0", e.name, e.data) for e in found]


def _use_host(
    display: NestedDisplay,
    host_display: str,
    environ: Mapping[str, str],
    user: tuple[int, int] | None,
) -> None:
    import stat

    number = parse_host_display(host_display)
    socket = f"{X11_UNIX}/X{number}"
    try:
        st = os.lstat(socket)
    except OSError:
        raise SandboxError(
            f"Display=host: {socket} does not exist (DISPLAY={host_display})",
            "is the X server local and running?",
        ) from None
    owners = {0, os.geteuid()} | ({user[0]} if user else set())
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid not in owners:
        raise SandboxError(
            f"Display=host: {socket} is not a socket of root or of uid {os.geteuid()}",
            "refusing to hand the sandbox someone else's socket",
        )
    entries = _untrusted_cookie(display, host_display, environ)
    display.cookie_source = (
        "untrusted cookie (X SECURITY extension): other clients' windows, properties and "
        "input are off-limits to the sandbox"
    )
    display.socket = socket
    display.number = number
    display.xauthority = _write(
        display.directory, "Xauthority", encode_xauth(entries), 0o600, user[0] if user else None
    )


def _launch(
    display: NestedDisplay,
    host_display: str,
    environ: Mapping[str, str],
    user: tuple[int, int] | None,
) -> None:
    import stat

    directory = display.directory
    owner = user[0] if user else None
    cookie = os.urandom(16)
    server_auth = _write(
        directory, "server.auth", encode_xauth([cookie_entry(cookie)]), 0o600, owner
    )
    # 0600 and owned by the sandbox's user (the payload runs as that uid): the directory of a
    # root caller's display is searchable (0711) and named in the server's command line.
    display.xauthority = _write(
        directory, "Xauthority", encode_xauth([cookie_entry(cookie, "0")]), 0o600, owner
    )
    display._log_fd = os.open(
        f"{directory}/server.log",
        os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_APPEND,
        0o600,
    )
    # The server runs in a ringfence sandbox of its own (strict: its own namespaces, /usr and
    # /etc read-only, no network, no home, every lock-down layer): a client can ask an X
    # server to read font directories (even /proc/PID/root/... of the client's own sandbox) and
    # parse what it finds, and to allocate memory; confined, a parser bug is not an escape and
    # the memory is bounded. Its socket directory is ours, bound at its /tmp/.X11-unix; in its
    # own network namespace its abstract socket is out of everyone's reach.
    sockets = f"{directory}/sockets"
    os.mkdir(sockets, 0o700)
    if owner is not None:
        os.chown(sockets, owner, -1)
    inside = "/run/ringfence-x"
    binds_ro = [f"{server_auth}:{inside}/server.auth", f"{display.server}:{display.server}"]
    server_env: dict[str, str] = {}
    width, height = display.config.width, display.config.height
    number = 0
    if display.kind == "xephyr":
        # Xephyr is also a client of the host display: that socket is its :0, it serves :1.
        number = 1
        host_number = parse_host_display(host_display)
        binds_ro.append(f"{X11_UNIX}/X{host_number}:{X11_UNIX}/X0")
        server_env["DISPLAY"] = ":0"
        entries = [
            XauthEntry(FAMILY_WILD, b"", "0", e.name, e.data)
            for e in _host_auth(host_display, environ)
        ]
        if entries:
            host_auth = _write(directory, "host.auth", encode_xauth(entries), 0o600, owner)
            binds_ro.append(f"{host_auth}:{inside}/host.auth")
            server_env["XAUTHORITY"] = f"{inside}/host.auth"
    argv = [
        display.server,
        f":{number}",
        "-displayfd",
        "3",
        "-auth",
        f"{inside}/server.auth",
        "-nolisten",
        "tcp",
        "-noreset",
        "-extension",
        "MIT-SHM",
    ]
    if display.kind == "xvfb":
        argv += ["-screen", "0", f"{width}x{height}x24"]
    else:
        argv += ["-screen", f"{width}x{height}", "-title", XEPHYR_TITLE, "-no-host-grab"]
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            display._server = _start_confined(
                argv, sockets, binds_ro, server_env, ready_w, display._log_fd, user
            )
            display.pid = display._server.init_pid
            display._pidfd = os.pidfd_open(display.pid)
        finally:
            os.close(ready_w)
        display.number = _wait_ready(display, ready_r)
    finally:
        os.close(ready_r)
    uid = user[0] if user else os.geteuid()
    socket = f"{sockets}/X{display.number}"
    try:
        st = os.lstat(socket)
    except OSError as exc:
        raise SandboxError(
            f"{display.kind}: no socket at {socket} ({os.strerror(exc.errno or 2)})"
        ) from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != uid:
        raise SandboxError(
            f"{display.kind}: {socket} is not a socket of uid {uid}",
            f"something else owns it; remove {socket} and try again",
        )
    display.socket = socket


def _wait_ready(display: NestedDisplay, ready_r: int) -> int:
    """The display number the server writes on -displayfd, within READY_TIMEOUT_S."""
    import select
    import time

    deadline = time.monotonic() + READY_TIMEOUT_S
    poller = select.poll()
    poller.register(ready_r, select.POLLIN)
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(int(left * 1000) + 1):
            if time.monotonic() < deadline:
                continue
            raise SandboxError(
                f"{display.kind}: {display.server} did not start within "
                f"{READY_TIMEOUT_S:.0f} s: {display.log_tail() or 'no output'}"
            )
        chunk = os.read(ready_r, 64)
        if not chunk:
            # Its only writer is the server, so the server is gone (or closed it unready).
            raise SandboxError(
                f"{display.kind}: {display.server} exited before it was ready: "
                f"{display.log_tail() or 'no output'}",
                "Display=xvfb needs no graphical session" if display.kind == "xephyr" else None,
            )
        data += chunk
    text = data.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise SandboxError(f"{display.kind}: {display.server} wrote {text!r} as its display")
    return int(text)


SERVER_LIMITS = {"LimitAS": "4G", "LimitNPROC": "64", "LimitNOFILE": "1024"}


def _start_confined(
    argv: list[str],
    sockets: str,
    binds_ro: list[str],
    env: dict[str, str],
    ready_w: int,
    log_fd: int,
    user: tuple[int, int] | None,
) -> Launch:
    """Start the X server in a strict ringfence sandbox; ``ready_w`` becomes its fd 3."""
    from ..plan import RunRequest, compile_plan
    from ..profile.loader import load_profile
    from .launcher import Launch

    keys: dict[str, object] = {
        "BindPaths": [f"{sockets}:{X11_UNIX}"],
        "BindReadOnlyPaths": binds_ro,
        "Environment": [f"{k}={v}" for k, v in env.items()],
        **SERVER_LIMITS,
    }
    if user is not None:
        keys["User"], keys["Group"] = str(user[0]), str(user[1])
    plan = compile_plan(load_profile("strict", keys), RunRequest(tuple(argv)))
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        launch = Launch(plan, stdio=(null, log_fd, log_fd), fd_map={3: ready_w})
        launch.start()
    except RingfenceError as exc:
        raise SandboxError(f"display: cannot start {argv[0]} in its own sandbox: {exc}") from None
    finally:
        os.close(null)
    return launch


def _terminate(pidfd: int) -> None:
    """SIGTERM the server's PID 1 (it passes it on), SIGKILL after the grace; the launch's
    wait() reaps what is ours (its C)."""
    import select

    from ..kernel._syscall import syscall

    for sig, wait_ms in ((SIGTERM, int(STOP_GRACE_S * 1000)), (SIGKILL, -1)):
        try:
            syscall("pidfd_send_signal", pidfd, sig, None, 0)
        except RingfenceError:
            break  # already gone
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if poller.poll(wait_ms):
            break


# ---------------------------------------------------------------------------------------------
# Private files, and what a SIGKILLed caller left behind


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b") ", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _make_dir(user: tuple[int, int] | None) -> str:
    """A fresh directory for this display's files, after removing stale ones."""
    from .._rundir import private_dir

    me = os.getpid()
    name = f"{me}.{_start_time(me)}.{os.urandom(6).hex()}"
    if user is None:
        try:
            base = private_dir("display")
        except OSError as exc:
            raise SandboxError(f"display: {exc}") from None
        _remove_stale(base, "")
        path = f"{base}/{name}"
        os.mkdir(path, 0o700)
        return path
    # Root running the server as `user`: the server must read server.auth by path, and root's
    # runtime directory is 0700. Root-owned and 0711 in /tmp: `user` can search it, not change it.
    _remove_stale("/tmp", _SHARED_PREFIX)
    path = f"/tmp/{_SHARED_PREFIX}{name}"
    os.mkdir(path, 0o700)
    os.chmod(path, 0o711)
    return path


def _remove_stale(base: str, prefix: str) -> None:
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid, _, rest = name[len(prefix) :].partition(".")
        started = rest.partition(".")[0]
        if not pid.isdigit() or not started:
            continue
        path = f"{base}/{name}"
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != os.geteuid() or (st.st_mode & 0o170000) != 0o040000:
            continue
        if _start_time(int(pid)) == started:
            continue  # its creator still runs
        _remove_dir(path)  # with it the socket its server left in sockets/


def _remove_dir(path: str, depth: int = 0) -> None:
    """The display's directory: its files and its sockets/ directory (never a symlink's
    target: unlink and rmdir only)."""
    try:
        names = os.listdir(path)
    except OSError:
        names = []
    for name in names:
        entry = f"{path}/{name}"
        try:
            os.unlink(entry)
        except IsADirectoryError:
            if depth == 0:
                _remove_dir(entry, depth + 1)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass
