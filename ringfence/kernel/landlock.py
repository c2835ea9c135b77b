"""Landlock: the last, self-imposed layer on files, TCP ports and IPC scopes.

Owns: the Landlock ABI probe (cached), the typed policy (:class:`PathRule`,
:class:`LandlockPolicy`), its pure resolution against an ABI version (:func:`resolve`), the
profile keys ``Landlock``/``AllowBind``/``AllowConnect``/``LandlockScopes`` (:func:`parse_keys`),
and enforcement on the calling thread (:func:`apply`).

Where it runs: :func:`apply` is called in the payload process right before ``execve``, after
``pivot_root`` (rule paths are paths inside the sandbox) and after ``no_new_privs`` is set, in a
single-threaded process (``landlock_restrict_self`` only restricts the calling thread).

Must never: set ``no_new_privs`` itself (the runtime owns the order of the lock-down steps),
import anything heavy, or silently weaken a policy: whatever cannot be enforced on this kernel
is either an :class:`UnsupportedError` (``required``) or listed in the report (best effort).

ABI history (kernel release): 1 (5.13) filesystem; 2 (5.19) REFER; 3 (6.2) TRUNCATE; 4 (6.7) TCP
bind/connect; 5 (6.10) IOCTL_DEV; 6 (6.12) scopes for abstract unix sockets and signals; 7 (6.15)
audit logging flags for ``landlock_restrict_self``. A newer kernel is used at ABI 7.
"""

from __future__ import annotations

import ctypes
import os
import stat

from .._record import field
from .._record import record as dataclass
from ..errors import KernelError, ProfileError, SandboxError, UnsupportedError
from ._syscall import syscall

TYPE_CHECKING = False  # typing costs milliseconds to import; mypy treats this name as True
if TYPE_CHECKING:  # so does collections.abc (~1 ms)
    from collections.abc import Iterable, Mapping
    from typing import Literal, TypeAlias

    Preset: TypeAlias = Literal["ro", "rw", "rx", "rwx"]
    Access: TypeAlias = Preset | frozenset[str]
    Mode: TypeAlias = Literal["required", "best-effort", "off"]

# --- linux/landlock.h -------------------------------------------------------------------------

# landlock_create_ruleset() flags
_CREATE_RULESET_VERSION = 1 << 0
_CREATE_RULESET_ERRATA = 1 << 1

# enum landlock_rule_type
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# Filesystem rights: name -> (bit, first ABI that knows it). Names are the kernel's, lower-case,
# without the LANDLOCK_ACCESS_FS_ prefix.
FS_RIGHTS: dict[str, tuple[int, int]] = {
    "execute": (1 << 0, 1),
    "write_file": (1 << 1, 1),
    "read_file": (1 << 2, 1),
    "read_dir": (1 << 3, 1),
    "remove_dir": (1 << 4, 1),
    "remove_file": (1 << 5, 1),
    "make_char": (1 << 6, 1),
    "make_dir": (1 << 7, 1),
    "make_reg": (1 << 8, 1),
    "make_sock": (1 << 9, 1),
    "make_fifo": (1 << 10, 1),
    "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1),
    "refer": (1 << 13, 2),
    "truncate": (1 << 14, 3),
    "ioctl_dev": (1 << 15, 5),
}
# LANDLOCK_ACCESS_NET_*
NET_RIGHTS: dict[str, tuple[int, int]] = {
    "bind_tcp": (1 << 0, 4),
    "connect_tcp": (1 << 1, 4),
}
# LANDLOCK_SCOPE_*
SCOPES: dict[str, tuple[int, int]] = {
    "abstract_unix_socket": (1 << 0, 6),
    "signal": (1 << 1, 6),
}
# LANDLOCK_RESTRICT_SELF_LOG_* (ABI 7). By default the kernel audits denials of the process
# that created the domain until it execs, and not after; ringfence applies the domain right
# before execve, so by default the payload's denials are not audited.
LOG_FLAGS: dict[str, tuple[int, int]] = {
    "same_exec_off": (1 << 0, 7),  # do not log denials before the next execve
    "new_exec_on": (1 << 1, 7),  # do log denials after execve (i.e. the payload's)
    "subdomains_off": (1 << 2, 7),  # do not log denials of nested domains the payload creates
}

