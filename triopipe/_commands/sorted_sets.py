"""Sorted-set commands: ZADD, ZRANGE."""

from __future__ import annotations

from typing import Any

from ._base import Arg, Command, Key

__all__ = ["zadd", "zrange"]


def zadd(
    key: Key,
    mapping: dict[Key, float],
    *,
    nx: bool = False,
    xx: bool = False,
    gt: bool = False,
    lt: bool = False,
    ch: bool = False,
) -> Command[int]:
    """Add members with scores to the sorted set at ``key`` (``ZADD``).

    Returns:
        How many members were added (with ``ch=True``: added or changed).
    """
    if not mapping:
        raise ValueError("zadd needs at least one member")
    if nx and (xx or gt or lt):
        raise ValueError("nx cannot be combined with xx, gt or lt")
    args: list[Arg] = ["ZADD", key]
    for flag, name in ((nx, "NX"), (xx, "XX"), (gt, "GT"), (lt, "LT"), (ch, "CH")):
        if flag:
            args.append(name)
    for member, score in mapping.items():
        args += [score, member]
    return Command(tuple(args))


def _with_scores(reply: Any) -> list[tuple[Any, float]]:
    # RESP3 answers [[member, score], ...] with double scores; RESP2 a flat
    # array of members and score strings.
    if reply and isinstance(reply[0], list):
        return [(member, float(score)) for member, score in reply]
    items = iter(reply)
    return [(member, float(score)) for member, score in zip(items, items, strict=True)]


def zrange(
    key: Key, start: int, stop: int, *, withscores: bool = False, rev: bool = False
) -> Command[list[Any]]:
    """Return members by rank from ``start`` to ``stop`` inclusive (``ZRANGE``).

    With ``withscores=True``, a list of ``(member, score)`` tuples.
    """
    args: list[Arg] = ["ZRANGE", key, start, stop]
    if rev:
        args.append("REV")
    if withscores:
        args.append("WITHSCORES")
        return Command(tuple(args), _with_scores)
    return Command(tuple(args))
