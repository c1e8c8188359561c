"""Statistics snapshots: what a connection, a client, a sharded or cluster client report.

Frozen dataclasses, made by the ``statistics()`` methods; reading them costs
nothing on any command's path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = [
    "ClientStatistics",
    "ClusterClientStatistics",
    "ConnectionStatistics",
    "ShardedClientStatistics",
]


@dataclasses.dataclass(frozen=True)
class ConnectionStatistics:
    """A snapshot of one connection, part of ``Client.statistics()``.

    Attributes:
        connected: a link is up and past its handshake.
        commands_in_flight: commands submitted whose replies have not been read
            (queued or written); abandoned ones count until their reply is read.
        commands_queued: commands not yet written to the socket.
        protocol: the RESP version the current link speaks (0 when none).
        connects: successful connects so far.
        commands_written: commands written to sockets so far.
        writes: socket writes so far; far fewer than ``commands_written``
            when concurrent commands share writes.
    """

    connected: bool
    commands_in_flight: int
    commands_queued: int
    protocol: int
    connects: int
    commands_written: int
    writes: int


@dataclasses.dataclass(frozen=True)
class ClientStatistics:
    """A snapshot of a client, from :meth:`Client.statistics`.

    Attributes:
        connections: connections in the group.
        connected: connections currently up.
        commands_in_flight: commands submitted and not yet answered, in total.
        commands_queued: commands not yet written to a socket, in total.
        connects: successful connects so far (more than ``connections`` means
            reconnects happened).
        commands_written: commands written to sockets so far, in total.
        writes: socket writes so far, in total (shared writes make it smaller
            than ``commands_written``).
        per_connection: one snapshot per connection.
    """

    connections: int
    connected: int
    commands_in_flight: int
    commands_queued: int
    connects: int
    commands_written: int
    writes: int
    per_connection: tuple[ConnectionStatistics, ...]


@dataclasses.dataclass(frozen=True)
class ShardedClientStatistics:
    """A snapshot of a sharded client, from :meth:`~triopipe.ShardedClient.statistics`.

    Attributes:
        shards: number of shards.
        connected_shards: shards with at least one connection up.
        commands_in_flight: commands submitted and not yet answered, over all shards.
        per_shard: each shard's :class:`~triopipe.ClientStatistics`, by shard name.
    """

    shards: int
    connected_shards: int
    commands_in_flight: int
    per_shard: Mapping[str, ClientStatistics]


@dataclasses.dataclass(frozen=True)
class ClusterClientStatistics:
    """A snapshot of a cluster client, from :meth:`~triopipe.ClusterClient.statistics`.

    Attributes:
        nodes: nodes the client holds connections to.
        primaries: primaries in the slot map.
        slots_served: slots with a known primary (16384 when all is well).
        commands_in_flight: commands submitted and not yet answered, over all nodes.
        refreshes: topology refreshes so far.
        moved: ``MOVED`` replies followed so far.
        asked: ``ASK`` replies followed so far.
        retries: commands sent again after a refusal or failure (redirects included).
        per_node: each node's :class:`~triopipe.ClientStatistics`, by URL.
    """

    nodes: int
    primaries: int
    slots_served: int
    commands_in_flight: int
    refreshes: int
    moved: int
    asked: int
    retries: int
    per_node: Mapping[str, ClientStatistics]
