"""The user's private runtime directory: ``$XDG_RUNTIME_DIR/ringfence`` (or ``/tmp/ringfence-UID``).

Owns: creating it and its subdirectories 0700 and checking, every time, that each is a real
directory (not a symlink) owned by the caller and not writable by anyone else; anything else is
refused, never repaired, since another user could already have put something in it. Session
state and the compiled-filter cache live here. Must stay import-free (start-up path).
"""

from __future__ import annotations

import os


def private_dir(*parts: str) -> str:
    """The runtime directory (joined with ``parts``), created and checked; OSError if unsafe."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    root = (
        os.path.join(base, "ringfence")
        if base and os.path.isdir(base)
        else (f"/tmp/ringfence-{os.getuid()}")
    )
    path = root
    for part in ("", *parts):
        path = os.path.join(path, part) if part else path
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if (st.st_mode & 0o170000) != 0o040000 or st.st_uid != os.getuid():
            raise OSError(f"{path} is not a directory of yours; remove it and retry")
        if st.st_mode & 0o022:
            raise OSError(f"{path} is writable by other users; remove it and retry")
    return path
