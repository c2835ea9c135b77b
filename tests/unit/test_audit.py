"""`ringfence audit`: the exposure score of compiled plans, item by item.

The audit scores the plan a run would get (profile + command-line options), so these tests
build plans exactly as the CLI does and never start a sandbox.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import sys
from contextlib import redirect_stdout

import pytest

from ringfence.audit import VERDICTS, audit_plan, covering, host_visible, items, verdict
from ringfence.commands._options import add_sandbox_options, build_plan
from ringfence.plan import Bind, Plan, Tmpfs

ABI = 7  # this project's machines; tests that depend on it pass other values explicitly


def plan_for(*options: str) -> Plan:
    parser = argparse.ArgumentParser()
    add_sandbox_options(parser)
    plan: Plan = build_plan(parser.parse_args(list(options)), ["/bin/sh"])
    return plan


def without_landlock(plan: Plan) -> Plan:
    # Landlock=off cannot be set over a profile that has LandlockScopes: drop it from the plan.
    plan = copy.copy(plan)
    plan.landlock = None
    return plan


def score(*options: str, abi: int = ABI) -> float:
    return audit_plan(plan_for(*options), landlock_abi=abi, home="/home/someone").exposure


def badness(*options: str, abi: int = ABI) -> dict[str, float]:
    result = audit_plan(plan_for(*options), landlock_abi=abi, home="/home/someone")
    return {i.name: i.badness for i in result.items}


# -- the promises of issue 4 -----------------------------------------------------------------


@pytest.mark.parametrize("abi", [0, 1, 3, 5, 6, 7])
def test_strict_profile_scores_at_most_1_5_on_any_kernel(abi: int) -> None:
    assert score("--profile", "strict", abi=abi) <= 1.5


@pytest.mark.parametrize("abi", [0, 1, 3, 5, 6, 7])
def test_service_profile_scores_at_most_2_5_on_any_kernel(abi: int) -> None:
    assert score("--profile", "service", abi=abi) <= 2.5


def test_strict_scores_safe_on_this_kernel() -> None:
    result = audit_plan(plan_for(), landlock_abi=ABI)
    assert result.verdict in ("PERFECT", "SAFE")


WEAKENINGS = [
    ("--net", "host"),
    ("--net", "user"),
    ("--set", "ProtectHome=no"),
    ("--set", "ProtectHome=read-only"),
    ("--set", "PrivateTmp=no"),
    ("--set", "PrivateDevices=no"),
    ("--set", "PrivateIPC=no"),
    ("--set", "ProtectSystem=no"),
    ("--set", "KeyringMode=inherit"),
    ("--set", "RestrictNamespaces=no"),
    ("--set", "LockPersonality=no"),
    ("--set", "PrivateMachineID=no"),
    ("--set", "MountSysfs=yes"),
    ("--set", "ProtectKernelTunables=no"),
    ("--set", "ProtectProc=default"),
    ("--set", "LandlockScopes="),
    ("--set", "SystemCallFilter="),
    ("--set", "SystemCallArchitectures="),
    ("--bind", "/var", "/var"),
    ("--ro-bind", "/var", "/mnt"),
    ("--keep-env", "HOME"),
]


@pytest.mark.parametrize("profile", ["strict", "service", "void"])
@pytest.mark.parametrize("weakening", WEAKENINGS, ids=lambda w: " ".join(w))
def test_a_weakening_never_lowers_any_item_or_the_total(
    profile: str, weakening: tuple[str, ...]
) -> None:
    base = badness("--profile", profile)
    weak = badness("--profile", profile, *weakening)
    for name, value in base.items():
        assert weak[name] >= value, f"{' '.join(weakening)} lowered {name}"
    assert score("--profile", profile, *weakening) >= score("--profile", profile)


@pytest.mark.parametrize("profile", ["strict", "service"])
def test_net_host_scores_worse(profile: str) -> None:
    assert score("--profile", profile, "--net", "host") > score("--profile", profile)
    assert badness("--profile", profile, "--net", "host")["PrivateNetwork"] == 1.0


@pytest.mark.parametrize("profile", ["strict", "service"])
def test_protect_home_no_scores_worse(profile: str) -> None:
    assert score("--profile", profile, "--set", "ProtectHome=no") > score("--profile", profile)
    assert badness("--profile", profile, "--set", "ProtectHome=no")["ProtectHome"] == 1.0


def test_user_network_is_between_none_and_host() -> None:
    none, user, host = (score("--net", n) for n in ("none", "user", "host"))
    assert none < user < host


def test_each_granted_host_port_adds_exposure() -> None:
    one = score("--net", "user", "--allow-host-port", "8080")
    two = score("--net", "user", "--allow-host-port", "8080", "--allow-host-port", "9090")
    assert score("--net", "user") < one < two


def test_read_only_home_is_less_exposed_than_writable_home() -> None:
    ro = badness("--profile", "service", "--set", "ProtectHome=read-only")["ProtectHome"]
    rw = badness("--profile", "service", "--set", "ProtectHome=no")["ProtectHome"]
    assert 0 < ro < rw


def test_no_rlimits_is_some_exposure_and_limits_reduce_it() -> None:
    assert badness()["Limits"] == 1.0
    limited = badness("--set", "LimitNPROC=64", "--set", "LimitAS=1G", "--set", "LimitNOFILE=256")
    assert 0 <= limited["Limits"] < 0.5


def test_landlock_without_kernel_support_is_exposed_when_best_effort() -> None:
    assert badness(abi=0)["Landlock"] == 1.0
    assert badness(abi=7)["Landlock"] == 0.0
    assert 0 < badness(abi=3)["Landlock"] < 1.0  # no IOCTL_DEV before ABI 5


def test_required_landlock_on_a_kernel_without_it_is_noted_as_failing() -> None:
    result = audit_plan(plan_for("--set", "Landlock=required"), landlock_abi=0)
    assert any("fails" in note for note in result.notes)


def test_abstract_sockets_exposed_only_with_host_network_and_no_scope() -> None:
    assert badness("--net", "host", abi=7)["LandlockScopes"] == 0.0  # scoped by Landlock
    assert badness("--net", "host", abi=5)["LandlockScopes"] == 1.0  # no scopes before ABI 6
    assert badness(abi=5)["LandlockScopes"] == 0.0  # own network namespace


def test_writable_binds_of_host_paths_count(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = badness("--bind", str(tmp_path / "a"), "/a")["BindPaths"]
    two = badness("--bind", str(tmp_path / "a"), "/a", "--bind", str(tmp_path / "b"), "/b")
    assert 0 < one < two["BindPaths"]


def test_pass_fd_counts() -> None:
    r, w = os.pipe()
    try:
        assert badness("--pass-fd", str(r))["PassFileDescriptors"] > 0
    finally:
        os.close(r)
        os.close(w)


def test_landlock_off_scores_worse() -> None:
    plan = plan_for()
    on = audit_plan(plan, landlock_abi=ABI)
    off = audit_plan(without_landlock(plan), landlock_abi=ABI)
    assert off.exposure > on.exposure
    assert {i.name: i.badness for i in off.items}["Landlock"] == 1.0


def test_system_call_filter_reports_callable_dangerous_calls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = tmp_path / "p.toml"
    profile.write_text('Extends = "strict"\nSystemCallFilter = ["", "~@mount"]\n')
    result = audit_plan(plan_for("--profile", str(profile)), landlock_abi=ABI)
    item = next(i for i in result.items if i.name == "SystemCallFilter")
    assert 0 < item.badness < 1
    assert "bpf" in item.setting
    assert result.exposure > score()


# -- the formula and the report --------------------------------------------------------------


def test_item_exposures_add_up_to_the_total_rounded_up() -> None:
    result = audit_plan(plan_for("--net", "host"), landlock_abi=ABI)
    total = sum(i.exposure for i in result.items)
    assert result.exposure - 0.1 < total <= result.exposure + 1e-9


def test_everything_off_is_unsafe_or_exposed() -> None:
    weak = ["--profile", "service", "--net", "host"]
    for key in (
        "ProtectHome=no",
        "ProtectSystem=no",
        "PrivateTmp=no",
        "PrivateDevices=no",
        "PrivateIPC=no",
        "KeyringMode=inherit",
        "SystemCallFilter=",
        "RestrictNamespaces=no",
        "RestrictAddressFamilies=",
        "SystemCallArchitectures=",
        "LockPersonality=no",
        "RestrictRealtime=no",
        "RestrictSUIDSGID=no",
        "BlockTerminalInjection=no",
        "DenyUnknownSystemCalls=no",
        "PrivateMachineID=no",
        "ProtectKernelTunables=no",
        "ProtectProc=default",
    ):
        weak += ["--set", key]
    result = audit_plan(without_landlock(plan_for(*weak)), landlock_abi=ABI)
    assert result.verdict in ("MEDIUM", "EXPOSED", "UNSAFE", "DANGEROUS")
    assert result.exposure >= 5.0


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (0.0, "PERFECT"),
        (0.1, "SAFE"),
        (0.9, "SAFE"),
        (1.0, "OK"),
        (4.9, "OK"),
        (5.0, "MEDIUM"),
        (7.5, "EXPOSED"),
        (9.0, "UNSAFE"),
        (10.0, "DANGEROUS"),
    ],
)
def test_verdicts_follow_systemd_analyze(value: float, name: str) -> None:
    assert verdict(value) == name
    assert [v for _, v in VERDICTS][-1] == "PERFECT"


def test_every_item_has_a_description_and_a_positive_weight() -> None:
    names = [name for name, _, _ in items()]
    assert len(names) == len(set(names)) >= 30
    for name, weight, protects in items():
        assert weight > 0 and len(protects) > 20, name


def test_every_item_is_documented() -> None:
    doc = os.path.dirname(__file__) + "/../../docs/audit.md"
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    for name, weight, _ in items():
        assert f"| {name} | {weight} |" in text, f"docs/audit.md does not document {name}"


def test_json_shape() -> None:
    doc = audit_plan(plan_for("--profile", "service"), landlock_abi=ABI).as_dict()
    assert set(doc) >= {"profile", "exposure", "verdict", "items", "landlock_abi", "notes"}
    assert doc["profile"] == "service"
    assert isinstance(doc["exposure"], float) and 0.0 <= doc["exposure"] <= 10.0
    for item in doc["items"]:  # type: ignore[attr-defined]
        assert set(item) == {"name", "protects", "setting", "weight", "badness", "exposure", "ok"}
        assert 0.0 <= item["badness"] <= 1.0
    json.dumps(doc)


def test_mount_plan_reading() -> None:
    plan = plan_for("--profile", "strict")
    assert isinstance(covering(plan, "/home/someone/.ssh"), Tmpfs)
    assert host_visible(plan, "/home/someone") is None
    usr = host_visible(plan, "/usr/bin/python3")
    assert isinstance(usr, Bind) and usr.readonly
    moved = plan_for("--ro-bind", "/usr/share", "/opt/share")
    assert host_visible(moved, "/opt/share") is None  # not the host's /opt/share
    assert isinstance(covering(moved, "/opt/share/doc"), Bind)


# -- the command -----------------------------------------------------------------------------


def _cli(*argv: str) -> tuple[int, str]:
    from ringfence.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_audit_runs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("the audit started something")

    from ringfence.kernel import userns
    from ringfence.runtime import launcher

    monkeypatch.setattr(os, "fork", forbidden)
    monkeypatch.setattr(os, "posix_spawn", forbidden)
    monkeypatch.setattr(userns, "unshare", forbidden)
    monkeypatch.setattr(launcher.Launch, "start", forbidden)
    code, out = _cli("audit", "--json", "--profile", "service", "--net", "host")
    assert code == 0
    assert json.loads(out)["profile"] == "service"


def test_audit_table_ends_with_the_overall_level() -> None:
    code, out = _cli("audit")
    assert code == 0
    assert "Overall exposure level for strict:" in out.splitlines()[-1]
    assert "PrivateNetwork" in out and "ProtectHome" in out


def test_threshold_fails_a_weak_profile() -> None:
    assert _cli("audit", "--threshold", "5")[0] == 0
    assert _cli("audit", "--net", "host", "--threshold", "0.1")[0] == 1


def test_unknown_key_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    from ringfence.cli import main

    assert main(["audit", "--set", "ProtectHom=no"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ProtectHome" in err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
