"""Hash commands: HSET, HGET, HGETALL."""

from __future__ import annotations

from typing import Any

from ._base import Arg, Command, Key, to_dict

__all__ = ["hget", "hgetall", "hset"]


def hset(key: Key, mapping: dict[Key, Arg]) -> Command[int]:
    """Set fields of the hash at ``key``; return how many were new (``HSET``)."""
    if not mapping:
        raise ValueError("hset needs at least one field")
    args: list[Arg] = ["HSET", key]
    for field, value in mapping.items():
        args += [field, value]
    return Command(tuple(args))


def hget(key: Key, field: Key) -> Command[bytes | str | None]:
    """Return one field of the hash at ``key``, or None (``HGET``)."""
    return Command(("HGET", key, field))


def hgetall(key: Key) -> Command[dict[Any, Any]]:
    """Return the whole hash at ``key`` as a dict, under RESP2 and RESP3 (``HGETALL``)."""
    return Command(("HGETALL", key), to_dict)
