"""seccomp: the system call filter of the sandbox payload.

Owns: the typed :class:`SeccompPolicy` built from systemd's vocabulary (``SystemCallFilter``,
``SystemCallErrorNumber``, ``SystemCallArchitectures``, ``RestrictNamespaces``,
``RestrictAddressFamilies``, ``LockPersonality``, ``MemoryDenyWriteExecute``,
``RestrictRealtime``, ``RestrictSUIDSGID``) plus ringfence's ``BlockTerminalInjection`` and
``DenyUnknownSystemCalls``; turning it into BPF with libseccomp (``libseccomp.so.2`` through
ctypes) for every ABI the kernel accepts; loading it into the calling thread.

Must never: decide *which* policy a sandbox gets (the profile layer does), load libseccomp or
ctypes at import time (this module is on the start-up path), or keep a rule that libseccomp
dropped silently: a deny rule for a call libseccomp cannot name is enforced by a small BPF
program of our own, so the filter fails closed.

Use: in the launcher, before fork (and before pivot_root hides libseccomp), :func:`prepare`
compiles the policy; in the payload, after capabilities are dropped and no_new_privs is set,
:func:`install` loads it, immediately before execve. install() without prepare() compiles with
libseccomp itself (slower, and only where libseccomp.so.2 is visible). :func:`export_bpf` and
:func:`load_bpf` expose the compiled form for callers that cache it.
"""

from __future__ import annotations

import os

from .._record import record as dataclass
from .._values import parse_bool
from ..errors import KernelError, ProfileError, UnsupportedError
from . import syscall_groups

TYPE_CHECKING = False  # typing costs milliseconds to import; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, Literal

    Mode = Literal["off", "allow", "deny"]

__all__ = [
    "KEYS",
    "SeccompPolicy",
    "describe",
    "export_bpf",
    "install",
    "load_bpf",
    "parse_keys",
    "prepare",
    "strict_policy",
]

# The profile keys this module understands.
KEYS: frozenset[str] = frozenset(
    {
        "SystemCallFilter",
        "SystemCallErrorNumber",
        "SystemCallArchitectures",
        "RestrictNamespaces",
        "RestrictAddressFamilies",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "BlockTerminalInjection",
        "DenyUnknownSystemCalls",
    }
)

# --- kernel and libseccomp constants -----------------------------------------------------

# seccomp.h (libseccomp): actions, filter attributes, comparison operators
_ACT_KILL_PROCESS = 0x80000000
_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_FLTATR_ACT_BADARCH = 2
_FLTATR_CTL_NNP = 3
_FLTATR_CTL_OPTIMIZE = 8  # 2: binary tree of syscall numbers (libseccomp >= 2.5)
_CMP_NE, _CMP_LT, _CMP_LE, _CMP_EQ, _CMP_GE, _CMP_GT, _CMP_MASKED_EQ = 1, 2, 3, 4, 5, 6, 7
_NR_SCMP_ERROR = -1  # seccomp_syscall_resolve_name*: unknown name
_PNR_ABSENT = -10000  # libseccomp pseudo numbers at or below this: "not on this ABI"

# linux/audit.h: AUDIT_ARCH_* (libseccomp's arch tokens are the same values)
_AUDIT_ARCH = {
    "x86-64": 0xC000003E,
    "x86": 0x40000003,
    "x32": 0x4000003E,  # token only: x32 reports AUDIT_ARCH_X86_64 with __X32_SYSCALL_BIT
    "arm64": 0xC00000B7,
    "arm": 0x40000028,
}
_X32_SYSCALL_BIT = 0x40000000  # asm/unistd.h
_X32_LAST_COMPAT_NR = 547  # asm/unistd_x32.h: x32-only entries are 512..547

# The ABIs each host machine's kernel accepts; the first one is native.
_HOST_ABIS = {"x86_64": ("x86-64", "x86", "x32"), "aarch64": ("arm64", "arm")}
# systemd's architecture names (seccomp_arch_from_string); others are rejected.
_ARCH_NAMES = frozenset(
    {
        "native", "x86", "x86-64", "x32", "arm", "arm64", "mips", "mips64", "mips64-n32",
        "mips-le", "mips64-le", "mips64-le-n32", "ppc", "ppc64", "ppc64-le", "riscv64", "s390",
        "s390x",
    }
)  # fmt: skip

# linux/sched.h: namespace flags; CLONE_NEWTIME shares its bit with clone()'s exit signal, so
# it is only checked for unshare() and setns().
_NAMESPACE_FLAGS = {
    "cgroup": 0x02000000,
    "ipc": 0x08000000,
    "net": 0x40000000,
    "mnt": 0x00020000,
    "pid": 0x20000000,
    "user": 0x10000000,
    "uts": 0x04000000,
    "time": 0x00000080,
}

# linux/socket.h
_ADDRESS_FAMILIES = {
    "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4, "AF_APPLETALK": 5,
    "AF_NETROM": 6, "AF_BRIDGE": 7, "AF_ATMPVC": 8, "AF_X25": 9, "AF_INET6": 10,
    "AF_ROSE": 11, "AF_DECnet": 12, "AF_NETBEUI": 13, "AF_SECURITY": 14, "AF_KEY": 15,
    "AF_NETLINK": 16, "AF_PACKET": 17, "AF_ASH": 18, "AF_ECONET": 19, "AF_ATMSVC": 20,
    "AF_RDS": 21, "AF_SNA": 22, "AF_IRDA": 23, "AF_PPPOX": 24, "AF_WANPIPE": 25,
    "AF_LLC": 26, "AF_IB": 27, "AF_MPLS": 28, "AF_CAN": 29, "AF_TIPC": 30,
    "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33, "AF_ISDN": 34, "AF_PHONET": 35,
    "AF_IEEE802154": 36, "AF_CAIF": 37, "AF_ALG": 38, "AF_NFC": 39, "AF_VSOCK": 40,
    "AF_KCM": 41, "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44, "AF_MCTP": 45,
}  # fmt: skip
_AF_MAX = 46

