"""The client for one server, and :func:`open_client`.

``open_client`` owns a task group holding every connection task; leaving its
block closes the connections, fails whatever is still pending, and no task or
socket outlives it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._backend import Signal
from ._batch import Batch, Transaction, batch_block
from ._commands import Arg, Command, Commands, Key, run_command
from ._commands import keys as key_commands
from ._config import DEFAULT_URL, ClientConfig, parse_url
from ._connection import (
    NOT_WRITTEN,
    Connection,
    ConnectionGroup,
    ConnectionStatistics,
    Request,
    background_task_group,
)
from ._exceptions import ResponseError, TransportError
from ._pubsub import Subscription
from ._resp import encode_command, encode_each
from ._retry import RetryPolicy
from ._routing import CommandKind, check_pipelinable, command_kind, command_name
from ._scripts import Scripting

__all__ = ["RUN_ON_LOOP", "Client", "ClientStatistics", "open_client"]

T = TypeVar("T")


class _RunOnLoop:
    __slots__ = ()

    def __repr__(self) -> str:
        return "RUN_ON_LOOP"


#: What the blocking facade's shortcuts (``_execute_in_thread``, ``_start``)
#: give when the command must go through the loop thread's ``execute`` instead.
RUN_ON_LOOP: Any = _RunOnLoop()


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


class Client(Commands, Scripting):
    """A client for one Redis server, made by :func:`open_client`.

    Many tasks may use one client at once: their commands share writes
    (auto-pipelining) over the connection group.
    """

    __slots__ = ("_config", "_group", "_retry")

    def __init__(self, group: ConnectionGroup) -> None:
        self._group = group
        self._config = config = group.config
        self._retry = RetryPolicy(attempts=config.retries, at_least_once=config.at_least_once)

    def __repr__(self) -> str:
        state = "closed" if self._group.closed else "open"
        return f"<Client {self._config.url} connections={self._config.connections} {state}>"

    @property
    def config(self) -> ClientConfig:
        """The options this client was opened with (the password stays hidden in its repr)."""
        return self._config

    async def execute(self, *args: Arg) -> Any:
        """Run one command and return its reply as the protocol gives it.

        Blocking commands (``BLPOP``, ``XREAD ... BLOCK``, ``WAIT``, ...) run on
        a dedicated connection, so they never stall the shared one. A command
        the server provably did not run (never written, or refused with
        ``LOADING`` or a full ``maxclients``) is retried up to ``retries``
        times; a written one is never resent unless ``at_least_once=True``.

        Raises:
            ResponseError: the server answered with an error.
            ConnectionLostError: the connection broke before the reply came.
            ConnectError: the server could not be reached.
            ValueError: a subscription command (``SUBSCRIBE``, ``MONITOR``...):
                use the pub/sub API for those.
            anyio.ClosedResourceError: the client is closed.
        """
        payload = encode_command(args)
        kind = command_kind(args)
        attempt = 0
        while True:
            try:
                if kind is CommandKind.SHARED:
                    connection = self._group.choose()
                    reply = await connection.call(payload, 1)
                    if type(reply) is list and connection.protocol == 3:
                        reply = _resp3_set(args, reply)
                else:
                    reply = await self._call_dedicated(args, payload, kind)
            except (TransportError, ResponseError) as exc:
                reply = exc
            # Error replies, and replies that could not be decoded, arrive as
            # exception instances in their own place.
            if not isinstance(reply, Exception):
                return reply
            delay = self._retry.delay(reply, attempt)
            if delay is None:
                raise reply
            attempt += 1
            if delay:
                await anyio.sleep(delay)

    # -- for the blocking facade (triopipe.sync) ----------------------------------

    def _execute_in_thread(self, args: tuple[Arg, ...]) -> Any:
        """:meth:`execute` for a thread other than the loop's, without the loop if it can.

        A plain command is written by the calling thread on an idle shared
        connection (``Connection.call_from_thread``). Returns
        :data:`RUN_ON_LOOP` when the loop must run it with :meth:`execute`:
        nothing was written, or the outcome is one the retry policy would
        retry (``execute`` then starts its attempts afresh).
        """
        connection = self._plain_connection(args)
        if connection is None:
            return RUN_ON_LOOP
        try:
            reply = connection.call_from_thread(encode_command(args))
        except TransportError as exc:
            reply = exc
        if reply is NOT_WRITTEN:
            return RUN_ON_LOOP
        return self._shape(args, connection, reply)

    def _start(self, args: tuple[Arg, ...], signal: Signal) -> Callable[[], Any] | None:
        """Submit a plain command now, in the loop thread, and return without waiting.

        For the blocking facade's Futures: no task per command, and commands
        submitted one after the other are queued in that order. ``signal``
        is set in the loop thread once the reply is in (or the link failed);
        then the returned *finish* gives the reply as :meth:`execute` would,
        raises its error, or returns :data:`RUN_ON_LOOP` (a retryable
        outcome: run :meth:`execute`). Returns None, submitting nothing, when
        :meth:`execute` must run it: not a plain command, no room in flight,
        or no link (starting one takes a task, which ``execute`` has).
        """
        connection = self._plain_connection(args)
        if connection is None or not connection.linked or not connection.has_capacity(1):
            return None
        request = connection.submit(encode_command(args), 1, signal=signal)
        return functools.partial(self._finish, args, connection, request)

    def _plain_connection(self, args: tuple[Arg, ...]) -> Connection | None:
        """The shared connection ``execute`` would send ``args`` on, if it is a plain command."""
        if command_kind(args) is not CommandKind.SHARED or self._group.closed:
            return None
        return self._group.choose()

    def _finish(self, args: tuple[Arg, ...], connection: Connection, request: Request) -> Any:
        error = request.error
        return self._shape(args, connection, request.value if error is None else error)

    def _shape(self, args: tuple[Arg, ...], connection: Connection, reply: Any) -> Any:
        """A reply as :meth:`execute`'s first attempt ends: returned, raised, or RUN_ON_LOOP."""
        if isinstance(reply, Exception):
            if self._retry.delay(reply, 0) is not None:
                return RUN_ON_LOOP
            raise reply
        if type(reply) is list and connection.protocol == 3:
            return _resp3_set(args, reply)
        return reply

    async def _call_dedicated(self, args: Sequence[Arg], payload: bytes, kind: CommandKind) -> Any:
        if kind is CommandKind.SUBSCRIPTION:
            raise ValueError(
                f"{command_name(args)} changes the connection's mode: use the pub/sub API "
                "(redis.subscribe) instead of execute"
            )
        async with self._group.reserve() as connection:
            return await connection.call(payload, 1)

    def batch(self) -> AbstractAsyncContextManager[Batch]:
        """Queue commands that stream to the server; replies are read at exit.

        ``b.execute(...)`` and the typed helpers on ``b`` return
        :class:`Pending` handles at once. All commands of a batch go over one
        connection, in order. Blocking and subscription commands are refused
        (they would stall the shared connection).
        """
        return batch_block(Batch(self._group.choose()))

    @asynccontextmanager
    async def subscribe(
        self, *channels: Key, patterns: Sequence[Key] = ()
    ) -> AsyncIterator[Subscription]:
        """Subscribe to channels and patterns on a dedicated connection.

        The block starts once the server has registered every channel and
        pattern; iterate the subscription for :class:`Message` objects. More
        channels can be added or removed inside the block. If the connection
        breaks, iteration raises :exc:`ConnectionLostError`.
        """
        subscription = Subscription()
        async with self._group.subscriber(subscription._on_push, subscription._on_lost) as conn:
            subscription._connection = conn
            try:
                await subscription.subscribe(*channels)
                await subscription.psubscribe(*patterns)
                yield subscription
            finally:
                subscription._close()

    @asynccontextmanager
    async def transaction(self, *watch_keys: Key) -> AsyncIterator[Transaction]:
        """``MULTI``/``EXEC`` on a reserved connection, after ``WATCH watch_keys``.

        Raises:
            WatchError: at exit, a watched key had changed; nothing was
                applied.
            ExecAbortError: at exit, a command had been refused while queued;
                nothing was applied.
        """
        async with self._group.reserve() as connection:
            transaction = Transaction(connection)
            if watch_keys:
                await transaction.now.execute("WATCH", *watch_keys)
            yield transaction
            await transaction._commit(watching=bool(watch_keys))

    async def execute_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run many commands as one pipeline and return their replies in order.

        All commands of one call go over one connection, in order. They are
        encoded and sent in windows of at most 512 commands, fewer when
        ``max_in_flight`` is small or replies are large (the connection keeps
        about 256 KiB of replies in flight at most), so the client's memory and
        the server's output buffer stay bounded whatever the input, including
        a generator of millions of commands. A call that fits in one window
        is queued atomically: all or nothing, even if cancelled. A longer one
        is atomic window by window: cancelling it sends no further window.

        Args:
            commands: argument sequences, e.g. ``[("SET", "a", 1), ("GET", "a")]``.
            raise_on_error: True: raise the first error reply once every reply
                has arrived. False: return error replies in place, as
                :class:`ResponseError` instances (and a reply that is not valid
                UTF-8 under ``decode=True`` as a :class:`UnicodeDecodeError`).
        """
        connection = self._group.choose()
        windows: deque[_Window] = deque()
        results: list[Any] = []
        try:
            for commands_window in _windows(commands, connection):
                check_pipelinable(commands_window)
                for payload, count in _requests_of(encode_each(commands_window)):
                    await self._send_window(connection, windows, results, payload, count)
            while windows:
                await self._collect(windows, connection, results)
        except BaseException:
            for window in windows:
                window.request.abandoned = True
            raise
        if raise_on_error:
            for reply in results:
                if isinstance(reply, Exception):
                    raise reply
        return results

    async def _send_window(
        self,
        connection: Connection,
        windows: deque[_Window],
        results: list[Any],
        payload: bytes,
        count: int,
    ) -> None:
        """Send one window of an ``execute_many`` call, in order, when there is room."""
        # Collect replies (oldest first): those already in (so that memory
        # holds only the windows in flight, whatever the call's length), then
        # until there is room, and before sending anything new after a
        # failure: what failed must be resent first, or nothing more is sent.
        while windows and (
            windows[0].request.done
            or windows[-1].request.error is not None
            or not connection.has_capacity(count)
        ):
            await self._collect(windows, connection, results)
        if windows:
            pass
        elif connection.has_capacity(count):
            await connection.checkpoint_if_cancelled()
        else:  # other callers fill the connection
            await connection.wait_for_capacity(count)
        windows.append(_Window(connection.submit(payload, count), payload, count))
        if count >= connection.window or len(payload) >= _REQUEST_BYTES:
            # Let the sender write this window while the next is built.
            await anyio.lowlevel.checkpoint()

    async def _collect(
        self, windows: deque[_Window], connection: Connection, results: list[Any]
    ) -> None:
        """Wait for the oldest window's replies; on a retryable failure resend it.

        A window fails when its link breaks, and then so did every window
        sent after it on that link: all of them are resent, in order, or the
        failure is raised.
        """
        head = windows[0]
        try:
            replies = await Connection.wait(head.request)
        except (TransportError, ResponseError) as exc:
            delay = self._retry.delay(exc, head.attempts)
            if delay is None:
                raise
            if delay:
                await anyio.sleep(delay)
            for window in windows:
                window.attempts += 1
                window.request = connection.submit(window.payload, window.count)
            return
        windows.popleft()
        if head.request.replies is None:
            replies = [replies]
        # Share the common short replies (+OK for a SET, ...): ten million of
        # them cost one object, not ten million.
        shared = _SHARED_REPLIES.get
        results += [
            shared(reply, reply) if type(reply) is bytes and len(reply) <= 4 else reply
            for reply in replies
        ]

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
        if command.transform is None:
            # The reply is the result: no coroutine of our own around it.
            result: Awaitable[T] = self.execute(*command.args)
            return result
        return run_command(self.execute, command)


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


def _requests_of(parts: list[bytes]) -> Iterator[tuple[bytes, int]]:
    """Group encoded commands into requests of at most ``_REQUEST_BYTES`` (but one command)."""
    total = sum(map(len, parts))
    if total <= _REQUEST_BYTES:
        yield b"".join(parts), len(parts)
        return
    chunk: list[bytes] = []
    size = 0
    for part in parts:
        if chunk and size + len(part) > _REQUEST_BYTES:
            yield b"".join(chunk), len(chunk)
            chunk, size = [], 0
        chunk.append(part)
        size += len(part)
    if chunk:
        yield b"".join(chunk), len(chunk)


class _Window:
    """One window of an ``execute_many`` call: what was sent, to send it again."""

    __slots__ = ("attempts", "count", "payload", "request")

    def __init__(self, request: Request, payload: bytes, count: int) -> None:
        self.request = request
        self.payload = payload
        self.count = count
        self.attempts = 0


def _windows(
    commands: Iterable[Sequence[Arg]], connection: Connection
) -> Iterator[list[Sequence[Arg]]]:
    """Cut ``commands`` into windows of the connection's current window size."""
    iterator = iter(commands)
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
    async with _connection_group(config) as group:
        yield Client(group)


@asynccontextmanager
async def _connection_group(config: ClientConfig) -> AsyncIterator[ConnectionGroup]:
    """A connected group whose tasks live in a task group of its own."""
    async with background_task_group() as task_group:
        group = ConnectionGroup(config, task_group)
        try:
            await group.connect()
            yield group
        finally:
            group.close()
