"""Benchmark joining a named session against a one-shot sandbox.

Not a test: run it by hand, ``python benchmarks/sessions.py [--ringfence PATH] [--runs 100]``.

Starts one session (``ringfence start NAME``, default profile), then times, interleaved
(ABBA...), ``ringfence enter NAME -- /bin/true`` against ``ringfence run -- /bin/true``, with
``python3 -I -S -c pass`` (the interpreter floor both pay) for scale. Each run is started with
posix_spawn and timed with perf_counter_ns up to waitpid; figures are medians. Target (issue
3): enter at most 1.5x the one-shot run. The session is stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from startup import Spawner, Target, entry_interpreter, host_line, interleave, ms, spread  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--ringfence",
        default=shutil.which("ringfence"),
        metavar="PATH",
        help="the ringfence executable to time [ringfence on PATH]",
    )
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.ringfence or not os.access(args.ringfence, os.X_OK):
        ap.error("no ringfence executable: give --ringfence PATH")
    rf = os.path.abspath(args.ringfence)
    python = entry_interpreter(rf)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("PATH", "/usr/bin:/bin")
    name = f"bench-{os.getpid()}"
    spawner = Spawner(env)

    started = subprocess.run(
        [rf, "start", name], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60
    )
    if started.returncode != 0:
        raise SystemExit(f"ringfence start {name}: {started.stderr.decode(errors='replace')}")
    try:
        cmds = {
            "python3 -I -S -c pass": [python, "-I", "-S", "-c", "pass"],
            "ringfence run -- /bin/true": [rf, "run", "--", "/bin/true"],
            f"ringfence enter {name} -- /bin/true": [rf, "enter", name, "--", "/bin/true"],
        }
        for argv in cmds.values():
            spawner.check(argv)
        results = interleave({k: spawner.timer(v) for k, v in cmds.items()}, args.runs, args.warmup)
    finally:
        stopped = subprocess.run(
            [rf, "stop", name], stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60
        )
        if stopped.returncode != 0:
            sys.stderr.write(f"ringfence stop {name}: {stopped.stderr.decode(errors='replace')}")

    medians = {k: ms(v) for k, v in results.items()}
    run_ms = medians["ringfence run -- /bin/true"]
    enter_ms = medians[f"ringfence enter {name} -- /bin/true"]
    py_ms = medians["python3 -I -S -c pass"]
    target = Target("enter / one-shot run", enter_ms / run_ms, "x", 1.5)
    if args.json:
        doc = {
            "host": host_line(),
            "ringfence": rf,
            "runs": args.runs,
            "medians_ms": medians,
            "iqr_ms": {k: spread(v) for k, v in results.items()},
            "beyond_interpreter_ms": {"run": run_ms - py_ms, "enter": enter_ms - py_ms},
            "targets": [{"what": target.what, "value": target.value, "verdict": target.verdict}],
        }
        print(json.dumps(doc, indent=2))
        return
    print(f"ringfence session benchmark: {host_line()}")
    print(f"  ringfence {rf} (interpreter {python})")
    print(f"\n  {f'medians of {args.runs} interleaved runs':52} {'ms':>11} {'p25-p75':>12}")
    for k, v in results.items():
        print(f"  {k:52} {medians[k]:11.2f} {spread(v):>12}")
    print(f"  {'run minus the interpreter floor':52} {run_ms - py_ms:11.2f}")
    print(f"  {'enter minus the interpreter floor':52} {enter_ms - py_ms:11.2f}")
    print(f"\n  {'target':52} {'value':>11} {'limit':>12}  verdict")
    print(target.row())


if __name__ == "__main__":
    main()
