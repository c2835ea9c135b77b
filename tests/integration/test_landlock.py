"""Landlock against the real kernel: a forked, unprivileged child with no_new_privs applies a
policy and then attacks files, TCP ports, abstract unix sockets and signals.

Every attack also runs in an unconfined control child (same uid, same layout) and must succeed
there, so a denial proves Landlock did it, not file modes. As root the children first drop to
uid/gid 65534; as a normal user they just fork.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ringfence.errors import KernelError, SandboxError, UnsupportedError
from ringfence.kernel._syscall import check, libc
from ringfence.kernel.landlock import (
    LandlockPolicy,
    PathRule,
    Resolved,
    abi_version,
    apply,
    prepare,
)

ABI = abi_version()
pytestmark = pytest.mark.skipif(ABI == 0, reason="Landlock is not available on this kernel")

NOBODY = 65534
PR_SET_NO_NEW_PRIVS = 38  # linux/prctl.h
TRUE = shutil.which("true") or "/usr/bin/true"
CAT = shutil.which("cat") or "/usr/bin/cat"

# The system part of every policy: enough to exec binaries from /usr.
SYSTEM_RULES = (
    PathRule("/usr", "rx"),
    PathRule("/etc", "ro"),
    PathRule("/bin", "rx", required=False),
    PathRule("/lib", "rx", required=False),
    PathRule("/lib64", "rx", required=False),
    PathRule("/lib32", "rx", required=False),
)


# --- harness ----------------------------------------------------------------------------------


def _become_unprivileged() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)


def _set_no_new_privs() -> None:
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl", "PR_SET_NO_NEW_PRIVS")


def run_child(
    probe: Callable[[], object],
    policy: LandlockPolicy | Resolved | None = None,
    *,
    abi_override: int | None = None,
    no_new_privs: bool = True,
) -> dict[str, object]:
    """Fork an unprivileged child, optionally confine it, run ``probe`` and return
    ``{"report": ..., "result": ...}`` or ``{"error": "Type: message", "after": ...}`` where
    ``after`` is the probe's result after apply() raised."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        out: dict[str, object]
        try:
            os.close(rfd)
            _become_unprivileged()
            if no_new_privs:
                _set_no_new_privs()
            try:
                report = apply(policy, abi_override=abi_override) if policy else None
            except Exception as exc:
                out = {"error": f"{type(exc).__name__}: {exc}", "after": probe()}
            else:
                out = {"report": report.as_dict() if report else None, "result": probe()}
            data = json.dumps(out).encode()
        except BaseException as exc:
            data = json.dumps({"crash": f"{type(exc).__name__}: {exc}"}).encode()
        try:
            while data:
                data = data[os.write(wfd, data) :]
        finally:
            os._exit(0)
    os.close(wfd)
    chunks = []
    with os.fdopen(rfd, "rb") as pipe:
        while chunk := pipe.read():
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, object] = json.loads(b"".join(chunks))
    assert "crash" not in result, result["crash"]
    return result


def attempt(action: Callable[[], object]) -> int:
    """0 if ``action`` succeeded, else its errno."""
    try:
        action()
    except OSError as exc:
        return exc.errno or -1
    return 0


def spawn(argv: list[str]) -> int:
    """Run ``argv`` (output discarded into a pipe); errno if exec failed, else exit code."""
    rfd, wfd = os.pipe()
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            {},
            file_actions=[(os.POSIX_SPAWN_DUP2, wfd, 1), (os.POSIX_SPAWN_DUP2, wfd, 2)],
        )
    except OSError as exc:
        return exc.errno or -1
    finally:
        os.close(wfd)
    with os.fdopen(rfd, "rb") as pipe:  # drain, so the program never sees EPIPE
        while pipe.read(65536):
            pass
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 0 if code == 0 else 1000 + abs(code)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- layout -----------------------------------------------------------------------------------


