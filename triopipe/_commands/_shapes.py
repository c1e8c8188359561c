"""Reply shapers: the same Python types under RESP2 and RESP3.

The reply schemas of the command specifications are written for RESP3. A
RESP2 server sends the same data in poorer types: a map as a flat array of
keys and values (or an array of pairs), a double as a bulk string, a set as
an array, and (for ``WITHSCORES`` and the like) a flat array where RESP3
nests ``[member, score]`` pairs. A shaper takes either form and returns one
Python type; the generator composes them from the reply schema.

Composite shapers take the shapers of their parts; ``None`` stands for "the
reply as it is". Shapers never see error replies (those are raised, or
returned as exceptions, before shaping).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._base import is_ok, to_bool, to_dict, to_float, to_set

__all__ = [
    "Shaper",
    "dict_of",
    "entry",
    "fields_of",
    "geo_items",
    "is_ok",
    "list_of",
    "optional",
    "optional_pair",
    "pair",
    "pairs_of",
    "prefix_items",
    "scan_page",
    "set_of",
    "to_bool",
    "to_dict",
    "to_float",
    "to_number",
    "to_set",
    "tuple_of",
]

Shaper = Callable[[Any], Any]


def to_number(reply: Any) -> float:
    """A RESP3 double, or the RESP2 bulk string of a number, as ``float``."""
    return float(reply)


def _same(reply: Any) -> Any:
    return reply


def _or_same(shaper: Shaper | None) -> Shaper:
    return _same if shaper is None else shaper


def optional(shaper: Shaper) -> Shaper:
    """``shaper``, with nil staying None."""

    def shape(reply: Any) -> Any:
        return None if reply is None else shaper(reply)

    return shape


def list_of(item: Shaper) -> Shaper:
    """An array, each element shaped by ``item``."""

    def shape(reply: Any) -> list[Any]:
        return [item(element) for element in reply]

    return shape


def set_of(item: Shaper) -> Shaper:
    """An array or RESP3 set as a ``set``, each element shaped by ``item``."""

    def shape(reply: Any) -> set[Any]:
        return {item(element) for element in reply}

    return shape


def tuple_of(*items: Shaper | None) -> Shaper:
    """A fixed-length array as a tuple, each element shaped by its shaper."""
    shapers = [_or_same(item) for item in items]

    def shape(reply: Any) -> tuple[Any, ...]:
        return tuple(shaper(element) for shaper, element in zip(shapers, reply, strict=True))

    return shape


def prefix_items(items: list[Shaper | None], rest: Shaper | None) -> Shaper:
    """An array of known first elements, then any number shaped alike, as a list.

    ``CLUSTER SLOTS`` entries: a start slot, an end slot, then one node
    description after another.
    """
    shapers = [_or_same(item) for item in items]
    shape_rest = _or_same(rest)

    def shape(reply: Any) -> list[Any]:
        head = [shaper(element) for shaper, element in zip(shapers, reply, strict=False)]
        return head + [shape_rest(element) for element in reply[len(shapers) :]]

    return shape


def pair(first: Shaper | None, second: Shaper | None) -> Shaper:
    """A two-element array as a tuple."""
    return tuple_of(first, second)


def optional_pair(first: Shaper | None, second: Shaper | None) -> Shaper:
    """A two-element array as a tuple; nil or an empty array as None.

    ``ZPOPMIN`` without a count answers ``[]`` for a missing key, and
    ``ZRANK ... WITHSCORE`` nil.
    """
    shape_pair = pair(first, second)

    def shape(reply: Any) -> Any:
        return shape_pair(reply) if reply else None

    return shape


def pairs_of(first: Shaper | None, second: Shaper | None) -> Shaper:
    """Pairs as a list of tuples: RESP3 nests them, RESP2 sends one flat array.

    RESP3 answers ``ZRANGE ... WITHSCORES`` with ``[[member, score], ...]``;
    RESP2 with ``[member, score, member, score, ...]``. The first element
    tells which: a pair's first element is never an array.
    """
    shape_first, shape_second = _or_same(first), _or_same(second)

    def shape(reply: Any) -> list[tuple[Any, Any]]:
        if reply and isinstance(reply[0], list):
            return [(shape_first(a), shape_second(b)) for a, b in reply]
        items = iter(reply)
        return [(shape_first(a), shape_second(b)) for a, b in zip(items, items, strict=True)]

    return shape


def dict_of(value: Shaper) -> Shaper:
    """A map (RESP3) or its RESP2 array form as a dict, each value shaped by ``value``."""

    def shape(reply: Any) -> dict[Any, Any]:
        return {key: value(item) for key, item in to_dict(reply).items()}

    return shape


def fields_of(shapers: dict[str, Shaper], patterns: dict[str, Shaper] | None = None) -> Shaper:
    """A map with known fields as a dict, the listed fields shaped by their shaper.

    Field names are matched as str and as bytes, so ``decode`` does not
    matter; fields matching a regular expression of ``patterns``
    (``MEMORY STATS``'s ``db.0``...) get its shaper.
    """
    table: dict[Any, Shaper] = {}
    for name, shaper in shapers.items():
        table[name] = table[name.encode()] = shaper
    compiled = [(re.compile(pattern), shaper) for pattern, shaper in (patterns or {}).items()]

    def shape(reply: Any) -> dict[Any, Any]:
        result = to_dict(reply)
        for key, item in result.items():
            shaper = table.get(key)
            if shaper is None and compiled:
                name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
                shaper = next((s for regex, s in compiled if regex.search(name)), None)
            if shaper is not None and item is not None:
                result[key] = shaper(item)
        return result

    return shape


def entry(reply: Any) -> tuple[Any, Any]:
    """A stream entry as ``(id, {field: value})``; a deleted entry's fields stay None."""
    entry_id, fields = reply
    return entry_id, None if fields is None else to_dict(fields)


def scan_page(items: Shaper | None) -> Shaper:
    """A ``SCAN``-family reply as ``(next cursor, items)``; the cursor is 0 when done."""
    shape_items = _or_same(items)

    def shape(reply: Any) -> tuple[int, Any]:
        cursor, page = reply
        return int(cursor), shape_items(page)

    return shape


def geo_items(reply: Any) -> list[tuple[Any, Any, Any, Any]]:
    """``GEOSEARCH``-family items with ``WITH*`` options as ``(member, dist, hash, coords)``.

    The server sends only what was asked for, in that order: the distance
    (a string, or a RESP3 double), the geohash (an integer), the coordinates
    (a pair). What was not asked for is None.
    """
    items = []
    for item in reply:
        member, *extras = item
        dist = geohash = coords = None
        for extra in extras:
            if isinstance(extra, list):
                coords = (float(extra[0]), float(extra[1]))
            elif isinstance(extra, int):
                geohash = extra
            else:
                dist = float(extra)
        items.append((member, dist, geohash, coords))
    return items