# sys/mman.h, linux/shm.h, linux/stat.h, asm-generic/fcntl.h, linux/sched.h, linux/personality.h
_PROT_WRITE, _PROT_EXEC = 0x2, 0x4
_SHM_EXEC = 0o100000
_S_ISUID, _S_ISGID = 0o4000, 0o2000
_O_CREAT, _O_TMPFILE_BIT = 0o100, 0o20000000
_SCHED_FIFO, _SCHED_RR, _SCHED_ISO_RESERVED, _SCHED_IDLE = 1, 2, 4, 5
_PER_LINUX, _PERSONALITY_QUERY = 0x0000, 0xFFFFFFFF

# Terminal and console ioctls a confined program must not send to a terminal it inherited:
# asm-generic/ioctls.h (TIOC*), linux/kd.h (KD*, PIO_*), linux/vt.h (VT_*).
_TERMINAL_IOCTLS = {
    "TIOCSTI": 0x5412, "TIOCLINUX": 0x541C, "TIOCCONS": 0x541D, "TIOCSETD": 0x5423,
    "KDADDIO": 0x4B34, "KDDELIO": 0x4B35, "KDENABIO": 0x4B36, "KDDISABIO": 0x4B37,
    "KDSETMODE": 0x4B3A, "PIO_SCRNMAP": 0x4B41, "KDSKBMODE": 0x4B45, "KDSKBENT": 0x4B47,
    "KDSKBSENT": 0x4B49, "KDSKBDIACR": 0x4B4B, "KDSETKEYCODE": 0x4B4D, "KDSIGACCEPT": 0x4B4E,
    "PIO_FONT": 0x4B61, "PIO_UNIMAP": 0x4B67, "PIO_UNIMAPCLR": 0x4B68,
    "PIO_UNISCRNMAP": 0x4B6A, "PIO_FONTX": 0x4B6C, "PIO_FONTRESET": 0x4B6D, "PIO_CMAP": 0x4B71,
    "KDFONTOP": 0x4B72, "KDSKBDIACRUC": 0x4BFB, "VT_SETMODE": 0x5602, "VT_RELDISP": 0x5605,
    "VT_ACTIVATE": 0x5606, "VT_DISALLOCATE": 0x5608, "VT_RESIZE": 0x5609,
    "VT_RESIZEX": 0x560A, "VT_LOCKSWITCH": 0x560B, "VT_UNLOCKSWITCH": 0x560C,
    "VT_SETACTIVATE": 0x560F,
}  # fmt: skip

_EPERM, _ENOSYS, _EAFNOSUPPORT = 1, 38, 97


# --- the policy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SeccompPolicy:
    """What the filter enforces, in systemd's terms. Pure data; :func:`parse_keys` builds it.

    ``syscalls`` holds expanded, sorted names: the calls allowed (``mode="allow"``) or denied
    (``mode="deny"``). ``error_number`` None means the process is killed (systemd's default).
    ``architectures`` None means every ABI the kernel accepts; otherwise the listed ones plus
    the native ABI, and a call made through any other ABI kills the process.
    ``restrict_namespaces`` None means off; else the namespace types that may still be made.
    ``address_families`` None means off; else an allow-list, or a deny-list when
    ``address_families_deny``.
    """

    mode: Mode = "off"
    syscalls: tuple[str, ...] = ()
    # deny-list "name:ERRNO" overrides (None: "name:kill")
    syscall_errnos: tuple[tuple[str, int | None], ...] = ()
    filter_spec: tuple[str, ...] = ()
    error_number: int | None = None
    architectures: tuple[str, ...] | None = None
    restrict_namespaces: tuple[str, ...] | None = None
    address_families: tuple[str, ...] | None = None
    address_families_deny: bool = False
    lock_personality: bool = False
    memory_deny_write_execute: bool = False
    restrict_realtime: bool = False
    restrict_suid_sgid: bool = False
    block_terminal_injection: bool = False
    deny_unknown_syscalls: bool = False


# --- parsing ------------------------------------------------------------------------------


def _nearest(word: str, choices: Iterable[str]) -> str | None:
    import difflib  # only on the error path

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def _bad(key: str, value: object, what: str, choices: Iterable[str] = ()) -> ProfileError:
    near = _nearest(str(value), choices)
    hint = f"did you mean {near!r}?" if near else None
    return ProfileError(f"{key}: {what} {value!r}", hint)


