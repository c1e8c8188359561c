"""The blocking facade: the async client on an event loop in a background thread.

Theory of operation
-------------------

``open_client``, ``open_sharded_client`` and ``open_cluster_client`` share
one path (:func:`_open`): start an event loop in a new thread (anyio's
blocking portal), and in it a *serve* task that opens the async client and a
place for command tasks (an asyncio task set or a trio nursery).

A *blocking* call on a plain command first tries the direct path: the async
client's one cross-thread hook, ``direct_route(args)``
(:class:`~triopipe._protocols.DirectRoute`), names the connection its
``execute`` would use, and the calling thread encodes the command and, if
that connection is idle, writes it to the socket itself; the loop thread's
receiver reads the reply and wakes the caller (``Connection.call_from_thread``
explains how the two threads share the socket's writes safely). That saves
the hand-off to the loop thread, which otherwise costs as much as the round
trip. Anything else (a busy or
broken connection, TLS, blocking commands, several shards, a redirect, an
outcome to retry) goes through the loop as below, as does every call of a
thread that still has an unfinished Future: its commands must not overtake
its own earlier ones.

Everything else is handed to the loop thread through a :class:`_Submitter`:

- ``submit`` appends ``(future, function, args)`` to a list under a lock
  and, unless a *drain* is already scheduled, schedules one with the loop's
  own thread-safe callback (``call_soon_threadsafe`` / ``run_sync_soon``).
  Everything submitted while the loop is busy shares that one wake-up.
- The drain, in the loop thread, takes the whole list and, for each item,
  marks the Future running (``set_running_or_notify_cancel``). A plain
  command is then submitted to its connection at once, in list order, with a
  :class:`_Completion` as its signal, which completes the Future when the
  reply is read: no task per command (``direct_route`` again names the
  connection). Other calls, and commands without a direct route, get a
  native task that awaits
  ``function(*args)`` on the async client and completes the Future. A Future
  cancelled before that point is skipped: its command is never sent. From
  then on ``cancel()`` returns False, as for any running
  ``concurrent.futures.Future``, because the command may already be on the
  wire. So ``cancel()`` returning True means "never sent".

Subscriptions, transactions and stream consumers are async blocks: each is
entered and left by one task of its own in the loop, and driven from the
calling thread (``_sync_blocks`` explains how).

anyio's portal is used to start and stop the loop, not per command: its
``start_task_soon`` costs a task group spawn and a cancel scope per call.

Shutdown (leaving the ``with`` block, also on an exception or
KeyboardInterrupt): the submitter closes first (new calls raise
``anyio.ClosedResourceError``; Futures not yet picked up fail with it, never
sent); then the serve task leaves the async client's block, which fails every
command in flight with ``ConnectionLostError`` (``sent`` telling whether it
was written); the command tasks end at once, the serve task waits for them,
the loop stops and its thread is joined. The body's exception is never thrown
into the loop.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from concurrent.futures import Future
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    suppress,
)
from typing import Any, TypeVar

import anyio
import anyio.abc
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._backend import current_backend
from ._batch import Pending, outcome
from ._client import execute_reply
from ._client import open_client as open_async_client
from ._cluster import open_cluster_client as open_async_cluster_client
from ._commands import Arg, Command, Commands, Key
from ._config import DEFAULT_URL
from ._consumer import ConsumerOptions, StreamConsumer
from ._exceptions import NoScriptError
from ._pipeline import Request
from ._protocols import AsyncClient, DirectRoute
from ._resp import encode_command
from ._scripts import ScriptSource
from ._sentinel import open_sentinel_client as open_async_sentinel_client
from ._sharded import open_sharded_client as open_async_sharded_client
from ._sync_blocks import (
    Blocks,
    SyncImmediate,
    SyncStreamConsumer,
    SyncStreamEntry,
    SyncSubscription,
    SyncTransaction,
)
from ._sync_blocks import call_sync as _call_sync
from ._sync_blocks import wait as _wait

__all__ = [
    "SyncBatch",
    "SyncClient",
    "SyncImmediate",
    "SyncScript",
    "SyncStreamConsumer",
    "SyncStreamEntry",
    "SyncSubscription",
    "SyncTransaction",
    "open_client",
    "open_cluster_client",
    "open_sentinel_client",
    "open_sharded_client",
]

T = TypeVar("T")

_CLOSED_MESSAGE = "the blocking client was closed before this command was sent"


class _ThroughLoop:
    __slots__ = ()

    def __repr__(self) -> str:
        return "THROUGH_LOOP"


# What the direct path gives when the loop's execute must run the command: it
# was not written, or its outcome is one execute would retry.
_THROUGH_LOOP: Any = _ThroughLoop()


def _direct_result(route: DirectRoute, args: tuple[Arg, ...], outcome: Any) -> Any:
    """A directly sent command's outcome as ``execute`` gives it, or ``_THROUGH_LOOP``."""
    if isinstance(outcome, Exception):
        if route.retryable(outcome):
            return _THROUGH_LOOP  # execute runs its whole policy afresh
        raise outcome
    return execute_reply(args, outcome, route.connection.protocol)


