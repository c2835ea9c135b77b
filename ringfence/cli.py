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
    "doctor": "ringfence.commands.doctor",
}


class _Parser:
    """argparse with errors in our one-line style (exit 2)."""

    @staticmethod
    def build(only: str | None = None) -> object:
        """Build the parser; with ``only``, register just that subcommand (the fast path)."""
        import argparse

        class Formatter(argparse.HelpFormatter):
            # argparse's default asks shutil for the width: a 1.5 ms import on every run.
            def __init__(self, prog: str) -> None:
                try:
                    width = os.get_terminal_size(sys.stderr.fileno()).columns
                except OSError:
                    width = 100
                super().__init__(prog, width=max(width - 2, 40))

        class Parser(argparse.ArgumentParser):
            def __init__(self, *a: object, **kw: object) -> None:
                kw.setdefault("formatter_class", Formatter)
                super().__init__(*a, **kw)  # type: ignore[arg-type]

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


def _separate_command(parser: object, argv: list[str]) -> list[str]:
    """Insert "--" before the payload's command when the user left it out, bubblewrap-style:
    the command starts at the first word that is neither an option, an option's value, nor
    one of the subcommand's own positionals (like a session NAME)."""
    import argparse

    sub = None
    for action in getattr(parser, "_actions", []):
        if isinstance(action, argparse._SubParsersAction):
            sub = action.choices.get(argv[0])
    if sub is None or not any(a.dest == "command" for a in sub._actions):
        return argv
    positionals = [a for a in sub._actions if not a.option_strings and a.dest != "command"]
    needed = sum(1 for a in positionals if a.nargs is None)
    i = 1
    while i < len(argv):
        word = argv[i]
        if word.startswith("-") and word != "-":
            action = sub._option_string_actions.get(word.split("=", 1)[0])
            if action is not None and "=" not in word:
                n = action.nargs
                i += 1 + (n if isinstance(n, int) else (0 if n == 0 else 1))
                continue
            i += 1
            continue
        if needed:
            needed -= 1
            i += 1
            continue
        return [*argv[:i], "--", *argv[i:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from .errors import RingfenceError

    try:
        first = argv[0] if argv else None
        if first == "run" and "--" in argv:
            # The common one-shot case: parse without argparse (see commands/_fastargs.py).
            from .commands._fastargs import parse_run

            cut = argv.index("--")
            fast = parse_run(argv[1:cut], argv[cut + 1 :])
            if fast is not None and fast.command:
                from .commands import run as run_command

                return int(run_command.run(fast))  # type: ignore[arg-type]
        parser = _Parser.build(first if first in COMMANDS else None)
        # Everything after the first "--" is the payload's command line, taken verbatim
        # (argparse's REMAINDER would also swallow options written after a positional).
        command: list[str] | None = None
        if "--" not in argv and first in COMMANDS:
            argv = _separate_command(parser, argv)
        if "--" in argv:
            cut = argv.index("--")
            argv, command = argv[:cut], argv[cut + 1 :]
        args = parser.parse_args(argv)  # type: ignore[attr-defined]
        if command is not None:
            if not hasattr(args, "command"):
                parser.error(f"`ringfence {first}` takes no command after --")  # type: ignore[attr-defined]
            if args.command:
                parser.error(  # type: ignore[attr-defined]
                    f"unexpected arguments before --: {' '.join(args.command)}"
                )
            args.command = command
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
    except BrokenPipeError:  # `ringfence plan | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def entry() -> None:
    code = main()
    # Skip interpreter teardown (it costs milliseconds and frees nothing the kernel won't).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
