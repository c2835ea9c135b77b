"""Encrypted vaults against the real kernel and the real gocryptfs.

A minimal stand-in for the runtime (the core launcher is written elsewhere): the test process
forks a "launcher" L that unshares user, mount and PID namespaces (identity uid/gid map); L forks
PID 1 (I), which makes / rprivate, bind-mounts a host directory as the new root, calls
``mount_in_namespace()`` on a directory in it, pivots into it and detaches the old root, then
forks a payload without capabilities. Everyone reports JSON lines on a pipe. With
``Options(hold=True)`` PID 1 stays up until the test lets it go, so the test can look at the
host meanwhile. By default PID 1 first pivots into a tmpfs holding the host tree at /oldroot,
as the core runtime does, and passes ``host_root="/oldroot"``.

Nothing here waits on time: ends are observed through waitpid and pidfds (with generous guards
so a bug fails the test instead of hanging it).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ringfence.errors import RingfenceError, SandboxError, SessionError
from ringfence.kernel import mount as mnt
from ringfence.kernel import prctl, userns
from ringfence.kernel._syscall import libc
from ringfence.runtime import askpass, vault
from ringfence.runtime.askpass import PasswordSource

PASSWORD = b"correct horse battery staple"
SCRYPTN = 10  # fast key derivation: tests mount many times
MOUNTPOINT = "/home/user/plain"
GUARD_SECONDS = 60.0  # a hang guard only; nothing asserts on elapsed time
SECRET_NAME = "tax-return-2024.txt"
SECRET_DATA = b"TOP-SECRET: income 123456, iban DE00 1234\n"

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/gocryptfs"), reason="gocryptfs is not installed"
)

Payload = Callable[[], dict[str, object]]


# --- harness ----------------------------------------------------------------------------------


class _CapHeader(ctypes.Structure):  # linux/capability.h
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_all_caps() -> None:
    """The payload keeps its uid but loses every capability, like a real payload."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _send(fd: int, obj: object) -> None:
    os.write(fd, json.dumps(obj).encode() + b"\n")


@dataclass
class Sandbox:
    """One harness run; see the module docstring."""

    launcher: int
    reports: int
    release_fd: int
    pid1_host: int = 0
    pid1_fd: int = -1
    messages: list[dict[str, object]] = field(default_factory=list)
    launcher_status: int | None = None
    _buf: bytes = b""

    def next(self) -> dict[str, object]:
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self.reports], [], [], GUARD_SECONDS)
            assert ready, "the sandbox did not report (hang guard)"
            chunk = os.read(self.reports, 65536)
            assert chunk, f"the sandbox ended without reporting; got {self.messages}"
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        msg: dict[str, object] = json.loads(line)
        self.messages.append(msg)
        return msg

    def release(self) -> None:
        if self.release_fd >= 0:
            os.close(self.release_fd)
            self.release_fd = -1

    def wait(self) -> int:
        """Let PID 1 go, wait for the launcher and for PID 1's whole namespace to be gone."""
        self.release()
        self.drain()
        if self.launcher_status is None:
            _, raw = os.waitpid(self.launcher, 0)
            self.launcher_status = os.waitstatus_to_exitcode(raw)
        self.wait_pid1()
        return self.launcher_status

    def drain(self) -> None:
        """Read every remaining report (EOF once L, I and the payload are all gone)."""
        if self.reports < 0:
            return
        while True:
            ready, _, _ = select.select([self.reports], [], [], GUARD_SECONDS)
            assert ready, "the sandbox did not end (hang guard)"
            chunk = os.read(self.reports, 65536)
            if not chunk:
                break
            self._buf += chunk
        for line in self._buf.splitlines():
            self.messages.append(json.loads(line))
        self._buf = b""
        os.close(self.reports)
        self.reports = -1

    def wait_pid1(self) -> None:
        # PID 1's exit is reported only after the kernel has killed and reaped everything in
        # its PID namespace (zap_pid_ns_processes), gocryptfs included.
        if self.pid1_fd >= 0:
            ready, _, _ = select.select([self.pid1_fd], [], [], GUARD_SECONDS)
            assert ready, "PID 1 of the sandbox is still alive (hang guard)"
            os.close(self.pid1_fd)
            self.pid1_fd = -1

    def kill_launcher(self) -> None:
        os.kill(self.launcher, signal.SIGKILL)
        _, raw = os.waitpid(self.launcher, 0)
        self.launcher_status = os.waitstatus_to_exitcode(raw)


