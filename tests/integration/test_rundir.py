"""The per-user runtime directory keeps the caller's real uid in its name, even from a user
namespace where the caller is mapped to 0 (it must never take root's /tmp/ringfence-0)."""

from __future__ import annotations

import ctypes
import os

from ringfence import _rundir

CLONE_NEWUSER = 0x10000000


def _in_userns_as_root(write_fd: int) -> None:
    uid, gid = os.geteuid(), os.getegid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        os._exit(3)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")
    os.write(write_fd, f"{os.geteuid()} {_rundir.root()}".encode())
    os._exit(0)


def test_runtime_dir_is_named_after_the_outer_uid(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _in_userns_as_root(w)
        finally:
            os._exit(4)
    os.close(w)
    answer = os.read(r, 4096).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    inner_uid, path = answer.split(" ", 1)
    assert inner_uid == "0"  # the control: inside, we really are uid 0
    assert path == f"/tmp/ringfence-{os.geteuid()}"


def test_outside_any_user_namespace_the_uid_is_our_own() -> None:
    assert _rundir.outer_uid() == os.geteuid()


def test_a_squatted_tmp_name_falls_back_to_the_home_cache(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Another user made /tmp/ringfence-UID first; here: a directory others may write to, which
    # is refused just the same (an unprivileged test cannot make one owned by someone else).
    fake_tmp, home = tmp_path / "tmp", tmp_path / "home"
    fake_tmp.mkdir()
    home.mkdir(mode=0o755)
    squat = fake_tmp / f"ringfence-{os.geteuid()}"
    squat.mkdir()
    squat.chmod(0o777)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(_rundir, "TMP", str(fake_tmp))
    assert _rundir.root() == str(home / ".cache" / "ringfence-runtime")
    made = _rundir.private_dir("sessions")
    assert made == str(home / ".cache" / "ringfence-runtime" / "sessions")
    assert (os.stat(made).st_mode & 0o777) == 0o700
    squat.chmod(0o700)  # the control: once the name is ours again, /tmp is used
    assert _rundir.root() == str(squat)
