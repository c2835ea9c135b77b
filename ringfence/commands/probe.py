"""``ringfence probe``: run attack checks inside a sandbox built from these options and report,
check by check, what is really blocked on this machine."""

from __future__ import annotations

import argparse
import json
import sys

from ._options import add_sandbox_options

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "probe",
        help="attack a sandbox from inside: see what this profile really blocks here",
        description="Launch one sandbox with this profile and options and try, from inside, "
        "the escapes of the threat list (files, processes, privileges, syscalls, terminal, "
        "IPC, network, identity). Exit 0 when every check is blocked (or not applicable), 1 "
        "otherwise, 2 when the probe cannot run. Needs /usr/bin/python3 inside the sandbox.",
    )
    add_sandbox_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--deadline",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="time each check may take before it is killed [2]",
    )
    p.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this check (repeatable; see --list)",
    )
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.add_argument(
        "--heavy",
        action="store_true",
        help="also run resource checks (a bounded fork bomb when LimitNPROC= is set)",
    )
    p.add_argument(
        "--accept-allowed",
        action="store_true",
        help="pass when the only exposures are ones the profile allows on purpose "
        "(e.g. --net host)",
    )
    # Tests only: add a check that never returns, to prove a hang is a verdict.
    p.add_argument("--test-inject-hang", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(command_module=__name__)


def run(args: argparse.Namespace) -> int:
    from .. import probe

    if args.list:
        for c in probe.CHECKS:
            sys.stdout.write(f"{c.name:<18} {c.vector:<11} {c.what}\n")
        return 0
    if not 0 < args.deadline <= 60:
        from ..errors import ProfileError

        raise ProfileError(f"--deadline {args.deadline:g}: give 0 < SECONDS <= 60")
    report = probe.run_probe(
        args,
        deadline=args.deadline,
        heavy=args.heavy,
        hang=args.test_inject_hang,
        only=args.check or None,
        accept_allowed=args.accept_allowed,
    )
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(probe.format_table(report))
    if report.stderr.strip() and not report.passed:
        sys.stderr.write(report.stderr)
    return 0 if report.passed else 1