@dataclass(frozen=True)
class Options:
    """How PID 1 behaves. ``layout``: "oldroot" is the core runtime's (PID 1 first pivots into
    a tmpfs with the host tree at /oldroot and the new root at /newroot, so host paths need
    ``host_root``); "direct" mounts the vault while PID 1 still has the host's root."""

    hold: bool = False
    hold_payload: bool = False
    close_vault: bool = False
    inspect_daemon_root: bool = False
    layout: str = "oldroot"


def start_sandbox(
    spec: vault.VaultSpec,
    password: bytes,
    root: Path,
    payload: Payload | None = None,
    options: Options | None = None,
) -> Sandbox:
    """Fork L -> I as described above; the test process gives up its copy of the lock fd."""
    options = options or Options()
    (root / MOUNTPOINT.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (root / "proc").mkdir(exist_ok=True)
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    release_r, release_w = os.pipe2(os.O_CLOEXEC)
    ids = (os.getuid(), os.getgid())
    launcher = os.fork()
    if launcher == 0:
        code = 1
        try:
            os.close(report_r)
            os.close(release_w)
            _launcher(spec, password, str(root), (report_w, release_r), payload, options, ids)
            code = 0
        except BaseException as e:  # noqa: BLE001
            _send(report_w, {"launcher_error": repr(e)})
        finally:
            os._exit(code)
    os.close(report_w)
    os.close(release_r)
    spec.release()  # from now on only L, I and gocryptfs hold the vault lock
    sb = Sandbox(launcher=launcher, reports=report_r, release_fd=release_w)
    first = sb.next()
    assert "pid1_host" in first, first
    sb.pid1_host = int(first["pid1_host"])  # type: ignore[call-overload]
    sb.pid1_fd = os.pidfd_open(sb.pid1_host)
    return sb


def _launcher(
    spec: vault.VaultSpec,
    password: bytes,
    root: str,
    pipes: tuple[int, int],
    payload: Payload | None,
    options: Options,
    ids: tuple[int, int],
) -> None:
    userns.unshare(userns.CLONE_NEWUSER | userns.CLONE_NEWNS | userns.CLONE_NEWPID)
    userns.write_id_maps(ids[0], ids[0], ids[1], ids[1])
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid1 = os.fork()
    if pid1 == 0:
        code = 0
        try:
            os.close(go_w)
            os.read(go_r, 1)  # report order: L's pid1_host line comes first
            os.close(go_r)
            code = _pid1(spec, password, root, pipes, payload, options)
        except BaseException as e:  # noqa: BLE001
            _send(pipes[0], {"pid1_error": repr(e)})
            code = 3
        finally:
            os._exit(code)
    _send(pipes[0], {"pid1_host": pid1})
    os.write(go_w, b"g")
    os.close(go_w)
    os.close(go_r)
    _, raw = os.waitpid(pid1, 0)
    os._exit(os.waitstatus_to_exitcode(raw))


def _pid1(
    spec: vault.VaultSpec,
    password: bytes,
    root: str,
    pipes: tuple[int, int],
    payload: Payload | None,
    options: Options,
) -> int:
    report, release = pipes
    prctl.set_pdeathsig(signal.SIGKILL)  # what the real runtime does: die with the launcher
    prctl.set_dumpable(False)  # and it makes PID 1 non-dumpable
    mnt.make_private_recursive("/")
    host_root = "/"
    new_root = root
    if options.layout == "oldroot":
        base = root + ".base"
        os.makedirs(base, exist_ok=True)
        mnt.mount("tmpfs", base, "tmpfs", mnt.MS_NOSUID | mnt.MS_NODEV, "mode=0755")
        os.mkdir(base + "/oldroot")
        os.mkdir(base + "/newroot")
        mnt.pivot_root(base, base + "/oldroot")
        os.chdir("/")
        host_root, new_root = "/oldroot", "/newroot"
        mnt.mount("/oldroot" + root, new_root, None, mnt.MS_BIND | mnt.MS_REC)
    else:
        mnt.mount(root, root, None, mnt.MS_BIND | mnt.MS_REC)
    mnt.mount("proc", new_root + "/proc", "proc", mnt.MS_NOSUID | mnt.MS_NODEV | mnt.MS_NOEXEC)
    try:
        mounted = vault.mount_in_namespace(
            spec, new_root + MOUNTPOINT, password, host_root=host_root
        )
    except RingfenceError as e:
        _send(
            report,
            {
                "error": type(e).__name__,
                "message": str(e),
                "fuse_mounts": _fuse_mounts(host_root + "/proc/self/mountinfo"),
                "children": _has_children(),
            },
        )
        return 1
    _send(report, {"mounted": True, "daemon_pid": mounted.pid, "log": mounted.log()})
    if options.inspect_daemon_root:
        # PID 1 keeps CAP_SYS_PTRACE in the sandbox's user namespace, so it may look.
        daemon_root = f"{new_root}/proc/{mounted.pid}/root"
        secret = daemon_root + os.path.dirname(root) + "/host-only-secret.txt"
        _send(
            report,
            {
                "daemon_root": sorted(os.listdir(daemon_root)),
                "dev": sorted(os.listdir(daemon_root + "/dev")),
                "secret": "EXISTS" if os.path.exists(secret) else "ENOENT",
            },
        )
    if options.layout == "oldroot":
        mnt.umount("/oldroot", mnt.MNT_DETACH)
    os.chdir(new_root)
    mnt.pivot_root(".", ".")
    mnt.umount(".", mnt.MNT_DETACH)
    os.chdir("/")
    if payload is not None:
        child = os.fork()
        if child == 0:
            try:
                prctl.set_dumpable(True)  # a real payload is exec'd: dumpable again
                _drop_all_caps()
                _send(report, {"payload": payload()})
                if options.hold_payload:
                    _send(report, {"holding": True})
                    while os.read(release, 1):
                        pass
            except BaseException as e:  # noqa: BLE001
                _send(report, {"payload_error": repr(e)})
            finally:
                os._exit(0)
        os.waitpid(child, 0)
    if options.hold:
        _send(report, {"holding": True})
        while os.read(release, 1):
            pass
    if options.close_vault:
        status = mounted.close(MOUNTPOINT)
        _send(
            report,
            {
                "closed": status,
                "fuse_mounts": _fuse_mounts("/proc/self/mountinfo"),
                "children": _has_children(),
            },
        )
    return 0


def _fuse_mounts(mountinfo: str) -> list[str]:
    with open(mountinfo) as f:
        return [line.strip() for line in f if " - fuse" in line]


def _has_children() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


# --- host-side observations -------------------------------------------------------------------


def gocryptfs_processes(cipherdir: Path) -> list[int]:
    """Host pids of gocryptfs processes serving ``cipherdir`` (any we can see)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"gocryptfs") and os.fsencode(cipherdir) in argv:
            found.append(int(entry))
    return found


def processes_in_mount_ns(inodes: set[int]) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/mnt").st_ino in inodes:
                    out.append(int(entry))
            except OSError:
                continue
    return out


def children_of(pid: int) -> tuple[list[int], list[int]]:
    """(gocryptfs, others): host pids whose parent is ``pid`` (PID 1 is non-dumpable, so its
    own /proc entries are closed to us; its children's status files are not)."""
    daemons: list[int] = []
    others: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                ppid = [int(ln.split()[1]) for ln in f if ln.startswith("PPid:")][0]
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except (OSError, IndexError):
            continue
        if ppid == pid:
            (daemons if argv0.endswith(b"gocryptfs") else others).append(int(entry))
    return daemons, others


def host_mountinfo_mentions(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(path) in line]


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    return run


@pytest.fixture
def passfile(tmp_path: Path) -> Path:
    p = tmp_path / "password"
    p.write_bytes(PASSWORD + b"\n")
    return p


@pytest.fixture
def cipherdir(tmp_path: Path, passfile: Path) -> Path:
    path = vault.init_vault(
        str(tmp_path / "crypt"), PasswordSource(passfile=str(passfile)), scryptn=SCRYPTN
    )
    return Path(path)


@pytest.fixture
def sandboxes() -> Iterator[list[Sandbox]]:
    """Every sandbox a test starts is ended and waited for, whatever the test's outcome."""
    started: list[Sandbox] = []
    yield started
    for sb in started:
        if sb.launcher_status is None:
            try:
                sb.kill_launcher()
            except ChildProcessError:
                pass
        sb.wait_pid1()


def _write_secret() -> dict[str, object]:
    # The very first create in the fresh mount root (see KERNEL-NOTES on EACCES).
    path = os.path.join(MOUNTPOINT, SECRET_NAME)
    with open(path, "wb") as f:
        f.write(SECRET_DATA)
    with open(path, "rb") as f:
        back = f.read()
    return {"read_back": back == SECRET_DATA, "listing": sorted(os.listdir(MOUNTPOINT))}


# --- promises ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["oldroot", "direct"])
def test_vault_file_is_ciphertext_on_disk_and_host_mountpoint_stays_empty(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox], layout: str
) -> None:
    root = tmp_path / "root"
    spec = vault.prepare(f"{cipherdir}:{MOUNTPOINT}")
    sb = start_sandbox(spec, PASSWORD, root, _write_secret, Options(hold=True, layout=layout))
    sandboxes.append(sb)
    assert sb.next().get("mounted") is True, sb.messages
    payload = sb.next()
    assert payload == {"payload": {"read_back": True, "listing": [SECRET_NAME]}}, sb.messages
    assert sb.next() == {"holding": True}

    # While the vault is open in the sandbox: the host path of its mountpoint is empty ...
    assert list((root / MOUNTPOINT.lstrip("/")).iterdir()) == []
    assert host_mountinfo_mentions(tmp_path) == []
    # ... and CIPHERDIR holds only ciphertext: neither the name nor the content in clear.
    stored = [p for p in files_under(cipherdir) if not p.name.startswith("gocryptfs.")]
    assert len(stored) == 1
    assert SECRET_NAME not in stored[0].name and "tax" not in stored[0].name
    for p in files_under(cipherdir):
        assert b"TOP-SECRET" not in p.read_bytes()
        assert b"income" not in p.read_bytes()
    assert sb.wait() == 0


def test_vault_contents_persist_to_the_next_sandbox(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"), PASSWORD, tmp_path / "root", _write_secret
    )
    sandboxes.append(sb)
    assert sb.wait() == 0
    assert {"payload": {"read_back": True, "listing": [SECRET_NAME]}} in sb.messages

    def read_secret() -> dict[str, object]:
        with open(os.path.join(MOUNTPOINT, SECRET_NAME), "rb") as f:
            return {"same": f.read() == SECRET_DATA}

    again = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"), PASSWORD, tmp_path / "root2", read_secret
    )
    sandboxes.append(again)
    assert again.wait() == 0
    assert {"payload": {"same": True}} in again.messages


