"""Execute a plan's mount operations: build the new root from an empty tmpfs and pivot into it.

Owns: the order and mechanics of building the root (bwrap's pattern: a private base tmpfs,
the host tree reachable only as /oldroot during setup, a fresh tmpfs for the new root, every
destination resolved with RESOLVE_IN_ROOT, pivot_root, detach the old root). Runs in the sandbox's
PID 1 with capabilities in its own user namespace. Must never mount anything outside the new
mount namespace: the whole tree is made private (MS_REC|MS_PRIVATE) before the first mount.
"""

from __future__ import annotations

import os

from ..errors import KernelError, SandboxError
from ..kernel import mount as m
from ..plan import (
    Bind,
    Dev,
    Dir,
    File,
    Inaccessible,
    MountOp,
    Proc,
    Remount,
    Symlink,
    Sysfs,
    Tmpfs,
)

TYPE_CHECKING = False  # collections.abc costs ~1 ms to import on the start-up path
if TYPE_CHECKING:
    from collections.abc import Callable

BASE = "/tmp"  # any existing host directory works: the base tmpfs is mounted on it privately
OLD = "/oldroot"
NEW = "/newroot"

_HIDEPID = {"invisible": "invisible", "noaccess": "noaccess", "ptraceable": "ptraceable"}
# ProtectKernelTunables: what systemd makes read-only under /proc.
_PROC_RO = (
    "sys",
    "sysrq-trigger",
    "latency_stats",
    "acpi",
    "timer_stats",
    "asound",
    "bus",
    "fs",
    "irq",
)
_PROC_HIDDEN = ("kallsyms", "kcore", "kmsg", "timer_list", "sched_debug", "keys", "key-users")
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