HIGHEST_KNOWN_ABI = 7


def _bit(name: str) -> int:
    return FS_RIGHTS[name][0]


def _mask(names: Iterable[str], table: Mapping[str, tuple[int, int]] = FS_RIGHTS) -> int:
    mask = 0
    for name in names:
        mask |= table[name][0]
    return mask


# Rights that make sense on a non-directory; the kernel rejects a rule on a file that carries
# any other right with EINVAL (security/landlock/fs.c: ACCESS_FILE).
FILE_RIGHTS = _mask(("execute", "write_file", "read_file", "truncate", "ioctl_dev"))

_RO = _mask(("read_file", "read_dir"))
_RX = _RO | _bit("execute")
_RW = _RO | _mask(
    (
        "write_file",
        "remove_dir",
        "remove_file",
        "make_char",
        "make_dir",
        "make_reg",
        "make_sock",
        "make_fifo",
        "make_block",
        "make_sym",
        "truncate",
        "refer",
    )
)
_RWX = _mask(FS_RIGHTS)
PRESETS: dict[str, int] = {"ro": _RO, "rx": _RX, "rw": _RW, "rwx": _RWX}

_ABI_RELEASE = {1: "5.13", 2: "5.19", 3: "6.2", 4: "6.7", 5: "6.10", 6: "6.12", 7: "6.15"}


class _RulesetAttr(ctypes.Structure):
    # struct landlock_ruleset_attr; it grows with the ABI, so pass only the prefix the ABI knows.
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


class _PathBeneathAttr(ctypes.Structure):
    # struct landlock_path_beneath_attr, __attribute__((packed)): 12 bytes.
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    # struct landlock_net_port_attr: port in host byte order.
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


def _ruleset_attr_size(abi: int) -> int:
    return 8 if abi < 4 else 16 if abi < 6 else 24


# --- names <-> bits ---------------------------------------------------------------------------


def fs_rights_for_abi(abi: int) -> int:
    """Bitmask of every filesystem right that Landlock ABI ``abi`` knows (0 for ABI 0)."""
    return _known(FS_RIGHTS, abi)


def _known(table: Mapping[str, tuple[int, int]], abi: int) -> int:
    return _mask(name for name, (_, since) in table.items() if since <= abi)


def right_names(mask: int, table: Mapping[str, tuple[int, int]] = FS_RIGHTS) -> tuple[str, ...]:
    """The names of the bits set in ``mask``, in the kernel's bit order."""
    return tuple(name for name, (bit, _) in table.items() if mask & bit)


def access_mask(access: Access) -> int:
    """The filesystem rights that a preset (``"ro"``...) or a set of right names stands for."""
    if isinstance(access, str):
        return PRESETS[access]
    return _mask(access)


def rule_mask(access: Access, handled_fs: int, is_dir: bool) -> int:
    """The ``allowed_access`` to pass for one path: the rule's rights that the ruleset handles,
    and, for anything that is not a directory, only those the kernel accepts on a file."""
    mask = access_mask(access) & handled_fs
    return mask if is_dir else mask & FILE_RIGHTS