def test_payload_cannot_see_cipherdir_after_pivot_root(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    def probe() -> dict[str, object]:
        out = _write_secret()
        out["cipherdir_exists"] = os.path.exists(str(cipherdir))
        out["conf_exists"] = os.path.exists(str(cipherdir / "gocryptfs.conf"))
        return out

    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"), PASSWORD, tmp_path / "root", probe
    )
    sandboxes.append(sb)
    assert sb.wait() == 0
    assert {
        "payload": {
            "read_back": True,
            "listing": [SECRET_NAME],
            "cipherdir_exists": False,
            "conf_exists": False,
        }
    } in sb.messages


def test_nothing_left_after_the_sandbox_ends(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"),
        PASSWORD,
        tmp_path / "root",
        _write_secret,
        Options(hold=True),
    )
    sandboxes.append(sb)
    assert sb.next().get("mounted") is True, sb.messages
    sb.next()
    assert sb.next() == {"holding": True}
    daemons, _ = children_of(sb.pid1_host)
    assert len(daemons) == 1 and gocryptfs_processes(cipherdir) == daemons
    # The launcher shares PID 1's mount namespace; gocryptfs has one of its own.
    namespaces = {os.stat(f"/proc/{p}/ns/mnt").st_ino for p in (sb.launcher, *daemons)}
    assert len(namespaces) == 2

    assert sb.wait() == 0
    assert gocryptfs_processes(cipherdir) == []
    assert processes_in_mount_ns(namespaces) == []
    assert host_mountinfo_mentions(tmp_path) == []
    vault.prepare(f"{cipherdir}:{MOUNTPOINT}").release()  # the lock is free again


