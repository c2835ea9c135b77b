"""Bad input: one clear line, exit code 2 (127 for a missing command), no traceback, nothing
left behind."""

from __future__ import annotations

import os

from _util import host_mounts, rf


def _one_line_error(r, *needles):  # type: ignore[no-untyped-def]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_profile_key_names_the_nearest(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text('Extends = "strict"\nProtectHom = "yes"\n')
    _one_line_error(
        rf("run", "--profile", str(prof), "--", "true"), "ProtectHom", "did you mean ProtectHome"
    )


def test_bad_value_names_key_and_choices(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text('ProtectSystem = "sorta"\n')
    _one_line_error(rf("run", "--profile", str(prof), "--", "true"), "ProtectSystem", "strict")


def test_invalid_toml(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text("ProtectSystem = \n")
    _one_line_error(rf("run", "--profile", str(prof), "--", "true"), "invalid TOML")


def test_unknown_builtin_profile():
    _one_line_error(rf("run", "--profile", "strikt", "--", "true"), "did you mean strict")


def test_missing_source_path():
    _one_line_error(
        rf("run", "--ro-bind", "/no/such/dir", "/x", "--", "true"), "/no/such/dir", "does not exist"
    )


def test_missing_optional_source_is_skipped():
    r = rf("run", "--ro-bind-try", "/no/such/dir", "/x", "--", "true")
    assert r.returncode == 0


def test_destination_outside_root():
    _one_line_error(rf("run", "--tmpfs", "/a/../../etc", "--", "true"), "..")


def test_relative_destination():
    _one_line_error(rf("run", "--tmpfs", "relative", "--", "true"), "absolute")


def test_unknown_flag():
    _one_line_error(rf("run", "--frobnicate", "--", "true"), "--frobnicate")


def test_no_command():
    _one_line_error(rf("run"), "no command")


def test_extends_cycle(tmp_path):
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text(f'Extends = "{b}"\n')
    b.write_text(f'Extends = "{a}"\n')
    _one_line_error(rf("run", "--profile", str(a), "--", "true"), "extends itself")


def test_uid_option_needs_root():
    if os.geteuid() == 0:
        r = rf("run", "--uid", "root", "--", "true")
        _one_line_error(r, "never runs the payload as host root")
    else:
        _one_line_error(rf("run", "--uid", "nobody", "--", "true"), "need root")


def test_capabilities_cannot_be_granted(tmp_path):
    prof = tmp_path / "p.toml"
    prof.write_text('CapabilityBoundingSet = ["CAP_SYS_ADMIN"]\n')
    _one_line_error(rf("run", "--profile", str(prof), "--", "true"), "never grants capabilities")


def test_failed_setup_leaves_no_mount(tmp_path):
    before = host_mounts()
    f = tmp_path / "file"
    f.write_text("x")
    # A bind of a file over a path inside a read-only tree fails inside the sandbox.
    r = rf("run", "--ro-bind", str(f), "/usr/does/not/exist/file", "--", "true")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert host_mounts() == before


def test_user_namespaces_refused_is_one_clear_line():
    # Inside a strict sandbox, creating a user namespace is refused (seccomp): a ringfence run
    # there must explain it in one line, not crash.
    import ringfence

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(ringfence.__file__)))
    r = rf(
        "run",
        "--ro-bind",
        pkg_parent,
        pkg_parent,
        "--setenv",
        "PYTHONPATH",
        pkg_parent,
        "--",
        "python3",
        "-m",
        "ringfence",
        "run",
        "--",
        "true",
    )
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "user namespace" in lines[0]