# A call for the loop thread: its Future, and the coroutine function to run
# with its arguments, or None for a plain command (the arguments of execute).
_Item = tuple["Future[Any]", Callable[..., Awaitable[Any]] | None, tuple[Any, ...]]


class _Submitter:
    """Hands calls from any thread to the loop thread; see the module docstring."""

    __slots__ = (
        "_call_soon",
        "_client",
        "_closed",
        "_items",
        "_lock",
        "_scheduled",
        "_spawn",
        "blocks",
    )

    def __init__(
        self,
        client: AsyncClient,
        call_soon: Callable[[Callable[[], object]], object],
        spawn: Callable[..., object],
    ) -> None:
        self._client = client
        self._call_soon = call_soon
        self._spawn = spawn
        self._lock = threading.Lock()
        self._items: list[_Item] = []
        self._scheduled = False
        self._closed = False
        # Async blocks held open for threads (subscriptions, transactions...).
        self.blocks = Blocks()

    def submit(
        self, function: Callable[..., Awaitable[T]] | None, args: tuple[Any, ...]
    ) -> Future[T]:
        """Queue ``function(*args)`` (None: the plain command ``args``) for the loop thread."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise anyio.ClosedResourceError
            self._items.append((future, function, args))
            if not self._scheduled:
                # Under the lock, so that close() cannot stop the loop between
                # queueing the item and scheduling its drain.
                self._scheduled = True
                self._call_soon(self._drain)
        return future

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
            items = self._items
            self._items = []
        spawn = self._spawn
        run = self._run
        start = self._start
        for future, function, args in items:
            if not future.set_running_or_notify_cancel():
                continue
            if function is None:
                start(future, args)
            else:
                spawn(run, future, function, args)

    def _start(self, future: Future[Any], args: tuple[Any, ...]) -> None:
        """Submit a plain command now, completing its Future from the reply; no task.

        Only on a link that is up with room: starting a link takes a task, and
        waiting for room a wait, which ``execute`` has.
        """
        try:
            route = self._client.direct_route(args)
            payload = encode_command(args) if route is not None else b""
        except Exception:
            route = None  # execute raises it, as it would have anyway
        if route is None or not route.connection.linked or not route.connection.has_room(1):
            self.spawn_execute(future, args)
            return
        completion = _Completion(self, future, args, route)
        completion.request = route.connection.submit(payload, 1, notify=completion)

    def spawn_execute(self, future: Future[Any], args: tuple[Any, ...]) -> None:
        """Run the plain command ``args`` through ``execute`` in a task of its own."""
        self._spawn(self._run, future, self._client.execute, args)

    @staticmethod
    async def _run(
        future: Future[Any], function: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        try:
            result = await function(*args)
        except Exception as exc:
            future.set_exception(exc)
        except BaseException:
            # Cancelled: only when the loop is torn down without the normal
            # shutdown (which fails commands through the client instead).
            future.set_exception(anyio.ClosedResourceError(_CLOSED_MESSAGE))
            raise
        else:
            future.set_result(result)

    def close(self) -> None:
        """Refuse new calls and fail those not picked up yet (callable from any thread)."""
        with self._lock:
            self._closed = True
            items = self._items
            self._items = []
        for future, _, _ in items:
            if future.set_running_or_notify_cancel():
                future.set_exception(anyio.ClosedResourceError(_CLOSED_MESSAGE))


class _Completion:
    """The signal of a Future's request: completes the Future in the loop thread.

    One object per command instead of a closure, its cells and a signal: a
    burst of Futures allocates enough for the cyclic garbage collector to
    show in its cost. Only :meth:`set`: nothing waits for it.
    """

    __slots__ = ("args", "future", "request", "route", "submitter")

    def __init__(
        self, submitter: _Submitter, future: Future[Any], args: tuple[Any, ...], route: DirectRoute
    ) -> None:
        self.submitter = submitter
        self.future = future
        self.args = args
        self.route = route
        self.request: Request[_Completion] | None = None

    def set(self) -> None:
        request = self.request
        if request is None:
            return
        self.request = None  # also breaks the cycle through the request
        future = self.future
        try:
            result = _direct_result(self.route, self.args, request.outcome())
        except Exception as exc:
            future.set_exception(exc)
            return
        if result is _THROUGH_LOOP:
            self.submitter.spawn_execute(future, self.args)
        else:
            future.set_result(result)


async def _take(iterator: AsyncIterator[T], count: int) -> list[T]:
    items: list[T] = []
    async for item in iterator:
        items.append(item)
        if len(items) == count:
            break
    return items


async def _close_iterator(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def _run_batch(
    client: AsyncClient, calls: list[Callable[[Any], Pending[Any]]], out: list[Pending[Any]]
) -> None:
    async with client.batch() as batch:
        # extend() appends one by one, so a call that raises (a refused
        # command) leaves the handles of those before it in ``out``.
        out.extend(call(batch) for call in calls)


# How many keys scan_iter fetches from the loop thread per round trip.
_SCAN_CHUNK = 1024


class SyncBatch(Commands):
    """Commands collected in a ``with`` block and sent together when it exits.

    Made by :meth:`SyncClient.batch`. ``b.execute(...)`` and the typed helpers
    on ``b`` return :class:`~triopipe.Pending` handles at once, exactly as on
    an async batch: ``result()`` gives the reply (or raises its error) once the
    block has exited. Nothing is sent while the block runs: at exit the whole
    batch goes to the loop thread in one hand-off and is sent as one pipeline
    (over a sharded client, one per shard, in parallel). If the block raises,
    nothing is sent. A batch belongs to the thread that opened it.
    """

    __slots__ = ("_calls", "_client", "_closed", "_pendings", "_submit", "_timeout")

    def __init__(
        self, client: AsyncClient, submit: Callable[..., Future[Any]], timeout: float | None
    ) -> None:
        self._client = client
        self._submit = submit
        self._timeout = timeout
        self._calls: list[Callable[[Any], Pending[Any]]] = []
        self._pendings: list[Pending[Any]] = []
        self._closed = False

    def __len__(self) -> int:
        return len(self._pendings)

    def __enter__(self) -> SyncBatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is not None:
            self._closed = True  # nothing is sent
            return
        self.send()

    def execute(self, *args: Arg) -> Pending[Any]:
        """Queue any command; returns its :class:`~triopipe.Pending` at once."""
        return self._add(lambda batch: batch.execute(*args))

    def _dispatch(self, command: Command[T], /) -> Pending[T]:
        return self._add(lambda batch: batch._dispatch(command))

    def _add(self, call: Callable[[Any], Pending[Any]]) -> Pending[Any]:
        if self._closed:
            raise RuntimeError("this batch's block has exited: start a new batch")
        self._calls.append(call)
        # The async batch's handle applies the reply's transform; this one
        # mirrors its outcome.
        pending: Pending[Any] = Pending()
        self._pendings.append(pending)
        return pending

    def send(self) -> None:
        """Send the commands as one pipeline and wait for every reply (what exit does).

        Replies that arrived are kept in their pendings even when another one
        failed the batch (e.g. the connection broke half way); that failure
        raises.

        Raises:
            anyio.ClosedResourceError: the client's block has exited.
        """
        self._closed = True
        if not self._calls:
            return
        replies: list[Pending[Any]] = []
        try:
            _wait(self._submit(_run_batch, (self._client, self._calls, replies)), self._timeout)
        finally:
            for mine, theirs in zip(self._pendings, replies, strict=False):
                if theirs.done():
                    mine.resolve(outcome(theirs))


class SyncScript(ScriptSource):
    """A Lua script registered with :meth:`SyncClient.register_script`; call it to run it.

    As :class:`~triopipe.Script`: ``EVALSHA``, falling back to ``EVAL`` on
    ``NOSCRIPT``; ``queue()`` puts it in a :class:`SyncBatch`.
    """

    def __init__(self, client: SyncClient, source: str | bytes) -> None:
        super().__init__(source)
        self._client = client

    def __call__(self, keys: Key | Sequence[Key] = (), args: Sequence[Arg] = ()) -> Any:
        """Run the script with ``KEYS`` and ``ARGV`` and return its reply."""
        try:
            return self._client.execute(*self.by_digest(keys, args).args)
        except NoScriptError:
            return self._client.execute(*self.by_source(keys, args).args)

    def load(self) -> None:
        """Put the script on every server (``SCRIPT LOAD``), so batches can send its digest."""
        self._client.execute("SCRIPT", "LOAD", self.source)
        self.loaded = True


class SyncClient(Commands):
    """A blocking client driving an async one on a loop thread.

    Made by :func:`open_client`, :func:`open_sharded_client` and
    :func:`open_cluster_client`. Every method may be called from any number
    of threads at once; their commands share the async client's pipelined
    writes. The typed helpers (``redis.get("k")``, ``redis.sinter(...)``...)
    block and return the same types as on the async client.
    """

    __slots__ = ("_blocks", "_client", "_direct_route", "_submit", "_threads", "_timeout")

    def __init__(
        self, client: AsyncClient, submitter: _Submitter, timeout: float | None = None
    ) -> None:
        self._client = client
        self._direct_route = client.direct_route
        self._submit = submitter.submit
        self._blocks = submitter.blocks
        self._timeout = timeout
        # Per calling thread: the last Future it was given (see _direct).
        self._threads = threading.local()

    def __repr__(self) -> str:
        return f"<SyncClient driving {self._client!r}>"

    def submit(self, *args: Arg) -> Future[Any]:
        """Start one command; returns a :class:`concurrent.futures.Future` of its reply.

        The Future raises what the async ``execute`` raises (e.g.
        :class:`~triopipe.WrongTypeError`). ``future.cancel()`` succeeds only
        while the command still waits to be picked up by the loop thread, and
        then the command is never sent; afterwards it returns False.

        Raises:
            anyio.ClosedResourceError: the client's block has exited.
        """
        future = self._threads.last_future = self._submit(None, args)
        return future

    def execute(self, *args: Arg) -> Any:
        """Run one command and return its reply (blocking); see ``Client.execute``."""
        reply = self._direct_reply(args)
        if reply is not _THROUGH_LOOP:
            return reply
        return _wait(self._submit(None, args), self._timeout)

    def _direct_reply(self, args: tuple[Arg, ...]) -> Any:
        """A blocking call's reply without the loop thread, or ``_THROUGH_LOOP``.

        The calling thread writes its command itself (``direct_route`` and
        ``Connection.call_from_thread``) unless one of its own Futures is
        still unfinished: that command may not be written yet, and one
        thread's commands must not overtake each other.
        """
        last: Future[Any] | None = getattr(self._threads, "last_future", None)
        if last is not None and not last.done():
            return _THROUGH_LOOP
        route = self._direct_route(args)
        if route is None:
            return _THROUGH_LOOP
        request = route.connection.call_from_thread(encode_command(args), self._timeout)
        if request is None:
            return _THROUGH_LOOP
        return _direct_result(route, args, request.outcome())

    def submit_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> Future[list[Any]]:
        """Start :meth:`execute_many` and return a Future of its list of replies.

        ``commands`` is consumed in the loop thread.
        """
        run = functools.partial(self._client.execute_many, raise_on_error=raise_on_error)
        future = self._threads.last_future = self._submit(run, (commands,))
        return future

    def execute_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Run many commands as one pipeline; returns their replies in order (blocking).

        Same rules as the async ``Client.execute_many``: windows, order,
        ``raise_on_error``.
        """
        return _wait(self.submit_many(commands, raise_on_error=raise_on_error), self._timeout)

    def batch(self) -> SyncBatch:
        """Collect commands in a ``with`` block; send them together at exit.

        Returns a :class:`SyncBatch`; exit blocks until every reply is in.

        Raises:
            anyio.ClosedResourceError: the client's block has exited.
        """
        return SyncBatch(self._client, self._submit, self._timeout)

    def scan_iter(self, match: Key | None = None, count: int | None = None) -> Iterator[Any]:
        """Iterate over the keys with ``SCAN`` (keys may repeat), fetched in chunks."""
        keys = self._client.scan_iter(match=match, count=count)
        try:
            while True:
                chunk = _wait(self._submit(_take, (keys, _SCAN_CHUNK)), self._timeout)
                yield from chunk
                if len(chunk) < _SCAN_CHUNK:
                    return
        finally:
            # Once the client is closed, the loop finalises the iterator.
            with suppress(anyio.ClosedResourceError):
                _wait(self._submit(_close_iterator, (keys,)), self._timeout)

    def shard_for(self, key: Key) -> str:
        """The URL of the server owning ``key`` (sharded and cluster clients only).

        On a cluster client this is the async client's ``node_for``: the
        primary serving the key's slot, as far as the client knows now.

        Raises:
            AttributeError: the client drives a single server.
        """
        owner: Callable[[Key], str] | None = getattr(self._client, "shard_for", None)
        if owner is None:
            owner = getattr(self._client, "node_for")  # noqa: B009
        future: Future[str] = self._submit(_call_sync, (functools.partial(owner, key),))
        return _wait(future, self._timeout)

    node_for = shard_for

    def register_script(self, source: str | bytes) -> SyncScript:
        """Return a :class:`SyncScript` to run ``source`` by its digest."""
        return SyncScript(self, source)

    def subscribe(
        self, *channels: Key, patterns: Sequence[Key] = (), **options: Any
    ) -> SyncSubscription:
        """Subscribe to channels and patterns, as a ``with`` block; iterate it for messages.

        ::

            with redis.subscribe("news", patterns=["alerts.*"]) as sub:
                for message in sub:          # blocks until a message comes
                    print(message.channel, message.data)
                message = sub.get(timeout=1.0)   # TimeoutError if none comes

        The block starts once the server has registered every channel and
        pattern; the async :meth:`triopipe.Client.subscribe` runs it on the
        loop thread (``options`` go to it as they are), and iteration yields
        what its iteration yields.

        Raises:
            AttributeError: the async client has no ``subscribe``.
        """
        subscribe = getattr(self._client, "subscribe")  # noqa: B009 - not every client has it
        return SyncSubscription(
            self._submit,
            self._blocks,
            functools.partial(subscribe, *channels, patterns=patterns, **options),
            self._timeout,
        )

    def transaction(self, *watch_keys: Key) -> SyncTransaction:
        """``MULTI``/``EXEC`` after ``WATCH watch_keys``, as a ``with`` block.

        ::

            with redis.transaction("balance") as tx:
                balance = int(tx.now.get("balance"))
                tx.set("balance", balance - 10)
                tx.incr("spent")
            # here the commands ran, or WatchError raised

        Commands queued on ``tx`` return :class:`~triopipe.Pending` handles and
        are sent at exit, as with :meth:`triopipe.Client.transaction`.

        Raises:
            WatchError: at exit, a watched key had changed; nothing was applied.
        """
        return SyncTransaction(
            self._submit,
            self._blocks,
            functools.partial(self._client.transaction, *watch_keys),
            self._timeout,
        )

    def stream_consumer(
        self, stream: Key, group: Arg, consumer: Arg, **options: Any
    ) -> SyncStreamConsumer:
        """Consume ``stream`` as ``consumer`` of ``group``, as a ``with`` block.

        ::

            with redis.stream_consumer("jobs", "workers", "worker-1",
                                       create=True, claim_after=30) as consumer:
                for entry in consumer:
                    handle(entry.fields)
                    entry.ack()

        The options and the delivery guarantees are those of
        :meth:`triopipe.Client.stream_consumer` (``create``, ``start``,
        ``claim_after``, ``ack``, ``count``).

        Raises:
            ValueError, TypeError: a bad option (before anything is sent).
        """
        settings = ConsumerOptions(**options)
        return SyncStreamConsumer(
            self._submit,
            self._blocks,
            functools.partial(StreamConsumer, self._client, stream, group, consumer, settings),
            self._timeout,
        )

    def statistics(self) -> Any:
        """The async client's statistics snapshot (e.g. :class:`~triopipe.ClientStatistics`)."""
        return _wait(self._submit(_call_sync, (self._client.statistics,)), self._timeout)

    def _dispatch(self, command: Command[T], /) -> T:
        reply = self._direct_reply(command.args)
        if reply is not _THROUGH_LOOP:
            return command.shape(reply)
        future: Future[T] = self._submit(self._client._dispatch, (command,))
        return _wait(future, self._timeout)


