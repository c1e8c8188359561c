"""The Redis Cluster client: routing by the cluster's slot map, following its redirects.

Theory of operation
-------------------

:func:`~triopipe.open_cluster_client` owns one task group. In it live a
connection group per node the client talks to (each driven by an ordinary
:class:`~triopipe.Client`, so auto-pipelining, windows, dedicated connections
for blocking commands and transactions work per node unchanged) and one
*refresher* task.

Where commands go and how replies come back together is the fan-out engine's
(:mod:`triopipe._fanout`), shared with the sharded client; this module gives
it a *dynamic* topology (:class:`_Nodes`). Routing uses the pure
:class:`~triopipe._routing.SlotRouter`, where each slot is its own group: a
command maps to one slot, to a split into per-slot parts (``MGET``, ``MSET``,
``DEL``, ``UNLINK``, ``EXISTS``, ``TOUCH``; a cluster node refuses keys of two
slots even when it serves both), or to every primary (``PING``, ``FLUSHDB``,
``DBSIZE``...). Another multi-key command across slots raises
:class:`~triopipe.CrossSlotError` before anything is sent. The slot map
(:class:`~triopipe._cluster_map.SlotMap`, pure) then names the node;
``_Nodes.slot_nodes`` caches it per slot.

The engine sends entries in rounds, each node's share as one pipeline, all
nodes in parallel. After a round, each failed entry is judged
(:meth:`_Nodes.judge`) by :class:`~triopipe._retry.ClusterRetryPolicy`, the
one place that says what may be retried (only what the server provably did
not execute):

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
``refresh_interval``, then asks the known primaries (then the seeds; nodes
that may be gone last) for ``CLUSTER SHARDS`` (``CLUSTER SLOTS``
on servers without it) and installs the answer. It runs one refresh at a
time, at most one per ``_MIN_REFRESH_INTERVAL``. Entries waiting in a
backoff are woken when a slot's primary changes (:meth:`_Nodes.pause`), so
after a failover they go to the promoted replica as soon as the map names
it. Nodes the new map no longer names are retired and
closed once no command is in flight on them (closing earlier would turn
commands in flight into failures of unknown outcome).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import anyio.abc

from ._client import Client
from ._cluster_map import (
    READ_ONLY_COMMANDS,
    Address,
    Shard,
    SlotMap,
    parse_cluster_shards,
    parse_cluster_slots,
)
from ._commands import Arg, Key
from ._config import ClientConfig, parse_url
from ._exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedirectError,
    ResponseError,
    TriopipeError,
)
from ._fanout import Entry, FanOut, FanOutClient, ShardedTransaction, gather, raise_first
from ._group import ConnectionGroup
from ._pubsub import Kind, SubscriberSource
from ._retry import ClusterRetryPolicy
from ._routing import SLOTS, SlotRouter, command_name, key_slot
from ._statistics import ClusterClientStatistics
from ._subscription import Placement, Subscribing
from ._tasks import background_task_group

__all__ = ["ClusterClient", "open_cluster_client"]

T = TypeVar("T")

_MIN_REFRESH_INTERVAL = 0.1


class _Nodes:
    """The dynamic topology: the slot map, a client per node, and the redirect rules.

    Nodes are connected on first use. Nodes a new map no longer names are
    retired, and closed once no command is in flight on them (closing
    earlier would turn commands in flight into failures of unknown outcome).
    """

    __slots__ = (
        "asked",
        "closed",
        "config",
        "map",
        "map_changed",
        "moved",
        "nodes",
        "policy",
        "read_from_replicas",
        "refresh_wanted",
        "retired",
        "retries",
        "slot_nodes",
        "task_group",
    )

    def __init__(
        self,
        config: ClientConfig,
        task_group: anyio.abc.TaskGroup,
        policy: ClusterRetryPolicy,
        read_from_replicas: bool,
    ) -> None:
        self.config = config
        self.task_group = task_group
        self.policy = policy
        self.read_from_replicas = read_from_replicas
        self.map = SlotMap()
        self.slot_nodes: list[Client | None] = [None] * SLOTS
        self.nodes: dict[Address, Client] = {}
        self.retired: dict[Address, Client] = {}
        self.refresh_wanted = anyio.Event()
        # Set (and replaced) whenever a slot's primary changes: retries
        # waiting for a backoff go at once.
        self.map_changed = anyio.Event()
        self.closed = False
        self.moved = self.asked = self.retries = 0

    def node(self, address: Address) -> Client:
        """The node at ``address``, connecting to it on first use."""
        node = self.nodes.get(address)
        if node is None:
            if self.closed:
                raise anyio.ClosedResourceError
            node = self.retired.pop(address, None)
            if node is None:
                config = dataclasses.replace(self.config, host=address.host, port=address.port)
                node = Client(ConnectionGroup(config, self.task_group))
            self.nodes[address] = node
        return node

    def primary(self, slot: int) -> Client:
        """The primary serving ``slot``, as far as the client knows."""
        node = self.slot_nodes[slot]
        if node is None:
            self.refresh_soon()
            raise ClusterDownError(
                "CLUSTERDOWN", f"no known node serves slot {slot} (the map is being refreshed)"
            )
        return node

    def install(self, shards: list[Shard]) -> None:
        """Make ``shards`` the slot map; retire the nodes it no longer names."""
        slot_map = SlotMap(shards)
        wanted = slot_map.addresses(replicas=self.read_from_replicas)
        nodes = {address: self.node(address) for address in wanted}
        self.map = slot_map
        by_shard = [nodes.get(shard.primary) for shard in slot_map.shards]
        slot_nodes = [None if index < 0 else by_shard[index] for index in slot_map.owners]
        if slot_nodes != self.slot_nodes:
            self.slot_nodes = slot_nodes
            self.changed()
        for address in [address for address in self.nodes if address not in wanted]:
            self.retired[address] = self.nodes.pop(address)
        for address, node in list(self.retired.items()):
            if not node.group.busy:
                node.group.close()
                del self.retired[address]

    def refresh_soon(self) -> None:
        """Ask the refresher for a topology refresh (rate-limited, one at a time)."""
        self.refresh_wanted.set()

    def changed(self) -> None:
        """A slot's primary changed: wake the retries waiting in :meth:`pause`."""
        self.map_changed.set()
        self.map_changed = anyio.Event()

    async def pause(self, delay: float) -> None:
        """Wait ``delay`` seconds before a retry, or until a slot's primary changes.

        After a primary dies, its commands wait for the replica's promotion
        in backoff; they go the moment a refresh names the new primary, not
        when their backoff ends.
        """
        with anyio.move_on_after(delay):
            await self.map_changed.wait()

    def asking_order(self, seeds: Sequence[ClientConfig]) -> list[Address]:
        """Whom to ask for the slot map: the known primaries, other nodes, then the seeds.

        Nodes that may be gone (a connect failed, or a link broke and has
        not come back) go last, so that a dead primary, which may not even
        refuse connections, does not hold up the refresh that finds its
        replacement.
        """
        candidates = [*self.map.primaries(), *self.nodes]
        candidates += [Address(seed.host, seed.port) for seed in seeds]
        ordered = list(dict.fromkeys(candidates))
        return sorted(ordered, key=self._suspect)  # stable: map order otherwise

    def _suspect(self, address: Address) -> bool:
        node = self.nodes.get(address)
        return node is not None and node.group.suspect

    def close(self) -> None:
        self.closed = True
        for node in itertools.chain(self.nodes.values(), self.retired.values()):
            node.group.close()

    # -- the topology the fan-out engine drives --------------------------------------

    def target(self, entry: Entry) -> tuple[Client, bool] | None:
        """The node for ``entry``'s next try, and whether it is a replica (READONLY)."""
        if entry.asking is not None:
            return entry.asking, False
        if self.read_from_replicas and not entry.primary and _reads_only(entry.args):
            replicas = self.map.replicas(entry.group)
            if replicas:
                return self.node(random.choice(replicas)), True
        node = self.slot_nodes[entry.group]
        return None if node is None else (node, False)

    def every_target(self) -> list[Client]:
        return [self.node(address) for address in self.map.primaries()]

    def judge(self, entry: Entry) -> float | None:
        """Whether ``entry`` goes again, and after how long; aims it if so."""
        error = entry.reply
        delay = self.policy.delay(error, entry.attempt)
        if delay is None:
            return None
        entry.attempt += 1
        entry.primary = True
        entry.asking = None
        self.retries += 1
        observer = self.config.observer
        if observer is not None:
            if isinstance(error, RedirectError):
                observer.redirected(command_name(entry.args), error)
            else:
                server = "" if entry.target is None else entry.target.config.address
                observer.retried(server, command_name(entry.args), error, entry.attempt)
        if isinstance(error, MovedError):
            self.learn_moved(error, entry.target)
        elif isinstance(error, AskError):
            entry.asking = self.node(_redirect_address(error, entry.target))
            self.asked += 1
        else:
            self.refresh_soon()
        return delay

    def learn_moved(self, error: MovedError, via: Client | None) -> None:
        """A ``MOVED`` reply: its slot's new owner goes in the map at once; refresh soon."""
        address = _redirect_address(error, via)
        self.map.move(error.slot, address)
        self.slot_nodes[error.slot] = self.node(address)
        self.changed()
        self.moved += 1
        self.refresh_soon()

    def retryable(self, error: BaseException) -> bool:
        return self.policy.delay(error, 0) is not None

    def unserved(self, entry: Entry) -> BaseException:
        self.refresh_soon()
        return ClusterDownError("CLUSTERDOWN", f"no known node serves slot {entry.group}")


