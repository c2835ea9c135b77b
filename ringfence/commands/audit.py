"""``ringfence audit``: score the exposure of a profile (with any sandbox options) item by item,
like ``systemd-analyze security``. Runs nothing."""

from __future__ import annotations

import argparse
import json
import sys

from ._options import add_sandbox_options, build_plan

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "audit",
        help="score a profile's exposure (0.0-10.0), key by key; runs nothing",
        description="Score what a sandbox built from this profile and these options leaves "
        "exposed, item by item, in the manner of `systemd-analyze security`. Nothing is run. "
        "See docs/audit.md for every item and the formula.",
    )
    add_sandbox_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--threshold",
        type=float,
        metavar="SCORE",
        help="exit 1 if the overall exposure is above SCORE (for CI)",
    )
    p.set_defaults(command_module=__name__)


def run(args: argparse.Namespace) -> int:
    from ..audit import audit_plan, format_table

    # Vaults would be prepared (locked) by build_plan: the audit must not touch them.
    if getattr(args, "vault", None):
        args.vault = []
    plan = build_plan(args, ["/bin/sh"])
    result = audit_plan(plan)
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        enc = (getattr(sys.stdout, "encoding", "") or "").lower().replace("-", "")
        sys.stdout.write(format_table(result, unicode=enc == "utf8"))
    if args.threshold is not None and result.exposure > args.threshold:
        return 1
    return 0
