"""Vault throughput: gocryptfs mounted by ringfence inside a sandbox vs mounted directly.

Both sides use the same gocryptfs binary and the same vault. The sandboxed side is the test
harness of tests/integration/test_vault.py (launcher -> user/mount/PID namespaces -> PID 1 that
calls ``mount_in_namespace()`` with the runtime's /oldroot layout, pivots, and forks a payload
without capabilities); the payload does the I/O. The direct side is ``gocryptfs`` run by the same
user on the host (fusermount3), or inside ``unshare -rm`` when fusermount3 is refused.

I/O is dd-like from Python: SIZE MiB written in 1 MiB blocks (timed to close), then read back
(a fresh open: FUSE drops its page cache without keep_cache, so reads reach gocryptfs). Rounds
alternate sandbox/direct; the medians are reported. Mount time is measured too (it is mostly
scrypt: the vault uses -scryptn 10 here so the setup overhead is visible).

    .venv/bin/python benchmarks/vault.py [--size-mb 256] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ringfence.runtime import vault  # noqa: E402
from ringfence.runtime.askpass import PasswordSource  # noqa: E402

PASSWORD = b"benchmark password"
BLOCK = 1 << 20


def _load_harness() -> Any:
    path = ROOT / "tests" / "integration" / "test_vault.py"
    spec = importlib.util.spec_from_file_location("_vault_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def io_worker(directory: str, size_mb: int, name: str) -> Callable[[], dict[str, object]]:
    """A payload: write then read ``size_mb`` MiB in ``directory``; MB/s of each."""

    def work() -> dict[str, object]:
        block = os.urandom(BLOCK)
        path = os.path.join(directory, name)
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for _ in range(size_mb):
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
        os.close(fd)
        t1 = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        total = 0
        while True:
            chunk = os.read(fd, BLOCK)
            if not chunk:
                break
            total += len(chunk)
        os.close(fd)
        t2 = time.perf_counter()
        os.unlink(path)
        assert total == size_mb * BLOCK, total
        return {"write": size_mb / (t1 - t0), "read": size_mb / (t2 - t1)}

    return work


def run_sandboxed(
    harness: Any, cipherdir: Path, work_dir: Path, size_mb: int, i: int
) -> dict[str, Any]:
    root = work_dir / f"root{i}"
    spec = vault.prepare(f"{cipherdir}:{harness.MOUNTPOINT}")
    t0 = time.perf_counter()
    sb = harness.start_sandbox(
        spec, PASSWORD, root, io_worker(harness.MOUNTPOINT, size_mb, f"s{i}"), None
    )
    mounted = sb.next()
    t_mount = time.perf_counter() - t0
    if not mounted.get("mounted"):
        raise SystemExit(f"sandboxed mount failed: {mounted}")
    result = sb.next()
    if sb.wait() != 0 or "payload" not in result:
        raise SystemExit(f"sandboxed run failed: {sb.messages}")
    out = dict(result["payload"])
    out["mount_ms"] = t_mount * 1000
    return out


def run_direct(
    cipherdir: Path, work_dir: Path, passfile: Path, size_mb: int, i: int, how: str = "auto"
) -> dict[str, Any]:
    plain = work_dir / f"plain{i}"
    plain.mkdir()
    gocryptfs = vault.find_gocryptfs()
    t0 = time.perf_counter()
    mount = [
        gocryptfs,
        "-q",
        "-nosyslog",
        "-passfile",
        str(passfile),
        "--",
        str(cipherdir),
        str(plain),
    ]
    # No pipes: the daemonized gocryptfs would keep them open and run() would never return.
    returncode = -1
    if how != "unshare":
        returncode = subprocess.run(
            mount, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        ).returncode
    t_mount = time.perf_counter() - t0
    if returncode == 0:
        try:
            out = io_worker(str(plain), size_mb, f"d{i}")()
        finally:
            subprocess.run(["fusermount3", "-u", str(plain)], check=True)
        out["mount_ms"] = t_mount * 1000
        out["how"] = "fusermount3"
        return out
    # fusermount3 refused: a user namespace where gocryptfs mounts /dev/fuse by itself.
    script = (
        "import json,sys,time,subprocess;"
        f"sys.path.insert(0,{str(ROOT)!r});"
        "from benchmarks.vault import io_worker;"
        f"t=time.perf_counter();subprocess.run({mount!r},check=True,stdout=subprocess.DEVNULL);"
        "m=(time.perf_counter()-t)*1000;"
        f"r=io_worker({str(plain)!r},{size_mb},'d{i}')();r['mount_ms']=m;"
        f"subprocess.run(['umount',{str(plain)!r}]);print(json.dumps(r))"
    )
    proc = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", script], stdout=subprocess.PIPE, check=True
    )
    in_userns: dict[str, Any] = json.loads(proc.stdout)
    in_userns["how"] = "unshare -rm"
    return in_userns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", help="where to put the vault (default: a temp dir in /var/tmp)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--direct",
        choices=("auto", "unshare"),
        default="auto",
        help="baseline: fusermount3 if it works (auto) or always in unshare -rm",
    )
    args = ap.parse_args()

    harness = _load_harness()
    work_dir = Path(tempfile.mkdtemp(prefix="ringfence-vault-bench-", dir=args.dir or "/var/tmp"))
    run_dir = work_dir / "run"
    run_dir.mkdir(mode=0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    try:
        passfile = work_dir / "pw"
        passfile.write_bytes(PASSWORD + b"\n")
        cipherdir = Path(
            vault.init_vault(
                str(work_dir / "crypt"), PasswordSource(passfile=str(passfile)), scryptn=10
            )
        )
        results: dict[str, list[dict[str, Any]]] = {"sandbox": [], "direct": []}
        for i in range(args.rounds):
            results["sandbox"].append(run_sandboxed(harness, cipherdir, work_dir, args.size_mb, i))
            results["direct"].append(
                run_direct(cipherdir, work_dir, passfile, args.size_mb, i, args.direct)
            )
        summary: dict[str, Any] = {"size_mb": args.size_mb, "rounds": args.rounds}
        for side, runs in results.items():
            summary[side] = {
                k: round(statistics.median(float(r[k]) for r in runs), 1)
                for k in ("write", "read", "mount_ms")
            }
            summary[side]["all_write"] = [round(float(r["write"])) for r in runs]
            summary[side]["all_read"] = [round(float(r["read"])) for r in runs]
        summary["direct"]["how"] = results["direct"][0]["how"]
        for k in ("write", "read"):
            summary[f"{k}_ratio"] = round(summary["sandbox"][k] / summary["direct"][k], 3)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(summary))
    else:
        s, d = summary["sandbox"], summary["direct"]
        print(
            f"vault throughput, {args.size_mb} MiB, median of {args.rounds} rounds "
            f"(uid {os.getuid()}, direct via {d['how']})"
        )
        print(
            f"  write  sandbox {s['write']:7.1f} MB/s  direct {d['write']:7.1f} MB/s  "
            f"ratio {summary['write_ratio']:.2f}"
        )
        print(
            f"  read   sandbox {s['read']:7.1f} MB/s  direct {d['read']:7.1f} MB/s  "
            f"ratio {summary['read_ratio']:.2f}"
        )
        print(
            f"  mount  sandbox {s['mount_ms']:7.1f} ms    direct {d['mount_ms']:7.1f} ms "
            "(scryptn 10; sandbox includes namespace setup)"
        )
        print(f"  all write sandbox {s['all_write']} direct {d['all_write']}")
        print(f"  all read  sandbox {s['all_read']} direct {d['all_read']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
