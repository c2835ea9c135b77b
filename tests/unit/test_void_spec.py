"""Void specs: reading, validation (errors name the entrypoint and the field), fd layout, and
compiling an entrypoint into a plan. Pure: nothing here opens, binds or runs anything."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from ringfence.errors import SpecError
from ringfence.plan import Bind, Proc, Symlink, Tmpfs
from ringfence.void import spec as vs

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"

PIPELINE = """
[pipes.p]
[entrypoints.a]
binary = "/bin/true"
stdout = { pipe = "p" }
[entrypoints.b]
binary = "/bin/true"
trigger = "pipe p"
stdin = "message"
"""


def load(tmp_path: Path, text: str, name: str = "spec.toml", **variables: str) -> vs.Spec:
    path = tmp_path / name
    path.write_text(text)
    return vs.load_spec(str(path), variables)


def error(tmp_path: Path, text: str, name: str = "spec.toml", **variables: str) -> str:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text, name, **variables)
    return str(info.value)


# --- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["fib", "gzip", "tls-server"])
def test_examples_are_valid_and_compile(example: str, tmp_path: Path) -> None:
    variables = {}
    if example == "tls-server":  # compiling checks that files opened for reading exist
        for name in ("cert", "key"):
            (tmp_path / f"{name}.pem").write_text("-")
            variables[name] = str(tmp_path / f"{name}.pem")
    spec = vs.load_spec(str(EXAMPLES / example / "spec.toml"), variables)
    compiled = vs.compile_spec(spec)
    assert set(compiled) == set(spec.entrypoints)
    for c in compiled.values():
        assert c.plan.profile.root == "empty"
        assert "net" in c.plan.namespaces
        assert c.plan.seccomp is not None and c.plan.landlock is not None


def test_fib_void_holds_only_its_closure() -> None:
    spec = vs.load_spec(str(EXAMPLES / "fib" / "spec.toml"))
    c = vs.compile_spec(spec)["fib"]
    binds = {op.dest for op in c.plan.mounts if isinstance(op, Bind)}
    assert binds == set(c.closure.files())
    assert all(isinstance(op, (Bind, Symlink)) for op in c.plan.mounts)
    assert not any(isinstance(op, (Proc, Tmpfs)) for op in c.plan.mounts)


def test_json_and_toml_specs_are_the_same(tmp_path: Path) -> None:
    toml_spec = load(tmp_path, PIPELINE)
    doc = {
        "pipes": {"p": {}},
        "entrypoints": {
            "a": {"binary": "/bin/true", "stdout": {"pipe": "p"}},
            "b": {"binary": "/bin/true", "trigger": "pipe p", "stdin": "message"},
        },
    }
    json_spec = load(tmp_path, json.dumps(doc), name="spec.json")
    assert json_spec.entrypoints == toml_spec.entrypoints
    assert json_spec.pipes == toml_spec.pipes


def test_json_duplicate_key_is_refused(tmp_path: Path) -> None:
    text = '{"entrypoints": {"a": {"binary": "/bin/true"}, "a": {"binary": "/bin/false"}}}'
    assert "'a' appears twice" in error(tmp_path, text, name="spec.json")


# --- errors name the entrypoint and the field -------------------------------------------------


def test_unknown_entrypoint_field_suggests_the_right_one(tmp_path: Path) -> None:
    msg = error(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nargz = []\n')
    assert "entrypoint 'a'" in msg and "'argz'" in msg and "did you mean 'args'" in msg


def test_missing_binary(tmp_path: Path) -> None:
    msg = error(tmp_path, "[entrypoints.a]\nargs = []\n")
    assert "entrypoint 'a', field binary: missing" in msg


def test_pipe_with_two_writers_names_both(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        PIPELINE
        + '[entrypoints.c]\nbinary = "/bin/true"\nargs = [{ pipe = "p", end = "write" }]\n',
    )
    assert "pipe 'p' has 2 writers" in msg
    assert "entrypoint 'a' (stdout)" in msg and "entrypoint 'c' (args[0])" in msg


def test_pipe_with_two_readers(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        PIPELINE + '[entrypoints.c]\nbinary = "/bin/true"\nstdin = { pipe = "p" }\n',
    )
    assert "pipe 'p' has 2 readers" in msg
    assert "entrypoint 'b' (trigger)" in msg and "entrypoint 'c' (stdin)" in msg


def test_pipe_without_reader(tmp_path: Path) -> None:
    msg = error(
        tmp_path, '[pipes.p]\n[entrypoints.a]\nbinary = "/bin/true"\nstdout = { pipe = "p" }\n'
    )
    assert "pipe 'p' has no reader" in msg and "entrypoint 'a' (stdout)" in msg


def test_declared_pipe_nobody_uses(tmp_path: Path) -> None:
    assert "pipe 'q' has no reader" in error(tmp_path, PIPELINE + "[pipes.q]\n")


def test_undeclared_pipe_in_args(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        '[entrypoints.a]\nbinary = "/bin/true"\nargs = ["x", { pipe = "nope", end = "read" }]\n',
    )
    assert "entrypoint 'a', field args[1]: pipe 'nope' is not declared" in msg


def test_undeclared_trigger(tmp_path: Path) -> None:
    msg = error(tmp_path, PIPELINE.replace('trigger = "pipe p"', 'trigger = "pipe pp"'))
    assert "entrypoint 'b', field trigger: pipe 'pp' is not declared" in msg
    assert "did you mean 'p'" in msg


def test_undeclared_listener(tmp_path: Path) -> None:
    msg = error(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nargs = [{ listener = "web" }]\n')
    assert "entrypoint 'a', field args[0]: listener 'web' is not declared" in msg


def test_listener_nobody_receives(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        '[listeners.web]\naddress = "127.0.0.1:0"\n[entrypoints.a]\nbinary = "/bin/true"\n',
    )
    assert "listener 'web' is declared but no entrypoint receives it" in msg


def test_listener_address_must_be_an_ip(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        '[listeners.web]\naddress = "example.org:443"\n[entrypoints.a]\nbinary = "/bin/true"\n',
    )
    assert "listeners.web.address" in msg and "not an IP address" in msg


def test_socket_needs_exactly_two_ends(tmp_path: Path) -> None:
    text = '[sockets.s]\n[entrypoints.a]\nbinary = "/bin/true"\nargs = [{ socket = "s" }]\n'
    assert "socket 's' is used by 1 endpoint(s) (entrypoint 'a' (args[0]))" in error(tmp_path, text)
    three = (
        text
        + '[entrypoints.b]\nbinary = "/bin/true"\nargs = [{ socket = "s" }, { socket = "s" }]\n'
    )
    assert "used by 3 endpoint(s)" in error(tmp_path, three)


def test_stream_socket_cannot_be_a_trigger(tmp_path: Path) -> None:
    text = (
        '[sockets.s]\ntype = "stream"\n[entrypoints.a]\nbinary = "/bin/true"\n'
        'args = [{ socket = "s" }]\n[entrypoints.b]\nbinary = "/bin/true"\ntrigger = "socket s"\n'
    )
    assert 'a trigger needs type = "seqpacket"' in error(tmp_path, text)


def test_cycle_of_triggers_is_unreachable(tmp_path: Path) -> None:
    text = """
