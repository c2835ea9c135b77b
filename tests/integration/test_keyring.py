"""Kernel keyrings from inside a real sandbox (KeyringMode=private, the default).

The caller (a small wrapper started by each test) joins a fresh session keyring of its own and
adds a secret "user" key to it, then execs ``ringfence run``. Inside, a payload uses raw
keyctl(2) on the numbers it was told. The strict profile's seccomp filter denies every keyring
call; the tests that look at the keyring itself reset SystemCallFilter to reach the kernel.
"""

from __future__ import annotations

import errno
import json
import subprocess
import textwrap

from _util import PYTHON

from ringfence.kernel._syscall import NR

SECRET = "RF-KEY-PAYLOAD-7d1c"

# keyctl(2) operations: linux/keyctl.h
_KEYCTL = """
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR_KEYCTL, NR_ADD_KEY = {keyctl}, {add_key}
GET_KEYRING_ID, JOIN_SESSION, DESCRIBE, READ = 0, 1, 6, 11
SESSION = -3
def keyctl(*args):
    r = libc.syscall(ctypes.c_long(NR_KEYCTL), *[
        ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return r, ctypes.get_errno() if r < 0 else 0
""".replace("{keyctl}", str(NR["keyctl"])).replace("{add_key}", str(NR["add_key"]))

CALLER = _KEYCTL + textwrap.dedent("""
    import os
    keyctl(JOIN_SESSION, ctypes.c_char_p(b"rf-test-caller"))
    session = keyctl(GET_KEYRING_ID, SESSION, 0)[0]
    secret = sys.argv[1].encode()
    key = libc.syscall(ctypes.c_long(NR_ADD_KEY), b"user", b"rf-test-secret", secret,
                       ctypes.c_size_t(len(secret)), ctypes.c_long(session))
    assert session > 0 and key > 0, ctypes.get_errno()
    print(json.dumps({"session": session, "key": key}), flush=True)
    payload = sys.argv[2].replace("SESSION_ID", str(session)).replace("KEY_ID", str(key))
    os.execv(sys.executable, [sys.executable, "-m", "ringfence", "run", *sys.argv[3:],
                              "--", "python3", "-c", payload])
""")

PAYLOAD = _KEYCTL + textwrap.dedent("""
    buf = ctypes.create_string_buffer(4096)
    out = {"own": keyctl(GET_KEYRING_ID, SESSION, 0)}
    r = keyctl(READ, SESSION, buf, 4096)
    out["own_contents"] = [r[0], r[1], buf.raw[: max(r[0], 0)].hex()]
    for name, serial in (("caller_session", SESSION_ID), ("caller_key", KEY_ID)):
        r = keyctl(READ, serial, buf, 4096)
        out[name + "_read"] = [r[0], r[1], buf.raw[: max(r[0], 0)].decode("latin-1")]
    r = libc.syscall(ctypes.c_long(NR_ADD_KEY), b"user", b"x", b"y", ctypes.c_size_t(1),
                     ctypes.c_long(SESSION))
    out["add_key"] = [r, ctypes.get_errno() if r < 0 else 0]
    print(json.dumps(out))
""")

NO_SECCOMP = ("--set", "SystemCallFilter=")


def run_with_keyring(*opts: str) -> tuple[dict[str, int], dict[str, list[object]], str]:
    r = subprocess.run(
        [PYTHON, "-c", CALLER, SECRET, PAYLOAD, *opts],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    lines = r.stdout.splitlines()
    assert len(lines) == 2, (r.stdout, r.stderr)
    return json.loads(lines[0]), json.loads(lines[1]), r.stdout


def test_session_keyring_inside_is_not_the_callers():
    caller, inside, _ = run_with_keyring(*NO_SECCOMP)
    own, err = inside["own"]
    assert err == 0 and own > 0
    assert own != caller["session"]


def test_session_keyring_inside_starts_empty():
    _, inside, _ = run_with_keyring(*NO_SECCOMP)
    size, err, contents = inside["own_contents"]
    assert (size, err, contents) == (0, 0, "")


def test_cannot_read_callers_key_with_private_keyring():
    _, inside, out = run_with_keyring(*NO_SECCOMP)
    size, err, _ = inside["caller_key_read"]
    assert size == -1 and err in (errno.EACCES, errno.ENOKEY)
    assert SECRET not in out


def test_inherited_keyring_control_reads_the_key():
    # Control for the test above: the same payload with KeyringMode=inherit gets the secret, so
    # the attack is real and only the private keyring stops it.
    _, inside, _ = run_with_keyring(*NO_SECCOMP, "--set", "KeyringMode=inherit")
    assert inside["caller_key_read"][2] == SECRET


def test_strict_profile_blocks_every_keyring_call():
    _, inside, out = run_with_keyring()
    for name in ("own", "own_contents", "caller_session_read", "caller_key_read", "add_key"):
        assert inside[name][:2] == [-1, errno.EPERM], (name, inside[name])
    assert SECRET not in out
