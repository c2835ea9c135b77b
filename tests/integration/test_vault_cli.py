"""Vaults through the real CLI: `vault init`, `run --vault`, sessions holding a vault."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from _util import pids_with, rf, wait_until

pytestmark = pytest.mark.skipif(not shutil.which("gocryptfs"), reason="gocryptfs not installed")


@pytest.fixture
def vault(world_tmp, monkeypatch):  # type: ignore[no-untyped-def]
    xdg = world_tmp / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    pw = world_tmp / "pw"
    pw.write_text("correct horse\n")
    cipher = world_tmp / "vault"
    r = rf("vault", "init", str(cipher), "--passfile", str(pw))
    assert r.returncode == 0, r.stderr
    if os.geteuid() == 0:  # the payload (and gocryptfs) run as nobody
        shutil.chown(cipher, "nobody")
        for p in cipher.iterdir():
            shutil.chown(p, "nobody")
    return cipher, pw


def _gocryptfs_pids() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            owner = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        if comm.endswith("gocryptfs") and owner in (os.getuid(), 65534):
            found.append(int(entry))
    return found


def _no_gocryptfs_left(cipher) -> bool:  # type: ignore[no-untyped-def]
    with open("/proc/self/mountinfo") as f:
        fuse_mounts = [line for line in f if "fuse" in line.split(" - ")[-1]]
    return not _gocryptfs_pids() and not fuse_mounts


def test_file_in_vault_is_ciphertext_on_disk_and_absent_on_host(vault, world_tmp):
    cipher, pw = vault
    mnt = world_tmp / "plain"
    mnt.mkdir()
    r = rf(
        "run",
        "--vault",
        f"{cipher}:/plain",
        "--passfile",
        str(pw),
        "--",
        "sh",
        "-c",
        "echo TAXES-2026 > /plain/taxes.txt && cat /plain/taxes.txt",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "TAXES-2026\n"
    names = os.listdir(cipher)
    assert "taxes.txt" not in names
    for name in names:
        path = cipher / name
        if path.is_file():
            assert b"TAXES-2026" not in path.read_bytes()
    assert os.listdir(mnt) == []
    assert wait_until(lambda: _no_gocryptfs_left(cipher))


def test_session_vault_is_shared_with_enter_and_gone_after_stop(vault):
    cipher, pw = vault
    name = f"v{uuid.uuid4().hex[:8]}"
    r = rf(
        "start",
        name,
        "--vault",
        f"{cipher}:/plain",
        "--passfile",
        str(pw),
        "--",
        "sh",
        "-c",
        "echo from-session > /plain/note; exec sleep 300",
    )
    assert r.returncode == 0, r.stderr
    try:
        assert wait_until(
            lambda: rf("enter", name, "--", "cat", "/plain/note").stdout == "from-session\n"
        )
        # A sandbox started afterwards, outside the session, does not see the decrypted view.
        r = rf("run", "--", "sh", "-c", "ls /plain 2>&1; true")
        assert "note" not in r.stdout
        # The vault is locked to the session: a second opener is told to enter it.
        r = rf("run", "--vault", f"{cipher}:/plain", "--passfile", str(pw), "--", "true")
        assert r.returncode == 2 and f"ringfence enter {name}" in r.stderr
    finally:
        assert rf("stop", name).returncode == 0
    assert wait_until(lambda: _no_gocryptfs_left(cipher), timeout=15)


def test_wrong_password_is_one_line_and_leaves_nothing(vault, world_tmp):
    cipher, _ = vault
    bad = world_tmp / "bad"
    bad.write_text("nope\n")
    r = rf("run", "--vault", f"{cipher}:/plain", "--passfile", str(bad), "--", "true")
    assert r.returncode != 0
    assert "wrong password" in r.stderr and r.stderr.count("\n") == 1
    assert wait_until(lambda: _no_gocryptfs_left(cipher))


def test_sigkill_of_launcher_leaves_no_gocryptfs(vault):
    import signal
    import subprocess
    import sys

    cipher, pw = vault
    marker = f"rf-vk-{uuid.uuid4().hex[:8]}"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ringfence",
            "run",
            "--vault",
            f"{cipher}:/plain",
            "--passfile",
            str(pw),
            "--",
            "bash",
            "-c",
            f"exec -a {marker} sleep 300",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: bool(pids_with(marker)), timeout=20)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert wait_until(lambda: not pids_with(marker), timeout=15)
        assert wait_until(lambda: _no_gocryptfs_left(cipher), timeout=15)
        # The lock is free again: the vault opens.
        r = rf("run", "--vault", f"{cipher}:/plain", "--passfile", str(pw), "--", "true")
        assert r.returncode == 0, r.stderr
    finally:
        p.kill()
