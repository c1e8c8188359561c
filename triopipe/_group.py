"""A connection group: the connections a client keeps to one server.

Commands share the group's multiplexed connections, each to the least loaded
one. What must hold a connection alone (transactions, blocking commands)
borrows a *dedicated* connection instead, from a pool bounded by
``max_dedicated``: beyond it, borrowers wait their turn, first come first
served, so a burst of ``BLPOP`` never exhausts the server's ``maxclients``.
Idle dedicated connections are kept for reuse and closed once idle longer
than ``dedicated_idle_timeout``; one whose state is unknown when it comes
back (its block raised or was cancelled) is closed at once. Subscriptions
get connections of their own, outside the pool.

A group can be aimed at another server (:meth:`ConnectionGroup.retarget`,
for Sentinel): every connection, shared, dedicated or subscribed, follows.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc

from ._config import ClientConfig
from ._connection import Connection
from ._exceptions import ResponseError, TransportError
from ._resp import Push
from ._statistics import ConnectionStatistics
from ._streams import Stream

__all__ = ["ConnectionGroup"]


class ConnectionGroup:
    """``config.connections`` connections to one server; commands go to the least loaded.

    Besides the shared, multiplexed connections, the group lends *dedicated*
    connections (:meth:`reserve`) to what must hold a connection alone:
    transactions and blocking commands.
    """

    def __init__(
        self,
        config: ClientConfig,
        task_group: anyio.abc.TaskGroup,
        *,
        open_stream: Callable[[], Awaitable[Stream]] | None = None,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.config = config
        self._task_group = task_group
        self._open_stream = open_stream
        # Told of every broken link and failed connect (not subscriptions').
        self._on_lost = on_lost
        self.connections = [self._new() for _ in range(config.connections)]
        self._single = self.connections[0] if len(self.connections) == 1 else None
        # Idle dedicated connections, and since when (time.monotonic()).
        self._idle: list[tuple[Connection, float]] = []
        self._reserved: set[Connection] = set()
        # Borrowers waiting for a dedicated connection, in turn.
        self._turns: deque[anyio.Event] = deque()
        self.closed = False

    def _new(
        self,
        on_push: Callable[[Push], None] | None = None,
        on_lost: Callable[[BaseException], None] | None = None,
        subscriber: bool = False,
    ) -> Connection:
        return Connection(
            self.config,
            self._task_group,
            on_push=on_push,
            on_lost=on_lost if subscriber else self._on_lost,
            subscriber=subscriber,
            open_stream=self._open_stream,
        )

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
    def suspect(self) -> bool:
        """Whether the server may be gone: a connection's last connect failed or its
        link broke, and it has not come back since."""
        return any(connection.suspect for connection in self.connections)

    @property
    def busy(self) -> bool:
        """Whether any connection of the group has commands in flight."""
        return any(connection.load for connection in self.connections)

    @asynccontextmanager
    async def reserve(self) -> AsyncIterator[Connection]:
        """Lend a dedicated connection for the block's duration, waiting for one if need be.

        It goes back to the idle pool when the block ends normally; when the
        block raises or is cancelled the connection's state is unknown (a
        blocking command still waiting, keys still watched), so it is closed.
        """
        if self.closed:
            raise anyio.ClosedResourceError
        await self._take_turn()
        self._close_stale()
        connection = self._idle.pop()[0] if self._idle else self._new()
        self._reserved.add(connection)
        clean = False
        try:
            yield connection
            clean = True
        finally:
            self._reserved.discard(connection)
            if clean and not self.closed:
                self._idle.append((connection, time.monotonic()))
            else:
                connection.close()
            self._pass_turn()

    async def _take_turn(self) -> None:
        """Wait until fewer than ``max_dedicated`` connections are lent, in turn."""
        if len(self._reserved) < self.config.max_dedicated and not self._turns:
            return
        turn = anyio.Event()
        self._turns.append(turn)
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():
                self._pass_turn()  # given a turn it will not use: the next one's
            else:
                self._turns.remove(turn)
            raise
        if self.closed:
            raise anyio.ClosedResourceError

    def _pass_turn(self) -> None:
        """Wake the next borrower if there is room (or wake all when closed)."""
        turns = self._turns
        while turns and (self.closed or len(self._reserved) < self.config.max_dedicated):
            turns.popleft().set()
            if not self.closed:
                return

    def _close_stale(self) -> None:
        """Close the idle dedicated connections idle longer than ``dedicated_idle_timeout``."""
        limit = time.monotonic() - self.config.dedicated_idle_timeout
        stale = [connection for connection, since in self._idle if since < limit]
        if stale:
            self._idle = [(c, since) for c, since in self._idle if since >= limit]
            for connection in stale:
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
        connection = self._new(on_push, on_lost, subscriber=True)
        self._reserved.add(connection)
        try:
            yield connection
        finally:
            self._reserved.discard(connection)
            connection.close()

    def retarget(self, config: ClientConfig, error: BaseException) -> None:
        """Point every connection at another server (a Sentinel failover).

        Each link breaks with ``error``: a command written to the old server
        has an unknown outcome and is never resent; one not yet written is
        sent to the new server. Subscriptions break too.
        """
        self.config = config
        idle = [connection for connection, _ in self._idle]
        for connection in [*self.connections, *idle, *self._reserved]:
            connection.retarget(config, error)

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
        idle = [connection for connection, _ in self._idle]
        for connection in [*self.connections, *idle, *self._reserved]:
            connection.close()
        self._idle.clear()
        self._pass_turn()

    def statistics(self) -> list[ConnectionStatistics]:
        """One snapshot per shared connection."""
        return [connection.statistics() for connection in self.connections]


def _load(connection: Connection) -> int:
    return connection.load
