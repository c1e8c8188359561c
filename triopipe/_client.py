"""The client for one server, and :func:`open_client`.

``open_client`` owns a task group holding every connection task; leaving its
block closes the connections, fails whatever is still pending, and no task or
socket outlives it.

Theory of operation: ``execute_many``
-------------------------------------

A pipeline of any length goes over one connection, in order, as *windows*:
at most ``Connection.window`` commands each (fewer when replies are large),
encoded, grouped into requests of at most ``_REQUEST_BYTES`` and submitted
only when the connection has room, so the client's memory and the server's
output buffer stay bounded. A list is encoded whole before anything is sent,
so a bad argument anywhere sends nothing; any other iterable is consumed,
encoded and checked window by window, as it goes.

Every command gets an outcome (:class:`_PipelineRun`): its reply (an error
reply is a value), or the error of its window's request. When a link breaks,
the requests never written are submitted again, in order, on the next link
(up to ``retries`` times each); those written before the break have an
unknown outcome and are never resent unless ``at_least_once``. Once the
server cannot be reached at all, nothing more is sent and every remaining
command gets that error.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._backend import Signal
from ._batch import Batch, Transaction
from ._commands import Arg, Command, Commands, Key, run_command
from ._commands import keys as key_commands
from ._config import DEFAULT_URL, ClientConfig, parse_url
from ._connection import Connection
from ._consumer import StreamConsuming
from ._exceptions import (
    ConnectError,
    ConnectionLostError,
    ResponseError,
    TransportError,
    UnknownCommandClassError,
)
from ._group import ConnectionGroup
from ._learn import learn_commands
from ._observe import Observation
from ._pipeline import Request
from ._protocols import DirectRoute
from ._resp import encode_command, encode_each, encode_requests, group_requests
from ._retry import RetryPolicy
from ._routing import (
    CommandClass,
    check_commands,
    command_class,
    command_name,
    refusal,
    unknown_commands,
)
from ._scripts import Scripting
from ._statistics import ClientStatistics, PumpReport, PumpTally
from ._subscription import OneServer, Placement, Subscribing
from ._tasks import background_task_group

__all__ = [
    "Client",
    "dispatch_to",
    "execute_reply",
    "open_client",
]

T = TypeVar("T")


class Client(Commands, Scripting, Subscribing, StreamConsuming):
    """A client for one Redis server, made by :func:`open_client`.

    Many tasks may use one client at once: their commands share writes
    (auto-pipelining) over the connection group.
    """

    __slots__ = ("_config", "_group", "_observer", "_retry")

    def __init__(self, group: ConnectionGroup) -> None:
        self._group = group
        self._config = config = group.config
        self._observer = config.observer
        self._retry = RetryPolicy(attempts=config.retries, at_least_once=config.at_least_once)

    def __repr__(self) -> str:
        state = "closed" if self._group.closed else "open"
        return f"<Client {self._config.url} connections={self._config.connections} {state}>"

    @property
    def config(self) -> ClientConfig:
        """The options this client was opened with (the password stays hidden in its repr)."""
        return self._config

    @property
    def group(self) -> ConnectionGroup:
        """The connection group this client drives (for the package's other facades)."""
        return self._group

    async def execute(self, *args: Arg) -> Any:
        """Run one command and return its reply as the protocol gives it.

        Blocking commands (``BLPOP``, ``XREAD ... BLOCK``, ``WAIT``, ...) run on
        a dedicated connection, so they never stall the shared one. A command
        the server provably did not run (never written, or refused with
        ``LOADING`` or a full ``maxclients``) is retried up to ``retries``
        times; a written one is never resent unless ``at_least_once=True``.

        Commands that would change the shared connection for every caller
        (``MULTI``, ``SELECT``, ``CLIENT REPLY``...), subscription commands and
        ``WAIT``/``WAITAOF`` (which need the connection that carried the
        caller's writes) are refused before anything is sent; the error names
        the API to use instead. A command triopipe's table lacks (a module's)
        is looked up on the server first (``COMMAND INFO``, once per process).

        Raises:
            ResponseError: the server answered with an error.
            ConnectionLostError: the connection broke before the reply came.
            ConnectError: the server could not be reached.
            CommandNotAllowedError: the command may not run through
                ``execute`` (a ``ValueError`` too).
            anyio.ClosedResourceError: the client is closed.
        """
        payload = encode_command(args)
        kind = command_class(args)
        if kind is not CommandClass.SHARED and kind is not CommandClass.BLOCKING:
            kind = await self._allowed(args, kind)
        observer = self._observer
        observation = None
        if observer is not None:
            observation = observer.command(self._config.address, command_name(args), 1)
        attempt = 0
        try:
            while True:
                try:
                    if kind is CommandClass.SHARED:
                        connection = self._group.choose()
                        reply = await connection.call(payload, 1)
                        if type(reply) is list and connection.protocol == 3:
                            reply = _resp3_set(args, reply)
                    else:
                        async with self._group.reserve() as connection:
                            reply = await connection.call_blocking(payload)
                except (TransportError, ResponseError) as exc:
                    reply = exc
                # Error replies, and replies that could not be decoded, arrive
                # as exception instances in their own place.
                if not isinstance(reply, Exception):
                    if observation is not None:
                        observation.end(None)
                    return reply
                delay = self._retry.delay(reply, attempt)
                if delay is None:
                    raise reply
                attempt += 1
                if observer is not None:
                    observer.retried(self._config.address, command_name(args), reply, attempt)
                if delay:
                    await anyio.sleep(delay)
        except BaseException as exc:
            if observation is not None:
                observation.end(exc)
            raise

    async def _allowed(self, args: Sequence[Arg], kind: CommandClass) -> CommandClass:
        """The class of a command that is neither shared nor blocking, if ``execute`` may run it.

        Raises:
            CommandNotAllowedError: it may not (before anything is sent).
        """
        if kind is CommandClass.UNKNOWN:
            await self.learn_commands(unknown_commands([args]))
            kind = command_class(args)
        error = refusal(args, "execute")
        if error is not None:
            raise error
        return kind

    async def learn_commands(self, names: Sequence[str] | None = None) -> None:
        """Ask the server about commands triopipe's command table lacks, and remember them.

        ``execute`` and ``execute_many`` do it for you when they meet such a
        command (a module's, a newer server's). A batch cannot: it adds
        commands without waiting. Call this once before using such commands
        in batches, or after loading a module into a running server.

        Args:
            names: the commands to ask about (``"JSON.SET"``, ``"CLIENT|NEWSUB"``);
                by default every command the server lists (``COMMAND LIST``)
                that the table lacks.
        """
        await learn_commands(self.execute, names)

    def direct_route(self, args: tuple[Arg, ...]) -> DirectRoute | None:
        """Where a plain command may go without this client's ``execute``, if anywhere.

        The cross-thread hook of the blocking facade: the shared connection
        ``execute`` would use, for a command that needs nothing else; None
        for anything else (a blocking or refused command, a closed client).
        """
        if command_class(args) is not CommandClass.SHARED or self._group.closed:
            return None
        return DirectRoute(self._group.choose(), self._retryable)

    def _retryable(self, error: BaseException) -> bool:
        return self._retry.delay(error, 0) is not None

    def batch(self) -> Batch:
        """Queue commands that stream to the server; replies are read at exit.

        ``b.execute(...)`` and the typed helpers on ``b`` return
        :class:`Pending` handles at once. All commands of a batch go over one
        connection, in order, so ``WAIT``/``WAITAOF`` in a batch count its
        writes (and hold that connection until the replicas answer or the
        timeout ends: keep it short). Blocking, subscription and
        connection-state commands are refused before anything is sent.
        """
        return Batch(self._group.choose())

    def _placement(self) -> Placement:
        return OneServer(self._group)

    @asynccontextmanager
    async def transaction(self, *watch_keys: Key) -> AsyncIterator[Transaction]:
        """``MULTI``/``EXEC`` on a reserved connection, after ``WATCH watch_keys``.

        Raises:
            WatchError: at exit, a watched key had changed; nothing was
                applied.
            ExecAbortError: at exit, a command had been refused while queued;
                nothing was applied.
        """
        async with (
            self._group.reserve() as connection,
            Transaction(connection, watch_keys) as transaction,
        ):
            yield transaction

    async def execute_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run many commands as one pipeline and return their replies in order.

        All commands of one call go over one connection, in order. They are
        encoded and sent in windows of at most 512 commands, fewer when
        ``max_in_flight`` is small or replies are large (the connection keeps
        about 256 KiB of replies in flight at most), so the client's memory and
        the server's output buffer stay bounded whatever the input, including
        a generator of millions of commands.

        A list (or other sequence) is checked and encoded whole before
        anything is sent: a bad argument anywhere raises and sends nothing.
        Any other iterable is consumed as the call goes, window by window.
        A call that fits in one window is queued atomically: all or nothing,
        even if cancelled; a longer one is atomic window by window.

        If the connection breaks, the windows never written are sent again on
        a new one; those written have an unknown outcome and are not resent
        (unless ``at_least_once``): their commands get
        :class:`ConnectionLostError` with ``sent=True``. Once the server
        cannot be reached, the rest of the call is not sent.

        Args:
            commands: argument sequences, e.g. ``[("SET", "a", 1), ("GET", "a")]``.
            raise_on_error: True: once every command has its outcome, raise the
                first error (an error reply, or a transport error). False:
                return every error in its place, as an exception instance: a
                :class:`ResponseError` for an error reply, a
                :class:`TransportError` for a command whose connection failed
                (``ConnectionLostError.sent`` says whether it was written),
                and a :class:`UnicodeDecodeError` for a reply that is not
                valid UTF-8 under ``decode=True``.
        """
        connection = self._group.choose()
        run = _PipelineRun(connection, self._retry, self._config)
        if isinstance(commands, Sequence):
            await self.check_pipeline(commands)
            results = await run.run(_slices(encode_each(commands), connection), _grouped)
        else:
            results = await run.run(_slices(commands, connection), self._prepared)
        if raise_on_error:
            for reply in results:
                if isinstance(reply, Exception):
                    raise reply
        return results

    async def pump(
        self,
        commands: Iterable[Sequence[Arg]],
        *,
        on_outcomes: Callable[[int, list[Any]], object] | None = None,
    ) -> PumpReport:
        """Run any number of commands as :meth:`execute_many` does, keeping no reply.

        For loads too big to keep every reply (millions of ``SET``): memory
        stays bounded whatever the input's length, a generator included.
        Every command still gets its outcome, in order: counted in the
        report, and handed to ``on_outcomes(first, outcomes)`` if given, as
        each request's replies come in (``first``: the number of its first
        command; ``outcomes``: replies, or error instances as
        ``execute_many(raise_on_error=False)`` gives them). Nothing raises for
        a command's failure: the report says what happened.

        Raises:
            CommandNotAllowedError: a command a pipeline may not hold (before
                anything of its window is sent).
            TypeError, ValueError: a bad argument (likewise).
        """
        tally = PumpTally(on_outcomes)
        connection = self._group.choose()
        run = _PipelineRun(connection, self._retry, self._config, tally.add)
        await run.run(_slices(commands, connection), self._prepared)
        return tally.report()

    async def check_pipeline(self, commands: Sequence[Sequence[Arg]]) -> None:
        """Refuse, before anything is sent, a command of ``commands`` a pipeline may not hold.

        Commands the table lacks are looked up on the server first.

        Raises:
            CommandNotAllowedError: a blocking, subscription or
                connection-state command, or ``WAIT``.
        """
        try:
            check_commands(commands, "pipeline")
        except UnknownCommandClassError:
            await self.learn_commands(unknown_commands(commands))
            check_commands(commands, "pipeline")

    async def _prepared(self, window: list[Sequence[Arg]], first: int) -> list[tuple[bytes, int]]:
        """A window of a pipeline taken from an iterable, checked and encoded into requests."""
        await self.check_pipeline(window)
        return encode_requests(window, first, _REQUEST_BYTES)

    async def run_encoded(self, parts: list[bytes]) -> list[Any]:
        """Every outcome of encoded commands sent as one pipeline, in order (never raises them).

        What the sharded and cluster clients send to each server: their calls
        are encoded whole first, so a bad argument sends nothing anywhere.
        """
        connection = self._group.choose()
        return await _PipelineRun(connection, self._retry, self._config).run(
            _slices(parts, connection), _grouped
        )

    async def scan_iter(
        self, match: Key | None = None, count: int | None = None
    ) -> AsyncIterator[Any]:
        """Iterate over the keys of the database with ``SCAN`` (keys may repeat)."""
        cursor = 0
        while True:
            cursor, keys = await run_command(
                self.execute, key_commands.scan(cursor, match=match, count=count)
            )
            for key in keys:
                yield key
            if cursor == 0:
                return

    def statistics(self) -> ClientStatistics:
        """A snapshot of the connection group's state."""
        snapshots = tuple(self._group.statistics())
        return ClientStatistics(
            connections=len(snapshots),
            connected=sum(s.connected for s in snapshots),
            commands_in_flight=sum(s.commands_in_flight for s in snapshots),
            commands_queued=sum(s.commands_queued for s in snapshots),
            connects=sum(s.connects for s in snapshots),
            commands_written=sum(s.commands_written for s in snapshots),
            writes=sum(s.writes for s in snapshots),
            per_connection=snapshots,
        )

    def _dispatch(self, command: Command[T], /) -> Awaitable[T]:
        # dispatch_to(), inlined: every helper's hot path.
        if command.transform is None:
            result: Awaitable[T] = self.execute(*command.args)
            return result
        return run_command(self.execute, command)


