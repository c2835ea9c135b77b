"""The Profile dataclass and the table of every key a profile may set.

Owns: key names, their types and allowed values, and the rule that an unknown or mistyped key
is an error naming the nearest valid key. Must never look at the host (paths are checked when a
profile is compiled into a plan, not here).
"""

from __future__ import annotations

from .._record import field
from .._record import record as dataclass
from .._values import parse_bool
from ..errors import ProfileError

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _choice(*choices: str) -> Callable[[str, object], str]:
    def parse(key: str, v: object) -> str:
        if isinstance(v, bool):
            v = "yes" if v else "no"
        if not isinstance(v, str) or v not in choices:
            raise ProfileError(f"{key}={v!r}: expected one of {', '.join(choices)}")
        return v

    return parse


def _str(key: str, v: object) -> str:
    if not isinstance(v, str):
        raise ProfileError(f"{key}={v!r}: expected a string")
    return v


def _strlist(key: str, v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        v = v.split()
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ProfileError(f"{key}={v!r}: expected a list of strings")
    return tuple(v)


def _empty_only(key: str, v: object) -> tuple[str, ...]:
    items = _strlist(key, v)
    if any(items):
        raise ProfileError(
            f"{key}={list(items)!r}: ringfence never grants capabilities; leave it empty"
        )
    return ()


def _true_only(key: str, v: object) -> bool:
    if not parse_bool(key, v):
        raise ProfileError(f"{key}=false: ringfence always sets no_new_privs; remove the key")
    return True


@dataclass(frozen=True)
class KeySpec:
    attr: str
    parse: Callable[[str, object], Any]
    is_list: bool = False
    doc: str = ""


# Core keys handled by the runtime itself. Layer keys (seccomp, Landlock, network, limits) are
# parsed by their own modules; see LAYER_KEYS in loader.py.
KEYS: dict[str, KeySpec] = {
    "Description": KeySpec("description", _str, doc="one line shown by `ringfence profiles`"),
    "Extends": KeySpec("extends", _str, doc="name or file of the profile this one builds on"),
    "Root": KeySpec(
        "root",
        _choice("minimal", "host", "empty"),
        doc="what the empty root starts with: /usr+/etc, the host tree, or nothing",
    ),
    "ProtectSystem": KeySpec("protect_system", _choice("no", "yes", "full", "strict")),
    "ProtectHome": KeySpec("protect_home", _choice("no", "yes", "read-only", "tmpfs")),
    "PrivateHome": KeySpec("private_home", parse_bool, doc="a fresh, empty, writable $HOME"),
    "PrivateTmp": KeySpec("private_tmp", parse_bool),
    "PrivateDevices": KeySpec("private_devices", parse_bool),
    "MountAPIVFS": KeySpec("mount_api_vfs", parse_bool, doc="mount /proc and /dev"),
    "MountSysfs": KeySpec("mount_sysfs", parse_bool, doc="mount /sys (read-only)"),
    "ProtectKernelTunables": KeySpec("protect_kernel_tunables", parse_bool),
    "ProtectKernelModules": KeySpec("protect_kernel_modules", parse_bool),
    "ProtectKernelLogs": KeySpec("protect_kernel_logs", parse_bool),
    "ProtectControlGroups": KeySpec("protect_control_groups", parse_bool),
    "ProtectProc": KeySpec(
        "protect_proc", _choice("default", "invisible", "noaccess", "ptraceable")
    ),
    "ProcSubset": KeySpec("proc_subset", _choice("all", "pid")),
    "ProtectHostname": KeySpec("protect_hostname", parse_bool),
    "Hostname": KeySpec("hostname", _str),
    "PrivateNetwork": KeySpec("private_network", parse_bool),
    "Network": KeySpec("network", _choice("none", "user", "host")),
    "PrivateIPC": KeySpec("private_ipc", parse_bool),
    "PrivateMachineID": KeySpec(
        "private_machine_id", parse_bool, doc="hide /etc/machine-id behind a per-sandbox random id"
    ),
    "TemporaryFileSystems": KeySpec("temporary_file_systems", _strlist, True),
    "ReadOnlyPaths": KeySpec("read_only_paths", _strlist, True),
    "ReadWritePaths": KeySpec("read_write_paths", _strlist, True),
    "InaccessiblePaths": KeySpec("inaccessible_paths", _strlist, True),
    "BindPaths": KeySpec("bind_paths", _strlist, True),
    "BindReadOnlyPaths": KeySpec("bind_read_only_paths", _strlist, True),
    "Symlinks": KeySpec("symlinks", _strlist, True, doc="TARGET:LINK entries"),
    "ProcMounts": KeySpec("proc_mounts", _strlist, True),
    "DevMounts": KeySpec("dev_mounts", _strlist, True),
    "WorkingDirectory": KeySpec("working_directory", _str),
    "Environment": KeySpec("environment", _strlist, True),
    "PassEnvironment": KeySpec("pass_environment", _strlist, True),
    "UnsetEnvironment": KeySpec("unset_environment", _strlist, True),
    "User": KeySpec("user", _str),
    "Group": KeySpec("group", _str),
    "NoNewPrivileges": KeySpec("no_new_privileges", _true_only),
    "CapabilityBoundingSet": KeySpec("capability_bounding_set", _empty_only),
    "AmbientCapabilities": KeySpec("ambient_capabilities", _empty_only),
    "KeyringMode": KeySpec("keyring_mode", _choice("private", "inherit")),
    "FileArguments": KeySpec(
        "file_arguments",
        _choice("no", "read-only"),
        doc="bind each file named on the command line, read-only, at its own path",
    ),
    "SessionBus": KeySpec(
        "session_bus", parse_bool, doc="grant the caller's D-Bus session bus (an exposure)"
    ),
    "Sound": KeySpec(
        "sound", parse_bool, doc="grant the caller's PulseAudio/PipeWire socket (an exposure)"
    ),
}


@dataclass(frozen=True)
class Profile:
    """A validated profile. Field defaults are the most restrictive choice."""

    name: str = "custom"
    description: str = ""
    extends: str | None = None
    root: str = "minimal"
    protect_system: str = "strict"
    protect_home: str = "yes"
    private_home: bool = True
    private_tmp: bool = True
    private_devices: bool = True
    mount_api_vfs: bool = True
    mount_sysfs: bool = False
    protect_kernel_tunables: bool = True
    protect_kernel_modules: bool = True
    protect_kernel_logs: bool = True
    protect_control_groups: bool = True
    protect_proc: str = "invisible"
    proc_subset: str = "all"
    protect_hostname: bool = True
    hostname: str = "ringfence"
    private_network: bool = True
    network: str = "none"
    private_ipc: bool = True
    private_machine_id: bool = True
    temporary_file_systems: tuple[str, ...] = ()
    read_only_paths: tuple[str, ...] = ()
    read_write_paths: tuple[str, ...] = ()
    inaccessible_paths: tuple[str, ...] = ()
    bind_paths: tuple[str, ...] = ()
    bind_read_only_paths: tuple[str, ...] = ()
    symlinks: tuple[str, ...] = ()
    proc_mounts: tuple[str, ...] = ()
    dev_mounts: tuple[str, ...] = ()
    working_directory: str | None = None
    environment: tuple[str, ...] = ()
    pass_environment: tuple[str, ...] = ()
    unset_environment: tuple[str, ...] = ()
    user: str | None = None
    group: str | None = None
    no_new_privileges: bool = True
    capability_bounding_set: tuple[str, ...] = ()
    ambient_capabilities: tuple[str, ...] = ()
    keyring_mode: str = "private"
    file_arguments: str = "no"
    session_bus: bool = False
    sound: bool = False
    # Layers parsed by their own modules (kept as validated objects).
    limits: tuple[Any, ...] = ()
    seccomp: Any = None
    landlock: Any = None
    usernet: Any = None
    cgroup: Any = None  # kernel.cgroup.CgroupLimits
    display: Any = None  # runtime.display.DisplayConfig
    # The raw keys after merging, kept for `ringfence plan` and audit.
    raw: dict[str, object] = field(default_factory=dict, compare=False, repr=False)
