"""The pure part of the seccomp layer: parsing systemd's keys, groups, the rules they compile
to (checked by evaluating them on argument values), the report, and ringfence's own BPF."""

from __future__ import annotations

import errno
import json
import os
import random
import struct

import pytest

from ringfence.errors import ProfileError
from ringfence.kernel import seccomp, syscall_groups
from ringfence.kernel.seccomp import SeccompPolicy, describe, parse_keys

# --- parse_keys: errors name the key, the value and the nearest valid name ------------------


@pytest.mark.parametrize(
    ("keys", "message", "hint"),
    [
        ({"SystemCallFilter": "mout"}, "SystemCallFilter: unknown system call 'mout'", "'mount'"),
        ({"SystemCallFilter": "~@mounts"}, "unknown system call group '@mounts'", "'@mount'"),
        ({"SystemCallFilter": "@sytem-service"}, "group '@sytem-service'", "'@system-service'"),
        (
            {"SystemCallErrorNumber": "EPREM"},
            "SystemCallErrorNumber: unknown errno 'EPREM'",
            "'EPERM'",
        ),
        (
            {"RestrictAddressFamilies": "AF_PAKCET"},
            "unknown address family 'AF_PAKCET'",
            "'AF_PACKET'",
        ),
        (
            {"RestrictNamespaces": ["nett"]},
            "RestrictNamespaces: unknown namespace type 'nett'",
            "'net'",
        ),
        ({"SystemCallArchitectures": "x86_64"}, "unknown architecture 'x86_64'", "'x86-64'"),
        ({"SystemCallFiltre": "read"}, "unknown key 'SystemCallFiltre'", "'SystemCallFilter'"),
    ],
)
def test_bad_values_name_key_value_and_nearest(
    keys: dict[str, object], message: str, hint: str
) -> None:
    with pytest.raises(ProfileError) as info:
        parse_keys(keys)
    assert message in str(info.value)
    assert hint in str(info.value)


def test_no_suggestion_when_nothing_is_close() -> None:
    with pytest.raises(ProfileError) as info:
        parse_keys({"SystemCallFilter": "zzzzzzzzzzzz"})
    assert info.value.hint is None


@pytest.mark.parametrize(
    "keys",
    [
        {"SystemCallFilter": 42},
        {"SystemCallFilter": ["read", 1]},
        {"LockPersonality": "maybe"},
        {"MemoryDenyWriteExecute": 1},
        {"SystemCallErrorNumber": 0},
        {"SystemCallErrorNumber": True},
        {"SystemCallFilter": "read:EPERM"},  # errno suffix outside a deny-list
    ],
)
def test_wrong_types_are_profile_errors(keys: dict[str, object]) -> None:
    with pytest.raises(ProfileError):
        parse_keys(keys)


# --- groups ----------------------------------------------------------------------------------


def test_groups_expand_nested_groups() -> None:
    privileged = syscall_groups.expand("@privileged")
    assert {"chown", "reboot", "kexec_load", "iopl", "settimeofday", "bpf"} <= privileged
    service = syscall_groups.expand("@system-service")
    assert {"execve", "read", "openat", "socket", "clone3", "ioctl"} <= service
    assert "mount" not in service and "reboot" not in service
    assert syscall_groups.expand("@known") == syscall_groups.KNOWN


def test_mount_group_holds_the_whole_new_mount_api() -> None:
    new_api = {
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "open_tree_attr",
        "mount_setattr",
    }
    assert new_api | {"mount", "umount2", "pivot_root", "chroot"} <= syscall_groups.expand("@mount")


def test_every_group_member_is_a_known_name() -> None:
    for group in syscall_groups.group_names():
        assert syscall_groups.expand(group) <= syscall_groups.KNOWN, group
        assert syscall_groups.group_help(group)


