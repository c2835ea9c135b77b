"""``ringfence run``: run one command in a fresh sandbox and exit with its status."""

from __future__ import annotations

import os
import sys

from ._options import add_sandbox_options, build_plan

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    import argparse
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a command in a fresh sandbox",
        description="Run COMMAND confined; exit with its status (128+N on "
        "signal N, 127 if it is not found inside).",
    )
    add_sandbox_options(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the enforcement report (one JSON line on stderr) when the payload starts",
    )
    p.add_argument("command", nargs="*", metavar="-- COMMAND [ARGS...]")
    p.set_defaults(command_module=__name__)


def command_argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    return argv


def run(args: argparse.Namespace) -> int:
    plan = build_plan(args, command_argv(args))
    return launch_and_wait(plan, args, want_json=args.json)


def read_passwords(args: argparse.Namespace, plan: Any) -> tuple[bytes, ...]:
    if not plan.vaults:
        return ()
    from ..runtime import vault

    return tuple(vault.password_for(spec, args) for spec in plan.vaults)


def launch_and_wait(plan: Any, args: argparse.Namespace, want_json: bool, **launch_kw: Any) -> int:
    from .. import _signals as signal
    from ..runtime.init import FORWARDED
    from ..runtime.launcher import Launch

    plan.report_runtime = want_json
    passwords = read_passwords(args, plan)
    interactive = os.isatty(0)
    master = slave = -1
    stdio = (0, 1, 2)
    if interactive:
        from ..runtime.tty import open_pty

        master, slave = open_pty()
        stdio = (slave, slave if os.isatty(1) else 1, slave if os.isatty(2) else 2)
    launch = Launch(plan, stdio=stdio, tty=interactive, passwords=passwords, **launch_kw)
    try:
        launch.start()
    finally:
        if slave >= 0:
            os.close(slave)
    for sig in FORWARDED:
        if interactive and sig == signal.SIGWINCH:
            continue
        signal.signal(sig, lambda s, _f: launch.signal(s))
    if want_json:
        import json

        sys.stderr.write(json.dumps(report(plan, launch), separators=(",", ":")) + "\n")
        sys.stderr.flush()
    try:
        if interactive:
            from ..runtime.tty import relay

            relay(master, 0, 1 if os.isatty(1) else 2)
            os.close(master)
        return launch.wait()
    finally:
        launch.kill()
        launch.wait()


def report(plan: Any, launch: Any) -> dict[str, object]:
    doc = plan.describe()
    doc["runtime"] = [*launch.reports, *launch.helper_reports()]
    doc["sandbox_pid"] = launch.init_pid
    return dict(doc)