class _ClusterPlacement:
    """Where a subscription puts names: each on the primary serving its slot.

    A shard channel must be there; a channel or pattern could be anywhere (a
    cluster spreads ``PUBLISH`` to every node), and its slot spreads
    subscriptions over the primaries.
    """

    __slots__ = ("_nodes", "_refresh")

    def __init__(self, nodes: _Nodes, refresh: Callable[[], Awaitable[None]]) -> None:
        self._nodes = nodes
        self._refresh = refresh  # the client's: fetches the slot map now

    def place(self, kind: Kind, key: bytes) -> Sequence[Hashable]:
        config = self._nodes.primary(key_slot(key)).config
        return (Address(config.host, config.port),)

    def source(self, server: Hashable) -> SubscriberSource:
        assert isinstance(server, Address)
        return self._nodes.node(server).group

    def learn(self, error: ResponseError) -> None:
        if isinstance(error, MovedError):
            self._nodes.learn_moved(error, None)
        else:
            self._nodes.refresh_soon()

    async def refresh(self) -> None:
        await self._refresh()


class ClusterClient(FanOutClient, Subscribing):
    """A client for a Redis Cluster, made by :func:`~triopipe.open_cluster_client`.

    Offers the interface of :class:`~triopipe.Client`: ``execute``, the typed
    helpers, ``execute_many``, ``batch``, ``transaction`` (within one slot) and
    ``scan_iter`` (over every primary). See the cluster guide for routing,
    redirects and retries.
    """

    __slots__ = (
        "_config",
        "_engine",
        "_nodes",
        "_refresh_interval",
        "_refreshes",
        "_router",
        "_seeds",
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
        self._refresh_interval = refresh_interval
        policy = ClusterRetryPolicy(
            attempts=config.retries, at_least_once=config.at_least_once, redirects=max_redirects
        )
        self._nodes = _Nodes(config, task_group, policy, read_from_replicas)
        self._router = SlotRouter()
        self._engine = FanOut(self._router, self._nodes, self._closing)
        self._refreshes = 0

    def __repr__(self) -> str:
        state = "closed" if self._nodes.closed else "open"
        return f"<ClusterClient {len(self._nodes.map.primaries())} primaries {state}>"

    def _closing(self) -> bool:
        return self._nodes.closed

    # -- nodes and the map ------------------------------------------------------

    @property
    def nodes(self) -> Mapping[str, Client]:
        """Each primary's :class:`~triopipe.Client`, by URL (without credentials).

        Use it to aim a command at one node: ``redis.nodes[url].execute("INFO")``.
        A snapshot: the map changes when the cluster does.
        """
        primaries = self._nodes.every_target()
        return MappingProxyType({node.config.url: node for node in primaries})

    def node_for(self, key: Key) -> str:
        """The URL of the primary that serves ``key``, as far as the client knows.

        Raises:
            ClusterDownError: no known node serves the key's slot.
        """
        return self._nodes.primary(self._router.shard_of_key(key)).config.url

    def client_for(self, key: Key) -> Client:
        """The :class:`~triopipe.Client` of the primary that serves ``key``."""
        return self._nodes.primary(self._router.shard_of_key(key))

    def refresh_soon(self) -> None:
        """Ask the refresher for a topology refresh (rate-limited, one at a time)."""
        self._nodes.refresh_soon()

    def _placement(self) -> Placement:
        return _ClusterPlacement(self._nodes, self.refresh)

    async def refresh(self) -> None:
        """Fetch the slot map from the cluster now and install it.

        Raises:
            ClusterDownError: no node could be asked, or none serves a slot.
        """
        nodes = self._nodes
        errors: list[BaseException] = []
        for address in nodes.asking_order(self._seeds):
            try:
                with anyio.fail_after(self._config.connect_timeout):
                    shards = await _fetch_topology(nodes.node(address), address)
            except (TriopipeError, ValueError, TimeoutError) as exc:
                errors.append(exc)
                continue
            except anyio.ClosedResourceError:
                if nodes.closed:
                    raise
                continue  # retired by a concurrent refresh
            if shards:
                self._refreshes += 1
                nodes.install(shards)
                return
        detail = f": {errors[-1]}" if errors else ""
        cause = errors[-1] if errors else None
        raise ClusterDownError("CLUSTERDOWN", f"no node gave a usable slot map{detail}") from cause

    async def run_refresher(self) -> None:
        """The refresher task: one refresh at a time, on request or periodically."""
        nodes = self._nodes
        while True:
            with anyio.move_on_after(self._refresh_interval):
                await nodes.refresh_wanted.wait()
            nodes.refresh_wanted = anyio.Event()
            try:
                await self.refresh()
            except ClusterDownError:
                pass  # unreachable for now: the commands will say so
            except anyio.ClosedResourceError:
                return  # the client is closing
            await anyio.sleep(_MIN_REFRESH_INTERVAL)

    async def connect(self) -> None:
        """Connect every primary in parallel; raise the first failure."""
        raise_first(await gather([node.group.connect for node in self._nodes.every_target()]))

    def close(self) -> None:
        """Close every node's connections (the client's block is exiting)."""
        self._nodes.close()

    # -- commands ----------------------------------------------------------------

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
            async with ShardedTransaction(
                self._router,
                self._nodes.primary,
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
        for node in self._nodes.every_target():
            async for key in node.scan_iter(match=match, count=count):
                yield key

    def statistics(self) -> ClusterClientStatistics:
        """A snapshot of every node's connection group and of the redirects followed."""
        nodes = self._nodes
        per_node = {node.config.url: node.statistics() for node in nodes.nodes.values()}
        return ClusterClientStatistics(
            nodes=len(per_node),
            primaries=len(nodes.map.primaries()),
            slots_served=nodes.map.covered(),
            commands_in_flight=sum(s.commands_in_flight for s in per_node.values()),
            refreshes=self._refreshes,
            moved=nodes.moved,
            asked=nodes.asked,
            retries=nodes.retries,
            per_node=MappingProxyType(per_node),
        )


async def _fetch_topology(node: Client, address: Address) -> list[Shard]:
    try:
        reply = await node.execute("CLUSTER", "SHARDS")
    except ResponseError:  # before Redis 7: unknown subcommand
        reply = await node.execute("CLUSTER", "SLOTS")
        return parse_cluster_slots(reply, address.host)
    return parse_cluster_shards(reply, address.host)


def _reads_only(args: Sequence[Arg]) -> bool:
    """Whether a replica may serve ``args`` (a read-only command)."""
    try:
        return args[0] in READ_ONLY_COMMANDS
    except TypeError:  # unhashable: the server will refuse it anyway
        return False


def _redirect_address(error: RedirectError, via: Client | None) -> Address:
    """The node a redirect names; an empty host means the host that answered."""
    host = error.host or (via.config.host if via is not None else "")
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
            await client.connect()
            task_group.start_soon(client.run_refresher, name="triopipe cluster refresher")
            yield client
        finally:
            client.close()
