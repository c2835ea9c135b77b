"""``ringfence vault``: create encrypted vaults, and the ``--vault`` options of run/start.

Owns: the argparse surface of vaults. Must stay cheap to import (the CLI imports every command
module to build its parser): the vault runtime is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import sys

VAULT_HELP = (
    "mount the gocryptfs vault CIPHERDIR, decrypted, at MOUNTPOINT inside the sandbox only "
    "(append :ro for read-only); repeatable"
)


def add_password_options(p: argparse._ActionsContainer) -> None:
    """--askpass / --passfile, mutually exclusive (default: ask on the terminal)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--askpass",
        metavar="PROGRAM",
        help="run PROGRAM (no shell; its first output line is the password), like gocryptfs "
        "-extpass; the prompt is in $RINGFENCE_ASKPASS_PROMPT",
    )
    g.add_argument(
        "--passfile",
        metavar="FILE",
        help="read the password from the first line of FILE",
    )


def add_vault_options(parser: argparse.ArgumentParser) -> None:
    """Add --vault (repeatable), --askpass and --passfile to a run/start parser."""
    g = parser.add_argument_group(
        "vault",
        "An encrypted directory decrypted for this sandbox only. The password is read on the "
        "host before the sandbox starts: from --askpass, --passfile, or the terminal.",
    )
    g.add_argument(
        "--vault",
        action="append",
        default=[],
        metavar="CIPHERDIR:MOUNTPOINT",
        help=VAULT_HELP,
    )
    add_password_options(g)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "vault",
        help="create an encrypted vault (gocryptfs) to open with --vault",
        description="Manage gocryptfs vaults: directories that are encrypted at rest and "
        "decrypted only inside the sandbox that opens them (run/start --vault DIR:MOUNTPOINT).",
    )
    p.set_defaults(command_module=__name__)
    sub = p.add_subparsers(dest="vault_command", metavar="ACTION", required=True)
    init = sub.add_parser(
        "init",
        help="create a new vault in DIR (new or empty)",
        description="Create a new gocryptfs vault in DIR (created mode 0700 if missing; it must "
        "be empty otherwise). The password is asked twice on the terminal unless --askpass or "
        "--passfile is given. gocryptfs prints the master key once, on a terminal only: keep it.",
    )
    init.add_argument("dir", metavar="DIR")
    add_password_options(init)
    init.set_defaults(command_module=__name__)


def run(args: argparse.Namespace) -> int:
    from ..runtime import vault

    if args.vault_command == "init":
        path = vault.init_vault(args.dir, vault.password_source(args))
        sys.stderr.write(
            f"ringfence: vault {path} is ready; open it with "
            f"`ringfence run --vault {path}:/MOUNTPOINT -- COMMAND`\n"
        )
        return 0
    raise AssertionError(f"unknown vault action {args.vault_command!r}")  # argparse prevents it
