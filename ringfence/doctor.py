"""``ringfence doctor``: what this host offers a sandbox, each finding with its fix.

Owns: reading the host settings that decide whether and how well ringfence confines (kernel,
user namespaces and the sysctls that restrict them, Yama, Landlock, seccomp and libseccomp,
/dev/fuse and /dev/net/tun, cgroups, dev.tty.legacy_tiocsti, helper tools) and one end-to-end
launch of the default profile. Each :class:`Check` says OK, WARN (a feature or a protection is
missing; sandboxes still run) or FAIL (ringfence cannot run its default sandbox here).

Must never change the host: it only reads files and tries namespaces and filters in short-lived
forked children of its own. Must never raise for a failed check: a check that cannot tell says
so in its value. Not on the start-up path of a sandbox.
"""

from __future__ import annotations

import os
import sys

from ._record import record as dataclass

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Callable

OK, WARN, FAIL = "OK", "WARN", "FAIL"

# The kernel features the runtime cannot do without: the new mount API with mount_setattr
# (5.12) for recursive read-only binds; pidfd_open (5.3) and close_range (5.9) are older.
MIN_KERNEL = (5, 12)
NOBODY = 65534  # a root caller's sandbox runs as this uid (plan._identity); test as it

# Landlock ABI -> first kernel with it (Documentation/userspace-api/landlock.rst)
_LANDLOCK_KERNEL = {1: "5.13", 2: "5.19", 3: "6.2", 4: "6.7", 5: "6.10", 6: "6.12", 7: "6.15"}


@dataclass(frozen=True)
class Check:
    """One finding: ``name`` (stable, also the JSON key), what was seen, the verdict, and, when
    it is not OK, the command or setting that fixes it."""

    name: str
    value: str
    status: str  # OK, WARN or FAIL
    fix: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "value": self.value,
            "status": self.status,
            "fix": self.fix,
            "note": self.note,
        }