[pipes.ab]
[pipes.ba]
[entrypoints.start]
binary = "/bin/true"
[entrypoints.a]
binary = "/bin/true"
trigger = "pipe ba"
stdout = { pipe = "ab" }
[entrypoints.b]
binary = "/bin/true"
trigger = "pipe ab"
stdout = { pipe = "ba" }
"""
    msg = error(tmp_path, text)
    assert "entrypoint 'a', field trigger: unreachable" in msg
    assert "entrypoint 'b' (stdout)" in msg


def test_spec_without_startup_entrypoint_is_unreachable(tmp_path: Path) -> None:
    text = '[sockets.s]\n[entrypoints.a]\nbinary = "/bin/true"\ntrigger = "socket s"\nargs = [{ socket = "s" }]\n'
    assert "entrypoint 'a', field trigger: unreachable" in error(tmp_path, text)


def test_message_needs_a_trigger(tmp_path: Path) -> None:
    msg = error(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nargs = [{ message = "data" }]\n')
    assert "entrypoint 'a', field args[0]: a startup entrypoint has no trigger message" in msg
    msg = error(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nstdin = "message"\n')
    assert "entrypoint 'a', field stdin" in msg


def test_message_fds_need_a_socket_trigger(tmp_path: Path) -> None:
    msg = error(tmp_path, PIPELINE + 'args = [{ message = "fds" }]\n')
    assert "entrypoint 'b', field args[0]: only a socket trigger's messages carry fds" in msg


def test_bad_trigger_word(tmp_path: Path) -> None:
    msg = error(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\ntrigger = "cron daily"\n')
    assert "entrypoint 'a', field trigger: 'cron daily'" in msg


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('"/usr/lib:../etc"', "must be an absolute path"),
        ('"/usr/lib:/a/../../etc"', "escapes with '..'"),
        ('"/usr/lib:/"', "is the void's root"),
        ('"/usr/lib:/x:rwx"', "expected ro or rw"),
        ('"lib"', "is relative: say where it goes inside the void"),
    ],
)
def test_filesystem_destination_cannot_escape(tmp_path: Path, entry: str, words: str) -> None:
    (tmp_path / "lib").mkdir()
    msg = error(tmp_path, f'[entrypoints.a]\nbinary = "/bin/true"\nfilesystem = [{entry}]\n')
    assert "entrypoint 'a', field filesystem[0]" in msg and words in msg


def test_relative_host_path_cannot_leave_the_spec_directory(tmp_path: Path) -> None:
    sub = tmp_path / "app"
    sub.mkdir()
    (tmp_path / "secret").write_text("x")
    path = sub / "spec.toml"
    path.write_text('[entrypoints.a]\nbinary = "/bin/true"\nargs = [{ file = "../secret" }]\n')
    with pytest.raises(
        SpecError, match=r"entrypoint 'a', field args\[0\]\.file: '\.\./secret' escapes"
    ):
        vs.load_spec(str(path))


def test_relative_host_path_cannot_leave_through_a_symlink(tmp_path: Path) -> None:
    sub = tmp_path / "app"
    sub.mkdir()
    (tmp_path / "secret").write_text("x")
    (sub / "link").symlink_to(tmp_path / "secret")
    path = sub / "spec.toml"
    path.write_text('[entrypoints.a]\nbinary = "/bin/true"\nfilesystem = ["link:/secret"]\n')
    with pytest.raises(
        SpecError, match=r"field filesystem\[0\]: 'link' escapes the spec's directory"
    ):
        vs.load_spec(str(path))


def test_two_entries_cannot_share_a_destination(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        '[entrypoints.a]\nbinary = "/bin/true"\nfilesystem = ["/usr/lib:/x", "/etc:/x"]\n',
    )
    assert (
        "entrypoint 'a', field filesystem[1]: /x is already the destination of filesystem[0]" in msg
    )


def test_only_one_entrypoint_inherits_stdin(tmp_path: Path) -> None:
    text = '[entrypoints.a]\nbinary = "/bin/true"\nstdin = "inherit"\n'
    msg = error(tmp_path, text + text.replace(".a]", ".b]"))
    assert "entrypoint 'b', field stdin" in msg and "taken by entrypoint 'a'" in msg


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ('args = [{ file = "/etc/hostname", mode = "x" }]', "args[0].mode: 'x'"),
        ('args = [{ pipe = "p" }]', "args[0].end: say which end"),
        ('args = [{ file = "/a", pipe = "p" }]', "exactly one of"),
        ('args = [{ message = "all" }]', "args[0].message: 'all'"),
        ('stdout = "message"', "field stdout: 'message'"),
        ('stdout = { pipe = "p", end = "read" }', "stdout takes the write end"),
        ('hostname = "no/slash"', "field hostname"),
        ("parallel = 4", "field parallel: only triggered entrypoints"),
        ('environment = { "1X" = "y" }', "field environment"),
        ('proc = "yes"', "field proc: expected true or false"),
    ],
)
def test_bad_field_values_name_the_field(tmp_path: Path, fields: str, words: str) -> None:
    msg = error(tmp_path, f'[entrypoints.a]\nbinary = "/bin/true"\n{fields}\n')
    assert "entrypoint 'a'" in msg and words in msg


def test_bad_pipe_framing(tmp_path: Path) -> None:
    assert "pipes.p.framing: 'words'" in error(
        tmp_path, PIPELINE.replace("[pipes.p]", '[pipes.p]\nframing = "words"')
    )


def test_no_entrypoints(tmp_path: Path) -> None:
    assert "entrypoints: the spec has none" in error(tmp_path, 'description = "x"\n')


# --- variables ---------------------------------------------------------------------------------


def test_variables_have_defaults_and_overrides(tmp_path: Path) -> None:
    text = (
        '[vars]\nport = "8443"\n[listeners.l]\naddress = "127.0.0.1:${port}"\n'
        '[entrypoints.a]\nbinary = "/bin/true"\nargs = [{ listener = "l" }, "$${port}"]\n'
    )
    assert load(tmp_path, text).listeners["l"].port == 8443
    spec = load(tmp_path, text, port="0")
    assert spec.listeners["l"].port == 0
    assert spec.entrypoints["a"].args[1] == vs.Text("${port}")


def test_undeclared_variable_names_the_field(tmp_path: Path) -> None:
    msg = error(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nargs = ["${nope}"]\n')
    assert "entrypoint 'a', field args[0]: ${nope} is not a declared variable" in msg


def test_override_of_undeclared_variable(tmp_path: Path) -> None:
    msg = error(tmp_path, '[vars]\nport = "1"\n[entrypoints.a]\nbinary = "/bin/true"\n', prt="2")
    assert "--var prt" in msg and "did you mean 'port'" in msg


# --- fd layout and plans -----------------------------------------------------------------------


def test_fds_are_numbered_in_order_and_message_fds_come_last(tmp_path: Path) -> None:
    text = """
