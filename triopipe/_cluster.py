"""The Redis Cluster client: routing by the cluster's slot map, following its redirects.

Theory of operation
-------------------

:func:`~triopipe.open_cluster_client` owns one task group. In it live a
connection group per node the client talks to (each driven by an ordinary
:class:`~triopipe.Client`, so auto-pipelining, windows, dedicated connections
for blocking commands and transactions work per node unchanged) and one
*refresher* task.

Routing reuses the sharded client's pure router, with the slots themselves as
the "shards": a command maps to one slot, to a :class:`~triopipe._routing.Split`
into per-slot parts (``MGET``, ``MSET``, ``DEL``, ``UNLINK``, ``EXISTS``,
``TOUCH``; a cluster node refuses keys of two slots even when it serves both),
or to every primary (``PING``, ``FLUSHDB``, ``DBSIZE``...). Another multi-key
command across slots raises :class:`~triopipe.CrossSlotError` before anything
is sent. The slot map (:class:`~triopipe._cluster_map.SlotMap`, pure) then
names the node; ``_slot_nodes`` caches it per slot.

Every command travels as an :class:`_Entry` (its slot, its arguments, its
reply or error, its retries). Entries are sent in *rounds*: a round groups
its entries by target node and sends each node's share as one pipeline, all
nodes in parallel. After a round, each failed entry is judged by
:class:`~triopipe._retry.ClusterRetryPolicy`, the one place that says what
may be retried (only what the server provably did not execute):

- ``MOVED``: the slot map records the new owner of that slot at once and a
  full refresh is scheduled; the entry goes to the new owner;
- ``ASK``: the entry goes to the named node once, right after ``ASKING`` in
  the same pipeline; the map does not change;
- ``TRYAGAIN``, ``CLUSTERDOWN``, ``LOADING``, a node unreachable or a
  command never written: the entry is sent again (to whichever node the map
  names by then) after a backoff; a refresh is scheduled;
- anything else, including a written command whose connection broke (its
  outcome is unknown) unless ``at_least_once``, is final.

Retried entries form the next round, so a batch's redirected commands are
retried individually yet together, and their replies land in their own
places. A per-command limit (``max_redirects``) ends loops.

``execute`` takes a fast path: the command goes straight to its node's
client, and only a failure enters the rounds.

The refresher waits for a request (a redirect, a failure) or for
``refresh_interval``, then asks the known primaries (then the seeds) for
``CLUSTER SHARDS`` (``CLUSTER SLOTS`` on servers without it) and installs
the answer. It runs one refresh at a time, at most one per
``_MIN_REFRESH_INTERVAL``. Nodes the new map no longer names are retired and
closed once no command is in flight on them (closing earlier would turn
commands in flight into failures of unknown outcome).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import anyio.abc

from ._backend import Signal
from ._batch import Batch, Pending, batch_block
from ._client import RUN_ON_LOOP, Client, ClientStatistics
from ._cluster_map import (
    READ_ONLY_COMMANDS,
    Address,
    Shard,
    SlotMap,
    parse_cluster_shards,
    parse_cluster_slots,
)
from ._commands import Arg, Command, Commands, Key, run_command
from ._config import ClientConfig, parse_url
from ._connection import ConnectionGroup, background_task_group
from ._exceptions import (
    AskError,
    ClusterDownError,
    ConnectionLostError,
    MovedError,
    RedirectError,
    ResponseError,
    TransportError,
    TriopipeError,
)
from ._retry import ClusterRetryPolicy
from ._routing import SLOTS, NoShardError, ShardRouter, Split, check_pipelinable
from ._sharded import ShardedTransaction, _gather, _outcome, _raise_first, one_shard_transaction

__all__ = ["ClusterBatch", "ClusterClient", "ClusterClientStatistics", "open_cluster_client"]

T = TypeVar("T")

_MIN_REFRESH_INTERVAL = 0.1
_ASKING = ("ASKING",)
_READONLY = ("READONLY",)
_UNSERVED = ClusterDownError("CLUSTERDOWN", "no known node serves the slot")
_SLOT_NAMES = tuple(f"slot {slot}" for slot in range(SLOTS))
_IDENTITY = tuple(range(SLOTS))


class _FanOut(Split):
    """A key-less command for every primary; ``merge`` combines their replies."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Split) -> None:
        super().__init__([], inner.merge)
        self._inner = inner

    def merge(self, replies: list[Any]) -> Any:
        """Combine the primaries' replies by the command's response policy."""
        return self._inner.merge(replies)


