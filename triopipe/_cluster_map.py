"""Redis Cluster topology as data: parsing the slot map, and what a redirect means.

Pure: no I/O, no clock. :mod:`triopipe._cluster` asks the nodes and acts.

Theory of operation
-------------------

A cluster's *slot map* says, for each of the 16384 slots, which primary
serves it and which replicas copy it. The client learns it from any node:

- ``CLUSTER SHARDS`` (Redis 7+): one entry per shard, with its slot ranges
  and its nodes (role, health, endpoint, port). RESP3 gives maps, RESP2 flat
  ``[name, value, ...]`` arrays; :func:`parse_cluster_shards` reads both.
- ``CLUSTER SLOTS`` (older servers): one entry per slot range,
  ``[first, last, primary, replica...]`` with each node as
  ``[endpoint, port, id, ...]``; :func:`parse_cluster_slots`.

An endpoint of ``""`` or nil means "the address you asked me on"; ``"?"``
means the node's address is unknown (it is skipped).

:class:`SlotMap` holds the result as one list of 16384 shard indexes, so
finding a key's primary costs one CRC and two list lookups. It changes in
two ways only:

- :meth:`SlotMap.move`, on a ``MOVED slot host:port`` reply: that one slot
  now belongs to that node (a primary). The rest of the map may be stale too
  (a reshard moves many slots), so the client also schedules a full refresh;
  but it does not wait for it: the next command for the slot goes straight to
  the new node.
- a refresh replaces the whole map.

An ``ASK slot host:port`` reply never changes the map: the slot is being
migrated, this one key has already moved, and only the very next command on
that connection may be served by the target, announced by ``ASKING``.
``TRYAGAIN`` (a multi-key command during a migration), ``CLUSTERDOWN`` and
``LOADING`` mean "not now": the same command is sent again after a backoff.
See :class:`triopipe._retry.ClusterRetryPolicy` for the limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ._routing import SLOTS

__all__ = [
    "READ_ONLY_COMMANDS",
    "Address",
    "Shard",
    "SlotMap",
    "fields_of",
    "parse_cluster_shards",
    "parse_cluster_slots",
    "text_of",
]


class Address(NamedTuple):
    """A node's address."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Shard(NamedTuple):
    """One primary, its replicas and the slot ranges (inclusive) they serve."""

    primary: Address
    replicas: tuple[Address, ...]
    ranges: tuple[tuple[int, int], ...]


_READ_ONLY_NAMES = """
    GET MGET GETRANGE STRLEN EXISTS TYPE TTL PTTL EXPIRETIME PEXPIRETIME
    HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HRANDFIELD
    LRANGE LLEN LINDEX LPOS SMEMBERS SISMEMBER SMISMEMBER SCARD SRANDMEMBER
    SINTER SUNION SDIFF SINTERCARD ZRANGE ZRANGEBYSCORE ZREVRANGE ZSCORE
    ZMSCORE ZCARD ZCOUNT ZRANK ZREVRANK ZRANGEBYLEX ZLEXCOUNT BITCOUNT
    BITPOS GETBIT XRANGE XREVRANGE XLEN PFCOUNT DUMP OBJECT SUBSTR
"""
# Commands that only read, and so may be served by a replica when the user
# allows it (``read_from_replicas=True``). Anything not listed goes to the
# primary.
READ_ONLY_COMMANDS = frozenset(
    name
    for text in _READ_ONLY_NAMES.split()
    for name in (text, text.encode(), text.lower(), text.lower().encode())
)


def text_of(value: Any) -> str:
    """A reply's string (bytes or str) as str."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def fields_of(entry: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 ``[name, value, ...]`` array as a dict keyed by str."""
    if isinstance(entry, Mapping):
        items: Iterable[tuple[Any, Any]] = entry.items()
    else:
        values = iter(entry)
        items = zip(values, values, strict=True)
    return {text_of(name): value for name, value in items}


def _address(endpoint: Any, port: Any, default_host: str) -> Address | None:
    """A node's address as announced; None when it is unknown (``?``)."""
    host = "" if endpoint is None else text_of(endpoint)
    if host == "?":
        return None
    return Address(host or default_host, int(port))


