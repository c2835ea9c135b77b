"""Landlock policy: access rights per ABI, file-vs-directory filtering, required vs best effort,
and the profile keys. Pure: nothing here touches the kernel."""

from __future__ import annotations

import ctypes
import json

import pytest

from ringfence.errors import ProfileError, UnsupportedError
from ringfence.kernel import landlock as ll
from ringfence.kernel.landlock import (
    DroppedFeature,
    LandlockPolicy,
    LandlockReport,
    PathRule,
    access_mask,
    describe,
    fs_rights_for_abi,
    parse_keys,
    resolve,
    right_names,
    rule_mask,
)


def bits(*names: str) -> int:
    return sum(ll.FS_RIGHTS[n][0] for n in names)


# --- kernel ABI facts (values from linux/landlock.h) --------------------------------------------


def test_right_bits_match_the_kernel_header() -> None:
    assert ll.FS_RIGHTS["execute"][0] == 1 << 0
    assert ll.FS_RIGHTS["make_sym"][0] == 1 << 12
    assert ll.FS_RIGHTS["refer"] == (1 << 13, 2)
    assert ll.FS_RIGHTS["truncate"] == (1 << 14, 3)
    assert ll.FS_RIGHTS["ioctl_dev"] == (1 << 15, 5)
    assert ll.NET_RIGHTS == {"bind_tcp": (1, 4), "connect_tcp": (2, 4)}
    assert ll.SCOPES == {"abstract_unix_socket": (1, 6), "signal": (2, 6)}
    assert {n: b for n, (b, _) in ll.LOG_FLAGS.items()} == {
        "same_exec_off": 1,
        "new_exec_on": 2,
        "subdomains_off": 4,
    }


def test_struct_layouts_match_the_kernel() -> None:
    assert ctypes.sizeof(ll._PathBeneathAttr) == 12  # packed
    assert ll._PathBeneathAttr.parent_fd.offset == 8
    assert ctypes.sizeof(ll._NetPortAttr) == 16
    assert [ll._ruleset_attr_size(a) for a in (1, 3, 4, 5, 6, 7)] == [8, 8, 16, 16, 24, 24]


@pytest.mark.parametrize(
    ("abi", "mask"),
    [(0, 0), (1, 0x1FFF), (2, 0x3FFF), (3, 0x7FFF), (4, 0x7FFF), (5, 0xFFFF), (7, 0xFFFF)],
)
def test_filesystem_rights_known_per_abi(abi: int, mask: int) -> None:
    assert fs_rights_for_abi(abi) == mask


# --- presets and file-vs-directory filtering ----------------------------------------------------


def test_presets() -> None:
    assert right_names(access_mask("ro")) == ("read_file", "read_dir")
    assert access_mask("rx") == bits("execute", "read_file", "read_dir")
    rw = access_mask("rw")
    assert not rw & bits("execute"), "rw must not grant execute"
    assert not rw & bits("ioctl_dev"), "rw must not grant device ioctls"
    assert rw & bits("write_file", "make_reg", "remove_file", "truncate", "refer", "make_sym") == (
        bits("write_file", "make_reg", "remove_file", "truncate", "refer", "make_sym")
    )
    assert access_mask("rwx") == fs_rights_for_abi(7)
    assert access_mask(frozenset({"read_file", "execute"})) == bits("read_file", "execute")


def test_directory_only_rights_are_dropped_for_a_file() -> None:
    handled = fs_rights_for_abi(7)
    assert rule_mask("rw", handled, is_dir=False) == bits("write_file", "read_file", "truncate")
    assert rule_mask("ro", handled, is_dir=False) == bits("read_file")
    assert rule_mask("rwx", handled, is_dir=False) == ll.FILE_RIGHTS
    assert rule_mask("rw", handled, is_dir=True) == access_mask("rw")
    # A rule whose rights are all directory rights becomes empty on a file (apply skips it).
    assert rule_mask(frozenset({"make_reg", "read_dir"}), handled, is_dir=False) == 0


def test_rule_rights_are_limited_to_what_the_ruleset_handles() -> None:
    # ABI 1 knows neither refer nor truncate: passing them would be EINVAL.
    assert rule_mask("rw", fs_rights_for_abi(1), is_dir=True) == access_mask("rw") & ~bits(
        "refer", "truncate"
    )
    assert rule_mask("rwx", fs_rights_for_abi(3), is_dir=False) == bits(
        "execute", "write_file", "read_file", "truncate"
    )


