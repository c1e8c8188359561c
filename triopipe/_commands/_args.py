"""Argument checks and flatteners the generated builders call.

Each takes the helper's name, so its error names the helper and the
argument: bad input is refused before anything is sent. They are small and
allocation-light because builders run on every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "choice",
    "fixed",
    "flat_tuples",
    "keys_of",
    "keys_then_values",
    "pairs",
    "pairs_reversed",
    "tokened_pairs",
]

_TEXT = (str, bytes, bytearray, memoryview)


def keys_of(keys: Any) -> tuple[Any, ...]:
    """Keys given as one key, several keys, or lists of keys, as one flat tuple.

    ``mget("a", "b")``, ``mget(["a", "b"])`` and ``blpop(["a", "b"], 0)`` all
    name the same keys. A str or bytes is one key, never a sequence of
    characters.
    """
    if isinstance(keys, _TEXT):
        return (keys,)
    if type(keys) is tuple:
        for key in keys:
            if type(key) is list or type(key) is tuple:
                break
        else:
            return keys
    flat: list[Any] = []
    for key in keys:
        if type(key) is list or type(key) is tuple:
            flat += key
        else:
            flat.append(key)
    return tuple(flat)


def choice(value: Any, allowed: tuple[str, ...], name: str, helper: str) -> str:
    """The token of ``allowed`` that ``value`` names (any case).

    Raises:
        ValueError: ``value`` is none of them.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = str(value)
    wanted = text.upper()
    for token in allowed:
        if token.upper() == wanted:
            return token
    raise ValueError(f"{helper}: {name} must be one of {', '.join(allowed)}, not {value!r}")


def fixed(value: Any, length: int, name: str, helper: str) -> Sequence[Any]:
    """``value`` if it is a tuple or list of ``length`` items.

    Raises:
        ValueError: it is not.
    """
    if not isinstance(value, (tuple, list)) or len(value) != length:
        raise ValueError(f"{helper}: {name} must be a tuple of {length} values, not {value!r}")
    return value


def flat_tuples(items: Iterable[Any], length: int, name: str, helper: str) -> list[Any]:
    """Tuples of ``length`` values each, flattened (``GEOADD``'s longitude latitude member).

    Raises:
        ValueError: an item is not a tuple of ``length`` values.
    """
    flat: list[Any] = []
    for item in items:
        flat += fixed(item, length, name, helper)
    return flat


def pairs(mapping: Mapping[Any, Any]) -> list[Any]:
    """``{k1: v1, k2: v2}`` as ``[k1, v1, k2, v2]``."""
    flat: list[Any] = []
    for key, value in mapping.items():
        flat += (key, value)
    return flat


def pairs_reversed(mapping: Mapping[Any, Any]) -> list[Any]:
    """``{member: score}`` as ``[score, member]`` pairs (``ZADD``'s order)."""
    flat: list[Any] = []
    for key, value in mapping.items():
        flat += (value, key)
    return flat


def tokened_pairs(token: str, mapping: Mapping[Any, Any]) -> list[Any]:
    """``{k1: v1}`` as ``[token, k1, v1, ...]``, the token before each pair."""
    flat: list[Any] = []
    for key, value in mapping.items():
        flat += (token, key, value)
    return flat


def keys_then_values(mapping: Mapping[Any, Any]) -> list[Any]:
    """``{k1: v1, k2: v2}`` as ``[k1, k2, v1, v2]`` (``XREAD``'s STREAMS)."""
    return [*mapping.keys(), *mapping.values()]
