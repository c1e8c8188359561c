"""The sharded client: several independent servers, keys spread over them by slot.

Theory of operation
-------------------

:func:`~triopipe.open_sharded_client` opens one connection group per server, all in
one task group that it owns, and connects them in parallel. Each shard is
driven by an ordinary :class:`~triopipe.Client` over its group, so everything
the client knows (auto-pipelining, windows, dedicated connections for
blocking commands, transactions) works per shard unchanged.

Where commands go and how replies come back together is the fan-out engine's
(:mod:`triopipe._fanout`); this module gives it a *static* topology: a
group of slots is a shard, its server never changes, and a shard's failure
is final (each shard's client has already retried what its own policy
allows). The pure :class:`~triopipe._routing.ShardRouter` maps a command to
one shard, to a split over several, or to every shard, or raises before
anything is sent.

Pub/Sub follows the same rule as ``PUBLISH`` (which goes to the shard its
channel hashes to, independent servers spreading nothing): a subscription
puts each channel and shard channel on that shard, and each pattern on every
shard (:class:`_ShardPlacement`).

A shard failing (down, connection lost) fails only what was routed to it:
shards run as separate tasks, and a shard's transport error is put in place
of each of its commands; healthy shards' replies are kept and the error is
raised only once every shard has finished.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, TypeVar

import anyio

from ._client import Client, dispatch_to
from ._commands import Arg, Command, Key
from ._config import ClientConfig, parse_url
from ._exceptions import ConnectionLostError, ResponseError, UnknownCommandError
from ._fanout import Entry, FanOut, FanOutClient, ShardedTransaction, gather, raise_first
from ._group import ConnectionGroup
from ._pubsub import PATTERNS, Kind, SubscriberSource
from ._routing import Route, ShardRouter
from ._statistics import ShardedClientStatistics
from ._subscription import Placement, Subscribing
from ._tasks import background_task_group

__all__ = ["ShardedClient", "connect_all", "open_sharded_client"]

T = TypeVar("T")


class _Shards:
    """The static topology: a group is a shard, served by its client for good."""

    __slots__ = ("clients",)

    def __init__(self, clients: Sequence[Client]) -> None:
        self.clients = clients

    def target(self, entry: Entry) -> tuple[Client, bool]:
        return self.clients[entry.group], False

    def every_target(self) -> Sequence[Client]:
        return self.clients

    def judge(self, entry: Entry) -> None:
        # Each shard's client retried what its policy allows: a failure is final.
        return None

    def retryable(self, error: BaseException) -> bool:
        return False

    def unserved(self, entry: Entry) -> BaseException:  # pragma: no cover - every group has one
        return ConnectionLostError(f"no shard serves group {entry.group}", sent=False)

    async def pause(self, delay: float) -> None:  # pragma: no cover - nothing is retried
        await anyio.sleep(delay)


class _ShardPlacement:
    """Where subscriptions put names: channels where ``PUBLISH`` goes, patterns everywhere."""

    __slots__ = ("_clients", "_router")

    def __init__(self, router: ShardRouter, clients: Sequence[Client]) -> None:
        self._router = router
        self._clients = clients

    def place(self, kind: Kind, key: bytes) -> Sequence[Hashable]:
        if kind is PATTERNS:
            return range(len(self._clients))
        return (self._router.shard_of_key(key),)

    def source(self, server: Hashable) -> SubscriberSource:
        assert isinstance(server, int)
        return self._clients[server].group

    def learn(self, error: ResponseError) -> None:
        pass

    async def refresh(self) -> None:
        pass


class ShardedClient(FanOutClient, Subscribing):
    """A client for several Redis servers (shards), made by :func:`~triopipe.open_sharded_client`.

    Offers the interface of :class:`~triopipe.Client`: ``execute``, the typed helpers,
    ``execute_many``, ``batch``, ``transaction`` and ``scan_iter``. Each key
    lives on one shard, chosen by its slot (hash tags included); see the
    sharding guide for what is split across shards and what raises.
    """

    __slots__ = ("_clients", "_engine", "_groups", "_router", "_shards")

    def __init__(self, names: Sequence[str], groups: Sequence[ConnectionGroup]) -> None:
        self._router = ShardRouter(names)
        self._groups = list(groups)
        self._clients = [Client(group) for group in groups]
        self._shards = MappingProxyType(dict(zip(names, self._clients, strict=True)))
        self._engine = FanOut(self._router, _Shards(self._clients), self._closing)

    def __repr__(self) -> str:
        state = "closed" if self._closing() else "open"
        return f"<ShardedClient {list(self._shards)} {state}>"

    def _closing(self) -> bool:
        return self._groups[0].closed

    @property
    def shards(self) -> Mapping[str, Client]:
        """Each shard's :class:`~triopipe.Client`, by shard name (its URL, without credentials).

        Use it to aim a command at one server: ``redis.shards[url].execute("INFO")``.
        """
        return self._shards

    def shard_for(self, key: Key) -> str:
        """The name (by default the URL, without credentials) of the shard owning ``key``."""
        return self._router.names[self._router.shard_of_key(key)]

    def client_for(self, key: Key) -> Client:
        """The :class:`~triopipe.Client` of the shard owning ``key``."""
        return self._clients[self._router.shard_of_key(key)]

    def _placement(self) -> Placement:
        return _ShardPlacement(self._router, self._clients)

    def _dispatch(self, command: Command[T], /) -> Awaitable[T]:
        try:
            route: Route | None = self._router.route(command.args)
        except UnknownCommandError:  # the engine asks a server first
            route = None
        if type(route) is int:
            return dispatch_to(self._clients[route].execute, command)
        return dispatch_to(self.execute, command)

    async def for_each_shard(self, *args: Arg, raise_on_error: bool = True) -> dict[str, Any]:
        """Run the same command on every shard at once; return each reply by shard name.

        For key-less commands such as ``INFO``, ``CONFIG SET`` or ``SCRIPT
        LOAD``. With ``raise_on_error=False`` a shard's error (reply or
        transport) is returned in its place; with True the first one raises
        once every shard has answered.
        """
        replies = await gather([functools.partial(c.execute, *args) for c in self._clients])
        if raise_on_error:
            raise_first(replies)
        return dict(zip(self._shards, replies, strict=True))

    def transaction(self, *watch_keys: Key) -> ShardedTransaction:
        """``MULTI``/``EXEC`` on one shard, after ``WATCH watch_keys``.

        The shard is that of ``watch_keys``, or without them that of the first
        command naming a key. Every command must belong to that shard (hash
        tags help): another raises :class:`~triopipe.CrossSlotError` when it is queued.
        ``tx.now`` (immediate commands) needs watch keys, which pick the shard
        up front.

        Raises:
            CrossSlotError: the watched keys, or a command's keys, live on
                another shard.
            NoShardError: at exit, no command named a key (no shard to run on).
            WatchError: at exit, a watched key had changed; nothing was applied.
            ExecAbortError: at exit, a command had been refused while queued.
        """
        return ShardedTransaction(
            self._router,
            self._clients.__getitem__,
            watch_keys,
            "no command of this transaction names a key, so it has no shard: "
            "use redis.shards[url].transaction() to pick one",
        )

    async def scan_iter(
        self, match: Key | None = None, count: int | None = None
    ) -> AsyncIterator[Any]:
        """Iterate over the keys of every shard with ``SCAN``, one shard after another."""
        for client in self._clients:
            async for key in client.scan_iter(match=match, count=count):
                yield key

    def statistics(self) -> ShardedClientStatistics:
        """A snapshot of every shard's connection group."""
        per_shard = {name: client.statistics() for name, client in self._shards.items()}
        return ShardedClientStatistics(
            shards=len(per_shard),
            connected_shards=sum(s.connected > 0 for s in per_shard.values()),
            commands_in_flight=sum(s.commands_in_flight for s in per_shard.values()),
            per_shard=MappingProxyType(per_shard),
        )