# --- policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathRule:
    """Grant ``access`` beneath ``path`` (a path inside the sandbox, after pivot_root).

    ``access`` is a preset or a frozenset of names from :data:`FS_RIGHTS`:
    ``ro`` reads files and lists directories; ``rx`` adds execute; ``rw`` is ``ro`` plus write,
    create, remove, make_*, truncate and refer (no execute, no device ioctls); ``rwx`` is all.
    A rule on a regular file (or device) keeps only the file rights of its access.
    ``required=False`` lets :func:`apply` skip the rule when the path does not exist.
    A symlink is followed (inside the sandbox): the rule lands on its target.
    """

    path: str
    access: Access = "ro"
    required: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ProfileError(
                f"Landlock path {self.path!r} is not absolute: give the path inside the sandbox"
            )
        access: object = self.access
        if isinstance(access, (set, list, tuple)):
            access = frozenset(access)
            object.__setattr__(self, "access", access)
        if isinstance(access, str):
            if access not in PRESETS:
                raise ProfileError(
                    f"Landlock access {access!r} for {self.path} is not valid: use ro, rx, rw, "
                    "rwx or a set of right names"
                )
        elif isinstance(access, frozenset):
            unknown = sorted(str(a) for a in access if a not in FS_RIGHTS)
            if unknown or not access:
                raise ProfileError(
                    f"Landlock rights {unknown or '(empty)'} for {self.path} are not valid: use "
                    f"names from {', '.join(FS_RIGHTS)}"
                )
        else:
            raise ProfileError(f"Landlock access for {self.path} must be a preset or a set")


def _check_ports(what: str, ports: tuple[int, ...] | None) -> None:
    if ports is None:
        return
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ProfileError(f"{what}: port {port!r} is out of range: use 0-65535")


@dataclass(frozen=True)
class LandlockPolicy:
    """What the payload may touch once Landlock is enforced.

    - ``paths``: filesystem grants; everything in ``handled_fs`` that no rule grants is denied.
    - ``handled_fs``: names of the filesystem rights to restrict; ``None`` (default) means every
      right the running kernel knows. An explicit set counts as asked for (see ``required``).
    - ``tcp_bind`` / ``tcp_connect``: allowed TCP ports; ``None`` leaves that action unrestricted,
      ``()`` allows no port. Port 0 in ``tcp_bind`` allows binding an ephemeral port.
    - ``scope_abstract_unix``: deny connecting to abstract unix sockets made outside the domain.
    - ``scope_signals``: deny signalling processes outside the domain.
    - ``log``: names from :data:`LOG_FLAGS` (audit only; none by default).
    - ``required``: fail closed (UnsupportedError) when the kernel lacks Landlock or a feature
      this policy asks for (TCP rules, scopes, log flags, explicit ``handled_fs`` names); when
      False, enforce what the kernel supports and report the rest as dropped.
    """

    paths: tuple[PathRule, ...] = ()
    handled_fs: frozenset[str] | None = None
    tcp_bind: tuple[int, ...] | None = None
    tcp_connect: tuple[int, ...] | None = None
    scope_abstract_unix: bool = False
    scope_signals: bool = False
    log: frozenset[str] = field(default_factory=frozenset)
    required: bool = True

    def __post_init__(self) -> None:
        _check_ports("tcp_bind", self.tcp_bind)
        _check_ports("tcp_connect", self.tcp_connect)
        if self.handled_fs is not None:
            unknown = sorted(n for n in self.handled_fs if n not in FS_RIGHTS)
            if unknown:
                raise ProfileError(f"Landlock handled_fs {unknown} unknown: use {list(FS_RIGHTS)}")
        unknown_log = sorted(n for n in self.log if n not in LOG_FLAGS)
        if unknown_log:
            raise ProfileError(f"Landlock log flags {unknown_log} unknown: use {list(LOG_FLAGS)}")


@dataclass(frozen=True)
class DroppedFeature:
    """Something the policy asked for (or that newer kernels restrict) that is not enforced."""

    feature: str
    reason: str


@dataclass(frozen=True)
class Resolved:
    """A policy resolved against one ABI version: the exact bits :func:`apply` will pass."""

    abi: int
    handled_fs: int
    handled_net: int
    scoped: int
    restrict_flags: int
    rules: tuple[tuple[PathRule, int], ...]  # access before file-vs-directory filtering
    net_ports: tuple[tuple[int, int], ...]  # (port, allowed net access)
    dropped: tuple[DroppedFeature, ...]


