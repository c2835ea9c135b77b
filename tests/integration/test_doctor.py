"""`ringfence doctor`: reports this host's settings with a verdict and a fix, exit 1 when no
sandbox can run.

The FAIL path is exercised for real: doctor run *inside* a strict sandbox (where seccomp's
RestrictNamespaces refuses a new user namespace) must say so and exit 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from _util import rf

REPO = str(Path(__file__).resolve().parents[2])

EXPECTED = {
    "kernel", "python", "user namespaces", "user.max_user_namespaces",
    "kernel.unprivileged_userns_clone", "kernel.apparmor_restrict_unprivileged_userns",
    "kernel.yama.ptrace_scope", "landlock", "seccomp", "libseccomp", "/dev/fuse",
    "/dev/net/tun", "cgroups", "dev.tty.legacy_tiocsti", "gocryptfs", "fusermount3", "pasta",
    "slirp4netns", "bwrap", "sandbox",
}  # fmt: skip


def doctor_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    r = rf("doctor", "--json", *args, env=env)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in doc["checks"]}


def test_doctor_says_this_host_can_run_sandboxes() -> None:
    r = rf("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ringfence can run sandboxes here" in r.stdout
    lines = [line for line in r.stdout.splitlines() if line[:4] in ("OK  ", "WARN", "FAIL")]
    assert {line.split()[0] for line in lines} <= {"OK", "WARN", "FAIL"}
    assert len(lines) == len(EXPECTED)


def test_doctor_json_lists_every_check_with_verdict_and_fix() -> None:
    code, doc = doctor_json()
    assert code == 0
    assert doc["ok"] is True
    checks = by_name(doc)
    assert set(checks) == EXPECTED
    for c in doc["checks"]:
        assert set(c) == {"name", "value", "status", "fix", "note"}
        assert c["status"] in ("OK", "WARN", "FAIL")
        assert c["value"]
        if c["status"] != "OK":
            assert c["fix"], f"{c['name']} is {c['status']} without a fix"
    assert sum(doc["counts"].values()) == len(doc["checks"])
    assert doc["counts"]["FAIL"] == 0
    # This machine: user namespaces work, Landlock is there, no Yama.
    assert checks["user namespaces"]["status"] == "OK"
    assert checks["sandbox"]["status"] == "OK"
    assert checks["seccomp"]["status"] == "OK"
    assert checks["landlock"]["value"].startswith("ABI ")
    if not os.path.exists("/proc/sys/kernel/yama/ptrace_scope"):
        assert checks["kernel.yama.ptrace_scope"]["status"] == "WARN"
        assert "ptrace" in checks["kernel.yama.ptrace_scope"]["note"]


def test_no_launch_skips_the_sandbox() -> None:
    code, doc = doctor_json("--no-launch")
    assert code == 0
    assert "sandbox" not in by_name(doc)


def test_missing_tools_are_reported_with_the_apt_get_hint() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env["PATH"] = "/nonexistent"  # no /usr/bin: no gocryptfs, pasta, slirp4netns, ...
    code, doc = doctor_json(env=env)
    checks = by_name(doc)
    gocryptfs = checks["gocryptfs"]
    assert gocryptfs["status"] in ("WARN", "FAIL")
    assert gocryptfs["value"] == "not installed"
    assert "apt-get install gocryptfs" in gocryptfs["fix"]
    for name, package in (("pasta", "passt"), ("slirp4netns", "slirp4netns")):
        assert checks[name]["status"] == "WARN"
        assert f"apt-get install {package}" in checks[name]["fix"]
    # Missing helpers cost features, not the sandbox itself.
    assert code == 0 and doc["ok"] is True


def test_doctor_fails_where_user_namespaces_are_refused() -> None:
    # Inside a strict sandbox, seccomp (RestrictNamespaces) refuses unshare(CLONE_NEWUSER):
    # doctor must report that as FAIL, with a reason, and exit 1.
    r = rf(
        "run",
        "--ro-bind", REPO, "/rf",
        "--setenv", "PYTHONPATH", "/rf",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--",
        "/usr/bin/python3", "-m", "ringfence", "doctor", "--json",
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    checks = by_name(doc)
    assert doc["ok"] is False
    assert checks["user namespaces"]["status"] == "FAIL"
    assert checks["user namespaces"]["fix"]
    assert checks["sandbox"]["status"] == "FAIL"
    assert "user namespaces" in r.stdout