@asynccontextmanager
async def _command_tasks() -> AsyncIterator[
    tuple[Callable[[Callable[[], object]], object], Callable[..., object]]
]:
    """The loop's thread-safe scheduler, and a spawner of command tasks waited for at exit.

    Native tasks, not an anyio task group: spawning is on the path of every
    command, and anyio's ``start_soon`` costs several times a bare task. The
    command tasks never raise (they complete their Future instead).
    """
    if current_backend().name == "trio":
        import trio

        token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            yield token.run_sync_soon, nursery.start_soon
        return
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(function: Callable[..., Any], *args: Any) -> None:
        task = loop.create_task(function(*args))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        yield loop.call_soon_threadsafe, spawn
    finally:
        while tasks:
            await asyncio.wait(tasks)


async def _serve(
    open_async: Callable[[], AbstractAsyncContextManager[AsyncClient]],
    *,
    task_status: anyio.abc.TaskStatus[tuple[AsyncClient, _Submitter, anyio.Event]],
) -> None:
    """Open the async client, hand it to the caller's thread, close it when told."""
    stop = anyio.Event()
    # Raised outside the nursery, as itself: the caller of open_client gets
    # ConnectError, not an exception group.
    error: BaseException | None = None
    async with _command_tasks() as (call_soon, spawn):
        submitter: _Submitter | None = None
        try:
            # Leaving this block fails every command in flight, so the
            # command tasks end at once and _command_tasks() does not wait.
            async with open_async() as client:
                submitter = _Submitter(client, call_soon, spawn)
                task_status.started((client, submitter, stop))
                await stop.wait()
        except BaseException as exc:
            error = exc
        finally:
            if submitter is not None:
                submitter.close()
                # Blocks a thread still holds leave now: the command tasks
                # holding them end, and so can this one.
                submitter.blocks.release_all()
    if error is not None:
        raise error


