"""Async blocks driven from threads: the blocking facade's subscriptions, transactions, consumers.

Theory of operation
-------------------

A subscription, a transaction or a stream consumer is an async context
manager of the async client. The blocking facade cannot enter it in one
loop task and leave it in another (an anyio cancel scope or a trio nursery
inside it must be left by the task that entered it), so a :class:`_Block`
block gets one *hold task* of its own in the loop: it enters the block,
hands the value to the calling thread, waits to be told to leave (with the
thread's exception, if its ``with`` body raised, so that a transaction
commits nothing) and leaves. Every other call (a subscription's
``subscribe``, a transaction's ``tx.now.get``) goes to the loop thread as a
call of its own.

Iteration (:class:`_Iteration`) asks the loop for one item at a time, with
an optional timeout: a wait that times out keeps the fetch running, and the
next ``get`` takes its item, so nothing is lost to a timeout. Leaving the
block cancels a fetch still under way first.

When the client itself closes while a block is still held (its thread never
left it), the loop tells every held block to leave with
:class:`anyio.ClosedResourceError`, so the loop's shutdown never waits for a
thread that will not come back.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, suppress
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from ._batch import Pending
from ._commands import Arg, Command, Commands, Key
from ._consumer import EntryData, StreamConsumer, StreamEntry

__all__ = [
    "Blocks",
    "Submit",
    "SyncImmediate",
    "SyncStreamConsumer",
    "SyncStreamEntry",
    "SyncSubscription",
    "SyncTransaction",
    "call_sync",
    "wait",
]

T = TypeVar("T")
V = TypeVar("V")

# How the facade hands a coroutine function and its arguments to the loop thread.
Submit = Callable[[Callable[..., Awaitable[Any]], tuple[Any, ...]], "Future[Any]"]


async def call_sync(function: Callable[[], T]) -> T:
    """Run a plain function in the loop thread (through ``Submit``)."""
    return function()


def wait(future: Future[T], timeout: float | None) -> T:
    """The Future's result; an interrupted wait withdraws the command if it is not sent yet.

    Raises:
        TimeoutError: no result within ``timeout`` seconds (a command already
            sent is not withdrawn: its reply is dropped when it comes).
    """
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


class Blocks:
    """The blocks a client's threads hold open; all told to leave when the client closes.

    Used in the loop thread only.
    """

    def __init__(self) -> None:
        self._held: set[_Block[Any]] = set()
        self._closed = False

    def add(self, block: _Block[Any]) -> None:
        """Count ``block`` as held, unless the client is closing.

        Raises:
            anyio.ClosedResourceError: the client is closing (a block whose
                hold task starts only now would wait for a leave that never
                comes).
        """
        if self._closed:
            raise anyio.ClosedResourceError("the blocking client was closed")
        self._held.add(block)

    def discard(self, block: _Block[Any]) -> None:
        self._held.discard(block)

    def release_all(self) -> None:
        """Tell every held block to leave, and refuse new ones: the client is closing."""
        self._closed = True
        for block in list(self._held):
            block.release(anyio.ClosedResourceError("the blocking client was closed"))


class _Block(Generic[V]):
    """An async context manager entered and left by one hold task of the loop.

    The base of the facade's blocks: entering and leaving, and calls of the
    block's own methods through the loop.
    """

    def __init__(
        self,
        submit: Submit,
        blocks: Blocks,
        open_block: Callable[[], AbstractAsyncContextManager[V]],
        timeout: float | None,
    ) -> None:
        self._submit = submit
        self._blocks = blocks
        self._open_block = open_block
        self._timeout = timeout
        self._entered: Future[V] = Future()
        self._done: Future[Any] | None = None
        self._leave: anyio.Event | None = None
        self._exc_info: tuple[Any, Any, Any] = (None, None, None)
        self._abandoned = False

    def _enter_block(self) -> V:
        """Enter the block in the loop; its value (blocking).

        Raises:
            TimeoutError: it did not start within the client's ``timeout``
                (a transaction waiting for a dedicated connection...); the
                loop leaves it as soon as it has started, if it ever does.
        """
        self._done = done = self._submit(self._hold, ())
        try:
            finished, _ = concurrent.futures.wait(
                [self._entered, done], self._timeout, return_when="FIRST_COMPLETED"
            )
            if not finished:
                raise TimeoutError(f"the block did not start within {self._timeout} seconds")
        except BaseException:
            with suppress(anyio.ClosedResourceError):  # closed: the loop lets it go anyway
                self._submit(call_sync, (self._abandon,))
            raise
        if not self._entered.done():
            done.result()  # raises what entering raised
        return self._entered.result()

    def _abandon(self) -> None:
        """The thread gave up waiting: leave once started (loop thread only)."""
        self._abandoned = True
        self.release(TimeoutError("the thread stopped waiting for the block to start"))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Leave the block in the loop, with the thread's exception if any (blocking).

        Raises:
            What leaving raised (a transaction's ``WatchError``...).
        """
        if self._done is None:
            return
        with suppress(anyio.ClosedResourceError):  # the client closed: it left already
            wait(self._submit(call_sync, (lambda: self.release(exc),)), self._timeout)
        self._done.result()

    def release(self, exc: BaseException | None) -> None:
        """Make the hold task leave (loop thread only; a second call does nothing)."""
        leave = self._leave
        if leave is None or leave.is_set():
            return
        if exc is not None:
            self._exc_info = (type(exc), exc, exc.__traceback__)
        self._on_release(exc)
        leave.set()

    def _on_release(self, exc: BaseException | None) -> None:
        """What to do in the loop thread just before leaving."""

    def _call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        future: Future[T] = self._submit(function, args)
        return wait(future, self._timeout)

    async def _hold(self) -> None:
        if self._abandoned:
            return
        self._leave = anyio.Event()
        self._blocks.add(self)  # raises if the client is closing
        try:
            # Made here: an async block's parts (events, channels) belong to the loop.
            manager = self._open_block()
            value = await manager.__aenter__()
            self._entered.set_result(value)
            await self._leave.wait()
            await manager.__aexit__(*self._exc_info)
        finally:
            self._blocks.discard(self)


