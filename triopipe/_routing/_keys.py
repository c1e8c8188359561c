"""Key slots, hash tags, and where a command's keys are.

A key's *slot* is Redis Cluster's: CRC16 (XMODEM, which is what
:func:`binascii.crc_hqx` with seed 0 computes) of the key modulo 16384. When
the key holds a *hash tag*, only the tag is hashed: the bytes between the
first ``{`` and the first ``}`` after it, provided there is at least one byte
between them (``{user1}.name`` hashes ``user1``; ``{}x`` and ``x{`` hash the
whole key; ``{{a}}`` hashes ``{a``). Keys sharing a tag share a slot.

Key positions come from the key specs Redis 7 publishes for every command
(the generated table in :mod:`._keyspecs`), read by :func:`key_positions`
exactly as the server reads them, plus hand-written rules for the few
commands whose keys no spec describes (``SORT ... STORE``).
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable, Sequence
from typing import Any

from ._keyspecs import CONTAINERS, INDEX, KEY_SPECS, RANGE, UNKNOWN_KEYS, KeySpec

__all__ = [
    "SLOTS",
    "UnknownCommandError",
    "command_key",
    "hash_tag",
    "key_bytes",
    "key_positions",
    "key_slot",
]

#: Number of slots in the key space, as in Redis Cluster.
SLOTS = 16384


class UnknownCommandError(ValueError):
    """The routing table does not know this command, so not where its keys are."""


def key_bytes(key: Any) -> bytes:
    """A key as the bytes the server sees (str as utf-8, numbers as text)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    # The same text the encoder sends (see triopipe._resp._encode).
    if isinstance(key, int) and not isinstance(key, bool):
        return int.__repr__(key).encode()
    if isinstance(key, float):
        return float.__repr__(key).encode()
    raise TypeError(f"a key must be bytes, str, int or float, not {type(key).__name__}")


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed: its hash tag if it has one, else all of it."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: Any) -> int:
    """The Redis Cluster slot (0..16383) of ``key`` (bytes, str or number)."""
    data = key_bytes(key)
    if b"{" in data:
        data = hash_tag(data)
    return crc_hqx(data, 0) & (SLOTS - 1)


def command_key(args: Sequence[Any]) -> str:
    """The name under which :data:`KEY_SPECS` lists the command ``args``.

    Raises:
        UnknownCommandError: the command (or subcommand) is not in the table.
    """
    name = _text(args[0]).upper()
    if name in CONTAINERS:
        if len(args) < 2:
            raise UnknownCommandError(f"{name} needs a subcommand")
        name = f"{name}|{_text(args[1]).upper()}"
    if name not in KEY_SPECS:
        raise UnknownCommandError(f"unknown command {name}: cannot tell where its keys are")
    return name


def _text(arg: Any) -> str:
    if isinstance(arg, str):
        return arg
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg).decode("latin-1")
    return str(arg)


def key_positions(args: Sequence[Any]) -> list[int]:
    """Indexes in ``args`` of the command's keys, in order (``args[0]`` is the name).

    Malformed commands (too few arguments, a bad key count) give the keys that
    can be found; the server will refuse the command with a proper error.

    Raises:
        UnknownCommandError: the command is not in the table.
    """
    name = command_key(args)
    positions: list[int] = []
    for spec in KEY_SPECS[name]:
        positions += _find_keys(spec, args)
    if name in UNKNOWN_KEYS:
        positions += _SPECIAL[name](args)
    if name == "MIGRATE" and len(positions) > 1:
        # MIGRATE host port "" db timeout ... KEYS k1 k2: the empty key at
        # index 3 only says "see KEYS".
        positions.remove(3)
    return positions


def _find_keys(spec: KeySpec, args: Sequence[Any]) -> range:
    """Apply one key spec to ``args``, the way the server does."""
    begin, where, start_from, find, a, b, c = spec
    count = len(args)
    if begin == INDEX:
        assert isinstance(where, int)
        first = where
    else:
        first = _search_keyword(args, str(where), start_from)
        if first < 0:
            return range(0)
    if find == RANGE:
        last_key, step, limit = a, b, c
        if last_key >= 0:
            last = first + last_key
        elif limit:
            # "The first 1/limit of what follows" (XREAD's STREAMS k1 k2 id1 id2).
            last = first + (count - first) // limit + last_key
        else:
            last = count + last_key
    else:
        number_at, first_key, step = a, b, c
        if first + number_at >= count:
            return range(0)
        try:
            number = int(_text(args[first + number_at]))
        except ValueError:
            return range(0)
        if number <= 0:
            return range(0)
        first += first_key
        last = first + (number - 1) * step
    return range(first, min(last, count - 1) + 1, step)


def _search_keyword(args: Sequence[Any], keyword: str, start_from: int) -> int:
    """The index after ``keyword``, searched from ``start_from`` (backwards if < 0), or -1."""
    count = len(args)
    indexes = range(start_from, count) if start_from >= 0 else range(count + start_from, 0, -1)
    for index in indexes:
        if _is_word(args[index], keyword):
            return index + 1
    return -1


def _is_word(arg: Any, word: str) -> bool:
    return isinstance(arg, (str, bytes, bytearray, memoryview)) and _text(arg).upper() == word


def _sort_keys(args: Sequence[Any]) -> list[int]:
    # SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC]
    # [ALPHA] [STORE destination]: skip option values, which may look like
    # the word STORE. BY/GET patterns name keys only at run time; they stay
    # the caller's business, as in Redis Cluster.
    index = 2
    while index < len(args):
        if _is_word(args[index], "LIMIT"):
            index += 3
        elif _is_word(args[index], "BY") or _is_word(args[index], "GET"):
            index += 2
        elif _is_word(args[index], "STORE") and index + 1 < len(args):
            return [index + 1]
        else:
            index += 1
    return []


def _no_keys(args: Sequence[Any]) -> list[int]:
    # SORT_RO has no STORE; its BY/GET patterns are left to the caller.
    return []


_SPECIAL: dict[str, Callable[[Sequence[Any]], list[int]]] = {
    "SORT": _sort_keys,
    "SORT_RO": _no_keys,
}
