"""The environment variables symgraph reads: a value it does not recognize is a SymgraphError
naming the variable and what it accepts, never silently taken for the default (or, as a
non-empty string, for "on": SYMGRAPH_DEBUG=0 used to turn the logs on)."""

from __future__ import annotations

import os

from symgraph.errors import SymgraphError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def flag(name: str, default: bool = False) -> bool:
    """`name` as a boolean: 1/true/yes/on or 0/false/no/off (any case; empty: off)."""
    value = os.environ.get(name)
    if value is None:
        return default
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SymgraphError(f"{name}={value!r}: expected 1 or 0 (or true/false, yes/no, on/off)")


def integer(name: str, default: int, minimum: int = 1) -> int:
    """`name` as an integer of at least `minimum`."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise SymgraphError(f"{name}={value!r}: expected an integer >= {minimum}")
    return number
