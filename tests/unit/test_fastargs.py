"""The argparse-free fast path for `ringfence run` must mean exactly what argparse means."""

from __future__ import annotations

import argparse

import pytest

from ringfence.commands import _fastargs, run


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringfence")
    sub = parser.add_subparsers(dest="subcommand")
    run.register(sub)
    return sub.choices["run"]


def test_table_matches_argparse_definitions():
    p = _run_parser()
    seen = {}
    for action in p._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            assert flag in _fastargs.RUN_OPTIONS, f"{flag} missing from the fast path"
            dest, n, repeat, _ = _fastargs.RUN_OPTIONS[flag]
            assert dest == action.dest
            expected_n = 0 if action.nargs == 0 else (action.nargs or 1)
            assert n == expected_n, flag
            assert repeat == isinstance(action, argparse._AppendAction), flag
            seen[flag] = True
    assert set(seen) == set(_fastargs.RUN_OPTIONS)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--profile", "service", "--net", "user", "--json"],
        ["--ro-bind", "/a", "/b", "--ro-bind", "/c", "/d", "--tmpfs", "/x", "--pass-fd", "7"],
        ["--setenv", "A", "1", "--keep-env", "TERM", "--set", "ProtectHome=yes", "-p", "void"],
        ["--vault", "/v:/m", "--passfile", "pw", "--publish", "8080:80", "--allow-host-port", "5"],
    ],
)
def test_same_namespace_as_argparse(argv):
    fast = _fastargs.parse_run(argv, ["true"])
    slow = _run_parser().parse_args([*argv])
    slow.command = ["true"]
    assert fast is not None
    for key, value in vars(slow).items():
        if key == "command_module":
            continue
        assert getattr(fast, key) == value, key


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--bogus"],
        ["--net", "wifi"],
        ["--ro-bind", "/a"],
        ["--pass-fd", "x"],
        ["--askpass", "a", "--passfile", "b"],
        ["--profile=strict"],
        ["positional"],
    ],
)
def test_unusual_input_falls_back_to_argparse(argv):
    assert _fastargs.parse_run(argv, ["true"]) is None
