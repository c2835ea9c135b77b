"""The launcher side of vaults: option parsing, validation, the per-vault lock, password
sources and the CLI surface. No namespaces here; gocryptfs is only looked up, never run
(except by ``vault init`` checks that fail before running it).
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.commands import vault as command
from ringfence.errors import (
    MissingToolError,
    ProfileError,
    SandboxError,
    SessionError,
    UnsupportedError,
)
from ringfence.runtime import askpass, vault
from ringfence.runtime.askpass import PasswordSource


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    return run


@pytest.fixture
def fake_vault(tmp_path: Path) -> Path:
    """A directory that looks like a gocryptfs vault to the launcher's checks."""
    d = tmp_path / "crypt"
    d.mkdir()
    (d / "gocryptfs.conf").write_text("{}")
    (d / "gocryptfs.conf").chmod(0o400)
    return d


@pytest.fixture
def specs() -> Iterator[list[vault.VaultSpec]]:
    taken: list[vault.VaultSpec] = []
    yield taken
    for spec in taken:
        spec.release()


# --- parse_vault_option -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/v:/home/me/plain", ("/v", "/home/me/plain", False)),
        ("~/v:/plain", ("~/v", "/plain", False)),
        ("v:/plain:ro", ("v", "/plain", True)),
        ("v:/plain:rw", ("v", "/plain", False)),
        ("/a:b/v:/plain", ("/a:b/v", "/plain", False)),  # ':' allowed in CIPHERDIR
        ("v://plain//x/", ("v", "/plain/x", False)),
    ],
)
def test_vault_option_is_parsed(value: str, expected: tuple[str, str, bool]) -> None:
    assert vault.parse_vault_option(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/v", "expected CIPHERDIR:MOUNTPOINT"),
        (":/plain", "expected CIPHERDIR:MOUNTPOINT"),
        ("/v:", "expected CIPHERDIR:MOUNTPOINT"),
        ("/v:plain", "must be an absolute path"),
        ("/v:/a/../etc", "may not contain '.' or '..'"),
        ("/v:/a/./b", "may not contain '.' or '..'"),
        ("/v:/", "cannot be mounted on / itself"),
        ("/v:/:ro", "cannot be mounted on / itself"),
    ],
)
def test_bad_vault_option_is_refused_with_the_reason(value: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace(".", r"\.").replace("(", r"\(")):
        vault.parse_vault_option(value)


# --- prepare ----------------------------------------------------------------------------------


def test_prepare_resolves_the_vault_and_takes_its_lock(
    fake_vault: Path, runtime_dir: Path, specs: list[vault.VaultSpec]
) -> None:
    spec = vault.prepare(f"{fake_vault}:/home/me/plain", session="taxes")
    specs.append(spec)
    assert spec.cipherdir == str(fake_vault.resolve())
    assert spec.mountpoint == "/home/me/plain"
    assert spec.readonly is False
    assert os.path.isabs(spec.gocryptfs) and os.access(spec.gocryptfs, os.X_OK)
    # The lock lives in a 0700 directory of ours, is CLOEXEC and names the session.
    assert spec.lock_fd >= 0
    assert os.get_inheritable(spec.lock_fd) is False
    lock = Path(spec.lock_path)
    assert lock.parent == runtime_dir / "ringfence" / "vaults"
    assert stat.S_IMODE(lock.parent.stat().st_mode) == 0o700
    st = fake_vault.stat()
    assert lock.name == f"{st.st_dev:x}-{st.st_ino:x}.lock"
    assert "session=taxes" in lock.read_text()


def test_prepare_of_a_missing_directory_points_to_vault_init(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="ringfence vault init"):
        vault.prepare(f"{tmp_path}/nope:/plain")


def test_prepare_of_a_directory_that_is_not_a_vault_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain-dir").mkdir()
    with pytest.raises(ProfileError, match="not a gocryptfs vault"):
        vault.prepare(f"{tmp_path}/plain-dir:/plain")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProfileError, match="not a directory"):
        vault.prepare(f"{tmp_path}/file:/plain")