def _entries(key: str, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ProfileError(f"{key}: expected a string or a list of strings, got {value!r}")


def _errno_number(key: str, value: object) -> int | None:
    """An errno name or number, or "kill" (returned as None)."""
    import errno

    if value == "kill":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 4096:
        return value
    if isinstance(value, str):
        if value.isdigit() and 0 < int(value) < 4096:
            return int(value)
        number = getattr(errno, value, None) if value.startswith("E") else None
        if isinstance(number, int):
            return number
    raise _bad(key, value, "unknown errno", [*errno.errorcode.values(), "kill"])


def _accumulate(
    key: str,
    entries: list[str],
    words: Callable[[str, bool], dict[str, int | None]],
    none_word: bool = False,
) -> tuple[Mode, dict[str, int | None]]:
    """systemd's list semantics: the first entry sets the mode (allow-list, or deny-list if it
    starts with "~"); later entries of the same kind add, of the other kind remove; an empty
    entry resets; with ``none_word``, "none" starts an empty allow-list. ``words(word,
    denying)`` validates one word and returns its names."""
    mode: Mode = "off"
    items: dict[str, int | None] = {}
    for entry in entries:
        body = entry.strip()
        if not body:
            mode, items = "off", {}
            continue
        if none_word and body == "none":
            mode, items = "allow", {}
            continue
        invert = body.startswith("~")
        if invert:
            body = body[1:]
        if mode == "off":
            mode = "deny" if invert else "allow"
        add = (mode == "allow") != invert
        for word in body.split():
            for name, err in words(word, add and mode == "deny").items():
                if add:
                    items[name] = err
                else:
                    items.pop(name, None)
    return mode, items


def _syscall_words(key: str) -> Callable[[str, bool], dict[str, int | None]]:
    def words(word: str, denying: bool) -> dict[str, int | None]:
        name, sep, suffix = word.partition(":")
        err: int | None = -1  # -1: no override
        if sep:
            if not denying:
                raise ProfileError(
                    f"{key}: {word!r}: an errno suffix is only valid in a deny-list (~) entry"
                )
            err = _errno_number(key, suffix)
        if name.startswith("@"):
            if name not in syscall_groups.group_names():
                raise _bad(key, name, "unknown system call group", syscall_groups.group_names())
            return dict.fromkeys(syscall_groups.expand(name), err)
        if name not in syscall_groups.KNOWN:
            raise _bad(key, name, "unknown system call", syscall_groups.KNOWN)
        return {name: err}

    return words


def _address_family_words(key: str) -> Callable[[str, bool], dict[str, int | None]]:
    def words(word: str, denying: bool) -> dict[str, int | None]:
        if word not in _ADDRESS_FAMILIES:
            raise _bad(key, word, "unknown address family", _ADDRESS_FAMILIES)
        return {"AF_UNIX" if word == "AF_LOCAL" else word: None}

    return words


def parse_keys(mapping: Mapping[str, object]) -> SeccompPolicy:
    """Validate the seccomp keys of a profile and build the policy.

    Raises ProfileError naming the key and the bad value (with the nearest valid name for a
    misspelt system call, group, errno or address family)."""
    for key in mapping:
        if key not in KEYS:
            raise _bad("seccomp", key, "unknown key", KEYS)
    fields: dict[str, Any] = {}

    if "SystemCallErrorNumber" in mapping:
        fields["error_number"] = _errno_number(
            "SystemCallErrorNumber", mapping["SystemCallErrorNumber"]
        )

    if "SystemCallFilter" in mapping:
        key = "SystemCallFilter"
        entries = _entries(key, mapping[key])
        mode, items = _accumulate(key, entries, _syscall_words(key))
        fields["mode"] = mode
        fields["syscalls"] = tuple(sorted(items))
        fields["syscall_errnos"] = tuple(sorted((n, e) for n, e in items.items() if e != -1))
        fields["filter_spec"] = tuple(entries)

    if "SystemCallArchitectures" in mapping:
        key = "SystemCallArchitectures"
        value = mapping[key]
        names = value.split() if isinstance(value, str) else _entries(key, value)
        for name in names:
            if name not in _ARCH_NAMES:
                raise _bad(key, name, "unknown architecture", _ARCH_NAMES)
        fields["architectures"] = tuple(dict.fromkeys(names)) if names else None

    if "RestrictNamespaces" in mapping:
        key = "RestrictNamespaces"
        value = mapping[key]
        if isinstance(value, bool) or (
            isinstance(value, str) and value.lower() in ("yes", "no", "true", "false")
        ):
            fields["restrict_namespaces"] = () if parse_bool(key, value) else None
        else:
            entries = _entries(key, value)
            invert = bool(entries) and entries[0].strip().startswith("~")
            listed: list[str] = []
            for entry in entries:
                for word in entry.strip().lstrip("~").split():
                    if word not in _NAMESPACE_FLAGS:
                        raise _bad(key, word, "unknown namespace type", _NAMESPACE_FLAGS)
                    listed.append(word)
            allowed = set(_NAMESPACE_FLAGS) - set(listed) if invert else set(listed)
            fields["restrict_namespaces"] = tuple(sorted(allowed))

    if "RestrictAddressFamilies" in mapping:
        key = "RestrictAddressFamilies"
        entries = _entries(key, mapping[key])
        mode, items = _accumulate(key, entries, _address_family_words(key), none_word=True)
        if mode != "off":
            fields["address_families"] = tuple(sorted(items))
            fields["address_families_deny"] = mode == "deny"

    for key, attr in (
        ("LockPersonality", "lock_personality"),
        ("MemoryDenyWriteExecute", "memory_deny_write_execute"),
        ("RestrictRealtime", "restrict_realtime"),
        ("RestrictSUIDSGID", "restrict_suid_sgid"),
        ("BlockTerminalInjection", "block_terminal_injection"),
        ("DenyUnknownSystemCalls", "deny_unknown_syscalls"),
    ):
        if key in mapping:
            fields[attr] = parse_bool(key, mapping[key])

    return SeccompPolicy(**fields)


# The strict profile's deny-list: everything that changes the system, the mount table, kernel
# state shared with the host, or reaches into another process.
STRICT_KEYS: dict[str, object] = {
    "SystemCallFilter": [
        "~@clock @cpu-emulation @debug @keyring @module @mount @obsolete @raw-io @reboot @swap",
        "~acct bpf fanotify_init io_uring_enter io_uring_register io_uring_setup kcmp"
        " lookup_dcookie name_to_handle_at nfsservctl open_by_handle_at process_madvise"
        " process_vm_readv process_vm_writev quotactl quotactl_fd setns syslog userfaultfd"
        " vhangup",
    ],
    "SystemCallErrorNumber": "EPERM",
    "SystemCallArchitectures": "native",
    "RestrictNamespaces": True,
    "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"],
    "LockPersonality": True,
    "RestrictRealtime": True,
    "RestrictSUIDSGID": True,
    "BlockTerminalInjection": True,
    "DenyUnknownSystemCalls": True,
}

_strict: SeccompPolicy | None = None


def strict_policy() -> SeccompPolicy:
    """The strict profile's filter (see STRICT_KEYS); denied calls fail with EPERM, clone3 with
    ENOSYS (so libc falls back to clone, whose flags are checked), any non-native ABI kills."""
    global _strict
    if _strict is None:
        _strict = parse_keys(STRICT_KEYS)
    return _strict


