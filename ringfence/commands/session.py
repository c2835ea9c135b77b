"""``ringfence start|enter|ls|stop|add``: named sandboxes that outlive one command.

See runtime/session.py for the design (keeper, state, joining with setns).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ._options import add_sandbox_options, build_plan, overrides_from_args

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "start",
        help="start a named, long-lived sandbox (a session)",
        description="Start session NAME in the background. It stays up until "
        "`ringfence stop NAME` (or, with --until-empty, until its last member "
        "exits). The optional COMMAND's output goes to the session's log.",
    )
    p.add_argument("name", metavar="NAME")
    add_sandbox_options(p)
    p.add_argument(
        "--until-empty", action="store_true", help="stop the session when its last member exits"
    )
    p.add_argument(
        "--add-dir",
        default="/run/ringfence/add",
        metavar="DIR",
        help="where `ringfence add` makes paths appear [/run/ringfence/add]",
    )
    p.add_argument("--json", action="store_true", help="print the session as JSON")
    p.add_argument("command", nargs="*", metavar="-- COMMAND [ARGS...]")
    p.set_defaults(command_module=__name__, action="start")

    p = sub.add_parser(
        "enter",
        help="run a command inside a running session",
        description="Run COMMAND (default: your shell) inside session NAME, with "
        "the same view and every restriction the session was started with.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print the enforcement report on stderr")
    p.add_argument("command", nargs="*", metavar="-- COMMAND [ARGS...]")
    p.set_defaults(command_module=__name__, action="enter")

    p = sub.add_parser("ls", help="list running sessions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(command_module=__name__, action="ls")

    p = sub.add_parser("stop", help="stop a session (SIGTERM, then SIGKILL after --timeout)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S")
    p.set_defaults(command_module=__name__, action="stop")

    p = sub.add_parser(
        "add",
        help="make a host file or directory appear in a running session",
        description="Make SRC appear at DEST inside session NAME's drop zone "
        "(read-only unless --rw). DEST is relative to the drop zone "
        "(default: the source's name).",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", nargs="?", metavar="DEST")
    p.add_argument("--rw", action="store_true", help="writable (default: read-only)")
    p.set_defaults(command_module=__name__, action="add")


def run(args: argparse.Namespace) -> int:
    return int(
        {"start": start, "enter": enter, "ls": ls, "stop": stop, "add": add}[args.action](args)
    )


def _argv(args: argparse.Namespace) -> list[str]:
    argv = list(args.command)
    return argv[1:] if argv and argv[0] == "--" else argv


def start(args: argparse.Namespace) -> int:
    from ..errors import RingfenceError, SessionError
    from ..runtime import session as s

    name = s.check_name(args.name)
    old = s.read_state(name)
    if old is not None:
        if old.alive():
            raise SessionError(
                f"session {name} is already running; join it with `ringfence enter {name}`"
            )
        s.cleanup_stale(old)
    elif os.path.isdir(s.session_dir(name)):
        s.remove_session_dir(name)
    argv = _argv(args)
    plan = build_plan(args, argv, session=name)
    plan.add_dir = args.add_dir
    from .run import read_passwords

    passwords = read_passwords(args, plan)
    os.mkdir(s.session_dir(name), 0o700)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        _keeper(args, plan, passwords, argv, ready_w)
        os._exit(2)
    os.close(ready_w)
    buf = b""
    while chunk := os.read(ready_r, 65536):
        buf += chunk
    os.close(ready_r)
    for spec in plan.vaults:
        spec.release()
    msg: dict[str, Any] = (
        json.loads(buf) if buf else {"ok": False, "error": "the session's keeper died"}
    )
    if not msg.get("ok"):
        os.waitpid(pid, 0)
        err = RingfenceError(str(msg.get("error")))
        err.exit_code = int(msg.get("code", 2))
        raise err
    if args.json:
        sys.stdout.write(json.dumps(msg["session"]) + "\n")
    else:
        sys.stdout.write(
            f"session {name} started (PID 1 is host pid {msg['session']['init_pid']});"
            f" join it with: ringfence enter {name}\n"
        )
    return 0


def _keeper(
    args: argparse.Namespace, plan: Any, passwords: tuple[bytes, ...], argv: list[str], ready_w: int
) -> None:
    """The detached keeper (a fork of `ringfence start`). Never returns."""
    import socket
    import time

    from ..errors import RingfenceError
    from ..runtime import session as s
    from ..runtime.launcher import Launch

    def fail(code: int, message: str) -> None:
        os.write(ready_w, json.dumps({"ok": False, "code": code, "error": message}).encode())
        s.remove_session_dir(plan.session)
        os._exit(code)

    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        log = os.open(
            os.path.join(s.session_dir(plan.session), "output.log"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        os.set_inheritable(theirs.fileno(), False)
        launch = Launch(
            plan,
            stdio=(0, log, log),
            passwords=passwords,
            stager_fd=theirs.fileno(),
            hold_namespaces=True,
        )
        launch.start()
        theirs.close()
        os.close(log)
        state = s.SessionState(
            name=plan.session,
            keeper_pid=os.getpid(),
            keeper_start=s.start_time(os.getpid()) or 0,
            init_pid=launch.init_pid,
            init_start=s.start_time(launch.init_pid) or 0,
            created=time.time(),
            profile=_profile_ref(args.profile),
            keys=overrides_from_args(args),
            add_dir=plan.add_dir or "",
            argv=argv,
            vaults=[v.mountpoint for v in plan.vaults],
            pass_env={},
            pidns=_pidns(launch),
        )
        server = s.bind_control_socket(plan.session)
        s.write_state(state)
        keeper = s.Keeper(state, launch, ours, args.until_empty, server)
        info = {
            k: getattr(state, k)
            for k in ("name", "init_pid", "keeper_pid", "add_dir", "vaults", "profile")
        }
        os.write(ready_w, json.dumps({"ok": True, "session": info}).encode())
        os.close(ready_w)
    except RingfenceError as e:
        fail(e.exit_code, str(e))
    except BaseException as e:
        fail(2, f"cannot start the session: {e!r}")
    keeper.serve()


def _pidns(launch: Any) -> str:
    for ns, fd in launch.ns_fds:
        if ns == "pid":
            return f"pid:[{os.fstat(fd).st_ino}]"
    return ""


def _profile_ref(ref: str) -> str:
    from ..profile.builtin import BUILTIN

    return ref if ref in BUILTIN else os.path.abspath(os.path.expanduser(ref))


def _join_plan(state: Any, argv: list[str]) -> Any:
    from .._record import record
    from ..plan import RunRequest, compile_plan
    from ..profile.loader import load_profile

    @record(frozen=True)
    class _Mounted:
        mountpoint: str

    profile = load_profile(state.profile, dict(state.keys))
    request = RunRequest(
        argv=tuple(argv),
        session=state.name,
        add_dir=state.add_dir,
        vaults=tuple(_Mounted(v) for v in state.vaults),
    )
    plan = compile_plan(profile, request)
    plan.join_pid = state.init_pid
    plan.vaults = ()  # already mounted: nothing to open or lock for a joiner
    return plan


def enter(args: argparse.Namespace) -> int:
    from ..runtime import session as s
    from .run import launch_and_wait

    state = s.live_state(s.check_name(args.name))
    argv = _argv(args) or [os.environ.get("SHELL") or "/bin/sh"]
    plan = _join_plan(state, argv)
    join_fds = s.namespace_fds(state.name)
    try:
        return launch_and_wait(plan, args, want_json=args.json, join_fds=join_fds)
    finally:
        for _, fd in join_fds:
            try:
                os.close(fd)
            except OSError:
                pass


def ls(args: argparse.Namespace) -> int:
    import time

    from ..runtime import session as s

    rows = []
    for st in s.list_sessions():
        rows.append(
            {
                "name": st.name,
                "pid": st.init_pid,
                "keeper": st.keeper_pid,
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.created)),
                "profile": st.profile,
                "members": len(s.members(st)),
                "vaults": st.vaults,
                "add_dir": st.add_dir,
                "command": st.argv,
            }
        )
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return 0
    if not rows:
        sys.stdout.write("no sessions\n")
        return 0
    sys.stdout.write(f"{'NAME':<16} {'PID':>7} {'STARTED':<19} {'MEMBERS':>7}  PROFILE / VAULTS\n")
    for r in rows:
        vaults = f"  vaults: {', '.join(r['vaults'])}" if r["vaults"] else ""  # type: ignore[arg-type]
        sys.stdout.write(
            f"{r['name']:<16} {r['pid']:>7} {r['started']:<19} {r['members']:>7}  "
            f"{r['profile']}{vaults}\n"
        )
    return 0


def stop(args: argparse.Namespace) -> int:
    import signal

    from ..errors import SessionError
    from ..runtime import session as s

    name = s.check_name(args.name)
    state = s.read_state(name)
    if state is None:
        if os.path.isdir(s.session_dir(name)):
            s.remove_session_dir(name)
            return 0
        raise SessionError(f"no session named {name} (see `ringfence ls`)")
    if not state.alive():
        s.cleanup_stale(state)
        return 0
    try:
        os.kill(state.init_pid, signal.SIGTERM)
    except OSError:
        pass
    if not s.wait_gone(state, args.timeout):
        if s.start_time(state.init_pid) == state.init_start:
            os.kill(state.init_pid, signal.SIGKILL)
        s.wait_gone(state, 5.0)
    # The keeper removes the state when its sandbox ends; make sure of it.
    if s.start_time(state.keeper_pid) == state.keeper_start:
        deadline = 50
        while os.path.exists(os.path.join(s.session_dir(name), "state.json")) and deadline:
            import time

            time.sleep(0.02)
            deadline -= 1
    s.remove_session_dir(name)
    return 0


def add(args: argparse.Namespace) -> int:
    from ..errors import SessionError
    from ..runtime import session as s

    state = s.live_state(s.check_name(args.name))
    src = os.path.realpath(os.path.expanduser(args.src))
    if not os.path.exists(src):
        raise SessionError(f"add: {args.src} does not exist")
    dest = args.dest or os.path.basename(src)
    if dest.startswith("/"):
        zone = state.add_dir.rstrip("/") + "/"
        if not dest.startswith(zone):
            raise SessionError(
                f"add: DEST must be inside the session's drop zone {state.add_dir} "
                "(the running programs' Landlock rules only allow that place)"
            )
        dest = dest[len(zone) :]
    reply = s.request(state.name, {"op": "add", "src": src, "dest": dest, "rw": args.rw})
    if not reply.get("ok"):
        raise SessionError(str(reply.get("error")))
    sys.stdout.write(f"{reply['path']}\n")
    return 0
