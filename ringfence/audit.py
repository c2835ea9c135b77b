"""The exposure score of a compiled plan, item by item, in the manner of `systemd-analyze security`.

Owns: the audit items (what each one protects and its weight), the rules that turn the plan's
settings into a badness per item, the overall 0.0-10.0 exposure and its one-word verdict
(docs/audit.md documents every item and the formula). It scores the *compiled* :class:`Plan`,
so command-line options count exactly as they would for a run (``--net host`` scores worse than
the profile alone).

Must never run anything: no fork, no namespace, no file written, no helper started. The only
kernel query is Landlock's ABI version (a read-only syscall), which a caller may pass in instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .plan import Bind, Dev, File, MountOp, Plan, Proc, Symlink, Sysfs

# systemd-analyze's verdict table (src/analyze/analyze-security.c), on the 0.0-10.0 scale:
# the first row whose threshold the exposure reaches.
VERDICTS: tuple[tuple[float, str], ...] = (
    (10.0, "DANGEROUS"),
    (9.0, "UNSAFE"),
    (7.5, "EXPOSED"),
    (5.0, "MEDIUM"),
    (1.0, "OK"),
    (0.1, "SAFE"),
    (0.0, "PERFECT"),
)


@dataclass(frozen=True)
class Item:
    """One audited setting. ``badness`` runs from 0.0 (fully protected) to 1.0 (fully exposed);
    ``exposure`` is this item's share of the overall score (the shares add up to it)."""

    name: str
    protects: str
    weight: int
    badness: float
    setting: str
    exposure: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "protects": self.protects,
            "setting": self.setting,
            "weight": self.weight,
            "badness": round(self.badness, 3),
            "exposure": round(self.exposure, 2),
            "ok": self.badness == 0,
        }


@dataclass(frozen=True)
class Audit:
    profile: str
    items: tuple[Item, ...]
    exposure: float
    verdict: str
    landlock_abi: int
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "exposure": self.exposure,
            "verdict": self.verdict,
            "scale": "0.0 (nothing exposed) to 10.0 (everything exposed)",
            "landlock_abi": self.landlock_abi,
            "weight_total": sum(i.weight for i in self.items),
            "items": [i.as_dict() for i in self.items],
            "notes": list(self.notes),
        }


def verdict(exposure: float) -> str:
    for threshold, name in VERDICTS:
        if exposure >= threshold:
            return name
    return VERDICTS[-1][1]


# ---------------------------------------------------------------------------------------------
# Reading the mount plan


def _under(path: str, dest: str) -> bool:
    return dest == "/" or path == dest or path.startswith(dest.rstrip("/") + "/")


def covering(plan: Plan, path: str) -> MountOp | None:
    """The mount operation that decides what ``path`` is inside the sandbox: the deepest one
    whose destination contains it (the plan is ordered parents first; later wins on a tie)."""
    found: MountOp | None = None
    for op in plan.mounts:
        if isinstance(op, Symlink):
            continue
        if _under(path, op.dest):
            found = op
    return found


def host_visible(plan: Plan, path: str) -> Bind | None:
    """The Bind through which the host's ``path`` appears at the same place inside, if any."""
    op = covering(plan, path)
    if not isinstance(op, Bind):
        return None
    rest = path[len(op.dest.rstrip("/")) :] if op.dest != "/" else path
    inside = os.path.normpath(op.src.rstrip("/") + "/" + rest.lstrip("/"))
    return op if inside == os.path.normpath(path) else None


def _visibility(plan: Plan, path: str) -> str:
    """'rw', 'ro' or '' for a host path seen at the same place inside."""
    b = host_visible(plan, path)
    if b is None:
        return ""
    return "ro" if b.readonly else "rw"


# ---------------------------------------------------------------------------------------------
# The items. Each rule reads the plan and returns (badness, setting).


@dataclass(frozen=True)
class _Ctx:
    plan: Plan
    landlock_abi: int
    home: str
    host_hostname: str
    notes: list[str]


_Rule = Callable[[_Ctx], tuple[float, str]]


@dataclass(frozen=True)
class _Spec:
    name: str
    protects: str
    weight: int
    rule: _Rule


_SPECS: list[_Spec] = []


def _item(name: str, weight: int, protects: str) -> Callable[[_Rule], _Rule]:
    def register(rule: _Rule) -> _Rule:
        _SPECS.append(_Spec(name, protects, weight, rule))
        return rule

    return register


