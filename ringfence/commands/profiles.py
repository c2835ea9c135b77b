"""``ringfence profiles``: list the built-in profiles, or every key a profile may set."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("profiles", help="list built-in profiles (or --keys: every profile key)")
    p.add_argument("--keys", action="store_true", help="list every key a profile may set")
    p.set_defaults(command_module=__name__)


def run(args: argparse.Namespace) -> int:
    from ..profile.builtin import BUILTIN
    from ..profile.loader import all_keys
    from ..profile.model import KEYS

    if args.keys:
        for key in all_keys():
            spec = KEYS.get(key)
            sys.stdout.write(f"{key:<26} {spec.doc if spec else ''}\n")
        return 0
    for name, raw in BUILTIN.items():
        sys.stdout.write(f"{name:<10} {raw.get('Description', '')}\n")
    sys.stdout.write(
        '\nA TOML file may `Extends = "strict"` and override keys; see '
        "`ringfence profiles --keys`.\n"
    )
    return 0
