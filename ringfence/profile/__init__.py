"""Profiles: the typed, validated description of what a sandbox may see and do.

A profile is a set of keys in systemd's hardening vocabulary (ProtectSystem, PrivateTmp, ...)
plus ringfence's own (Root, Network, ...). Built-in profiles live in :mod:`.builtin`; TOML files
may ``Extends`` one. Loading never touches the kernel; :mod:`ringfence.plan` compiles a profile
into a Plan.
"""

from .loader import load_profile, profile_names
from .model import Profile

__all__ = ["Profile", "load_profile", "profile_names"]