@pytest.mark.parametrize(
    "group",
    ["@system-service", "@mount", "@module", "@raw-io", "@reboot", "@swap", "@obsolete",
     "@privileged", "@debug", "@cpu-emulation", "@clock", "@keyring", "@default", "@basic-io",
     "@file-system", "@io-event", "@ipc", "@network-io", "@process", "@resources", "@signal",
     "@timer", "@sync", "@aio", "@chown", "@setuid", "@memlock", "@pkey", "@sandbox"],
)  # fmt: skip
def test_systemd_groups_exist(group: str) -> None:
    assert syscall_groups.expand(group)


def test_recent_calls_have_their_unified_number() -> None:
    assert syscall_groups.fallback_number("open_tree_attr") == 467
    assert syscall_groups.fallback_number("read") is None
    assert max(syscall_groups._UNIFIED_NUMBERS.values()) == syscall_groups.HIGHEST_KNOWN_NR


# --- list semantics like systemd -------------------------------------------------------------


def test_first_entry_sets_allow_list_mode() -> None:
    p = parse_keys({"SystemCallFilter": ["@basic-io", "~write"]})
    assert p.mode == "allow"
    assert "read" in p.syscalls and "write" not in p.syscalls


def test_tilde_sets_deny_list_and_later_plain_entries_remove() -> None:
    p = parse_keys({"SystemCallFilter": ["~@mount", "chroot"]})
    assert p.mode == "deny"
    assert "mount" in p.syscalls and "chroot" not in p.syscalls


def test_deny_entries_accumulate() -> None:
    p = parse_keys({"SystemCallFilter": ["~mount", "~bpf ptrace"]})
    assert set(p.syscalls) == {"mount", "bpf", "ptrace"}


def test_empty_entry_resets() -> None:
    p = parse_keys({"SystemCallFilter": ["~mount", "", "read"]})
    assert (p.mode, p.syscalls) == ("allow", ("read",))


def test_errno_suffix_in_deny_list() -> None:
    p = parse_keys({"SystemCallFilter": "~uname:EILSEQ mount @swap:kill"})
    assert dict(p.syscall_errnos) == {"uname": errno.EILSEQ, "swapon": None, "swapoff": None}
    plan = seccomp._plan(p)
    actions = {r.syscall: r.action for r in plan.filters[-1].rules}
    assert actions["uname"] == 0x50000 | errno.EILSEQ
    assert actions["swapon"] == seccomp._ACT_KILL_PROCESS
    assert actions["mount"] == seccomp._ACT_KILL_PROCESS  # no SystemCallErrorNumber: kill


def test_error_number_forms() -> None:
    assert parse_keys({"SystemCallErrorNumber": "EPERM"}).error_number == errno.EPERM
    assert parse_keys({"SystemCallErrorNumber": 13}).error_number == 13
    assert parse_keys({"SystemCallErrorNumber": "kill"}).error_number is None


def test_restrict_namespaces_forms() -> None:
    assert parse_keys({"RestrictNamespaces": True}).restrict_namespaces == ()
    assert parse_keys({"RestrictNamespaces": False}).restrict_namespaces is None
    assert parse_keys({"RestrictNamespaces": "no"}).restrict_namespaces is None
    assert parse_keys({"RestrictNamespaces": ["net", "ipc"]}).restrict_namespaces == ("ipc", "net")
    allowed = parse_keys({"RestrictNamespaces": "~user mnt"}).restrict_namespaces
    assert allowed is not None and "user" not in allowed and "net" in allowed


def test_address_family_forms() -> None:
    p = parse_keys({"RestrictAddressFamilies": "none"})
    assert (p.address_families, p.address_families_deny) == ((), False)
    p = parse_keys({"RestrictAddressFamilies": "~AF_PACKET"})
    assert (p.address_families, p.address_families_deny) == (("AF_PACKET",), True)
    p = parse_keys({"RestrictAddressFamilies": ["AF_LOCAL AF_INET", "~AF_INET"]})
    assert (p.address_families, p.address_families_deny) == (("AF_UNIX",), False)
    p = parse_keys({"RestrictAddressFamilies": ["none", "AF_UNIX"]})
    assert (p.address_families, p.address_families_deny) == (("AF_UNIX",), False)