class _Iteration:
    """The items of an async iterator, fetched by the loop one at a time for the threads."""

    def __init__(self, submit: Submit, iterator: AsyncIterator[Any]) -> None:
        self._submit = submit
        self._iterator = iterator
        self._lock = threading.Lock()
        self._pending: Future[Any] | None = None
        self._scope: anyio.CancelScope | None = None
        self._stopped = False
        # Why the iteration was stopped, for a fetch under way (None: it ends).
        self._reason: BaseException | None = None

    def get(self, timeout: float | None) -> Any:
        """The next item, waiting at most ``timeout`` seconds (None: as long as it takes).

        Raises:
            TimeoutError: no item within ``timeout``; the fetch goes on, and
                the next call gets its item.
            StopIteration: the iteration ended.
        """
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError("another thread is waiting for this iteration's next item")
        try:
            pending = self._pending
            if pending is None:
                pending = self._pending = self._submit(self._next, ())
            try:
                item = pending.result(timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"no item within {timeout} seconds") from None
            except StopAsyncIteration:
                self._pending = None
                raise StopIteration from None
            except BaseException:
                # The fetch's own error ends it; an interrupted wait (Ctrl-C)
                # leaves it running, and the next call takes its item.
                if pending.done():
                    self._pending = None
                raise
            self._pending = None
            return item
        finally:
            self._lock.release()

    async def _next(self) -> Any:
        if not self._stopped:
            with anyio.CancelScope() as scope:
                self._scope = scope
                try:
                    return await self._iterator.__anext__()
                finally:
                    self._scope = None
        # Stopped, before or while it waited.
        if self._reason is not None:
            raise self._reason
        raise StopAsyncIteration

    def stop(self, reason: BaseException | None) -> None:
        """End the iteration; a fetch under way raises ``reason`` (loop thread only)."""
        self._stopped = True
        self._reason = reason
        if self._scope is not None:
            self._scope.cancel()


class _IterableBlock(_Block[V]):
    """A block whose value is iterated: what subscriptions and consumers share."""

    _iteration: _Iteration | None = None

    def _enter(self) -> V:
        value = self._enter_block()
        self._iteration = _Iteration(self._submit, value)  # type: ignore[arg-type]
        return value

    def _on_release(self, exc: BaseException | None) -> None:
        if self._iteration is not None:
            self._iteration.stop(exc)

    def _get(self, timeout: float | None) -> Any:
        if self._iteration is None:
            raise RuntimeError("use it in a with block first")
        return self._iteration.get(timeout)


class SyncSubscription(_IterableBlock[Any]):
    """A subscription of the blocking client; iterate it for messages (blocking).

    Made by :meth:`SyncClient.subscribe <triopipe.sync.SyncClient.subscribe>`
    as a ``with`` block. Iterating yields what the async
    :class:`~triopipe.Subscription` yields (:class:`~triopipe.Message`
    objects), waiting as long as it takes; :meth:`get` waits at most
    ``timeout`` seconds. Every method may be called from any thread; one
    thread at a time waits for the next message.
    """

    def __enter__(self) -> SyncSubscription:
        self._subscription = self._enter()
        return self

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self._get(None)

    def get(self, timeout: float | None = None) -> Any:
        """The next message, waiting at most ``timeout`` seconds (None: as long as it takes).

        Raises:
            TimeoutError: none came in time; a message arriving later is kept
                for the next call.
        """
        return self._get(timeout)

    def subscribe(self, *channels: Key) -> None:
        """Subscribe to more channels; returns once the server has registered them."""
        self._call(self._subscription.subscribe, *channels)

    def psubscribe(self, *patterns: Key) -> None:
        """Subscribe to more glob-style patterns."""
        self._call(self._subscription.psubscribe, *patterns)

    def unsubscribe(self, *channels: Key) -> None:
        """Unsubscribe from channels."""
        self._call(self._subscription.unsubscribe, *channels)

    def punsubscribe(self, *patterns: Key) -> None:
        """Unsubscribe from patterns."""
        self._call(self._subscription.punsubscribe, *patterns)

    @property
    def channels(self) -> set[Any]:
        """The channels subscribed to (a copy, taken in the loop thread)."""
        return self._call(call_sync, lambda: set(self._subscription.channels))

    @property
    def patterns(self) -> set[Any]:
        """The patterns subscribed to (a copy, taken in the loop thread)."""
        return self._call(call_sync, lambda: set(self._subscription.patterns))