@dataclass
class Layout:
    base: str
    rw: str  # granted rw
    rw2: str  # granted rw (renames between rw and rw2 are allowed)
    rwx: str  # granted rwx (a file moved here from rw would gain execute)
    ro: str  # granted ro: holds file.txt and an executable copy of true
    outside: str  # granted nothing: holds secret.txt

    def rules(self) -> tuple[PathRule, ...]:
        return (
            *SYSTEM_RULES,
            PathRule(self.rw, "rw"),
            PathRule(self.rw2, "rw"),
            PathRule(self.rwx, "rwx"),
            PathRule(self.ro, "ro"),
        )


def make_layout() -> Layout:
    base = tempfile.mkdtemp(prefix="rf-landlock-", dir="/tmp")
    dirs = {name: os.path.join(base, name) for name in ("rw", "rw2", "rwx", "ro", "outside")}
    for path in dirs.values():
        os.mkdir(path)
    Path(dirs["ro"], "file.txt").write_text("read-only data\n")
    Path(dirs["outside"], "secret.txt").write_text("secret\n")
    for name in ("a", "b", "c", "d", "trunc"):
        Path(dirs["rw"], name).write_text(name)
    for where in ("ro", "rw"):
        shutil.copy(TRUE, os.path.join(dirs[where], "true"))
        os.chmod(os.path.join(dirs[where], "true"), 0o755)
    if os.geteuid() == 0:  # the children run as nobody: let them own what they attack
        for root, subdirs, files in os.walk(base):
            for name in [root, *(os.path.join(root, n) for n in subdirs + files)]:
                os.chown(name, NOBODY, NOBODY)
    return Layout(base=base, **dirs)


@pytest.fixture
def layout() -> Iterator[Layout]:
    lay = make_layout()
    try:
        yield lay
    finally:
        shutil.rmtree(lay.base)


# --- the main attack run ----------------------------------------------------------------------


@dataclass
class Targets:
    allowed_port: int  # a listener on 127.0.0.1 the policy allows connecting to
    denied_port: int  # a listener on 127.0.0.1 the policy does not allow
    bind_allowed: int
    bind_denied: int
    abstract_name: str  # an abstract unix listener created outside the domain
    sibling_pid: int  # a process outside the domain, same uid