def test_architectures() -> None:
    assert parse_keys({"SystemCallArchitectures": "native"}).architectures == ("native",)
    assert parse_keys({"SystemCallArchitectures": ["x86", "x86-64"]}).architectures == (
        "x86",
        "x86-64",
    )


# --- the rules, evaluated on argument values ------------------------------------------------


def _denies(
    rules: list[seccomp._Rule], syscall: str, args: dict[int, int], abi: str = "x86-64"
) -> bool:
    """Does any rule for ``syscall`` on ``abi`` match these 64-bit argument values?"""

    def holds(c: seccomp._Cmp) -> bool:
        v = args.get(c.arg, 0)
        return {
            seccomp._CMP_EQ: v == c.a,
            seccomp._CMP_NE: v != c.a,
            seccomp._CMP_GT: v > c.a,
            seccomp._CMP_GE: v >= c.a,
            seccomp._CMP_LT: v < c.a,
            seccomp._CMP_LE: v <= c.a,
            seccomp._CMP_MASKED_EQ: v & c.a == c.b,
        }[c.op]

    return any(
        r.syscall == syscall and (r.abis is None or abi in r.abis) and all(map(holds, r.conds))
        for r in rules
    )


def _rules(**keys: object) -> list[seccomp._Rule]:
    return seccomp._restriction_rules(parse_keys(keys))


def test_personality_rules_allow_exactly_per_linux_and_the_query() -> None:
    rules = _rules(LockPersonality=True)
    samples = [0, 0xFFFFFFFF, 8, 0x0040000, 0xFFFFFFFE, 0x7FFFFFFF, 0x80000000, 1 << 32, 2**64 - 1]
    samples += [random.Random(7).getrandbits(64) for _ in range(2000)]
    samples += [random.Random(8).getrandbits(32) for _ in range(2000)]
    for value in samples:
        assert _denies(rules, "personality", {0: value}) == (value not in (0, 0xFFFFFFFF)), hex(
            value
        )


def test_address_family_allow_list_rules() -> None:
    rules = _rules(RestrictAddressFamilies=["AF_UNIX", "AF_INET", "AF_INET6"])
    for family in range(0, 64):
        assert _denies(rules, "socket", {0: family}) == (family not in (1, 2, 10)), family
        # Upper bits are ignored by the kernel (int); the filter refuses such values outright.
        assert _denies(rules, "socket", {0: (0xDEAD << 32) | family})


def test_address_family_deny_list_ignores_upper_bits() -> None:
    rules = _rules(RestrictAddressFamilies="~AF_PACKET")
    assert _denies(rules, "socket", {0: 17}) and _denies(rules, "socket", {0: (1 << 40) | 17})
    assert not _denies(rules, "socket", {0: 1})


def test_terminal_ioctl_rules_compare_only_the_low_32_bits() -> None:
    rules = _rules(BlockTerminalInjection=True)
    for request in (0x5412, 0xDEADBEEF_0000_5412, 0x541C, 0x4B49):
        assert _denies(rules, "ioctl", {1: request}), hex(request)
    for request in (0x5401, 0x5413, 0x541B):  # TCGETS, TIOCGWINSZ, FIONREAD stay allowed
        assert not _denies(rules, "ioctl", {1: request}), hex(request)


def test_namespace_rules() -> None:
    rules = _rules(RestrictNamespaces=["net"])
    assert _denies(rules, "unshare", {0: 0x10000000}) and _denies(rules, "clone", {0: 0x10000011})
    assert not _denies(rules, "unshare", {0: 0x40000000})  # CLONE_NEWNET allowed
    assert not _denies(rules, "unshare", {0: 0x400})  # CLONE_FILES is not a namespace
    assert _denies(rules, "setns", {1: 0}) and _denies(rules, "setns", {1: 1 << 32})
    assert not _denies(rules, "setns", {1: 0x40000000})
    assert _denies(rules, "clone3", {})
    assert not _denies(rules, "clone", {0: 0x80 | 17})  # the exit-signal byte is not CLONE_NEWTIME


