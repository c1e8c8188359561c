"""Key slots, hash tags, and where a command's keys are.

A key's *slot* is Redis Cluster's: CRC16 (XMODEM, which is what
:func:`binascii.crc_hqx` with seed 0 computes) of the key modulo 16384. When
the key holds a *hash tag*, only the tag is hashed: the bytes between the
first ``{`` and the first ``}`` after it, provided there is at least one byte
between them (``{user1}.name`` hashes ``user1``; ``{}x`` and ``x{`` hash the
whole key; ``{{a}}`` hashes ``{a``). Keys sharing a tag share a slot.

Key positions come from the key specs of the command specifications (the
generated table in :mod:`._keyspecs`), read by :func:`key_positions` exactly
as the server reads them, plus hand-written rules for the few commands whose
keys no spec describes (``SORT ... STORE``). Commands the table lacks (a
module's, or a newer server's) are learned from the server:
:func:`learn_key_specs` records the key specs of a ``COMMAND INFO`` entry;
for the rare command whose keys no spec can find (``movablekeys`` without
key specs), :func:`needs_getkeys` says so and :func:`positions_from_getkeys`
turns the server's ``COMMAND GETKEYS`` answer into positions.

Where a command goes on a cluster follows from its keys and its cluster
tips: :func:`request_policy` and :func:`response_policy`.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import UnknownCommandError
from ._keyspecs import (
    CONTAINERS,
    INDEX,
    KEY_SPECS,
    KEYNUM,
    KEYWORD,
    RANGE,
    REQUEST_POLICY,
    RESPONSE_POLICY,
    UNKNOWN_KEYS,
    KeySpec,
)

__all__ = [
    "SLOTS",
    "UnknownCommandError",
    "command_key",
    "forget_learned_key_specs",
    "hash_tag",
    "key_bytes",
    "key_positions",
    "key_slot",
    "learn_key_specs",
    "needs_getkeys",
    "positions_from_getkeys",
    "request_policy",
    "response_policy",
    "text",
]

#: Number of slots in the key space, as in Redis Cluster.
SLOTS = 16384


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
    name = text(args[0]).upper()
    if name in CONTAINERS or name in _LEARNED_CONTAINERS:
        if len(args) < 2:
            raise UnknownCommandError(f"{name} needs a subcommand")
        name = f"{name}|{text(args[1]).upper()}"
    if name not in KEY_SPECS:
        raise UnknownCommandError(f"unknown command {name}: cannot tell where its keys are")
    return name


def text(arg: Any) -> str:
    """An argument as text: str as it is, bytes as latin-1 (any byte maps to one char)."""
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
    if name in _NEEDS_GETKEYS:
        raise UnknownCommandError(
            f"{name} has keys no key spec describes: ask the server (COMMAND GETKEYS) and "
            "use positions_from_getkeys()"
        )
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
            number = int(text(args[first + number_at]))
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
    return isinstance(arg, (str, bytes, bytearray, memoryview)) and text(arg).upper() == word


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


# -- What the server says of commands the table lacks -------------------------------------

_LEARNED_CONTAINERS: set[str] = set()
_LEARNED_KEYS: set[str] = set()
_NEEDS_GETKEYS: set[str] = set()


def learn_key_specs(key: str, info: Sequence[Any] | None, *, container: bool = False) -> None:
    """Record the key specs and cluster tips of ``key`` from its ``COMMAND INFO`` entry.

    ``info`` may be RESP2 (key specs as flat arrays of names and values) or
    RESP3 (maps), bytes or str. None records a command without keys (the
    server does not know it). A command the table already has is left as the
    table says.
    """
    if container:
        _LEARNED_CONTAINERS.add(key)
        return
    if key in KEY_SPECS and key not in _LEARNED_KEYS:
        return
    specs: list[KeySpec] = []
    if info is not None:
        flags = {text(flag).lower() for flag in _items(info[2])}
        raw_specs = _items(info[8]) if len(info) > 8 else []
        unknown = False
        for raw in raw_specs:
            spec = _convert_key_spec(raw)
            if spec is None:
                unknown = True
            else:
                specs.append(spec)
        first, last, step = (int(info[i]) for i in (3, 4, 5))
        if not raw_specs and first > 0:
            # An older module command: first key, last key (negative: from
            # the end), step.
            specs.append((INDEX, first, 0, RANGE, last - first if last >= 0 else last, step, 0))
        if unknown or ("movablekeys" in flags and not specs):
            _NEEDS_GETKEYS.add(key)
        for tip in _items(info[7]) if len(info) > 7 else []:
            kind, _, value = text(tip).lower().partition(":")
            if kind == "request_policy":
                REQUEST_POLICY[key] = value
            elif kind == "response_policy":
                RESPONSE_POLICY[key] = value
    KEY_SPECS[key] = tuple(specs)
    _LEARNED_KEYS.add(key)


def forget_learned_key_specs() -> None:
    """Forget what :func:`learn_key_specs` recorded (for tests)."""
    for key in _LEARNED_KEYS:
        KEY_SPECS.pop(key, None)
        REQUEST_POLICY.pop(key, None)
        RESPONSE_POLICY.pop(key, None)
    _LEARNED_KEYS.clear()
    _LEARNED_CONTAINERS.clear()
    _NEEDS_GETKEYS.clear()


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return list(value)


def _fields(value: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat array of names and values, with str names."""
    if isinstance(value, dict):
        return {text(k): v for k, v in value.items()}
    items = iter(value)
    return {text(k): v for k, v in zip(items, items, strict=True)}


