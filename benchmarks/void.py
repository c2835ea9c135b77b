"""Void start-up per message: how many messages per second the gzip example sustains.

The gzip example (examples/gzip/spec.toml) starts one fresh void per line of stdin, each
running the system gzip on that line. The benchmark runs the real CLI twice per round, with
SMALL and LARGE lines of input, and reports (LARGE - SMALL) / (time difference): the steady
per-message rate, without the orchestrator's own start-up (interpreter, spec, ELF closures).
The same is measured with ``parallel = 2`` (a copy of the spec), and, for scale, the same
messages compressed by a plain fork/exec of gzip per message and by bubblewrap per message
(``bwrap --unshare-all`` with gzip's directories bound read-only), when bwrap is installed.

    .venv/bin/python benchmarks/void.py [--small 20] [--large 300] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "gzip" / "spec.toml"


def lines(n: int) -> bytes:
    return b"".join(
        b"message %d: the quick brown fox jumps over the lazy dog\n" % i for i in range(n)
    )


def run_void(spec: Path, n: int) -> float:
    data = lines(n)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "ringfence", "void", str(spec)],
        input=data,
        capture_output=True,
        cwd=ROOT,
        timeout=600,
    )
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"void run failed ({r.returncode}): {r.stderr.decode()[-500:]}")
    import gzip

    if gzip.decompress(r.stdout) != data:
        raise SystemExit("void run: the output does not decompress to the input")
    return elapsed


def per_message(cmd: list[str], n: int) -> float:
    t0 = time.perf_counter()
    for line in lines(n).splitlines(keepends=True):
        subprocess.run(cmd, input=line, capture_output=True, check=True)
    return time.perf_counter() - t0


def rate(measure: Callable[[int], float], small: int, large: int, rounds: int) -> dict[str, float]:
    rates = []
    fixed = []
    for _ in range(rounds):
        t_small = measure(small)
        t_large = measure(large)
        per = (t_large - t_small) / (large - small)
        rates.append(1 / per)
        fixed.append(t_small - small * per)
    return {
        "messages_per_second": statistics.median(rates),
        "ms_per_message": 1000 / statistics.median(rates),
        "fixed_ms": 1000 * statistics.median(fixed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=20)
    ap.add_argument("--large", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.large <= args.small:
        ap.error("--large must be more than --small")

    results: dict[str, dict[str, float]] = {}
    results["void (parallel = 1, the example)"] = rate(
        lambda n: run_void(SPEC, n), args.small, args.large, args.rounds
    )
    with tempfile.TemporaryDirectory(prefix="rf-bench-void-") as tmp:
        spec2 = Path(tmp) / "spec.toml"
        spec2.write_text(
            SPEC.read_text().replace(
                'trigger = "pipe lines"', 'trigger = "pipe lines"\nparallel = 2'
            )
        )
        os.chmod(tmp, 0o755)
        results["void (parallel = 2)"] = rate(
            lambda n: run_void(spec2, n), args.small, args.large, args.rounds
        )
    gzip_bin = shutil.which("gzip") or "/usr/bin/gzip"
    results["plain gzip, fork/exec per message"] = rate(
        lambda n: per_message([gzip_bin, "-c"], n), args.small, args.large, args.rounds
    )
    if shutil.which("bwrap"):
        bwrap = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                 "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                 "--symlink", "usr/bin", "/bin", gzip_bin, "-c"]  # fmt: skip
        results["bwrap --unshare-all per message"] = rate(
            lambda n: per_message(bwrap, n), args.small, args.large, args.rounds
        )

    if args.json:
        print(json.dumps({"small": args.small, "large": args.large, "rounds": args.rounds,
                          "results": results}, indent=2))  # fmt: skip
        return
    print(f"gzip example, {args.large} - {args.small} messages, median of {args.rounds} rounds")
    print(f"{'':38} {'msg/s':>8} {'ms/msg':>8} {'fixed ms':>9}")
    for name, r in results.items():
        print(f"{name:38} {r['messages_per_second']:8.1f} {r['ms_per_message']:8.2f} "
              f"{r['fixed_ms']:9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
