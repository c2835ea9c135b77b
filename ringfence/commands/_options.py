"""Options shared by every command that builds a sandbox (run, plan, start, audit).

Owns: the bubblewrap-style flags and their translation into profile keys, so that a flag and
the equivalent TOML key always mean the same thing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    import argparse
    from typing import Any


def add_sandbox_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sandbox")
    g.add_argument(
        "--profile",
        "-p",
        default="strict",
        metavar="NAME|FILE",
        help="built-in profile (strict, service, void) or a TOML file [strict]",
    )
    g.add_argument(
        "--ro-bind",
        nargs=2,
        action="append",
        default=[],
        metavar=("SRC", "DEST"),
        help="bind SRC read-only at DEST",
    )
    g.add_argument(
        "--ro-bind-try",
        nargs=2,
        action="append",
        default=[],
        metavar=("SRC", "DEST"),
        help="like --ro-bind, skipped if SRC is missing",
    )
    g.add_argument(
        "--bind",
        nargs=2,
        action="append",
        default=[],
        metavar=("SRC", "DEST"),
        help="bind SRC read-write at DEST",
    )
    g.add_argument("--bind-try", nargs=2, action="append", default=[], metavar=("SRC", "DEST"))
    g.add_argument(
        "--tmpfs", action="append", default=[], metavar="DEST", help="fresh tmpfs at DEST"
    )
    g.add_argument(
        "--dev", action="append", default=[], metavar="DEST", help="a private /dev at DEST"
    )
    g.add_argument(
        "--proc", action="append", default=[], metavar="DEST", help="a /proc of the sandbox at DEST"
    )
    g.add_argument("--symlink", nargs=2, action="append", default=[], metavar=("TARGET", "LINK"))
    g.add_argument("--chdir", metavar="DIR", help="working directory inside the sandbox")
    g.add_argument("--setenv", nargs=2, action="append", default=[], metavar=("VAR", "VALUE"))
    g.add_argument("--unsetenv", action="append", default=[], metavar="VAR")
    g.add_argument(
        "--keep-env",
        action="append",
        default=[],
        metavar="VAR",
        help="pass the caller's VAR through (the environment is cleared otherwise)",
    )
    g.add_argument("--hostname", metavar="NAME")
    g.add_argument(
        "--net",
        choices=("none", "user", "host"),
        help="network: none (own loopback only), user (user-mode stack, host "
        "loopback blocked), host (shared: an exposure)",
    )
    g.add_argument(
        "--allow-host-port",
        action="append",
        default=[],
        metavar="PORT",
        help="with --net user: open exactly this host loopback port",
    )
    g.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="[HOSTADDR:]HOSTPORT:SANDBOXPORT[/PROTO]",
        help="with --net user: forward a host port into the sandbox",
    )
    g.add_argument(
        "--display",
        choices=("none", "auto", "xvfb", "xephyr", "host"),
        help="an X display: a nested server of its own (xvfb headless, xephyr a window on "
        "your screen, auto: xephyr if you have a display), or host (your real one: an exposure)",
    )
    g.add_argument("--uid", metavar="USER", help="(root only) run the payload as USER")
    g.add_argument("--gid", metavar="GROUP", help="(root only) run the payload as GROUP")
    g.add_argument(
        "--pass-fd",
        action="append",
        default=[],
        type=int,
        metavar="FD",
        help="keep this inherited file descriptor open in the payload",
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any profile key, e.g. --set ProtectHome=read-only",
    )
    g.add_argument(
        "--add-binary",
        action="append",
        default=[],
        metavar="PATH",
        help="bind PATH and its ELF closure (loader, libraries, their symlinks) read-only; "
        "with --profile void the program needs nothing else",
    )
    try:
        from .vault import add_vault_options

        add_vault_options(p)
    except ImportError:
        pass


def _parse_set(entries: list[str]) -> dict[str, object]:
    from ..errors import ProfileError

    out: dict[str, object] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ProfileError(f"--set {entry!r}: expected KEY=VALUE")
        out[key] = value
    return out


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    o: dict[str, Any] = {}

    def add(key: str, *values: object) -> None:
        o.setdefault(key, []).extend(values)

    for src, dest in args.ro_bind:
        add("BindReadOnlyPaths", f"{src}:{dest}")
    for src, dest in args.ro_bind_try:
        add("BindReadOnlyPaths", f"-{src}:{dest}")
    for src, dest in args.bind:
        add("BindPaths", f"{src}:{dest}")
    for src, dest in args.bind_try:
        add("BindPaths", f"-{src}:{dest}")
    for dest in args.tmpfs:
        add("TemporaryFileSystems", dest)
    for dest in args.dev:
        add("DevMounts", dest)
    for dest in args.proc:
        add("ProcMounts", dest)
    for target, link in args.symlink:
        add("Symlinks", f"{target}:{link}")
    for var, value in args.setenv:
        add("Environment", f"{var}={value}")
    for var in args.unsetenv:
        add("UnsetEnvironment", var)
    for var in args.keep_env:
        add("PassEnvironment", var)
    if args.chdir:
        o["WorkingDirectory"] = args.chdir
    if args.hostname:
        o["Hostname"] = args.hostname
    if args.net:
        o["Network"] = args.net
    if getattr(args, "display", None):
        o["Display"] = args.display
    for port in args.allow_host_port:
        add("AllowHostPorts", port)
    for spec in args.publish:
        add("PublishPorts", spec)
    if args.uid:
        o["User"] = args.uid
    if args.gid:
        o["Group"] = args.gid
    for key, value in _parse_set(args.set).items():
        from ..profile.loader import _is_list_key

        if _is_list_key(key):
            add(key, *str(value).split(","))
        else:
            o[key] = value
    for path in getattr(args, "add_binary", []):
        from ..void.spec import closure_keys

        for key, values in closure_keys(path).items():
            add(key, *(v for v in values if v not in o.get(key, [])))
    return o


def build_plan(args: argparse.Namespace, argv: list[str], session: str | None = None) -> Any:
    from ..plan import RunRequest, compile_plan
    from ..profile.loader import load_profile

    profile = load_profile(args.profile, overrides_from_args(args))
    vaults: tuple[Any, ...] = ()
    if getattr(args, "vault", None):
        from ..runtime import vault

        vaults = tuple(vault.prepare_all(args.vault, session=session))
    request = RunRequest(
        argv=tuple(argv), pass_fds=tuple(args.pass_fd), vaults=vaults, session=session
    )
    for fd in request.pass_fds:
        import os

        try:
            os.fstat(fd)
        except OSError:
            from ..errors import ProfileError

            raise ProfileError(f"--pass-fd {fd}: that file descriptor is not open") from None
        if fd <= 2:
            from ..errors import ProfileError

            raise ProfileError(f"--pass-fd {fd}: 0, 1 and 2 are always passed")
    return compile_plan(profile, request)
