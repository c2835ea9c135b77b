"""The user's private runtime directory: ``$XDG_RUNTIME_DIR/ringfence`` (or ``/tmp/ringfence-UID``).

Owns: choosing it, creating it and its subdirectories 0700, and checking, every time, that each
is a real directory (not a symlink) owned by the caller and not writable by anyone else; anything
else is refused, never repaired, since another user could already have put something in it.
Session state, vault locks and the compiled-filter cache live here. Must stay import-free (it is
on the start-up path).
"""

from __future__ import annotations

import os


def _owned(path: str, bad_bits: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    is_dir = (st.st_mode & 0o170000) == 0o040000
    return is_dir and st.st_uid == os.geteuid() and not st.st_mode & bad_bits


TMP = "/tmp"


def root() -> str:
    """$XDG_RUNTIME_DIR/ringfence when XDG_RUNTIME_DIR is an absolute directory of ours that no
    one else can write, else /tmp/ringfence-UID. Not created here.

    Anyone can create /tmp/ringfence-UID before us. When that name is taken by something that
    is not a private directory of ours, ~/.cache/ringfence-runtime is used instead (when the
    home directory is ours), so another user cannot lock us out of sessions and vaults."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and xdg.startswith("/") and _owned(xdg, 0o022):
        return os.path.join(xdg, "ringfence")
    shared = f"{TMP}/ringfence-{outer_uid()}"
    if not os.path.lexists(shared) or _owned(shared, 0o022):
        return shared
    home = os.environ.get("HOME", "")
    if home.startswith("/") and _owned(home, 0o022):
        cache = os.path.join(home, ".cache")
        if not os.path.lexists(cache) or _owned(cache, 0o022):
            return os.path.join(cache, "ringfence-runtime")
    return shared  # private_dir() refuses it with a message naming it


def outer_uid() -> int:
    """Our effective uid as the parent user namespace sees it. In a user namespace where we are
    mapped to 0 (a test harness, `unshare -r`), geteuid() says 0: naming /tmp's directory after
    it would take root's name, squat it and lock root out of its own sessions."""
    euid = os.geteuid()
    try:
        with open("/proc/self/uid_map", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return euid
    for line in lines:
        fields = line.split()
        if len(fields) == 3:
            inside, outside, count = (int(x) for x in fields)
            if inside <= euid < inside + count:
                return outside + euid - inside
    return euid


def private_dir(*parts: str, strict_leaf: bool = False) -> str:
    """The runtime directory joined with ``parts``, each level created 0700 and checked; with
    ``strict_leaf`` the last one may not even be readable by others. OSError if unsafe."""
    path = root()
    parent = os.path.dirname(path)
    if not os.path.lexists(parent):  # ~/.cache, for the fallback of root()
        os.makedirs(parent, mode=0o700, exist_ok=True)
    levels = [path]
    for part in parts:
        path = os.path.join(path, part)
        levels.append(path)
    for i, level in enumerate(levels):
        try:
            os.mkdir(level, 0o700)
        except FileExistsError:
            pass
        strict = strict_leaf and i == len(levels) - 1
        if not _owned(level, 0o077 if strict else 0o022):
            mode = "0700" if strict else "not writable by others"
            raise OSError(
                f"{level} is not a private directory of uid {os.geteuid()} (it must be a real "
                f"directory owned by you, {mode}); remove it and try again"
            )
    return path