def test_nothing_left_after_the_launcher_is_sigkilled(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"),
        PASSWORD,
        tmp_path / "root",
        _write_secret,
        Options(hold=True),
    )
    sandboxes.append(sb)
    assert sb.next().get("mounted") is True, sb.messages
    sb.next()
    assert sb.next() == {"holding": True}
    daemons, _ = children_of(sb.pid1_host)
    assert gocryptfs_processes(cipherdir) == daemons != []
    namespaces = {os.stat(f"/proc/{p}/ns/mnt").st_ino for p in (sb.launcher, *daemons)}

    sb.kill_launcher()
    assert sb.launcher_status == -signal.SIGKILL
    sb.wait_pid1()  # PID 1 dies of its parent-death signal, and its namespace with it
    assert gocryptfs_processes(cipherdir) == []
    assert processes_in_mount_ns(namespaces) == []
    assert host_mountinfo_mentions(tmp_path) == []
    vault.prepare(f"{cipherdir}:{MOUNTPOINT}").release()
    sb.release()
    sb.drain()


def test_wrong_password_is_refused_and_leaves_nothing(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"),
        b"not the password",
        tmp_path / "root",
        _write_secret,
    )
    sandboxes.append(sb)
    report = sb.next()
    assert report == {
        "error": "SandboxError",
        "message": f"vault {cipherdir}: wrong password",
        "fuse_mounts": [],
        "children": False,
    }
    assert sb.wait() == 1
    assert gocryptfs_processes(cipherdir) == []
    vault.prepare(f"{cipherdir}:{MOUNTPOINT}").release()