def attacks(lay: Layout, t: Targets) -> Callable[[], dict[str, int]]:
    def tcp_connect(port: int) -> None:
        with socket.socket() as s:
            s.connect(("127.0.0.1", port))

    def tcp_bind(port: int) -> None:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))

    def abstract_connect(name: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(name)

    def own_abstract_socket() -> None:
        name = f"\0ringfence-test-own-{os.getpid()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
            srv.bind(name)
            srv.listen(1)
            abstract_connect(name)

    def create_in(d: str) -> None:
        with open(os.path.join(d, "new.txt"), "x") as f:
            f.write("new")

    def probe() -> dict[str, int]:
        j = os.path.join
        return {
            "read_outside": attempt(lambda: read(j(lay.outside, "secret.txt"))),
            "list_outside": attempt(lambda: os.listdir(lay.outside)),
            "read_ro": attempt(lambda: read(j(lay.ro, "file.txt"))),
            "read_usr": attempt(lambda: os.listdir("/usr/bin")),
            "write_ro": attempt(lambda: os.close(os.open(j(lay.ro, "file.txt"), os.O_WRONLY))),
            "create_in_ro": attempt(lambda: create_in(lay.ro)),
            "create_outside": attempt(lambda: create_in(lay.outside)),
            "create_in_rw": attempt(lambda: create_in(lay.rw)),
            "mkdir_in_rw": attempt(lambda: os.mkdir(j(lay.rw, "sub"))),
            "truncate_ro": attempt(lambda: os.truncate(j(lay.ro, "file.txt"), 0)),
            "truncate_rw": attempt(lambda: os.truncate(j(lay.rw, "trunc"), 0)),
            "exec_usr": spawn([TRUE]),
            "exec_from_ro": spawn([j(lay.ro, "true")]),
            "exec_from_rw": spawn([j(lay.rw, "true")]),
            "exec_cat_outside": spawn([CAT, j(lay.outside, "secret.txt")]),
            "exec_cat_ro": spawn([CAT, j(lay.ro, "file.txt")]),
            "rename_rw_to_outside": attempt(lambda: os.rename(j(lay.rw, "a"), j(lay.outside, "a"))),
            "link_rw_to_outside": attempt(lambda: os.link(j(lay.rw, "b"), j(lay.outside, "b"))),
            "rename_rw_to_rw2": attempt(lambda: os.rename(j(lay.rw, "c"), j(lay.rw2, "c"))),
            "rename_rw_to_rwx": attempt(lambda: os.rename(j(lay.rw, "d"), j(lay.rwx, "d"))),
            "link_outside_into_rw": attempt(
                lambda: os.link(j(lay.outside, "secret.txt"), j(lay.rw, "secret.txt"))
            ),
            "tcp_connect_allowed": attempt(lambda: tcp_connect(t.allowed_port)),
            "tcp_connect_denied": attempt(lambda: tcp_connect(t.denied_port)),
            "tcp_bind_allowed": attempt(lambda: tcp_bind(t.bind_allowed)),
            "tcp_bind_ephemeral": attempt(lambda: tcp_bind(0)),
            "tcp_bind_denied": attempt(lambda: tcp_bind(t.bind_denied)),
            "abstract_outside": attempt(lambda: abstract_connect(t.abstract_name)),
            "abstract_own": attempt(own_abstract_socket),
            "signal0_sibling": attempt(lambda: os.kill(t.sibling_pid, 0)),
            "signal_self": attempt(lambda: os.kill(os.getpid(), 0)),
        }

    return probe


def confined_only(t: Targets) -> Callable[[], dict[str, int]]:
    # Attacks with side effects that the control child must not perform.
    return lambda: {"sigterm_sibling": attempt(lambda: os.kill(t.sibling_pid, signal.SIGTERM))}


@dataclass
class Outcome:
    control: dict[str, int]
    confined: dict[str, int]
    report: dict[str, object]
    sibling_alive: bool
    layout: Layout


@pytest.fixture(scope="module")
def outcome() -> Iterator[Outcome]:
    listeners: list[socket.socket] = []
    for _ in range(2):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        listeners.append(srv)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract_name = f"\0ringfence-test-{os.getpid()}-{secrets.token_hex(4)}"
    abstract.bind(abstract_name)
    abstract.listen(16)
    as_nobody = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}
    sibling = subprocess.Popen(["sleep", "600"], **as_nobody)  # type: ignore[call-overload]
    layouts: list[Layout] = []
    try:
        targets = Targets(
            allowed_port=listeners[0].getsockname()[1],
            denied_port=listeners[1].getsockname()[1],
            bind_allowed=free_tcp_port(),
            bind_denied=free_tcp_port(),
            abstract_name=abstract_name,
            sibling_pid=sibling.pid,
        )
        control_layout = make_layout()
        layouts.append(control_layout)
        control = run_child(attacks(control_layout, targets))
        lay = make_layout()
        layouts.append(lay)
        policy = LandlockPolicy(
            paths=lay.rules(),
            tcp_bind=(0, targets.bind_allowed) if ABI >= 4 else None,
            tcp_connect=(targets.allowed_port,) if ABI >= 4 else None,
            scope_abstract_unix=ABI >= 6,
            scope_signals=ABI >= 6,
        )
        probe = attacks(lay, targets)
        extra = confined_only(targets)
        confined = run_child(lambda: {**probe(), **extra()}, policy)
        assert "error" not in confined, confined["error"]
        alive = sibling.poll() is None
        yield Outcome(
            control=control["result"],  # type: ignore[arg-type]
            confined=confined["result"],  # type: ignore[arg-type]
            report=confined["report"],  # type: ignore[arg-type]
            sibling_alive=alive,
            layout=lay,
        )
    finally:
        sibling.kill()
        sibling.wait()
        abstract.close()
        for srv in listeners:
            srv.close()
        for lay in layouts:
            shutil.rmtree(lay.base)