[sockets.s]
[listeners.l]
address = "127.0.0.1:0"
[entrypoints.a]
binary = "/bin/true"
args = [{ socket = "s" }]
[entrypoints.b]
binary = "/bin/true"
trigger = "socket s"
args = ["-v", { message = "fds" }, { file = "/etc/hostname" }, { listener = "l" }, { message = "data" }]
"""
    ep = load(tmp_path, text).entrypoints["b"]
    assert [n for n, _ in ep.fd_args()] == [3, 4]
    assert vs.static_argv(ep) == ("/bin/true", "-v", "<message fds>", "3", "4", "<message data>")


def test_closure_keys_bind_the_closure_and_its_links() -> None:
    keys = vs.closure_keys("/usr/bin/gzip")
    binds = keys["BindReadOnlyPaths"]
    assert any(b.split(":")[0] == os.path.realpath("/usr/bin/gzip") for b in binds)
    assert any("libc.so" in b for b in binds)
    assert all(":" in link for link in keys.get("Symlinks", []))
    assert "ProcMounts" not in keys


def test_entrypoint_plan_adds_only_what_the_spec_grants(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    text = """
[entrypoints.a]
binary = "/usr/bin/gzip"
filesystem = ["data:/data:rw", { host = "/usr/share/doc", path = "/doc" }]
tmpfs = ["/scratch"]
proc = true
hostname = "part-a"
environment = { GREETING = "hi" }
"""
    c = vs.compile_entrypoint(load(tmp_path, text).entrypoints["a"])
    plan = c.plan
    binds = {op.dest: op for op in plan.mounts if isinstance(op, Bind)}
    assert binds["/data"].readonly is False and binds["/data"].src == str(tmp_path / "data")
    assert binds["/doc"].readonly is True
    assert set(binds) == {"/data", "/doc", *c.closure.files()}
    assert [op.dest for op in plan.mounts if isinstance(op, Tmpfs)] == ["/scratch"]
    assert [op.dest for op in plan.mounts if isinstance(op, Proc)] == ["/proc"]
    assert plan.hostname == "part-a" and plan.env["GREETING"] == "hi"
    assert plan.network == "none" and "net" in plan.namespaces
    assert plan.landlock.tcp_bind == () and plan.landlock.tcp_connect == ()


def test_missing_binary_is_reported_at_compile_time(tmp_path: Path) -> None:
    spec = load(tmp_path, '[entrypoints.a]\nbinary = "/no/such/program"\n')
    with pytest.raises(SpecError, match="entrypoint 'a', field binary: /no/such/program"):
        vs.compile_spec(spec)


def test_missing_filesystem_source_is_reported_at_compile_time(tmp_path: Path) -> None:
    spec = load(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nfilesystem = ["/no/such:/x"]\n')
    with pytest.raises(
        SpecError, match=r"entrypoint 'a', field filesystem\[0\]: /no/such does not exist"
    ):
        vs.compile_spec(spec)


def test_missing_library_is_reported_as_libraries(tmp_path: Path) -> None:
    spec = load(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nlibraries = ["libnosuch.so.9"]\n')
    with pytest.raises(SpecError, match="entrypoint 'a', field libraries"):
        vs.compile_spec(spec)


def test_listener_ipv6_address(tmp_path: Path) -> None:
    text = '[listeners.l]\naddress = "[::1]:0"\n[entrypoints.a]\nbinary = "/bin/true"\nargs = [{ listener = "l" }]\n'
    lsn = load(tmp_path, text).listeners["l"]
    assert (lsn.host, lsn.port, lsn.family) == ("::1", 0, socket.AF_INET6)


def test_limits_become_profile_limits(tmp_path: Path) -> None:
    text = (
        '[entrypoints.a]\nbinary = "/bin/true"\nlimits = { LimitNOFILE = 16, LimitFSIZE = "1M" }\n'
    )
    plan = vs.compile_entrypoint(load(tmp_path, text).entrypoints["a"]).plan
    assert {lim.key for lim in plan.limits} == {"LimitNOFILE", "LimitFSIZE"}


def test_limits_accept_only_resource_limits(tmp_path: Path) -> None:
    msg = error(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nlimits = { Network = "host" }\n')
    assert "entrypoint 'a', field limits: 'Network' is not a resource limit" in msg
    msg = error(tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nlimits = { LimitNOFLE = 1 }\n')
    assert "did you mean 'LimitNOFILE'" in msg


def test_bad_limit_value_names_the_entrypoint(tmp_path: Path) -> None:
    spec = load(
        tmp_path, '[entrypoints.a]\nbinary = "/bin/true"\nlimits = { LimitNOFILE = "lots" }\n'
    )
    with pytest.raises(SpecError, match="entrypoint 'a': LimitNOFILE"):
        vs.compile_spec(spec)