@dataclass(frozen=True)
class LandlockReport:
    """What :func:`apply` enforced on this kernel."""

    abi: int
    enforced: bool
    fs_rules: int = 0
    net_rules: int = 0
    handled_fs: tuple[str, ...] = ()
    net_restricted: tuple[str, ...] = ()  # "bind_tcp", "connect_tcp"
    scopes: tuple[str, ...] = ()
    log: tuple[str, ...] = ()
    dropped: tuple[DroppedFeature, ...] = ()
    errata: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "abi": self.abi,
            "enforced": self.enforced,
            "fs_rules": self.fs_rules,
            "net_rules": self.net_rules,
            "handled_fs": list(self.handled_fs),
            "net_restricted": list(self.net_restricted),
            "scopes": list(self.scopes),
            "log": list(self.log),
            "dropped": [{"feature": d.feature, "reason": d.reason} for d in self.dropped],
            "errata": self.errata,
        }


# --- kernel probe -----------------------------------------------------------------------------

_abi_cache: tuple[int, int, int] | None = None  # (abi, errno when 0, errata bitmask)


def _probe() -> tuple[int, int, int]:
    global _abi_cache
    if _abi_cache is None:
        try:
            abi = syscall("landlock_create_ruleset", None, 0, _CREATE_RULESET_VERSION)
        except KernelError as err:
            _abi_cache = (0, err.errno, 0)
        else:
            try:
                errata = syscall("landlock_create_ruleset", None, 0, _CREATE_RULESET_ERRATA)
            except KernelError:  # kernels before 6.15 do not know the flag
                errata = 0
            _abi_cache = (abi, 0, errata)
    return _abi_cache


def abi_version() -> int:
    """The Landlock ABI version of the running kernel, 0 when Landlock is unavailable (cached)."""
    return _probe()[0]


def _unavailable_reason(err: int) -> str:
    if err == 38:  # ENOSYS
        return (
            "Landlock is not built into this kernel (CONFIG_SECURITY_LANDLOCK): use a kernel "
            "with Landlock or set Landlock=best-effort"
        )
    return (
        "Landlock is not enabled in this kernel: boot with lsm=...,landlock (see "
        "/sys/kernel/security/lsm) or set Landlock=best-effort"
    )


# --- resolution (pure) ------------------------------------------------------------------------


def _needs(
    abi: int, since: int, feature: str, what: str, required: bool, dropped: list[DroppedFeature]
) -> bool:
    """True if ``abi`` has the feature; else fail (required) or record it as dropped."""
    if abi >= since:
        return True
    need = f"needs Landlock ABI {since} (Linux {_ABI_RELEASE[since]}+), this kernel has ABI {abi}"
    if required:
        raise UnsupportedError(f"{feature}: {need}: upgrade the kernel or set Landlock=best-effort")
    dropped.append(DroppedFeature(feature, f"{need}: {what}"))
    return False