def dispatch_to(execute: Callable[..., Awaitable[Any]], command: Command[T]) -> Awaitable[T]:
    """What an async facade's ``_dispatch`` returns: ``command`` run by ``execute``, shaped."""
    if command.transform is None:
        # The reply is the result: no coroutine of our own around it.
        result: Awaitable[T] = execute(*command.args)
        return result
    return run_command(execute, command)


def execute_reply(args: Sequence[Arg], reply: Any, protocol: int) -> Any:
    """A reply as :meth:`Client.execute` returns it (RESP3 sets as ``set``)."""
    if type(reply) is list and protocol == 3:
        return _resp3_set(args, reply)
    return reply


# Commands whose RESP3 reply is a set. hiredis reads RESP3 sets as lists (it
# does not tell them apart), so execute() gives these their set back.
_RESP3_SET_COMMANDS = frozenset({"SMEMBERS", "SINTER", "SUNION", "SDIFF"})


def _resp3_set(args: Sequence[Arg], reply: list[Any]) -> Any:
    if command_name(args) in _RESP3_SET_COMMANDS:
        try:
            return set(reply)
        except TypeError:  # unhashable members: keep what the server sent
            return reply
    return reply


# Encoded bytes per request of an execute_many call: a window of big values
# (200 SETs of 1 MiB) goes as many requests, not one 200 MiB join.
_REQUEST_BYTES = 1024 * 1024
_SHARED_REPLIES = {reply: reply for reply in (b"OK", b"PONG", b"0", b"1", b"")}