def _ns(c: _Ctx, ns: str) -> bool:
    return ns in c.plan.namespaces


@_item(
    "PrivateUsers",
    8,
    "the host's privileges: the payload is never host root and its "
    "capabilities exist only in its own user namespace",
)
def _users(c: _Ctx) -> tuple[float, str]:
    who = f"uid {c.plan.identity.uid}"
    if c.plan.identity.drop_to is not None:
        who += " (dropped from root)"
    if not _ns(c, "user") or c.plan.identity.uid == 0:
        return 1.0, who + ", no user namespace"
    return 0.0, f"own user namespace, {who}"


@_item(
    "CapabilityBoundingSet",
    10,
    "privileged kernel operations: every capability set empty, securebits locked",
)
def _caps(c: _Ctx) -> tuple[float, str]:
    p = c.plan.profile
    if p.capability_bounding_set or p.ambient_capabilities:
        return 1.0, "capabilities kept"
    return 0.0, "all sets empty"


@_item("NoNewPrivileges", 6, "privilege gain through setuid/setgid binaries or file capabilities")
def _nnp(c: _Ctx) -> tuple[float, str]:
    return (0.0, "yes") if c.plan.profile.no_new_privileges else (1.0, "no")


@_item("PrivatePIDs", 6, "host processes: seeing, signalling or ptracing them")
def _pids(c: _Ctx) -> tuple[float, str]:
    return (0.0, "own PID namespace") if _ns(c, "pid") else (1.0, "host PID namespace")


@_item("ProtectHostname", 1, "the host's name (an identifier) and the right to change it")
def _uts(c: _Ctx) -> tuple[float, str]:
    if not _ns(c, "uts"):
        return 1.0, "host UTS namespace"
    if c.plan.hostname == c.host_hostname:
        return 0.5, f"own UTS namespace, but hostname {c.plan.hostname!r} is the host's"
    return 0.0, f"own UTS namespace, hostname {c.plan.hostname!r}"


@_item("PrivateCgroup", 1, "the host's cgroup tree layout")
def _cgroup(c: _Ctx) -> tuple[float, str]:
    return (0.0, "own cgroup namespace") if _ns(c, "cgroup") else (1.0, "host cgroup namespace")


@_item("PrivateIPC", 4, "the host's System V shared memory, semaphores and message queues")
def _ipc(c: _Ctx) -> tuple[float, str]:
    return (0.0, "own IPC namespace") if _ns(c, "ipc") else (1.0, "host IPC namespace")


@_item(
    "PrivateNetwork",
    20,
    "the host's network: services on its 127.0.0.1/::1, its interfaces, the LAN and the internet",
)
def _network(c: _Ctx) -> tuple[float, str]:
    plan = c.plan
    if plan.network == "host" or not _ns(c, "net"):
        return 1.0, "host (shared network namespace: host loopback services reachable)"
    if plan.network == "none":
        return 0.0, "none (own loopback only)"
    cfg = plan.usernet
    ports = tuple(getattr(cfg, "allow_host_ports", ()) or ())
    publish = tuple(getattr(cfg, "publish", ()) or ())
    deny = {str(n) for n in getattr(cfg, "ip_deny", ()) or ()}
    allow = tuple(getattr(cfg, "ip_allow", ()) or ())
    base = 0.25
    what = "user (user-mode stack, host loopback blocked)"
    if {"0.0.0.0/0", "::/0"} <= deny:
        base = 0.1 if not allow else 0.15
        what += ", IPAddressDeny=any" + (" with exceptions" if allow else "")
    badness = base + min(0.5, 0.1 * len(ports)) + min(0.2, 0.05 * len(publish))
    if ports:
        what += f", host ports {', '.join(map(str, ports))} open"
    if publish:
        what += f", {len(publish)} published port(s)"
    return min(1.0, badness), what


@_item("Root", 6, "the host's file tree: what of it is visible at all")
def _root(c: _Ctx) -> tuple[float, str]:
    root = c.plan.profile.root
    return {
        "empty": (0.0, "empty (nothing but what is added)"),
        "minimal": (0.1, "minimal (/usr and /etc of the host)"),
        "host": (0.4, "host (every top-level directory but /home, /root, /tmp, API filesystems)"),
    }.get(root, (0.4, root))