def resolve(
    policy: LandlockPolicy, abi: int, unavailable: str = _unavailable_reason(95)
) -> Resolved:
    """Compute what ``policy`` becomes on a kernel with Landlock ABI ``abi``.

    Pure: no syscall. Raises UnsupportedError when ``policy.required`` and the ABI lacks
    Landlock (message ``unavailable``) or a feature the policy asks for.
    """
    dropped: list[DroppedFeature] = []
    if abi <= 0:
        if policy.required:
            raise UnsupportedError(unavailable)
        dropped.append(DroppedFeature("landlock", unavailable))
        return Resolved(0, 0, 0, 0, 0, (), (), tuple(dropped))
    known = min(abi, HIGHEST_KNOWN_ABI)
    required = policy.required

    # Filesystem: restrict everything the ABI knows unless the policy names a set.
    if policy.handled_fs is None:
        handled_fs = fs_rights_for_abi(known)
        for name, (_, since) in FS_RIGHTS.items():
            if since > known:
                dropped.append(
                    DroppedFeature(
                        f"fs:{name}",
                        f"needs Landlock ABI {since}, this kernel has ABI {abi}: not restricted",
                    )
                )
    else:
        handled_fs = 0
        for name in sorted(policy.handled_fs, key=lambda n: FS_RIGHTS[n][0]):
            bit, since = FS_RIGHTS[name]
            if _needs(known, since, f"handled_fs {name}", "not restricted", required, dropped):
                handled_fs |= bit
    # REFER is denied even when not handled (ABI 1 cannot grant it): say so once.
    if not handled_fs & _bit("refer") and any(
        access_mask(r.access) & _bit("refer") for r in policy.paths
    ):
        dropped.append(
            DroppedFeature(
                "fs:refer grant",
                "renaming or linking across directories stays denied (EXDEV): "
                "needs Landlock ABI 2 with refer handled",
            )
        )
    rules = tuple((r, access_mask(r.access) & handled_fs) for r in policy.paths)

    # Network: one rule per port, bind and connect merged.
    handled_net = 0
    ports: dict[int, int] = {}
    for what, wanted, right in (
        ("tcp_bind", policy.tcp_bind, "bind_tcp"),
        ("tcp_connect", policy.tcp_connect, "connect_tcp"),
    ):
        if wanted is None:
            continue
        bit, since = NET_RIGHTS[right]
        if _needs(known, since, what, "not restricted", required, dropped):
            handled_net |= bit
            for port in wanted:
                ports[port] = ports.get(port, 0) | bit
    net_ports = tuple(sorted(ports.items()))

    scoped = 0
    for what, on, scope in (
        ("scope_abstract_unix", policy.scope_abstract_unix, "abstract_unix_socket"),
        ("scope_signals", policy.scope_signals, "signal"),
    ):
        bit, since = SCOPES[scope]
        if on and _needs(known, since, what, "not restricted", required, dropped):
            scoped |= bit

    flags = 0
    for name in sorted(policy.log, key=lambda n: LOG_FLAGS[n][0]):
        bit, since = LOG_FLAGS[name]
        if _needs(known, since, f"log {name}", "ignored", required, dropped):
            flags |= bit

    return Resolved(abi, handled_fs, handled_net, scoped, flags, rules, net_ports, tuple(dropped))


# --- enforcement ------------------------------------------------------------------------------


def prepare(policy: LandlockPolicy, *, abi_override: int | None = None) -> Resolved:
    """Probe the kernel and resolve ``policy`` for it, without enforcing anything.

    Call it in the launcher, before any namespace is built, so a required policy that this
    kernel cannot enforce fails early; then hand the result to :func:`apply` in the payload
    (it is plain data and survives fork). ``abi_override`` as for :func:`apply`.
    """
    abi, err, _ = _probe()
    unavailable = _unavailable_reason(err)
    if abi_override is not None:
        if abi_override < 0:
            raise ValueError("abi_override must be >= 0")
        if abi_override < abi:
            abi = abi_override
            if abi == 0:
                unavailable = "Landlock is unavailable (simulated with abi_override=0)"
    return resolve(policy, abi, unavailable)


