"""Statistics snapshots: what connections and clients report, and what a pump did.

Frozen dataclasses, made by the ``statistics()`` methods; reading them costs
nothing on any command's path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ._exceptions import ConnectionLostError, TransportError

__all__ = [
    "ClientStatistics",
    "ClusterClientStatistics",
    "ConnectionStatistics",
    "PumpReport",
    "PumpTally",
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


@dataclasses.dataclass(frozen=True)
class PumpReport:
    """What :meth:`~triopipe.Client.pump` did with each command, counted.

    Attributes:
        commands: commands taken from the input.
        acknowledged: commands the server answered with a reply.
        errors: commands the server answered with an error reply (or whose
            reply could not be decoded).
        unknown: commands written before their connection broke: the server
            may or may not have applied them.
        not_sent: commands never sent: the server could not be reached.
    """

    commands: int
    acknowledged: int
    errors: int
    unknown: int
    not_sent: int


class PumpTally:
    """Counts outcomes as they come, and hands them on with their numbers."""

    __slots__ = ("_acknowledged", "_errors", "_next", "_not_sent", "_on_outcomes", "_unknown")

    def __init__(self, on_outcomes: Callable[[int, list[Any]], object] | None) -> None:
        self._on_outcomes = on_outcomes
        self._next = self._acknowledged = self._errors = self._unknown = self._not_sent = 0

    def add(self, outcomes: list[Any]) -> None:
        """Count the outcomes of the next commands, in order."""
        first = self._next
        self._next = first + len(outcomes)
        # Most batches hold no error: tell so from their types, in C.
        kinds = set(map(type, outcomes))
        failed = (
            self._count_failures(outcomes)
            if any(issubclass(kind, Exception) for kind in kinds)
            else 0
        )
        self._acknowledged += len(outcomes) - failed
        if self._on_outcomes is not None:
            self._on_outcomes(first, outcomes)

    def _count_failures(self, outcomes: list[Any]) -> int:
        """Count the failures among ``outcomes`` by kind; return how many failed."""
        failed = 0
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                failed += 1
                if isinstance(outcome, ConnectionLostError) and outcome.sent:
                    self._unknown += 1
                elif isinstance(outcome, TransportError):
                    self._not_sent += 1
                else:
                    self._errors += 1
        return failed

    def report(self) -> PumpReport:
        """The counts so far."""
        return PumpReport(
            commands=self._next,
            acknowledged=self._acknowledged,
            errors=self._errors,
            unknown=self._unknown,
            not_sent=self._not_sent,
        )
