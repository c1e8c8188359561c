"""Which shard a command goes to: the slot table and the routing plan.

Theory of operation
-------------------

:func:`slot_table` gives each of the 16384 slots to one shard by rendezvous
(highest random weight) hashing: every (slot, shard name) pair gets a
pseudo-random weight from BLAKE2b, and the slot goes to the heaviest shard.
Weights depend on nothing but the pair, so adding a shard moves to it exactly
the slots where it weighs most (about 1/N of them) and removing one moves
only its own slots; nothing else changes hands. The table is computed once
per set of names (a few tens of milliseconds) and cached.

:class:`ShardRouter` turns a command into a *route*:

- an ``int``: the one shard that owns every key of the command;
- a :class:`Split`: parts for several shards and a ``merge`` of their
  replies. Multi-key commands that are safe to split (``MGET``, ``MSET``,
  ``DEL``, ``UNLINK``, ``EXISTS``, ``TOUCH``) are cut per shard; key-less
  commands that concern every server (Redis marks them ``all_shards`` or
  ``all_nodes``, e.g. ``PING``, ``FLUSHDB``, ``DBSIZE``, ``KEYS``) go to all of
  them, their replies combined by the response policy Redis documents
  (``agg_sum`` adds ``DBSIZE``, ``all_succeeded`` returns one ``OK``...).

It raises :class:`~triopipe.CrossSlotError` for other multi-key commands
whose keys live on several shards, and :class:`NoShardError` for key-less
commands with no meaning across servers (``INFO``, ``EVAL`` with no keys...):
those must be aimed at one shard explicitly. All of it is decided before
anything is sent.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import CrossSlotError
from ._keys import SLOTS, command_key, key_bytes, key_positions, key_slot
from ._keyspecs import INDEX, KEY_SPECS, RANGE, REQUEST_POLICY, RESPONSE_POLICY

__all__ = ["NoShardError", "ShardRouter", "Split", "slot_table"]


class NoShardError(ValueError):
    """A key-less command with no meaning across shards was sent to a sharded client.

    Aim it at one shard (``redis.shards[url].execute(...)``) or at every
    shard (``redis.for_each_shard(...)``).
    """


@functools.lru_cache(maxsize=16)
def slot_table(names: tuple[str, ...]) -> tuple[int, ...]:
    """For each slot, the index in ``names`` of the shard that owns it (rendezvous)."""
    if not names:
        raise ValueError("at least one shard is needed")
    hashers = [hashlib.blake2b(name.encode(), digest_size=8) for name in names]
    table: list[int] = []
    for slot in range(SLOTS):
        suffix = slot.to_bytes(2, "big")
        best_weight = -1
        best = 0
        for index, hasher in enumerate(hashers):
            weighed = hasher.copy()
            weighed.update(suffix)
            weight = int.from_bytes(weighed.digest(), "big")
            # Ties (2**-64 odds) go to the first name, deterministically.
            if weight > best_weight:
                best_weight, best = weight, index
        table.append(best)
    return tuple(table)


class Split:
    """A command cut into parts for several shards, and how to merge their replies.

    Attributes:
        parts: ``(shard index, arguments)`` pairs, at most one per shard.
    """

    __slots__ = ("_combine", "_policy", "parts")

    def __init__(
        self,
        parts: list[tuple[int, tuple[Any, ...]]],
        combine: Callable[[list[Any]], Any],
        policy: str = "",
    ) -> None:
        self.parts = parts
        self._combine = combine
        self._policy = policy

    def merge(self, replies: list[Any]) -> Any:
        """The command's reply from its parts' replies (in :attr:`parts` order).

        An error in any part is the command's error (returned, not raised),
        except under the ``one_succeeded`` policy, where one success is enough.
        """
        errors = [reply for reply in replies if isinstance(reply, BaseException)]
        if errors:
            if self._policy != "one_succeeded" or len(errors) == len(replies):
                return errors[0]
            replies = [reply for reply in replies if not isinstance(reply, BaseException)]
        return self._combine(replies)


# Multi-key commands that may be cut per shard: keys per group of arguments,
# and how to combine the parts' replies. MSETNX is absent on purpose: "set
# all or none" cannot hold across servers.
_SPLITTABLE: dict[str, tuple[int, str]] = {
    "MGET": (1, "ordered"),
    "MSET": (2, "all_succeeded"),
    "DEL": (1, "agg_sum"),
    "UNLINK": (1, "agg_sum"),
    "EXISTS": (1, "agg_sum"),
    "TOUCH": (1, "agg_sum"),
}


def _first(replies: list[Any]) -> Any:
    return replies[0]


def _logical(combine: Callable[[Any], bool]) -> Callable[[list[Any]], Any]:
    def merge(replies: list[Any]) -> Any:
        if isinstance(replies[0], list):  # SCRIPT EXISTS: one flag per script
            return [int(combine(flags)) for flags in zip(*replies, strict=True)]
        return int(combine(replies))

    return merge


def _gather(replies: list[Any]) -> Any:
    # No response policy (KEYS, RANDOMKEY, SLOWLOG GET): arrays are
    # concatenated, anything else is the first shard's non-nil reply.
    if all(isinstance(reply, list) for reply in replies):
        return [item for reply in replies for item in reply]
    return next((reply for reply in replies if reply is not None), None)


_COMBINE: dict[str, Callable[[list[Any]], Any]] = {
    "all_succeeded": _first,
    "one_succeeded": _first,
    "agg_sum": sum,
    "agg_min": min,
    "agg_max": max,
    "agg_logical_and": _logical(all),
    "agg_logical_or": _logical(any),
    "": _gather,
}


class ShardRouter:
    """Routes commands over shards named ``names``, per the slot table.

    Args:
        names: one stable name per shard; the slot table derives from them.
    """

    __slots__ = ("_direct", "names", "table")

    def __init__(self, names: Sequence[str]) -> None:
        if len(set(names)) != len(names):
            raise ValueError("shard names must be distinct")
        self.names = tuple(names)
        self.table = slot_table(self.names)
        # Command name (as the caller spells it) -> index of its only key,
        # for the commands whose single key spec is "the key at index i":
        # most of them. None: use the general path.
        self._direct: dict[Any, int | None] = {}

    def shard_of_key(self, key: Any) -> int:
        """The index of the shard that owns ``key``."""
        return self.table[key_slot(key)]

    def route(self, args: Sequence[Any]) -> int | Split:
        """The shard index for ``args``, or a :class:`Split` over several shards.

        Raises:
            CrossSlotError: the keys live on several shards and the command
                cannot be split.
            NoShardError: a key-less command with no meaning across shards.
            ValueError: an empty or unknown command.
        """
        if not args:
            raise ValueError("empty command")
        name = args[0]
        try:
            index = self._direct[name]
        except (KeyError, TypeError):
            index = self._learn(args)
        if index is not None and len(args) > index:
            return self.shard_of_key(args[index])
        return self._route_general(args)

    def _learn(self, args: Sequence[Any]) -> int | None:
        name = command_key(args)
        specs = KEY_SPECS[name]
        index: int | None = None
        if len(specs) == 1 and "|" not in name:
            begin, where, _, find, last, _, _ = specs[0]
            if begin == INDEX and find == RANGE and last == 0:
                assert isinstance(where, int)
                index = where
        if name in _SPLITTABLE or len(self._direct) > 1024:
            return index  # no shortcut: these must be checked key by key
        # An unhashable name is not remembered: the server will refuse it.
        with contextlib.suppress(TypeError):
            self._direct[args[0]] = index
        return index

    def shard_of_command(self, args: Sequence[Any]) -> int | None:
        """The one shard owning every key of ``args``; None if it names no key.

        Unlike :meth:`route` this never splits: it is for transactions, whose
        commands must all run on one server.

        Raises:
            CrossSlotError: the keys live on several shards.
            ValueError: an empty or unknown command.
        """
        if not args:
            raise ValueError("empty command")
        positions = key_positions(args)
        if not positions:
            return None
        shards = [self.shard_of_key(args[position]) for position in positions]
        if any(shard != shards[0] for shard in shards):
            raise self._cross_slot(args, positions, shards)
        return shards[0]

    def _route_general(self, args: Sequence[Any]) -> int | Split:
        positions = key_positions(args)
        name = command_key(args)
        if not positions:
            return self._fan_out(name, args)
        shards = [self.shard_of_key(args[position]) for position in positions]
        first = shards[0]
        if all(shard == first for shard in shards):
            return first
        if name in _SPLITTABLE:
            return self._split(name, args, positions, shards)
        raise self._cross_slot(args, positions, shards)

    def _cross_slot(
        self, args: Sequence[Any], positions: list[int], shards: list[int]
    ) -> CrossSlotError:
        described = ", ".join(
            f"{key_bytes(args[p])!r} on {self.names[s]}"
            for p, s in zip(positions, shards, strict=True)
        )
        return CrossSlotError(
            "CROSSSLOT",
            f"the keys of {command_key(args)} live on different shards ({described}); "
            "give them a common hash tag, e.g. {user1}:a and {user1}:b",
        )

    def _split(
        self, name: str, args: Sequence[Any], positions: list[int], shards: list[int]
    ) -> Split:
        step, policy = _SPLITTABLE[name]
        order: list[int] = []  # shards in order of first appearance
        grouped: dict[int, list[Any]] = {}
        for position, shard in zip(positions, shards, strict=True):
            if shard not in grouped:
                grouped[shard] = [args[0]]
                order.append(shard)
            grouped[shard] += args[position : position + step]
        parts = [(shard, tuple(grouped[shard])) for shard in order]
        if policy != "ordered":
            return Split(parts, _COMBINE[policy], policy)
        owners = [order.index(shard) for shard in shards]

        def reassemble(replies: list[Any]) -> list[Any]:
            values = [iter(reply) for reply in replies]
            return [next(values[owner]) for owner in owners]

        return Split(parts, reassemble)

    def _fan_out(self, name: str, args: Sequence[Any]) -> Split:
        request = REQUEST_POLICY.get(name)
        response = RESPONSE_POLICY.get(name, "")
        if request not in ("all_shards", "all_nodes") or response not in _COMBINE:
            raise NoShardError(
                f"{name} names no key, so it has no shard: run it on one shard with "
                "redis.shards[url].execute(...), or on every shard with "
                "redis.for_each_shard(...)"
            )
        command = tuple(args)
        return Split(
            [(shard, command) for shard in range(len(self.names))], _COMBINE[response], response
        )