def denied(outcome: Outcome, attack: str, err: int = errno.EACCES) -> None:
    assert outcome.control[attack] == 0, f"{attack} fails even without Landlock: test is void"
    assert outcome.confined[attack] == err, (
        f"{attack}: expected {errno.errorcode[err]}, got {outcome.confined[attack]}"
    )


def allowed(outcome: Outcome, attack: str) -> None:
    assert outcome.control[attack] == 0
    assert outcome.confined[attack] == 0, f"{attack} failed under Landlock: {outcome.confined}"


def needs_abi(version: int) -> pytest.MarkDecorator:
    return pytest.mark.skipif(version > ABI, reason=f"needs Landlock ABI {version}")


def test_cannot_read_file_outside_granted_paths(outcome: Outcome) -> None:
    denied(outcome, "read_outside")
    denied(outcome, "list_outside")


def test_granted_read_only_paths_are_readable(outcome: Outcome) -> None:
    allowed(outcome, "read_ro")
    allowed(outcome, "read_usr")
    allowed(outcome, "exec_cat_ro")


def test_cannot_write_or_create_in_read_only_path(outcome: Outcome) -> None:
    denied(outcome, "write_ro")
    denied(outcome, "create_in_ro")
    denied(outcome, "create_outside")


def test_can_create_files_and_dirs_in_read_write_path(outcome: Outcome) -> None:
    allowed(outcome, "create_in_rw")
    allowed(outcome, "mkdir_in_rw")
    assert Path(outcome.layout.rw, "new.txt").read_text() == "new"


@needs_abi(3)
def test_cannot_truncate_read_only_file(outcome: Outcome) -> None:
    denied(outcome, "truncate_ro")
    allowed(outcome, "truncate_rw")
    assert Path(outcome.layout.ro, "file.txt").read_text() == "read-only data\n"


def test_cannot_execute_from_paths_without_execute_right(outcome: Outcome) -> None:
    allowed(outcome, "exec_usr")
    denied(outcome, "exec_from_ro")
    denied(outcome, "exec_from_rw")


def test_executed_program_stays_confined(outcome: Outcome) -> None:
    assert outcome.control["exec_cat_outside"] == 0
    assert outcome.confined["exec_cat_outside"] == 1001  # cat: Permission denied, exit 1


@needs_abi(2)
def test_cannot_rename_or_link_out_of_granted_paths(outcome: Outcome) -> None:
    denied(outcome, "rename_rw_to_outside")
    denied(outcome, "link_rw_to_outside")
    assert Path(outcome.layout.rw, "a").exists()
    assert not Path(outcome.layout.outside, "b").exists()


@needs_abi(2)
def test_cannot_link_secret_into_writable_path(outcome: Outcome) -> None:
    # The link would give the secret rw rights it does not have outside: REFER says EXDEV.
    denied(outcome, "link_outside_into_rw", errno.EXDEV)
    assert not Path(outcome.layout.rw, "secret.txt").exists()


@needs_abi(2)
def test_cannot_launder_file_into_executable_path_by_rename(outcome: Outcome) -> None:
    # Moving a file from rw to rwx would give it execute: REFER refuses with EXDEV.
    denied(outcome, "rename_rw_to_rwx", errno.EXDEV)


@needs_abi(2)
def test_can_rename_between_paths_with_equal_rights(outcome: Outcome) -> None:
    allowed(outcome, "rename_rw_to_rw2")


@needs_abi(4)
def test_cannot_connect_to_tcp_port_not_allowed(outcome: Outcome) -> None:
    denied(outcome, "tcp_connect_denied")
    allowed(outcome, "tcp_connect_allowed")


@needs_abi(4)
def test_cannot_bind_tcp_port_not_allowed(outcome: Outcome) -> None:
    denied(outcome, "tcp_bind_denied")
    allowed(outcome, "tcp_bind_allowed")
    allowed(outcome, "tcp_bind_ephemeral")


@needs_abi(6)
def test_cannot_connect_to_abstract_socket_outside_domain(outcome: Outcome) -> None:
    denied(outcome, "abstract_outside", errno.EPERM)
    allowed(outcome, "abstract_own")


