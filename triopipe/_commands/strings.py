"""String commands: GET, SET, INCR and friends."""

from __future__ import annotations

from typing import Any

from ._base import Arg, Command, Key, is_ok

__all__ = ["get", "incr", "incrby", "mget", "mset", "set"]


def get(key: Key) -> Command[bytes | str | None]:
    """Return the value of ``key``, or None when it does not exist (``GET``)."""
    return Command(("GET", key))


def set(  # noqa: A001 - the Redis command is called SET
    key: Key,
    value: Arg,
    *,
    ex: int | None = None,
    px: int | None = None,
    nx: bool = False,
    xx: bool = False,
    keepttl: bool = False,
    get: bool = False,
) -> Command[Any]:
    """Set ``key`` to ``value`` (``SET``).

    Args:
        key: the key.
        value: the value.
        ex: expire after this many seconds.
        px: expire after this many milliseconds.
        nx: only set the key if it does not exist.
        xx: only set the key if it already exists.
        keepttl: keep the key's current time to live.
        get: return the old value instead of a success flag.

    Returns:
        True when the key was set, False when ``nx``/``xx`` prevented it; with
        ``get=True``, the old value (None if there was none).
    """
    if nx and xx:
        raise ValueError("nx and xx are mutually exclusive")
    if sum(option is not None for option in (ex, px)) + keepttl > 1:
        raise ValueError("ex, px and keepttl are mutually exclusive")
    args: list[Arg] = ["SET", key, value]
    if ex is not None:
        args += ["EX", ex]
    if px is not None:
        args += ["PX", px]
    if nx:
        args.append("NX")
    if xx:
        args.append("XX")
    if keepttl:
        args.append("KEEPTTL")
    if get:
        args.append("GET")
        return Command(tuple(args))
    return Command(tuple(args), is_ok)


def incr(key: Key) -> Command[int]:
    """Add 1 to the integer at ``key`` and return the new value (``INCR``)."""
    return Command(("INCR", key))


def incrby(key: Key, amount: int) -> Command[int]:
    """Add ``amount`` to the integer at ``key`` and return the new value (``INCRBY``)."""
    return Command(("INCRBY", key, amount))


def mget(*keys: Key) -> Command[list[bytes | str | None]]:
    """Return the values of ``keys``, None for each missing one (``MGET``)."""
    if not keys:
        raise ValueError("mget needs at least one key")
    return Command(("MGET", *keys))


def mset(mapping: dict[Key, Arg]) -> Command[bool]:
    """Set several keys at once (``MSET``); returns True."""
    if not mapping:
        raise ValueError("mset needs at least one key")
    args: list[Arg] = ["MSET"]
    for key, value in mapping.items():
        args += [key, value]
    return Command(tuple(args), is_ok)