def _convert_key_spec(raw: Any) -> KeySpec | None:
    spec = _fields(raw)
    begin, find = _fields(spec["begin_search"]), _fields(spec["find_keys"])
    begin_type, find_type = text(begin["type"]), text(find["type"])
    if begin_type not in ("index", "keyword") or find_type not in ("range", "keynum"):
        return None
    begin_spec, find_spec = _fields(begin["spec"]), _fields(find["spec"])
    if begin_type == "index":
        head: tuple[int, int | str, int] = (INDEX, int(begin_spec["index"]), 0)
    else:
        keyword = text(begin_spec["keyword"]).upper()
        head = (KEYWORD, keyword, int(begin_spec["startfrom"]))
    if find_type == "range":
        tail = (
            RANGE,
            int(find_spec["lastkey"]),
            int(find_spec["keystep"]),
            int(find_spec["limit"]),
        )
    else:
        tail = (
            KEYNUM,
            int(find_spec["keynumidx"]),
            int(find_spec["firstkey"]),
            int(find_spec["keystep"]),
        )
    return (*head, *tail)


def needs_getkeys(args: Sequence[Any]) -> bool:
    """Whether only the server can tell where the keys of ``args`` are (``COMMAND GETKEYS``).

    Raises:
        UnknownCommandError: the command is not in the table (not learned yet).
    """
    return command_key(args) in _NEEDS_GETKEYS


def positions_from_getkeys(args: Sequence[Any], keys: Sequence[Any]) -> list[int]:
    """The positions in ``args`` of the ``keys`` that ``COMMAND GETKEYS *args`` answered.

    Each key is matched, in order, to the first argument after the previous
    match that equals it as bytes.

    Raises:
        ValueError: a key is not among the arguments.
    """
    positions: list[int] = []
    index = 1
    for key in keys:
        wanted = key_bytes(key)
        while index < len(args) and key_bytes_or_none(args[index]) != wanted:
            index += 1
        if index >= len(args):
            raise ValueError(f"the server named a key {wanted!r} that is not among the arguments")
        positions.append(index)
        index += 1
    return positions


def key_bytes_or_none(arg: Any) -> bytes | None:
    try:
        return key_bytes(arg)
    except TypeError:
        return None


def request_policy(args: Sequence[Any]) -> str:
    """Where the command ``args`` goes on a cluster or a set of shards.

    Returns:
        ``"keys"``: to the owner of its keys (all in one slot, or split by
        the caller for ``multi_shard`` commands); ``"multi_shard"``: its keys
        may be split by slot; ``"all_shards"``, ``"all_nodes"``: to every
        primary, or every node; ``"special"``: the command needs handling of
        its own; ``"any_node"``: a key-less command any node can answer
        (``PUBLISH``, ``EVAL`` with no keys).

    Raises:
        UnknownCommandError: the command is not in the table (not learned yet).
    """
    name = command_key(args)
    tip = REQUEST_POLICY.get(name)
    if tip is not None and tip != "multi_shard":
        return tip
    if name in _NEEDS_GETKEYS or key_positions(args):
        return tip or "keys"
    return "any_node"


def response_policy(args: Sequence[Any]) -> str | None:
    """How the replies of a command sent to several shards combine (None: no policy).

    ``agg_sum``, ``agg_min``, ``agg_max``, ``agg_logical_and``,
    ``agg_logical_or``, ``all_succeeded``, ``one_succeeded`` or ``special``.
    """
    return RESPONSE_POLICY.get(command_key(args))