# --- compiling the policy into rules (pure) ------------------------------------------------


@dataclass(frozen=True)
class _Cmp:
    arg: int
    op: int
    a: int
    b: int = 0


@dataclass(frozen=True)
class _Rule:
    syscall: str
    action: int
    conds: tuple[_Cmp, ...] = ()
    abis: frozenset[str] | None = None  # None: every ABI in the filter
    why: str = ""


@dataclass(frozen=True)
class _FilterPlan:
    purpose: str
    default: int
    rules: tuple[_Rule, ...]


@dataclass(frozen=True)
class _Plan:
    abis: tuple[str, ...]  # native first
    # Load order. The SystemCallFilter one comes last: an allow-list may not allow seccomp()
    # itself, and among equal actions the kernel reports the newest filter's (its errno).
    filters: tuple[_FilterPlan, ...]
    deny_unknown: bool
    host_abis: tuple[str, ...] = ()


def _errno(n: int) -> int:
    return _ACT_ERRNO | (n & 0xFFFF)


def _host_abis() -> tuple[str, ...]:
    machine = os.uname().machine
    try:
        return _HOST_ABIS[machine]
    except KeyError:
        raise UnsupportedError(
            f"seccomp: no filter support for machine {machine!r}",
            "ringfence runs on x86_64 and aarch64",
        ) from None


def _low32(arg: int, value: int) -> _Cmp:
    # int arguments: the kernel ignores the upper half of the register, so must the filter.
    return _Cmp(arg, _CMP_MASKED_EQ, 0xFFFFFFFF, value)


def _bits(arg: int, mask: int) -> _Cmp:
    return _Cmp(arg, _CMP_MASKED_EQ, mask, mask)