def apply(policy: LandlockPolicy | Resolved, *, abi_override: int | None = None) -> LandlockReport:
    """Enforce ``policy`` on the calling thread and everything it later executes.

    ``policy`` is a LandlockPolicy or the result of :func:`prepare` (preferred in the runtime:
    errors surface before fork and the payload does less work).

    Preconditions: single-threaded; ``no_new_privs`` set (or CAP_SYS_ADMIN); after pivot_root,
    so rule paths are resolved inside the sandbox. Call it last, right before ``execve``.

    ``abi_override`` (tests only) makes the kernel look like it has at most that ABI version
    (0 = no Landlock), to exercise the required/best-effort paths on a modern kernel.

    Raises UnsupportedError (required feature missing), SandboxError (a required rule path is
    missing) or KernelError (a Landlock syscall failed). Nothing is enforced if it raises.
    """
    if isinstance(policy, Resolved):
        if abi_override is not None:
            raise ValueError("abi_override goes to prepare(), not with a resolved policy")
        resolved = policy
    else:
        resolved = prepare(policy, abi_override=abi_override)
    abi = resolved.abi
    errata = _probe()[2]
    dropped = list(resolved.dropped)
    if abi == 0 or not (resolved.handled_fs or resolved.handled_net or resolved.scoped):
        return LandlockReport(abi=abi, enforced=False, dropped=tuple(dropped), errata=errata)

    attr = _RulesetAttr(resolved.handled_fs, resolved.handled_net, resolved.scoped)
    ruleset = syscall("landlock_create_ruleset", ctypes.byref(attr), _ruleset_attr_size(abi), 0)
    fs_rules = 0
    try:
        path_attr = _PathBeneathAttr()
        for rule, _ in resolved.rules:
            try:
                fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
            except OSError as exc:
                reason = f"{os.strerror(exc.errno or 0)} inside the sandbox"
                if not rule.required:
                    dropped.append(DroppedFeature(f"path:{rule.path}", f"skipped: {reason}"))
                    continue
                if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                    raise SandboxError(
                        f"Landlock rule path {rule.path} does not exist inside the sandbox: "
                        "add it to the mount plan or mark the rule optional"
                    ) from None
                raise KernelError("open", exc.errno or 0, rule.path) from None
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                allowed = rule_mask(rule.access, resolved.handled_fs, is_dir)
                if not allowed:
                    dropped.append(
                        DroppedFeature(
                            f"path:{rule.path}",
                            "skipped: no right of this rule applies to a non-directory",
                        )
                    )
                    continue
                path_attr.allowed_access = allowed
                path_attr.parent_fd = fd
                syscall(
                    "landlock_add_rule",
                    ruleset,
                    _RULE_PATH_BENEATH,
                    ctypes.byref(path_attr),
                    0,
                    detail=rule.path,
                )
                fs_rules += 1
            finally:
                os.close(fd)
        net_attr = _NetPortAttr()
        for port, allowed in resolved.net_ports:
            net_attr.allowed_access = allowed
            net_attr.port = port
            syscall(
                "landlock_add_rule",
                ruleset,
                _RULE_NET_PORT,
                ctypes.byref(net_attr),
                0,
                detail=f"tcp port {port}",
            )
        try:
            syscall("landlock_restrict_self", ruleset, resolved.restrict_flags)
        except KernelError as exc:
            if exc.errno == 1:  # EPERM
                raise KernelError(
                    "landlock_restrict_self",
                    exc.errno,
                    hint="set no_new_privs (prctl PR_SET_NO_NEW_PRIVS) before applying Landlock",
                ) from None
            if exc.errno == 7:  # E2BIG
                raise KernelError(
                    "landlock_restrict_self",
                    exc.errno,
                    hint="more than 16 nested Landlock domains: run fewer nested sandboxes",
                ) from None
            raise
    finally:
        os.close(ruleset)

    return LandlockReport(
        abi=abi,
        enforced=True,
        fs_rules=fs_rules,
        net_rules=len(resolved.net_ports),
        handled_fs=right_names(resolved.handled_fs),
        net_restricted=right_names(resolved.handled_net, NET_RIGHTS),
        scopes=right_names(resolved.scoped, SCOPES),
        log=right_names(resolved.restrict_flags, LOG_FLAGS),
        dropped=tuple(dropped),
        errata=errata,
    )


# --- report and profile keys ------------------------------------------------------------------


def _access_json(access: Access) -> object:
    if isinstance(access, str):
        return access
    return sorted(access, key=lambda n: FS_RIGHTS[n][0])


