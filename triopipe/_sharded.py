"""The sharded client: several independent servers, keys spread over them by slot.

Theory of operation
-------------------

:func:`~triopipe.open_sharded_client` opens one connection group per server, all in
one task group that it owns, and connects them in parallel. Each shard is
driven by an ordinary :class:`~triopipe.Client` over its group, so everything
the client knows (auto-pipelining, windows, dedicated connections for
blocking commands, transactions) works per shard unchanged; this module only
decides where commands go and puts the replies back together.

Routing is pure (:class:`~triopipe._routing.ShardRouter`): a command maps to
one shard, or to a :class:`~triopipe._routing.Split` (parts for several
shards and a merge), or raises before anything is sent.

- ``execute`` and the typed helpers send a routed command to its shard; the
  parts of a split run in parallel and are merged.
- ``execute_many`` routes every command first (so a ``CrossSlotError`` sends
  nothing), gives each shard its own sub-pipeline, runs all shards in
  parallel, and writes each reply back into the caller's order.
- ``batch()`` keeps one batch per shard, opened on first use; commands stream
  to every shard while the block runs.
- ``transaction()`` runs on the one shard of its watched keys (or of its
  commands) with the shard client's own transaction.

A shard failing (down, connection lost) fails only what was routed to it:
shards run as separate tasks, and a shard's transport error is caught and
put in place of each of its replies; healthy shards' replies are kept and
the error is raised only once every shard has finished.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import MappingProxyType
from typing import Any, TypeVar

import anyio

from ._backend import Signal
from ._batch import Batch, Pending, Transaction, batch_block
from ._client import RUN_ON_LOOP, Client, ClientStatistics
from ._commands import Arg, Command, Commands, Key
from ._config import ClientConfig, parse_url
from ._connection import ConnectionGroup, background_task_group
from ._exceptions import CrossSlotError, TriopipeError
from ._routing import NoShardError, ShardRouter, Split, check_pipelinable, command_name

__all__ = ["ShardedBatch", "ShardedClient", "ShardedClientStatistics", "open_sharded_client"]

T = TypeVar("T")


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


class ShardedClient(Commands):
    """A client for several Redis servers (shards), made by :func:`~triopipe.open_sharded_client`.

    Offers the interface of :class:`~triopipe.Client`: ``execute``, the typed helpers,
    ``execute_many``, ``batch``, ``transaction`` and ``scan_iter``. Each key
    lives on one shard, chosen by its slot (hash tags included); see the
    sharding guide for what is split across shards and what raises.
    """

    __slots__ = ("_clients", "_groups", "_router", "_shards")

    def __init__(self, names: Sequence[str], groups: Sequence[ConnectionGroup]) -> None:
        self._router = ShardRouter(names)
        self._groups = list(groups)
        self._clients = [Client(group) for group in groups]
        self._shards = MappingProxyType(dict(zip(names, self._clients, strict=True)))

    def __repr__(self) -> str:
        state = "closed" if self._groups[0].closed else "open"
        return f"<ShardedClient {list(self._shards)} {state}>"

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

    async def execute(self, *args: Arg) -> Any:
        """Run one command on the shard that owns its keys and return its reply.

        ``MGET``, ``MSET``, ``DEL``, ``UNLINK``, ``EXISTS`` and ``TOUCH`` over
        several shards are split and merged; key-less commands that concern
        every server (``PING``, ``FLUSHDB``, ``DBSIZE``, ``KEYS``...) run on all
        shards, their replies combined (``DBSIZE`` adds up).

        Raises:
            CrossSlotError: the keys live on several shards and the command
                cannot be split; nothing was sent.
            NoShardError: a key-less command that means nothing across shards
                (``INFO``, ``EVAL`` with no keys...): aim it with
                :attr:`shards` or :meth:`for_each_shard`.
            ResponseError: the server answered with an error.
            TransportError: the shard's connection failed.
        """
        route = self._router.route(args)
        if type(route) is int:
            return await self._clients[route].execute(*args)
        assert isinstance(route, Split)
        return await self._run_split(route, None)

    def _execute_in_thread(self, args: tuple[Arg, ...]) -> Any:
        """``Client._execute_in_thread`` on the owning shard, for one-shard commands."""
        route = self._router.route(args)
        if type(route) is int:
            return self._clients[route]._execute_in_thread(args)
        return RUN_ON_LOOP

    def _start(self, args: tuple[Arg, ...], signal: Signal) -> Callable[[], Any] | None:
        """``Client._start`` on the owning shard, for one-shard commands."""
        route = self._router.route(args)
        if type(route) is int:
            return self._clients[route]._start(args, signal)
        return None

    def _dispatch(self, command: Command[T], /) -> Awaitable[T]:
        route = self._router.route(command.args)
        if type(route) is int:
            return self._clients[route]._dispatch(command)
        assert isinstance(route, Split)
        return self._run_split(route, command.transform)

    async def _run_split(self, route: Split, transform: Callable[[Any], Any] | None) -> Any:
        calls = [functools.partial(self._clients[s].execute, *part) for s, part in route.parts]
        reply = route.merge(await _gather(calls))
        if isinstance(reply, Exception):
            raise reply
        return reply if transform is None else transform(reply)

    async def for_each_shard(self, *args: Arg, raise_on_error: bool = True) -> dict[str, Any]:
        """Run the same command on every shard at once; return each reply by shard name.

        For key-less commands such as ``INFO``, ``CONFIG SET`` or ``SCRIPT
        LOAD``. With ``raise_on_error=False`` a shard's error (reply or
        transport) is returned in its place; with True the first one raises
        once every shard has answered.
        """
        replies = await _gather([functools.partial(c.execute, *args) for c in self._clients])
        if raise_on_error:
            _raise_first(replies)
        return dict(zip(self._shards, replies, strict=True))

    async def execute_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run many commands, each on its shard, all shards in parallel; replies in order.

        Every command is routed before anything is sent, so a
        :class:`~triopipe.CrossSlotError` (or a blocking command) sends nothing. Each
        shard gets one pipeline (with the windows of
        :meth:`~triopipe.Client.execute_many`); commands of one shard keep their
        relative order. A shard whose connection fails fails only its own
        commands: with ``raise_on_error=False`` each of them holds the
        :class:`~triopipe.TransportError` in its place; with True the first error (in
        the caller's order) raises once every shard has finished.

        Args:
            commands: argument sequences, e.g. ``[("SET", "a", 1), ("GET", "a")]``.
            raise_on_error: as for :meth:`~triopipe.Client.execute_many`.
        """
        commands = list(commands)
        check_pipelinable(commands)
        route = self._router.route
        per_shard: list[list[Sequence[Arg]]] = [[] for _ in self._clients]
        # Where each command's reply will be: (shard, index in its pipeline),
        # or for a split, the split and the places of its parts.
        places: list[Any] = []
        for args in commands:
            target = route(args)
            if type(target) is int:
                shard_commands = per_shard[target]
                places.append((target, len(shard_commands)))
                shard_commands.append(args)
            else:
                assert isinstance(target, Split)
                parts = []
                for shard, part in target.parts:
                    parts.append((shard, len(per_shard[shard])))
                    per_shard[shard].append(part)
                places.append((target, parts))
        replies = await self._run_pipelines(per_shard)
        results: list[Any] = []
        for first, second in places:
            if type(first) is int:
                results.append(replies[first][second])
            else:
                results.append(first.merge([replies[s][i] for s, i in second]))
        if raise_on_error:
            _raise_first(results)
        return results

    async def _run_pipelines(self, per_shard: list[list[Sequence[Arg]]]) -> list[list[Any]]:
        """Each shard's replies, its transport error in every place if it failed."""

        async def run(client: Client, commands: list[Sequence[Arg]]) -> list[Any]:
            try:
                return await client.execute_many(commands, raise_on_error=False)
            except TriopipeError as exc:
                return [exc] * len(commands)

        calls = [
            functools.partial(run, client, commands)
            for client, commands in zip(self._clients, per_shard, strict=True)
            if commands
        ]
        results = iter(await _gather(calls))
        return [next(results) if commands else [] for commands in per_shard]

    def batch(self) -> AbstractAsyncContextManager[ShardedBatch]:
        """Queue commands that stream to their shards; replies are read at exit.

        Like :meth:`~triopipe.Client.batch`: ``b.execute(...)`` and the typed helpers
        return :class:`~triopipe.Pending` handles. Each shard touched gets its own batch
        (one connection, commands in order). If a shard's connection fails,
        its commands' pendings hold the error, the other shards' replies are
        kept, and the error raises at exit once every shard has answered.
        """
        return batch_block(ShardedBatch(self._router, self._groups))

    @asynccontextmanager
    async def transaction(self, *watch_keys: Key) -> AsyncIterator[ShardedTransaction]:
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
        async with one_shard_transaction(
            self._router,
            self._clients.__getitem__,
            watch_keys,
            "no command of this transaction names a key, so it has no shard: "
            "use redis.shards[url].transaction() to pick one",
        ) as transaction:
            yield transaction

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