# Host directories whose writability the ProtectSystem item scores, and how much each matters.
_SYSTEM_DIRS = (
    ("/usr", 0.5),
    ("/etc", 0.3),
    ("/var", 0.2),
    ("/boot", 0.1),
    ("/efi", 0.1),
    ("/opt", 0.1),
    ("/srv", 0.1),
    ("/mnt", 0.05),
    ("/media", 0.05),
)


@_item(
    "ProtectSystem",
    10,
    "the host's operating system files (/usr, /etc, /var, /boot...) from being modified",
)
def _system(c: _Ctx) -> tuple[float, str]:
    writable = [(d, w) for d, w in _SYSTEM_DIRS if _visibility(c.plan, d) == "rw"]
    setting = c.plan.profile.protect_system
    if not writable:
        return 0.0, f"{setting} (no system directory writable)"
    names = ", ".join(d for d, _ in writable)
    return min(1.0, sum(w for _, w in writable)), f"{setting} (writable: {names})"


@_item("ProtectHome", 15, "users' homes: SSH keys, documents, browser profiles, tokens")
def _home(c: _Ctx) -> tuple[float, str]:
    worst = 0.0
    seen = []
    for path in dict.fromkeys(("/home", "/root", c.home)):
        if not path or path == "/":
            continue
        vis = _visibility(c.plan, path)
        if vis:
            seen.append(f"{path} {vis}")
            worst = max(worst, 1.0 if vis == "rw" else 0.6)
    setting = c.plan.profile.protect_home
    if c.plan.profile.root == "empty":
        setting = "not mounted (Root=empty)"
    return worst, setting + (f" ({', '.join(seen)})" if seen else "")


@_item("PrivateTmp", 6, "the host's /tmp and /var/tmp: other programs' temporary files and sockets")
def _tmp(c: _Ctx) -> tuple[float, str]:
    worst = 0.0
    seen = []
    for path in ("/tmp", "/var/tmp"):
        vis = _visibility(c.plan, path)
        if vis:
            seen.append(f"{path} {vis}")
            worst = max(worst, 1.0 if vis == "rw" else 0.5)
    if worst:
        return worst, "no (" + ", ".join(seen) + ")"
    return 0.0, "yes" if c.plan.profile.private_tmp else "no /tmp from the host"


@_item(
    "PrivateDevices", 8, "host device nodes (disks, input, GPU, /dev/kmsg) and the host's /dev/shm"
)
def _devices(c: _Ctx) -> tuple[float, str]:
    op = covering(c.plan, "/dev")
    if isinstance(op, Bind):
        return 1.0, "no (host /dev bound)"
    if isinstance(op, Dev):
        return 0.0, "yes (minimal /dev)"
    return 0.0, "no /dev at all"


@_item("ProtectProc", 2, "other processes' /proc entries inside the sandbox (hidepid)")
def _proc(c: _Ctx) -> tuple[float, str]:
    procs = [op for op in c.plan.mounts if isinstance(op, Proc)]
    if not procs:
        return 0.0, "no /proc"
    bad = {"invisible": 0.0, "noaccess": 0.0, "ptraceable": 0.3, "default": 0.6}
    worst = max(bad.get(op.hidepid, 0.6) for op in procs)
    return worst, ", ".join(sorted({op.hidepid for op in procs}))


@_item(
    "ProtectKernelTunables",
    3,
    "kernel tunables under /proc/sys, /proc/sysrq-trigger and friends (read-only)",
)
def _tunables(c: _Ctx) -> tuple[float, str]:
    procs = [op for op in c.plan.mounts if isinstance(op, Proc)]
    if not procs:
        return 0.0, "no /proc"
    if all(op.protect_tunables for op in procs):
        return 0.0, "yes"
    return 1.0, "no"


@_item(
    "MountSysfs",
    4,
    "hardware identifiers (DMI serials, MAC addresses) and kernel internals under /sys",
)
def _sysfs(c: _Ctx) -> tuple[float, str]:
    ops = [op for op in c.plan.mounts if isinstance(op, Sysfs)]
    binds = [op for op in c.plan.mounts if isinstance(op, Bind) and op.src.startswith("/sys")]
    if any(op.from_host for op in ops) or binds:
        return 0.8, "host /sys (read-only)"
    if ops:
        return 0.4, "own sysfs (read-only; DMI data still visible)"
    return 0.0, "not mounted"


