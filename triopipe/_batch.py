"""Batches and transactions: commands queued at once, replies awaited at exit.

Theory of operation
-------------------

A :class:`Batch` sends every command over one connection, in the order they
were added. Adding a command is synchronous and returns a :class:`Pending` at
once. A command triopipe's table lacks (a module's) cannot be classed without
asking the server, which adding cannot wait for: it is *held*, with every
command after it, and at exit the batch asks (``COMMAND INFO``) and sends the
held commands on the same connection, in order, or refuses them.

The batch keeps one *open* request: while that request still waits in the
connection's send queue, each new command is appended to it; once the
sender has taken it (the block awaited something, so the sender ran), the
next command opens a new request. Commands therefore stream to the server
whenever the block yields, in as few requests as there were sender drains,
and the replies are collected when the block exits.

If the block raises or is cancelled, every request of the batch is abandoned:
those not yet written are never sent, the replies of those written are read
and dropped by the connection. The connection stays in step.

A :class:`Transaction` buffers its commands instead (they must sit between
``MULTI`` and ``EXEC``) and sends ``MULTI``, the commands and ``EXEC`` as one
request at exit, on a connection reserved for it, after ``WATCH`` if keys
were named. Its ``now`` attribute runs commands at once on that connection,
for the reads an optimistic transaction decides on.

Both are their own async context managers: entering gives the batch (a
transaction sends its ``WATCH`` first), leaving normally collects the
replies (a transaction commits), leaving with an exception abandons.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from ._backend import Signal
from ._commands import Arg, Command, Commands, Key, run_command
from ._connection import Connection
from ._exceptions import (
    CommandNotAllowedError,
    ConnectError,
    ConnectionLostError,
    ExecAbortError,
    ResponseError,
    WatchError,
)
from ._learn import learn_commands
from ._pipeline import Request
from ._resp import encode_command, encode_commands
from ._routing import CommandClass, command_class, command_name, refusal, unknown_commands

__all__ = [
    "Batch",
    "BatchBlock",
    "Pending",
    "Transaction",
    "check_pinned",
    "observed",
    "outcome",
]

T = TypeVar("T")
_UNSET: Any = object()


class BatchBlock:
    """The life of every facade's ``batch()`` block, for the batch classes to inherit.

    The block queues commands; if it raises or is cancelled the batch is
    abandoned (unsent commands never go out, written ones' replies are
    dropped); otherwise the replies are collected when it exits
    (:meth:`finish`).
    """

    __slots__ = ()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if exc_info[0] is not None:
            self.abandon()
            return
        await self.finish()

    def abandon(self) -> None:
        """Send nothing more; the replies of what was written are dropped."""
        raise NotImplementedError

    async def finish(self) -> None:
        """Wait for every reply and resolve the pendings; raise the first failure."""
        raise NotImplementedError


class Pending(Generic[T]):
    """The future reply of a command queued in a batch or transaction.

    :meth:`result` gives it once the block has exited.
    """

    __slots__ = ("_transform", "_value")

    def __init__(self, transform: Callable[[Any], T] | None = None) -> None:
        self._transform = transform
        self._value: Any = _UNSET

    def __repr__(self) -> str:
        if self._value is _UNSET:
            return "<Pending: no reply yet>"
        return f"<Pending: {self._value!r}>"

    def done(self) -> bool:
        """Whether the reply (or its error) is known."""
        return self._value is not _UNSET

    def result(self) -> T:
        """The reply; raises its :class:`ResponseError` if it was an error reply.

        Raises:
            RuntimeError: the block has not exited yet, or exited without this
                command's reply (it raised or was cancelled first).
        """
        value = self._value
        if value is _UNSET:
            raise RuntimeError(
                "no reply yet: Pending.result() is available once the block has exited"
            )
        if isinstance(value, BaseException):
            # One exception may be shared by the pendings of a failed request:
            # start each raise afresh instead of piling tracebacks onto it.
            raise value.with_traceback(None)
        result: T = value
        return result

    def resolve(self, reply: Any) -> None:
        """Give the handle its reply, or its error as an exception instance.

        For the batch that made the handle; the reply is shaped as the
        helper that queued the command says.
        """
        transform = self._transform
        if transform is not None and not isinstance(reply, BaseException):
            reply = transform(reply)
        self._value = reply


def check_pinned(args: Sequence[Arg]) -> None:
    """Refuse a command a batch may not hold: it shares a connection, pinned to the batch.

    Shared commands and ``WAIT``/``WAITAOF`` (about the batch's writes) may.

    Raises:
        CommandNotAllowedError: a blocking, subscription or connection-state
            command, or one triopipe's table lacks that no client asked the
            server about yet.
    """
    if command_class(args) is not CommandClass.SHARED:
        error = refusal(args, "pinned")
        if error is not None:
            raise error


def _check_transaction(args: Sequence[Arg]) -> None:
    """Refuse a command that cannot run between ``MULTI`` and ``EXEC``.

    Blocking commands may (the server runs them without blocking there);
    subscription and connection-state commands may not.
    """
    if command_class(args) is not CommandClass.BLOCKING:
        check_pinned(args)


def outcome(pending: Pending[Any]) -> Any:
    """A settled pending's reply, or its error as a value."""
    try:
        return pending.result()
    except Exception as exc:  # errors are values here
        return exc


async def observed(
    connection: Connection, name: str, count: int, work: Callable[[], Awaitable[None]]
) -> None:
    """Run ``work`` as one operation of ``count`` commands that the client's observer sees."""
    observer = connection.observer
    observation = None if observer is None else observer.command(connection.address, name, count)
    if observation is None:
        await work()
        return
    try:
        await work()
    except BaseException as exc:
        observation.end(exc)
        raise
    observation.end(None)


class Batch(BatchBlock, Commands):
    """Commands sent as they are added; replies collected when the block exits.

    Made by ``Client.batch()``; use it as ``async with redis.batch() as b:``.
    """

    __slots__ = (
        "_connection",
        "_down",
        "_finished",
        "_held",
        "_open",
        "_pendings",
        "_requests",
    )

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._pendings: list[Pending[Any]] = []
        self._requests: list[Request[Signal]] = []
        self._open: Request[Signal] | None = None
        # Commands held until exit: from the first one the table lacks on.
        self._held: list[Sequence[Arg]] | None = None
        # The server could not be reached: nothing more is sent.
        self._down: BaseException | None = None
        self._finished = False

    def __len__(self) -> int:
        return len(self._pendings)

    def execute(self, *args: Arg) -> Pending[Any]:
        """Queue any command; returns its :class:`Pending` at once.

        Raises:
            CommandNotAllowedError: a blocking, subscription or
                connection-state command (nothing is queued).
        """
        return self._add(args, None)

    def _dispatch(self, command: Command[T], /) -> Pending[T]:
        return self._add(command.args, command.transform)

    def _add(self, args: Sequence[Arg], transform: Callable[[Any], T] | None) -> Pending[T]:
        if self._finished:
            raise RuntimeError("this batch's block has exited: start a new batch")
        held = self._held
        if held is None:
            kind = command_class(args)
            if kind is CommandClass.SHARED:
                return self._queue(encode_command(args), transform)
            if kind is not CommandClass.UNKNOWN:
                check_pinned(args)
                return self._queue(encode_command(args), transform)
            held = self._held = []
        encode_command(args)  # reject bad arguments now, not at exit
        held.append(args)
        pending: Pending[T] = Pending(transform)
        self._pendings.append(pending)
        return pending

    def _queue(self, payload: bytes, transform: Callable[[Any], T] | None) -> Pending[T]:
        connection = self._connection
        request = self._open
        pending: Pending[T] = Pending(transform)
        self._pendings.append(pending)
        if self._down is not None or (request is not None and request.error is not None):
            # The connection broke under this batch: its commands run in
            # order or not at all, so nothing more is sent.
            pending.resolve(
                ConnectionLostError("not sent: an earlier command of the batch failed", sent=False)
            )
            return pending
        if request is None or not connection.extend(request, payload):
            try:
                request = self._open = connection.submit(payload, 1, many=True)
            except ConnectError as exc:  # the server is down: fail now, raise at exit
                self._down = exc
                pending.resolve(exc)
                return pending
            self._requests.append(request)
        return pending

    async def finish(self) -> None:
        """Wait for every reply and resolve the pendings, in order.

        A request that failed (its connection broke) resolves its own commands
        with its own error, so ``ConnectionLostError.sent`` is exact for each;
        the first such error is raised once every request is settled. An
        observer sees the batch as one ``PIPELINE`` operation.
        """
        await observed(self._connection, "PIPELINE", len(self._pendings), self._finish)

    async def _finish(self) -> None:
        self._finished = True
        pendings = iter(self._pendings)
        failure: BaseException | None = None
        try:
            for request in self._requests:
                try:
                    replies = await Connection.wait(request)
                except Exception as exc:
                    failure = failure or exc
                    for _ in range(request.count):
                        next(pendings).resolve(exc)
                    continue
                for reply in replies:
                    next(pendings).resolve(reply)
            if self._held is not None and failure is None:
                try:
                    await self._send_held(pendings)
                except CommandNotAllowedError as exc:
                    failure = exc
        except BaseException:
            self.abandon()
            raise
        for pending in pendings:  # held commands that were not sent
            if not pending.done():
                pending.resolve(
                    ConnectionLostError(
                        "not sent: an earlier command of the batch failed", sent=False
                    )
                )
        failure = failure or self._down
        if failure is not None:
            raise failure

    async def _send_held(self, pendings: Iterator[Pending[Any]]) -> None:
        """Ask the server about the held commands, then send them, or refuse them all."""
        held = self._held
        assert held is not None
        self._held = None
        connection = self._connection

        async def execute(*args: Arg) -> Any:
            reply = await connection.call(encode_command(args), 1)
            if isinstance(reply, Exception):
                raise reply
            return reply

        await learn_commands(execute, unknown_commands(held))
        for args in held:
            check_pinned(args)  # raises: the held commands are not sent
        count = len(held)
        if not connection.has_room(count):
            await connection.wait_for_room(count)
        request = connection.submit(encode_commands(held), count, many=True)
        for reply in await Connection.wait(request):
            next(pendings).resolve(reply)

    def abandon(self) -> None:
        """Send nothing more; the replies of what was written are dropped."""
        self._finished = True
        for request in self._requests:
            request.abandoned = True


# Connection-state commands a transaction's immediate commands may send.
_IMMEDIATE_STATE_COMMANDS = frozenset({"WATCH", "UNWATCH"})


class _Immediate(Commands):
    """Runs commands at once on a transaction's reserved connection."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def execute(self, *args: Arg) -> Any:
        """Run one command now and return its reply (errors raise).

        The connection is the transaction's alone: ``WATCH``/``UNWATCH`` and
        blocking commands may run here; ``MULTI`` and the like may not (the
        transaction sends them itself).
        """
        if command_name(args) not in _IMMEDIATE_STATE_COMMANDS:
            _check_transaction(args)
        reply = await self._connection.call(encode_command(args), 1)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _dispatch(self, command: Command[T], /) -> Awaitable[T]:
        return run_command(self.execute, command)


class Transaction(Commands):
    """``MULTI``/``EXEC`` (after ``WATCH``) on a reserved connection.

    Made by ``Client.transaction(*watch_keys)``. Commands added in the block
    return :class:`Pending` handles and are sent together at exit. At exit:

    - a watched key changed: nothing was applied; :class:`WatchError` raises
      (and every pending holds it);
    - a command was refused while queueing: nothing was applied;
      :class:`ExecAbortError` raises; the refused command's pending holds its
      own error, the others the ``ExecAbortError``;
    - otherwise every command ran; each pending holds its reply, or the error
      that command alone got while executing.

    ``tx.now`` runs commands immediately on the reserved connection (after
    ``WATCH``), e.g. ``balance = await tx.now.get("balance")``.
    """

    __slots__ = ("_commands", "_connection", "_pendings", "_watch_keys", "now")

    def __init__(self, connection: Connection, watch_keys: Sequence[Key] = ()) -> None:
        self._connection = connection
        self._watch_keys = tuple(watch_keys)
        self._commands: list[Sequence[Arg]] = []
        self._pendings: list[Pending[Any]] = []
        self.now = _Immediate(connection)

    async def __aenter__(self) -> Transaction:
        if self._watch_keys:
            await self.now.execute("WATCH", *self._watch_keys)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        # A block that raised commits nothing; its connection, in an unknown
        # state (keys still watched), is closed by whoever lent it.
        if exc_info[0] is None:
            await self.commit()

    def __len__(self) -> int:
        return len(self._pendings)

    def execute(self, *args: Arg) -> Pending[Any]:
        """Queue any command for the transaction; returns its :class:`Pending`."""
        return self._queue(args, None)

    def _dispatch(self, command: Command[T], /) -> Pending[T]:
        return self._queue(command.args, command.transform)

    def _queue(self, args: Sequence[Arg], transform: Callable[[Any], T] | None) -> Pending[T]:
        if not args:
            raise ValueError("empty command")
        if command_class(args) is not CommandClass.UNKNOWN:  # those are asked about at exit
            _check_transaction(args)
        encode_command(args)  # reject bad arguments now, not at exit
        self._commands.append(args)
        pending: Pending[T] = Pending(transform)
        self._pendings.append(pending)
        return pending

    async def commit(self) -> None:
        """Send ``MULTI``, the commands and ``EXEC``; resolve every pending (what exit does).

        An observer sees the transaction as one ``MULTI`` operation.
        """
        if not self._commands:
            if self._watch_keys:
                await self.now.execute("UNWATCH")
            return
        await observed(self._connection, "MULTI", len(self._commands), self._commit)

    async def _commit(self) -> None:
        connection = self._connection
        unknown = unknown_commands(self._commands)
        if unknown:
            await learn_commands(self.now.execute, unknown)
            for args in self._commands:
                _check_transaction(args)
        payload = encode_commands([("MULTI",), *self._commands, ("EXEC",)])
        count = len(self._commands) + 2
        if not connection.has_room(count):
            await connection.wait_for_room(count)
        replies = await Connection.wait(connection.submit(payload, count, many=True))
        multi, queued, result = replies[0], replies[1:-1], replies[-1]
        if isinstance(multi, ResponseError):
            raise multi
        if result is None:
            self._fail_all(WatchError())
        if isinstance(result, ResponseError):
            if isinstance(result, ExecAbortError):
                for pending, reply in zip(self._pendings, queued, strict=True):
                    pending.resolve(reply if isinstance(reply, ResponseError) else result)
            raise result
        for pending, reply in zip(self._pendings, result, strict=True):
            pending.resolve(reply)

    def _fail_all(self, error: ResponseError) -> None:
        for pending in self._pendings:
            pending.resolve(error)
        raise error
