"""``ringfence plan``: compile the profile and options into a plan and print it; run nothing."""

from __future__ import annotations

import argparse
import json
import sys

from ._options import add_sandbox_options, build_plan

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("plan", help="show what a run would do, without running anything")
    add_sandbox_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("command", nargs="*", metavar="-- COMMAND [ARGS...]")
    p.set_defaults(command_module=__name__)


def run(args: argparse.Namespace) -> int:
    from .run import command_argv

    argv = command_argv(args) or ["/bin/sh"]
    plan = build_plan(args, argv)
    doc = plan.describe()
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"profile   {doc['profile']}\ncommand   {' '.join(plan.argv)}\n")
    out.write(f"identity  uid {plan.identity.uid} gid {plan.identity.gid}\n")
    out.write(f"namespaces {', '.join(plan.namespaces)}   network {plan.network}\n")
    out.write(
        f"cwd       {plan.cwd}\nenv       {', '.join(sorted(plan.env))}\n\nmounts (in order):\n"
    )
    for op in doc["mounts"]:  # type: ignore[attr-defined]
        d = dict(op)
        kind = d.pop("op")
        dest = d.pop("dest", "")
        why = d.pop("why", "")
        rest = " ".join(f"{k}={v}" for k, v in d.items())
        out.write(f"  {kind:<12} {dest:<28} {rest}{'   # ' + why if why else ''}\n")
    out.write("\nlayers:\n")
    for layer in plan.layers:
        state = {True: "applied", False: "NOT applied", None: "at run time"}[layer.applied]
        extra = f" ({layer.why})" if layer.why else ""
        out.write(f"  {layer.name:<22} {state:<12} {layer.detail}{extra}\n")
    return 0