@dataclasses.dataclass(frozen=True, eq=False)
class SyncStreamEntry(EntryData):
    """A stream entry given by a :class:`SyncStreamConsumer`: ``id``, ``fields``, ``stream``."""

    _consumer: SyncStreamConsumer = dataclasses.field(repr=False)

    def ack(self) -> None:
        """Acknowledge the entry (batched, as :meth:`triopipe.StreamConsumer.ack`)."""
        self._consumer.ack(self.id)


class SyncStreamConsumer(_IterableBlock[StreamConsumer]):
    """A consumer of a stream's group for the blocking client; iterate it for entries.

    Made by :meth:`SyncClient.stream_consumer
    <triopipe.sync.SyncClient.stream_consumer>` as a ``with`` block; it
    drives a :class:`~triopipe.StreamConsumer` (same options, same
    at-least-once delivery). Iterating yields :class:`SyncStreamEntry`
    objects, whose ``ack()`` blocks; :meth:`get` waits at most ``timeout``
    seconds.
    """

    def __enter__(self) -> SyncStreamConsumer:
        self._consumer = self._enter()
        return self

    def __iter__(self) -> Iterator[SyncStreamEntry]:
        return self

    def __next__(self) -> SyncStreamEntry:
        return self._entry(self._get(None))

    def get(self, timeout: float | None = None) -> SyncStreamEntry:
        """The next entry, waiting at most ``timeout`` seconds (None: as long as it takes).

        Raises:
            TimeoutError: none came in time; an entry read later is kept for
                the next call.
        """
        return self._entry(self._get(timeout))

    def ack(self, *ids: Any) -> None:
        """Acknowledge entries by id (batched, as :meth:`triopipe.StreamConsumer.ack`)."""
        self._call(self._consumer.ack, *ids)

    def flush(self) -> None:
        """Send the recorded acknowledgements now (one ``XACK``)."""
        self._call(self._consumer.flush)

    def _entry(self, entry: StreamEntry) -> SyncStreamEntry:
        return SyncStreamEntry(entry.id, entry.fields, entry.stream, self)


class SyncImmediate(Commands):
    """``tx.now`` of a :class:`SyncTransaction`: commands run at once, blocking.

    ``execute`` and every typed helper run the command on the transaction's
    connection and return its reply (``tx.now.get("balance")``).
    """

    __slots__ = ("_now", "_submit", "_timeout")

    def __init__(self, now: Any, submit: Submit, timeout: float | None) -> None:
        self._now = now
        self._submit = submit
        self._timeout = timeout

    def execute(self, *args: Arg) -> Any:
        """Run one command now on the transaction's connection and return its reply."""
        return wait(self._submit(self._now.execute, args), self._timeout)

    def _dispatch(self, command: Command[T], /) -> T:
        future: Future[T] = self._submit(self._now._dispatch, (command,))
        return wait(future, self._timeout)


class SyncTransaction(_Block[Any], Commands):
    """``MULTI``/``EXEC`` of the blocking client, as a ``with`` block.

    Made by :meth:`SyncClient.transaction <triopipe.sync.SyncClient.transaction>`.
    Commands added in the block (``tx.execute(...)``, the typed helpers)
    return :class:`~triopipe.Pending` handles at once and are sent together
    when the block exits, as in :class:`~triopipe.Transaction`: a changed
    watched key raises :class:`~triopipe.WatchError` at exit and nothing is
    applied; a block that raises commits nothing. ``tx.now`` runs commands
    at once on the transaction's connection (``tx.now.get("balance")``).
    A transaction belongs to the thread that opened it.
    """

    _transaction: Any = None
    _now: SyncImmediate | None = None

    def __enter__(self) -> SyncTransaction:
        self._transaction = self._enter_block()
        return self

    def __len__(self) -> int:
        return len(self._open())

    @property
    def now(self) -> SyncImmediate:
        """Runs commands at once on the transaction's connection (after ``WATCH``)."""
        if self._now is None:
            self._now = SyncImmediate(self._open().now, self._submit, self._timeout)
        return self._now

    def execute(self, *args: Arg) -> Pending[Any]:
        """Queue any command for the transaction; returns its :class:`~triopipe.Pending`."""
        pending: Pending[Any] = self._open().execute(*args)
        return pending

    def _dispatch(self, command: Command[T], /) -> Pending[T]:
        # Queueing only appends to the transaction's own lists, which the loop
        # thread reads only when the block exits: safe from this thread.
        pending: Pending[T] = self._open()._dispatch(command)
        return pending

    def _open(self) -> Any:
        if self._transaction is None:
            raise RuntimeError("use the transaction in a with block")
        return self._transaction
