"""Shared test fixtures.

Integration tests launch real sandboxes. They are meant to run as an unprivileged user (CI
runs them as ``rftest``); run as root, ringfence drops the payload to an unprivileged uid.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def unprivileged() -> None:
    if os.geteuid() == 0:
        pytest.skip("this test must run as an unprivileged user (CI runs it as rftest)")


@pytest.fixture
def world_tmp():  # type: ignore[no-untyped-def]
    """A temp dir the sandbox's user can reach (as root, the payload runs as nobody)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="rf-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- After the whole suite: nothing of ringfence's may be left on the host --------------------

_MACHINERY = {
    "rf-init",
    "Xvfb",
    "Xephyr",
    "rf-pool",
    "rf-stager",
    "gocryptfs",
    "memfd:gocryptfs",
    "slirp4netns",
    "pasta",
    "passt",
    "passt.avx2",
    "pasta.avx2",
}
_before: dict[str, object] = {}


def _our_leftovers() -> list[str]:
    uids = {os.getuid(), 65534}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            owner = os.stat(f"/proc/{entry}").st_uid
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(") ", 1)[1][0]
        except OSError:
            continue
        if comm in _MACHINERY and owner in uids and state != "Z":
            found.append(f"process {entry} ({comm})")
    return found


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def _is_runtime_dir(name: str) -> bool:
    return name.startswith("ringfence-") and name[len("ringfence-") :].isdigit()


def _registered_sessions() -> set[str]:
    found = set()
    for name in os.listdir("/tmp"):
        if _is_runtime_dir(name):
            try:
                found |= {f"/tmp/{name}/sessions/{s}" for s in os.listdir(f"/tmp/{name}/sessions")}
            except OSError:
                pass
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    _before["sessions"] = _registered_sessions()
    _before["mounts"] = _mounts()
    _before["procs"] = set(_our_leftovers())
    _before["tmp"] = set(os.listdir("/tmp"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import time

    if not _before or session.config.option.collectonly:
        return
    deadline = time.monotonic() + 10
    while True:
        procs = set(_our_leftovers()) - _before["procs"]  # type: ignore[operator]
        mounts = _mounts() - _before["mounts"]  # type: ignore[operator]
        # /tmp/ringfence-UID is the per-user runtime directory (no XDG_RUNTIME_DIR): it stays,
        # with its filter cache; a session still registered in it is a leftover.
        tmp = {
            n
            for n in set(os.listdir("/tmp")) - _before["tmp"]  # type: ignore[operator]
            if n.startswith(("rf-", "ringfence")) and not _is_runtime_dir(n)
        }
        tmp |= _registered_sessions() - _before["sessions"]  # type: ignore[operator]
        if not (procs or mounts or tmp) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if procs or mounts or tmp:
        sys.stderr.write(
            "\nringfence left things behind after the suite:\n"
            + "".join(f"  {item}\n" for item in sorted([*procs, *mounts, *tmp]))
        )
        session.exitstatus = 1