def test_write_execute_rules() -> None:
    rules = _rules(MemoryDenyWriteExecute=True)
    assert _denies(rules, "mmap", {2: 7}) and not _denies(rules, "mmap", {2: 5})
    assert _denies(rules, "mprotect", {2: 5}) and not _denies(rules, "mprotect", {2: 3})
    assert _denies(rules, "shmat", {2: 0o100000})
    # i386's old mmap passes a struct pointer: refused outright; mmap2 is checked instead.
    assert _denies(rules, "mmap", {2: 5}, abi="x86") and _denies(rules, "mmap2", {2: 7}, abi="x86")


def test_suid_rules() -> None:
    rules = _rules(RestrictSUIDSGID=True)
    assert _denies(rules, "chmod", {1: 0o4755}) and _denies(rules, "fchmodat", {2: 0o2755})
    assert not _denies(rules, "chmod", {1: 0o755})
    assert _denies(rules, "openat", {2: 0o100, 3: 0o4644})  # O_CREAT
    assert _denies(rules, "openat", {2: 0o20200000, 3: 0o2644})  # O_TMPFILE
    assert not _denies(rules, "openat", {2: 0, 3: 0o4644})  # no file is created


def test_realtime_rules() -> None:
    rules = _rules(RestrictRealtime=True)
    for policy in (1, 2, 6, 1 | 0x40000000, 1 << 32):
        assert _denies(rules, "sched_setscheduler", {1: policy}), policy
    for policy in (0, 3, 5):  # OTHER, BATCH, IDLE
        assert not _denies(rules, "sched_setscheduler", {1: policy}), policy


# --- plans: filters, ABIs ----------------------------------------------------------------------


def test_allow_list_puts_restrictions_in_a_filter_loaded_before_it() -> None:
    p = parse_keys({"SystemCallFilter": "@system-service", "LockPersonality": True})
    plan = seccomp._plan(p)
    assert [f.default for f in plan.filters] == [seccomp._ACT_ALLOW, seccomp._ACT_KILL_PROCESS]
    assert all(
        r.action == seccomp._ACT_ALLOW for r in plan.filters[-1].rules if r.syscall != "clone3"
    )


def test_own_program_is_loaded_before_the_system_call_filter() -> None:
    assert seccomp._load_order([1, 2], b"x") == [1, b"x", 2]
    assert seccomp._load_order([], b"x") == [b"x"]
    assert seccomp._load_order([1], None) == [1]


def test_allow_list_answers_enosys_for_clone3_it_does_not_allow() -> None:
    plan = seccomp._plan(parse_keys({"SystemCallFilter": "@default"}))
    assert (
        seccomp._Rule("clone3", 0x50000 | errno.ENOSYS, why="SystemCallFilter")
        in plan.filters[0].rules
    )


def test_deny_list_drops_restrictions_covered_by_an_unconditional_deny() -> None:
    plan = seccomp._plan(parse_keys({"SystemCallFilter": "~personality", "LockPersonality": True}))
    assert [r.conds for r in plan.filters[-1].rules if r.syscall == "personality"] == [()]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 ABIs")
def test_abis() -> None:
    assert seccomp._plan(parse_keys({"RestrictNamespaces": True})).abis == ("x86-64", "x86", "x32")
    native = seccomp._plan(parse_keys({"SystemCallArchitectures": "native"}))
    assert native.abis == ("x86-64",) and len(native.filters) == 1  # the filter blocks the rest
    assert seccomp._plan(parse_keys({"SystemCallArchitectures": "x86"})).abis == ("x86-64", "x86")
    assert seccomp._plan(SeccompPolicy()).filters == ()


# --- strict and describe -------------------------------------------------------------------------


def test_strict_policy() -> None:
    p = seccomp.strict_policy()
    assert p.mode == "deny" and p.error_number == errno.EPERM
    assert p.architectures == ("native",) and p.restrict_namespaces == ()
    assert p.block_terminal_injection and p.lock_personality and p.deny_unknown_syscalls
    assert {"mount", "fsopen", "bpf", "ptrace", "setns", "syslog", "io_uring_setup"} <= set(
        p.syscalls
    )
    assert "execve" not in p.syscalls and "openat" not in p.syscalls
    assert p.address_families is not None and "AF_VSOCK" not in p.address_families