class _SlotRouter(ShardRouter):
    """The sharded client's router, with each slot as its own "shard".

    Routes come out as slots (or splits into per-slot parts); the cluster's
    slot map turns slots into nodes.
    """

    __slots__ = ("_every",)

    def __init__(self) -> None:
        # ShardRouter.__init__ would compute a rendezvous table for 16384
        # names; the table of slots over slots is the identity.
        self.names = _SLOT_NAMES
        self.table = _IDENTITY
        self._direct = {}
        # Key-less commands are planned by a router with one "shard" that
        # stands for every primary: it knows their response policies, and
        # its plan has one part, not one per slot.
        self._every = ShardRouter(("every primary",))

    def _fan_out(self, name: str, args: Sequence[Any]) -> Split:
        try:
            return _FanOut(self._every._fan_out(name, args))
        except NoShardError:
            raise NoShardError(
                f"{name} names no key, so it has no slot: run it on one node with "
                "redis.nodes[url].execute(...)"
            ) from None


class _Node:
    """One cluster node the client talks to: its connection group and client."""

    __slots__ = ("address", "client", "group")

    def __init__(self, address: Address, group: ConnectionGroup) -> None:
        self.address = address
        self.group = group
        self.client = Client(group)

    def __repr__(self) -> str:
        return f"<node {self.address}>"

    @property
    def busy(self) -> bool:
        return any(s.commands_in_flight for s in self.group.statistics())


class _Entry:
    """One command on its way: where it goes, what came back, how often it was retried."""

    __slots__ = ("args", "asking", "attempt", "fixed", "node", "primary", "reply", "slot")

    def __init__(self, args: Sequence[Arg], slot: int, fixed: _Node | None = None) -> None:
        self.args = args
        self.slot = slot
        # A fan-out part is aimed at one node and never redirected.
        self.fixed = fixed
        self.node: _Node | None = fixed
        self.asking: _Node | None = None
        self.primary = False  # True once a try failed: no more replica reads
        self.attempt = 0
        self.reply: Any = None


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


