"""Control-group limits for a sandbox: MemoryMax, TasksMax and CPUQuota in systemd's vocabulary.

Owns: parsing the cgroup keys of a profile (pure), finding out what the host offers (a cgroup
v2 subtree delegated to us, or the v1 pids/memory/cpu hierarchies when we are root), making one
cgroup per sandbox below the caller's own cgroup, moving the sandbox's PID 1 into it before the
payload starts, and removing it (and stale ones left by a launcher killed with SIGKILL).

Must never create cgroups outside the caller's own cgroup (a sandbox may not escape the limits
its caller runs under), write any file of a cgroup it did not create except to move processes
and enable controllers of a delegated v2 subtree, or kill a process that is not in a sandbox
cgroup of its own making.

Layout (C is the caller's cgroup, as read from /proc/self/cgroup):

    v2:  C/ringfence/<launcher-pid>.<token>   per sandbox: pids.max, memory.max, cpu.max
         C/ringfence-launcher                 leaf holding what was in C (the "no internal
                                              processes" rule: C needs subtree_control)
    v1:  <hierarchy>/C/ringfence/<launcher-pid>.<token>, in each of pids, memory and cpu
"""

from __future__ import annotations

import os

from .._record import field
from .._record import record as dataclass
from .._values import parse_bool
from ..errors import KernelError, ProfileError, SandboxError, UnsupportedError

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

KEYS = ("MemoryMax", "TasksMax", "CPUQuota", "CgroupOptional")
GROUP = "ringfence"  # the directory below the caller's cgroup holding one cgroup per sandbox
LAUNCHER_LEAF = "ringfence-launcher"  # v2 only: where the caller's processes move
CPU_PERIOD_US = 100_000  # systemd's default CPUQuotaPeriodSec=100ms
MIN_TASKS = 2  # the sandbox's PID 1 is in the cgroup too: one more task is the payload
# Key -> controller (the name is the same in v1 and v2).
CONTROLLER = {"TasksMax": "pids", "MemoryMax": "memory", "CPUQuota": "cpu"}

_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_DELEGATE_FIX = "run it under `systemd-run --user --scope -p Delegate=yes ringfence ...`"
_OPTIONAL_FIX = "or set CgroupOptional=yes to run without these limits"


# --- configuration (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupLimits:
    """Validated cgroup limits; None means "no limit" (not written)."""

    memory_max: int | None = None  # bytes
    tasks_max: int | None = None
    cpu_quota_percent: float | None = None  # 100.0 is one full CPU
    optional: bool = False  # CgroupOptional: run without them when the host has no cgroups

    def keys(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.memory_max is not None:
            out["MemoryMax"] = str(self.memory_max)
        if self.tasks_max is not None:
            out["TasksMax"] = str(self.tasks_max)
        if self.cpu_quota_percent is not None:
            out["CPUQuota"] = f"{self.cpu_quota_percent:g}%"
        return out

    def controllers(self) -> frozenset[str]:
        return frozenset(CONTROLLER[k] for k in self.keys())

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.keys().items())


def _meminfo_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise ProfileError("MemoryMax=N%: cannot read MemTotal from /proc/meminfo")


def _system_tasks_max() -> int:
    # Like systemd's system_tasks_max(): the smallest of the kernel's two task limits.
    values = []
    for path in ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"):
        try:
            with open(path) as f:
                values.append(int(f.read()))
        except (OSError, ValueError):
            continue
    if not values:
        raise ProfileError("TasksMax=N%: cannot read kernel.pid_max")
    return min(values)


def _percent(key: str, text: str, allow_above_100: bool) -> float:
    try:
        value = float(text[:-1])
    except ValueError:
        raise ProfileError(f"{key}={text!r}: expected a number before '%'") from None
    if not value > 0 or (not allow_above_100 and value > 100):
        bound = "above 0%" if allow_above_100 else "between 0% and 100%"
        raise ProfileError(f"{key}={text!r}: must be {bound}")
    return value


