"""ringfence: confine a process tree on Linux without root.

Public API (imported lazily so that ``import ringfence`` costs nothing on the CLI's path)::

    import ringfence
    result = ringfence.run(["ls", "/"], profile="strict", capture_output=True)
    with ringfence.Sandbox(profile="service") as sb:
        sb.run(["id"])
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "Sandbox", "CompletedProcess", "RingfenceError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("run", "Sandbox", "CompletedProcess", "SandboxTimeout"):
        from . import api

        return getattr(api, name)
    if name == "RingfenceError":
        from .errors import RingfenceError

        return RingfenceError
    raise AttributeError(f"module 'ringfence' has no attribute {name!r}")