def _restriction_rules(p: SeccompPolicy) -> list[_Rule]:
    eperm = _errno(_EPERM)
    rules: list[_Rule] = []

    if p.restrict_namespaces is not None:
        why = "RestrictNamespaces"
        blocked = [f for n, f in _NAMESPACE_FLAGS.items() if n not in p.restrict_namespaces]
        if blocked:
            # clone3 passes its flags in a struct the filter cannot read; ENOSYS makes libc fall
            # back to clone(), whose flags are checked below.
            rules.append(_Rule("clone3", _errno(_ENOSYS), why=why))
            if len(blocked) == len(_NAMESPACE_FLAGS):
                rules.append(_Rule("setns", eperm, why=why))
            else:
                rules.append(_Rule("setns", eperm, (_low32(1, 0),), why=why))
            for flag in blocked:
                rules.append(_Rule("unshare", eperm, (_bits(0, flag),), why=why))
                if flag != _NAMESPACE_FLAGS["time"]:
                    rules.append(_Rule("clone", eperm, (_bits(0, flag),), why=why))
                if len(blocked) != len(_NAMESPACE_FLAGS):
                    rules.append(_Rule("setns", eperm, (_bits(1, flag),), why=why))

    if p.address_families is not None:
        why = "RestrictAddressFamilies"
        refuse = _errno(_EAFNOSUPPORT)
        wanted = sorted({_ADDRESS_FAMILIES[f] for f in p.address_families})
        if p.address_families_deny:
            for af in wanted:
                rules.append(_Rule("socket", refuse, (_low32(0, af),), why=why))
        elif not wanted:
            rules.append(_Rule("socket", refuse, why=why))
        else:
            first, last = wanted[0], wanted[-1]
            rules.append(_Rule("socket", refuse, (_Cmp(0, _CMP_LT, first),), why=why))
            # Unsigned 64-bit compare: also catches any value with upper bits set.
            rules.append(_Rule("socket", refuse, (_Cmp(0, _CMP_GT, last),), why=why))
            for af in range(first + 1, last):
                if af not in wanted:
                    rules.append(_Rule("socket", refuse, (_low32(0, af),), why=why))

    if p.lock_personality:
        why = "LockPersonality"
        # Allowed: PER_LINUX and the 0xffffffff query. libseccomp accepts one comparison per
        # argument, so "neither 0 nor all ones" is written as "some bit i is 1 and bit i+1 is
        # 0" (cyclically: every other 32-bit value has such a pair), plus "> 32 bits".
        rules.append(_Rule("personality", eperm, (_Cmp(0, _CMP_GT, _PERSONALITY_QUERY),), why=why))
        for i in range(32):
            one, zero = 1 << i, 1 << ((i + 1) % 32)
            rules.append(
                _Rule("personality", eperm, (_Cmp(0, _CMP_MASKED_EQ, one | zero, one),), why=why)
            )

    if p.memory_deny_write_execute:
        why = "MemoryDenyWriteExecute"
        wx = _PROT_WRITE | _PROT_EXEC
        # i386's old mmap takes a struct pointer: refuse it, filter mmap2 instead.
        rules.append(
            _Rule("mmap", eperm, (_bits(2, wx),), frozenset({"x86-64", "x32", "arm64", "arm"}), why)
        )
        rules.append(_Rule("mmap", eperm, (), frozenset({"x86"}), why))
        rules.append(_Rule("mmap2", eperm, (_bits(2, wx),), why=why))
        rules.append(_Rule("mprotect", eperm, (_bits(2, _PROT_EXEC),), why=why))
        rules.append(_Rule("pkey_mprotect", eperm, (_bits(2, _PROT_EXEC),), why=why))
        rules.append(_Rule("shmat", eperm, (_bits(2, _SHM_EXEC),), why=why))

    if p.restrict_realtime:
        why = "RestrictRealtime"
        for policy in (_SCHED_FIFO, _SCHED_RR, _SCHED_ISO_RESERVED):
            rules.append(_Rule("sched_setscheduler", eperm, (_Cmp(1, _CMP_EQ, policy),), why=why))
        # SCHED_DEADLINE, SCHED_RESET_ON_FORK combinations and anything with upper bits set.
        rules.append(_Rule("sched_setscheduler", eperm, (_Cmp(1, _CMP_GT, _SCHED_IDLE),), why=why))
        # sched_setattr passes the policy in a struct the filter cannot read.
        rules.append(_Rule("sched_setattr", eperm, why=why))

    if p.restrict_suid_sgid:
        why = "RestrictSUIDSGID"
        for bit in (_S_ISUID, _S_ISGID):
            for name, arg in (("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("fchmodat2", 2),
                              ("mkdir", 1), ("mkdirat", 2), ("mknod", 1), ("mknodat", 2),
                              ("creat", 1)):  # fmt: skip
                rules.append(_Rule(name, eperm, (_bits(arg, bit),), why=why))
            for name, flags, mode in (("open", 1, 2), ("openat", 2, 3)):
                for create in (_O_CREAT, _O_TMPFILE_BIT):
                    rules.append(
                        _Rule(name, eperm, (_bits(flags, create), _bits(mode, bit)), why=why)
                    )
        # openat2 passes flags and mode in a struct; ENOSYS makes libc use openat().
        rules.append(_Rule("openat2", _errno(_ENOSYS), why=why))

    if p.block_terminal_injection:
        why = "BlockTerminalInjection"
        for request in _TERMINAL_IOCTLS.values():
            rules.append(_Rule("ioctl", eperm, (_low32(1, request),), why=why))

    return rules


def _plan(p: SeccompPolicy) -> _Plan:
    host = _host_abis()
    native = host[0]
    if p.architectures is None:
        abis = host
    else:
        wanted = {native if a == "native" else a for a in p.architectures}
        abis = tuple(a for a in host if a == native or a in wanted)

    deny_action = _ACT_KILL_PROCESS if p.error_number is None else _errno(p.error_number)
    restrictions = _restriction_rules(p)
    filters: list[_FilterPlan] = []

    if p.mode == "allow":
        allowed = set(p.syscalls)
        rules = [_Rule(n, _ACT_ALLOW, why="SystemCallFilter") for n in sorted(allowed)]
        if "clone3" not in allowed and deny_action != _errno(_ENOSYS):
            # glibc falls back to clone() only on ENOSYS.
            rules.append(_Rule("clone3", _errno(_ENOSYS), why="SystemCallFilter"))
        if restrictions:
            # libseccomp drops a conditional deny on a call that already has an unconditional
            # allow, so restrictions go into a filter of their own; the kernel applies the
            # stricter answer of the two.
            filters.append(_FilterPlan("restrictions", _ACT_ALLOW, tuple(restrictions)))
        filters.append(_FilterPlan("SystemCallFilter", deny_action, tuple(rules)))
    else:
        denied: dict[str, int] = {}
        if p.mode == "deny":
            overrides = dict(p.syscall_errnos)
            for name in p.syscalls:
                err = overrides.get(name, -1)
                if err == -1:
                    denied[name] = deny_action
                else:
                    denied[name] = _ACT_KILL_PROCESS if err is None else _errno(err)
        rules = [_Rule(n, a, why="SystemCallFilter") for n, a in sorted(denied.items())]
        # An unconditional deny already covers every argument.
        rules += [r for r in restrictions if r.syscall not in denied]
        if rules or len(abis) < len(host):
            purpose = "SystemCallFilter" if p.mode == "deny" else "restrictions"
            filters.append(_FilterPlan(purpose, _ACT_ALLOW, tuple(rules)))

    return _Plan(abis, tuple(filters), p.deny_unknown_syscalls, host)


# --- describe -----------------------------------------------------------------------------


def _action_name(action: int) -> str:
    import errno

    if action == _ACT_ALLOW:
        return "allow"
    if action == _ACT_KILL_PROCESS:
        return "kill"
    return "errno:" + errno.errorcode.get(action & 0xFFFF, str(action & 0xFFFF))


_described: dict[SeccompPolicy, dict[str, object]] = {}


def describe(policy: SeccompPolicy) -> dict[str, object]:
    """JSON-able summary for the enforcement report (computed once per policy: it builds the
    whole rule plan, and every plan compiled by a Sandbox asks for it)."""
    cached = _described.get(policy)
    if cached is None:
        cached = _described[policy] = _describe(policy)
    return dict(cached)


def _describe(policy: SeccompPolicy) -> dict[str, object]:
    import errno

    plan = _plan(policy)
    main = plan.filters[-1] if plan.filters else None
    if policy.error_number is None:
        err = "kill"
    else:
        err = errno.errorcode.get(policy.error_number, str(policy.error_number))
    namespaces: object
    if policy.restrict_namespaces is None:
        namespaces = False
    elif not policy.restrict_namespaces:
        namespaces = True
    else:
        namespaces = {"allowed": list(policy.restrict_namespaces)}
    families: object = False
    if policy.address_families is not None:
        kind = "deny" if policy.address_families_deny else "allow"
        families = {kind: list(policy.address_families)}
    return {
        "mode": policy.mode,
        "default_action": _action_name(main.default) if main else "allow",
        "errno": err,
        "syscalls": len(policy.syscalls),
        "filter": list(policy.filter_spec),
        "rules": sum(len(f.rules) for f in plan.filters),
        "filters": len(plan.filters) + (1 if plan.deny_unknown else 0),
        "architectures": list(plan.abis),
        "blocked_architectures": [a for a in plan.host_abis if a not in plan.abis],
        "restrictions": {
            "namespaces": namespaces,
            "address_families": families,
            "lock_personality": policy.lock_personality,
            "memory_deny_write_execute": policy.memory_deny_write_execute,
            "restrict_realtime": policy.restrict_realtime,
            "restrict_suid_sgid": policy.restrict_suid_sgid,
            "block_terminal_injection": policy.block_terminal_injection,
            "deny_unknown_syscalls": policy.deny_unknown_syscalls,
        },
    }


# --- libseccomp through ctypes ------------------------------------------------------------


class _Libseccomp:
    """The few libseccomp entry points we use, with their C signatures."""

    def __init__(self) -> None:
        import ctypes

        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError:
            raise UnsupportedError(
                "seccomp: libseccomp.so.2 is not installed",
                "install libseccomp2 (apt-get install libseccomp2)",
            ) from None

        class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
            _fields_ = [
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            ]

        ctx, u32, cstr = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "seccomp_init": (ctx, [u32]),
            "seccomp_release": (None, [ctx]),
            "seccomp_arch_add": (ctypes.c_int, [ctx, u32]),
            "seccomp_arch_remove": (ctypes.c_int, [ctx, u32]),
            "seccomp_attr_set": (ctypes.c_int, [ctx, ctypes.c_int, u32]),
            "seccomp_merge": (ctypes.c_int, [ctx, ctx]),
            "seccomp_syscall_resolve_name": (ctypes.c_int, [cstr]),
            "seccomp_syscall_resolve_name_arch": (ctypes.c_int, [u32, cstr]),
            "seccomp_rule_add_array": (
                ctypes.c_int,
                [ctx, u32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)],
            ),
            "seccomp_rule_add_exact_array": (
                ctypes.c_int,
                [ctx, u32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp)],
            ),
            "seccomp_load": (ctypes.c_int, [ctx]),
            "seccomp_export_bpf": (ctypes.c_int, [ctx, ctypes.c_int]),
            "seccomp_api_get": (ctypes.c_uint, []),
        }
        for name, (restype, argtypes) in sigs.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes

        class Version(ctypes.Structure):  # struct scmp_version
            _fields_ = [
                ("major", ctypes.c_uint),
                ("minor", ctypes.c_uint),
                ("micro", ctypes.c_uint),
            ]

        lib.seccomp_version.restype = ctypes.POINTER(Version)
        lib.seccomp_version.argtypes = []
        version = lib.seccomp_version().contents
        self.optimize = (version.major, version.minor) >= (2, 5)
        self.lib = lib
        self.ArgCmp = ArgCmp
        self.ctypes = ctypes
        if lib.seccomp_api_get() < 3:  # API level 3 brings SCMP_ACT_KILL_PROCESS
            raise UnsupportedError(
                "seccomp: libseccomp.so.2 is too old (API level < 3)", "install libseccomp2 >= 2.4"
            )

    def check(self, rc: int, what: str, detail: str = "") -> int:
        if rc < 0:
            raise KernelError(what, -rc, detail)
        return rc