def test_describe_strict_is_json() -> None:
    d = describe(seccomp.strict_policy())
    assert json.loads(json.dumps(d)) == d
    assert d["mode"] == "deny" and d["default_action"] == "allow" and d["errno"] == "EPERM"
    if os.uname().machine == "x86_64":
        assert d["architectures"] == ["x86-64"] and d["blocked_architectures"] == ["x86", "x32"]
    restrictions = d["restrictions"]
    assert isinstance(restrictions, dict)
    assert restrictions["namespaces"] is True and restrictions["block_terminal_injection"] is True
    assert isinstance(d["rules"], int) and d["rules"] > len(seccomp.strict_policy().syscalls)


def test_describe_allow_list() -> None:
    d = describe(parse_keys({"SystemCallFilter": "@system-service", "SystemCallErrorNumber": "EACCES",
                             "RestrictNamespaces": ["net"]}))  # fmt: skip
    assert d["mode"] == "allow" and d["default_action"] == "errno:EACCES" and d["errno"] == "EACCES"
    assert d["filters"] == 2
    restrictions = d["restrictions"]
    assert isinstance(restrictions, dict) and restrictions["namespaces"] == {"allowed": ["net"]}


def test_describe_off() -> None:
    d = describe(SeccompPolicy())
    assert d["mode"] == "off" and d["rules"] == 0 and d["filters"] == 0


# --- ringfence's own BPF, run by a small classic-BPF interpreter --------------------------------


def _run_bpf(program: bytes, arch: int, nr: int) -> int:
    insns = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    data = {0: nr & 0xFFFFFFFF, 4: arch}
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:
            acc = data[k]
        elif code == 0x54:
            acc &= k
        elif code == 0x06:
            return int(k)
        else:
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf


def test_supplement_refuses_unknown_calls_and_what_libseccomp_cannot_name() -> None:
    plan = seccomp._Plan(("x86-64", "x86", "x32"), (), True, ("x86-64", "x86", "x32"))
    sup = seccomp._Supplement()
    sup.denies = {"x86-64": [(467, 0x50001)], "x86": [(467, 0x50001)], "x32": [(467, 0x50001)]}
    program = seccomp._supplement_bpf(plan, sup)
    assert program is not None
    x86_64, i386, arm64 = 0xC000003E, 0x40000003, 0xC00000B7
    allow, enosys, eperm = 0x7FFF0000, 0x50000 | errno.ENOSYS, 0x50001
    x32 = 0x40000000
    cases = [
        (x86_64, 0, allow), (x86_64, 469, allow), (x86_64, 470, enosys), (x86_64, 467, eperm),
        (x86_64, 0xFFFFFFFF, allow), (x86_64, 600, enosys),
        (x86_64, x32 | 1, allow), (x86_64, x32 | 467, eperm), (x86_64, x32 | 470, enosys),
        (x86_64, x32 | 520, allow), (x86_64, x32 | 548, enosys),
        (i386, 20, allow), (i386, 467, eperm), (i386, 470, enosys),
        (arm64, 470, allow),  # an ABI outside the plan is left to the main filter
    ]  # fmt: skip
    for arch, nr, expected in cases:
        assert _run_bpf(program, arch, nr) == expected, (hex(arch), hex(nr))


def test_no_supplement_when_nothing_needs_it() -> None:
    plan = seccomp._Plan(("x86-64",), (), False, ("x86-64",))
    assert seccomp._supplement_bpf(plan, seccomp._Supplement()) is None


def test_blob_format() -> None:
    one, two = bytes(range(16)), bytes(8)
    blob = struct.pack("<I", 2) + one + struct.pack("<I", 1) + two
    assert seccomp._split(blob) == [one, two]
    assert seccomp._split(b"") == []
    with pytest.raises(ValueError):
        seccomp._split(blob[:-1])
    with pytest.raises(ValueError):
        seccomp._split(struct.pack("<I", 0))
