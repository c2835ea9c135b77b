"""The built-in profiles, as raw key mappings (parsed like any TOML profile).

Kept as Python data so that the default run never imports a TOML parser.
"""

from __future__ import annotations

from ..kernel.seccomp import STRICT_KEYS as _SECCOMP_STRICT

_COMMON_LOCKDOWN: dict[str, object] = {
    **_SECCOMP_STRICT,
    "Landlock": "best-effort",
    "LandlockScopes": ["abstract-unix", "signal"],
    "NoNewPrivileges": True,
    "CapabilityBoundingSet": [],
    "AmbientCapabilities": [],
    "KeyringMode": "private",
    "ProtectKernelTunables": True,
    "ProtectKernelModules": True,
    "ProtectKernelLogs": True,
    "ProtectControlGroups": True,
    "ProtectHostname": True,
    "PrivateIPC": True,
    "PrivateDevices": True,
    "PrivateMachineID": True,
    "Network": "none",
}

BUILTIN: dict[str, dict[str, object]] = {
    "strict": {
        "Description": "default: read-only /usr and /etc, fresh /proc /dev /tmp /run, empty home",
        **_COMMON_LOCKDOWN,
        "Root": "minimal",
        "ProtectSystem": "strict",
        "ProtectHome": "tmpfs",
        "PrivateHome": True,
        "PrivateTmp": True,
        "MountAPIVFS": True,
        "MountSysfs": False,
        "ProtectProc": "invisible",
    },
    "service": {
        "Description": "services: host tree read-only (ProtectSystem=strict), home hidden, "
        "private /tmp, no devices",
        **_COMMON_LOCKDOWN,
        "Root": "host",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateHome": False,
        "PrivateTmp": True,
        "MountAPIVFS": True,
        "MountSysfs": True,
        "ProtectProc": "invisible",
    },
    "desktop": {
        "Description": "desktop apps: strict, plus a nested X display of their own and the "
        "files named on the command line, read-only; no host X11, D-Bus or sound",
        **_COMMON_LOCKDOWN,
        "Root": "minimal",
        "ProtectSystem": "strict",
        "ProtectHome": "tmpfs",
        "PrivateHome": True,
        "PrivateTmp": True,
        "MountAPIVFS": True,
        "MountSysfs": False,
        "ProtectProc": "invisible",
        "Display": "auto",
        "FileArguments": "read-only",
    },
    "void": {
        "Description": "nothing at all (no /usr, /proc, /dev, /tmp) but what is added",
        **_COMMON_LOCKDOWN,
        "Root": "empty",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateHome": False,
        "PrivateTmp": False,
        "MountAPIVFS": False,
        "MountSysfs": False,
        "PrivateMachineID": False,
        "ProtectProc": "invisible",
    },
}