@needs_abi(6)
def test_cannot_signal_process_outside_domain(outcome: Outcome) -> None:
    denied(outcome, "signal0_sibling", errno.EPERM)
    assert outcome.confined["sigterm_sibling"] == errno.EPERM
    assert outcome.sibling_alive
    allowed(outcome, "signal_self")


def test_report_says_what_was_enforced(outcome: Outcome) -> None:
    report = outcome.report
    assert report["enforced"] is True and report["abi"] == ABI
    existing = [r for r in outcome.layout.rules() if os.path.exists(r.path)]
    assert report["fs_rules"] == len(existing)
    skipped = {d["feature"] for d in report["dropped"]}  # type: ignore[attr-defined]
    assert skipped == {f"path:{r.path}" for r in outcome.layout.rules() if r not in existing}
    if ABI >= 6:
        assert report["net_restricted"] == ["bind_tcp", "connect_tcp"]
        assert report["scopes"] == ["abstract_unix_socket", "signal"]


# --- rules on files, missing paths, preconditions -----------------------------------------------


def test_rule_on_a_single_file_grants_only_that_file(layout: Layout) -> None:
    secret = os.path.join(layout.outside, "secret.txt")
    other = os.path.join(layout.outside, "other.txt")
    Path(other).write_text("other")
    if os.geteuid() == 0:
        os.chown(other, NOBODY, NOBODY)
    # "rw" carries directory-only rights; apply() must drop them for a file, not fail (EINVAL).
    policy = LandlockPolicy(paths=(PathRule(secret, "rw"),))
    out = run_child(
        lambda: {
            "read": attempt(lambda: read(secret)),
            "write": attempt(lambda: os.close(os.open(secret, os.O_WRONLY))),
            "other": attempt(lambda: read(other)),
        },
        policy,
    )
    assert out["result"] == {"read": 0, "write": 0, "other": errno.EACCES}


def test_missing_required_path_is_refused_and_nothing_enforced(layout: Layout) -> None:
    secret = os.path.join(layout.outside, "secret.txt")
    policy = LandlockPolicy(paths=(*SYSTEM_RULES, PathRule("/nonexistent-ringfence-path")))
    out = run_child(lambda: attempt(lambda: read(secret)), policy)
    assert str(out["error"]).startswith(SandboxError.__name__)
    assert "/nonexistent-ringfence-path does not exist" in str(out["error"])
    assert out["after"] == 0


def test_missing_optional_path_is_skipped_and_reported(layout: Layout) -> None:
    policy = LandlockPolicy(paths=(PathRule("/nonexistent-ringfence-path", required=False),))
    out = run_child(lambda: attempt(lambda: read(os.path.join(layout.ro, "file.txt"))), policy)
    report = out["report"]
    assert isinstance(report, dict) and report["enforced"] is True and report["fs_rules"] == 0
    assert report["dropped"][0]["feature"] == "path:/nonexistent-ringfence-path"
    assert out["result"] == errno.EACCES


def test_apply_without_no_new_privs_is_refused(layout: Layout) -> None:
    policy = LandlockPolicy(paths=SYSTEM_RULES)
    secret = os.path.join(layout.outside, "secret.txt")
    out = run_child(lambda: attempt(lambda: read(secret)), policy, no_new_privs=False)
    assert str(out["error"]).startswith(KernelError.__name__)
    assert "landlock_restrict_self failed: EPERM" in str(out["error"])
    assert "no_new_privs" in str(out["error"])
    assert out["after"] == 0


def test_policy_prepared_before_fork_is_enforced_in_the_child(layout: Layout) -> None:
    prepared = prepare(LandlockPolicy(paths=(*SYSTEM_RULES, PathRule(layout.ro, "ro"))))
    out = run_child(
        lambda: {
            "ro": attempt(lambda: read(os.path.join(layout.ro, "file.txt"))),
            "outside": attempt(lambda: read(os.path.join(layout.outside, "secret.txt"))),
        },
        prepared,
    )
    assert out["result"] == {"ro": 0, "outside": errno.EACCES}
    refused = run_child(lambda: 0, prepared, abi_override=3)
    assert str(refused["error"]).startswith("ValueError: abi_override goes to prepare()")