class RootBuilder:
    """Builds the sandbox root. Call ``prepare()``, then ``apply(op)`` per op, then ``enter()``."""

    def __init__(self) -> None:
        self.root_fd = -1
        self._files = 0
        # Read-only tmpfs mounts are made read-only only at the end, so that mountpoints for
        # later operations can still be created in them.
        self._readonly_later: list[str] = []

    def prepare(self) -> None:
        m.make_private_recursive("/")
        m.mount("tmpfs", BASE, "tmpfs", m.MS_NOSUID | m.MS_NODEV, "mode=0755")
        os.chdir(BASE)
        os.mkdir("oldroot")
        os.mkdir("newroot")
        os.mkdir("files", 0o700)
        m.pivot_root(BASE, BASE + OLD)
        os.chdir("/")
        m.mount("tmpfs", NEW, "tmpfs", m.MS_NOSUID | m.MS_NODEV, "mode=0755")
        self.root_fd = os.open(NEW, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def host(self, path: str) -> str:
        """Where a host path is reachable during setup."""
        return OLD + path

    def target(self, path: str) -> str:
        """The current path of a sandbox path during setup (for tools that need a path)."""
        return NEW + path

    # ------------------------------------------------------------------------------------
    def apply(self, op: MountOp) -> None:
        handler: Callable[[MountOp], None] = getattr(self, "_" + type(op).__name__.lower())
        try:
            handler(op)
        except KernelError as e:
            raise SandboxError(f"{_what(op)}: {e.message}") from None
        except OSError as e:
            raise SandboxError(f"{_what(op)}: {e.strerror}") from None

    def _attach(self, mount_fd: int, dest: str, is_dir: bool = True) -> None:
        try:
            m.attach_in_root(mount_fd, self.root_fd, dest, is_dir)
        finally:
            os.close(mount_fd)

    def _tmpfs(self, op: MountOp) -> None:
        assert isinstance(op, Tmpfs)
        opts = {"mode": format(op.mode, "o")}
        if op.size:
            opts["size"] = op.size
        attrs = m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV
        self._attach(m.new_fs("tmpfs", opts, attrs), op.dest)
        if op.readonly:
            self._readonly_later.append(op.dest)

    def _bind(self, op: MountOp) -> None:
        assert isinstance(op, Bind)
        if op.identity is not None:
            self._bind_file(op, op.identity)
            return
        src = self.host(op.src)
        try:
            is_dir = os.path.isdir(src) if os.path.exists(src) else _raise_missing(op.src)
        except OSError as e:
            raise SandboxError(
                f"bind {op.src}: {e.strerror} (as seen by the sandbox's user)"
            ) from None
        tree = m.open_tree_clone(src, recursive=is_dir)
        attrs = m.MOUNT_ATTR_NOSUID
        if not op.device:
            attrs |= m.MOUNT_ATTR_NODEV
        if op.readonly:
            attrs |= m.MOUNT_ATTR_RDONLY
        try:
            m.set_attrs(tree, attrs, recursive=True)
        except BaseException:
            os.close(tree)
            raise
        self._attach(tree, op.dest, is_dir)

    def _bind_file(self, op: Bind, identity: tuple[int, int, int]) -> None:
        """Bind the regular file the plan saw, and only it: no symlink on the way (the planned
        path is a real path) and the same inode, or the launch fails. Between planning and
        this point anyone who can write the file's directory could have swapped it for a link
        to something else (a directory of secrets, say)."""
        import stat

        try:
            fd = m.openat2(
                m.AT_FDCWD,
                self.host(op.src),
                os.O_PATH | os.O_CLOEXEC,
                m.RESOLVE_NO_SYMLINKS | m.RESOLVE_NO_MAGICLINKS,
            )
        except KernelError as e:
            raise SandboxError(
                f"{op.why}: {op.src} changed since the plan was made "
                f"({os.strerror(e.errno)}); not binding it"
            ) from None
        try:
            st = os.fstat(fd)
            seen = (st.st_dev, st.st_ino, st.st_ctime_ns)  # ctime: a reused inode number
            if not stat.S_ISREG(st.st_mode) or seen != identity:
                raise SandboxError(
                    f"{op.why}: {op.src} was replaced since the plan was made; not binding it"
                )
            tree = m.open_tree_clone("", recursive=False, dirfd=fd)
        finally:
            os.close(fd)
        try:
            readonly = m.MOUNT_ATTR_RDONLY if op.readonly else 0
            m.set_attrs(tree, m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV | readonly)
        except BaseException:
            os.close(tree)
            raise
        self._attach(tree, op.dest, False)

    def _remount(self, op: MountOp) -> None:
        assert isinstance(op, Remount)
        try:
            fd = m.open_in_root(self.root_fd, op.dest)
        except KernelError as e:
            if e.errno == 2 and op.optional:
                return
            raise SandboxError(
                f"{op.why or 'remount'}: {op.dest} does not exist in the sandbox "
                "(prefix it with '-' to make it optional)"
            ) from None
        try:
            tree = m.open_tree_clone("", True, dirfd=fd)
            m.set_attrs(
                tree,
                m.MOUNT_ATTR_RDONLY if op.readonly else 0,
                0 if op.readonly else m.MOUNT_ATTR_RDONLY,
            )
            try:
                m.move_mount_to_fd(tree, fd)
            finally:
                os.close(tree)
        finally:
            os.close(fd)

    def _proc(self, op: MountOp) -> None:
        assert isinstance(op, Proc)
        opts: dict[str, str] = {}
        if op.hidepid in _HIDEPID:
            opts["hidepid"] = _HIDEPID[op.hidepid]
        if op.subset:
            opts["subset"] = op.subset
        attrs = m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV | m.MOUNT_ATTR_NOEXEC
        self._attach(m.new_fs("proc", opts, attrs), op.dest)
        if op.protect_tunables and not op.subset:
            for sub in _PROC_RO:
                self._remount(Remount(f"{op.dest}/{sub}", readonly=True, optional=True))
            # Kernel addresses and memory: hidden behind empty, unreadable files.
            for name in _PROC_HIDDEN:
                if os.path.exists(f"{NEW}{op.dest}/{name}"):
                    self._file(File(f"{op.dest}/{name}", b"", 0))

    def _dev(self, op: MountOp) -> None:
        assert isinstance(op, Dev)
        d = op.dest
        self._tmpfs(Tmpfs(d, mode=0o755))
        for name in _DEVICES:
            if os.path.exists(self.host("/dev/" + name)):
                self._bind(Bind("/dev/" + name, f"{d}/{name}", readonly=False, device=True))
        self._attach(
            m.new_fs(
                "devpts",
                {"newinstance": "", "ptmxmode": "0666", "mode": "0620"},
                m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NOEXEC,
            ),
            f"{d}/pts",
        )
        self._tmpfs(Tmpfs(f"{d}/shm", mode=0o1777))
        for link, target in (
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ):
            self._symlink(Symlink(target, f"{d}/{link}"))

    def _sysfs(self, op: MountOp) -> None:
        assert isinstance(op, Sysfs)
        if op.from_host:
            self._bind(Bind("/sys", op.dest, readonly=True))
            return
        attrs = m.MOUNT_ATTR_RDONLY | m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV | m.MOUNT_ATTR_NOEXEC
        self._attach(m.new_fs("sysfs", {}, attrs), op.dest)

    def _symlink(self, op: MountOp) -> None:
        assert isinstance(op, Symlink)
        parent, _, leaf = op.dest.rstrip("/").rpartition("/")
        pfd = m.ensure_dir_in_root(self.root_fd, parent or "/")
        try:
            try:
                os.symlink(op.target, leaf, dir_fd=pfd)
            except FileExistsError:
                try:
                    same = os.readlink(leaf, dir_fd=pfd) == op.target
                except OSError:
                    same = False
                if not same:
                    raise SandboxError(
                        f"symlink {op.dest}: something else already exists there"
                    ) from None
        finally:
            os.close(pfd)

    def _file(self, op: MountOp) -> None:
        assert isinstance(op, File)
        self._files += 1
        path = f"/files/{self._files}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, op.mode)
        try:
            os.write(fd, op.content)
            os.fchmod(fd, op.mode)
        finally:
            os.close(fd)
        tree = m.open_tree_clone(path, recursive=False)
        m.set_attrs(tree, m.MOUNT_ATTR_RDONLY | m.MOUNT_ATTR_NOSUID | m.MOUNT_ATTR_NODEV)
        self._attach(tree, op.dest, is_dir=False)

    def _dir(self, op: MountOp) -> None:
        assert isinstance(op, Dir)
        os.close(m.ensure_dir_in_root(self.root_fd, op.dest, op.mode))

    def _inaccessible(self, op: MountOp) -> None:
        assert isinstance(op, Inaccessible)
        if op.is_dir:
            self._tmpfs(Tmpfs(op.dest, mode=0, readonly=True))
        else:
            self._file(File(op.dest, b"", 0))

    # ------------------------------------------------------------------------------------
    def enter(self) -> None:
        """Make the new root read-only at its top, pivot into it and drop the host tree."""
        for dest in reversed(self._readonly_later):
            fd = m.open_in_root(self.root_fd, dest)
            try:
                m.set_attrs(fd, m.MOUNT_ATTR_RDONLY, recursive=False)
            finally:
                os.close(fd)
        os.close(self.root_fd)
        m.set_attrs_at(NEW, m.MOUNT_ATTR_RDONLY, recursive=False)
        m.mount(None, OLD, None, m.MS_REC | m.MS_PRIVATE)
        m.umount(OLD, m.MNT_DETACH)
        os.chdir(NEW)
        m.pivot_root(".", ".")
        m.umount(".", m.MNT_DETACH)
        os.chdir("/")


def _raise_missing(path: str) -> bool:
    raise SandboxError(f"bind {path}: it does not exist or the sandbox's user cannot reach it")


def _what(op: MountOp) -> str:
    kind = type(op).__name__.lower()
    src = getattr(op, "src", None)
    why = f" [{op.why}]" if op.why else ""
    return f"{kind} {src + ' -> ' if src else ''}{op.dest}{why}"
