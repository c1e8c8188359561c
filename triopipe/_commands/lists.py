"""List commands: LPUSH, RPUSH, LRANGE."""

from __future__ import annotations

from typing import Any

from ._base import Arg, Command, Key

__all__ = ["lpush", "lrange", "rpush"]


def lpush(key: Key, *values: Arg) -> Command[int]:
    """Prepend ``values`` to the list at ``key``; return its new length (``LPUSH``)."""
    if not values:
        raise ValueError("lpush needs at least one value")
    return Command(("LPUSH", key, *values))


def rpush(key: Key, *values: Arg) -> Command[int]:
    """Append ``values`` to the list at ``key``; return its new length (``RPUSH``)."""
    if not values:
        raise ValueError("rpush needs at least one value")
    return Command(("RPUSH", key, *values))


def lrange(key: Key, start: int, stop: int) -> Command[list[Any]]:
    """Return the elements from ``start`` to ``stop`` inclusive (``LRANGE``)."""
    return Command(("LRANGE", key, start, stop))
