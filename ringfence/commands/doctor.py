"""``ringfence doctor``: report what this host offers a sandbox; exit 1 if it cannot run one."""

from __future__ import annotations

import argparse
import json
import sys

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this host: user namespaces, Landlock, seccomp, FUSE, cgroups, tools",
        description="Report the host settings that decide whether and how well ringfence "
        "confines (each with OK, WARN or FAIL and the fix), and start one sandbox of the "
        "default profile. Exit 0 if ringfence can run sandboxes here, 1 otherwise.",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--no-launch",
        action="store_true",
        help="skip the end-to-end check that starts a sandbox",
    )
    p.set_defaults(command_module=__name__)


def run(args: argparse.Namespace) -> int:
    from .. import doctor

    checks = doctor.run_checks(launch=not args.no_launch)
    if args.json:
        sys.stdout.write(json.dumps(doctor.to_json(checks), indent=2) + "\n")
    else:
        sys.stdout.write(doctor.to_text(checks))
    return 0 if doctor.can_run(checks) else 1