@_item("ProtectKernelModules", 1, "the host's kernel module files")
def _modules(c: _Ctx) -> tuple[float, str]:
    for path in ("/usr/lib/modules", "/lib/modules"):
        if _visibility(c.plan, path):
            return 1.0, f"no ({path} visible)"
    return 0.0, "yes"


@_item(
    "ProtectKernelLogs",
    2,
    "the kernel log (syslog(2), /dev/kmsg): addresses and other users' activity",
)
def _logs(c: _Ctx) -> tuple[float, str]:
    badness = 0.0
    why = []
    if not _seccomp_denies(c.plan, "syslog"):
        badness += 0.5
        why.append("syslog(2) not filtered")
    if isinstance(covering(c.plan, "/dev/kmsg"), Bind):
        badness += 0.5
        why.append("host /dev/kmsg")
    return badness, "yes" if not why else "; ".join(why)


@_item("PrivateMachineID", 2, "/etc/machine-id, a stable identifier that tracks the machine")
def _machine_id(c: _Ctx) -> tuple[float, str]:
    op = covering(c.plan, "/etc/machine-id")
    if isinstance(op, File):
        return 0.0, "yes (random per sandbox)"
    if host_visible(c.plan, "/etc/machine-id") and os.path.exists("/etc/machine-id"):
        return 1.0, "no (the host's /etc/machine-id is visible)"
    return 0.0, "not visible"


@_item(
    "BindPaths",
    8,
    "host files outside the system tree that the payload may modify or "
    "plant files in (--bind, BindPaths=, ReadWritePaths=)",
)
def _rw_binds(c: _Ctx) -> tuple[float, str]:
    rw = [
        op
        for op in c.plan.mounts
        if isinstance(op, Bind) and not op.readonly and op.why in ("BindPaths", "ReadWritePaths")
    ]
    if not rw:
        return 0.0, "none"
    return min(1.0, 0.3 * len(rw)), ", ".join(op.src for op in rw)


@_item("BindReadOnlyPaths", 3, "host files the payload may read (--ro-bind, BindReadOnlyPaths=)")
def _ro_binds(c: _Ctx) -> tuple[float, str]:
    ro = [
        op
        for op in c.plan.mounts
        if isinstance(op, Bind) and op.readonly and op.why == "BindReadOnlyPaths"
    ]
    if not ro:
        return 0.0, "none"
    return min(1.0, 0.1 * len(ro)), ", ".join(op.src for op in ro)


@_item(
    "PassEnvironment",
    3,
    "secrets in the caller's environment (tokens, SSH_AUTH_SOCK, DBUS_SESSION_BUS_ADDRESS)",
)
def _env(c: _Ctx) -> tuple[float, str]:
    passed = [k for k in c.plan.profile.pass_environment if k in c.plan.env]
    if not passed:
        return 0.0, "allowlist only (" + ", ".join(sorted(c.plan.env)) + ")"
    return min(1.0, 0.34 * len(passed)), "passes " + ", ".join(passed)


@_item(
    "PassFileDescriptors",
    4,
    "inherited descriptors: sockets, terminals and files that reach outside the tree (--pass-fd)",
)
def _fds(c: _Ctx) -> tuple[float, str]:
    if not c.plan.pass_fds:
        return 0.0, "0-2 only"
    return min(1.0, 0.25 * len(c.plan.pass_fds)), "0-2 + " + ", ".join(map(str, c.plan.pass_fds))


@_item("KeyringMode", 4, "the caller's kernel keyrings (stored passwords, tokens, keys)")
def _keyring(c: _Ctx) -> tuple[float, str]:
    return (0.0, "private") if c.plan.keyring_private else (1.0, "inherit")


# -- seccomp ---------------------------------------------------------------------------------

# Calls that widen the kernel's attack surface or reach outside the sandbox; the
# SystemCallFilter item scores the share of them the filter leaves callable. (Namespaces and
# personality have their own items.)
DANGEROUS_SYSCALLS: tuple[str, ...] = (
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "syslog",
    "io_uring_setup",
    "iopl",
    "ioperm",
    "reboot",
    "swapon",
    "acct",
    "quotactl",
    "settimeofday",
    "clock_settime",
    "kcmp",
    "lookup_dcookie",
    "fanotify_init",
    "vhangup",
)