class ShardedBatch(Commands):
    """Commands sent to their shards as they are added; replies collected at exit.

    Made by ``ShardedClient.batch()``. ``execute`` and the typed helpers
    return :class:`~triopipe.Pending` handles at once.
    """

    __slots__ = ("_batches", "_groups", "_router", "_splits")

    def __init__(self, router: ShardRouter, groups: Sequence[ConnectionGroup]) -> None:
        self._router = router
        self._groups = groups
        self._batches: list[Batch | None] = [None] * len(groups)
        # Split commands: the caller's pending, the split, its parts' pendings.
        self._splits: list[tuple[Pending[Any], Split, list[Pending[Any]]]] = []

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._batches if batch is not None)

    def _shard(self, index: int) -> Batch:
        batch = self._batches[index]
        if batch is None:
            batch = self._batches[index] = Batch(self._groups[index].choose())
        return batch

    def execute(self, *args: Arg) -> Pending[Any]:
        """Queue any command; returns its :class:`~triopipe.Pending` at once."""
        return self._dispatch(Command(args))

    def _dispatch(self, command: Command[T], /) -> Pending[T]:
        args = command.args
        check_pipelinable((args,))
        route = self._router.route(args)
        if type(route) is int:
            return self._shard(route)._dispatch(command)
        assert isinstance(route, Split)
        parts = [self._shard(shard).execute(*part) for shard, part in route.parts]
        pending: Pending[T] = Pending(command.transform)
        self._splits.append((pending, route, parts))
        return pending

    async def _finish(self) -> None:
        errors: list[Exception] = []
        for batch in self._batches:
            if batch is None:
                continue
            # Each shard's requests were all submitted already: waiting for
            # one shard after another takes as long as the slowest.
            try:
                await batch._finish()
            except TriopipeError as exc:
                errors.append(exc)  # its pendings hold the error
            except BaseException:
                self._abandon()
                raise
        for pending, route, parts in self._splits:
            pending._resolve(route.merge([_outcome(part) for part in parts]))
        if errors:
            raise errors[0]

    def _abandon(self) -> None:
        for batch in self._batches:
            if batch is not None:
                batch._abandon()


