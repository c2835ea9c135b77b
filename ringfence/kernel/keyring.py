"""Kernel keyrings: give the payload a fresh, empty session keyring (KeyringMode=private).

Owns: keyctl(KEYCTL_JOIN_SESSION_KEYRING). Must never read or link the caller's keys.
"""

from __future__ import annotations

from ._syscall import syscall

# linux/keyctl.h
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEY_SPEC_SESSION_KEYRING = -3


def join_new_session_keyring(name: str | None = None) -> int:
    """Replace the session keyring with a new anonymous one; returns its serial."""
    return syscall("keyctl", KEYCTL_JOIN_SESSION_KEYRING, name)


def session_keyring_id() -> int:
    return syscall("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