def _seccomp_denies(plan: Plan, name: str) -> bool:
    policy = plan.seccomp
    if policy is None or policy.mode == "off":
        return False
    if policy.mode == "deny":
        return name in policy.syscalls
    return name not in policy.syscalls


def _describe_seccomp(plan: Plan) -> dict[str, Any] | None:
    if plan.seccomp is None:
        return None
    from .kernel import seccomp

    return dict(seccomp.describe(plan.seccomp))


@_item(
    "SystemCallFilter",
    12,
    "the kernel's attack surface: mount API, bpf, ptrace, keyrings, "
    "io_uring, kexec/modules and other dangerous calls",
)
def _syscalls(c: _Ctx) -> tuple[float, str]:
    policy = c.plan.seccomp
    if policy is None or policy.mode == "off":
        return 1.0, "none"
    open_ = [n for n in DANGEROUS_SYSCALLS if not _seccomp_denies(c.plan, n)]
    mode = "allow-list" if policy.mode == "allow" else "deny-list"
    setting = f"{mode} of {len(policy.syscalls)} calls"
    if open_:
        shown = ", ".join(open_[:6]) + (", ..." if len(open_) > 6 else "")
        setting += f"; callable: {shown}"
    return len(open_) / len(DANGEROUS_SYSCALLS), setting


@_item(
    "SystemCallArchitectures",
    3,
    "other system call ABIs (i386, x32) that a native-only filter would not see",
)
def _archs(c: _Ctx) -> tuple[float, str]:
    d = _describe_seccomp(c.plan)
    if d is None:
        return 1.0, "every ABI (no filter)"
    allowed = list(d.get("architectures", []))
    blocked = list(d.get("blocked_architectures", []))
    total = len(allowed) + len(blocked) - 1  # the native ABI is always allowed
    if total <= 0:
        return 0.0, ", ".join(allowed)
    return (len(allowed) - 1) / total, ", ".join(allowed) + (
        f" (killed: {', '.join(blocked)})" if blocked else ""
    )


@_item(
    "RestrictNamespaces",
    8,
    "nested namespaces: a new user namespace gives a full "
    "capability set over it and widens the kernel's attack surface",
)
def _restrict_ns(c: _Ctx) -> tuple[float, str]:
    policy = c.plan.seccomp
    if policy is None or policy.restrict_namespaces is None:
        return 1.0, "no"
    allowed = tuple(policy.restrict_namespaces)
    if not allowed:
        return 0.0, "yes (no namespace may be created)"
    badness = (0.8 if "user" in allowed else 0.0) + 0.05 * len(allowed)
    return min(1.0, badness), "allows " + " ".join(allowed)


_SAFE_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6"}


@_item(
    "RestrictAddressFamilies",
    4,
    "rarely used socket families (packet, bluetooth, vsock...) and their kernel code",
)
def _families(c: _Ctx) -> tuple[float, str]:
    policy = c.plan.seccomp
    if policy is None or policy.address_families is None:
        return 1.0, "all families"
    fams = tuple(policy.address_families)
    if policy.address_families_deny:
        return 0.6, "deny-list: " + " ".join(fams)
    badness = 0.0
    for fam in fams:
        if fam in _SAFE_FAMILIES:
            continue
        badness += {"AF_NETLINK": 0.1, "AF_PACKET": 0.5}.get(fam, 0.2)
    return min(1.0, badness), " ".join(fams) if fams else "none"


def _flag(attr: str, on: str = "yes", off: str = "no", bad: float = 1.0) -> _Rule:
    def rule(c: _Ctx) -> tuple[float, str]:
        policy = c.plan.seccomp
        if policy is not None and getattr(policy, attr):
            return 0.0, on
        return bad, off

    return rule


