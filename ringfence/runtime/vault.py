"""Encrypted vaults: a gocryptfs directory decrypted inside one sandbox and nowhere else.

Owns: the ``--vault CIPHERDIR:MOUNTPOINT[:ro]`` option (validation, the per-vault lock), the
password hand-over to gocryptfs, mounting the FUSE view from inside the sandbox's namespaces,
the gocryptfs process, and ``ringfence vault init``.

Where each part runs:

* ``prepare()`` and ``read_password()`` run in the launcher on the host, before anything starts,
  so every user error (no vault, no gocryptfs, vault already open) comes before a prompt.
* ``mount_in_namespace()`` runs in the sandbox's PID 1 *before* it pivots into the new root. PID 1
  opens /dev/fuse and mounts it itself (fusermount3 refuses in a user namespace that keeps a uid
  mapping), then starts gocryptfs serving ``/dev/fd/3``. gocryptfs is a child of PID 1, so it
  lives in the sandbox's PID namespace and dies with it, even when the launcher is SIGKILLed.

gocryptfs runs in its own mount namespace whose root is a tmpfs holding only /usr (read-only),
/dev/null, a /proc of the sandbox and CIPHERDIR at its host path. So pivot_root in PID 1 does not
move it, and a payload reaching ``/proc/<gocryptfs>/root`` finds ciphertext, not the host.
The FUSE mount carries ``allow_other``: the kernel then lets only processes inside the sandbox's
user namespace use it, which keeps same-uid host processes out of ``/proc/<pid>/root/MOUNTPOINT``.

Must never: put the password in argv or an environment (it goes through a pipe on stdin); leave
a mount, a gocryptfs process or a held lock behind on failure; show CIPHERDIR to the payload;
hand the payload any fd it opened (all are O_CLOEXEC).
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from ..errors import (
    KernelError,
    MissingToolError,
    ProfileError,
    RingfenceError,
    SandboxError,
    SessionError,
    UnsupportedError,
)
from ..kernel import caps as _caps
from ..kernel import fds as _fds
from ..kernel import mount as _mnt
from ..kernel import prctl as _prctl
from ..kernel import userns as _userns
from .askpass import PasswordSource, check_password
from .askpass import read_password as _read_password
from .protocol import read_all

if TYPE_CHECKING:
    import argparse

__all__ = [
    "PasswordSource",
    "VaultMount",
    "VaultSpec",
    "describe",
    "init_vault",
    "mount_in_namespace",
    "parse_vault_option",
    "password_for",
    "prepare",
    "prepare_all",
    "read_password",
]

FUSE_DEVICE = "/dev/fuse"
CONF_NAME = "gocryptfs.conf"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# gocryptfs internal/exitcodes/exitcodes.go
EXIT_PASSWORD_INCORRECT = 12
EXIT_CIPHERDIR = 6
EXIT_LOAD_CONF = 8

# The child reports a set-up failure (before exec) with this status and a message on a pipe.
_CHILD_SETUP_FAILED = 125

# linux/memfd.h, linux/fcntl.h
_MFD_EXEC = 0x0010
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE

# linux/mount.h
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MNT_DETACH = 2
_MOUNT_ATTR_RDONLY = 0x01
_MOUNT_ATTR_NOSUID = 0x02
_MOUNT_ATTR_NODEV = 0x04
_MOUNT_ATTR_NOEXEC = 0x08

# Top-level names a dynamically linked /usr/bin/gocryptfs needs besides /usr (merged-/usr
# systems have them as symlinks; older layouts as directories).
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class VaultSpec:
    """A validated ``--vault``: what to mount where, and the lock that keeps it exclusive.

    ``lock_fd`` is an O_CLOEXEC fd holding an flock on this vault's lock file. The runtime keeps
    it open in the sandbox's PID 1 (it survives fork); gocryptfs inherits it, so the lock is held
    exactly as long as the decrypted view can exist.
    """

    cipherdir: str
    mountpoint: str
    gocryptfs: str
    readonly: bool = False
    session: str | None = None
    lock_fd: int = -1
    lock_path: str = ""

    def release(self) -> None:
        """Drop this process's hold on the lock (the launcher's error path)."""
        if self.lock_fd >= 0:
            try:
                os.close(self.lock_fd)
            except OSError:
                pass


@dataclass
class VaultMount:
    """A mounted vault, as seen from the sandbox's PID 1 (``pid`` is in its PID namespace)."""

    spec: VaultSpec
    pid: int
    target: str
    log_fd: int = -1
    closed: bool = field(default=False)

    def log(self) -> str:
        """What gocryptfs printed so far (start-up messages, warnings; never the password)."""
        return _read_log(self.log_fd)

    def close(self, path: str | None = None, grace: float = 5.0) -> int | None:
        """Unmount the view, let gocryptfs end, and return its exit status (None if PID 1's
        reaper got it first).

        Optional: when PID 1 ends, the kernel kills gocryptfs and drops the mount anyway (FUSE
        writes are synchronous, so nothing the payload wrote is lost). ``path`` is where the
        view is in the caller's current root (``spec.mountpoint`` after pivot_root). Once the
        last mount of the view is gone gocryptfs exits by itself; SIGKILL after ``grace``
        seconds if a copy of the mount (a payload's nested namespace) keeps it alive. Never
        SIGTERM: gocryptfs would run fusermount, an orphan for PID 1 to reap.
        """
        if self.closed:
            return None
        self.closed = True
        import select

        try:
            _mnt.umount(path or self.target, _MNT_DETACH)
        except KernelError:
            pass
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            pidfd = -1
        if pidfd >= 0:
            ready, _, _ = select.select([pidfd], [], [], grace)
            os.close(pidfd)
            if not ready:
                os.kill(self.pid, signal.SIGKILL)
        status = None
        try:
            _, raw = os.waitpid(self.pid, 0)
            status = os.waitstatus_to_exitcode(raw)
        except ChildProcessError:
            pass
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1
        return status


