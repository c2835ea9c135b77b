"""Benchmark ringfence's start-up, memory and seccomp cost against bubblewrap, side by side.

Not a test: run it by hand (same user as the one you care about; root and a normal user give
different figures), e.g. ``python benchmarks/startup.py [--ringfence PATH] [--runs 100]``.

What it measures, every variant interleaved in one run (the order alternates each round, so
drift and background load hit all of them alike); each figure is a median:

- CLI one-shot: ``/bin/true`` through ``ringfence run`` (default profile, strict) and through
  the equivalent ``bwrap --unshare-all --die-with-parent --new-session ...`` (ro /usr and /etc,
  the /bin /lib /lib64 /sbin symlinks, /proc, /dev, tmpfs /tmp and /run, cleared environment),
  plus ``/bin/true`` alone and ``python3 -I -S -c pass`` (the interpreter's floor: the
  interpreter ringfence's entry script uses). Each is started with posix_spawn and timed with
  perf_counter_ns up to waitpid.
- Python API: ``ringfence.run(["/bin/true"])`` and ``Sandbox.run`` (in-process fork, no new
  interpreter) against ``subprocess.run(["bwrap", ...])``.
- Layers: the same with seccomp and Landlock off (a TOML profile), CLI and API.
- Memory: PSS (``/proc/PID/smaps_rollup``) of ringfence's own processes while the sandbox runs
  ``sleep``: the launcher and its descendants except the payload; bwrap's two processes alike.
- seccomp on a syscall-heavy workload: 10^6 ``getppid`` in a small C program (compiled now with
  gcc; without gcc, a Python loop), timed by the program itself, inside vs outside.

Targets (issues 3 and 4) are printed as PASS/MISS. Nothing is left behind: temp files are
removed and every sandbox is waited for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# --- what is compared ------------------------------------------------------------------------


def bwrap_argv(bwrap: str, command: Sequence[str]) -> list[str]:
    """bubblewrap configured like ringfence's default profile, as far as bwrap can express it."""
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
    argv += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    argv += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/"]
    argv += ["--setenv", "LANG", "C.UTF-8", "--setenv", "TERM", "dumb"]
    return [*argv, *command]


def entry_interpreter(ringfence: str) -> str:
    """The interpreter bin/ringfence re-executes itself with (see its first line)."""
    sibling = os.path.join(os.path.dirname(ringfence), "python3")
    return sibling if os.access(sibling, os.X_OK) else "/usr/bin/python3"