# --- resolution against an ABI --------------------------------------------------------------


def features(dropped: tuple[DroppedFeature, ...]) -> set[str]:
    return {d.feature for d in dropped}


def test_abi_7_enforces_everything_asked() -> None:
    policy = LandlockPolicy(
        paths=(PathRule("/usr", "rx"), PathRule("/tmp", "rw")),
        tcp_bind=(8080,),
        tcp_connect=(8080, 443),
        scope_abstract_unix=True,
        scope_signals=True,
        log=frozenset({"new_exec_on"}),
    )
    r = resolve(policy, 7)
    assert r.handled_fs == fs_rights_for_abi(7)
    assert r.handled_net == 3
    assert r.scoped == 3
    assert r.restrict_flags == 2
    assert r.net_ports == ((443, 2), (8080, 3))  # one rule per port, bind and connect merged
    assert [m for _, m in r.rules] == [access_mask("rx"), access_mask("rw")]
    assert r.dropped == ()


def test_newer_kernel_is_used_at_the_highest_known_abi() -> None:
    r = resolve(LandlockPolicy(paths=(PathRule("/", "rwx"),)), 9)
    assert r.abi == 9 and r.handled_fs == fs_rights_for_abi(7) and r.dropped == ()


def test_required_tcp_rules_fail_closed_below_abi_4() -> None:
    policy = LandlockPolicy(tcp_connect=(443,), required=True)
    with pytest.raises(
        UnsupportedError, match=r"tcp_connect: needs Landlock ABI 4.*ABI 3.*best-effort"
    ):
        resolve(policy, 3)


def test_best_effort_tcp_rules_are_dropped_and_reported_below_abi_4() -> None:
    r = resolve(LandlockPolicy(tcp_bind=(), tcp_connect=(443,), required=False), 3)
    assert r.handled_net == 0 and r.net_ports == ()
    assert {"tcp_bind", "tcp_connect"} <= features(r.dropped)
    assert r.handled_fs == fs_rights_for_abi(3)


@pytest.mark.parametrize("scope", ["scope_abstract_unix", "scope_signals"])
def test_required_scopes_fail_closed_below_abi_6(scope: str) -> None:
    with pytest.raises(UnsupportedError, match=f"{scope}: needs Landlock ABI 6"):
        resolve(LandlockPolicy(**{scope: True}), 5)  # type: ignore[arg-type]
    r = resolve(LandlockPolicy(required=False, **{scope: True}), 5)  # type: ignore[arg-type]
    assert r.scoped == 0 and scope in features(r.dropped)


def test_required_log_flags_fail_closed_below_abi_7() -> None:
    with pytest.raises(UnsupportedError, match="log new_exec_on"):
        resolve(LandlockPolicy(log=frozenset({"new_exec_on"})), 6)
    assert (
        resolve(LandlockPolicy(log=frozenset({"new_exec_on"}), required=False), 6).restrict_flags
        == 0
    )


def test_no_landlock_fails_closed_when_required() -> None:
    with pytest.raises(UnsupportedError, match="lsm=.*landlock.*best-effort"):
        resolve(LandlockPolicy(paths=(PathRule("/usr"),)), 0)


def test_no_landlock_is_reported_when_best_effort() -> None:
    r = resolve(LandlockPolicy(paths=(PathRule("/usr"),), required=False), 0)
    assert r.handled_fs == 0 and features(r.dropped) == {"landlock"}


def test_default_handled_rights_follow_the_abi_without_failing() -> None:
    # The default asks for "everything this kernel knows": an old kernel is not a failure,
    # but what it cannot restrict is listed.
    r = resolve(LandlockPolicy(paths=(PathRule("/tmp", "rw"),), required=True), 1)
    assert r.handled_fs == fs_rights_for_abi(1)
    assert {"fs:refer", "fs:truncate", "fs:ioctl_dev", "fs:refer grant"} <= features(r.dropped)
    assert r.rules[0][1] == access_mask("rw") & fs_rights_for_abi(1)


