"""``ringfence void SPEC``: run an application made of void processes; ``--explain`` runs nothing.

The spec (TOML or JSON, see :mod:`ringfence.void.spec`) is read, validated and compiled (ELF
closures, plans) before anything is opened or started. ``--explain`` stops there and prints,
for every entrypoint, what it receives, its ELF closure and its full plan.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO

    from ..void.spec import Compiled, Spec


def register(sub: Any) -> None:
    p = sub.add_parser(
        "void",
        help="run a multi-part void spec (pipes, sockets, fds, triggers)",
        description="Run every entrypoint of SPEC in its own void: an empty root with only its "
        "ELF closure and what the spec grants, under the strict lock-down (no capabilities, "
        "no_new_privs, seccomp, Landlock, private keyring, an empty network namespace).",
    )
    p.add_argument("spec", metavar="SPEC", help="the spec file (.toml or .json)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="set a variable the spec declares under [vars]")  # fmt: skip
    p.add_argument("--explain", action="store_true",
                   help="print each entrypoint's ELF closure and full plan; run nothing")  # fmt: skip
    p.add_argument("--json", action="store_true", help="with --explain: machine-readable output")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="report every void started and every exit")  # fmt: skip
    p.set_defaults(command_module=__name__)


def _variables(entries: list[str]) -> dict[str, str]:
    from ..errors import SpecError

    out: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise SpecError(f"--var {entry!r}: expected NAME=VALUE")
        out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    from ..void.spec import compile_spec, load_spec

    spec = load_spec(args.spec, _variables(args.var))
    compiled = compile_spec(spec)
    if args.explain:
        if args.json:
            import json

            json.dump(explain_doc(spec, compiled), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            explain(spec, compiled, sys.stdout)
        return 0
    if args.json:
        from ..errors import SpecError

        raise SpecError("--json only goes with --explain")
    from ..void.orchestrator import run_spec

    sys.stdout.flush()
    return run_spec(spec, compiled, verbose=args.verbose)


# ---------------------------------------------------------------------------------------------
# --explain


def _wiring(spec: Spec) -> list[str]:
    lines = []
    uses = spec.endpoints()
    for name, p in spec.pipes.items():
        ends = uses.get(("pipe", name), [])
        r = next((e.describe() for e in ends if e.end == "read"), "?")
        w = next((e.describe() for e in ends if e.end == "write"), "?")
        lines.append(f"pipe      {name}: {w} -> {r}  (framing {p.framing}, max {p.max_message} B)")
    for name, s in spec.sockets.items():
        pair = " <-> ".join(e.describe() for e in uses.get(("socket", name), []))
        lines.append(f"socket    {name}: {pair}  ({s.type}, up to {s.max_fds} fds per message)")
    for name, lsn in spec.listeners.items():
        lines.append(f"listener  {name}: TCP {lsn.describe()} (backlog {lsn.backlog})")
    return lines


def _fds(c: Compiled) -> list[tuple[str, str]]:
    from ..void.spec import FileRef, Inherit, MessageRef, Text, describe_ref

    ep = c.entrypoint
    out = []
    for n, field in enumerate(("stdin", "stdout", "stderr")):
        ref = getattr(ep, field)
        what = describe_ref(ref)
        if isinstance(ref, Inherit):
            what = f"the orchestrator's {field}"
        elif isinstance(ref, MessageRef):
            what = "the trigger's message (data), through a pipe"
        elif isinstance(ref, FileRef) and ep.trigger.kind != "startup":
            what += "; opened afresh for each void"
        out.append((str(n), f"{field}: {what}"))
    first_message_fd = 3 + len(ep.fd_args())
    fd = 3
    for i, arg in enumerate(ep.args):
        if isinstance(arg, MessageRef):
            if arg.part == "fds":
                out.append((f"{first_message_fd}..", f"args[{i}]: the fds the message carried"))
        elif not isinstance(arg, Text):
            out.append((str(fd), f"args[{i}]: {describe_ref(arg)}"))
            fd += 1
    return out


def explain_doc(spec: Spec, compiled: dict[str, Compiled]) -> dict[str, object]:
    parts: dict[str, object] = {}
    for name, c in compiled.items():
        ep = c.entrypoint
        parts[name] = {
            "trigger": ep.trigger.describe(),
            "parallel": ep.parallel,
            "fds": [{"fd": fd, "what": what} for fd, what in _fds(c)],
            "closure": {
                "binary": c.closure.binary,
                "interpreter": c.closure.interpreter,
                "entries": [
                    {"path": e.path, "real": e.real, "needed_by": e.needed_by, "via": e.via}
                    for e in c.closure.entries
                ],
                "symlinks": [{"link": a, "target": b} for a, b in c.closure.symlinks],
                "needs_proc": c.closure.needs_proc,
            },
            "plan": c.plan.describe(),
        }
    return {"spec": spec.path, "wiring": _wiring(spec), "entrypoints": parts}


def explain(spec: Spec, compiled: dict[str, Compiled], out: TextIO) -> None:
    out.write(f"spec      {spec.path}\n")
    if spec.description:
        out.write(f"          {spec.description}\n")
    for line in _wiring(spec):
        out.write(line + "\n")
    for name, c in compiled.items():
        ep = c.entrypoint
        extra = f", up to {ep.parallel} at once" if ep.trigger.kind != "startup" else ""
        out.write(f"\n=== entrypoint {name}  (trigger: {ep.trigger.describe()}{extra})\n")
        if ep.description:
            out.write(f"  {ep.description}\n")
        out.write("fds:\n")
        for fd, what in _fds(c):
            out.write(f"  {fd:<4} {what}\n")
        cl = c.closure
        out.write(f"ELF closure of {cl.binary}:\n")
        for e in cl.entries:
            real = f" -> {e.real}" if e.real != e.path else ""
            by = f", needed by {e.needed_by}" if e.needed_by else ""
            out.write(f"  {e.path}{real}  ({e.via}{by})\n")
        for link, target in cl.symlinks:
            out.write(f"  symlink {link} -> {target}\n")
        if cl.needs_proc:
            out.write("  (the loader reads /proc/self/exe for $ORIGIN: /proc is mounted)\n")
        write_plan(c.plan, out)


def write_plan(plan: Any, out: TextIO) -> None:
    """The same layout as ``ringfence plan``."""
    doc = plan.describe()
    out.write("plan:\n")
    out.write(f"  command   {' '.join(plan.argv)}\n")
    out.write(f"  identity  uid {plan.identity.uid} gid {plan.identity.gid}\n")
    out.write(f"  namespaces {', '.join(plan.namespaces)}   network {plan.network}\n")
    out.write(f"  hostname  {plan.hostname}\n")
    out.write(f"  cwd       {plan.cwd}\n  env       {', '.join(sorted(plan.env))}\n")
    out.write("  mounts (in order):\n")
    for op in doc["mounts"]:
        d = dict(op)
        kind = d.pop("op")
        dest = d.pop("dest", "")
        why = d.pop("why", "")
        rest = " ".join(f"{k}={v}" for k, v in d.items())
        out.write(f"    {kind:<12} {dest:<44} {rest}{'   # ' + why if why else ''}\n")
    out.write("  layers:\n")
    for layer in plan.layers:
        state = {True: "applied", False: "NOT applied", None: "at run time"}[layer.applied]
        extra = f" ({layer.why})" if layer.why else ""
        out.write(f"    {layer.name:<22} {state:<12} {layer.detail}{extra}\n")