def entry_takes_site_path(rf: str, python: str) -> bool:
    """Whether bin/ringfence falls back to site.main() (slow) to find the package."""
    r = subprocess.run(
        [python, "-I", "-S", "-X", "importtime", rf, "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    return any(line.rstrip().endswith("| site") for line in r.stderr.decode().splitlines())


def direct_entry(python: str) -> list[str] | None:
    """``python -I -S -c ...`` importing ringfence.cli from where site would find it: what
    the entry script costs without its site fallback."""
    r = subprocess.run(
        [
            python,
            "-c",
            "import os, ringfence; print(os.path.dirname(os.path.dirname(ringfence.__file__)))",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    if r.returncode != 0:
        return None
    where = r.stdout.decode().strip()
    code = f"import sys; sys.path.append({where!r}); from ringfence.cli import entry; entry()"
    return [python, "-I", "-S", "-c", code]


def import_ringfence() -> object:
    try:
        import ringfence
    except ImportError:
        sys.path.insert(0, str(REPO))
        import ringfence
    return ringfence


# --- a profile with seccomp and Landlock off --------------------------------------------------

_SECCOMP_OFF: dict[str, object] = {
    "SystemCallFilter": [""],
    "RestrictAddressFamilies": [""],
    "SystemCallArchitectures": [""],
    "RestrictNamespaces": False,
    "LockPersonality": False,
    "MemoryDenyWriteExecute": False,
    "RestrictRealtime": False,
    "RestrictSUIDSGID": False,
    "BlockTerminalInjection": False,
    "DenyUnknownSystemCalls": False,
}


def _toml(keys: dict[str, object]) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} as TOML")

    return "".join(f"{k} = {value(v)}\n" for k, v in keys.items())


def _layers_of(path: str) -> tuple[bool, bool]:
    """(seccomp filters installed, Landlock applied) for the profile at ``path``."""
    from ringfence.kernel import seccomp
    from ringfence.profile.loader import load_profile

    p = load_profile(path)
    sc = p.seccomp is not None and bool(
        seccomp._plan(p.seccomp).filters or p.seccomp.deny_unknown_syscalls
    )
    return sc, p.landlock is not None


def layer_profiles(tmp: str) -> tuple[dict[str, str], list[str]]:
    """Write strict with seccomp, Landlock, or both off; return ({variant: path}, notes).

    First the natural way, extending strict and switching the layer off (a list key whose
    first entry is "" is reset); if the loader refuses that, a standalone copy of strict's
    other keys."""
    from ringfence.errors import RingfenceError
    from ringfence.profile.builtin import BUILTIN
    from ringfence.profile.loader import LANDLOCK_KEYS, SECCOMP_KEYS

    landlock_off: dict[str, object] = {"Landlock": "off", "LandlockScopes": [""]}
    variants: dict[str, tuple[dict[str, object], set[str]]] = {
        "layers off": ({**_SECCOMP_OFF, **landlock_off}, {*SECCOMP_KEYS, *LANDLOCK_KEYS}),
        "seccomp off": (_SECCOMP_OFF, set(SECCOMP_KEYS)),
        "Landlock off": (landlock_off, set(LANDLOCK_KEYS)),
    }
    paths: dict[str, str] = {}
    notes: list[str] = []
    for name, (keys, drop) in variants.items():
        want = ("SystemCallFilter" not in drop, "Landlock" not in drop)  # (seccomp, Landlock)
        base = os.path.join(tmp, name.replace(" ", "-"))
        with open(base + ".toml", "w") as f:
            f.write('Extends = "strict"\n' + _toml(keys))
        try:
            if _layers_of(base + ".toml") == want:
                paths[name] = base + ".toml"
                continue
            notes.append(f"{name}: extending strict left a layer on; using a standalone profile")
        except RingfenceError as e:
            notes.append(
                f"{name}: cannot be expressed by extending strict ({e}); using a standalone "
                "copy of strict's other keys"
            )
        with open(base + "-standalone.toml", "w") as f:
            f.write(_toml({k: v for k, v in BUILTIN["strict"].items() if k not in drop}))
        if _layers_of(base + "-standalone.toml") != want:
            raise SystemExit(f"could not build a profile with {name}")
        paths[name] = base + "-standalone.toml"
    # The "on" side of a CLI comparison must read a TOML file too (tomllib costs milliseconds).
    paths["strict (TOML)"] = os.path.join(tmp, "strict.toml")
    with open(paths["strict (TOML)"], "w") as f:
        f.write('Extends = "strict"\n')
    if not notes:
        notes.append(
            "layers off = Extends strict + SystemCallFilter=[''] (and the other seccomp keys "
            "reset or false), Landlock='off', LandlockScopes=['']"
        )
    return paths, notes


def verify_layers(rf: str, off: str, env: dict[str, str]) -> str:
    """What the kernel says inside each profile: the Seccomp mode (2: filtered)."""
    seen = []
    for name, extra in (("strict", []), ("layers off", ["--profile", off])):
        r = subprocess.run(
            [rf, "run", *extra, "--", "grep", "^Seccomp:", "/proc/self/status"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=60,
        )
        seen.append(f"{name}: {r.stdout.decode().split()[-1] if r.returncode == 0 else '?'}")
    return "Seccomp mode seen inside (2 = filter, 0 = none): " + ", ".join(seen)


# --- timing ---------------------------------------------------------------------------------


class Spawner:
    """posix_spawn + waitpid, timed; stdio on /dev/null (no pty: stdin is not a terminal)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.actions = [(os.POSIX_SPAWN_DUP2, self.devnull, fd) for fd in (0, 1, 2)]

    def check(self, argv: Sequence[str]) -> None:
        """Run once with stderr captured; stop with its message if it fails."""
        r = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, env=self.env, timeout=60
        )
        if r.returncode != 0:
            raise SystemExit(
                f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode(errors='replace')}"
            )

    def timer(self, argv: Sequence[str]) -> Callable[[], int]:
        args = list(argv)

        def once() -> int:
            t0 = time.perf_counter_ns()
            pid = os.posix_spawn(args[0], args, self.env, file_actions=self.actions)
            _, status = os.waitpid(pid, 0)
            t1 = time.perf_counter_ns()
            if status != 0:
                raise SystemExit(f"{' '.join(args)}: wait status {status}")
            return t1 - t0

        return once


def interleave(
    variants: dict[str, Callable[[], int]], runs: int, warmup: int
) -> dict[str, list[int]]:
    """Run each variant ``runs`` times in rounds (ABC CBA ABC ...); times in ns."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    out: dict[str, list[int]] = {name: [] for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            out[name].append(variants[name]())
    return out


def ms(samples: Sequence[int]) -> float:
    return statistics.median(samples) / 1e6


def spread(samples: Sequence[int]) -> str:
    q = statistics.quantiles(samples, n=4)
    return f"{q[0] / 1e6:.2f}-{q[2] / 1e6:.2f}"


# --- memory -----------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _tree(root: int, payload: str) -> tuple[list[int], list[int]]:
    """(processes of the tree that are not the payload, the payload's processes)."""
    ours: list[int] = []
    theirs: list[int] = []
    stack = [(root, False)]
    while stack:
        pid, inside = stack.pop()
        inside = inside or _comm(pid) == payload
        (theirs if inside else ours).append(pid)
        stack += [(c, inside) for c in _children(pid)]
    return ours, theirs


def pss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (PermissionError, ProcessLookupError, FileNotFoundError):
        return None
    return None


@dataclass
class Memory:
    kb: dict[str, int | None] = field(default_factory=dict)  # "pid comm" -> PSS kB

    @property
    def total_mb(self) -> float | None:
        if not self.kb or any(v is None for v in self.kb.values()):
            return None
        return sum(v or 0 for v in self.kb.values()) / 1024

    def describe(self) -> str:
        return ", ".join(
            f"{k} {'unreadable' if v is None else f'{v / 1024:.2f}'}" for k, v in self.kb.items()
        )


def measure_tree(root: int, payload: str = "sleep", skip_root: bool = False) -> Memory:
    """Wait until ``payload`` runs below ``root``, then PSS of the rest of the tree."""
    deadline = time.monotonic() + 20
    while True:
        ours, theirs = _tree(root, payload)
        if theirs:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{payload} did not start below pid {root}")
        time.sleep(0.02)
    time.sleep(0.3)  # let the launcher settle (helpers started, fds closed)
    ours, _ = _tree(root, payload)
    if skip_root:
        ours = [p for p in ours if p != root]
    return Memory({f"{p} {_comm(p)}": pss_kb(p) for p in ours})


def _stop(pid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 30.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            time.sleep(0.01)


def memory_cli(argv: list[str], env: dict[str, str], skip_root: bool = False) -> Memory:
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    finally:
        os.close(devnull)
    try:
        return measure_tree(pid, skip_root=skip_root)
    finally:
        _stop(pid)


def memory_api(profile: str) -> Memory:
    """C and PID 1 of a sandbox started with the API (the caller, a fork of us, not counted)."""
    pid = os.fork()
    if pid == 0:
        try:
            import ringfence

            dn = subprocess.DEVNULL
            ringfence.run(["sleep", "60"], profile, stdin=dn, stdout=dn, stderr=dn)
        finally:
            os._exit(0)
    try:
        return measure_tree(pid, skip_root=True)
    finally:
        _stop(pid)


# --- seccomp on a syscall-heavy workload -----------------------------------------------------

_GETPPID_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return 0;
}
"""

_GETPPID_PY = (
    "import os,time,sys\nn=int(sys.argv[1])\nt=time.perf_counter_ns()\n"
    "for _ in range(n): os.getppid()\nprint(time.perf_counter_ns()-t)\n"
)


def workload(tmp: str) -> tuple[list[str], str]:
    """The getppid loop as a command usable inside (under /bench) and outside; its kind."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    src = os.path.join(tmp, "getppid.c")
    if gcc:
        with open(src, "w") as f:
            f.write(_GETPPID_C)
        r = subprocess.run(
            [gcc, "-O2", "-o", os.path.join(tmp, "getppid"), src], capture_output=True
        )
        if r.returncode == 0:
            return ["getppid"], "C (gcc -O2), syscall(SYS_getppid)"
    with open(os.path.join(tmp, "getppid.py"), "w") as f:
        f.write(_GETPPID_PY)
    return ["/usr/bin/python3", "-I", "-S", "getppid.py"], "python3 loop of os.getppid()"


def run_workload(argv: list[str], env: dict[str, str]) -> int:
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=300)
    if r.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.decode(errors='replace')}"
        )
    return int(r.stdout.split()[-1])


# --- report -----------------------------------------------------------------------------------


@dataclass
class Target:
    what: str
    value: float | None
    unit: str  # "x", "ms", "MB", "%"
    limit: float
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "n/a"
        return "PASS" if self.value <= self.limit else "MISS"

    def row(self) -> str:
        fmt = {"x": "{:.2f}x", "ms": "{:+.2f} ms", "MB": "{:.2f} MB", "%": "{:+.1f}%"}[self.unit]
        value = "n/a" if self.value is None else fmt.format(self.value)
        limit = "<= " + fmt.format(self.limit).lstrip("+")
        return f"  {self.what:52} {value:>11} {limit:>12}  {self.verdict}"


def host_line() -> str:
    load = os.getloadavg()
    return (
        f"kernel {platform.release()}, {os.cpu_count()} cpus, uid {os.geteuid()}, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def layer_costs(medians: dict[str, float]) -> dict[str, float]:
    strict = medians.get("Sandbox.run (strict)")
    if strict is None:
        return {}
    return {
        f"{layer}": strict - medians[f"Sandbox.run ({variant})"]
        for layer, variant in (
            ("seccomp", "seccomp off"),
            ("Landlock", "Landlock off"),
            ("both", "layers off"),
        )
        if f"Sandbox.run ({variant})" in medians
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--ringfence",
        default=shutil.which("ringfence"),
        metavar="PATH",
        help="the ringfence executable to time [ringfence on PATH]",
    )
    ap.add_argument("--bwrap", default=shutil.which("bwrap"), metavar="PATH")
    ap.add_argument("--runs", type=int, default=100, help="rounds of the CLI and API [100]")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seccomp-rounds", type=int, default=11)
    ap.add_argument("--syscalls", type=int, default=1_000_000)
    ap.add_argument(
        "--skip", action="append", default=[], choices=("cli", "api", "memory", "seccomp")
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if not args.ringfence or not os.access(args.ringfence, os.X_OK):
        ap.error("no ringfence executable: give --ringfence PATH")
    if not args.bwrap:
        ap.error("bwrap is not installed (apt-get install bubblewrap): give --bwrap PATH")
    rf = os.path.abspath(args.ringfence)
    python = entry_interpreter(rf)
    rfmod = import_ringfence()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("PATH", "/usr/bin:/bin")
    spawner = Spawner(env)
    medians: dict[str, float] = {}
    spreads: dict[str, str] = {}
    targets: list[Target] = []
    info: dict[str, object] = {
        "host": host_line(),
        "ringfence": rf,
        "interpreter": python,
        "module": getattr(rfmod, "__file__", "?"),
        "runs": args.runs,
    }

    def keep(results: dict[str, list[int]]) -> None:
        for name, samples in results.items():
            medians[name] = ms(samples)
            spreads[name] = spread(samples)

    tmp = tempfile.mkdtemp(prefix="rf-bench-startup-")
    try:
        os.chmod(tmp, 0o755)  # a root caller's sandbox runs as an unprivileged user
        profiles, notes = layer_profiles(tmp)
        for path in profiles.values():
            os.chmod(path, 0o644)
        off = profiles["layers off"]
        notes.append(verify_layers(rf, off, env))
        info["notes"] = notes
        true = shutil.which("true") or "/bin/true"

        if "cli" not in args.skip:
            cmds = {
                "/bin/true": [true],
                "python3 -I -S -c pass": [python, "-I", "-S", "-c", "pass"],
                "bwrap (equivalent)": bwrap_argv(args.bwrap, ["/bin/true"]),
                "ringfence run (strict)": [rf, "run", "--", "/bin/true"],
                "ringfence run (strict.toml: Extends strict)": [
                    *(rf, "run", "--profile", profiles["strict (TOML)"], "--", "/bin/true")
                ],
                "ringfence run (layers off, a TOML file too)": [
                    *(rf, "run", "--profile", off, "--", "/bin/true")
                ],
            }
            if entry_takes_site_path(rf, python):
                direct = direct_entry(python)
                notes.append(
                    f"{rf} imports site (its -S fallback: under -S a venv's sys.prefix is the "
                    "base interpreter's, so the site-packages it appends is the wrong one)"
                )
                if direct is not None:
                    cmds["ringfence run, entry without site"] = [*direct, "run", "--", "/bin/true"]
            for argv in cmds.values():
                spawner.check(argv)
            keep(interleave({k: spawner.timer(v) for k, v in cmds.items()}, args.runs, args.warmup))
            rf_ms, bw_ms = medians["ringfence run (strict)"], medians["bwrap (equivalent)"]
            py_ms, true_ms = medians["python3 -I -S -c pass"], medians["/bin/true"]
            targets.append(Target("CLI: ringfence run / bwrap", rf_ms / bw_ms, "x", 2.5))
            targets.append(
                Target(
                    "CLI: (ringfence - python floor) / (bwrap - /bin/true)",
                    (rf_ms - py_ms) / (bw_ms - true_ms),
                    "x",
                    1.2,
                )
            )
            targets.append(
                Target(
                    "CLI: layers on - off (seccomp + Landlock)",
                    medians["ringfence run (strict.toml: Extends strict)"]
                    - medians["ringfence run (layers off, a TOML file too)"],
                    "ms",
                    1.0,
                )
            )

        if "api" not in args.skip:
            import ringfence

            dn = subprocess.DEVNULL
            strict_box = ringfence.Sandbox("strict")
            off_box = ringfence.Sandbox(off)
            sc_off_box = ringfence.Sandbox(profiles["seccomp off"])
            ll_off_box = ringfence.Sandbox(profiles["Landlock off"])
            # A pre-warmed sandbox per run (the pool refills in the background while the other
            # variants of the round run), as the issue allows.
            pool_box = ringfence.Sandbox("strict", pool=2)
            bw = bwrap_argv(args.bwrap, ["/bin/true"])

            def timed(call: Callable[[], object]) -> Callable[[], int]:
                def once() -> int:
                    t0 = time.perf_counter_ns()
                    r = call()
                    t1 = time.perf_counter_ns()
                    if getattr(r, "returncode", 0) != 0:
                        raise SystemExit(f"API benchmark: exit {getattr(r, 'returncode', '?')}")
                    return t1 - t0

                return once

            api = {
                "subprocess.run(bwrap)": timed(
                    lambda: subprocess.run(bw, stdin=dn, stdout=dn, stderr=dn, env=env)
                ),
                "ringfence.run()": timed(
                    lambda: ringfence.run(["/bin/true"], stdin=dn, stdout=dn, stderr=dn)
                ),
                "Sandbox.run (strict)": timed(
                    lambda: strict_box.run(["/bin/true"], stdin=dn, stdout=dn, stderr=dn)
                ),
                "Sandbox.run (layers off)": timed(
                    lambda: off_box.run(["/bin/true"], stdin=dn, stdout=dn, stderr=dn)
                ),
                "Sandbox.run (seccomp off)": timed(
                    lambda: sc_off_box.run(["/bin/true"], stdin=dn, stdout=dn, stderr=dn)
                ),
                "Sandbox.run (Landlock off)": timed(
                    lambda: ll_off_box.run(["/bin/true"], stdin=dn, stdout=dn, stderr=dn)
                ),
                "Sandbox.run (strict, pool=2)": timed(
                    lambda: pool_box.run(["/bin/true"], stdin=dn, stdout=dn, stderr=dn)
                ),
            }
            keep(interleave(api, args.runs, args.warmup))
            pool_box.close()
            bw_api = medians["subprocess.run(bwrap)"]
            targets.append(
                Target(
                    "API: ringfence.run() / subprocess.run(bwrap)",
                    medians["ringfence.run()"] / bw_api,
                    "x",
                    0.8,
                )
            )
            targets.append(
                Target(
                    "API: Sandbox.run / subprocess.run(bwrap)",
                    medians["Sandbox.run (strict)"] / bw_api,
                    "x",
                    0.8,
                )
            )
            targets.append(
                Target(
                    "API: Sandbox(pool=2).run / subprocess.run(bwrap)",
                    medians["Sandbox.run (strict, pool=2)"] / bw_api,
                    "x",
                    0.8,
                )
            )
            targets.append(
                Target(
                    "API: layers on - off (seccomp + Landlock)",
                    medians["Sandbox.run (strict)"] - medians["Sandbox.run (layers off)"],
                    "ms",
                    1.0,
                )
            )

        memory: dict[str, Memory] = {}
        if "memory" not in args.skip:
            memory["ringfence run (CLI)"] = memory_cli([rf, "run", "--", "sleep", "60"], env)
            memory["bwrap"] = memory_cli(bwrap_argv(args.bwrap, ["sleep", "60"]), env)
            memory["API: C + PID 1"] = memory_api("strict")
            cli = memory["ringfence run (CLI)"]
            total, note = cli.total_mb, ""
            if total is None:
                note = "PID 1 is not dumpable (by design), so only root can read its PSS"
                readable = sum(v for v in cli.kb.values() if v is not None) / 1024
                if readable > 2.0:  # already over the limit without it
                    total, note = readable, note + ": value counts the other processes only"
            targets.append(
                Target("memory: ringfence's processes (PSS) during sleep", total, "MB", 2.0, note)
            )

        seccomp_ns: dict[str, list[int]] = {}
        workload_kind = ""
        if "seccomp" not in args.skip:
            cmd, workload_kind = workload(tmp)
            outside = (
                [os.path.join(tmp, cmd[0])]
                if cmd[0] == "getppid"
                else [*cmd[:-1], os.path.join(tmp, cmd[-1])]
            )
            inside = ["/bench/getppid"] if cmd[0] == "getppid" else [*cmd[:-1], "/bench/" + cmd[-1]]
            n = str(args.syscalls)
            bind = ["--ro-bind", tmp, "/bench", "--chdir", "/bench"]
            runs = {
                "outside": [*outside, n],
                "inside, strict": [rf, "run", *bind, "--", *inside, n],
                "inside, layers off": [rf, "run", "--profile", off, *bind, "--", *inside, n],
            }
            seccomp_ns = {k: [] for k in runs}
            for _ in range(2):  # warm-up
                for argv in runs.values():
                    run_workload(argv, env)
            for i in range(args.seccomp_rounds):
                for name in runs if i % 2 == 0 else reversed(list(runs)):
                    seccomp_ns[name].append(run_workload(runs[name], env))
            base = statistics.median(seccomp_ns["outside"])
            targets.append(
                Target(
                    f"seccomp: {args.syscalls:.0e} getppid, strict inside vs outside",
                    100 * (statistics.median(seccomp_ns["inside, strict"]) / base - 1),
                    "%",
                    3.0,
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        doc = {
            **info,
            "medians_ms": medians,
            "iqr_ms": spreads,
            "layer_costs_ms": layer_costs(medians),
            "memory_kb": {k: m.kb for k, m in memory.items()},
            "seccomp_workload": workload_kind,
            "seccomp_ns": {k: statistics.median(v) for k, v in seccomp_ns.items()},
            "targets": [
                {
                    "what": t.what,
                    "value": t.value,
                    "unit": t.unit,
                    "limit": t.limit,
                    "verdict": t.verdict,
                }
                for t in targets
            ],
        }
        print(json.dumps(doc, indent=2))
        return

    print(f"ringfence start-up benchmark: {info['host']}")
    print(f"  ringfence {rf} (interpreter {python}); API module {info['module']}")
    for note in notes:
        print(f"  note: {note}")
    if medians:
        print(
            f"\n  {'start-up (medians of ' + str(args.runs) + ' interleaved runs)':52} {'ms':>11} {'p25-p75':>12}"
        )
        for name, value in medians.items():
            print(f"  {name:52} {value:11.2f} {spreads[name]:>12}")
    if memory:
        print(f"\n  {'memory while the sandbox runs sleep (PSS)':52} {'MB':>11}")
        for name, m in memory.items():
            total = m.total_mb
            print(f"  {name:52} {'n/a' if total is None else f'{total:.2f}':>11}  ({m.describe()})")
    if seccomp_ns:
        print(f"\n  {'syscall workload: ' + workload_kind:52} {'ms':>11}")
        for name, samples in seccomp_ns.items():
            print(f"  {name:52} {statistics.median(samples) / 1e6:11.2f} {spread(samples):>12}")
    derived = layer_costs(medians)
    if derived:
        print(f"\n  {'cost of each layer (API, strict minus the variant)':52} {'ms':>11}")
        for name, value in derived.items():
            print(f"  {name:52} {value:+11.2f}")
    print(f"\n  {'target':52} {'value':>11} {'limit':>12}  verdict")
    for t in targets:
        print(t.row())
        if t.note:
            print(f"      {t.note}")


if __name__ == "__main__":
    main()