def _loop_options(backend: str, options: dict[str, Any] | None) -> dict[str, Any] | None:
    if options is not None:
        return options
    # uvloop makes a blocking call about 15% faster (python -m benchmarks sync).
    if backend == "asyncio" and importlib.util.find_spec("uvloop") is not None:
        return {"use_uvloop": True}
    return None


@contextmanager
def _open(
    open_async: Callable[[], AbstractAsyncContextManager[AsyncClient]],
    backend: str,
    backend_options: dict[str, Any] | None,
    timeout: float | None,
) -> Iterator[SyncClient]:
    """The one path behind every ``open_*``: loop thread, async client, clean stop."""
    portal: BlockingPortal
    with start_blocking_portal(backend, _loop_options(backend, backend_options)) as portal:
        served, (client, submitter, stop) = portal.start_task(_serve, open_async)
        try:
            yield SyncClient(client, submitter, timeout)
        finally:
            submitter.close()
            portal.call(stop.set)
            served.result()


def open_client(
    url: str = DEFAULT_URL,
    *,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
    timeout: float | None = None,
    **options: Any,
) -> AbstractContextManager[SyncClient]:
    """Open a blocking client for the server at ``url``; close it when the block exits.

    Starts an event loop in a new thread, opens :func:`triopipe.open_client`
    in it and yields a :class:`SyncClient`. Leaving the block (normally, on an
    exception or on KeyboardInterrupt) closes the client: commands still in
    flight fail with :class:`~triopipe.ConnectionLostError`, those not yet
    picked up with :class:`anyio.ClosedResourceError`; the thread is joined.

    Args:
        url: as for :func:`triopipe.open_client`.
        backend: the loop to run: ``"asyncio"`` (default) or ``"trio"``.
        backend_options: passed to :func:`anyio.run`; by default asyncio runs
            on uvloop when it is installed (pass ``{"use_uvloop": False}``
            to opt out).
        timeout: seconds a blocking call waits at most for its reply before
            raising :class:`TimeoutError` (None: as long as it takes). A
            command already sent is not withdrawn: its reply is dropped when
            it comes.
        **options: client options, as for :func:`triopipe.open_client`.

    Raises:
        ConnectError: the server could not be reached in time.
        AuthenticationError: the server refused the credentials.
    """
    return _open(
        functools.partial(open_async_client, url, **options), backend, backend_options, timeout
    )


def open_sharded_client(
    urls: Sequence[str],
    *,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
    timeout: float | None = None,
    **options: Any,
) -> AbstractContextManager[SyncClient]:
    """Like :func:`open_client`, over :func:`triopipe.open_sharded_client`."""
    return _open(
        functools.partial(open_async_sharded_client, urls, **options),
        backend,
        backend_options,
        timeout,
    )


def open_cluster_client(
    url_or_urls: str | Sequence[str],
    *,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
    timeout: float | None = None,
    **options: Any,
) -> AbstractContextManager[SyncClient]:
    """Like :func:`open_client`, over :func:`triopipe.open_cluster_client`."""
    return _open(
        functools.partial(open_async_cluster_client, url_or_urls, **options),
        backend,
        backend_options,
        timeout,
    )


def open_sentinel_client(
    sentinels: Sequence[str],
    service_name: str,
    *,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
    timeout: float | None = None,
    **options: Any,
) -> AbstractContextManager[SyncClient]:
    """Like :func:`open_client`, over :func:`triopipe.open_sentinel_client`."""
    return _open(
        functools.partial(open_async_sentinel_client, sentinels, service_name, **options),
        backend,
        backend_options,
        timeout,
    )
