"""The compiled-filter cache must never weaken the filter: a corrupt entry is compiled afresh."""

from __future__ import annotations

import os

from _util import rf


def test_corrupt_cache_entry_is_ignored_and_the_filter_still_applies(tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert rf("run", "--", "true").returncode == 0
    cache = xdg / "ringfence" / "cache"
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("seccomp-")
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    entries[0].write_bytes(b"\xff\xff\xff\xff garbage")
    r = rf(
        "run",
        "--",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; unshare -r true 2>/dev/null && echo ESCAPED; true",
    )
    assert "Seccomp:\t2" in r.stdout
    assert "ESCAPED" not in r.stdout
    assert entries[0].read_bytes() != b"\xff\xff\xff\xff garbage"  # rewritten


def test_cache_in_a_directory_open_to_others_is_not_used(tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    (xdg / "ringfence").mkdir(parents=True)
    os.chmod(xdg / "ringfence", 0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    r = rf("run", "--", "sh", "-c", "grep Seccomp: /proc/self/status")
    assert "Seccomp:\t2" in r.stdout
    assert not (xdg / "ringfence" / "cache").exists() or not any(
        (xdg / "ringfence" / "cache").iterdir()
    )
