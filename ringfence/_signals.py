"""The signal functions and numbers of the start-up path, without the ``signal`` module.

``signal`` wraps the C module ``_signal`` in four IntEnums, and building them (with ``enum``
itself) costs ~2.5 ms of every run: the hot path uses ``_signal`` directly, whose numbers are
plain ints and whose functions are the same. Modules off the hot path keep ``import signal``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typeshed has no stub for _signal: type-check against signal's
    from signal import *  # noqa: F403
else:
    from _signal import *  # noqa: F403
