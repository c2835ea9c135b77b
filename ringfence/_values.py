"""Value parsers shared by every table of profile keys (the core's and the layers' own).

Owns: what a key's yes/no value may be. Must stay import-free (it is on the start-up path).
"""

from __future__ import annotations

from .errors import ProfileError

_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


def parse_bool(key: str, value: object, *, empty_is_false: bool = False) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case), or a TOML boolean; with ``empty_is_false``
    also "" (a key reset on the command line). ProfileError naming the key otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.lower()
        if word in _TRUE:
            return True
        if word in _FALSE or (empty_is_false and word == ""):
            return False
    raise ProfileError(f"{key}={value!r}: expected true or false")
