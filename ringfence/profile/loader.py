"""Loading profiles: built-in names, TOML files, ``Extends`` chains, and CLI overrides.

Owns: merging raw key mappings (lists accumulate, an empty string resets a list, scalars
override) and turning the result into a validated :class:`Profile`. Must never touch the kernel.
"""

from __future__ import annotations

import os

from ..errors import ProfileError
from ..kernel import seccomp as _seccomp
from .builtin import BUILTIN
from .model import KEYS, Profile

TYPE_CHECKING = False  # typing is slow to import; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any

# Keys owned by the defense-in-depth layers; each module parses its own subset.
SECCOMP_KEYS = tuple(sorted(_seccomp.KEYS))
LANDLOCK_KEYS = ("Landlock", "AllowBind", "AllowConnect", "LandlockScopes")
CGROUP_KEYS = ("MemoryMax", "TasksMax", "CPUQuota", "CgroupOptional")
NET_KEYS = ("UserNetStack", "AllowHostPorts", "PublishPorts", "IPAddressAllow", "IPAddressDeny")
DISPLAY_KEYS = ("Display", "DisplaySize")  # runtime/display.py (same tuple there)
LIST_LAYER_KEYS = frozenset(
    {
        "SystemCallFilter",
        "RestrictAddressFamilies",
        "AllowBind",
        "AllowConnect",
        "LandlockScopes",
        "AllowHostPorts",
        "PublishPorts",
        "IPAddressAllow",
        "IPAddressDeny",
        "SystemCallArchitectures",
    }
)


def _limit_keys() -> tuple[str, ...]:
    from ..kernel.rlimit import LIMIT_KEYS

    return tuple(LIMIT_KEYS)


def all_keys() -> list[str]:
    return [
        *KEYS,
        *SECCOMP_KEYS,
        *LANDLOCK_KEYS,
        *NET_KEYS,
        *CGROUP_KEYS,
        *DISPLAY_KEYS,
        *_limit_keys(),
    ]


def profile_names() -> list[str]:
    return list(BUILTIN)


def _is_list_key(key: str) -> bool:
    spec = KEYS.get(key)
    return (spec is not None and spec.is_list) or key in LIST_LAYER_KEYS


def merge(base: dict[str, object], top: dict[str, object]) -> dict[str, object]:
    """systemd drop-in semantics: list keys accumulate, "" resets, scalars override."""
    out = dict(base)
    for key, value in top.items():
        if key == "Extends":
            continue
        if _is_list_key(key):
            items = [value] if isinstance(value, (str, int)) else list(value)  # type: ignore[call-overload]
            if items and items[0] == "":
                out[key] = items[1:]
            else:
                prev = out.get(key, [])
                prev_list = [prev] if isinstance(prev, (str, int)) else list(prev)  # type: ignore[call-overload]
                out[key] = prev_list + items
        else:
            out[key] = value
    return out


def _read_toml(path: str) -> dict[str, object]:
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ProfileError(f"profile file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {path}: invalid TOML: {e}") from None
    except OSError as e:
        raise ProfileError(f"profile {path}: cannot read it: {e.strerror}") from None
    # Accept keys at top level or under a [Sandbox]/[Service] table, like a systemd unit.
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("Sandbox", "Service"):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def _raw_profile(ref: str, seen: tuple[str, ...] = ()) -> tuple[str, dict[str, object]]:
    """Resolve a profile reference (built-in name or file) to its merged raw keys."""
    if ref in seen:
        raise ProfileError(f"profile {ref!r} extends itself: {' -> '.join((*seen, ref))}")
    if ref in BUILTIN:
        return ref, dict(BUILTIN[ref])
    if "/" not in ref and not ref.endswith(".toml"):
        raise ProfileError(
            f"unknown profile {ref!r}{_nearest(ref, list(BUILTIN))}; built-in profiles: "
            f"{', '.join(BUILTIN)}, or give a path to a .toml file"
        )
    path = os.path.abspath(os.path.expanduser(ref))
    raw = _read_toml(path)
    parent = raw.get("Extends")
    if parent is None:
        return path, raw
    if not isinstance(parent, str):
        raise ProfileError(f"profile {path}: Extends={parent!r}: expected a profile name or path")
    if "/" in parent and not os.path.isabs(parent):
        parent = os.path.join(os.path.dirname(path), parent)
    _, base = _raw_profile(parent, (*seen, ref))
    return path, merge(base, raw)


def _nearest(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f" (did you mean {close[0]}?)" if close else ""


def load_profile(ref: str = "strict", overrides: dict[str, object] | None = None) -> Profile:
    name, raw = _raw_profile(ref)
    if overrides:
        raw = merge(raw, overrides)
    return build(name, raw)


def build(name: str, raw: dict[str, object]) -> Profile:
    known = set(all_keys())
    for key in raw:
        if key not in known:
            raise ProfileError(
                f"unknown profile key {key!r}{_nearest(key, sorted(known))}; "
                "see `ringfence profiles --keys`"
            )
    values: dict[str, Any] = {"name": name, "raw": raw}
    for key, spec in KEYS.items():
        if key in raw:
            values[spec.attr] = spec.parse(key, raw[key])
    if "Network" not in raw and "PrivateNetwork" in raw and not values["private_network"]:
        values["network"] = "host"
    if values.get("network", "none") == "host":
        values["private_network"] = False
    limit_keys = _limit_keys()
    if any(k in raw for k in limit_keys):
        from ..kernel.rlimit import parse_limit

        values["limits"] = tuple(parse_limit(k, raw[k]) for k in limit_keys if k in raw)
    values["seccomp"] = _layer("seccomp", raw, SECCOMP_KEYS)
    values["landlock"] = _layer("landlock", raw, LANDLOCK_KEYS)
    values["usernet"] = _layer("usernet", raw, NET_KEYS)
    values["cgroup"] = _layer("cgroup", raw, CGROUP_KEYS)
    values["display"] = _layer("display", raw, DISPLAY_KEYS)
    return Profile(**values)


def _layer(layer: str, raw: dict[str, object], keys: tuple[str, ...]) -> object:
    """Let a layer module parse its own keys. Returns its policy object, or None if unset."""
    subset = {k: raw[k] for k in keys if k in raw}
    if not subset:
        return None  # and the layer's module is not even imported (start-up time)
    # Plain imports, not importlib.import_module: importlib itself costs a few tenths of a ms.
    if layer == "seccomp":
        from ..kernel import seccomp as module
    elif layer == "landlock":
        from ..kernel import landlock as module  # type: ignore[no-redef]
    elif layer == "usernet":
        from ..runtime import usernet as module  # type: ignore[no-redef]
    elif layer == "display":
        from ..runtime import display as module  # type: ignore[no-redef]
    else:
        from ..kernel import cgroup as module  # type: ignore[no-redef]
    return module.parse_keys(subset)