_item("LockPersonality", 1, "personality(2) changes that weaken ASLR or revive old ABIs")(
    _flag("lock_personality")
)
_item(
    "MemoryDenyWriteExecute",
    2,
    "memory that is both writable and executable (injected code); off where JITs need it",
)(_flag("memory_deny_write_execute"))
_item("RestrictRealtime", 1, "realtime scheduling that can starve the host's CPUs")(
    _flag("restrict_realtime")
)
_item("RestrictSUIDSGID", 2, "creating setuid/setgid files for a later escalation")(
    _flag("restrict_suid_sgid")
)
# setsid() already detaches the payload from the caller's terminal, so the kernel refuses
# TIOCSTI on it without the filter: half the badness when the filter is off.
_item(
    "BlockTerminalInjection", 4, "the caller's terminal: typing into it with TIOCSTI or TIOCLINUX"
)(_flag("block_terminal_injection", "yes", "no (setsid only)", 0.5))
_item("DenyUnknownSystemCalls", 1, "system calls newer than the filter, which it cannot name")(
    _flag("deny_unknown_syscalls")
)


# -- Landlock --------------------------------------------------------------------------------


@_item(
    "Landlock",
    8,
    "a second, self-imposed wall on files (independent of the mount tree) "
    "and, where asked, TCP ports",
)
def _landlock(c: _Ctx) -> tuple[float, str]:
    policy = c.plan.landlock
    if policy is None:
        return 1.0, "off"
    from .errors import UnsupportedError
    from .kernel import landlock

    mode = "required" if policy.required else "best-effort"
    try:
        resolved = landlock.resolve(policy, c.landlock_abi)
    except UnsupportedError as e:
        c.notes.append(f"Landlock: {e}: a run with this profile fails on this kernel")
        return 0.0, f"{mode}: this kernel cannot enforce it, runs fail"
    if resolved.abi <= 0:
        return 1.0, f"{mode}, but this kernel has no Landlock: not enforced"
    fs_dropped = [
        d.feature
        for d in resolved.dropped
        if d.feature.startswith("fs:") and d.feature != "fs:refer grant"
    ]
    badness = min(0.6, 0.1 * len(fs_dropped))
    setting = f"{mode}, ABI {resolved.abi}, {len(resolved.rules)} path rules"
    if fs_dropped:
        setting += "; not restricted here: " + ", ".join(f[3:] for f in fs_dropped)
    return badness, setting


@_item(
    "LandlockScopes",
    4,
    "the host's abstract unix sockets (X11, D-Bus, systemd) and "
    "signals to processes outside the sandbox",
)
def _scopes(c: _Ctx) -> tuple[float, str]:
    from .kernel import landlock

    policy = c.plan.landlock
    enforced = (
        policy is not None
        and policy.scope_abstract_unix
        and c.landlock_abi >= landlock.SCOPES["abstract_unix_socket"][1]
    )
    if c.plan.network != "host" and _ns(c, "net"):
        return 0.0, "abstract sockets are per network namespace: own one" + (
            "; also scoped" if enforced else ""
        )
    if enforced:
        return 0.0, "abstract-unix scoped (host network shared)"
    return 1.0, "host network shared and abstract sockets not scoped"


# -- the desktop -------------------------------------------------------------------------------


@_item(
    "Display",
    6,
    "the real screen: reading other windows, keystrokes and the clipboard of the X display",
)
def _display(c: _Ctx) -> tuple[float, str]:
    d = c.plan.display
    if d is None:
        return 0.0, "none"
    if d.kind == "host":
        return 0.8, "the host's own X display, as an untrusted client (X SECURITY)"
    return 0.1, f"nested {d.kind} of its own (the real screen is out of reach)"


@_item("SessionBus", 5, "desktop services on the caller's D-Bus session bus")
def _session_bus(c: _Ctx) -> tuple[float, str]:
    return (1.0, "granted") if c.plan.profile.session_bus else (0.0, "not in the sandbox")


@_item("Sound", 4, "the microphone and speakers (PulseAudio/PipeWire)")
def _sound(c: _Ctx) -> tuple[float, str]:
    return (1.0, "granted") if c.plan.profile.sound else (0.0, "not in the sandbox")


# -- resources -------------------------------------------------------------------------------

_LIMIT_CREDIT = (
    ("LimitNPROC", 0.4),
    ("LimitAS", 0.3),
    ("LimitDATA", 0.3),
    ("LimitRSS", 0.3),
    ("LimitNOFILE", 0.1),
    ("LimitFSIZE", 0.1),
    ("LimitCORE", 0.1),
    ("TasksMax", 0.4),
    ("MemoryMax", 0.3),
    ("CPUQuota", 0.1),
)
_LIMIT_GROUP = {
    "LimitNPROC": "tasks",
    "TasksMax": "tasks",
    "LimitAS": "memory",
    "LimitDATA": "memory",
    "LimitRSS": "memory",
    "MemoryMax": "memory",
}