def describe(policy: LandlockPolicy) -> dict[str, object]:
    """The policy as JSON-able data, independent of the running kernel."""
    return {
        "mode": "required" if policy.required else "best-effort",
        "paths": [
            {"path": r.path, "access": _access_json(r.access), "required": r.required}
            for r in policy.paths
        ],
        "handled_fs": (
            "all"
            if policy.handled_fs is None
            else sorted(policy.handled_fs, key=lambda n: FS_RIGHTS[n][0])
        ),
        "tcp_bind": None if policy.tcp_bind is None else list(policy.tcp_bind),
        "tcp_connect": None if policy.tcp_connect is None else list(policy.tcp_connect),
        "scopes": [
            name
            for name, on in (
                ("abstract-unix", policy.scope_abstract_unix),
                ("signal", policy.scope_signals),
            )
            if on
        ],
        "log": sorted(policy.log, key=lambda n: LOG_FLAGS[n][0]),
    }


_MODES = ("required", "best-effort", "off")
_SCOPE_KEYS = {"abstract-unix": "scope_abstract_unix", "signal": "scope_signals"}
_POLICY_KEYS = ("AllowBind", "AllowConnect", "LandlockScopes")


def _items(key: str, value: object) -> list[object]:
    # TOML gives lists; the command line and systemd-style files give "80 443" or "80,443".
    if isinstance(value, str):
        return list(value.replace(",", " ").split())
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    raise ProfileError(f"{key}={value!r} is not a list: give a list such as [80, 443]")


def _ports(key: str, value: object, lowest: int) -> tuple[int, ...]:
    ports: set[int] = set()
    for item in _items(key, value):
        port: int | None = None
        if isinstance(item, int) and not isinstance(item, bool):
            port = item
        elif isinstance(item, str) and item.isascii() and item.isdigit():
            port = int(item)
        if port is None or not lowest <= port <= 65535:
            raise ProfileError(f"{key}: port {item!r} is not valid: use {lowest}-65535")
        ports.add(port)
    return tuple(sorted(ports))


def parse_keys(mapping: Mapping[str, object]) -> LandlockPolicy | None:
    """Read the Landlock profile keys; None when the profile asks for no Landlock.

    ``Landlock`` = "required" | "best-effort" | "off" (booleans mean required/off; absent means
    required if another key below is present, else None). ``AllowBind`` (ports 0-65535; 0 =
    ephemeral) and ``AllowConnect`` (1-65535) restrict TCP; an empty list allows no port.
    ``LandlockScopes``: "abstract-unix", "signal". Other keys are ignored (the profile layer
    owns unknown-key errors). The policy has no paths: the runtime adds them from its mounts.
    """
    # Scopes emptied by a reset ([""] in a profile that extends another) ask for nothing; an
    # empty port list does ask for something (no port at all).
    present = [
        k
        for k in _POLICY_KEYS
        if k in mapping and not (k == "LandlockScopes" and mapping[k] in ([], (), ""))
    ]
    mode: object = mapping.get("Landlock")
    if mode is None:
        if not present:
            return None
        mode = "required"
    if isinstance(mode, bool):
        mode = "required" if mode else "off"
    if mode not in _MODES:
        raise ProfileError(f"Landlock={mode!r} is not valid: use required, best-effort or off")
    if mode == "off":
        if present:
            raise ProfileError(
                f"{present[0]} needs Landlock but Landlock=off: remove one of the two keys"
            )
        return None
    tcp_bind = _ports("AllowBind", mapping["AllowBind"], 0) if "AllowBind" in mapping else None
    tcp_connect = (
        _ports("AllowConnect", mapping["AllowConnect"], 1) if "AllowConnect" in mapping else None
    )
    scopes: dict[str, bool] = {}
    for item in _items("LandlockScopes", mapping.get("LandlockScopes", [])):
        if item not in _SCOPE_KEYS:
            raise ProfileError(
                f"LandlockScopes: {item!r} is not valid: use abstract-unix and/or signal"
            )
        scopes[_SCOPE_KEYS[str(item)]] = True
    return LandlockPolicy(
        tcp_bind=tcp_bind,
        tcp_connect=tcp_connect,
        scope_abstract_unix=scopes.get("scope_abstract_unix", False),
        scope_signals=scopes.get("scope_signals", False),
        required=mode == "required",
    )
