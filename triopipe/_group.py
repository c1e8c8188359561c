"""A connection group: the connections a client keeps to one server.

Commands share the group's multiplexed connections, each to the least loaded
one. What must hold a connection alone (transactions, blocking commands,
subscriptions) borrows a *dedicated* connection instead: idle ones are kept
for reuse, and one whose state is unknown when it comes back is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from ._config import ClientConfig
from ._connection import Connection
from ._exceptions import ResponseError, TransportError
from ._resp import Push
from ._statistics import ConnectionStatistics

__all__ = ["ConnectionGroup"]

# Dedicated connections kept open for reuse, per group.
_IDLE_DEDICATED = 4


class ConnectionGroup:
    """``config.connections`` connections to one server; commands go to the least loaded.

    Besides the shared, multiplexed connections, the group lends *dedicated*
    connections (:meth:`reserve`) to what must hold a connection alone:
    transactions and blocking commands.
    """

    def __init__(self, config: ClientConfig, task_group: anyio.abc.TaskGroup) -> None:
        self.config = config
        self._task_group = task_group
        self.connections = [Connection(config, task_group) for _ in range(config.connections)]
        self._single = self.connections[0] if len(self.connections) == 1 else None
        self._idle: list[Connection] = []
        self._reserved: set[Connection] = set()
        self.closed = False

    def __repr__(self) -> str:
        return f"<ConnectionGroup {self.config.address} connections={len(self.connections)}>"

    def choose(self) -> Connection:
        """The connection with the fewest commands in flight."""
        if self.closed:
            raise anyio.ClosedResourceError
        single = self._single
        if single is not None:
            return single
        return min(self.connections, key=_load)

    @property
    def busy(self) -> bool:
        """Whether any connection of the group has commands in flight."""
        return any(connection.load for connection in self.connections)

    @asynccontextmanager
    async def reserve(self) -> AsyncIterator[Connection]:
        """Lend a dedicated connection for the block's duration.

        It goes back to the idle pool when the block ends normally; when the
        block raises or is cancelled the connection's state is unknown (a
        blocking command still waiting, keys still watched), so it is closed.
        """
        if self.closed:
            raise anyio.ClosedResourceError
        connection = self._idle.pop() if self._idle else Connection(self.config, self._task_group)
        self._reserved.add(connection)
        clean = False
        try:
            yield connection
            clean = True
        finally:
            self._reserved.discard(connection)
            if clean and not self.closed and len(self._idle) < _IDLE_DEDICATED:
                self._idle.append(connection)
            else:
                connection.close()

    @asynccontextmanager
    async def subscriber(
        self,
        on_push: Callable[[Push], None],
        on_lost: Callable[[BaseException], None],
    ) -> AsyncIterator[Connection]:
        """A new connection in pub/sub mode for the block's duration; closed after."""
        if self.closed:
            raise anyio.ClosedResourceError
        connection = Connection(
            self.config, self._task_group, on_push=on_push, on_lost=on_lost, subscriber=True
        )
        self._reserved.add(connection)
        try:
            yield connection
        finally:
            self._reserved.discard(connection)
            connection.close()

    async def connect(self) -> None:
        """Connect every connection of the group in parallel, or raise the first failure."""
        errors: list[BaseException] = []

        async def connect_one(connection: Connection) -> None:
            try:
                await connection.connect()
            except (TransportError, ResponseError) as exc:
                errors.append(exc)

        async with anyio.create_task_group() as task_group:
            for connection in self.connections:
                task_group.start_soon(connect_one, connection)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Refuse new commands and fail every pending one."""
        self.closed = True
        for connection in [*self.connections, *self._idle, *self._reserved]:
            connection.close()
        self._idle.clear()

    def statistics(self) -> list[ConnectionStatistics]:
        """One snapshot per shared connection."""
        return [connection.statistics() for connection in self.connections]


def _load(connection: Connection) -> int:
    return connection.load
