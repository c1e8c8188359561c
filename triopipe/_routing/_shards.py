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

:class:`Router` turns a command into a *route* over *groups* of slots: a
slot table gives each slot's group. For the sharded client a group is a
shard (:class:`ShardRouter`, the rendezvous table); for a Redis Cluster each
slot is its own group (:class:`SlotRouter`), since a node refuses the keys
of two slots in one command even when it serves both. A route is:

- an ``int``: the one group that owns every key of the command;
- a :class:`Split`: parts for several groups and a ``merge`` of their
  replies. Multi-key commands that are safe to split (``MGET``, ``MSET``,
  ``DEL``, ``UNLINK``, ``EXISTS``, ``TOUCH``) are cut per group;
- a :class:`Broadcast`: a key-less command that concerns every server (Redis
  marks them ``all_shards`` or ``all_nodes``, e.g. ``PING``, ``FLUSHDB``,
  ``DBSIZE``, ``KEYS``, ``SCRIPT LOAD``), for every server the client knows,
  their replies combined by the response policy Redis documents (``agg_sum``
  adds ``DBSIZE``, ``all_succeeded`` returns one ``OK``...);
- an :class:`AnyServer`: a key-less command without such a policy, which
  any one server may run (``PUBLISH`` on a cluster, which spreads it to
  every node; ``EVAL`` or ``FCALL`` with no keys; ``TIME``). On independent
  shards nothing spreads a message, so there ``PUBLISH`` goes to the shard
  its channel hashes to, as a key would, where subscribers of that channel
  are too.

It raises :class:`~triopipe.CrossSlotError` for other multi-key commands
whose keys live in several groups, and :class:`~triopipe.NoShardError` for
key-less commands whose replies have no meaning merged across servers
(``INFO``, ``SCAN``...): those must be aimed at one server explicitly. A
command whose keys only the server can find (``COMMAND GETKEYS``) is routed
with the positions the client learned (``positions=``). All of it is decided
before anything is sent; which server serves a group is the client's
business, not the router's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import CrossSlotError, NoShardError
from ._keys import SLOTS, command_key, key_bytes, key_positions, key_slot
from ._keyspecs import INDEX, KEY_SPECS, RANGE, REQUEST_POLICY, RESPONSE_POLICY

__all__ = [
    "AnyServer",
    "Broadcast",
    "Route",
    "Router",
    "ShardRouter",
    "SlotRouter",
    "Split",
    "slot_table",
]


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
    """A command cut into parts for several groups, and how to merge their replies.

    Attributes:
        parts: ``(group, arguments)`` pairs, at most one per group.
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


class Broadcast(Split):
    """A key-less command for every server, and how to merge their replies.

    Which servers those are is the client's to say; ``merge`` takes their
    replies in the order it sent to them.

    Attributes:
        command: the arguments, sent unchanged to each server.
    """

    __slots__ = ("command",)

    def __init__(
        self, command: tuple[Any, ...], combine: Callable[[list[Any]], Any], policy: str
    ) -> None:
        super().__init__([], combine, policy)
        self.command = command


class AnyServer:
    """A key-less command that any one server may run.

    ``PUBLISH`` on a cluster, ``EVAL`` with no keys... Which server is the
    client's to choose.

    Attributes:
        command: the arguments.
    """

    __slots__ = ("command",)

    def __init__(self, command: tuple[Any, ...]) -> None:
        self.command = command

    def merge(self, replies: list[Any]) -> Any:
        """The one server's reply."""
        return replies[0]


#: What :meth:`Router.route` returns: a group, a split over groups, every
#: server (a :class:`Broadcast`, itself a split) or any one server.
Route = int | Split | AnyServer


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


class Router:
    """Routes commands over groups of slots, per a slot table.

    Args:
        table: for each of the 16384 slots, its group.
        names: a name per group, for error messages.
        groups: what the groups are, in error messages (``"shards"``).
        hint: what a :class:`~triopipe.NoShardError` suggests instead.
    """

    __slots__ = ("_direct", "groups", "hint", "names", "table")

    def __init__(self, table: Sequence[int], names: Sequence[str], groups: str, hint: str) -> None:
        self.names = tuple(names)
        self.table = table
        self.groups = groups
        self.hint = hint
        # Command name (as the caller spells it) -> index of its only key,
        # for the commands whose single key spec is "the key at index i":
        # most of them. None: use the general path.
        self._direct: dict[Any, int | None] = {}

    def shard_of_key(self, key: Any) -> int:
        """The group that owns ``key``."""
        return self.table[key_slot(key)]

    def route(self, args: Sequence[Any], positions: list[int] | None = None) -> Route:
        """The group of ``args``, a split over groups, every server, or any one server.

        ``positions`` gives the keys' positions when the server had to say
        where they are (``COMMAND GETKEYS``).

        Raises:
            CrossSlotError: the keys live in several groups and the command
                cannot be split.
            NoShardError: a key-less command with no meaning across servers.
            UnknownCommandError: a command neither the table nor the server
                told about.
            ValueError: an empty command.
        """
        if not args:
            raise ValueError("empty command")
        if positions is not None:
            return self._route_keys(args, positions, command_key(args))
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
        """The one group owning every key of ``args``; None if it names no key.

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

    def _route_general(self, args: Sequence[Any]) -> Route:
        return self._route_keys(args, key_positions(args), command_key(args))

    def _route_keys(self, args: Sequence[Any], positions: list[int], name: str) -> Route:
        if not positions:
            return self._keyless(name, args)
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
            f"the keys of {command_key(args)} live on different {self.groups} ({described}); "
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

    def _keyless(self, name: str, args: Sequence[Any]) -> Route:
        request = REQUEST_POLICY.get(name)
        if request in ("all_shards", "all_nodes"):
            response = RESPONSE_POLICY.get(name, "")
            if response in _COMBINE:
                return Broadcast(tuple(args), _COMBINE[response], response)
        elif request is None:
            return AnyServer(tuple(args))
        raise NoShardError(f"{name} names no key and has no meaning across servers: {self.hint}")


class ShardRouter(Router):
    """Routes commands over shards named ``names``, per their rendezvous slot table.

    Independent shards do not spread a published message to each other, so
    ``PUBLISH`` goes to the shard its channel hashes to, as a key would:
    a subscription to that channel is made on the same shard.

    Args:
        names: one stable name per shard; the slot table derives from them.
    """

    __slots__ = ()

    def _keyless(self, name: str, args: Sequence[Any]) -> Route:
        if name == "PUBLISH" and len(args) > 1:
            return self.shard_of_key(args[1])
        return super()._keyless(name, args)

    def __init__(self, names: Sequence[str]) -> None:
        if len(set(names)) != len(names):
            raise ValueError("shard names must be distinct")
        names = tuple(names)
        super().__init__(
            slot_table(names),
            names,
            "shards",
            "run it on one shard with redis.shards[url].execute(...), or on every shard "
            "with redis.for_each_shard(...)",
        )


_SLOT_NAMES = tuple(f"slot {slot}" for slot in range(SLOTS))
_IDENTITY = tuple(range(SLOTS))


class SlotRouter(Router):
    """Routes commands over the slots of a Redis Cluster: each slot is its own group."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(
            _IDENTITY,
            _SLOT_NAMES,
            "slots",
            "run it on one node with redis.nodes[url].execute(...)",
        )
