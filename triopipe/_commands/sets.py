"""Set commands: SADD, SMEMBERS, SINTER, SUNION."""

from __future__ import annotations

from typing import Any

from ._base import Arg, Command, Key, to_set

__all__ = ["sadd", "sinter", "smembers", "sunion"]


def sadd(key: Key, *members: Arg) -> Command[int]:
    """Add ``members`` to the set at ``key``; return how many were new (``SADD``)."""
    if not members:
        raise ValueError("sadd needs at least one member")
    return Command(("SADD", key, *members))


def smembers(key: Key) -> Command[set[Any]]:
    """Return the members of the set at ``key`` (``SMEMBERS``)."""
    return Command(("SMEMBERS", key), to_set)


def sinter(*keys: Key) -> Command[set[Any]]:
    """Return the intersection of the sets at ``keys`` (``SINTER``)."""
    if not keys:
        raise ValueError("sinter needs at least one key")
    return Command(("SINTER", *keys), to_set)


def sunion(*keys: Key) -> Command[set[Any]]:
    """Return the union of the sets at ``keys`` (``SUNION``)."""
    if not keys:
        raise ValueError("sunion needs at least one key")
    return Command(("SUNION", *keys), to_set)
