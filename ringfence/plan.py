"""The Plan: everything a sandbox launch will do, as plain data, decided before anything runs.

Owns: compiling a :class:`Profile` plus a run request and the host context into ordered mount
operations, namespaces, identity, environment and the security layers, and describing them for
``ringfence plan`` and ``--json``. Must never execute anything: building a plan has no side
effects beyond reading host metadata (stat, readlink, environment).
"""

from __future__ import annotations

import os

from ._record import field
from ._record import record as dataclass
from .errors import ProfileError
from .profile.model import Profile

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any

# ---------------------------------------------------------------------------------------------
# Mount operations (executed in order inside the new mount namespace; see runtime/mounts.py)


@dataclass(frozen=True)
class Tmpfs:
    dest: str
    mode: int = 0o755
    readonly: bool = False
    size: str | None = None
    why: str = ""


@dataclass(frozen=True)
class Bind:
    src: str  # host path, resolved
    dest: str
    readonly: bool = True
    device: bool = False  # device nodes need the mount without nodev
    why: str = ""
    # (st_dev, st_ino, st_ctime_ns) of a regular file seen when planning: the mount must be that
    # very file, reached without following any symlink (a file argument swapped is refused)
    identity: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Remount:
    """Re-bind a path of the new tree onto itself with new attributes (recursive)."""

    dest: str
    readonly: bool = True
    optional: bool = False
    why: str = ""


@dataclass(frozen=True)
class Proc:
    dest: str
    hidepid: str = "invisible"
    subset: str | None = None
    protect_tunables: bool = True
    why: str = ""


@dataclass(frozen=True)
class Dev:
    dest: str
    why: str = ""


@dataclass(frozen=True)
class Sysfs:
    dest: str
    from_host: bool = False  # a read-only bind of the host's /sys when the netns is shared
    why: str = ""


@dataclass(frozen=True)
class Symlink:
    target: str
    dest: str
    why: str = ""


@dataclass(frozen=True)
class File:
    dest: str
    content: bytes
    mode: int = 0o444
    why: str = ""


@dataclass(frozen=True)
class Dir:
    dest: str
    mode: int = 0o755
    why: str = ""


@dataclass(frozen=True)
class Inaccessible:
    dest: str
    is_dir: bool = True
    why: str = ""


MountOp = Tmpfs | Bind | Remount | Proc | Dev | Sysfs | Symlink | File | Dir | Inaccessible

# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who the payload is. ``drop_to`` is set when the caller is root: we become that user
    before creating the user namespace, so the payload is never host root."""

    uid: int
    gid: int
    drop_to: tuple[int, int] | None = None


@dataclass
class LayerReport:
    name: str
    applied: bool | None  # None: decided at run time
    detail: str = ""
    why: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"layer": self.name, "applied": self.applied, "detail": self.detail, "why": self.why}


@dataclass
class Plan:
    profile: Profile
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    namespaces: tuple[str, ...]
    identity: Identity
    hostname: str
    mounts: tuple[MountOp, ...]
    network: str
    pass_fds: tuple[int, ...] = ()
    cap_last: int = 40
    limits: tuple[Any, ...] = ()
    keyring_private: bool = True
    seccomp: Any = None
    landlock: Any = None
    usernet: Any = None
    vaults: tuple[Any, ...] = ()
    cgroup: Any = None  # kernel.cgroup.CgroupLimits; the launcher makes the cgroup
    landlock_ready: Any = None  # landlock.Resolved, computed by the launcher before fork
    session: str | None = None  # a named session: PID 1 outlives the payload, `add` works
    add_dir: str | None = None  # the session's drop zone for `ringfence add`
    join_pid: int | None = None  # enter: host pid of the session's PID 1 (no new namespaces)
    report_runtime: bool = False  # send run-time layer results (Landlock ABI...) back (--json)
    display: Any = None  # runtime.display.DisplayConfig: the launcher starts the server
    layers: list[LayerReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        return {
            "profile": self.profile.name,
            "argv": list(self.argv),
            "namespaces": list(self.namespaces),
            "uid": self.identity.uid,
            "gid": self.identity.gid,
            "hostname": self.hostname,
            "network": self.network,
            "cwd": self.cwd,
            "env": sorted(self.env),
            "mounts": [describe_op(op) for op in self.mounts],
            "layers": [layer.as_dict() for layer in self.layers],
            "warnings": self.warnings,
        }


def describe_op(op: MountOp) -> dict[str, object]:
    d: dict[str, object] = {"op": type(op).__name__.lower()}
    for k, v in op.__dict__.items():
        if k == "content":
            d["bytes"] = len(v)
        elif k == "mode":
            d[k] = oct(v)
        elif v not in (None, ""):
            d[k] = v
    return d


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostContext:
    uid: int
    gid: int
    home: str
    user: str
    env: dict[str, str]

    @classmethod
    def current(cls) -> HostContext:
        uid = os.getuid()
        home = os.environ.get("HOME") or "/"
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or str(uid)
        return cls(uid=uid, gid=os.getgid(), home=home, user=user, env=dict(os.environ))


@dataclass(frozen=True)
class RunRequest:
    argv: tuple[str, ...]
    session: str | None = None
    add_dir: str = "/run/ringfence/add"
    pass_fds: tuple[int, ...] = ()
    vaults: tuple[Any, ...] = ()


SYSTEM_TOP_DIRS_RO = {
    "yes": ("usr", "boot", "efi"),
    "full": ("usr", "boot", "efi", "etc"),
}
# Host top-level entries never bound from the host tree: the sandbox gets fresh ones.
_HOST_SKIP = {"proc", "sys", "dev", "tmp", "run", "home", "root", "lost+found"}
_ENV_ALLOW = ("PATH", "TERM", "LANG", "TZ", "COLORTERM")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


def _norm_dest(key: str, path: str, home: str) -> str:
    if path.startswith("~"):
        path = home + path[1:]
    path = path.replace("%h", home)
    if not path.startswith("/"):
        raise ProfileError(f"{key}: {path!r} must be an absolute path inside the sandbox")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ProfileError(f"{key}: {path!r} leaves the sandbox root ('..' is not allowed)")
    return "/" + "/".join(parts)


def _host_path(key: str, path: str, home: str, cwd: str | None = None) -> str:
    if path.startswith("~"):
        path = home + path[1:]
    path = path.replace("%h", home)
    if not os.path.isabs(path):
        path = os.path.join(cwd or os.getcwd(), path)
    return os.path.realpath(path)


def _split_bind(key: str, entry: str, home: str) -> tuple[str, str, bool, bool] | None:
    """Parse a systemd BindPaths= entry: [-]SRC[:DEST[:OPTIONS]]. Returns src, dest, optional,
    recursive."""
    optional = entry.startswith("-")
    if optional:
        entry = entry[1:]
    parts = entry.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ProfileError(f"{key}={entry!r}: expected SRC[:DEST[:OPTIONS]]")
    src = parts[0]
    dest = parts[1] if len(parts) > 1 and parts[1] else src
    opts = parts[2] if len(parts) > 2 else "rbind"
    if opts not in ("rbind", "norbind"):
        raise ProfileError(f"{key}={entry!r}: option {opts!r} must be rbind or norbind")
    host = _host_path(key, src, home)
    if not os.path.lexists(host):
        if optional:
            return None
        raise ProfileError(
            f"{key}: source {src} does not exist (create it, or prefix the entry with '-' "
            "to make it optional)"
        )
    return host, _norm_dest(key, dest, home), optional, opts == "rbind"


class _Builder:
    def __init__(self, profile: Profile, ctx: HostContext) -> None:
        self.p = profile
        self.ctx = ctx
        self.ops: list[MountOp] = []
        self.home = ctx.home

    def add(self, op: MountOp) -> None:
        self.ops.append(op)

    # -- base tree ------------------------------------------------------------------------
    def base_tree(self) -> None:
        p = self.p
        if p.root == "empty":
            return
        if p.root == "minimal":
            ro_sys = p.protect_system != "no"
            for top in ("usr", "etc"):
                if os.path.isdir("/" + top):
                    ro = ro_sys if top == "usr" else p.protect_system in ("full", "strict")
                    self.add(Bind("/" + top, "/" + top, readonly=ro, why="Root=minimal"))
            for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
                self._mirror_top(top, readonly=ro_sys, why="Root=minimal")
            return
        # Root=host: every top-level directory of the host except the API and home trees.
        try:
            entries = sorted(os.listdir("/"))
        except OSError:
            entries = []
        for top in entries:
            if top in _HOST_SKIP or top.startswith("."):
                continue
            ro = self._system_readonly(top)
            self._mirror_top(top, readonly=ro, why="Root=host")

    def _system_readonly(self, top: str) -> bool:
        ps = self.p.protect_system
        if ps == "strict":
            return True
        return top in SYSTEM_TOP_DIRS_RO.get(ps, ())

    def _mirror_top(self, top: str, readonly: bool, why: str) -> None:
        path = "/" + top
        if os.path.islink(path):
            self.add(Symlink(os.readlink(path), path, why=why))
        elif os.path.isdir(path):
            self.add(Bind(path, path, readonly=readonly, why=why))

    # -- home, tmp, run, api filesystems ----------------------------------------------------
    def homes(self) -> None:
        p = self.p
        if p.root == "empty":
            if p.private_home:
                self.add(Tmpfs(self.home, mode=0o700, why="PrivateHome"))
            return
        ph = p.protect_home
        for top in ("/home", "/root"):
            if not os.path.isdir(top):
                continue
            if ph == "no":
                self.add(Bind(top, top, readonly=False, why="ProtectHome=no"))
            elif ph == "read-only":
                self.add(Bind(top, top, readonly=True, why="ProtectHome=read-only"))
            elif ph == "tmpfs":
                self.add(Tmpfs(top, mode=0o755, readonly=True, why="ProtectHome=tmpfs"))
            else:
                self.add(Inaccessible(top, why="ProtectHome=yes"))
        if p.private_home:
            self.add(Tmpfs(self.home, mode=0o700, why="PrivateHome"))

    def api(self) -> None:
        p = self.p
        if p.root != "empty":
            self.add(Tmpfs("/run", mode=0o755, why="fresh /run"))
        if p.private_tmp:
            self.add(Tmpfs("/tmp", mode=0o1777, why="PrivateTmp"))
            if p.root == "host" and os.path.isdir("/var/tmp"):
                self.add(Tmpfs("/var/tmp", mode=0o1777, why="PrivateTmp"))
        elif p.root != "empty" and os.path.isdir("/tmp"):
            self.add(Bind("/tmp", "/tmp", readonly=False, why="PrivateTmp=no"))
        if p.mount_api_vfs:
            self.add(
                Proc(
                    "/proc",
                    hidepid=p.protect_proc,
                    subset="pid" if p.proc_subset == "pid" else None,
                    protect_tunables=p.protect_kernel_tunables,
                    why="MountAPIVFS",
                )
            )
            if p.private_devices:
                self.add(Dev("/dev", why="PrivateDevices"))
            else:
                self.add(Bind("/dev", "/dev", readonly=False, device=True, why="PrivateDevices=no"))
                self.add(Tmpfs("/dev/shm", mode=0o1777, why="PrivateIPC: no host POSIX shm"))
        for dest in p.proc_mounts:
            self.add(
                Proc(
                    _norm_dest("--proc", dest, self.home),
                    hidepid=p.protect_proc,
                    protect_tunables=p.protect_kernel_tunables,
                    why="--proc",
                )
            )
        for dest in p.dev_mounts:
            self.add(Dev(_norm_dest("--dev", dest, self.home), why="--dev"))
        if p.mount_sysfs:
            self.add(Sysfs("/sys", from_host=not p.private_network, why="MountSysfs"))
        if p.protect_kernel_modules and p.root != "empty":
            seen: set[str] = set()
            for mod in ("/usr/lib/modules", "/lib/modules"):
                real = os.path.realpath(mod)
                if os.path.isdir(mod) and real not in seen:
                    seen.add(real)
                    self.add(Inaccessible(real, why="ProtectKernelModules"))
        if p.private_machine_id and p.root != "empty":
            for mid in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
                if os.path.exists(mid) and (mid.startswith("/etc") or p.root == "host"):
                    self.add(
                        File(
                            mid,
                            (os.urandom(16).hex() + "\n").encode(),
                            0o444,
                            why="PrivateMachineID",
                        )
                    )

    # -- explicit paths -------------------------------------------------------------------
    def explicit(self) -> None:
        p = self.p
        for entry in p.temporary_file_systems:
            path, _, opts = entry.partition(":")
            ro = "ro" in opts.split(",")
            mode = 0o755
            for o in opts.split(","):
                if o.startswith("mode="):
                    try:
                        mode = int(o[5:], 8)
                    except ValueError:
                        raise ProfileError(f"TemporaryFileSystems={entry!r}: bad mode") from None
            self.add(
                Tmpfs(
                    _norm_dest("TemporaryFileSystems", path, self.home),
                    mode=mode,
                    readonly=ro,
                    why="TemporaryFileSystems",
                )
            )
        for key, entries, ro in (
            ("BindReadOnlyPaths", p.bind_read_only_paths, True),
            ("BindPaths", p.bind_paths, False),
        ):
            for entry in entries:
                parsed = _split_bind(key, entry, self.home)
                if parsed:
                    src, dest, _opt, _rec = parsed
                    self.add(Bind(src, dest, readonly=ro, why=key))
        for entry in p.read_write_paths:
            optional = entry.startswith("-")
            path = entry.lstrip("-")
            host = _host_path("ReadWritePaths", path, self.home)
            if not os.path.exists(host):
                if optional:
                    continue
                raise ProfileError(
                    f"ReadWritePaths: {path} does not exist (prefix with '-' to make it optional)"
                )
            self.add(
                Bind(
                    host,
                    _norm_dest("ReadWritePaths", path, self.home),
                    readonly=False,
                    why="ReadWritePaths",
                )
            )
        for entry in p.read_only_paths:
            optional = entry.startswith("-")
            self.add(
                Remount(
                    _norm_dest("ReadOnlyPaths", entry.lstrip("-"), self.home),
                    readonly=True,
                    optional=optional,
                    why="ReadOnlyPaths",
                )
            )
        for entry in p.inaccessible_paths:
            optional = entry.startswith("-")
            path = _norm_dest("InaccessiblePaths", entry.lstrip("-"), self.home)
            is_dir = not os.path.exists(path) or os.path.isdir(path)
            self.add(Inaccessible(path, is_dir=is_dir, why="InaccessiblePaths"))
        for entry in p.symlinks:
            target, sep, link = entry.partition(":")
            if not sep or not target or not link:
                raise ProfileError(f"Symlinks={entry!r}: expected TARGET:LINK")
            self.add(Symlink(target, _norm_dest("Symlinks", link, self.home), why="--symlink"))


def _depth(op: MountOp) -> int:
    return op.dest.rstrip("/").count("/")


def compile_plan(profile: Profile, request: RunRequest, ctx: HostContext | None = None) -> Plan:
    ctx = ctx or HostContext.current()
    p = profile
    if not request.argv and request.session is None:
        raise ProfileError("no command given: ringfence run [OPTIONS] -- COMMAND [ARGS...]")

    identity = _identity(p, ctx)
    home = ctx.home if identity.drop_to is None else "/nonexistent"
    if identity.drop_to is not None:
        ctx = HostContext(ctx.uid, ctx.gid, home, ctx.user, ctx.env)
    b = _Builder(p, ctx)
    b.base_tree()
    b.homes()
    b.api()
    b.explicit()
    argv = tuple(request.argv)
    if p.file_arguments == "read-only" and p.root != "empty":
        argv = _file_arguments(b, argv)
    display = _resolve_display(p.display, ctx)
    grants = _desktop_grants(b, p, ctx, display)
    network = "host" if not p.private_network else p.network
    if display is not None and display.kind != "host" and network == "host":
        # X clients try the abstract socket @/tmp/.X11-unix/X0 before the file: in the host's
        # network namespace that is the host's own display :0, not the nested one.
        raise ProfileError(
            f"Display={display.kind} needs the sandbox's own network namespace (with the "
            "host's, DISPLAY=:0 would reach your real display): use --net none or --net user"
        )
    if network == "user" and p.root != "empty":
        # The user-mode stack's DNS forwarder, in place of the host's resolver configuration.
        from .runtime.usernet import RESOLV_CONF

        b.add(File("/etc/resolv.conf", RESOLV_CONF.encode(), 0o444, why="--net user DNS"))
    if request.session is not None:
        # The drop zone for `ringfence add`: read-only to the payload; files appear in it as
        # bind mounts made by the session's stager (runtime/stager.py).
        b.add(
            Tmpfs(
                _norm_dest("AddDirectory", request.add_dir, ctx.home),
                mode=0o755,
                readonly=True,
                why="drop zone for `ringfence add`",
            )
        )
    # Parents before children; for the same depth, the order written (later wins).
    ops = sorted(b.ops, key=_depth)

    namespaces = ["user", "mnt", "pid", "uts", "cgroup"]
    if p.private_ipc:
        namespaces.append("ipc")
    if network != "host":
        namespaces.append("net")

    env = _environment(p, ctx, home)
    env.update(grants)
    # Start in the home directory when the sandbox has one, else at the root.
    home_visible = p.protect_home in ("no", "read-only") and os.path.isdir(home)
    cwd = home if p.private_home or (home_visible and p.root != "empty") else "/"
    if p.working_directory:
        cwd = _norm_dest("WorkingDirectory", p.working_directory, home)

    from .kernel.caps import last_cap

    plan = Plan(
        profile=p,
        argv=argv,
        env=env,
        cwd=cwd,
        namespaces=tuple(namespaces),
        identity=identity,
        hostname=p.hostname,
        mounts=tuple(ops),
        network=network,
        pass_fds=tuple(request.pass_fds),
        cap_last=last_cap(),
        limits=tuple(p.limits),
        keyring_private=p.keyring_mode == "private",
        seccomp=p.seccomp,
        landlock=_landlock_with_paths(
            p.landlock, ops, request.vaults, request.add_dir if request.session else None
        ),
        usernet=p.usernet,
        cgroup=p.cgroup,
        vaults=tuple(request.vaults),
        session=request.session,
        add_dir=request.add_dir if request.session else None,
        display=display,
    )
    _report(plan)
    return plan


def fresh_identifiers(plan: Plan) -> Plan:
    """The same plan with new random identifiers (the machine-id files of PrivateMachineID), for
    each sandbox started from one compiled plan (a pool's): two runs must not be linkable."""
    from ._record import replace

    def renew(op: MountOp) -> MountOp:
        if isinstance(op, File) and op.why == "PrivateMachineID":
            return replace(op, content=(os.urandom(16).hex() + "\n").encode())
        return op

    return replace(plan, mounts=tuple(renew(op) for op in plan.mounts))


# -- the desktop use case: files on the command line, a nested display, explicit grants -------

# Sources the launcher fills in once it has started the sandbox's display server (runtime/
# display.py): not absolute, so they can never name a host path by accident.
DISPLAY_SOCKET = "<the nested display's socket>"
DISPLAY_COOKIE = "<the nested display's cookie>"
_PSEUDO_FS = ("proc", "sys", "dev")


def _file_arguments(b: _Builder, argv: tuple[str, ...]) -> tuple[str, ...]:
    """FileArguments=read-only: each argument that names an existing regular file on the host
    (absolute, or relative to the caller's directory) is bound read-only at its real path, and
    the argument is rewritten to that path, so `app ~/doc.pdf` works and sees nothing else.
    Directories, options ("-x", "--x=...") and files of /proc, /sys and /dev are left alone."""
    import stat

    out = [argv[0]] if argv else []
    cwd = os.getcwd()
    for arg in argv[1:]:
        if not arg or arg.startswith("-"):
            out.append(arg)
            continue
        real = os.path.realpath(os.path.join(cwd, arg))
        if real.split("/")[1] in _PSEUDO_FS:
            out.append(arg)
            continue
        try:
            st = os.stat(real)
        except OSError:
            out.append(arg)
            continue
        if not stat.S_ISREG(st.st_mode):
            out.append(arg)
            continue
        why = "FileArguments=read-only"
        b.add(
            Bind(
                real, real, readonly=True, why=why, identity=(st.st_dev, st.st_ino, st.st_ctime_ns)
            )
        )
        out.append(real)
    return tuple(out)


def _resolve_display(config: Any, ctx: HostContext) -> Any:
    """Display=auto: Xephyr (a window on the caller's screen) when the caller has an X display
    and Xephyr is installed, else Xvfb (headless)."""
    if config is None or config.kind != "auto":
        return config
    from ._record import replace
    from .runtime.display import resolve_kind

    return replace(config, kind=resolve_kind(config, ctx.env))


def _desktop_grants(b: _Builder, p: Profile, ctx: HostContext, display: Any) -> dict[str, str]:
    """The binds and variables of Display=, SessionBus= and Sound=; returns the variables."""
    env: dict[str, str] = {}
    if display is not None:
        from .runtime.display import SANDBOX_DISPLAY, SANDBOX_SOCKET, SANDBOX_XAUTHORITY

        why = f"Display={display.kind}"
        # A directory of its own for X sockets, whatever /tmp is (PrivateTmp=no, a bind): the
        # host's other displays /tmp/.X11-unix/X1... must not be reachable by path.
        b.add(Tmpfs(os.path.dirname(SANDBOX_SOCKET), mode=0o755, why=why))
        b.add(Bind(DISPLAY_SOCKET, SANDBOX_SOCKET, readonly=True, why=why))
        b.add(Bind(DISPLAY_COOKIE, SANDBOX_XAUTHORITY, readonly=True, why=why))
        env.update(DISPLAY=SANDBOX_DISPLAY, XAUTHORITY=SANDBOX_XAUTHORITY)
    runtime_dir = ctx.env.get("XDG_RUNTIME_DIR") or f"/run/user/{ctx.uid}"
    if p.session_bus:
        address = ctx.env.get("DBUS_SESSION_BUS_ADDRESS", f"unix:path={runtime_dir}/bus")
        path = _unix_path(address)
        if path is None or not _is_socket(path):
            raise ProfileError(
                f"SessionBus=yes: no session bus socket at {address!r} (only unix:path= "
                "addresses can be bound); start the sandbox from a desktop session or drop it"
            )
        b.add(Bind(path, "/run/ringfence/bus", readonly=True, why="SessionBus=yes"))
        env["DBUS_SESSION_BUS_ADDRESS"] = "unix:path=/run/ringfence/bus"
    if p.sound:
        pulse, pipewire = f"{runtime_dir}/pulse/native", f"{runtime_dir}/pipewire-0"
        found = False
        if _is_socket(pulse):
            b.add(Bind(pulse, "/run/ringfence/pulse/native", readonly=True, why="Sound=yes"))
            env["PULSE_SERVER"] = "unix:/run/ringfence/pulse/native"
            found = True
        if _is_socket(pipewire):
            b.add(Bind(pipewire, "/run/ringfence/pipewire-0", readonly=True, why="Sound=yes"))
            env["PIPEWIRE_REMOTE"] = "/run/ringfence/pipewire-0"
            found = True
        if not found:
            raise ProfileError(
                f"Sound=yes: no PulseAudio or PipeWire socket in {runtime_dir} "
                "(pulse/native, pipewire-0); start the sound server or drop Sound="
            )
    return env


def _unix_path(address: str) -> str | None:
    """The socket path of the first unix:path= entry of a D-Bus address list."""
    for entry in address.split(";"):
        kind, _, params = entry.partition(":")
        if kind != "unix":
            continue
        for param in params.split(","):
            key, _, value = param.partition("=")
            if key == "path" and value.startswith("/"):
                return value
    return None


def _is_socket(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _landlock_with_paths(
    policy: Any, ops: list[MountOp], vaults: tuple[Any, ...], add_dir: str | None = None
) -> Any:
    """Derive Landlock's filesystem rules from the mount plan: the same tree, a second wall.

    Read-only mounts may be read and executed; writable ones read, written and executed (W^X
    is seccomp's job, not the filesystem's); /dev also gets device ioctls (terminals). Paths the
    plan hides (Inaccessible) and the root itself get no rule at all.
    """
    if policy is None:
        return None
    from ._record import replace
    from .kernel.landlock import PathRule

    # Listing directories reveals only names the mount plan already chose to show; without it
    # `ls /` would fail, since the root itself gets no other rule.
    rules: dict[str, Any] = {"/": PathRule("/", frozenset({"read_dir"}), required=False)}
    for op in ops:
        access: Any
        if isinstance(op, Bind):
            access = "rx" if op.readonly else "rwx"
        elif isinstance(op, Tmpfs):
            access = "rx" if op.readonly else "rwx"
            if op.mode == 0:
                continue
        elif isinstance(op, File):
            access = "ro"
        elif isinstance(op, (Proc, Sysfs)):
            access = "rw"
        elif isinstance(op, Dev):
            access = frozenset({"read_file", "write_file", "read_dir", "ioctl_dev"})
            rules[op.dest + "/shm"] = PathRule(op.dest + "/shm", "rwx", required=False)
        else:
            continue
        rules[op.dest] = PathRule(op.dest, access, required=False)
    if add_dir:
        # Added paths are mounted read-only or read-write by the stager; the mount decides.
        rules[add_dir] = PathRule(add_dir, "rwx", required=False)
    for v in vaults:
        mp = getattr(v, "mountpoint", None)
        if isinstance(mp, str):
            rules[mp] = PathRule(mp, "rwx", required=False)
    return replace(policy, paths=(*policy.paths, *rules.values()))


def _identity(p: Profile, ctx: HostContext) -> Identity:
    if ctx.uid != 0:
        if p.user is not None or p.group is not None:
            raise ProfileError(
                "User=/Group= (--uid/--gid) need root: an unprivileged caller "
                "always runs the payload as itself"
            )
        return Identity(ctx.uid, ctx.gid)
    uid = _lookup_uid(p.user) if p.user is not None else 65534
    gid = _lookup_gid(p.group) if p.group is not None else (_primary_gid(uid) if p.user else 65534)
    if uid == 0:
        raise ProfileError(
            "User=root: ringfence never runs the payload as host root; choose an unprivileged user"
        )
    return Identity(uid, gid, drop_to=(uid, gid))


def _lookup_uid(user: str) -> int:
    if user.isdigit():
        return int(user)
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ProfileError(f"User={user!r}: no such user on this host") from None


def _primary_gid(uid: int) -> int:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return 65534


def _lookup_gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ProfileError(f"Group={group!r}: no such group on this host") from None


def _environment(p: Profile, ctx: HostContext, home: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in ctx.env.items():
        if key in _ENV_ALLOW or key.startswith("LC_"):
            env[key] = value
    for key in p.pass_environment:
        if key in ctx.env:
            env[key] = ctx.env[key]
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOME"] = home
    for entry in p.environment:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ProfileError(f"Environment={entry!r}: expected NAME=VALUE")
        env[key] = value
    for key in p.unset_environment:
        env.pop(key, None)
    return env


def _report(plan: Plan) -> None:
    p = plan.profile
    L = plan.layers
    ns = ", ".join(plan.namespaces)
    L.append(LayerReport("namespaces", True, ns))
    L.append(LayerReport("root", True, f"empty tmpfs + pivot_root; Root={p.root}"))
    L.append(LayerReport("ProtectSystem", p.root != "empty", p.protect_system))
    L.append(LayerReport("ProtectHome", p.root != "empty", p.protect_home))
    L.append(LayerReport("PrivateTmp", p.private_tmp))
    L.append(
        LayerReport(
            "PrivateDevices",
            p.private_devices and p.mount_api_vfs,
            why="" if p.mount_api_vfs else "no /dev at all (MountAPIVFS=no)",
        )
    )
    L.append(
        LayerReport(
            "PrivateNetwork",
            plan.network != "host",
            plan.network,
            why="" if plan.network != "host" else "shares the host network",
        )
    )
    L.append(LayerReport("PrivateIPC", p.private_ipc))
    L.append(LayerReport("ProtectHostname", True, plan.hostname))
    L.append(LayerReport("ProtectKernelTunables", p.protect_kernel_tunables))
    L.append(LayerReport("ProtectProc", p.mount_api_vfs, p.protect_proc))
    who = f"uid {plan.identity.uid}" + (" (dropped from root)" if plan.identity.drop_to else "")
    L.append(LayerReport("identity", True, who))
    L.append(LayerReport("capabilities", True, "all sets empty, securebits locked"))
    L.append(LayerReport("NoNewPrivileges", True))
    L.append(LayerReport("environment", True, f"{len(plan.env)} variables (allowlist)"))
    L.append(
        LayerReport(
            "file descriptors",
            True,
            f"0-2 + {list(plan.pass_fds)}" if plan.pass_fds else "0-2 only",
        )
    )
    L.append(LayerReport("terminal", True, "new session; pty when interactive"))
    L.append(
        LayerReport(
            "KeyringMode",
            plan.keyring_private,
            p.keyring_mode,
            why="" if plan.keyring_private else "inherits the caller's keyrings",
        )
    )
    if plan.seccomp is not None:
        from .kernel.seccomp import describe as sc_describe

        d = sc_describe(plan.seccomp)
        L.append(
            LayerReport(
                "seccomp",
                True,
                f"{d.get('mode')} filter, "
                f"{d.get('syscalls')} syscalls denied, {d.get('rules')} rules, ABIs "
                f"{d.get('architectures')} (blocked: {d.get('blocked_architectures')})",
            )
        )
    else:
        L.append(LayerReport("seccomp", False, why="no SystemCallFilter keys in this profile"))
    if plan.landlock is not None:
        L.append(
            LayerReport(
                "landlock",
                None,
                f"{len(plan.landlock.paths)} path rules "
                "derived from the mounts; ABI decided at run time",
                why="" if plan.landlock.required else "best-effort",
            )
        )
    else:
        L.append(LayerReport("landlock", False, why="Landlock=off"))
    if plan.limits:
        L.append(
            LayerReport(
                "rlimits", True, ", ".join(f"{lim.key}={lim.describe()}" for lim in plan.limits)
            )
        )
    else:
        L.append(LayerReport("rlimits", False, why="no Limit*= keys set"))
    if plan.cgroup is not None:
        from .kernel import cgroup

        applied, detail, why = cgroup.plan_layer(plan.cgroup)
        L.append(LayerReport("cgroup", applied, detail, why=why))
    else:
        L.append(LayerReport("cgroup", False, why="no TasksMax/MemoryMax/CPUQuota keys set"))
    _desktop_report(plan)


def _desktop_report(plan: Plan) -> None:
    """Only for profiles that touch the desktop keys: the others say nothing about them."""
    p = plan.profile
    if not (plan.display or p.file_arguments != "no" or p.session_bus or p.sound):
        return
    L = plan.layers
    d = plan.display
    if d is None:
        L.append(LayerReport("display", False, why="no display: X clients cannot connect"))
    elif d.kind == "host":
        L.append(
            LayerReport(
                "display",
                False,
                "the host's own X display, at :0, with an untrusted cookie (X SECURITY)",
                why="EXPOSURE: the app's windows share the real screen",
            )
        )
    else:
        L.append(
            LayerReport(
                "display",
                True,
                f"nested {d.kind} {d.size} of its own at :0 (started by the launcher); "
                "the host's X socket is not in the sandbox",
            )
        )
    bound = [
        op.src for op in plan.mounts if isinstance(op, Bind) and op.why == "FileArguments=read-only"
    ]
    if p.file_arguments != "no":
        L.append(
            LayerReport(
                "file arguments",
                True,
                f"{len(bound)} file(s) named on the command line, read-only: {', '.join(bound)}"
                if bound
                else "none of the arguments names a host file",
            )
        )
    L.append(
        LayerReport(
            "session bus",
            not p.session_bus,
            "granted" if p.session_bus else "not in the sandbox",
            why="EXPOSURE: SessionBus=yes (the app can talk to every desktop service)"
            if p.session_bus
            else "",
        )
    )
    L.append(
        LayerReport(
            "sound",
            not p.sound,
            "granted" if p.sound else "not in the sandbox",
            why="EXPOSURE: Sound=yes (the app can record from the microphone)" if p.sound else "",
        )
    )