def test_wrong_password_error_in_process(cipherdir: Path) -> None:
    """The same refusal, seen as the exception mount_in_namespace raises (not via a report)."""
    spec = vault.prepare(f"{cipherdir}:{MOUNTPOINT}")
    uid, gid = os.getuid(), os.getgid()
    pid = os.fork()
    if pid == 0:
        code = 9
        try:
            userns.unshare(userns.CLONE_NEWUSER | userns.CLONE_NEWNS)
            userns.write_id_maps(uid, uid, gid, gid)
            mnt.make_private_recursive("/")
            target = str(cipherdir.parent / "plain")
            os.mkdir(target)
            try:
                vault.mount_in_namespace(spec, target, b"wrong")
            except SandboxError as e:
                code = 0 if str(e) == f"vault {cipherdir}: wrong password" else 8
        finally:
            os._exit(code)
    spec.release()
    _, raw = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(raw) == 0


def test_second_open_of_the_same_vault_names_the_session_to_enter(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}", session="taxes"),
        PASSWORD,
        tmp_path / "root",
        options=Options(hold=True),
    )
    sandboxes.append(sb)
    assert sb.next().get("mounted") is True, sb.messages
    assert sb.next() == {"holding": True}
    with pytest.raises(SessionError) as err:
        vault.prepare(f"{cipherdir}:/elsewhere")
    assert "already open in session 'taxes'" in str(err.value)
    assert "ringfence enter taxes" in str(err.value)
    # The same directory reached through a symlink is the same vault.
    link = tmp_path / "link-to-crypt"
    link.symlink_to(cipherdir)
    with pytest.raises(SessionError):
        vault.prepare(f"{link}:{MOUNTPOINT}")
    assert sb.wait() == 0
    vault.prepare(f"{cipherdir}:{MOUNTPOINT}").release()


def test_read_only_vault_refuses_writes(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    def probe() -> dict[str, object]:
        try:
            with open(os.path.join(MOUNTPOINT, "new.txt"), "wb") as f:
                f.write(b"x")
            return {"wrote": True}
        except OSError as e:
            return {"errno": errno.errorcode.get(e.errno or 0, "?")}

    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}:ro"), PASSWORD, tmp_path / "root", probe
    )
    sandboxes.append(sb)
    assert sb.wait() == 0
    assert {"payload": {"errno": "EROFS"}} in sb.messages
    assert sorted(p.name for p in cipherdir.iterdir()) == ["gocryptfs.conf", "gocryptfs.diriv"]