@_item(
    "Limits",
    5,
    "the host's resources: fork bombs, memory, file descriptors, disk (Limit*= rlimits, "
    "TasksMax=, MemoryMax=)",
)
def _limits(c: _Ctx) -> tuple[float, str]:
    import resource

    set_ = {
        lim.key: lim.describe()
        for lim in c.plan.limits
        if getattr(lim, "hard", resource.RLIM_INFINITY) != resource.RLIM_INFINITY
    }
    cgroup = getattr(c.plan, "cgroup", None)
    if cgroup is not None:
        set_.update(cgroup.keys())
    if not set_:
        return 1.0, "none set"
    credit = 0.0
    counted: set[str] = set()
    for key, value in _LIMIT_CREDIT:
        if key in set_:
            # Overlapping limits count once: processes (NPROC/TasksMax), memory (AS/DATA/RSS/
            # MemoryMax).
            group = _LIMIT_GROUP.get(key, key)
            if group not in counted:
                counted.add(group)
                credit += value
    return max(0.0, 1.0 - credit), ", ".join(f"{k}={v}" for k, v in set_.items())


# ---------------------------------------------------------------------------------------------


def items() -> tuple[tuple[str, int, str], ...]:
    """(name, weight, what it protects) of every audit item, in table order."""
    return tuple((s.name, s.weight, s.protects) for s in _SPECS)


def audit_plan(
    plan: Plan,
    *,
    landlock_abi: int | None = None,
    home: str | None = None,
    host_hostname: str | None = None,
) -> Audit:
    """Score ``plan``. ``landlock_abi`` defaults to the running kernel's; ``home`` to $HOME;
    ``host_hostname`` to this host's name."""
    if landlock_abi is None:
        from .kernel import landlock

        landlock_abi = landlock.abi_version()
    if home is None:
        home = os.environ.get("HOME", "")
    if host_hostname is None:
        host_hostname = os.uname().nodename
    notes: list[str] = []
    ctx = _Ctx(plan, landlock_abi, os.path.normpath(home) if home else "", host_hostname, notes)
    raw: list[Item] = []
    for spec in _SPECS:
        badness, setting = spec.rule(ctx)
        badness = min(1.0, max(0.0, badness))
        raw.append(Item(spec.name, spec.protects, spec.weight, badness, setting))
    total = sum(i.weight for i in raw)
    scored = tuple(replace(i, exposure=10.0 * i.weight * i.badness / total) for i in raw)
    # Rounded up to one decimal, as systemd does: any exposure at all shows as at least 0.1.
    exposure = math.ceil(round(sum(i.exposure for i in scored) * 10, 6)) / 10
    if plan.vaults:
        notes.append("vaults are not scored: their contents are meant for the payload")
    return Audit(plan.profile.name, scored, exposure, verdict(exposure), landlock_abi, tuple(notes))


def format_table(audit: Audit, unicode: bool = True) -> str:
    good, bad = ("✓", "✗") if unicode else ("+", "-")
    rows = sorted(audit.items, key=lambda i: (-i.exposure, -i.weight, i.name))
    name_w = max(len(i.name) for i in rows)
    set_w = min(48, max(len(i.setting) for i in rows))
    out = [f"  {'NAME':<{name_w}}  {'SETTING':<{set_w}}  {'EXPOSURE':>8}  PROTECTS"]
    for i in rows:
        mark = good if i.badness == 0 else bad
        setting = i.setting if len(i.setting) <= set_w else i.setting[: set_w - 3] + "..."
        exp = f"{i.exposure:.2f}" if i.badness else "-"
        out.append(f"{mark} {i.name:<{name_w}}  {setting:<{set_w}}  {exp:>8}  {i.protects}")
    out.append("")
    for note in audit.notes:
        out.append(f"note: {note}")
    arrow = "→" if unicode else "->"
    out.append(
        f"{arrow} Overall exposure level for {audit.profile}: {audit.exposure:.1f} {audit.verdict}"
    )
    return "\n".join(out) + "\n"


__all__ = [
    "Audit",
    "Item",
    "VERDICTS",
    "audit_plan",
    "covering",
    "format_table",
    "host_visible",
    "items",
    "verdict",
]
