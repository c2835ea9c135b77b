"""The pure parts of runtime/display.py: profile keys, Xauthority files, display names, and the
refusals start() makes before it runs anything."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ringfence.errors import MissingToolError, ProfileError, SandboxError
from ringfence.runtime import display
from ringfence.runtime.display import DisplayConfig, XauthEntry, parse_keys

# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["auto", "xvfb", "xephyr", "host"])
def test_display_kinds(kind: str) -> None:
    config = parse_keys({"Display": kind})
    assert config == DisplayConfig(kind)
    assert config is not None and config.size == "1280x800"


def test_display_none_means_no_display() -> None:
    assert parse_keys({"Display": "none"}) is None
    assert parse_keys({"Display": " None ", "DisplaySize": "800x600"}) is None


def test_display_size_is_parsed() -> None:
    config = parse_keys({"Display": "xvfb", "DisplaySize": " 1920X1080 "})
    assert config == DisplayConfig("xvfb", "1920x1080")
    assert (config.width, config.height) == (1920, 1080)


@pytest.mark.parametrize("value", ["wayland", "x11", "", "xvfb xephyr", 1, True, None])
def test_bad_display_value_is_refused_naming_key_and_values(value: object) -> None:
    with pytest.raises(ProfileError) as err:
        parse_keys({"Display": value})
    message = str(err.value)
    assert message.startswith("Display:") and "\n" not in message
    assert "none|auto|xvfb|xephyr|host" in message


@pytest.mark.parametrize(
    "size", ["800", "800x", "x600", "63x600", "800x8193", "-800x600", "8e2x600", "１２８x600", 800]
)
def test_bad_display_size_is_refused_naming_key_and_range(size: object) -> None:
    with pytest.raises(ProfileError) as err:
        parse_keys({"Display": "xvfb", "DisplaySize": size})
    message = str(err.value)
    assert message.startswith("DisplaySize:") and "\n" not in message
    assert "WIDTHxHEIGHT" in message


@pytest.mark.parametrize("size", ["64x64", "8192x8192"])
def test_display_size_limits_are_inclusive(size: str) -> None:
    assert parse_keys({"Display": "xvfb", "DisplaySize": size}) == DisplayConfig("xvfb", size)


def test_config_validates_on_construction() -> None:
    with pytest.raises(ProfileError, match="Display:"):
        DisplayConfig("vnc")
    with pytest.raises(ProfileError, match="DisplaySize:"):
        DisplayConfig("xvfb", "10x10")


def test_unknown_key_is_refused_by_name() -> None:
    with pytest.raises(ProfileError, match="DisplaySise"):
        parse_keys({"Display": "xvfb", "DisplaySise": "800x600"})


def test_display_size_without_display_is_refused() -> None:
    with pytest.raises(ProfileError, match="DisplaySize: set without Display="):
        parse_keys({"DisplaySize": "800x600"})


# -- Xauthority files ---------------------------------------------------------------------------


def test_xauth_round_trip() -> None:
    entries = [
        display.cookie_entry(os.urandom(16)),
        XauthEntry(display.FAMILY_LOCAL, b"somehost", "12", b"MIT-MAGIC-COOKIE-1", b"\0" * 16),
        XauthEntry(0, b"\x7f\0\0\x01", "", b"XDM-AUTHORIZATION-1", os.urandom(16)),
    ]
    assert display.decode_xauth(display.encode_xauth(entries)) == entries


def test_cookie_entry_layout_is_the_xauthority_format() -> None:
    cookie = bytes(range(16))
    data = display.encode_xauth([display.cookie_entry(cookie, "0")])
    assert data == (
        b"\xff\xff" + b"\0\0" + b"\0\x010" + b"\0\x12MIT-MAGIC-COOKIE-1" + b"\0\x10" + cookie
    )


def test_truncated_xauthority_is_an_error() -> None:
    data = display.encode_xauth([display.cookie_entry(os.urandom(16))])
    with pytest.raises(ValueError, match="truncated"):
        display.decode_xauth(data[:-1])


@pytest.mark.skipif(shutil.which("xauth") is None, reason="xauth not installed")
def test_xauth_tool_reads_our_file_as_a_wildcard_cookie(tmp_path: Path) -> None:
    cookie = os.urandom(16)
    path = tmp_path / "Xauthority"
    path.write_bytes(display.encode_xauth([display.cookie_entry(cookie, "0")]))
    out = subprocess.run(
        ["xauth", "-f", str(path), "list"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    # xauth shows FamilyWild as "#ffff#" followed by the (empty) address and ":NUMBER"
    assert out == ["#ffff##:0", "MIT-MAGIC-COOKIE-1", cookie.hex()]


@pytest.mark.skipif(shutil.which("xauth") is None, reason="xauth not installed")
def test_we_read_what_the_xauth_tool_writes(tmp_path: Path) -> None:
    path = tmp_path / "Xauthority"
    cookie = os.urandom(16).hex()
    subprocess.run(
        ["xauth", "-f", str(path), "add", "myhost/unix:7", "MIT-MAGIC-COOKIE-1", cookie],
        capture_output=True,
        check=True,
        timeout=10,
    )
    entries = display.decode_xauth(path.read_bytes())
    assert entries == [
        XauthEntry(
            display.FAMILY_LOCAL, b"myhost", "7", b"MIT-MAGIC-COOKIE-1", bytes.fromhex(cookie)
        )
    ]
    assert display.host_cookies(path.read_bytes(), 7, "myhost") == entries
    assert display.host_cookies(path.read_bytes(), 7, "otherhost") == []
    assert display.host_cookies(path.read_bytes(), 0, "myhost") == []


# -- host display names -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "number"), [(":0", 0), (":12", 12), (":1.0", 1), ("unix:3", 3)])
def test_local_display_names(name: str, number: int) -> None:
    assert display.parse_host_display(name) == number


@pytest.mark.parametrize("name", ["localhost:10.0", "192.0.2.1:0", "[::1]:0", "host/unix:0"])
def test_tcp_display_is_refused_for_host_mode(name: str) -> None:
    with pytest.raises(SandboxError, match="not a local display"):
        display.parse_host_display(name)


@pytest.mark.parametrize("name", ["", "0", ":", ":x", "wayland-0"])
def test_garbage_display_name_is_refused(name: str) -> None:
    with pytest.raises(SandboxError, match="not an X display name"):
        display.parse_host_display(name)


# -- choices and refusals before anything runs --------------------------------------------------


def _bin_with(tmp_path: Path, *names: str) -> str:
    for name in names:
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\nexit 1\n")
        tool.chmod(0o755)
    return str(tmp_path)


def test_auto_is_xephyr_in_a_graphical_session_with_xephyr(tmp_path: Path) -> None:
    path = _bin_with(tmp_path, "Xephyr", "Xvfb")
    auto = DisplayConfig("auto")
    assert display.resolve_kind(auto, {"DISPLAY": ":5", "PATH": path}) == "xephyr"
    assert display.resolve_kind(auto, {"PATH": path}) == "xvfb"
    assert display.resolve_kind(auto, {"DISPLAY": ":5", "PATH": str(tmp_path / "none")}) == "xvfb"
    assert display.resolve_kind(DisplayConfig("host"), {"PATH": path}) == "host"


@pytest.mark.parametrize(("kind", "package"), [("xvfb", "xvfb"), ("xephyr", "xserver-xephyr")])
def test_missing_server_names_the_package(kind: str, package: str, tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "DISPLAY": ":5"}
    with pytest.raises(MissingToolError, match=f"apt install {package}"):
        display.start(DisplayConfig(kind), env=env)


@pytest.mark.parametrize("kind", ["xephyr", "host"])
def test_xephyr_and_host_without_display_say_to_use_xvfb(kind: str, tmp_path: Path) -> None:
    env = {"PATH": _bin_with(tmp_path, "Xephyr")}
    with pytest.raises(SandboxError) as err:
        display.start(DisplayConfig(kind), env=env)
    assert "DISPLAY is not set" in str(err.value) and "Display=xvfb" in str(err.value)
    assert "\n" not in str(err.value)


def test_only_root_may_name_another_user() -> None:
    if os.geteuid() == 0:
        pytest.skip("as root, user= is allowed")
    with pytest.raises(SandboxError, match="only root"):
        display.start(DisplayConfig("xvfb"), user=(os.getuid() + 1, os.getgid()))
