"""The ``ringfence`` command line: parse, dispatch to a subcommand module, one-line errors.

Start-up is a product feature: this module imports only argparse and the chosen subcommand.
Every RingfenceError becomes ``ringfence: <message>`` on stderr and its exit code; a traceback is
shown only with RINGFENCE_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

COMMANDS = {
    "run": "ringfence.commands.run",
    "plan": "ringfence.commands.plan",
    "profiles": "ringfence.commands.profiles",
    "vault": "ringfence.commands.vault",
    "void": "ringfence.commands.void",
    "audit": "ringfence.commands.audit",
    "probe": "ringfence.commands.probe",
    "start": "ringfence.commands.session",
    "enter": "ringfence.commands.session",
    "ls": "ringfence.commands.session",
    "stop": "ringfence.commands.session",
    "add": "ringfence.commands.session",
}


class _Parser:
    """argparse with errors in our one-line style (exit 2)."""

    @staticmethod
    def build(only: str | None = None) -> object:
        """Build the parser; with ``only``, register just that subcommand (the fast path)."""
        import argparse

        class Parser(argparse.ArgumentParser):
            def error(self, message: str) -> None:  # type: ignore[override]
                sys.stderr.write(f"ringfence: {message} (see `{self.prog} --help`)\n")
                sys.exit(2)

        parser = Parser(prog="ringfence", description="Confine programs on Linux without root.")
        parser.add_argument("--version", action="version", version="ringfence 0.1.0")
        sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=Parser)
        import importlib

        done: set[str] = set()
        for name, module in COMMANDS.items():
            if (only is not None and name != only) or module in done:
                continue
            done.add(module)
            try:
                importlib.import_module(module).register(sub)
            except ModuleNotFoundError:
                continue
        return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from .errors import RingfenceError

    try:
        first = argv[0] if argv else None
        parser = _Parser.build(first if first in COMMANDS else None)
        args = parser.parse_args(argv)  # type: ignore[attr-defined]
        if not getattr(args, "subcommand", None):
            parser.print_help()  # type: ignore[attr-defined]
            return 2
        import importlib

        module = importlib.import_module(args.command_module)
        return int(module.run(args))
    except RingfenceError as e:
        if os.environ.get("RINGFENCE_DEBUG"):
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"ringfence: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    code = main()
    # Skip interpreter teardown (it costs milliseconds and frees nothing the kernel won't).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
