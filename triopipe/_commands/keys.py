"""Generic key commands: DEL, EXISTS, EXPIRE, TTL, SCAN."""

from __future__ import annotations

from typing import Any

from ._base import Arg, Command, Key, to_bool

__all__ = ["delete", "exists", "expire", "scan", "ttl"]


def delete(*keys: Key) -> Command[int]:
    """Delete ``keys``; return how many existed (``DEL``)."""
    if not keys:
        raise ValueError("delete needs at least one key")
    return Command(("DEL", *keys))


def exists(*keys: Key) -> Command[int]:
    """Return how many of ``keys`` exist, counting repeats (``EXISTS``)."""
    if not keys:
        raise ValueError("exists needs at least one key")
    return Command(("EXISTS", *keys))


def expire(key: Key, seconds: int) -> Command[bool]:
    """Set a time to live in seconds; False when the key does not exist (``EXPIRE``)."""
    return Command(("EXPIRE", key, seconds), to_bool)


def ttl(key: Key) -> Command[int]:
    """Seconds to live; -1 without expiry, -2 when the key is missing (``TTL``)."""
    return Command(("TTL", key))


def _scan_reply(reply: Any) -> tuple[int, list[Any]]:
    cursor, keys = reply
    return int(cursor), keys


def scan(
    cursor: int, *, match: Key | None = None, count: int | None = None
) -> Command[tuple[int, list[Any]]]:
    """One ``SCAN`` step: the next cursor (0 when done) and a page of keys."""
    args: list[Arg] = ["SCAN", cursor]
    if match is not None:
        args += ["MATCH", match]
    if count is not None:
        args += ["COUNT", count]
    return Command(tuple(args), _scan_reply)