# --- helpers ---------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _in_child(work: Callable[[], None]) -> str | None:
    """Run ``work`` in a forked child (so whatever it changes dies with it); None if it
    succeeded, else the child's one-line error."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            work()
        except BaseException as e:
            os.write(w, (str(e) or type(e).__name__).encode()[:4000])
            code = 1
        os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 4096):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    message = b"".join(chunks).decode(errors="replace").strip()
    if status == 0:
        return None
    if message:
        return message
    code = os.waitstatus_to_exitcode(status)
    return f"the test process died (signal {-code})" if code < 0 else f"exit status {code}"


def _which(name: str, path: str | None) -> str | None:
    """Like the runtime's lookups (vault.find_gocryptfs, usernet.which): absolute PATH
    entries only."""
    for d in (path if path is not None else "/usr/local/bin:/usr/bin:/bin").split(":"):
        candidate = os.path.join(d, name)
        if d.startswith("/") and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _first_line(argv: list[str], env: dict[str, str]) -> str:
    import subprocess

    try:
        r = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"version unknown ({e.__class__.__name__})"
    for line in (r.stdout + r.stderr).decode(errors="replace").splitlines():
        if line.strip():
            return line.strip().split(";")[0][:80]
    return "version unknown"


# --- the checks ------------------------------------------------------------------------------


def check_kernel() -> Check:
    release = os.uname().release
    try:
        version = tuple(int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return Check("kernel", release, WARN, note="cannot parse the version")
    if version < MIN_KERNEL:
        return Check(
            "kernel",
            release,
            FAIL,
            fix=f"use Linux {MIN_KERNEL[0]}.{MIN_KERNEL[1]} or newer",
            note="ringfence needs the new mount API with mount_setattr (5.12)",
        )
    return Check("kernel", release, OK)


def check_python() -> Check:
    v = sys.version_info
    value = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):
        return Check("python", value, FAIL, fix="use Python 3.11 or newer")
    return Check("python", value, OK)


def check_userns() -> Check:
    """Create a user namespace (and a mount namespace in it) and map our id, as the launcher
    does: as the caller, or as nobody when the caller is root (ringfence drops root first)."""

    def attempt() -> None:
        from .kernel import prctl, userns

        if os.geteuid() == 0:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            prctl.set_dumpable(True)  # the uid change made /proc/self/*_map root's
        uid, gid = os.geteuid(), os.getegid()
        userns.unshare(userns.CLONE_NEWUSER | userns.CLONE_NEWNS)
        userns.write_id_maps(uid, uid, gid, gid)

    who = f"uid {NOBODY}, as a root caller's sandbox" if os.geteuid() == 0 else "this user"
    error = _in_child(attempt)
    if error is None:
        return Check("user namespaces", f"work unprivileged ({who})", OK)
    return Check(
        "user namespaces",
        f"cannot be created ({who})",
        FAIL,
        fix=error,
        note="every ringfence sandbox starts in a new user namespace",
    )


def check_userns_sysctls(userns_ok: bool) -> list[Check]:
    bad = WARN if userns_ok else FAIL
    out = []
    value = _read("/proc/sys/user/max_user_namespaces")
    if value is None:
        out.append(Check("user.max_user_namespaces", "not present", bad, note="CONFIG_USER_NS?"))
    elif value == "0":
        out.append(
            Check(
                "user.max_user_namespaces",
                value,
                bad,
                fix="sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)",
            )
        )
    else:
        out.append(Check("user.max_user_namespaces", value, OK))
    value = _read("/proc/sys/kernel/unprivileged_userns_clone")
    if value is None:
        out.append(
            Check("kernel.unprivileged_userns_clone", "not present (no such switch here)", OK)
        )
    elif value == "0":
        out.append(
            Check(
                "kernel.unprivileged_userns_clone",
                value,
                bad,
                fix="sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/)",
            )
        )
    else:
        out.append(Check("kernel.unprivileged_userns_clone", value, OK))
    value = _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    name = "kernel.apparmor_restrict_unprivileged_userns"
    if value is None:
        out.append(Check(name, "not present (AppArmor does not restrict user namespaces)", OK))
    elif value == "1":
        out.append(
            Check(
                name,
                value,
                bad,
                fix="sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor "
                f"profile granting 'userns,' to {os.path.realpath(sys.executable)}",
                note="" if not userns_ok else "user namespaces still work for this interpreter",
            )
        )
    else:
        out.append(Check(name, value, OK))
    return out


def check_yama() -> Check:
    value = _read("/proc/sys/kernel/yama/ptrace_scope")
    name = "kernel.yama.ptrace_scope"
    reach = (
        "a process of your uid on the host can ptrace a running sandbox's payload (it owns "
        "the sandbox's user namespace) and read its files through /proc/PID/root"
    )
    if value is None:
        return Check(
            name,
            "not present (Yama LSM not active)",
            WARN,
            fix="boot with Yama in the LSM list (lsm=...,yama) and set kernel.yama.ptrace_scope=2",
            note=reach + "; see docs/threat-model.md",
        )
    if value in ("0", "1"):
        return Check(
            name,
            value,
            WARN,
            fix="sysctl -w kernel.yama.ptrace_scope=2",
            note=reach
            + ("; scope 1 does not stop it: the namespace's owner holds CAP_SYS_PTRACE in it"),
        )
    return Check(
        name,
        value,
        OK,
        note="ptrace from the host is blocked; /proc/PID/root and setns by your uid are not",
    )


def check_landlock() -> Check:
    from .kernel import landlock

    abi = landlock.abi_version()
    if abi == 0:
        lsms = _read("/sys/kernel/security/lsm")
        if lsms is not None and "landlock" not in lsms.split(","):
            fix = f"boot with lsm=landlock,{lsms} (the kernel has it but does not enable it)"
        else:
            fix = "use a kernel built with CONFIG_SECURITY_LANDLOCK and boot with lsm=landlock,..."
        return Check(
            "landlock",
            "not available",
            WARN,
            fix=fix,
            note="profiles with Landlock=best-effort (the built-in ones) run without it; "
            "Landlock=required fails",
        )
    value = f"ABI {abi}"
    if abi < 4:
        return Check(
            "landlock",
            value,
            WARN,
            fix=f"Linux {_LANDLOCK_KERNEL[6]} or newer (ABI 6)",
            note="no TCP port rules (AllowBind/AllowConnect need ABI 4) and no scoping of "
            "abstract unix sockets and signals (LandlockScopes need ABI 6)",
        )
    if abi < 6:
        return Check(
            "landlock",
            value,
            WARN,
            fix=f"Linux {_LANDLOCK_KERNEL[6]} or newer (ABI 6)",
            note="no scoping of abstract unix sockets and signals: the built-in profiles' "
            "LandlockScopes are skipped (host abstract sockets such as X11's stay reachable "
            "unless the network namespace hides them)",
        )
    return Check("landlock", value, OK)


def check_libseccomp() -> Check:
    import ctypes

    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return Check(
            "libseccomp",
            "libseccomp.so.2 not loadable",
            FAIL,
            fix="apt-get install libseccomp2 (Fedora: dnf install libseccomp)",
            note="the built-in profiles' seccomp filter is compiled with it",
        )

    class Version(ctypes.Structure):  # seccomp.h: struct scmp_version
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib.seccomp_version.restype = ctypes.POINTER(Version)
    v = lib.seccomp_version().contents
    return Check("libseccomp", f"{v.major}.{v.minor}.{v.micro}", OK)


def check_seccomp() -> Check:
    status = _read("/proc/self/status") or ""
    mode = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("Seccomp:")), None)
    if mode is None:
        return Check(
            "seccomp", "not in this kernel", FAIL, fix="use a kernel with CONFIG_SECCOMP_FILTER"
        )

    def attempt() -> None:
        from .kernel import seccomp

        seccomp.install(seccomp.strict_policy())

    error = _in_child(attempt)
    note = (
        "this process already runs under a seccomp filter (a container or a sandbox?)"
        if mode == "2"
        else ""
    )
    if error is not None:
        return Check(
            "seccomp",
            "the strict profile's filter cannot be loaded",
            FAIL,
            fix=error,
            note=note,
        )
    return Check("seccomp", "the strict profile's filter loads", OK, note=note)


def check_device(path: str, purpose: str, module: str) -> Check:
    import stat

    try:
        st = os.stat(path)
    except OSError:
        return Check(
            path,
            "missing",
            WARN,
            fix=f"modprobe {module}",
            note=f"{purpose} need it",
        )
    mode = stat.S_IMODE(st.st_mode)
    value = f"{stat.filemode(st.st_mode)} ({mode:04o})"
    if not stat.S_ISCHR(st.st_mode):
        return Check(path, value + ", not a character device", WARN, note=f"{purpose} need it")
    if mode & 0o006 != 0o006:
        return Check(
            path,
            value,
            WARN,
            fix=f"as root: chmod 0666 {path} (to keep it: a udev rule "
            f'KERNEL=="{os.path.basename(path)}", MODE="0666")',
            note=f"only its owner can open it, and a root caller's sandbox runs as nobody: "
            f"{purpose} need it",
        )
    return Check(path, value, OK)


def _cgroup_layout() -> str:
    mounts = []
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) > 4 and tail and tail[0] in ("cgroup", "cgroup2"):
            mounts.append((tail[0], fields[4]))
    v2 = [point for kind, point in mounts if kind == "cgroup2"]
    v1 = [point for kind, point in mounts if kind == "cgroup"]
    if v2 and not v1:
        return f"v2 (unified, {v2[0]})"
    if v2 and v1:
        return f"hybrid (v1 controllers, cgroup2 at {v2[0]})"
    if v1:
        return "v1 (legacy)"
    return "none mounted"


def check_cgroup() -> Check:
    layout = _cgroup_layout()
    try:
        from .kernel import cgroup
    except ImportError:
        return Check("cgroups", layout, WARN, note="this ringfence has no cgroup support")
    detect = getattr(cgroup, "detect", None)
    if detect is None:
        return Check("cgroups", layout, WARN, note="this ringfence cannot detect cgroups yet")
    try:
        support = detect()
    except Exception as e:  # a host we do not understand must not stop the report
        return Check("cgroups", layout, WARN, note=f"detection failed: {e}")
    need = frozenset({"pids", "memory", "cpu"})
    backend = support.choose(need)
    if backend is not None:
        return Check("cgroups", f"{layout}; limits via {backend.version}", OK)
    usable = sorted(c for c in need if support.choose(frozenset({c})) is not None)
    return Check(
        "cgroups",
        f"{layout}; usable controllers: {', '.join(usable) or 'none'}",
        WARN,
        fix=support.explain(need),
        note="MemoryMax, TasksMax and CPUQuota need them (CgroupOptional=yes runs without); "
        "rlimits always apply",
    )


def check_tiocsti() -> Check:
    value = _read("/proc/sys/dev/tty/legacy_tiocsti")
    name = "dev.tty.legacy_tiocsti"
    blocked = "ringfence blocks TIOCSTI inside sandboxes (seccomp BlockTerminalInjection, and a new session)"
    if value is None:
        return Check(
            name, "not present (TIOCSTI always enabled before Linux 6.2)", OK, note=blocked
        )
    if value == "1":
        return Check(
            name,
            "1 (TIOCSTI enabled host-wide)",
            OK,
            note=blocked + "; `sysctl -w dev.tty.legacy_tiocsti=0` also protects other programs",
        )
    return Check(name, value, OK)


# (name, version argv, what needs it, Debian package)
_TOOLS = (
    ("gocryptfs", ["--version"], "vaults (--vault, ringfence vault)", "gocryptfs"),
    ("fusermount3", ["-V"], "unmounting vaults by gocryptfs", "fuse3"),
    ("pasta", ["--version"], "--net user (and AllowHostPorts, IPv6 publishing)", "passt"),
    ("slirp4netns", ["--version"], "--net user", "slirp4netns"),
    ("bwrap", ["--version"], "nothing (optional: benchmarks/ compare with it)", "bubblewrap"),
)


def check_tools(path: str | None = None) -> list[Check]:
    path = os.environ.get("PATH") if path is None else path
    env = {"PATH": path or "/usr/bin:/bin", "LC_ALL": "C"}
    found = {name: _which(name, path) for name, *_ in _TOOLS}
    out = []
    for name, args, purpose, package in _TOOLS:
        exe = found[name]
        if exe is not None:
            out.append(Check(name, f"{_first_line([exe, *args], env)} ({exe})", OK))
            continue
        fix = f"apt-get install {package}"
        if name == "bwrap":
            out.append(
                Check(name, "not installed (optional)", OK, note=f"{fix} to run benchmarks/")
            )
        elif name in ("pasta", "slirp4netns") and (
            found["slirp4netns" if name == "pasta" else "pasta"] is not None
        ):
            other = "slirp4netns" if name == "pasta" else "pasta"
            out.append(Check(name, f"not installed ({other} serves --net user)", OK, note=f"{fix}"))
        else:
            out.append(Check(name, "not installed", WARN, fix=fix, note=f"{purpose} need it"))
    return out


def check_sandbox() -> Check:
    """Start the default profile's sandbox for real, in-process, and run /bin/true in it."""
    import subprocess
    import time

    try:
        from .api import run

        t0 = time.monotonic()
        r = run(
            ["/bin/true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        elapsed = (time.monotonic() - t0) * 1000
    except Exception as e:  # anything at all: the report must come out
        return Check("sandbox", "the default profile cannot start", FAIL, fix=str(e))
    if r.returncode != 0:
        err = (r.stderr or b"").decode(errors="replace").strip().splitlines()
        return Check(
            "sandbox",
            f"/bin/true exited {r.returncode} in the default profile",
            FAIL,
            fix=err[-1] if err else "run `RINGFENCE_DEBUG=1 ringfence run -- /bin/true`",
        )
    return Check("sandbox", f"the default profile runs /bin/true ({elapsed:.0f} ms)", OK)


# --- all of it -------------------------------------------------------------------------------


def run_checks(*, launch: bool = True, path: str | None = None) -> list[Check]:
    """Every check, in reading order. ``launch=False`` skips the end-to-end sandbox;
    ``path`` overrides PATH for the tool lookups."""
    userns = check_userns()
    checks = [check_kernel(), check_python(), userns]
    checks += check_userns_sysctls(userns.status == OK)
    checks += [
        check_yama(),
        check_landlock(),
        check_seccomp(),
        check_libseccomp(),
        check_device("/dev/fuse", "vaults (--vault)", "fuse"),
        check_device("/dev/net/tun", "--net user (pasta, slirp4netns)", "tun"),
        check_cgroup(),
        check_tiocsti(),
    ]
    checks += check_tools(path)
    if launch:
        checks.append(check_sandbox())
    return checks


def can_run(checks: list[Check]) -> bool:
    """True when nothing FAILed: ringfence can run its default sandbox here."""
    return all(c.status != FAIL for c in checks)


def to_json(checks: list[Check]) -> dict[str, object]:
    counts = {s: sum(1 for c in checks if c.status == s) for s in (OK, WARN, FAIL)}
    return {"ok": can_run(checks), "counts": counts, "checks": [c.as_dict() for c in checks]}


def to_text(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.value}")
        if c.fix:
            lines.append(f"{'':{width + 6}}  fix: {c.fix}")
        if c.note:
            lines.append(f"{'':{width + 6}}  note: {c.note}")
    warns = sum(1 for c in checks if c.status == WARN)
    fails = [c.name for c in checks if c.status == FAIL]
    if fails:
        lines.append(f"\nringfence cannot run sandboxes here: fix {', '.join(fails)} (see above).")
    else:
        extra = f" ({warns} warning{'s' if warns != 1 else ''}: features or protections missing)"
        lines.append(f"\nringfence can run sandboxes here{extra if warns else ''}.")
    return "\n".join(lines) + "\n"