def parse_cluster_shards(reply: Sequence[Any], default_host: str) -> list[Shard]:
    """Read a ``CLUSTER SHARDS`` reply (RESP2 or RESP3 shape).

    Shards without slots or without a known, healthy primary are left out,
    and so are ``failed`` nodes. Replicas still ``loading`` are kept (Redis
    7.0 reports a replica that has not replicated a write yet as loading): if
    one really is, its ``LOADING`` reply sends the read to the primary.

    Args:
        reply: the reply as the protocol gives it.
        default_host: the host the reply came from, for empty endpoints.

    Raises:
        ValueError: the reply does not have the documented shape.
    """
    shards = []
    try:
        for entry in reply:
            fields = fields_of(entry)
            bounds = [int(bound) for bound in fields["slots"]]
            ranges = tuple(zip(bounds[::2], bounds[1::2], strict=True))
            primary: Address | None = None
            replicas = []
            for node_entry in fields["nodes"]:
                node = fields_of(node_entry)
                port = node.get("port", node.get("tls-port"))
                endpoint = node.get("endpoint", node.get("ip"))
                address = None if port is None else _address(endpoint, port, default_host)
                if address is None or text_of(node.get("health", "online")) == "failed":
                    continue
                if text_of(node.get("role")) == "master":
                    primary = address
                else:
                    replicas.append(address)
            if ranges and primary is not None:
                shards.append(Shard(primary, tuple(replicas), ranges))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unexpected CLUSTER SHARDS reply: {exc!r}") from exc
    return shards


def parse_cluster_slots(reply: Sequence[Any], default_host: str) -> list[Shard]:
    """Read a ``CLUSTER SLOTS`` reply into shards (one per primary).

    Raises:
        ValueError: the reply does not have the documented shape.
    """
    by_primary: dict[Address, tuple[list[Address], list[tuple[int, int]]]] = {}
    try:
        for entry in reply:
            first, last = int(entry[0]), int(entry[1])
            nodes = [_address(node[0], node[1], default_host) for node in entry[2:]]
            primary = nodes[0]
            if primary is None:
                continue
            replicas, ranges = by_primary.setdefault(primary, ([], []))
            ranges.append((first, last))
            replicas.extend(
                node for node in nodes[1:] if node is not None and node not in replicas
            )
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unexpected CLUSTER SLOTS reply: {exc!r}") from exc
    return [
        Shard(primary, tuple(replicas), tuple(ranges))
        for primary, (replicas, ranges) in by_primary.items()
    ]


class SlotMap:
    """For each slot, its shard (primary and replicas); see the module docstring.

    Args:
        shards: the cluster's shards, e.g. from :func:`parse_cluster_shards`.
    """

    __slots__ = ("owners", "shards")

    def __init__(self, shards: Iterable[Shard] = ()) -> None:
        self.shards: list[Shard] = []
        # Slot -> index in ``shards``; -1: no node serves it (as far as we know).
        self.owners = [-1] * SLOTS
        for shard in shards:
            index = self._index_of(shard.primary, shard.replicas)
            for first, last in shard.ranges:
                self.owners[first : last + 1] = [index] * (last - first + 1)

    def __repr__(self) -> str:
        return f"<SlotMap {len(self.primaries())} primaries, {self.covered()} slots served>"

    def _index_of(self, primary: Address, replicas: tuple[Address, ...] = ()) -> int:
        for index, shard in enumerate(self.shards):
            if shard.primary == primary:
                if replicas and not shard.replicas:
                    self.shards[index] = shard._replace(replicas=replicas)
                return index
        self.shards.append(Shard(primary, replicas, ()))
        return len(self.shards) - 1

    def primary(self, slot: int) -> Address | None:
        """The primary that serves ``slot``, or None if no node does."""
        index = self.owners[slot]
        return None if index < 0 else self.shards[index].primary

    def replicas(self, slot: int) -> tuple[Address, ...]:
        """The replicas of the primary that serves ``slot``."""
        index = self.owners[slot]
        return () if index < 0 else self.shards[index].replicas

    def move(self, slot: int, primary: Address) -> bool:
        """Record that ``primary`` now serves ``slot`` (a ``MOVED`` reply).

        Returns whether that changed the map.
        """
        index = self._index_of(primary)
        if self.owners[slot] == index:
            return False
        self.owners[slot] = index
        return True

    def covered(self) -> int:
        """How many slots have a primary."""
        return SLOTS - self.owners.count(-1)

    def primaries(self) -> list[Address]:
        """The primaries that serve at least one slot, in map order."""
        used = set(self.owners)
        return [shard.primary for index, shard in enumerate(self.shards) if index in used]

    def addresses(self, *, replicas: bool) -> set[Address]:
        """Every node the map names: primaries serving slots, and their replicas if asked."""
        used = set(self.owners)
        found = set()
        for index, shard in enumerate(self.shards):
            if index in used:
                found.add(shard.primary)
                if replicas:
                    found.update(shard.replicas)
        return found