def test_missing_gocryptfs_says_how_to_install_it(
    fake_vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(MissingToolError, match="install"):
        vault.prepare(f"{fake_vault}:/plain")
    with pytest.raises(MissingToolError, match="gocryptfs"):
        vault.init_vault(str(tmp_path / "new"), PasswordSource(passfile="/nonexistent"))
    assert not (tmp_path / "new").exists()


def test_unusable_fuse_device_names_the_fix(
    fake_vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vault, "FUSE_DEVICE", str(tmp_path / "no-fuse"))
    with pytest.raises(UnsupportedError, match="modprobe fuse"):
        vault.prepare(f"{fake_vault}:/plain")


def test_same_vault_twice_in_one_launch_is_refused(
    fake_vault: Path, specs: list[vault.VaultSpec]
) -> None:
    specs.append(vault.prepare(f"{fake_vault}:/a"))
    with pytest.raises(ProfileError, match="given twice"):
        vault.prepare(f"{fake_vault}:/b")


def test_vault_held_by_a_session_names_it_and_the_enter_command(
    fake_vault: Path, specs: list[vault.VaultSpec]
) -> None:
    holder = _hold_lock_in_child(f"{fake_vault}:/a", session="work")
    try:
        with pytest.raises(SessionError) as err:
            vault.prepare(f"{fake_vault}:/b")
        assert "session 'work'" in str(err.value)
        assert "ringfence enter work -- COMMAND" in str(err.value)
    finally:
        _release_child(holder)
    specs.append(vault.prepare(f"{fake_vault}:/b"))  # free once the holder is gone


def test_vault_held_without_a_session_suggests_a_named_one(
    fake_vault: Path, specs: list[vault.VaultSpec]
) -> None:
    holder = _hold_lock_in_child(f"{fake_vault}:/a", session=None)
    try:
        with pytest.raises(SessionError) as err:
            vault.prepare(f"{fake_vault}:/b")
        assert f"launcher pid {holder[0]}" in str(err.value)
        assert "ringfence start NAME" in str(err.value)
    finally:
        _release_child(holder)


def _hold_lock_in_child(value: str, session: str | None) -> tuple[int, int]:
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.close(stop_w)
            vault.prepare(value, session=session)
            os.write(ready_w, b"r")
            os.read(stop_r, 1)
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(stop_r)
    assert os.read(ready_r, 1) == b"r"
    os.close(ready_r)
    return pid, stop_w


def _release_child(holder: tuple[int, int]) -> None:
    pid, stop_w = holder
    os.close(stop_w)
    _, raw = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(raw) == 0


def test_released_spec_frees_the_vault(fake_vault: Path, specs: list[vault.VaultSpec]) -> None:
    vault.prepare(f"{fake_vault}:/a").release()
    specs.append(vault.prepare(f"{fake_vault}:/a"))


def test_overlapping_mountpoints_are_refused_and_locks_released(
    tmp_path: Path, fake_vault: Path, specs: list[vault.VaultSpec]
) -> None:
    other = tmp_path / "crypt2"
    other.mkdir()
    (other / "gocryptfs.conf").write_text("{}")
    with pytest.raises(ProfileError, match="overlaps"):
        vault.prepare_all([f"{fake_vault}:/data", f"{other}:/data/inner"])
    # Both locks were given back.
    specs.extend(vault.prepare_all([f"{fake_vault}:/data", f"{other}:/other"]))
    assert [s.mountpoint for s in specs] == ["/data", "/other"]


def test_lock_directory_writable_by_others_is_refused(fake_vault: Path, runtime_dir: Path) -> None:
    (runtime_dir / "ringfence").mkdir(mode=0o700)
    (runtime_dir / "ringfence" / "vaults").mkdir(mode=0o700)
    (runtime_dir / "ringfence" / "vaults").chmod(0o777)
    with pytest.raises(SandboxError, match="not a private directory"):
        vault.prepare(f"{fake_vault}:/plain")


def test_runtime_dir_falls_back_to_tmp_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert vault.runtime_dir() == f"/tmp/ringfence-{os.geteuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    assert vault.runtime_dir() == f"/tmp/ringfence-{os.geteuid()}"


def test_describe_reports_what_the_vault_enforces(
    fake_vault: Path, specs: list[vault.VaultSpec]
) -> None:
    spec = vault.prepare(f"{fake_vault}:/plain:ro", session="s")
    specs.append(spec)
    report = vault.describe(spec)
    assert report["cipherdir"] == str(fake_vault.resolve())
    assert report["mountpoint"] == "/plain"
    assert report["readonly"] is True
    assert report["session"] == "s"
    assert "allow_other" in str(report["visible_to"])


def test_mount_refuses_a_multi_line_password_before_touching_anything(
    fake_vault: Path, specs: list[vault.VaultSpec]
) -> None:
    spec = vault.prepare(f"{fake_vault}:/plain")
    specs.append(spec)
    with pytest.raises(SandboxError, match="one line"):
        vault.mount_in_namespace(spec, "/nonexistent", b"two\nlines")


# --- passwords --------------------------------------------------------------------------------


def test_passfile_gives_its_first_line(tmp_path: Path) -> None:
    p = tmp_path / "pw"
    p.write_bytes(b"s3cret pass\nsecond line ignored\n")
    assert askpass.read_password(PasswordSource(passfile=str(p))) == b"s3cret pass"
    p.write_bytes(b"crlf\r\n")
    assert askpass.read_password(PasswordSource(passfile=str(p))) == b"crlf"
    p.write_bytes(b"no newline")
    assert askpass.read_password(PasswordSource(passfile=str(p))) == b"no newline"


def test_passfile_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        askpass.read_password(PasswordSource(passfile=str(tmp_path / "missing")))
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    with pytest.raises(SandboxError, match="empty password"):
        askpass.read_password(PasswordSource(passfile=str(empty)))
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * 3000)
    with pytest.raises(SandboxError, match="2048"):
        askpass.read_password(PasswordSource(passfile=str(huge)))