def _text(key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProfileError(f"{key}={value!r}: expected a string or a number")
    return str(value).strip()


def _memory(value: object, total: Callable[[], int]) -> int | None:
    key = "MemoryMax"
    t = _text(key, value)
    if t in ("", "infinity"):
        return None
    if t.endswith("%"):
        return max(1, int(total() * _percent(key, t, False) / 100))
    mult = 1
    if t[-1:].upper() in _SUFFIX:
        mult, t = _SUFFIX[t[-1].upper()], t[:-1]
    try:
        n = int(t)
    except ValueError:
        raise ProfileError(
            f"{key}={value!r}: expected bytes with an optional K/M/G/T suffix, "
            "N% of RAM, or 'infinity'"
        ) from None
    if n <= 0:
        raise ProfileError(f"{key}={value!r}: must be above 0")
    return n * mult


def _tasks(value: object, system_max: Callable[[], int]) -> int | None:
    key = "TasksMax"
    t = _text(key, value)
    if t in ("", "infinity"):
        return None
    if t.endswith("%"):
        n = int(system_max() * _percent(key, t, False) / 100)
    else:
        try:
            n = int(t)
        except ValueError:
            raise ProfileError(
                f"{key}={value!r}: expected a number of tasks, N% of the "
                "system's maximum, or 'infinity'"
            ) from None
    if n < MIN_TASKS:
        raise ProfileError(
            f"{key}={value!r}: must be at least {MIN_TASKS} (the sandbox's PID 1 counts as a task)"
        )
    return n


def _cpu(value: object) -> float | None:
    key = "CPUQuota"
    t = _text(key, value)
    if t in ("", "infinity"):
        return None
    if not t.endswith("%"):
        raise ProfileError(
            f"{key}={value!r}: expected a percentage such as 50% (one CPU is 100%, two are 200%)"
        )
    return _percent(key, t, True)


def parse_keys(
    raw: Mapping[str, object],
    *,
    total_memory: Callable[[], int] | None = None,
    system_tasks_max: Callable[[], int] | None = None,
) -> CgroupLimits | None:
    """Parse MemoryMax, TasksMax, CPUQuota and CgroupOptional; None when no limit is set.

    Percentages are resolved here, against the host's RAM (MemoryMax) and task limit (TasksMax),
    read only when a percentage is used; tests inject both.
    """
    for key in raw:
        if key not in KEYS:
            raise ProfileError(f"{key!r} is not a cgroup key ({', '.join(KEYS)})")
    limits = CgroupLimits(
        memory_max=_memory(raw["MemoryMax"], total_memory or _meminfo_total)
        if "MemoryMax" in raw
        else None,
        tasks_max=_tasks(raw["TasksMax"], system_tasks_max or _system_tasks_max)
        if "TasksMax" in raw
        else None,
        cpu_quota_percent=_cpu(raw["CPUQuota"]) if "CPUQuota" in raw else None,
        optional=parse_bool(
            "CgroupOptional", raw.get("CgroupOptional", False), empty_is_false=True
        ),
    )
    return limits if limits.keys() else None


# --- what the host offers ------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One way to make sandbox cgroups: v2 (one parent) or v1 (one parent per controller)."""

    version: str  # "v2" or "v1"
    parents: dict[str, str]  # controller -> the caller's cgroup directory for it
    problem: str = ""  # why some controller is not usable (empty when all are)

    @property
    def controllers(self) -> frozenset[str]:
        return frozenset(self.parents)


@dataclass(frozen=True)
class CgroupSupport:
    v2: Backend | None
    v1: Backend | None
    uid: int = 0
    v2_host: frozenset[str] = frozenset()  # controllers the v2 hierarchy has at all (its root)

    def choose(self, need: frozenset[str]) -> Backend | None:
        """The first backend (v2, then v1) offering every needed controller."""
        for backend in (self.v2, self.v1):
            if backend is not None and need <= backend.controllers:
                return backend
        return None

    def explain(self, need: frozenset[str]) -> str:
        """One line: why no backend offers ``need``, and how to get it."""
        problems = [b.problem for b in (self.v2, self.v1) if b is not None and b.problem]
        want = ", ".join(sorted(need))
        why = "; ".join(problems) or "no cgroup hierarchy is mounted"
        if self.uid == 0:
            fix = "mount the cgroup v2 or v1 hierarchies with these controllers"
        elif not need <= self.v2_host:
            fix = (
                f"this host keeps {want} on cgroup v1, which only root can manage: run "
                "ringfence as root, or boot with systemd.unified_cgroup_hierarchy=1 and "
                + _DELEGATE_FIX
            )
        else:
            fix = _DELEGATE_FIX
        return f"the {want} cgroup controller(s) are not available ({why}); {fix}"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


@dataclass(frozen=True)
class _Mount:
    point: str
    root: str
    fstype: str
    options: frozenset[str]


def _mounts(text: str) -> list[_Mount]:
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        fstype = tail[0]
        if fstype in ("cgroup", "cgroup2"):
            point = fields[4].replace("\\040", " ")
            out.append(_Mount(point, fields[3], fstype, frozenset(tail[2].split(","))))
    return out


def _join(root: str, mount: _Mount, cgpath: str) -> str | None:
    """The directory of cgroup ``cgpath`` (as /proc/self/cgroup names it) under ``mount``."""
    if mount.root != "/":
        if cgpath != mount.root and not cgpath.startswith(mount.root + "/"):
            return None  # our cgroup is not visible through this (bind) mount
        cgpath = cgpath[len(mount.root) :] or "/"
    return os.path.normpath(root.rstrip("/") + mount.point + "/" + cgpath.lstrip("/"))


def detect(
    root: str = "/", *, access: Callable[[str], bool] | None = None, uid: int | None = None
) -> CgroupSupport:
    """Find what this host offers for sandbox cgroups. Reads only; changes nothing.

    ``root`` prefixes every path read (/proc/self/cgroup, /proc/self/mountinfo, the cgroup
    trees) so tests can use a fake tree; ``access(path)`` says whether we may write a path.
    """
    can_write = access or (lambda p: os.access(p, os.W_OK))
    uid = os.geteuid() if uid is None else uid
    base = root.rstrip("/")
    mounts = _mounts(_read(base + "/proc/self/mountinfo"))
    membership: dict[str, str] = {}  # "" (v2) or a v1 controller -> our cgroup path
    for line in _read(base + "/proc/self/cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                membership[name] = parts[2]
    v2_mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    v2_host = frozenset(
        _read(base + v2_mount.point + "/cgroup.controllers").split() if v2_mount is not None else ()
    )
    return CgroupSupport(
        v2=_detect_v2(base, mounts, membership, can_write),
        v1=_detect_v1(base, mounts, membership, can_write),
        uid=uid,
        v2_host=v2_host,
    )


def _detect_v2(
    base: str, mounts: list[_Mount], membership: dict[str, str], can_write: Callable[[str], bool]
) -> Backend | None:
    path = membership.get("")
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if path is None or mount is None:
        return None
    cg = _join(base, mount, path)
    if cg is None:
        return Backend("v2", {}, f"cgroup v2: our cgroup {path} is not visible at {mount.point}")
    if os.path.basename(cg) == LAUNCHER_LEAF:
        cg = os.path.dirname(cg)  # an earlier run moved us into the leaf: C is its parent
    offered = set(_read(cg + "/cgroup.controllers").split())
    wanted = {"pids", "memory", "cpu"}
    files = [cg, cg + "/cgroup.procs", cg + "/cgroup.subtree_control"]
    if not all(os.path.exists(p) for p in files):
        return Backend("v2", {}, f"cgroup v2: {cg} is not a cgroup directory")
    if not all(can_write(p) for p in files):
        return Backend("v2", {}, f"cgroup v2: {cg} is not delegated to us (not writable)")
    problem = ""
    if wanted - offered:
        problem = (
            f"cgroup v2: {cg} offers no {', '.join(sorted(wanted - offered))} "
            "controller (not delegated, or bound to v1)"
        )
    return Backend("v2", dict.fromkeys(sorted(wanted & offered), cg), problem)


def _detect_v1(
    base: str, mounts: list[_Mount], membership: dict[str, str], can_write: Callable[[str], bool]
) -> Backend | None:
    parents: dict[str, str] = {}
    missing: list[str] = []
    readonly: list[str] = []
    for controller in ("pids", "memory", "cpu"):
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        path = membership.get(controller)
        if mount is None or path is None:
            missing.append(controller)
            continue
        cg = _join(base, mount, path)
        if cg is None or not os.path.isdir(cg):
            missing.append(controller)
        elif not (can_write(cg) and can_write(cg + "/cgroup.procs")):
            readonly.append(controller)
        else:
            parents[controller] = cg
    if not parents and not readonly:
        return None
    problems = []
    if readonly:
        problems.append(
            f"cgroup v1 {', '.join(readonly)}: not writable (only root can manage v1 hierarchies)"
        )
    if missing:
        problems.append(f"cgroup v1: no {', '.join(missing)} hierarchy")
    return Backend("v1", parents, "; ".join(problems))


def plan_layer(
    limits: CgroupLimits, support: CgroupSupport | None = None
) -> tuple[bool | None, str, str]:
    """What ``ringfence plan`` reports for the cgroup layer: (applied, detail, why).

    None: will be applied at run time; False: cannot be, with the reason (the run fails unless
    CgroupOptional is set).
    """
    support = support or detect()
    need = limits.controllers()
    backend = support.choose(need)
    if backend is not None:
        return None, f"{limits.describe()} via cgroup {backend.version}", ""
    why = support.explain(need)
    if limits.optional:
        return False, limits.describe(), f"not applied (CgroupOptional): {why}"
    return False, limits.describe(), f"required, the run will fail: {why}"


# --- per-sandbox cgroups ---------------------------------------------------------------------


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise KernelError("open", e.errno or 1, path) from None
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise KernelError("write", e.errno or 1, f"{path}, {value!r}") from None
    finally:
        os.close(fd)


def _pids(cg: str) -> list[int]:
    return [int(p) for p in _read(cg + "/cgroup.procs").split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(group_dir: str) -> list[str]:
    """Remove sandbox cgroups in ``group_dir`` whose launcher is gone and that hold no process.

    A launcher killed with SIGKILL cannot rmdir its cgroup; its sandbox died with it (PID 1's
    parent-death signal), so the cgroup is empty. A reused launcher pid only delays the clean-up.
    """
    removed: list[str] = []
    try:
        names = os.listdir(group_dir)
    except OSError:
        return removed
    for name in names:
        owner, dot, _ = name.partition(".")
        path = os.path.join(group_dir, name)
        if not dot or not owner.isdigit() or _alive(int(owner)) or not os.path.isdir(path):
            continue
        if _pids(path):
            continue
        try:
            os.rmdir(path)
            removed.append(path)
        except OSError:
            pass
    return removed


@dataclass
class CgroupHandle:
    """One sandbox's cgroup (one directory in v2, one per controller in v1)."""

    limits: CgroupLimits
    version: str = "none"  # "v2", "v1", or "none" when not applied
    paths: dict[str, str] = field(default_factory=dict)  # controller -> sandbox cgroup dir
    reason: str = ""  # why not applied
    members: list[int] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return self.version != "none"

    def add(self, pid: int) -> None:
        """Move ``pid`` (the sandbox's PID 1, before it starts the payload) into the cgroup.

        Its children are born inside it, so nothing the payload starts can be outside.
        """
        for cg in dict.fromkeys(self.paths.values()):
            try:
                _write(cg + "/cgroup.procs", str(pid))
            except KernelError as e:
                raise SandboxError(
                    f"cannot move the sandbox into its cgroup {cg}: {os.strerror(e.errno)}"
                ) from None
        self.members.append(pid)

    def remove(self) -> None:
        """Kill what is left in the cgroup and remove it. Call after the sandbox ended."""
        for cg in dict.fromkeys(self.paths.values()):
            _remove_one(cg)
            try:
                os.rmdir(os.path.dirname(cg))  # the group dir, when no other sandbox uses it
            except OSError:
                pass
        self.paths = {}

    stop = remove  # the launcher's helper protocol: stop() when the sandbox is over

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {
            "layer": "cgroup",
            "applied": self.applied,
            "detail": self.limits.describe(),
        }
        if self.applied:
            d["version"] = self.version
            d["paths"] = sorted(set(self.paths.values()))
        else:
            d["why"] = f"not applied: {self.reason}"
        return d


def _remove_one(cg: str) -> None:
    import time

    if os.path.exists(cg + "/cgroup.kill"):
        try:
            _write(cg + "/cgroup.kill", "1")
        except KernelError:
            pass
    # The sandbox has normally ended (its PID 1 took every process of its PID namespace with
    # it); killing by pid list covers v1, which has no cgroup.kill. Bounded: ~2 s.
    for _ in range(200):
        pids = _pids(cg)
        if not pids:
            try:
                os.rmdir(cg)
                return
            except FileNotFoundError:
                return
            except OSError:
                pass  # EBUSY: a dying task has not left yet
        for pid in pids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        time.sleep(0.01)


def create(
    limits: CgroupLimits, name: str | None = None, support: CgroupSupport | None = None
) -> CgroupHandle:
    """Make a cgroup for one sandbox, below the caller's cgroup, and write its limits.

    Call in the launcher, on the host side. Raises UnsupportedError with the fix when the host
    offers no suitable cgroup and the limits are not optional; returns a handle that is not
    applied (``handle.applied`` is False, ``add``/``remove`` do nothing) when they are.
    """
    import secrets

    support = support or detect()
    need = limits.controllers()
    backend = support.choose(need)
    if backend is None:
        reason = support.explain(need)
        if not limits.optional:
            keys = ", ".join(limits.keys())
            raise UnsupportedError(f"{keys}: {reason}; {_OPTIONAL_FIX}")
        return CgroupHandle(limits, reason=reason)
    leaf = f"{os.getpid()}.{name or secrets.token_hex(4)}"
    handle = CgroupHandle(limits, version=backend.version)
    try:
        if backend.version == "v2":
            parent = backend.parents[next(iter(sorted(need)))]
            _v2_prepare(parent, need)
            handle.paths = dict.fromkeys(need, _mkdir_group(parent, leaf))
            _write_limits_v2(handle.paths[next(iter(need))], limits)
        else:
            for controller in sorted(need):
                handle.paths[controller] = _mkdir_group(backend.parents[controller], leaf)
            _write_limits_v1(handle.paths, limits)
    except BaseException:
        handle.remove()
        raise
    return handle


def follow(target: int, pid: int, root: str = "/") -> list[str]:
    """Move ``pid`` into the sandbox cgroups that ``target`` is in; returns them.

    For ``ringfence enter``: a process joining a running sandbox must be bounded by the same
    TasksMax/MemoryMax/CPUQuota as the sandbox's PID 1 (``target``); call it before the joiner
    runs anything. Only cgroups made by :func:`create` (a ``ringfence/`` component) are joined.
    """
    base = root.rstrip("/")
    mounts = _mounts(_read(base + "/proc/self/mountinfo"))
    joined: list[str] = []
    for line in _read(f"{base}/proc/{target}/cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or f"/{GROUP}/" not in parts[2] + "/":
            continue
        names = set(parts[1].split(",")) if parts[1] else set()
        for mount in mounts:
            if (mount.fstype == "cgroup2") != (not names) or (names and not names & mount.options):
                continue
            cg = _join(base, mount, parts[2])
            if cg is not None and cg not in joined and os.path.isdir(cg):
                try:
                    _write(cg + "/cgroup.procs", str(pid))
                except KernelError as e:
                    raise SandboxError(
                        f"cannot move pid {pid} into the sandbox's cgroup {cg}: "
                        f"{os.strerror(e.errno)}"
                    ) from None
                joined.append(cg)
            break
    return joined


def _mkdir_group(parent: str, leaf: str) -> str:
    group = os.path.join(parent, GROUP)
    for _ in range(3):
        try:
            os.mkdir(group, 0o755)
        except FileExistsError:
            pass
        except OSError as e:
            raise KernelError("mkdir", e.errno or 1, group) from None
        clean_stale(group)
        path = os.path.join(group, leaf)
        try:
            os.mkdir(path, 0o755)
            return path
        except FileNotFoundError:
            continue  # another launcher removed the empty group dir just now
        except OSError as e:
            raise KernelError("mkdir", e.errno or 1, path) from None
    raise SandboxError(f"cannot create a cgroup in {group}: it keeps disappearing")


def _v2_prepare(parent: str, need: frozenset[str]) -> None:
    """Enable ``need`` for the children of the caller's cgroup C and of C/ringfence.

    v2 forbids processes in a cgroup whose children have controllers ("no internal
    processes"), so whatever lives in C (this launcher, the sandbox's first processes, and
    anything else the caller started in its delegated scope) moves to the leaf C/ringfence-
    launcher first. The limits of C still bound the leaf; nothing leaves C's subtree.
    """
    enable = " ".join(f"+{c}" for c in sorted(need))
    enabled = set(_read(parent + "/cgroup.subtree_control").split())
    if not need <= enabled:
        procs = _pids(parent)
        # The root cgroup is exempt from the rule (and has no cgroup.type).
        if procs and os.path.exists(parent + "/cgroup.type"):
            leaf = os.path.join(parent, LAUNCHER_LEAF)
            try:
                os.mkdir(leaf, 0o755)
            except FileExistsError:
                pass
            except OSError as e:
                raise KernelError("mkdir", e.errno or 1, leaf) from None
            for pid in procs:
                try:
                    _write(leaf + "/cgroup.procs", str(pid))
                except KernelError:
                    if _alive(pid):
                        raise
        try:
            _write(parent + "/cgroup.subtree_control", enable)
        except KernelError as e:
            raise SandboxError(
                f"cannot enable {enable} in {parent}: {os.strerror(e.errno)} (another process "
                f"of this cgroup could not be moved out; {_DELEGATE_FIX})"
            ) from None
    group = os.path.join(parent, GROUP)
    try:
        os.mkdir(group, 0o755)
    except FileExistsError:
        pass
    except OSError as e:
        raise KernelError("mkdir", e.errno or 1, group) from None
    if not need <= set(_read(group + "/cgroup.subtree_control").split()):
        _write(group + "/cgroup.subtree_control", enable)


def _write_limits_v2(cg: str, limits: CgroupLimits) -> None:
    if limits.tasks_max is not None:
        _write(cg + "/pids.max", str(limits.tasks_max))
    if limits.memory_max is not None:
        _write(cg + "/memory.max", str(limits.memory_max))
        if os.path.exists(cg + "/memory.swap.max"):
            _write(cg + "/memory.swap.max", "0")  # the limit bounds RAM and swap together
    if limits.cpu_quota_percent is not None:
        quota = max(1000, int(CPU_PERIOD_US * limits.cpu_quota_percent / 100))
        _write(cg + "/cpu.max", f"{quota} {CPU_PERIOD_US}")


def _write_limits_v1(paths: dict[str, str], limits: CgroupLimits) -> None:
    if limits.tasks_max is not None:
        _write(paths["pids"] + "/pids.max", str(limits.tasks_max))
    if limits.memory_max is not None:
        cg = paths["memory"]
        _write(cg + "/memory.limit_in_bytes", str(limits.memory_max))
        if os.path.exists(cg + "/memory.memsw.limit_in_bytes"):
            # memory+swap: without it, the sandbox could page out past the limit.
            _write(cg + "/memory.memsw.limit_in_bytes", str(limits.memory_max))
    if limits.cpu_quota_percent is not None:
        cg = paths["cpu"]
        quota = max(1000, int(CPU_PERIOD_US * limits.cpu_quota_percent / 100))
        _write(cg + "/cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cg + "/cpu.cfs_quota_us", str(quota))
