"""A fast path for parsing `ringfence run`'s options without importing argparse.

argparse costs about a quarter of a one-shot run (importing it, building a parser with thirty
options, parsing). For the common, well-formed command line this module fills the same
Namespace from a small table; anything it does not recognise (help, an unknown or malformed
option, a bad choice) makes it return None, and the CLI falls back to argparse, which then
produces the proper one-line error. A unit test checks this table against the argparse
definitions, so the two cannot drift apart.
"""

from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# option -> (dest, number of values, repeatable, convert)
_INT: Callable[[str], object] = int
RUN_OPTIONS: dict[str, tuple[str, int, bool, Callable[[str], object] | None]] = {
    "--profile": ("profile", 1, False, None),
    "-p": ("profile", 1, False, None),
    "--ro-bind": ("ro_bind", 2, True, None),
    "--ro-bind-try": ("ro_bind_try", 2, True, None),
    "--bind": ("bind", 2, True, None),
    "--bind-try": ("bind_try", 2, True, None),
    "--tmpfs": ("tmpfs", 1, True, None),
    "--dev": ("dev", 1, True, None),
    "--proc": ("proc", 1, True, None),
    "--symlink": ("symlink", 2, True, None),
    "--chdir": ("chdir", 1, False, None),
    "--setenv": ("setenv", 2, True, None),
    "--unsetenv": ("unsetenv", 1, True, None),
    "--keep-env": ("keep_env", 1, True, None),
    "--hostname": ("hostname", 1, False, None),
    "--net": ("net", 1, False, None),
    "--display": ("display", 1, False, None),
    "--allow-host-port": ("allow_host_port", 1, True, None),
    "--publish": ("publish", 1, True, None),
    "--uid": ("uid", 1, False, None),
    "--gid": ("gid", 1, False, None),
    "--pass-fd": ("pass_fd", 1, True, _INT),
    "--set": ("set", 1, True, None),
    "--add-binary": ("add_binary", 1, True, None),
    "--vault": ("vault", 1, True, None),
    "--askpass": ("askpass", 1, False, None),
    "--passfile": ("passfile", 1, False, None),
    "--json": ("json", 0, False, None),
}
RUN_DEFAULTS: dict[str, object] = {"profile": "strict", "json": False}
_CHOICES = {
    "net": ("none", "user", "host"),
    "display": ("none", "auto", "xvfb", "xephyr", "host"),
}


def parse_run(argv: list[str], command: list[str]) -> SimpleNamespace | None:
    """Parse `run`'s options (argv without the subcommand, before "--"), or None."""
    values: dict[str, object] = {}
    for dest, _n, repeat, _c in RUN_OPTIONS.values():
        values[dest] = [] if repeat else RUN_DEFAULTS.get(dest)
    i = 0
    while i < len(argv):
        word = argv[i]
        spec = RUN_OPTIONS.get(word)
        if spec is None:
            return None  # positional words, --opt=value, -h, unknown options: argparse decides
        dest, n, repeat, convert = spec
        if n == 0:
            values[dest] = True
            i += 1
            continue
        args = argv[i + 1 : i + 1 + n]
        if len(args) < n or any(a.startswith("-") and a != "-" for a in args):
            return None
        try:
            conv = [convert(a) if convert else a for a in args]
        except ValueError:
            return None
        if dest in _CHOICES and conv[0] not in _CHOICES[dest]:
            return None
        item: object = conv[0] if n == 1 else conv
        if repeat:
            values[dest].append(item)  # type: ignore[attr-defined]
        elif values.get(dest) not in (None, RUN_DEFAULTS.get(dest)) and dest in (
            "askpass",
            "passfile",
        ):
            return None
        else:
            values[dest] = item
        i += 1 + n
    if values.get("askpass") and values.get("passfile"):
        return None  # mutually exclusive: let argparse say so
    return SimpleNamespace(
        subcommand="run", command_module="ringfence.commands.run", command=command, **values
    )