class _Unit:
    """One request of a pipeline: what was sent, to send it again, and how often it was."""

    __slots__ = ("attempts", "count", "observation", "payload", "request")

    def __init__(
        self,
        request: Request[Signal] | None,
        payload: bytes,
        count: int,
        observation: Observation | None = None,
    ) -> None:
        self.request = request
        self.payload = payload
        self.count = count
        self.attempts = 0
        self.observation = observation


class _PipelineRun:
    """One pipeline over one connection: submits windows, hands every outcome on in order.

    Outcomes go to ``sink``, a list of replies and errors at a time, in the
    order of the commands; by default they are kept and returned.
    """

    __slots__ = (
        "_address",
        "_connection",
        "_down",
        "_observer",
        "_policy",
        "_results",
        "_sink",
        "_units",
    )

    def __init__(
        self,
        connection: Connection,
        policy: RetryPolicy,
        config: ClientConfig,
        sink: Callable[[list[Any]], object] | None = None,
    ) -> None:
        self._connection = connection
        self._policy = policy
        self._observer = config.observer
        self._address = config.address
        self._units: deque[_Unit] = deque()
        self._results: list[Any] = []
        self._sink = self._keep if sink is None else sink
        # Set once the server cannot be reached: nothing more is sent.
        self._down: BaseException | None = None

    async def run(
        self,
        windows: Iterator[list[Any]],
        prepare: Callable[[list[Any], int], Awaitable[list[tuple[bytes, int]]]],
    ) -> list[Any]:
        """Send ``windows`` in order and return every command's outcome.

        ``prepare(window, first)`` turns each window into requests (``first``:
        the number of its first command in the call): checks and encodes
        commands, or groups commands already encoded.
        """
        units = self._units
        done = 0
        try:
            for window in windows:
                for payload, count in await prepare(window, done):
                    await self._send(payload, count)
                done += len(window)
            while units:
                await self._collect()
        except BaseException:
            for unit in units:
                if unit.request is not None:
                    unit.request.abandoned = True
            raise
        return self._results

    async def _send(self, payload: bytes, count: int) -> None:
        """Submit one request when there is room, in order."""
        units = self._units
        connection = self._connection
        # Collect outcomes (oldest first): those already in, so that memory
        # holds only the requests in flight whatever the call's length; all
        # of them when the link broke, so that what failed unwritten is sent
        # again before anything new; then until there is room.
        while units:
            last = units[-1].request
            if (
                units[0].request is None
                or units[0].request.done
                or (last is not None and last.error is not None)
                or not connection.has_room(count)
            ):
                await self._collect()
            else:
                break
        if self._down is not None:
            units.append(_Unit(None, payload, count))
            return
        if units:
            pass
        elif connection.has_room(count):
            await connection.checkpoint_if_cancelled()
        else:  # other callers fill the connection
            await connection.wait_for_room(count)
        observer = self._observer
        observation = None
        if observer is not None:
            observation = observer.command(self._address, "PIPELINE", count)
        try:
            request = connection.submit(payload, count, many=True, sealed=True)
        except ConnectError as exc:  # the server is down: nothing more is sent
            self._down = exc
            request = None
        units.append(_Unit(request, payload, count, observation))
        if count >= connection.window or len(payload) >= _REQUEST_BYTES:
            # Let the sender write this request (unless it went out directly)
            # and the receiver read replies, while the next is built.
            await anyio.lowlevel.checkpoint()

    async def _collect(self) -> None:
        """Take the oldest request's outcome; on a retryable failure send it again.

        A request fails when its link breaks, and then so did every request
        sent after it on that link: when the oldest was never written, none
        of the later ones was either, and all of them are sent again, in order.
        """
        units = self._units
        head = units[0]
        request = head.request
        if request is None:  # never sent: the server could not be reached
            units.popleft()
            self._failed(head, self._down)
            return
        try:
            replies = await Connection.wait(request)
        except TransportError as exc:
            delay = None if self._down is not None else self._policy.delay(exc, head.attempts)
            if delay is None:
                units.popleft()
                if self._down is None and _unreachable(exc):
                    self._down = exc
                self._failed(head, exc)
                return
            if delay:
                await anyio.sleep(delay)
            connection = self._connection
            for unit in units:
                unit.attempts += 1
                if self._observer is not None:
                    self._observer.retried(self._address, "PIPELINE", exc, unit.attempts)
                try:
                    unit.request = connection.submit(
                        unit.payload, unit.count, many=True, sealed=True
                    )
                except ConnectError as down:  # send nothing more
                    self._down = down
                    unit.request = None
            return
        units.popleft()
        if head.observation is not None:
            head.observation.end(None)
        self._sink(replies)

    def _keep(self, outcomes: list[Any]) -> None:
        """The default sink: keep every outcome, to be returned."""
        # Share the common short replies (+OK for a SET, ...): ten million of
        # them cost one object, not ten million.
        shared = _SHARED_REPLIES.get
        self._results.extend(
            [shared(reply, reply) if type(reply) is bytes and len(reply) <= 4 else reply
             for reply in outcomes]
        )  # fmt: skip

    def _failed(self, unit: _Unit, error: BaseException | None) -> None:
        """Every command of ``unit`` failed with ``error``."""
        if unit.observation is not None:
            unit.observation.end(error)
        self._sink([error] * unit.count)


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the server cannot be reached (rather than one link broke)."""
    return isinstance(error, ConnectError) or (
        isinstance(error, ConnectionLostError) and not error.sent
    )


async def _grouped(parts: list[bytes], first: int) -> list[tuple[bytes, int]]:
    """Encoded commands grouped into requests (a ``prepare`` of :class:`_PipelineRun`)."""
    return group_requests(parts, _REQUEST_BYTES)


def _slices(items: Iterable[T], connection: Connection) -> Iterator[list[T]]:
    """``items`` cut into windows of the connection's window size at the time of each cut."""
    if isinstance(items, list):
        start = 0
        while start < len(items):
            end = start + connection.window
            yield items[start:end]
            start = end
        return
    iterator = iter(items)
    while window := list(itertools.islice(iterator, connection.window)):
        yield window


@asynccontextmanager
async def open_client(url: str = DEFAULT_URL, **options: Any) -> AsyncIterator[Client]:
    """Open a client for the server at ``url``; close it when the block exits.

    Connects the whole group before yielding, so a wrong address or password
    fails here. Later breaks reconnect on demand.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``
            (TLS) or ``unix:///path/to/socket[?db=N]``.
        **options: ``connections``, ``protocol``, ``decode``, ``username``,
            ``password``, ``db``, ``client_name``, ``ssl_context``,
            ``connect_timeout``, ``max_in_flight``; they override the URL.

    Raises:
        ConnectError: the server could not be reached in time.
        AuthenticationError: the server refused the credentials.
    """
    config = parse_url(url, options)
    async with background_task_group() as task_group:
        group = ConnectionGroup(config, task_group)
        try:
            await group.connect()
            yield Client(group)
        finally:
            group.close()