@needs_abi(4)
def test_prepare_fails_closed_before_anything_is_built() -> None:
    with pytest.raises(UnsupportedError, match="tcp_bind: needs Landlock ABI 4"):
        prepare(LandlockPolicy(tcp_bind=(80,)), abi_override=3)


# --- required vs best effort on an older ABI (simulated with abi_override) ------------------------


@needs_abi(4)
def test_required_tcp_policy_fails_closed_on_abi_3(layout: Layout) -> None:
    policy = LandlockPolicy(paths=SYSTEM_RULES, tcp_connect=(1,), required=True)
    secret = os.path.join(layout.outside, "secret.txt")
    out = run_child(lambda: attempt(lambda: read(secret)), policy, abi_override=3)
    assert str(out["error"]).startswith(UnsupportedError.__name__)
    assert "tcp_connect: needs Landlock ABI 4" in str(out["error"])
    assert out["after"] == 0  # nothing half-applied


@needs_abi(4)
def test_best_effort_on_abi_3_enforces_files_and_reports_tcp(layout: Layout) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        policy = LandlockPolicy(paths=SYSTEM_RULES, tcp_connect=(), required=False)

        def probe() -> dict[str, int]:
            def connect() -> None:
                with socket.socket() as s:
                    s.connect(("127.0.0.1", port))

            return {
                "read": attempt(lambda: read(os.path.join(layout.outside, "secret.txt"))),
                "connect": attempt(connect),
            }

        out = run_child(probe, policy, abi_override=3)
    report = out["report"]
    assert isinstance(report, dict) and report["abi"] == 3 and report["enforced"] is True
    assert "tcp_connect" in {d["feature"] for d in report["dropped"]}
    assert report["net_restricted"] == []
    assert out["result"] == {"read": errno.EACCES, "connect": 0}


@needs_abi(3)
def test_best_effort_on_abi_2_leaves_truncate_unrestricted(layout: Layout) -> None:
    ro_file = os.path.join(layout.ro, "file.txt")
    policy = LandlockPolicy(paths=(*SYSTEM_RULES, PathRule(layout.ro, "ro")), required=True)
    out = run_child(
        lambda: {
            "write": attempt(lambda: os.close(os.open(ro_file, os.O_WRONLY))),
            "truncate": attempt(lambda: os.truncate(ro_file, 0)),
        },
        policy,
        abi_override=2,
    )
    report = out["report"]
    assert isinstance(report, dict) and "fs:truncate" in {d["feature"] for d in report["dropped"]}
    # ABI 2 cannot restrict truncate: the report says so, and the kernel agrees.
    assert out["result"] == {"write": errno.EACCES, "truncate": 0}


def test_no_landlock_fails_closed_when_required(layout: Layout) -> None:
    policy = LandlockPolicy(paths=SYSTEM_RULES, required=True)
    out = run_child(lambda: 0, policy, abi_override=0)
    assert str(out["error"]).startswith(UnsupportedError.__name__)
    assert "Landlock is unavailable" in str(out["error"])


def test_no_landlock_best_effort_reports_nothing_enforced(layout: Layout) -> None:
    policy = LandlockPolicy(paths=SYSTEM_RULES, required=False)
    secret = os.path.join(layout.outside, "secret.txt")
    out = run_child(lambda: attempt(lambda: read(secret)), policy, abi_override=0)
    report = out["report"]
    assert isinstance(report, dict) and report["enforced"] is False
    assert [d["feature"] for d in report["dropped"]] == ["landlock"]
    assert out["result"] == 0


def test_children_are_unprivileged_with_no_new_privs() -> None:
    # Guards the harness: every attack above runs as a normal user with no_new_privs set.
    out = run_child(
        lambda: [os.geteuid(), Path("/proc/self/status").read_text().count("NoNewPrivs:\t1")]
    )
    assert isinstance(out["result"], list)
    euid, nnp = out["result"]
    assert euid != 0 and nnp == 1