# ---------------------------------------------------------------------------------------------
# Launcher side (host)


def parse_vault_option(value: str) -> tuple[str, str, bool]:
    """Split ``CIPHERDIR:MOUNTPOINT[:ro|:rw]``; MOUNTPOINT is absolute and may not hold ':'."""
    readonly = False
    body = value
    for suffix, ro in ((":ro", True), (":rw", False)):
        if body.endswith(suffix) and ":" in body[: -len(suffix)]:
            body, readonly = body[: -len(suffix)], ro
            break
    cipherdir, sep, mountpoint = body.rpartition(":")
    if not sep or not cipherdir or not mountpoint:
        raise ProfileError(
            f"--vault {value!r}: expected CIPHERDIR:MOUNTPOINT (MOUNTPOINT is a path inside "
            "the sandbox, e.g. ~/vault:/home/me/plain)"
        )
    if not mountpoint.startswith("/"):
        raise ProfileError(
            f"--vault {value!r}: MOUNTPOINT {mountpoint!r} must be an absolute path inside "
            "the sandbox"
        )
    parts = mountpoint.split("/")
    if "\0" in value or any(p in (".", "..") for p in parts):
        raise ProfileError(f"--vault {value!r}: MOUNTPOINT may not contain '.' or '..'")
    mountpoint = "/" + "/".join(p for p in parts if p)
    if mountpoint == "/":
        raise ProfileError(f"--vault {value!r}: the vault cannot be mounted on / itself")
    return cipherdir, mountpoint, readonly


def find_gocryptfs() -> str:
    """Absolute, symlink-free path of the gocryptfs binary, or MissingToolError."""
    for d in (os.environ.get("PATH") or DEFAULT_PATH).split(":"):
        if not d.startswith("/"):
            continue  # a relative PATH entry would depend on the caller's cwd
        candidate = os.path.join(d, "gocryptfs")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    raise MissingToolError(
        "gocryptfs is not installed; install it (Debian/Ubuntu: apt install gocryptfs, "
        "Fedora: dnf install gocryptfs)"
    )


def check_fuse_device() -> None:
    """/dev/fuse must exist and be openable read-write by this user."""
    try:
        fd = os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnsupportedError(
            f"{FUSE_DEVICE} does not exist; load the fuse module (modprobe fuse) or, in a "
            "container, pass the device in (--device /dev/fuse)"
        ) from None
    except PermissionError:
        raise UnsupportedError(
            f"{FUSE_DEVICE} is not usable by uid {os.geteuid()}; an administrator must make it "
            "mode 0666 (chmod 0666 /dev/fuse, or a udev rule), as most distributions ship it"
        ) from None
    except OSError as e:
        raise UnsupportedError(f"{FUSE_DEVICE} cannot be opened: {e.strerror}") from None
    os.close(fd)