def test_askpass_program_output_is_the_password_and_gets_the_prompt(tmp_path: Path) -> None:
    script = tmp_path / "ask"
    seen = tmp_path / "seen"
    script.write_text(f'#!/bin/sh\nprintf %s "$RINGFENCE_ASKPASS_PROMPT" > {seen}\necho "pw 1"\n')
    script.chmod(0o700)
    got = askpass.read_password(PasswordSource(askpass=str(script)), "Password for X: ")
    assert got == b"pw 1"
    assert seen.read_text() == "Password for X: "


def test_askpass_failures_are_clear(tmp_path: Path) -> None:
    with pytest.raises(MissingToolError, match="not found"):
        askpass.read_password(PasswordSource(askpass=str(tmp_path / "nope")))
    failing = tmp_path / "cancel"
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o700)
    with pytest.raises(SandboxError, match="exit status 1"):
        askpass.read_password(PasswordSource(askpass=str(failing)))
    silent = tmp_path / "silent"
    silent.write_text("#!/bin/sh\ntrue\n")
    silent.chmod(0o700)
    with pytest.raises(SandboxError, match="empty password"):
        askpass.read_password(PasswordSource(askpass=str(silent)))


def test_askpass_and_passfile_exclude_each_other() -> None:
    with pytest.raises(ProfileError, match="exclude each other"):
        PasswordSource(askpass="x", passfile="y")
    assert PasswordSource().kind == "terminal"


def test_terminal_password_without_a_terminal_points_to_the_options() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        msg = b"no error"
        try:
            os.setsid()  # no controlling terminal any more
            askpass.read_password(PasswordSource())
        except SandboxError as e:
            msg = str(e).encode()
        finally:
            os.write(w, msg)
            os._exit(0)
    os.close(w)
    out = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    assert b"no terminal" in out and b"--askpass" in out and b"--passfile" in out


# --- CLI surface ------------------------------------------------------------------------------


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringfence run")
    command.add_vault_options(p)
    return p


def test_vault_options_repeat_and_pick_one_password_source() -> None:
    args = _run_parser().parse_args(
        ["--vault", "a:/x", "--vault", "b:/y:ro", "--askpass", "ssh-askpass"]
    )
    assert args.vault == ["a:/x", "b:/y:ro"]
    assert vault.password_source(args) == PasswordSource(askpass="ssh-askpass")
    assert _run_parser().parse_args([]).vault == []


def test_vault_options_refuse_askpass_with_passfile(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _run_parser().parse_args(["--askpass", "a", "--passfile", "b"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_vault_init_command_parses() -> None:
    parser = argparse.ArgumentParser(prog="ringfence")
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["vault", "init", "/tmp/x", "--passfile", "/tmp/pw"])
    assert args.command_module == "ringfence.commands.vault"
    assert (args.vault_command, args.dir, args.passfile, args.askpass) == (
        "init",
        "/tmp/x",
        "/tmp/pw",
        None,
    )


def test_vault_init_refuses_a_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="parent directory"):
        vault.init_vault(str(tmp_path / "a" / "b"), PasswordSource(passfile="/nonexistent"))