_lib: _Libseccomp | None = None


def _libseccomp() -> _Libseccomp:
    global _lib
    if _lib is None:
        _lib = _Libseccomp()
    return _lib


class _Supplement:
    """Deny rules libseccomp cannot express because it does not know the call's name."""

    def __init__(self) -> None:
        self.denies: dict[str, list[tuple[int, int]]] = {}  # abi -> [(nr, action)]


def _build(L: _Libseccomp, plan: _Plan, sup: _Supplement) -> list[int]:
    """One libseccomp context per filter, each covering every ABI of the plan: a context per
    ABI (so a rule can be limited to some ABIs), merged into the first."""
    lib = L.lib
    native = plan.host_abis[0]
    contexts: list[int] = []
    pending: int | None = None
    try:
        for fp in plan.filters:
            merged: int | None = None
            for abi in plan.abis:
                pending = lib.seccomp_init(fp.default)
                if not pending:
                    raise KernelError("seccomp_init", 12)  # ENOMEM
                token = _AUDIT_ARCH[abi]
                if abi != native:
                    L.check(
                        lib.seccomp_arch_remove(pending, _AUDIT_ARCH[native]), "seccomp_arch_remove"
                    )
                    L.check(lib.seccomp_arch_add(pending, token), "seccomp_arch_add", abi)
                L.check(
                    lib.seccomp_attr_set(pending, _FLTATR_ACT_BADARCH, _ACT_KILL_PROCESS),
                    "seccomp_attr_set",
                )
                L.check(lib.seccomp_attr_set(pending, _FLTATR_CTL_NNP, 1), "seccomp_attr_set")
                if L.optimize:
                    L.check(
                        lib.seccomp_attr_set(pending, _FLTATR_CTL_OPTIMIZE, 2), "seccomp_attr_set"
                    )
                for rule in fp.rules:
                    if rule.abis is None or abi in rule.abis:
                        _add_rule(L, pending, abi, token, abi == native, rule, fp.default, sup)
                if merged is None:
                    merged = pending
                    contexts.append(merged)
                else:
                    L.check(lib.seccomp_merge(merged, pending), "seccomp_merge", abi)
                    # seccomp_merge released it
                pending = None
    except BaseException:
        if pending is not None and pending not in contexts:
            lib.seccomp_release(pending)
        for ctx in contexts:
            lib.seccomp_release(ctx)
        raise
    return contexts


def _add_rule(
    L: _Libseccomp, ctx: int, abi: str, token: int, native: bool, rule: _Rule, default: int,
    sup: _Supplement,
) -> None:  # fmt: skip
    lib = L.lib
    name = rule.syscall.encode()
    on_abi = lib.seccomp_syscall_resolve_name_arch(token, name)
    if on_abi <= _PNR_ABSENT:
        return  # the call does not exist on this ABI
    if on_abi == _NR_SCMP_ERROR:
        number = syscall_groups.fallback_number(rule.syscall)
        if number is None:
            return  # unknown to libseccomp and to us: nothing to filter on any kernel we know
        if rule.action == _ACT_ALLOW:
            if native:
                L.check(lib.seccomp_rule_add_exact_array(ctx, rule.action, number, 0, None),
                        "seccomp_rule_add", f"{rule.syscall} on {abi}")  # fmt: skip
            return  # not expressible on a foreign ABI: stays denied (fails closed)
        if rule.action == default:
            return
        # A call we cannot name cannot have its arguments checked: refuse it outright, with
        # ENOSYS when the rule was conditional so that libc falls back to the older call.
        action = rule.action if not rule.conds else _errno(_ENOSYS)
        sup.denies.setdefault(abi, []).append((number, action))
        return
    if rule.action == default:
        return
    if token & 0x80000000 == 0 and any(c.a > 0xFFFFFFFF or c.b > 0xFFFFFFFF for c in rule.conds):
        return  # 32-bit ABI: a register holds no more than 32 bits, the rule can never match
    number = lib.seccomp_syscall_resolve_name(name)
    conds = (L.ArgCmp * len(rule.conds))(*[L.ArgCmp(c.arg, c.op, c.a, c.b) for c in rule.conds])
    L.check(
        lib.seccomp_rule_add_array(ctx, rule.action, number, len(rule.conds), conds),
        "seccomp_rule_add",
        f"{rule.syscall} on {abi}",
    )