def test_close_unmounts_and_stops_gocryptfs(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"),
        PASSWORD,
        tmp_path / "root",
        _write_secret,
        Options(close_vault=True),
    )
    sandboxes.append(sb)
    assert sb.wait() == 0
    closed = sb.messages[-1]
    assert closed["closed"] == 0, closed  # it ended by itself once its view was unmounted
    assert closed["fuse_mounts"] == [] and closed["children"] is False


# --- attacks ----------------------------------------------------------------------------------


def test_payload_cannot_ptrace_or_enter_gocryptfs(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    """gocryptfs runs with the payload's uid in the payload's PID namespace. Were it dumpable,
    the payload could read the master key from its memory and walk its root and fds (it keeps
    the host view of CIPHERDIR). It is started from an exec-only copy, so it is not."""
    host_secret = tmp_path / "host-only-secret.txt"
    host_secret.write_bytes(b"host secret\n")

    def attack() -> dict[str, object]:
        # Find gocryptfs the way an attacker would: it is in the payload's own /proc.
        daemons = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        if f.read().split(b"\0")[0].endswith(b"gocryptfs"):
                            daemons.append(entry)
                except OSError:
                    pass
        out: dict[str, object] = {"daemons": len(daemons)}
        proc = f"/proc/{daemons[0]}"
        for name, path in (
            ("host_secret", proc + "/root" + str(host_secret)),
            ("conf", proc + "/root" + str(cipherdir / "gocryptfs.conf")),
            ("cwd", proc + "/cwd/usr/bin/env"),
            ("environ", proc + "/environ"),
            ("mem", proc + "/mem"),
            ("lock_fd", proc + "/fd/4"),
            ("fuse_fd", proc + "/fd/3"),
        ):
            try:
                with open(path, "rb") as f:
                    out[name] = "READ " + f.read(40).decode(errors="replace")
            except OSError as e:
                out[name] = errno.errorcode.get(e.errno or 0, "?")
        try:
            out["root_listing"] = sorted(os.listdir(proc + "/root"))
        except OSError as e:
            out["root_listing"] = errno.errorcode.get(e.errno or 0, "?")
        with open(f"/proc/{daemons[0]}/status") as f:
            out["tracer"] = [ln.split()[1] for ln in f if ln.startswith("TracerPid:")][0]
        return out

    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"), PASSWORD, tmp_path / "root", attack
    )
    sandboxes.append(sb)
    assert sb.wait() == 0
    got = sb.messages[2].get("payload")
    assert isinstance(got, dict), sb.messages
    assert got.pop("daemons") == 1
    assert got.pop("tracer") == "0"
    assert host_secret.read_bytes() == b"host secret\n"  # control: it is there on the host
    assert got == {
        "host_secret": "EACCES",
        "conf": "EACCES",
        "cwd": "EACCES",
        "environ": "EACCES",
        "mem": "EACCES",
        "lock_fd": "EACCES",
        "fuse_fd": "EACCES",
        "root_listing": "EACCES",
    }


def test_payload_cannot_ptrace_attach_to_gocryptfs(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    def attack() -> dict[str, object]:
        daemons = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0].endswith(b"gocryptfs"):
                        daemons.append(int(entry))
        ptrace = libc.ptrace
        ptrace.restype = ctypes.c_long
        results: dict[str, object] = {}
        for request, name in ((16, "attach"), (0x4206, "seize")):  # linux/ptrace.h
            r = ptrace(ctypes.c_long(request), ctypes.c_long(daemons[0]), None, None)
            results[name] = "OK" if r == 0 else errno.errorcode.get(ctypes.get_errno(), "?")
        return results

    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"), PASSWORD, tmp_path / "root", attack
    )
    sandboxes.append(sb)
    assert sb.wait() == 0
    assert sb.messages[2] == {"payload": {"attach": "EPERM", "seize": "EPERM"}}, sb.messages