def test_explicit_handled_rights_are_asked_for() -> None:
    policy = LandlockPolicy(handled_fs=frozenset({"read_file", "truncate"}))
    with pytest.raises(UnsupportedError, match="handled_fs truncate: needs Landlock ABI 3"):
        resolve(policy, 2)
    assert resolve(policy, 3).handled_fs == bits("read_file", "truncate")
    r = resolve(LandlockPolicy(handled_fs=frozenset({"read_file", "truncate"}), required=False), 2)
    assert r.handled_fs == bits("read_file") and "handled_fs truncate" in features(r.dropped)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "usr"}, "not absolute"),
        ({"path": "/usr", "access": "r"}, "'r' for /usr is not valid"),
        ({"path": "/usr", "access": frozenset({"read", "read_file"})}, r"\['read'\]"),
        ({"path": "/usr", "access": frozenset()}, "empty"),
    ],
)
def test_bad_path_rules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        PathRule(**kwargs)  # type: ignore[arg-type]


def test_path_rule_accepts_a_list_of_rights() -> None:
    rule = PathRule("/x", ["read_file", "execute"])  # type: ignore[arg-type]
    assert rule.access == frozenset({"read_file", "execute"})


@pytest.mark.parametrize("port", [65536, -1, True, "80"])
def test_bad_ports_are_refused(port: object) -> None:
    with pytest.raises(ProfileError, match="tcp_connect: port"):
        LandlockPolicy(tcp_connect=(port,))  # type: ignore[arg-type]


def test_unknown_handled_right_and_log_flag_are_refused() -> None:
    with pytest.raises(ProfileError, match="handled_fs"):
        LandlockPolicy(handled_fs=frozenset({"chroot"}))
    with pytest.raises(ProfileError, match="log flags"):
        LandlockPolicy(log=frozenset({"verbose"}))


# --- profile keys -----------------------------------------------------------------------------


def test_no_landlock_keys_means_no_policy() -> None:
    assert parse_keys({"ProtectHome": True}) is None
    assert parse_keys({"Landlock": "off"}) is None
    assert parse_keys({"Landlock": False}) is None


def test_landlock_keys() -> None:
    policy = parse_keys(
        {
            "Landlock": "best-effort",
            "AllowBind": [8080, 0],
            "AllowConnect": "443, 80 443",
            "LandlockScopes": ["abstract-unix", "signal"],
        }
    )
    assert policy == LandlockPolicy(
        tcp_bind=(0, 8080),
        tcp_connect=(80, 443),
        scope_abstract_unix=True,
        scope_signals=True,
        required=False,
    )


def test_landlock_keys_without_mode_are_required() -> None:
    policy = parse_keys({"AllowConnect": []})
    assert policy is not None and policy.required and policy.tcp_connect == ()
    assert policy.tcp_bind is None
    assert parse_keys({"Landlock": True}) == LandlockPolicy(required=True)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"Landlock": "strict"}, "Landlock='strict' is not valid"),
        ({"Landlock": "off", "AllowBind": [80]}, "AllowBind needs Landlock but Landlock=off"),
        ({"AllowBind": [70000]}, "AllowBind: port 70000 is not valid"),
        ({"AllowConnect": [0]}, "AllowConnect: port 0 is not valid: use 1-65535"),
        ({"AllowConnect": ["http"]}, "AllowConnect: port 'http'"),
        ({"AllowConnect": [True]}, "AllowConnect: port True"),
        ({"AllowBind": {"a": 1}}, "AllowBind=.* is not a list"),
        ({"LandlockScopes": ["ptrace"]}, "LandlockScopes: 'ptrace' is not valid"),
    ],
)
def test_bad_landlock_keys_name_the_key_and_value(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_keys(keys)


# --- reports ----------------------------------------------------------------------------------


def test_describe_is_json() -> None:
    policy = LandlockPolicy(
        paths=(PathRule("/usr", "rx"), PathRule("/etc/hosts", frozenset({"read_file"}), False)),
        tcp_connect=(443,),
        scope_signals=True,
        required=False,
    )
    data = json.loads(json.dumps(describe(policy)))
    assert data == {
        "mode": "best-effort",
        "paths": [
            {"path": "/usr", "access": "rx", "required": True},
            {"path": "/etc/hosts", "access": ["read_file"], "required": False},
        ],
        "handled_fs": "all",
        "tcp_bind": None,
        "tcp_connect": [443],
        "scopes": ["signal"],
        "log": [],
    }


def test_report_is_json() -> None:
    report = LandlockReport(
        abi=7,
        enforced=True,
        fs_rules=2,
        handled_fs=("execute",),
        dropped=(DroppedFeature("path:/x", "skipped"),),
    )
    data = json.loads(json.dumps(report.as_dict()))
    assert data["dropped"] == [{"feature": "path:/x", "reason": "skipped"}]
    assert data["enforced"] is True and data["fs_rules"] == 2