class ClusterClient(Commands):
    """A client for a Redis Cluster, made by :func:`~triopipe.open_cluster_client`.

    Offers the interface of :class:`~triopipe.Client`: ``execute``, the typed
    helpers, ``execute_many``, ``batch``, ``transaction`` (within one slot) and
    ``scan_iter`` (over every primary). See the cluster guide for routing,
    redirects and retries.
    """

    __slots__ = (
        "_asked",
        "_closed",
        "_config",
        "_map",
        "_moved",
        "_nodes",
        "_policy",
        "_read_from_replicas",
        "_refresh_interval",
        "_refresh_wanted",
        "_refreshes",
        "_retired",
        "_retries",
        "_router",
        "_seeds",
        "_slot_nodes",
        "_task_group",
    )

    def __init__(
        self,
        seeds: Sequence[ClientConfig],
        task_group: anyio.abc.TaskGroup,
        *,
        read_from_replicas: bool,
        refresh_interval: float,
        max_redirects: int,
    ) -> None:
        self._seeds = list(seeds)
        self._config = config = seeds[0]
        self._task_group = task_group
        self._read_from_replicas = read_from_replicas
        self._refresh_interval = refresh_interval
        self._policy = ClusterRetryPolicy(
            attempts=config.retries, at_least_once=config.at_least_once, redirects=max_redirects
        )
        self._router = _SlotRouter()
        self._map = SlotMap()
        self._slot_nodes: list[_Node | None] = [None] * SLOTS
        self._nodes: dict[Address, _Node] = {}
        self._retired: dict[Address, _Node] = {}
        self._refresh_wanted = anyio.Event()
        self._closed = False
        self._refreshes = self._moved = self._asked = self._retries = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ClusterClient {len(self._map.primaries())} primaries {state}>"

    # -- nodes and the map ------------------------------------------------------

    @property
    def nodes(self) -> Mapping[str, Client]:
        """Each primary's :class:`~triopipe.Client`, by URL (without credentials).

        Use it to aim a command at one node: ``redis.nodes[url].execute("INFO")``.
        A snapshot: the map changes when the cluster does.
        """
        nodes = (self._node(address) for address in self._map.primaries())
        return MappingProxyType({node.group.config.url: node.client for node in nodes})

    def node_for(self, key: Key) -> str:
        """The URL of the primary that serves ``key``, as far as the client knows.

        Raises:
            ClusterDownError: no known node serves the key's slot.
        """
        return self._primary(self._router.shard_of_key(key)).group.config.url

    def client_for(self, key: Key) -> Client:
        """The :class:`~triopipe.Client` of the primary that serves ``key``."""
        return self._primary(self._router.shard_of_key(key)).client

    def _primary(self, slot: int) -> _Node:
        node = self._slot_nodes[slot]
        if node is None:
            self.refresh_soon()
            raise ClusterDownError(
                "CLUSTERDOWN", f"no known node serves slot {slot} (the map is being refreshed)"
            )
        return node

    def _node(self, address: Address) -> _Node:
        """The node at ``address``, connecting to it on first use."""
        node = self._nodes.get(address)
        if node is None:
            if self._closed:
                raise anyio.ClosedResourceError
            node = self._retired.pop(address, None)
            if node is None:
                config = dataclasses.replace(self._config, host=address.host, port=address.port)
                node = _Node(address, ConnectionGroup(config, self._task_group))
            self._nodes[address] = node
        return node

    def _install(self, shards: list[Shard]) -> None:
        """Make ``shards`` the slot map; retire the nodes it no longer names."""
        slot_map = SlotMap(shards)
        wanted = slot_map.addresses(replicas=self._read_from_replicas)
        nodes = {address: self._node(address) for address in wanted}
        self._map = slot_map
        owners = slot_map.owners
        by_shard = [nodes.get(shard.primary) for shard in slot_map.shards]
        self._slot_nodes = [None if index < 0 else by_shard[index] for index in owners]
        for address in [address for address in self._nodes if address not in wanted]:
            self._retired[address] = self._nodes.pop(address)
        for address, node in list(self._retired.items()):
            if not node.busy:
                node.group.close()
                del self._retired[address]

    def _record_moved(self, slot: int, error: RedirectError, via: _Node | None) -> None:
        address = _redirect_address(error, via)
        self._map.move(slot, address)
        self._slot_nodes[slot] = self._node(address)
        self._moved += 1
        self.refresh_soon()

    def refresh_soon(self) -> None:
        """Ask the refresher for a topology refresh (rate-limited, one at a time)."""
        self._refresh_wanted.set()

    async def refresh(self) -> None:
        """Fetch the slot map from the cluster now and install it.

        Raises:
            ClusterDownError: no node could be asked, or none serves a slot.
        """
        candidates = [*self._map.primaries(), *self._nodes]
        candidates += [Address(seed.host, seed.port) for seed in self._seeds]
        errors: list[BaseException] = []
        for address in dict.fromkeys(candidates):
            try:
                with anyio.fail_after(self._config.connect_timeout):
                    shards = await self._fetch_topology(self._node(address))
            except (TriopipeError, ValueError, TimeoutError) as exc:
                errors.append(exc)
                continue
            except anyio.ClosedResourceError:
                if self._closed:
                    raise
                continue  # retired by a concurrent refresh
            if shards:
                self._refreshes += 1
                self._install(shards)
                return
        detail = f": {errors[-1]}" if errors else ""
        cause = errors[-1] if errors else None
        raise ClusterDownError("CLUSTERDOWN", f"no node gave a usable slot map{detail}") from cause

    async def _fetch_topology(self, node: _Node) -> list[Shard]:
        try:
            reply = await node.client.execute("CLUSTER", "SHARDS")
        except ResponseError:  # before Redis 7: unknown subcommand
            reply = await node.client.execute("CLUSTER", "SLOTS")
            return parse_cluster_slots(reply, node.address.host)
        return parse_cluster_shards(reply, node.address.host)

    async def _run_refresher(self) -> None:
        """The refresher task: one refresh at a time, on request or periodically."""
        while True:
            with anyio.move_on_after(self._refresh_interval):
                await self._refresh_wanted.wait()
            self._refresh_wanted = anyio.Event()
            try:
                await self.refresh()
            except ClusterDownError:
                pass  # unreachable for now: the commands will say so
            except anyio.ClosedResourceError:
                return  # the client is closing
            await anyio.sleep(_MIN_REFRESH_INTERVAL)

    # -- commands ----------------------------------------------------------------

    async def execute(self, *args: Arg) -> Any:
        """Run one command on the node that serves its slot and return its reply.

        ``MGET``, ``MSET``, ``DEL``, ``UNLINK``, ``EXISTS`` and ``TOUCH`` over
        several slots are split per slot and merged; key-less commands that
        concern every server (``PING``, ``FLUSHDB``, ``DBSIZE``...) run on every
        primary. Redirects and refusals are followed as the guide describes.

        Raises:
            CrossSlotError: the keys live in several slots and the command
                cannot be split; nothing was sent.
            NoShardError: a key-less command with no meaning across nodes
                (``INFO``...): aim it with :attr:`nodes`.
            ResponseError: the server answered with an error (a redirect
                too, once ``max_redirects`` is reached).
            TransportError: the node failed (``ConnectionLostError`` with
                ``sent=True``: the outcome is unknown).
        """
        route = self._router.route(args)
        if type(route) is not int:
            assert isinstance(route, Split)
            return await self._run_split(route)
        node = self._plain_node(route, args)
        if node is None:
            entry = _Entry(args, route)
            await self._settle([entry], sent=False)
        else:
            try:
                return await node.client.execute(*args)
            except (ResponseError, TransportError) as exc:
                entry = _Entry(args, route)
                entry.node, entry.reply = node, exc
                await self._settle([entry], sent=True)
        if isinstance(entry.reply, Exception):
            raise entry.reply
        return entry.reply

    def _execute_in_thread(self, args: tuple[Arg, ...]) -> Any:
        """``Client._execute_in_thread`` on the node serving the command's slot.

        Anything out of the ordinary (several slots, an unknown slot owner,
        replica reads, a redirect or refusal to follow) is left to
        :meth:`execute` on the loop, which follows redirects as usual; a
        redirected command was not run, so running it again is safe.
        """
        node = self._direct_node(args)
        if node is None:
            return RUN_ON_LOOP
        return self._node_outcome(functools.partial(node.client._execute_in_thread, args))

    def _start(self, args: tuple[Arg, ...], signal: Signal) -> Callable[[], Any] | None:
        """``Client._start`` on the node serving the command's slot.

        See :meth:`_execute_in_thread` for what is left to :meth:`execute`.
        """
        node = self._direct_node(args)
        if node is None:
            return None
        finish = node.client._start(args, signal)
        return None if finish is None else functools.partial(self._node_outcome, finish)

    def _direct_node(self, args: tuple[Arg, ...]) -> _Node | None:
        """The node a one-slot command goes to without the cluster's bookkeeping, if any."""
        route = self._router.route(args)
        return None if type(route) is not int else self._plain_node(route, args)

    def _plain_node(self, slot: int, args: Sequence[Arg]) -> _Node | None:
        """The primary that serves ``slot``, if a command needs nothing more.

        None when the slot's owner is unknown or ``args`` read from a replica:
        the command then goes through the cluster's bookkeeping (``_settle``).
        """
        node = self._slot_nodes[slot]
        if node is None or (self._read_from_replicas and _reads_only(args)):
            return None
        return node

    def _node_outcome(self, outcome: Callable[[], Any]) -> Any:
        """A node client's outcome, with redirects and refusals turned into RUN_ON_LOOP."""
        try:
            return outcome()
        except (ResponseError, TransportError) as exc:
            if self._policy.delay(exc, 0) is None:
                raise
            return RUN_ON_LOOP

    def _dispatch(self, command: Command[T], /) -> Awaitable[T]:
        return run_command(self.execute, command)

    async def _run_split(self, route: Split) -> Any:
        plan = _Plan(self)
        plan.add_route(route)
        await self._settle(plan.entries, sent=False)
        reply = plan.results()[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def execute_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run many commands, each on its node, all nodes in parallel; replies in order.

        Every command is routed before anything is sent, so a
        :class:`~triopipe.CrossSlotError` (or a blocking command) sends
        nothing. Each node gets one pipeline (with the windows of
        :meth:`~triopipe.Client.execute_many`); commands of one slot keep
        their relative order. Commands redirected or refused on the way are
        retried, together, and their replies land in their places. A node
        that fails fails only its own commands.

        Args:
            commands: argument sequences, e.g. ``[("SET", "a", 1), ("GET", "a")]``.
            raise_on_error: as for :meth:`~triopipe.Client.execute_many`.
        """
        commands = list(commands)
        check_pipelinable(commands)
        plan = _Plan(self)
        for args in commands:
            plan.add(args)
        await self._settle(plan.entries, sent=False)
        results = plan.results()
        if raise_on_error:
            _raise_first(results)
        return results

    async def _settle(self, entries: list[_Entry], *, sent: bool) -> None:
        """Send ``entries`` (unless ``sent``) and retry the failures, in rounds."""
        todo = entries
        if not sent:
            await self._round(todo)
        while True:
            retry = []
            delay = 0.0
            for entry in todo:
                wait = self._judge(entry)
                if wait is not None:
                    retry.append(entry)
                    delay = max(delay, wait)
            if not retry:
                return
            self._retries += len(retry)
            if delay:
                await anyio.sleep(delay)
            await self._round(retry)
            todo = retry

    def _judge(self, entry: _Entry) -> float | None:
        """Whether ``entry`` goes again, and after how long; aims it if so."""
        error = entry.reply
        if not isinstance(error, (ResponseError, TransportError)) or entry.fixed is not None:
            return None
        delay = self._policy.delay(error, entry.attempt)
        if delay is None:
            return None
        entry.attempt += 1
        entry.primary = True
        entry.asking = None
        if isinstance(error, MovedError):
            self._record_moved(entry.slot, error, entry.node)
        elif isinstance(error, AskError):
            entry.asking = self._node(_redirect_address(error, entry.node))
            self._asked += 1
        else:
            self.refresh_soon()
        return delay

    def _target(self, entry: _Entry) -> tuple[_Node | None, bool]:
        """The node for ``entry``'s next try, and whether it is a replica (READONLY)."""
        if entry.fixed is not None:
            return entry.fixed, False
        if entry.asking is not None:
            return entry.asking, False
        if self._read_from_replicas and not entry.primary and _reads_only(entry.args):
            replicas = self._map.replicas(entry.slot)
            if replicas:
                return self._node(random.choice(replicas)), True
        return self._slot_nodes[entry.slot], False

    async def _round(self, entries: list[_Entry]) -> None:
        """Send each node its share of ``entries`` as one pipeline, all nodes at once."""
        shares: dict[tuple[_Node, bool], list[_Entry]] = {}
        for entry in entries:
            node, replica = self._target(entry)
            entry.node = node
            if node is None:
                self.refresh_soon()
                entry.reply = ClusterDownError(
                    "CLUSTERDOWN", f"no known node serves slot {entry.slot}"
                )
                continue
            shares.setdefault((node, replica), []).append(entry)
        calls = [
            functools.partial(self._send, node, share, replica)
            for (node, replica), share in shares.items()
        ]
        _raise_first([r for r in await _gather(calls) if not isinstance(r, TriopipeError)])

    async def _send(self, node: _Node, entries: list[_Entry], replica: bool) -> None:
        """One pipeline to ``node``; each entry gets its reply, or the node's failure."""
        entry = entries[0]
        try:
            if len(entries) == 1 and entry.asking is None and not replica:
                try:
                    entry.reply = await node.client.execute(*entry.args)
                except ResponseError as exc:
                    entry.reply = exc
                return
            commands: list[Sequence[Arg]] = [_READONLY] if replica else []
            for entry in entries:
                if entry.asking is not None:
                    commands.append(_ASKING)
                commands.append(entry.args)
            replies = iter(await node.client.execute_many(commands, raise_on_error=False))
        except TransportError as exc:
            for entry in entries:
                entry.reply = exc
            return
        except anyio.ClosedResourceError:
            if self._closed:
                raise
            # The node was retired under us before anything was queued.
            for entry in entries:
                entry.reply = ConnectionLostError("the node left the cluster", sent=False)
            return
        if replica:
            next(replies)
        for entry in entries:
            if entry.asking is not None:
                next(replies)
            entry.reply = next(replies)

    def batch(self) -> AbstractAsyncContextManager[ClusterBatch]:
        """Queue commands that stream to their nodes; replies are read at exit.

        Like :meth:`~triopipe.Client.batch`: ``b.execute(...)`` and the typed
        helpers return :class:`~triopipe.Pending` handles. Each node touched
        gets its own batch (one connection, commands in order); at exit,
        commands that were redirected or refused are retried (as
        :meth:`execute_many` does) before the pendings are resolved. A
        transport error that remains raises at exit.
        """
        return batch_block(ClusterBatch(self))

    @asynccontextmanager
    async def transaction(self, *watch_keys: Key) -> AsyncIterator[ShardedTransaction]:
        """``MULTI``/``EXEC`` on the node of one slot, after ``WATCH watch_keys``.

        The slot is that of ``watch_keys``, or without them that of the first
        command naming a key; every command must use that slot (give the keys
        a common hash tag). ``tx.now`` needs watch keys. Transactions do not
        follow redirects: a ``MOVED`` raises (the map is refreshed for next
        time), and nothing was applied.

        Raises:
            CrossSlotError: a key lives in another slot.
            NoShardError: at exit, no command named a key.
            WatchError: at exit, a watched key had changed; nothing was applied.
            ExecAbortError: at exit, a command was refused while queued
                (e.g. ``MOVED`` during a reshard); nothing was applied.
        """
        try:
            async with one_shard_transaction(
                self._router,
                lambda slot: self._primary(slot).client,
                watch_keys,
                "no command of this transaction names a key",
            ) as transaction:
                yield transaction
        except ResponseError:
            self.refresh_soon()  # a MOVED among the causes costs nothing more
            raise

    async def scan_iter(
        self, match: Key | None = None, count: int | None = None
    ) -> AsyncIterator[Any]:
        """Iterate over the keys of every primary with ``SCAN``, one after another.

        Keys may repeat, and keys moved by a reshard meanwhile may be missed
        or seen twice, as with ``SCAN`` itself.
        """
        for address in self._map.primaries():
            async for key in self._node(address).client.scan_iter(match=match, count=count):
                yield key

    def statistics(self) -> ClusterClientStatistics:
        """A snapshot of every node's connection group and of the redirects followed."""
        per_node = {
            node.group.config.url: node.client.statistics() for node in self._nodes.values()
        }
        return ClusterClientStatistics(
            nodes=len(per_node),
            primaries=len(self._map.primaries()),
            slots_served=self._map.covered(),
            commands_in_flight=sum(s.commands_in_flight for s in per_node.values()),
            refreshes=self._refreshes,
            moved=self._moved,
            asked=self._asked,
            retries=self._retries,
            per_node=MappingProxyType(per_node),
        )

    def _close(self) -> None:
        self._closed = True
        for node in itertools.chain(self._nodes.values(), self._retired.values()):
            node.group.close()


class _Plan:
    """Commands cut into entries, and how to put their replies back in order."""

    __slots__ = ("_client", "_places", "entries")

    def __init__(self, client: ClusterClient) -> None:
        self._client = client
        self.entries: list[_Entry] = []
        # Per command: the index of its entry, or its split and its parts' indexes.
        self._places: list[int | tuple[Split, range]] = []

    def add(self, args: Sequence[Arg]) -> None:
        route = self._client._router.route(args)
        if type(route) is int:
            self._places.append(len(self.entries))
            self.entries.append(_Entry(args, route))
        else:
            assert isinstance(route, Split)
            self.add_route(route)

    def add_route(self, route: Split) -> None:
        first = len(self.entries)
        if isinstance(route, _FanOut):
            command = route._inner.parts[0][1]
            client = self._client
            for address in client._map.primaries():
                self.entries.append(_Entry(command, -1, fixed=client._node(address)))
        else:
            self.entries += [_Entry(part, slot) for slot, part in route.parts]
        self._places.append((route, range(first, len(self.entries))))

    def results(self) -> list[Any]:
        entries = self.entries
        results = []
        for place in self._places:
            if type(place) is int:
                results.append(entries[place].reply)
            else:
                assert isinstance(place, tuple)
                route, indexes = place
                results.append(route.merge([entries[index].reply for index in indexes]))
        return results


class ClusterBatch(Commands):
    """Commands sent to their nodes as they are added; replies collected at exit.

    Made by ``ClusterClient.batch()``. ``execute`` and the typed helpers
    return :class:`~triopipe.Pending` handles at once.
    """

    __slots__ = ("_batches", "_client", "_inner", "_pendings", "_plan")

    def __init__(self, client: ClusterClient) -> None:
        self._client = client
        self._plan = _Plan(client)
        self._batches: dict[_Node, Batch] = {}
        self._inner: list[Pending[Any] | None] = []  # per entry, as sent first
        self._pendings: list[Pending[Any]] = []

    def __len__(self) -> int:
        return len(self._pendings)

    def execute(self, *args: Arg) -> Pending[Any]:
        """Queue any command; returns its :class:`~triopipe.Pending` at once."""
        return self._dispatch(Command(args))

    def _dispatch(self, command: Command[T], /) -> Pending[T]:
        check_pipelinable((command.args,))
        plan = self._plan
        first = len(plan.entries)
        plan.add(command.args)
        for entry in plan.entries[first:]:
            node = entry.fixed or self._client._slot_nodes[entry.slot]
            if node is None:  # sent at exit, once the map knows the slot
                self._inner.append(None)
                continue
            entry.node = node
            batch = self._batches.get(node)
            if batch is None:
                batch = self._batches[node] = Batch(node.group.choose())
            self._inner.append(batch.execute(*entry.args))
        pending: Pending[T] = Pending(command.transform)
        self._pendings.append(pending)
        return pending

    async def _finish(self) -> None:
        try:
            for batch in self._batches.values():
                # Every request was submitted already: waiting for one node
                # after another takes as long as the slowest. A node's error
                # is in its pendings.
                with contextlib.suppress(TriopipeError):
                    await batch._finish()
        except BaseException:
            self._abandon()
            raise
        for entry, inner in zip(self._plan.entries, self._inner, strict=True):
            # A command whose slot had no known node was never sent: the
            # retry rounds send it once the map knows better.
            entry.reply = _UNSERVED if inner is None else _outcome(inner)
        await self._client._settle(self._plan.entries, sent=True)
        results = self._plan.results()
        for pending, reply in zip(self._pendings, results, strict=True):
            pending._resolve(reply)
        for reply in results:
            if isinstance(reply, TransportError):
                raise reply

    def _abandon(self) -> None:
        for batch in self._batches.values():
            batch._abandon()


def _reads_only(args: Sequence[Arg]) -> bool:
    """Whether a replica may serve ``args`` (a read-only command)."""
    try:
        return args[0] in READ_ONLY_COMMANDS
    except TypeError:  # unhashable: the server will refuse it anyway
        return False


def _redirect_address(error: RedirectError, via: _Node | None) -> Address:
    """The node a redirect names; an empty host means the host that answered."""
    host = error.host or (via.address.host if via is not None else "")
    return Address(host, error.port)


def _seed_configs(
    url_or_urls: str | Sequence[str], options: Mapping[str, Any]
) -> list[ClientConfig]:
    urls = [url_or_urls] if isinstance(url_or_urls, str) else list(url_or_urls)
    if not urls:
        raise ValueError("open_cluster_client needs at least one URL")
    configs = [parse_url(url, options) for url in urls]
    for config in configs:
        if config.unix_path is not None or config.db != 0:
            raise ValueError("a Redis Cluster is reached over TCP and has only database 0")
    return configs


async def _connect_nodes(client: ClusterClient) -> None:
    """Connect every primary's group in parallel; raise the first failure."""
    groups = [client._node(address).group for address in client._map.primaries()]
    _raise_first(await _gather([group.connect for group in groups]))


@asynccontextmanager
async def open_cluster_client(
    url_or_urls: str | Sequence[str],
    *,
    read_from_replicas: bool = False,
    refresh_interval: float = 30.0,
    max_redirects: int = 16,
    **options: Any,
) -> AsyncIterator[ClusterClient]:
    """Open a client for a Redis Cluster; close it when the block exits.

    Asks the seeds, in order, for the slot map (``CLUSTER SHARDS``, or
    ``CLUSTER SLOTS`` on servers before Redis 7), then connects to every
    primary in parallel before yielding, so a wrong address or password
    fails here. Other nodes are connected on first use.

    Args:
        url_or_urls: one node's URL, or several (tried in order until one
            answers), e.g. ``"redis://10.0.0.1:7000"``. Credentials and
            options of the first apply to every node.
        read_from_replicas: send read-only commands (``GET``, ``MGET``,
            ``HGETALL``...) to a replica of their slot (after ``READONLY``);
            replicas may lag behind their primary.
        refresh_interval: seconds between periodic refreshes of the slot map
            (redirects and failures trigger one sooner).
        max_redirects: retries per command (redirects and backoffs together)
            before its last error is raised.
        **options: as for :func:`~triopipe.open_client`, applied to every node.

    Raises:
        ConnectError: no seed, or a primary, could be reached in time.
        ResponseError: the seed is not in cluster mode (its error reply).
        ClusterDownError: no seed gave a usable slot map.
        AuthenticationError: a node refused the credentials.
        ValueError: no URL, a unix socket URL or a database other than 0.
    """
    seeds = _seed_configs(url_or_urls, options)
    if not refresh_interval > 0 or math.isinf(refresh_interval):
        raise ValueError(f"refresh_interval must be a positive number, not {refresh_interval!r}")
    async with background_task_group() as task_group:
        client = ClusterClient(
            seeds,
            task_group,
            read_from_replicas=read_from_replicas,
            refresh_interval=refresh_interval,
            max_redirects=max_redirects,
        )
        try:
            try:
                await client.refresh()
            except ClusterDownError as exc:
                # Say why the seeds failed (unreachable, wrong password, not
                # a cluster) as open_client would.
                if isinstance(exc.__cause__, TriopipeError):
                    raise exc.__cause__ from None
                raise
            await _connect_nodes(client)
            task_group.start_soon(client._run_refresher, name="triopipe cluster refresher")
            yield client
        finally:
            client._close()
