"""Resource limits (setrlimit) in systemd's Limit*= vocabulary.

Owns: parsing "soft:hard", "infinity" and size/time suffixes, and applying them to the calling
process. Must never raise a hard limit above what the caller has (the kernel refuses anyway).
"""

from __future__ import annotations

import resource

from .._record import record as dataclass
from ..errors import KernelError, ProfileError

# Key -> (RLIMIT constant name, unit): "bytes" accepts K/M/G/T suffixes (base 1024).
LIMIT_KEYS: dict[str, tuple[str, str]] = {
    "LimitCPU": ("RLIMIT_CPU", "seconds"),
    "LimitFSIZE": ("RLIMIT_FSIZE", "bytes"),
    "LimitDATA": ("RLIMIT_DATA", "bytes"),
    "LimitSTACK": ("RLIMIT_STACK", "bytes"),
    "LimitCORE": ("RLIMIT_CORE", "bytes"),
    "LimitRSS": ("RLIMIT_RSS", "bytes"),
    "LimitNOFILE": ("RLIMIT_NOFILE", "count"),
    "LimitAS": ("RLIMIT_AS", "bytes"),
    "LimitNPROC": ("RLIMIT_NPROC", "count"),
    "LimitMEMLOCK": ("RLIMIT_MEMLOCK", "bytes"),
    "LimitLOCKS": ("RLIMIT_LOCKS", "count"),
    "LimitSIGPENDING": ("RLIMIT_SIGPENDING", "count"),
    "LimitMSGQUEUE": ("RLIMIT_MSGQUEUE", "bytes"),
    "LimitNICE": ("RLIMIT_NICE", "count"),
    "LimitRTPRIO": ("RLIMIT_RTPRIO", "count"),
    "LimitRTTIME": ("RLIMIT_RTTIME", "count"),
}

_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Limit:
    key: str
    resource: int
    soft: int
    hard: int

    def describe(self) -> str:
        def fmt(v: int) -> str:
            return "infinity" if v == resource.RLIM_INFINITY else str(v)

        return f"{fmt(self.soft)}:{fmt(self.hard)}"


def _one(key: str, text: str, unit: str) -> int:
    t = text.strip()
    if t in ("infinity", "unlimited"):
        return resource.RLIM_INFINITY
    mult = 1
    if unit == "bytes" and t and t[-1].upper() in _SUFFIX:
        mult, t = _SUFFIX[t[-1].upper()], t[:-1]
    try:
        value = int(t) * mult
    except ValueError:
        raise ProfileError(
            f"{key}={text!r}: expected a number"
            + (" with an optional K/M/G/T suffix" if unit == "bytes" else "")
            + ", 'infinity', or 'SOFT:HARD'"
        ) from None
    if value < 0:
        raise ProfileError(f"{key}={text!r}: must not be negative")
    return value


def parse_limit(key: str, value: object) -> Limit:
    if key not in LIMIT_KEYS:
        raise ProfileError(f"unknown resource limit {key!r}")
    rname, unit = LIMIT_KEYS[key]
    text = str(value)
    soft_s, _, hard_s = text.partition(":")
    soft = _one(key, soft_s, unit)
    hard = _one(key, hard_s, unit) if hard_s else soft
    if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
        raise ProfileError(f"{key}={text!r}: the soft limit is above the hard limit")
    return Limit(key, int(getattr(resource, rname)), soft, hard)


def apply(limits: tuple[Limit, ...]) -> None:
    for lim in limits:
        try:
            resource.setrlimit(lim.resource, (lim.soft, lim.hard))
        except (OSError, ValueError) as e:
            raise KernelError(
                "setrlimit",
                getattr(e, "errno", None) or 1,
                f"{lim.key}={lim.describe()}",
                "a limit cannot be raised above the caller's hard limit",
            ) from None