async def connect_all(groups: Sequence[ConnectionGroup]) -> None:
    """Connect every group in parallel; raise the first failure."""
    raise_first(await gather([group.connect for group in groups]))


def _configs(
    urls: Sequence[str] | Mapping[str, str], options: Mapping[str, Any]
) -> tuple[list[str], list[ClientConfig]]:
    if isinstance(urls, str):
        raise TypeError("open_sharded_client takes a list of URLs, not one URL")
    if isinstance(urls, Mapping):
        names = [str(name) for name in urls]
        configs = [parse_url(url, options) for url in urls.values()]
    else:
        configs = [parse_url(url, options) for url in urls]
        names = [config.url for config in configs]
    if not configs:
        raise ValueError("open_sharded_client needs at least one URL")
    return names, configs


@asynccontextmanager
async def open_sharded_client(
    urls: Sequence[str] | Mapping[str, str], **options: Any
) -> AsyncIterator[ShardedClient]:
    """Open a client over several servers (shards); close it when the block exits.

    Connects every shard in parallel before yielding, so a wrong address or
    password fails here. Later, a shard that goes down fails only the commands
    routed to it, and reconnects on demand.

    Args:
        urls: the servers' URLs, in any order. Each shard's *name* is its URL
            without credentials (``redis://host:port/db``); slots are assigned
            from the names, so the same set of servers always gets the same
            layout. A mapping ``{name: url}`` names shards explicitly, so a
            server can move to another address without moving any key.
        **options: as for :func:`~triopipe.open_client`, applied to every shard.

    Raises:
        ConnectError: a shard could not be reached in time.
        AuthenticationError: a shard refused the credentials.
        ValueError: no URL, or two shards with one name.
    """
    names, configs = _configs(urls, options)
    async with background_task_group() as task_group:
        groups = [ConnectionGroup(config, task_group) for config in configs]
        try:
            client = ShardedClient(names, groups)
            await connect_all(groups)
            yield client
        finally:
            for group in groups:
                group.close()