# --- our own BPF for what libseccomp cannot say --------------------------------------------

# linux/filter.h, linux/bpf_common.h; struct seccomp_data: nr at 0, arch at 4
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGT_K, _BPF_JGE_K, _BPF_JSET_K = 0x20, 0x15, 0x25, 0x35, 0x45
_BPF_ALU_AND_K, _BPF_RET_K = 0x54, 0x06
_SECCOMP_DATA_NR, _SECCOMP_DATA_ARCH = 0, 4


def _supplement_bpf(plan: _Plan, sup: _Supplement) -> bytes | None:
    """A small filter for calls libseccomp cannot name, and for DenyUnknownSystemCalls:
    ENOSYS for numbers above the newest call ringfence knows, so a future call is refused
    until reviewed. Calls through ABIs not in the plan are left to the main filter."""
    if not sup.denies and not plan.deny_unknown:
        return None
    import struct

    enosys = _errno(_ENOSYS)
    top = syscall_groups.HIGHEST_KNOWN_NR
    prog: list[tuple[int, int, int | str, int | str]] = []  # (code, k, jt, jf) with labels
    labels: dict[str, int] = {}

    def emit(code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        prog.append((code, k, jt, jf))

    def ret(action: int) -> None:
        emit(_BPF_RET_K, action)

    def label(name: str) -> None:
        labels[name] = len(prog)

    def denies(abi: str, offset: int = 0) -> None:
        for nr, action in sup.denies.get(abi, []):
            emit(_BPF_JEQ_K, nr | offset, 0, 1)
            ret(action)

    abis = set(plan.abis)
    emit(_BPF_LD_W_ABS, _SECCOMP_DATA_ARCH)
    for abi in ("x86-64", "x86", "arm64", "arm"):
        if abi in abis or (abi == "x86-64" and "x32" in abis):
            emit(_BPF_JEQ_K, _AUDIT_ARCH[abi], "abi:" + abi, 0)
    ret(_ACT_ALLOW)
    for abi in ("x86-64", "x86", "arm64", "arm"):
        if not (abi in abis or (abi == "x86-64" and "x32" in abis)):
            continue
        label("abi:" + abi)
        emit(_BPF_LD_W_ABS, _SECCOMP_DATA_NR)
        emit(_BPF_JEQ_K, 0xFFFFFFFF, "allow", 0)  # a tracer skipping the call
        if abi == "x86-64":
            emit(_BPF_JSET_K, _X32_SYSCALL_BIT, "x32", 0)
        if abi in abis:
            denies(abi)
            if plan.deny_unknown:
                emit(_BPF_JGT_K, top, "enosys", "allow")
        ret(_ACT_ALLOW)
        if abi == "x86-64":
            label("x32")
            if "x32" in abis:
                denies("x32", _X32_SYSCALL_BIT)
                if plan.deny_unknown:
                    emit(_BPF_ALU_AND_K, ~_X32_SYSCALL_BIT & 0xFFFFFFFF)
                    emit(_BPF_JGT_K, _X32_LAST_COMPAT_NR, "enosys", 0)
                    emit(_BPF_JGE_K, 512, "allow", 0)
                    emit(_BPF_JGT_K, top, "enosys", "allow")
            ret(_ACT_ALLOW)
    label("allow")
    ret(_ACT_ALLOW)
    label("enosys")
    ret(enosys)

    out = bytearray()
    for index, (code, k, jt, jf) in enumerate(prog):
        offsets = []
        for target in (jt, jf):
            if isinstance(target, str):
                distance = labels[target] - index - 1
                if not 0 <= distance <= 255:
                    raise UnsupportedError("seccomp: supplementary filter too large")
                offsets.append(distance)
            else:
                offsets.append(target)
        out += struct.pack("<HBBI", code, offsets[0], offsets[1], k)
    return bytes(out)


# --- loading ------------------------------------------------------------------------------

# linux/prctl.h, linux/seccomp.h
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1

# Filters compiled before fork by prepare(): install() in the child then only makes syscalls.
_prepared: dict[SeccompPolicy, bytes] = {}


def _set_no_new_privs() -> None:
    from ._syscall import syscall

    syscall("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, detail="PR_SET_NO_NEW_PRIVS")


def _load_program(program: bytes) -> None:
    import ctypes

    from ._syscall import syscall

    # struct sock_fprog (linux/filter.h): unsigned short len; padding; struct sock_filter *filter
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = ctypes.create_string_buffer(16)
    ctypes.c_ushort.from_buffer(fprog, 0).value = len(program) // 8
    ctypes.c_void_p.from_buffer(fprog, 8).value = ctypes.addressof(buf)
    try:
        syscall("seccomp", _SECCOMP_SET_MODE_FILTER, 0, fprog, detail="SECCOMP_SET_MODE_FILTER")
    except KernelError as err:
        if err.errno == 22:  # EINVAL: CONFIG_SECCOMP_FILTER is off
            raise UnsupportedError("seccomp: this kernel does not support seccomp filters") from err
        raise


def prepare(policy: SeccompPolicy) -> None:
    """Compile ``policy`` now (in the launcher, before fork and before pivot_root, while
    libseccomp can still be loaded) so that :func:`install` in the payload only makes the
    seccomp syscalls. Optional: install() compiles by itself when nothing was prepared."""
    if policy not in _prepared:
        _prepared[policy] = _cached_export(policy)
    from . import _syscall  # noqa: F401  (loaded now, used by load_bpf in the child)


def _canonical(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, dict):
        return sorted((repr(k), _canonical(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(type(value), "__record_fields__"):
        return [(n, _canonical(getattr(value, n))) for n in type(value).__record_fields__]  # type: ignore[attr-defined]
    return value


def _cached_export(policy: SeccompPolicy) -> bytes:
    """export_bpf(), remembered across runs in the user's private runtime directory.

    Compiling the strict filter with libseccomp costs milliseconds on every one-shot run; the
    result depends only on the policy, this machine's architecture, libseccomp's syscall tables
    and this version of ringfence, which together name the cache entry. The directory is the
    user's own 0700 runtime directory (a tmpfs that a sandbox does not see), the same trust as
    the session state kept there; any error means compiling afresh.
    """
    import zlib  # a builtin module: hashlib would cost more than the compile it saves

    from .. import __version__

    try:
        lib_version = _libseccomp_version()
        # The entry holds its full key and is used only if that key is equal, so the short
        # file name (a CRC) can collide without harm.
        key = repr((_canonical(policy), os.uname().machine, lib_version, __version__)).encode()
        key = key.replace(b"\n", b" ") + b"\n"
        path = os.path.join(_cache_dir(), f"seccomp-{zlib.crc32(key):08x}.bpf")
    except (OSError, UnsupportedError):
        path = ""
    if path:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if data.startswith(key):
                blob = data[len(key) :]
                if blob and _split(blob):  # a corrupt entry raises ValueError: compile afresh
                    return blob
        except (OSError, ValueError):
            pass
    blob = export_bpf(policy)
    if path:
        try:
            tmp = f"{path}.{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key + blob)
            os.rename(tmp, path)
        except OSError:
            pass
    return blob


def _cache_dir() -> str:
    from .._rundir import private_dir

    return private_dir("cache")


def _libseccomp_version() -> str:
    L = _libseccomp()
    fn = getattr(L.lib, "seccomp_version", None)
    if fn is None:
        return "?"
    import ctypes

    fn.restype = ctypes.POINTER(ctypes.c_uint * 3)
    v = fn().contents
    return f"{v[0]}.{v[1]}.{v[2]}"


def install(policy: SeccompPolicy) -> None:
    """Load the filter for ``policy`` into the calling thread (and so into what it executes).

    Preconditions: capabilities dropped, no_new_privs set (set again here, harmlessly), the
    process single-threaded. Call it last before execve: every later syscall is filtered.
    Uses the filter compiled by :func:`prepare` when there is one, else libseccomp."""
    blob = _prepared.get(policy)
    if blob is not None:
        load_bpf(blob)
        return
    plan = _plan(policy)
    if not plan.filters and not plan.deny_unknown:
        return
    L = _libseccomp()
    sup = _Supplement()
    contexts = _build(L, plan, sup)
    try:
        extra = _supplement_bpf(plan, sup)
        _set_no_new_privs()
        for item in _load_order(contexts, extra):
            if isinstance(item, bytes):
                _load_program(item)
            else:
                L.check(L.lib.seccomp_load(item), "seccomp_load")
    finally:
        for ctx in contexts:
            L.lib.seccomp_release(ctx)


def _load_order(contexts: list[int], extra: bytes | None) -> list[int | bytes]:
    """Our own program goes before the last (SystemCallFilter) filter, which must come last."""
    items: list[int | bytes] = list(contexts)
    if extra is not None:
        items.insert(max(len(items) - 1, 0), extra)
    return items


def export_bpf(policy: SeccompPolicy) -> bytes:
    """The compiled filters as one blob for :func:`load_bpf`: for each filter, in load order,
    a little-endian u32 instruction count and that many ``struct sock_filter``. Computing it
    needs libseccomp; loading it needs nothing but the seccomp syscall. Empty: no filter."""
    import struct

    plan = _plan(policy)
    if not plan.filters and not plan.deny_unknown:
        return b""
    L = _libseccomp()
    sup = _Supplement()
    contexts = _build(L, plan, sup)
    programs: list[bytes] = []
    try:
        for item in _load_order(contexts, _supplement_bpf(plan, sup)):
            if isinstance(item, bytes):
                programs.append(item)
                continue
            fd = os.memfd_create("ringfence-seccomp", os.MFD_CLOEXEC)
            try:
                L.check(L.lib.seccomp_export_bpf(item, fd), "seccomp_export_bpf")
                size = os.lseek(fd, 0, os.SEEK_END)
                programs.append(os.pread(fd, size, 0))
            finally:
                os.close(fd)
    finally:
        for ctx in contexts:
            L.lib.seccomp_release(ctx)
    return b"".join(struct.pack("<I", len(p) // 8) + p for p in programs)


def _split(blob: bytes) -> list[bytes]:
    programs: list[bytes] = []
    offset = 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise ValueError("seccomp: truncated filter blob")
        count = int.from_bytes(blob[offset : offset + 4], "little")
        end = offset + 4 + 8 * count
        if not 0 < count <= 4096 or end > len(blob):
            raise ValueError("seccomp: corrupt filter blob")
        programs.append(blob[offset + 4 : end])
        offset = end
    return programs


def load_bpf(blob: bytes) -> None:
    """Load filters exported by :func:`export_bpf` into the calling thread, in order. Sets
    no_new_privs (the kernel requires it without CAP_SYS_ADMIN). Needs no libseccomp."""
    programs = _split(blob)
    if not programs:
        return
    _set_no_new_privs()
    for program in programs:
        _load_program(program)
