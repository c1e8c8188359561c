"""One fan-out engine for the clients over many servers: plan, send, settle, merge.

Theory of operation
-------------------

The sharded client and the cluster client differ only in their *topology*:
which server serves a group of slots, and what to do when a server refuses
a command. Everything else is this engine's:

- **plan** (:class:`Plan`): each command is routed by a pure
  :class:`~triopipe._routing.Router` into one :class:`Entry` (one group), the
  entries of a :class:`~triopipe._routing.Split` (one per group) or of a
  :class:`~triopipe._routing.Broadcast` (one per server the topology names),
  and the plan remembers how to put the replies back in the caller's order;
- **send** (:meth:`FanOut.round`): entries are grouped by the server the
  topology names for each, and each server's share goes as one pipeline of
  its :class:`~triopipe.Client`, all servers in parallel. A server that fails
  fails only its own entries, each with its own outcome;
- **settle** (:meth:`FanOut.settle`): the topology judges each failed entry
  (:meth:`Topology.judge`): a static topology (shards) never sends again, the
  nodes' clients having retried what their own policy allows; a dynamic one
  (a cluster) follows ``MOVED``/``ASK`` and retries refusals, in rounds, until
  every entry has its final outcome. A round waits for its backoff, or only
  until the topology changes (:meth:`Topology.pause`): a slot's new primary
  is tried the moment the map names it;
- **merge** (:meth:`Plan.results`): replies in the caller's order, splits
  merged by their response policy.

Every command of a call is routed and encoded before anything is sent, so a
``CrossSlotError`` or a bad argument sends nothing anywhere. :class:`FanOutBatch`
is the one batch class of both clients: commands stream to their servers as
they are added, and at exit the entries settle as above.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from ._batch import Batch, BatchBlock, Pending, Transaction, check_pinned, outcome
from ._client import dispatch_to
from ._commands import Arg, Command, Commands, Key
from ._consumer import StreamConsuming
from ._exceptions import (
    CommandNotAllowedError,
    ConnectionLostError,
    CrossSlotError,
    NoShardError,
    ResponseError,
    TransportError,
    TriopipeError,
    UnknownCommandClassError,
    UnknownCommandError,
)
from ._protocols import DirectRoute
from ._resp import encode_command, encode_each
from ._routing import (
    AnyServer,
    Broadcast,
    CommandClass,
    Route,
    Router,
    Split,
    Where,
    check_commands,
    command_class,
    command_name,
    needs_getkeys,
    positions_from_getkeys,
    refusal,
    unknown_commands,
)
from ._scripts import Scripting
from ._statistics import PumpReport, PumpTally

if TYPE_CHECKING:
    from ._client import Client

__all__ = [
    "Entry",
    "FanOut",
    "FanOutBatch",
    "FanOutClient",
    "Plan",
    "ShardedTransaction",
    "Topology",
    "gather",
    "raise_first",
]

T = TypeVar("T")


class Entry:
    """One command on its way to one server: where it goes, what came back, its retries.

    Attributes:
        args: the command.
        payload: the command encoded (once, reused by every retry).
        group: its group of slots (a shard, or a cluster slot); -1 when
            ``fixed``.
        fixed: the server it must go to (a broadcast's part); never
            redirected.
        target: the server it was last sent to.
        asking: a cluster node to ask once, after ``ASKING``.
        primary: a try failed: no more replica reads.
        attempt: retries so far.
        reply: the reply, or the error as a value, once sent.
    """

    __slots__ = (
        "args",
        "asking",
        "attempt",
        "fixed",
        "group",
        "payload",
        "primary",
        "reply",
        "target",
    )

    def __init__(
        self, args: Sequence[Arg], group: int, payload: bytes, fixed: Client | None = None
    ) -> None:
        self.args = args
        self.group = group
        self.payload = payload
        self.fixed = fixed
        self.target: Client | None = fixed
        self.asking: Client | None = None
        self.primary = False
        self.attempt = 0
        self.reply: Any = None


class Topology(Protocol):
    """Which server serves an entry, and what to do when one fails it."""

    def target(self, entry: Entry) -> tuple[Client, bool] | None:
        """The client for ``entry``'s next try and whether it is a replica; None if unknown.

        Never asked for an entry with a ``fixed`` target.
        """

    def every_target(self) -> Sequence[Client]:
        """The servers a :class:`~triopipe._routing.Broadcast` goes to."""

    def judge(self, entry: Entry) -> float | None:
        """After ``entry`` failed: seconds to wait before it goes again (re-aimed), or None."""

    def retryable(self, error: BaseException) -> bool:
        """Whether an error would be retried (the blocking facade then uses the loop)."""

    def unserved(self, entry: Entry) -> BaseException:
        """The error of an entry no known server serves."""

    async def pause(self, delay: float) -> None:
        """Wait ``delay`` seconds before retrying, or less if the topology changed meanwhile."""


class Plan:
    """Commands cut into entries, and how to put their replies back in order.

    Args:
        router: routes each command.
        topology: names the servers of a broadcast.
    """

    __slots__ = ("_places", "_router", "_topology", "entries")

    def __init__(self, router: Router, topology: Topology) -> None:
        self._router = router
        self._topology = topology
        self.entries: list[Entry] = []
        # Per command: the index of its entry, or its route and its entries' range.
        self._places: list[int | tuple[Split | AnyServer, range]] = []

    def add(
        self, args: Sequence[Arg], payload: bytes | None = None, route: Route | None = None
    ) -> None:
        """Add the entries of ``args`` (``payload``: encoded already; ``route``: its route)."""
        if route is None:
            route = self._router.route(args)
        entries = self.entries
        if type(route) is int:
            self._places.append(len(entries))
            entries.append(Entry(args, route, payload or encode_command(args)))
            return
        first = len(entries)
        if isinstance(route, Broadcast):
            command = route.command
            data = payload or encode_command(command)
            entries += [
                Entry(command, -1, data, client) for client in self._topology.every_target()
            ]
        elif isinstance(route, AnyServer):
            command = route.command
            client = random.choice(self._topology.every_target())
            entries.append(Entry(command, -1, payload or encode_command(command), client))
        else:
            assert isinstance(route, Split)
            entries += [Entry(part, group, encode_command(part)) for group, part in route.parts]
        self._places.append((route, range(first, len(entries))))

    def results(self) -> list[Any]:
        """Each command's reply (or error, as a value), in the order they were added."""
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


# Sent before a command redirected by ASK, and before a share read from a replica.
_ASKING = encode_command(("ASKING",))
_READONLY = encode_command(("READONLY",))


class FanOut:
    """Runs commands over a topology: the engine behind the sharded and cluster clients.

    Args:
        router: routes commands to groups of slots.
        topology: names servers and judges failures.
        closing: whether the client is closing (a target retired meanwhile
            is then not a failure to report per command).
    """

    __slots__ = ("_closing", "router", "topology")

    def __init__(self, router: Router, topology: Topology, closing: Callable[[], bool]) -> None:
        self.router = router
        self.topology = topology
        self._closing = closing

    def plan(self) -> Plan:
        """A new, empty plan."""
        return Plan(self.router, self.topology)

    def target(self, entry: Entry) -> tuple[Client, bool] | None:
        """Where ``entry`` goes next: its fixed server, or the one the topology names."""
        fixed = entry.fixed
        if fixed is not None:
            return fixed, False
        return self.topology.target(entry)

    async def execute(self, args: Sequence[Arg]) -> Any:
        """Run one command where it belongs; merge a split; settle failures. Errors raise."""
        kind = command_class(args)
        if kind is not CommandClass.SHARED and kind is not CommandClass.BLOCKING:
            await self.learn([args])
            error = refusal(args, "execute")
            if error is not None:
                raise error
        route = await self.route(args)
        if type(route) is int:
            entry = Entry(args, route, b"")
            picked = self.topology.target(entry)
            if picked is not None and not picked[1]:
                # The common case: straight to its server's client, which
                # retries what it may; only a failure enters the rounds.
                client = picked[0]
                try:
                    return await client.execute(*args)
                except (ResponseError, TransportError) as exc:
                    entry.target, entry.reply = client, exc
                entry.payload = encode_command(args)
                await self.settle([entry], sent=True)
            else:
                entry.payload = encode_command(args)
                await self.settle([entry], sent=False)
            reply = entry.reply
        else:
            plan = self.plan()
            plan.add(args, route=route)
            await self.settle(plan.entries, sent=False)
            reply = plan.results()[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def execute_many(
        self, commands: Iterable[Sequence[Arg]], where: Where = "pipeline"
    ) -> list[Any]:
        """Every command's outcome, in order: routed and encoded whole, then sent in parallel.

        ``where``: ``"pinned"`` for a batch's held commands, which may hold
        ``WAIT``.
        """
        commands = list(commands)
        try:
            check_commands(commands, where)
        except UnknownCommandClassError:
            await self.learn(commands)
            check_commands(commands, where)
        payloads = encode_each(commands)
        plan = self.plan()
        for args, payload in zip(commands, payloads, strict=True):
            plan.add(args, payload, await self.route(args))
        await self.settle(plan.entries, sent=False)
        return plan.results()

    async def learn(self, commands: Sequence[Sequence[Arg]]) -> None:
        """Ask a server about the commands of ``commands`` the table lacks (once per process)."""
        names = unknown_commands(commands)
        if names:
            await self.learn_from_server(names)

    async def learn_from_server(self, names: Sequence[str] | None = None) -> None:
        """:meth:`~triopipe.Client.learn_commands` on one of the servers."""
        await random.choice(self.topology.every_target()).learn_commands(names)

    async def route(self, args: Sequence[Arg]) -> Route:
        """Route ``args``, asking a server first about a command the table lacks.

        On the hot path this is one call of the pure router; only a command
        the table lacks (a module's, a newer server's) costs a round trip,
        once, and a command whose keys only the server can find one per call
        (``COMMAND GETKEYS``).
        """
        try:
            return self.router.route(args)
        except UnknownCommandError:
            pass
        await self.learn([args])
        if needs_getkeys(args):
            client = random.choice(self.topology.every_target())
            keys = await client.execute("COMMAND", "GETKEYS", *args)
            return self.router.route(args, positions_from_getkeys(args, keys))
        return self.router.route(args)

    def direct_route(self, args: tuple[Arg, ...]) -> DirectRoute | None:
        """The blocking facade's hook: the owning server's route, for a one-group command."""
        try:
            route = self.router.route(args)
        except UnknownCommandError:  # execute asks the server first
            return None
        if type(route) is not int:
            return None
        picked = self.topology.target(Entry(args, route, b""))
        if picked is None or picked[1]:
            return None
        inner = picked[0].direct_route(args)
        if inner is None:
            return None
        retryable = self.topology.retryable
        return DirectRoute(
            inner.connection, lambda error: inner.retryable(error) or retryable(error)
        )

    async def settle(self, entries: list[Entry], *, sent: bool) -> None:
        """Send ``entries`` (unless ``sent``) and retry the failures, in rounds."""
        todo = entries
        if not sent:
            await self.round(todo)
        judge = self.topology.judge
        while True:
            retry = []
            delay = 0.0
            for entry in todo:
                error = entry.reply
                if entry.fixed is not None or not isinstance(
                    error, (ResponseError, TransportError)
                ):
                    continue
                wait = judge(entry)
                if wait is not None:
                    retry.append(entry)
                    delay = max(delay, wait)
            if not retry:
                return
            if delay:
                await self.topology.pause(delay)
            await self.round(retry)
            todo = retry

    async def round(self, entries: list[Entry]) -> None:
        """Send each server its share of ``entries`` as one pipeline, all servers at once."""
        shares: dict[tuple[Client, bool], list[Entry]] = {}
        target = self.target
        for entry in entries:
            picked = target(entry)
            if picked is None:
                entry.target = None
                entry.reply = self.topology.unserved(entry)
                continue
            entry.target = picked[0]
            shares.setdefault(picked, []).append(entry)
        calls = [
            functools.partial(self._send, client, share, replica)
            for (client, replica), share in shares.items()
        ]
        raise_first([r for r in await gather(calls) if not isinstance(r, TriopipeError)])

    async def _send(self, client: Client, entries: list[Entry], replica: bool) -> None:
        """One pipeline to one server; each entry gets its own outcome."""
        entry = entries[0]
        try:
            if len(entries) == 1 and entry.asking is None and not replica:
                # Alone: through execute, which also runs blocking commands
                # on a dedicated connection.
                try:
                    entry.reply = await client.execute(*entry.args)
                except (ResponseError, TransportError) as exc:
                    entry.reply = exc
                return
            parts = [_READONLY] if replica else []
            for entry in entries:
                if entry.asking is not None:
                    parts.append(_ASKING)
                parts.append(entry.payload)
            replies = iter(await client.run_encoded(parts))
        except anyio.ClosedResourceError:
            if self._closing():
                raise
            # The server was retired under us before anything was queued.
            for entry in entries:
                entry.reply = _retired()
            return
        if replica:
            next(replies)
        for entry in entries:
            if entry.asking is not None:
                next(replies)
            entry.reply = next(replies)


# Commands a pump of the sharded and cluster clients routes and runs at a time.
_PUMP_CHUNK = 50_000
# What a batch's held commands get when one of them is refused: none was sent.
_NOT_SENT = ConnectionLostError("not sent: a command of the batch was refused", sent=False)


def _retired() -> TransportError:
    return ConnectionLostError(
        "the server left the cluster before the command was sent", sent=False
    )


class FanOutClient(Commands, Scripting, StreamConsuming):
    """The interface the sharded and cluster clients share, run by their fan-out engine.

    ``execute``, ``execute_many``, ``batch`` and the typed helpers work as on
    :class:`~triopipe.Client`, each command on the server that owns its keys.
    """

    __slots__ = ()

    _engine: FanOut

    async def execute(self, *args: Arg) -> Any:
        """Run one command on the server that owns its keys and return its reply.

        ``MGET``, ``MSET``, ``DEL``, ``UNLINK``, ``EXISTS`` and ``TOUCH`` over
        several servers are split and merged; key-less commands that concern
        every server (``PING``, ``FLUSHDB``, ``DBSIZE``, ``KEYS``...) run on all
        of them, their replies combined (``DBSIZE`` adds up).

        Raises:
            CrossSlotError: the keys live on several servers (shards, or
                cluster slots) and the command cannot be split; nothing was
                sent.
            NoShardError: a key-less command that means nothing across
                servers (``INFO``, ``EVAL`` with no keys...); its message says
                how to aim it at one server.
            ResponseError: the server answered with an error (on a cluster,
                a redirect too, once ``max_redirects`` is reached).
            TransportError: the server's connection failed
                (``ConnectionLostError`` with ``sent=True``: the outcome is
                unknown).
        """
        return await self._engine.execute(args)

    def direct_route(self, args: tuple[Arg, ...]) -> DirectRoute | None:
        """The owning server's :meth:`~triopipe.Client.direct_route`, for a one-server command.

        Anything out of the ordinary (several servers, an unknown owner,
        replica reads) is left to :meth:`execute` on the loop, as is any
        redirect or refusal met on the way: a redirected command was not run,
        so running it again is safe.
        """
        return self._engine.direct_route(args)

    def _dispatch(self, command: Command[T], /) -> Awaitable[T]:
        return dispatch_to(self.execute, command)

    async def learn_commands(self, names: Sequence[str] | None = None) -> None:
        """Ask a server about commands the command table lacks (see ``Client.learn_commands``)."""
        await self._engine.learn_from_server(names)

    async def execute_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run many commands, each on its server, all servers in parallel; replies in order.

        Every command is routed and encoded before anything is sent, so a
        :class:`~triopipe.CrossSlotError`, a blocking command or a bad
        argument sends nothing anywhere. Each server gets one pipeline (with
        the windows of :meth:`~triopipe.Client.execute_many`); commands of
        one server keep their relative order. On a cluster, commands
        redirected or refused on the way are retried, together, and their
        replies land in their places. A server whose connection fails fails
        only its own commands: with ``raise_on_error=False`` each of them
        holds its :class:`~triopipe.TransportError` in its place; with True
        the first error (in the caller's order) raises once every server has
        finished.

        Args:
            commands: argument sequences, e.g. ``[("SET", "a", 1), ("GET", "a")]``.
            raise_on_error: as for :meth:`~triopipe.Client.execute_many`.
        """
        results = await self._engine.execute_many(commands)
        if raise_on_error:
            raise_first(results)
        return results

    async def pump(
        self,
        commands: Iterable[Sequence[Arg]],
        *,
        on_outcomes: Callable[[int, list[Any]], object] | None = None,
    ) -> PumpReport:
        """Run any number of commands as :meth:`execute_many` does, keeping no reply.

        As :meth:`~triopipe.Client.pump`: the input is taken in chunks of
        ``_PUMP_CHUNK`` commands, each routed, encoded and run over every
        server in parallel before the next, so memory stays bounded and the
        commands of each server keep their order.
        """
        tally = PumpTally(on_outcomes)
        iterator = iter(commands)
        while chunk := list(itertools.islice(iterator, _PUMP_CHUNK)):
            tally.add(await self._engine.execute_many(chunk))
        return tally.report()

    def batch(self) -> FanOutBatch:
        """Queue commands that stream to their servers; replies are read at exit.

        Like :meth:`~triopipe.Client.batch`: ``b.execute(...)`` and the typed
        helpers return :class:`~triopipe.Pending` handles. Each server touched
        gets its own batch (one connection, commands in order). At exit, on a
        cluster, commands that were redirected or refused are retried (as
        :meth:`execute_many` does) before the pendings are resolved. If a
        server's connection fails, its commands' pendings hold the error, the
        others' replies are kept, and the error raises once every server has
        answered.
        """
        return FanOutBatch(self._engine)


class FanOutBatch(BatchBlock, Commands):
    """Commands sent to their servers as they are added; replies collected at exit.

    Made by the sharded and cluster clients' ``batch()``. ``execute`` and the
    typed helpers return :class:`~triopipe.Pending` handles at once. Each
    server touched gets its own batch (one connection, commands in order). At
    exit, commands that were redirected or refused are retried as
    ``execute_many`` does, then the pendings are resolved; a transport error
    that remains raises once every server has answered.

    A command triopipe's table lacks (a module's), or whose keys only the
    server can find, is held with every command after it: at exit, once the
    others are in, the held commands go as one ``execute_many`` (which asks
    the servers first), keeping the order of every server's commands.
    """

    __slots__ = ("_batches", "_engine", "_held", "_inner", "_pendings", "_plan")

    def __init__(self, engine: FanOut) -> None:
        self._engine = engine
        self._plan = engine.plan()
        self._batches: dict[Client, Batch] = {}
        self._inner: list[Pending[Any] | None] = []  # per entry, as sent first
        self._pendings: list[Pending[Any]] = []
        self._held: list[tuple[Sequence[Arg], Pending[Any]]] | None = None

    def __len__(self) -> int:
        return len(self._pendings) + len(self._held or ())

    def execute(self, *args: Arg) -> Pending[Any]:
        """Queue any command; returns its :class:`~triopipe.Pending` at once."""
        return self._dispatch(Command(args))

    def _dispatch(self, command: Command[T], /) -> Pending[T]:
        args = command.args
        route: Route | None = None
        if self._held is None and command_class(args) is not CommandClass.UNKNOWN:
            check_pinned(args)
            with contextlib.suppress(UnknownCommandError):  # held: the server says
                route = self._engine.router.route(args)
        if route is None:
            encode_command(args)  # reject bad arguments now, not at exit
            held: Pending[T] = Pending(command.transform)
            if self._held is None:
                self._held = []
            self._held.append((args, held))
            return held
        plan = self._plan
        first = len(plan.entries)
        plan.add(args, route=route)
        target = self._engine.target
        for entry in plan.entries[first:]:
            # A batch reads from primaries: its commands share one connection
            # per server, in order.
            entry.primary = True
            picked = target(entry)
            if picked is None:  # sent at exit, once the map knows the slot
                self._inner.append(None)
                continue
            client = entry.target = picked[0]
            batch = self._batches.get(client)
            if batch is None:
                batch = self._batches[client] = client.batch()
            self._inner.append(batch.execute(*entry.args))
        pending: Pending[T] = Pending(command.transform)
        self._pendings.append(pending)
        return pending

    async def finish(self) -> None:
        """Wait for every server's replies, settle what failed, resolve the pendings."""
        try:
            for batch in self._batches.values():
                # Every request was submitted already: waiting for one server
                # after another takes as long as the slowest. A server's
                # error is in its pendings.
                with contextlib.suppress(TriopipeError):
                    await batch.finish()
        except BaseException:
            self.abandon()
            raise
        unsent = []
        for entry, inner in zip(self._plan.entries, self._inner, strict=True):
            if inner is None:
                unsent.append(entry)
            else:
                entry.reply = outcome(inner)
        await self._engine.round(unsent)
        await self._engine.settle(self._plan.entries, sent=True)
        results = self._plan.results()
        for pending, reply in zip(self._pendings, results, strict=True):
            pending.resolve(reply)
        if self._held is not None:
            held, self._held = self._held, None
            try:
                replies = await self._engine.execute_many([args for args, _ in held], "pinned")
            except CommandNotAllowedError:
                for _, pending in held:
                    pending.resolve(_NOT_SENT)
                raise
            for (_, pending), reply in zip(held, replies, strict=True):
                pending.resolve(reply)
            results += replies
        for reply in results:
            if isinstance(reply, TransportError):
                raise reply

    def abandon(self) -> None:
        """Send nothing more on any server; the replies of what was written are dropped."""
        self._held = None
        for batch in self._batches.values():
            batch.abandon()


class ShardedTransaction(Commands):
    """``MULTI``/``EXEC`` on the one server of its keys (a shard, or a cluster slot's node).

    Made by the sharded and cluster clients' ``transaction()``; an async
    context manager. The server is that of the watched keys, or without them
    that of the first queued command naming a key; that server's
    :class:`~triopipe.Transaction` runs the commands. Commands return
    :class:`~triopipe.Pending` handles and are sent together at exit; the
    outcomes are those of :class:`~triopipe.Transaction`.

    Raises:
        CrossSlotError: a command's keys belong elsewhere (when it is queued).
        NoShardError: at exit, no command named a key (no server to run on).
    """

    __slots__ = (
        "_client_for",
        "_commands",
        "_inner",
        "_no_shard",
        "_router",
        "_running",
        "_shard",
        "_transaction",
        "_watch_keys",
    )

    def __init__(
        self,
        router: Router,
        client_for: Callable[[int], Client],
        watch_keys: Sequence[Key],
        no_shard: str,
    ) -> None:
        self._router = router
        self._client_for = client_for
        self._watch_keys = tuple(watch_keys)
        self._no_shard = no_shard
        self._shard = router.shard_of_command(("WATCH", *watch_keys)) if watch_keys else None
        self._commands: list[tuple[Command[Any], Pending[Any]]] = []
        # The server's own transaction, open from entry when keys are watched.
        self._running: Any = None
        self._transaction: Transaction | None = None
        self._inner: list[Pending[Any]] = []

    def __len__(self) -> int:
        return len(self._commands)

    async def __aenter__(self) -> ShardedTransaction:
        if self._shard is not None:
            running = self._client_for(self._shard).transaction(*self._watch_keys)
            self._transaction = await running.__aenter__()
            self._running = running
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            running = self._running
            if running is not None:
                if exc_info[0] is None:
                    assert self._transaction is not None
                    self._replay(self._transaction)
                await running.__aexit__(*exc_info)
                return
            if exc_info[0] is not None or not self._commands:
                return
            if self._shard is None:
                raise NoShardError(self._no_shard)
            async with self._client_for(self._shard).transaction() as transaction:
                self._replay(transaction)
        finally:
            # The server's transaction resolved its own pendings at exit (or
            # failed them all on WatchError): hand the outcomes over.
            for (_, pending), inner in zip(self._commands, self._inner, strict=False):
                if inner.done():
                    pending.resolve(outcome(inner))

    @property
    def now(self) -> Any:
        """Runs commands at once on the transaction's connection (needs watch keys)."""
        if self._transaction is None:
            raise RuntimeError(
                "tx.now needs a server chosen up front: name watch keys in transaction()"
            )
        return self._transaction.now

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

    def _replay(self, transaction: Transaction) -> None:
        self._inner = [transaction.execute(*command.args) for command, _ in self._commands]


def raise_first(replies: Iterable[Any]) -> None:
    """Raise the first exception among ``replies``, if any."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


async def gather(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run ``calls`` in parallel; return their results, a TriopipeError in place of each failure.

    A server's error is a value for the caller to place; anything else (a
    bug, a closed client) raises, unwrapped, once every call has ended.
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