class ShardedTransaction(Commands):
    """``MULTI``/``EXEC`` on one shard, made by ``ShardedClient.transaction()``.

    Commands return :class:`~triopipe.Pending` handles and are sent together at exit;
    the outcomes are those of :class:`~triopipe.Transaction`.
    """

    __slots__ = ("_commands", "_inner", "_now", "_router", "_shard")

    def __init__(self, router: ShardRouter, shard: int | None) -> None:
        self._router = router
        self._shard = shard
        self._commands: list[tuple[Command[Any], Pending[Any]]] = []
        self._now: Any = None
        self._inner: list[Pending[Any]] = []

    def __len__(self) -> int:
        return len(self._commands)

    @property
    def now(self) -> Any:
        """Runs commands at once on the transaction's connection (needs watch keys)."""
        if self._now is None:
            raise RuntimeError(
                "tx.now needs a shard chosen up front: name watch keys in transaction()"
            )
        return self._now

    def execute(self, *args: Arg) -> Pending[Any]:
        """Queue any command for the transaction; returns its :class:`~triopipe.Pending`."""
        return self._dispatch(Command(args))

    def _dispatch(self, command: Command[T], /) -> Pending[T]:
        shard = self._router.shard_of_command(command.args)
        if shard is not None:
            if self._shard is None:
                self._shard = shard
            elif shard != self._shard:
                names = self._router.names
                raise CrossSlotError(
                    "CROSSSLOT",
                    f"{command_name(command.args)} touches a key of {names[shard]}, but this "
                    f"transaction runs on {names[self._shard]}: give the keys a common hash tag",
                )
        pending: Pending[T] = Pending(command.transform)
        self._commands.append((command, pending))
        return pending

    def _replay(self, inner: Transaction) -> None:
        self._inner = [inner._dispatch(Command(command.args)) for command, _ in self._commands]

    def _settle(self) -> None:
        for (_, pending), inner in zip(self._commands, self._inner, strict=False):
            if inner.done():
                pending._resolve(_outcome(inner))


