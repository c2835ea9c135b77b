"""Mounts: the classic mount(2) calls and the new mount API, plus safe path resolution.

Owns: mount/umount2/pivot_root, open_tree/move_mount/fsopen/fsconfig/fsmount/mount_setattr,
and openat2(RESOLVE_IN_ROOT) so that a destination inside the new root can never resolve to a
place outside it. Must never decide what is mounted where (the plan does).
"""

from __future__ import annotations

import ctypes
import os

from ..errors import KernelError
from ._syscall import check, libc, syscall

# linux/mount.h (classic flags)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

# linux/mount.h (new mount API)
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 0x01
MOUNT_ATTR_NOSUID = 0x02
MOUNT_ATTR_NODEV = 0x04
MOUNT_ATTR_NOEXEC = 0x08
MOUNT_ATTR_NOSYMFOLLOW = 0x00200000

# linux/fcntl.h
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

# linux/openat2.h
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    r = libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    check(r, "mount", target)


def umount(target: str, flags: int = 0) -> None:
    check(libc.umount2(_b(target), flags), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    syscall("pivot_root", new_root, put_old, detail=new_root)


def make_private_recursive(path: str = "/") -> None:
    mount(None, path, None, MS_REC | MS_PRIVATE)


def open_tree_clone(path: str, recursive: bool = True, dirfd: int = AT_FDCWD) -> int:
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    if not path:
        flags |= AT_EMPTY_PATH
    return syscall("open_tree", dirfd, path, flags, detail=path)


def set_attrs(mount_fd: int, attr_set: int, attr_clr: int = 0, recursive: bool = True) -> None:
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    syscall(
        "mount_setattr",
        mount_fd,
        "",
        flags,
        ctypes.byref(attr),
        ctypes.sizeof(attr),
        detail="fd",
    )


def set_attrs_at(path: str, attr_set: int, attr_clr: int = 0, recursive: bool = True) -> None:
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    syscall(
        "mount_setattr",
        AT_FDCWD,
        path,
        flags,
        ctypes.byref(attr),
        ctypes.sizeof(attr),
        detail=path,
    )


def move_mount_to_fd(mount_fd: int, target_fd: int) -> None:
    syscall(
        "move_mount",
        mount_fd,
        "",
        target_fd,
        "",
        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
    )


def new_fs(fstype: str, options: dict[str, str] | None = None, attrs: int = 0) -> int:
    """fsopen + fsconfig + fsmount: a detached mount of a fresh filesystem; returns its fd."""
    fs_fd = syscall("fsopen", fstype, FSOPEN_CLOEXEC, detail=fstype)
    try:
        for key, value in (options or {}).items():
            try:
                if value == "":
                    syscall("fsconfig", fs_fd, FSCONFIG_SET_FLAG, key, None, 0)
                else:
                    syscall("fsconfig", fs_fd, FSCONFIG_SET_STRING, key, value, 0)
            except KernelError as e:
                raise KernelError("fsconfig", e.errno, f"{fstype} {key}={value}") from None
        syscall("fsconfig", fs_fd, FSCONFIG_CMD_CREATE, None, None, 0, detail=fstype)
        return syscall("fsmount", fs_fd, FSMOUNT_CLOEXEC, attrs, detail=fstype)
    finally:
        os.close(fs_fd)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return syscall("openat2", dirfd, path, ctypes.byref(how), ctypes.sizeof(how), detail=path)


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open ``path`` as if ``root_fd`` were /: symlinks and '..' cannot leave the root."""
    return openat2(root_fd, path.lstrip("/") or ".", flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def ensure_dir_in_root(root_fd: int, path: str, mode: int = 0o755) -> int:
    """mkdir -p inside the root; return an O_PATH fd of the final directory.

    Every prefix is resolved from the root with RESOLVE_IN_ROOT, so a symlink met on the way
    (placed there by an earlier bind) is followed as if the sandbox root were /.
    """
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise KernelError("mkdir", 22, path, "'..' is not allowed in a sandbox path")
    dir_flags = os.O_PATH | os.O_DIRECTORY
    for i in range(len(parts), 0, -1):  # find the deepest prefix that exists
        try:
            fd = open_in_root(root_fd, "/".join(parts[:i]), dir_flags)
            break
        except KernelError as e:
            if e.errno != 2:  # ENOENT
                raise
    else:
        i, fd = 0, os.dup(root_fd)
    try:
        for part in parts[i:]:
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                pass
            nfd = openat2(fd, part, dir_flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def ensure_file_in_root(root_fd: int, path: str) -> int:
    """Create an empty file (and parents) inside the root; return an O_PATH fd of it."""
    parent, _, leaf = path.rstrip("/").rpartition("/")
    if not leaf or leaf in (".", ".."):
        raise KernelError("open", 22, path, "not a file path")
    pfd = ensure_dir_in_root(root_fd, parent or "/")
    try:
        try:
            return openat2(pfd, leaf, os.O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except KernelError as e:
            if e.errno != 2:
                raise
        fd = os.open(
            leaf,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o644,
            dir_fd=pfd,
        )
        os.close(fd)
        return openat2(pfd, leaf, os.O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(pfd)


def attach_in_root(mount_fd: int, root_fd: int, dest: str, is_dir: bool) -> None:
    """Move a detached mount onto ``dest`` inside the root, creating the mountpoint (a directory
    or an empty file) there first. The caller keeps ownership of ``mount_fd``."""
    target = (ensure_dir_in_root if is_dir else ensure_file_in_root)(root_fd, dest)
    try:
        move_mount_to_fd(mount_fd, target)
    finally:
        os.close(target)