def test_gocryptfs_root_holds_no_host_tree(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    """Defence in depth behind non-dumpable: what gocryptfs itself can reach (seen from PID 1,
    which has the capabilities to look) is /usr, /dev/null, a proc and CIPHERDIR only."""
    (tmp_path / "host-only-secret.txt").write_bytes(b"host secret\n")

    def look() -> dict[str, object]:
        return {}

    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"),
        PASSWORD,
        tmp_path / "root",
        look,
        Options(inspect_daemon_root=True),
    )
    sandboxes.append(sb)
    assert sb.wait() == 0
    seen = [m for m in sb.messages if "daemon_root" in m]
    assert len(seen) == 1, sb.messages
    top = str(cipherdir).split("/")[1]
    allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "dev", "proc", top}
    listing = seen[0]["daemon_root"]
    assert isinstance(listing, list) and set(listing) <= allowed and "usr" in listing, listing
    assert seen[0]["secret"] == "ENOENT"
    assert seen[0]["dev"] == ["null"]


def _holding_sandbox(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> tuple[Sandbox, int]:
    """A sandbox whose payload wrote the secret into the mounted vault and now holds still;
    returns it with the payload's host pid."""
    sb = start_sandbox(
        vault.prepare(f"{cipherdir}:{MOUNTPOINT}"),
        PASSWORD,
        tmp_path / "root",
        _write_secret,
        Options(hold_payload=True),
    )
    sandboxes.append(sb)
    assert sb.next().get("mounted") is True, sb.messages
    assert sb.next()["payload"] == {"read_back": True, "listing": [SECRET_NAME]}
    assert sb.next() == {"holding": True}
    _, (payload_pid,) = children_of(sb.pid1_host)
    return sb, payload_pid


def test_host_process_of_same_uid_cannot_read_the_vault_through_proc_root(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    """A same-uid host process can walk into the sandbox's root via /proc/<payload>/root (the
    payload is dumpable); the FUSE view itself must still refuse it (allow_other limits it to
    processes in the sandbox's user namespace)."""
    sb, payload_pid = _holding_sandbox(cipherdir, tmp_path, sandboxes)
    via_proc = f"/proc/{payload_pid}/root{MOUNTPOINT}"
    # Control: the path does reach into the sandbox's root ...
    assert stat.S_ISDIR(os.lstat(f"/proc/{payload_pid}/root/home/user").st_mode)
    # ... but the decrypted view refuses a process outside the sandbox's user namespace.
    with pytest.raises(PermissionError):
        os.listdir(via_proc)
    with pytest.raises(PermissionError):
        open(os.path.join(via_proc, SECRET_NAME), "rb").close()
    assert sb.wait() == 0


def test_known_limit_same_uid_process_can_setns_into_the_sandbox(
    cipherdir: Path, tmp_path: Path, sandboxes: list[Sandbox]
) -> None:
    """Documented exposure (docs/vault.md): a host process of the same user may open
    /proc/<payload>/ns/* (the payload is dumpable: it was exec'd) and, owning the sandbox's user
    namespace, join it; inside, the vault is readable. Yama would not stop this: it governs
    ptrace attach, not these opens. The same user may also ptrace gocryptfs. If this test
    starts failing, update the doc."""
    sb, payload_pid = _holding_sandbox(cipherdir, tmp_path, sandboxes)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = b"setns failed"
        try:
            user = os.open(f"/proc/{payload_pid}/ns/user", os.O_RDONLY)
            mount_ns = os.open(f"/proc/{payload_pid}/ns/mnt", os.O_RDONLY)
            userns.setns(user, userns.CLONE_NEWUSER)
            userns.setns(mount_ns, userns.CLONE_NEWNS)
            with open(os.path.join(MOUNTPOINT, SECRET_NAME), "rb") as f:
                out = f.read()
        except BaseException as e:  # noqa: BLE001
            out = repr(e).encode()
        finally:
            os.write(w, out)
            os._exit(0)
    os.close(w)
    got = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    # gocryptfs is non-dumpable, but it was exec'd in the sandbox's user namespace, which this
    # user owns: ptrace (hence its memory and the master key) is open to the same user.
    (daemon,), _ = children_of(sb.pid1_host)
    seizer = os.fork()
    if seizer == 0:
        ptrace = libc.ptrace
        ptrace.restype = ctypes.c_long
        ok = ptrace(ctypes.c_long(0x4206), ctypes.c_long(daemon), None, None) == 0  # SEIZE
        os._exit(0 if ok else 1)  # exiting detaches
    _, raw = os.waitpid(seizer, 0)
    assert sb.wait() == 0
    assert got == SECRET_DATA
    assert os.waitstatus_to_exitcode(raw) == 0


# --- vault init -------------------------------------------------------------------------------


def _parse(argv: list[str]) -> object:
    import argparse

    from ringfence.commands import vault as command

    parser = argparse.ArgumentParser(prog="ringfence")
    command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def _opens_with(cipherdir: Path, password: bytes, root: Path, sandboxes: list[Sandbox]) -> str:
    sb = start_sandbox(vault.prepare(f"{cipherdir}:{MOUNTPOINT}"), password, root, _write_secret)
    sandboxes.append(sb)
    sb.wait()
    first = sb.messages[1]
    return "ok" if first.get("mounted") else str(first.get("message"))


def test_vault_init_with_passfile(
    tmp_path: Path,
    passfile: Path,
    sandboxes: list[Sandbox],
    capfd: pytest.CaptureFixture[str],
) -> None:
    from ringfence.commands import vault as command

    target = tmp_path / "new-vault"
    args = _parse(["vault", "init", str(target), "--passfile", str(passfile)])
    assert command.run(args) == 0  # type: ignore[arg-type]
    assert (target / "gocryptfs.conf").is_file()
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert PASSWORD.decode() not in capfd.readouterr().out
    assert _opens_with(target, PASSWORD, tmp_path / "r1", sandboxes) == "ok"
    assert _opens_with(target, b"other", tmp_path / "r2", sandboxes).endswith("wrong password")


def test_vault_init_with_askpass(tmp_path: Path, sandboxes: list[Sandbox]) -> None:
    from ringfence.commands import vault as command

    script = tmp_path / "askpass.sh"
    script.write_text("#!/bin/sh\nprintf '%s\\n' 'from askpass 42'\n")
    script.chmod(0o700)
    target = tmp_path / "v2"
    args = _parse(["vault", "init", str(target), "--askpass", str(script)])
    assert command.run(args) == 0  # type: ignore[arg-type]
    assert _opens_with(target, b"from askpass 42", tmp_path / "r1", sandboxes) == "ok"
    assert _opens_with(target, PASSWORD, tmp_path / "r2", sandboxes).endswith("wrong password")


def test_vault_init_refuses_a_non_empty_directory(tmp_path: Path, passfile: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "file").write_text("x")
    with pytest.raises(RingfenceError, match="not empty"):
        vault.init_vault(str(target), PasswordSource(passfile=str(passfile)))
    assert [p.name for p in target.iterdir()] == ["file"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_terminal_password_is_not_echoed_and_echo_comes_back() -> None:
    """On a real pseudo-terminal: the typed password never shows, the terminal is restored."""
    import termios

    master, slave = os.openpty()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = b"child failed"
        try:
            os.close(master)
            os.setsid()
            tty_fd = os.open(os.ttyname(slave), os.O_RDWR)  # becomes the controlling terminal
            got = askpass.read_password(PasswordSource(), "PW: ", confirm=True)
            echo_back = bool(termios.tcgetattr(tty_fd)[3] & termios.ECHO)
            out = json.dumps({"password": got.decode(), "echo_restored": echo_back}).encode()
        except BaseException as e:  # noqa: BLE001
            out = repr(e).encode()
        finally:
            os.write(result_w, out)
            os._exit(0)
    os.close(slave)
    os.close(result_w)
    seen = b""

    def read_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen:
            ready, _, _ = select.select([master], [], [], GUARD_SECONDS)
            assert ready, f"no {marker!r} on the terminal; saw {seen!r}"
            seen += os.read(master, 1024)

    read_until(b"PW: ")
    os.write(master, b"hunter2 typed\n")
    read_until(b"Repeat: ")
    os.write(master, b"hunter2 typed\n")
    ready, _, _ = select.select([result_r], [], [], GUARD_SECONDS)
    assert ready
    result = os.read(result_r, 4096)
    os.waitpid(pid, 0)
    try:
        while select.select([master], [], [], 0)[0]:
            seen += os.read(master, 1024)
    except OSError:
        pass  # EIO once the child side is closed
    os.close(master)
    os.close(result_r)
    assert json.loads(result) == {"password": "hunter2 typed", "echo_restored": True}
    assert b"hunter2" not in seen