def _outcome(pending: Pending[Any]) -> Any:
    """A pending's reply, or its error as a value."""
    try:
        return pending.result()
    except Exception as exc:  # errors are values here
        return exc


def _raise_first(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


async def _gather(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run ``calls`` in parallel; return their results, a TriopipeError in place of each failure.

    A shard's error is a value for the caller to place; anything else (a bug,
    a closed client) raises, unwrapped, once every call has ended.
    """
    if len(calls) == 1:
        try:
            return [await calls[0]()]
        except TriopipeError as exc:
            return [exc]
    results: list[Any] = [None] * len(calls)

    async def run(index: int) -> None:
        try:
            results[index] = await calls[index]()
        except Exception as exc:  # sorted out below
            results[index] = exc

    async with anyio.create_task_group() as task_group:
        for index in range(len(calls)):
            task_group.start_soon(run, index)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, TriopipeError):
            raise result
    return results


async def _connect_all(groups: Sequence[ConnectionGroup]) -> None:
    """Connect every shard's group in parallel; raise the first failure."""
    _raise_first(await _gather([group.connect for group in groups]))


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
async def one_shard_transaction(
    router: ShardRouter,
    client_for: Callable[[int], Client],
    watch_keys: Sequence[Key],
    no_shard: str,
) -> AsyncIterator[ShardedTransaction]:
    """A transaction on the one shard (or cluster slot) its keys belong to.

    The shard is that of ``watch_keys``, or without them that of the first
    queued command naming a key; ``client_for`` gives that shard's client,
    whose own transaction runs the commands. Shared by the sharded and the
    cluster clients.

    Raises:
        NoShardError: at exit, no command named a key (``no_shard`` says so).
    """
    shard = router.shard_of_command(("WATCH", *watch_keys)) if watch_keys else None
    transaction = ShardedTransaction(router, shard)
    try:
        if shard is not None:
            async with client_for(shard).transaction(*watch_keys) as inner:
                transaction._now = inner.now
                yield transaction
                transaction._replay(inner)
            return
        yield transaction
        if transaction._commands:
            if transaction._shard is None:
                raise NoShardError(no_shard)
            async with client_for(transaction._shard).transaction() as inner:
                transaction._replay(inner)
    finally:
        # The shard's transaction resolved its own pendings at exit (or
        # failed them all on WatchError): hand the outcomes over.
        transaction._settle()


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
            await _connect_all(groups)
            yield client
        finally:
            for group in groups:
                group.close()