def _check_cipherdir(raw: str, readonly: bool) -> str:
    path = os.path.realpath(os.path.expanduser(raw))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ProfileError(
            f"vault {raw}: no such directory; create a vault with `ringfence vault init {raw}`"
        ) from None
    except OSError as e:
        raise ProfileError(f"vault {raw}: cannot stat it ({e.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ProfileError(f"vault {raw}: not a directory")
    conf = os.path.join(path, CONF_NAME)
    if not os.path.isfile(conf):
        raise ProfileError(
            f"vault {raw}: not a gocryptfs vault (no {CONF_NAME}); create one with "
            f"`ringfence vault init DIR`"
        )
    need = os.R_OK | os.X_OK | (0 if readonly else os.W_OK)
    if not os.access(path, need) or not os.access(conf, os.R_OK):
        mode = "read" if readonly else "read and write"
        raise ProfileError(f"vault {raw}: this user cannot {mode} it")
    return path


def runtime_dir() -> str:
    """ringfence's private per-user runtime directory ($XDG_RUNTIME_DIR/ringfence)."""
    from .._rundir import root

    return root()


def lock_dir() -> str:
    """$XDG_RUNTIME_DIR/ringfence/vaults (or /tmp/ringfence-UID/vaults), created 0700."""
    from .._rundir import private_dir

    try:
        return private_dir("vaults", strict_leaf=True)
    except OSError as e:
        raise SandboxError(str(e)) from None


def _lock(cipherdir: str, raw: str, session: str | None) -> tuple[int, str]:
    st = os.stat(cipherdir)
    path = os.path.join(lock_dir(), f"{st.st_dev:x}-{st.st_ino:x}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise SandboxError(f"vault {raw}: cannot open its lock {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise _busy_error(raw, holder) from None
    except OSError as e:
        os.close(fd)
        raise SandboxError(f"vault {raw}: cannot lock {path}: {e.strerror}") from None
    text = f"pid={os.getpid()}\ncipherdir={cipherdir}\n"
    if session:
        text += f"session={session}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)
    return fd, path


def _read_holder(fd: int) -> dict[str, str]:
    try:
        data = os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in data.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key] = value
    return out


def _busy_error(raw: str, holder: dict[str, str]) -> RingfenceError:
    name = holder.get("session")
    if name:
        return SessionError(
            f"vault {raw} is already open in session {name!r}; join that session with "
            f"`ringfence enter {name} -- COMMAND` (or end it with `ringfence stop {name}`)"
        )
    if holder.get("pid") == str(os.getpid()):
        return ProfileError(f"vault {raw} is given twice; give each --vault once")
    who = f" (launcher pid {holder['pid']})" if "pid" in holder else ""
    return SessionError(
        f"vault {raw} is already open in another ringfence sandbox{who}; wait for it to end, "
        "or open the vault in a named session (`ringfence start NAME --vault ...`) and join it "
        "with `ringfence enter NAME`"
    )


def prepare(value: str, session: str | None = None) -> VaultSpec:
    """Validate one ``--vault`` value and take the vault's lock (launcher side).

    Raises ProfileError (bad value, not a vault), MissingToolError (no gocryptfs),
    UnsupportedError (/dev/fuse unusable) or SessionError (the vault is open elsewhere).
    The caller owns ``spec.lock_fd``: keep it open (it is O_CLOEXEC) until the sandbox's PID 1
    has forked, and ``spec.release()`` it if the launch is abandoned.
    """
    raw_dir, mountpoint, readonly = parse_vault_option(value)
    cipherdir = _check_cipherdir(raw_dir, readonly)
    gocryptfs = find_gocryptfs()
    check_fuse_device()
    lock_fd, lock_path = _lock(cipherdir, raw_dir, session)
    return VaultSpec(
        cipherdir=cipherdir,
        mountpoint=mountpoint,
        gocryptfs=gocryptfs,
        readonly=readonly,
        session=session,
        lock_fd=lock_fd,
        lock_path=lock_path,
    )


def prepare_all(values: list[str] | tuple[str, ...], session: str | None = None) -> list[VaultSpec]:
    """prepare() each value; refuse two vaults on one mountpoint or nested mountpoints."""
    specs: list[VaultSpec] = []
    try:
        for value in values:
            spec = prepare(value, session)
            specs.append(spec)
            for other in specs[:-1]:
                a, b = other.mountpoint + "/", spec.mountpoint + "/"
                if a.startswith(b) or b.startswith(a):
                    raise ProfileError(
                        f"--vault {value!r}: mountpoint {spec.mountpoint} overlaps the one of "
                        f"vault {other.cipherdir} ({other.mountpoint}); give each vault its own"
                    )
    except BaseException:
        for spec in specs:
            spec.release()
        raise
    return specs


def read_password(source: PasswordSource, spec: VaultSpec | None = None) -> bytes:
    """Read a vault password in the launcher (askpass program, password file or terminal)."""
    prompt = f"Password for vault {spec.cipherdir}: " if spec else "Vault password: "
    return _read_password(source, prompt)


def password_source(args: argparse.Namespace) -> PasswordSource:
    """The PasswordSource that ``--askpass``/``--passfile`` on a parsed command line name."""
    return PasswordSource(
        askpass=getattr(args, "askpass", None), passfile=getattr(args, "passfile", None)
    )


def password_for(spec: VaultSpec, args: argparse.Namespace) -> bytes:
    """read_password() for ``spec`` with the source given on the command line."""
    return read_password(password_source(args), spec)


def describe(spec: VaultSpec, mounted: VaultMount | None = None) -> dict[str, object]:
    """The vault's entry in the --json enforcement report."""
    out: dict[str, object] = {
        "cipherdir": spec.cipherdir,
        "mountpoint": spec.mountpoint,
        "readonly": spec.readonly,
        "backend": "gocryptfs",
        "gocryptfs": spec.gocryptfs,
        "visible_to": "this sandbox's user namespace only (FUSE allow_other, default_permissions)",
        "daemon_root": "private mount namespace: /usr (ro), /dev/null, /proc, CIPHERDIR",
        "lock": spec.lock_path,
    }
    if spec.session:
        out["session"] = spec.session
    if mounted is not None:
        out["daemon_pid"] = mounted.pid
    return out


# ---------------------------------------------------------------------------------------------
# Sandbox side (PID 1, inside the new user, mount and PID namespaces, before pivot_root)


def mount_in_namespace(
    spec: VaultSpec, target: str, password: bytes, *, host_root: str = "/"
) -> VaultMount:
    """Mount the decrypted view of ``spec`` on ``target`` and start gocryptfs for it.

    Call in the sandbox's PID 1, which must have full capabilities in a user namespace of its
    own and a private mount namespace (``/`` made rprivate), before the final pivot_root.
    ``target`` is an existing directory in the current view (inside the future root);
    ``host_root`` is where the host's / is in the current view (``/oldroot`` while a root
    builder keeps the host tree there). Returns once the view answers (the mount root has been
    stat'ed, which also settles its attributes for the first create). On failure raises
    SandboxError and leaves nothing mounted or running.
    """
    password = check_password(password, f"vault {spec.cipherdir}")
    if not os.path.isdir(target):
        raise SandboxError(f"vault {spec.cipherdir}: mountpoint {target} is not a directory")
    cipherdir_here = os.path.realpath(_on_host(host_root, spec.cipherdir))
    if not os.path.isfile(os.path.join(cipherdir_here, CONF_NAME)):
        raise SandboxError(
            f"vault {spec.cipherdir}: not reachable at {cipherdir_here} from the sandbox's "
            f"PID 1 (host_root={host_root!r})"
        )
    real_target = os.path.realpath(target)
    if (real_target + "/").startswith(cipherdir_here + "/"):
        raise SandboxError(
            f"vault {spec.cipherdir}: the mountpoint {target} lies inside the vault's own "
            "ciphertext directory"
        )
    try:
        fuse_fd = os.open(_on_host(host_root, FUSE_DEVICE), os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise SandboxError(
            f"vault {spec.cipherdir}: cannot open {FUSE_DEVICE} ({e.strerror}); it must be "
            "mode 0666"
        ) from None
    options = (
        f"fd={fuse_fd},rootmode=40000,user_id={os.geteuid()},group_id={os.getegid()},"
        "allow_other,default_permissions"
    )
    flags = _MS_NOSUID | _MS_NODEV | (_MS_RDONLY if spec.readonly else 0)
    try:
        _mnt.mount("gocryptfs", real_target, "fuse.gocryptfs", flags, options)
    except KernelError as e:
        os.close(fuse_fd)
        raise SandboxError(
            f"vault {spec.cipherdir}: cannot mount the decrypted view on {spec.mountpoint}: {e}",
            "the sandbox needs its own user and mount namespaces to mount FUSE",
        ) from None

    fds: list[int] = [fuse_fd]
    pid = -1
    log_fd = -1
    try:
        pw_read, pw_write = os.pipe2(os.O_CLOEXEC)
        fds += [pw_read, pw_write]
        # A pipe holds 64 KiB; the password is at most 2 KiB, so this never blocks.
        os.write(pw_write, password + b"\n")
        os.close(pw_write)
        fds.remove(pw_write)
        # gocryptfs' output goes to a memfd: readable on failure, and a later warning can never
        # hit a closed pipe (SIGPIPE would kill gocryptfs and the vault with it).
        log_fd = os.memfd_create("ringfence-gocryptfs", os.MFD_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        fds += [err_read, err_write]
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _child(spec, host_root, real_target, fuse_fd, pw_read, log_fd, err_write, parent)
        for fd in (fuse_fd, pw_read, err_write):
            os.close(fd)
            fds.remove(fd)
        setup_error = read_all(err_read)
        os.close(err_read)
        fds.remove(err_read)
        if setup_error:
            raise SandboxError(
                f"vault {spec.cipherdir}: cannot start gocryptfs: "
                f"{setup_error.decode(errors='replace').strip()}"
            )
        try:
            # Blocks until gocryptfs answers FUSE_INIT and GETATTR; ENOTCONN once it has exited
            # (it held the only fd of the connection).
            os.stat(real_target)
        except OSError as e:
            failure = _mount_failure(spec, pid, log_fd, e)
            pid = -1  # reaped by _mount_failure
            raise failure from None
    except BaseException:
        for fd in fds:
            os.close(fd)
        _abort(pid, real_target)
        if log_fd >= 0:
            os.close(log_fd)
        raise
    return VaultMount(spec=spec, pid=pid, target=real_target, log_fd=log_fd)


def _on_host(host_root: str, path: str) -> str:
    """Where host ``path`` is in the current view."""
    return os.path.join(host_root, path.lstrip("/"))


def _read_log(fd: int) -> str:
    if fd < 0:
        return ""
    try:
        return os.pread(fd, 65536, 0).decode(errors="replace")
    except OSError:
        return ""


def _abort(pid: int, target: str) -> None:
    """Leave nothing behind: stop gocryptfs (if started), drop the mount."""
    if pid > 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    try:
        _mnt.umount(target, _MNT_DETACH)
    except KernelError:
        pass


def _mount_failure(spec: VaultSpec, pid: int, log_fd: int, err: OSError) -> SandboxError:
    try:
        _, raw = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        raw = 0
    code = os.waitstatus_to_exitcode(raw) if raw else None
    if code is None:  # still running yet the view does not answer: stop it first
        os.kill(pid, signal.SIGKILL)
        _, raw = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(raw)
    lines = [ln for ln in _read_log(log_fd).splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else f"no output; the view failed with {err.strerror}"
    if code == EXIT_PASSWORD_INCORRECT:
        return SandboxError(f"vault {spec.cipherdir}: wrong password")
    if code == EXIT_LOAD_CONF:
        return SandboxError(f"vault {spec.cipherdir}: cannot load {CONF_NAME}: {last}")
    how = f"exit status {code}" if code is not None and code >= 0 else f"signal {-(code or 0)}"
    return SandboxError(f"vault {spec.cipherdir}: gocryptfs failed ({how}): {last}")


def _child(
    spec: VaultSpec,
    host_root: str,
    target: str,
    fuse_fd: int,
    pw_fd: int,
    log_fd: int,
    err_fd: int,
    parent: int,
) -> NoReturn:
    """In the fork: build gocryptfs' own mount namespace and exec it. Never returns."""
    try:
        _exec_gocryptfs(spec, host_root, target, fuse_fd, pw_fd, log_fd, err_fd, parent)
    except BaseException as e:  # noqa: BLE001 - report anything, then die
        try:
            os.write(err_fd, str(e).encode(errors="replace") or repr(e).encode())
        finally:
            os._exit(_CHILD_SETUP_FAILED)
    os._exit(_CHILD_SETUP_FAILED)


def _exec_gocryptfs(
    spec: VaultSpec,
    host_root: str,
    target: str,
    fuse_fd: int,
    pw_fd: int,
    log_fd: int,
    err_fd: int,
    parent: int,
) -> None:
    def host(path: str) -> str:
        return _on_host(host_root, path)

    os.setsid()  # no terminal: a ^C meant for the payload must not stop the vault
    _prctl.set_pdeathsig(signal.SIGKILL)  # belt and braces: the PID namespace already does it
    if os.getppid() != parent:
        os._exit(_CHILD_SETUP_FAILED)
    exe_fd = _exec_only_copy(host(spec.gocryptfs))
    # Take clones of what gocryptfs needs while the host view is still reachable by path;
    # the tmpfs below may cover any of these paths.
    _userns.unshare(_userns.CLONE_NEWNS)
    _mnt.make_private_recursive("/")
    clones = [
        (
            "usr",
            _mnt.open_tree_clone(host("/usr")),
            True,
            _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV,
        ),
        ("dev/null", _mnt.open_tree_clone(host("/dev/null"), recursive=False), False, 0),
        (
            spec.cipherdir.lstrip("/"),
            _mnt.open_tree_clone(host(spec.cipherdir)),
            True,
            _MOUNT_ATTR_NOSUID
            | _MOUNT_ATTR_NODEV
            | _MOUNT_ATTR_NOEXEC
            | (_MOUNT_ATTR_RDONLY if spec.readonly else 0),
        ),
    ]
    if not spec.gocryptfs.startswith("/usr/"):
        clones.append(
            (
                spec.gocryptfs.lstrip("/"),
                _mnt.open_tree_clone(host(spec.gocryptfs), recursive=False),
                False,
                _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV,
            )
        )
    links = {n: os.readlink(host(n)) for n in _ROOT_LINKS if os.path.islink(host(n))}
    dirs = [n for n in _ROOT_LINKS if n not in links and os.path.isdir(host(n))]
    for name in dirs:
        clones.append(
            (
                name,
                _mnt.open_tree_clone(host(name)),
                True,
                _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV,
            )
        )

    # The copy of the FUSE mount in this namespace would only keep the connection alive.
    _mnt.umount(target, _MNT_DETACH)
    _mnt.mount(
        "tmpfs",
        target,
        "tmpfs",
        _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
        "mode=0755,size=256k,nr_inodes=256",
    )
    for name, dest in links.items():
        os.symlink(dest, os.path.join(target, name))
    for rel, clone_fd, is_dir, attrs in clones:
        where = os.path.join(target, rel)
        if is_dir:
            os.makedirs(where, 0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(where), 0o755, exist_ok=True)
            os.close(os.open(where, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        if attrs:
            _mnt.set_attrs(clone_fd, attrs, recursive=True)
        dest_fd = os.open(where, os.O_PATH | os.O_CLOEXEC)
        _mnt.move_mount_to_fd(clone_fd, dest_fd)
        os.close(dest_fd)
        os.close(clone_fd)
    # gocryptfs reaches backing files through /proc/self/fd (chmod, utimens, xattrs). This proc
    # belongs to the sandbox's PID namespace: it shows nothing the payload cannot see.
    proc = os.path.join(target, "proc")
    os.mkdir(proc, 0o555)
    proc_flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    try:
        _mnt.mount("proc", proc, "proc", proc_flags, "subset=pid")
    except KernelError:
        try:
            _mnt.mount("proc", proc, "proc", proc_flags, None)
        except KernelError:
            # Not in a PID namespace of our own: show the /proc this process already has.
            clone_fd = _mnt.open_tree_clone(host("/proc"))
            dest_fd = os.open(proc, os.O_PATH | os.O_CLOEXEC)
            _mnt.move_mount_to_fd(clone_fd, dest_fd)
            os.close(dest_fd)
            os.close(clone_fd)

    os.chdir(target)
    _mnt.pivot_root(".", ".")
    _mnt.umount(".", _MNT_DETACH)
    os.chdir("/")
    _mnt.set_attrs_at("/", _MOUNT_ATTR_RDONLY, recursive=False)
    _prctl.set_no_new_privs()
    # No capabilities at exec (and none regained as uid 0): the exec-only copy is then
    # unreadable to us, so the kernel makes gocryptfs non-dumpable.
    _caps.drop_all(_caps.last_cap())

    # fds: 0 = password pipe, 1+2 = log memfd, 3 = /dev/fuse, 4 = vault lock; nothing else.
    wanted = [pw_fd, log_fd, log_fd, fuse_fd]
    if spec.lock_fd >= 0:
        wanted.append(spec.lock_fd)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in wanted]
    err_high = fcntl.fcntl(err_fd, fcntl.F_DUPFD_CLOEXEC, 64)
    exe_high = fcntl.fcntl(exe_fd, fcntl.F_DUPFD_CLOEXEC, 64) if exe_fd >= 0 else -1
    for number, fd in enumerate(high):
        os.dup2(fd, number, inheritable=True)
    _fds.close_all_except({err_high, exe_high}, start=len(wanted))
    argv = [spec.gocryptfs, "-fg"]
    if spec.readonly:
        argv.append("-ro")
    argv += ["--", spec.cipherdir, "/dev/fd/3"]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if exe_high >= 0:
        try:
            os.execve(exe_high, argv, env)
        except OSError as e:
            # vm.memfd_noexec=2 or a noexec shm mount: run it from /usr, dumpable.
            os.write(1, f"ringfence: exec-only copy refused ({e.strerror})\n".encode())
    try:
        os.execve(spec.gocryptfs, argv, env)
    except OSError as e:
        os.write(err_high, f"exec {spec.gocryptfs}: {e.strerror}".encode())
        os._exit(_CHILD_SETUP_FAILED)


def _exec_only_copy(path: str) -> int:
    """A sealed memfd copy of ``path`` with mode 0111, or -1 if memfds cannot do that here.

    Executing a file its caller cannot read makes the new process non-dumpable (fs/exec.c
    would_dump), so a same-uid payload without capabilities cannot ptrace gocryptfs, read its
    memory (the master key) or open /proc/<pid>/{root,fd,mem,environ}.
    """
    try:
        fd = os.memfd_create("gocryptfs", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | _MFD_EXEC)
    except OSError:
        try:  # kernels before 6.3 do not know MFD_EXEC
            fd = os.memfd_create("gocryptfs", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError:
            return -1
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(src).st_size
            offset = 0
            while offset < size:
                sent = os.sendfile(fd, src, offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        finally:
            os.close(src)
        os.fchmod(fd, 0o111)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except OSError:
        os.close(fd)
        return -1
    return fd


# ---------------------------------------------------------------------------------------------
# ringfence vault init


def init_vault(cipherdir: str, source: PasswordSource, *, scryptn: int | None = None) -> str:
    """Create a new gocryptfs vault in ``cipherdir`` (created 0700 if missing, else empty).

    The password is asked twice on a terminal and piped to ``gocryptfs -init``; gocryptfs'
    own output (including the master key, shown only on a terminal) goes to the caller's
    stdout/stderr. ``scryptn`` lowers the key-derivation cost (tests only). Returns the path.
    """
    import subprocess

    path = os.path.abspath(os.path.expanduser(cipherdir))
    gocryptfs = find_gocryptfs()
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise ProfileError(f"vault init {cipherdir}: exists and is not a directory")
        if os.listdir(path):
            raise ProfileError(
                f"vault init {cipherdir}: the directory is not empty; give a new or empty one"
            )
        created = False
    else:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise ProfileError(f"vault init {cipherdir}: parent directory {parent} is missing")
        try:
            os.mkdir(path, 0o700)
        except OSError as e:
            raise ProfileError(f"vault init {cipherdir}: cannot create it ({e.strerror})") from None
        created = True
    try:
        password = _read_password(source, f"New password for vault {path}: ", confirm=True)
        argv = [gocryptfs, "-init"]
        if scryptn is not None:
            argv += ["-scryptn", str(scryptn)]
        argv += ["--", path]
        proc = subprocess.run(argv, input=password + b"\n", check=False)
    except BaseException:
        if created:
            _rmdir_quiet(path)
        raise
    if proc.returncode != 0:
        if created:
            _rmdir_quiet(path)
        raise SandboxError(
            f"vault init {cipherdir}: gocryptfs -init failed (exit status {proc.returncode}); "
            "see its message above"
        )
    return path


def _rmdir_quiet(path: str) -> None:
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except OSError:
        pass
