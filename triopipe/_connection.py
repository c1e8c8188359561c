"""A connection: one server, one link at a time, its tasks driving a sans-io pipeline.

Theory of operation
-------------------

A :class:`Connection` is a logical connection to one server. It owns at most
one *link* at a time: one stream's lifetime, from connect to break. What a
link knows (queue, pending replies, counts, room, abandonment) is its
:class:`~triopipe._pipeline.Pipeline`, where every rule about that state
lives; this module moves bytes and schedules tasks:

- :meth:`Connection.submit` hands a request to the pipeline (synchronous and
  checkpoint-free, so a cancellation can never separate a command from its
  owner) and makes sure someone will write it;
- a *sender* task writes what the pipeline gives and a *receiver* task feeds
  it replies, which it hands to their owners (:mod:`triopipe._link`);
- a break (EOF, stream error, protocol error, client closing) fails the link
  at once (:meth:`Connection._break`): every request settles with an error
  whose ``sent`` is exact, and the next submission starts a new link after a
  capped, jittered exponential backoff. Nothing written is ever resent here.

A connection may be *retargeted* (:meth:`Connection.retarget`, when Sentinel
names a new primary): its link breaks as above, with the caller's error, and
the next link goes to the new server, with no backoff left from the old one.

The handshake (``HELLO``/``AUTH``/``SELECT``) runs on the new stream before the
sender starts, so it completes before any user command is written; commands
submitted meanwhile wait in the queue.

Writes without the sender
-------------------------

A round trip on an idle link is mostly the cost of waking the sender, so on
a stream that takes synchronous writes (plain sockets, not TLS) a command can
be written at once by whoever submits it, while the sender sleeps: by the
loop thread in :meth:`Connection.submit` when the link is idle (nothing
queued, nothing written awaiting a reply: a lone command, which nothing could
share a write with) or, for a *sealed* window of a pipeline (a request that
never grows, a write of its own anyway), when nothing is queued or being
written, which saves waking the sender for every window (about 5% of the
instructions per ``GET`` of a 4 KiB value through ``pump``), and by a thread
of the blocking facade in
:meth:`Connection.call_from_thread` when nothing is queued or being written,
which saves that thread two hand-offs to the loop; its reply still comes back
through the receiver, the link's only reader. Whatever the kernel does not
take is left to the sender, ahead of everything else. Two rules make this safe:

- *One writer at a time, in ``pending`` order.* The sender writes only after
  being woken; waking it (``sender_wakeup`` becoming None), every write made
  without it, and marking the link closed all happen under the connection's
  ``_thread_lock``, and a write without the sender happens only while it
  sleeps unwoken. A thread's command therefore goes wholly before whatever
  the loop writes next, or not at all.
- *No counter with two writers.* Commands written by other threads are
  counted in the pipeline's ``thread_submitted``, written under the lock
  only; everything else is counted by the loop thread.

Streams come from ``open_stream`` (by default :func:`triopipe._streams.open_stream`),
which tests replace with a scripted stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import anyio
import anyio.abc

from ._backend import Signal, ThreadSignal, current_backend
from ._config import ClientConfig
from ._exceptions import (
    ConnectionLostError,
    ProtocolError,
    ResponseError,
    connect_error,
    copy_error,
    request_error,
)
from ._link import Down, Link, backoff_delay, new_handshake, receive_loop, send_loop, watch
from ._observe import Observer
from ._pipeline import Notify, Pipeline, ReplyBudget, Request
from ._resp import Push, encode_command, make_reader
from ._statistics import ConnectionStatistics
from ._streams import STREAM_ERRORS, Stream, open_stream, run_handshake

__all__ = ["Connection"]

N = TypeVar("N", bound=Notify)

logger = logging.getLogger("triopipe")

_CONNECT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *STREAM_ERRORS)
# The health check's probe.
_PING = encode_command(("PING",))


class Connection:
    """A logical connection to one server: reconnects on demand, one link at a time.

    Args:
        config: the server and options.
        task_group: the client's task group; link tasks run in it.
        on_push: called with each RESP3 push frame that arrives.
        on_lost: called with the error when a link breaks (not when the client
            closes the connection).
        subscriber: the connection is in pub/sub mode: a message nobody waits
            for (RESP2 sends pub/sub messages as plain arrays) goes to
            ``on_push`` instead of being a protocol error.
        open_stream: connects a new stream (default: as ``config`` says).
    """

    def __init__(
        self,
        config: ClientConfig,
        task_group: anyio.abc.TaskGroup,
        *,
        on_push: Callable[[Push], None] | None = None,
        on_lost: Callable[[BaseException], None] | None = None,
        subscriber: bool = False,
        open_stream: Callable[[], Awaitable[Stream]] | None = None,
    ) -> None:
        self._config = config
        self._task_group = task_group
        self._on_push = on_push
        self._on_lost = on_lost
        self._subscriber = subscriber
        self._observer = config.observer
        self._budget = ReplyBudget(config.max_in_flight, time.monotonic)
        backend = self._backend = current_backend()
        self._open_stream = open_stream or self._open_configured_stream
        self._new_signal = backend.new_signal
        self._checkpoint_if_cancelled = backend.checkpoint_if_cancelled
        self._link: Link | None = None
        self._failures = 0
        self._connects = 0
        # Set while the server cannot be reached: submissions fail at once.
        self._down: Down | None = None
        # The last link broke (not closed by the client) and none is up yet.
        self._lost = False
        # A blocking command (BLPOP...) is in flight: silence is no sign of death.
        self._blocking = False
        # The cancel scope of the latest link's task.
        self._runner: anyio.CancelScope | None = None
        # Commands written and writes made by links that are gone.
        self._past_commands_written = 0
        self._past_writes = 0
        self._closed = False
        # Serialises writes with writers in other threads; see "Writes without
        # the sender". Never held across an await.
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Connection {self._config.address} in_flight={self.load}>"

    # -- state ------------------------------------------------------------------

    @property
    def load(self) -> int:
        """Commands in flight on the current link; a group picks its least loaded connection."""
        link = self._link
        return 0 if link is None else link.pipeline.outstanding

    @property
    def address(self) -> str:
        """The server's address (``host:port``), for messages and observers."""
        return self._config.address

    @property
    def observer(self) -> Observer | None:
        """Who watches this connection's client, if anyone."""
        return self._observer

    @property
    def suspect(self) -> bool:
        """Whether the server may be gone: the last connect failed, or the last link
        broke, and no link has come up since."""
        return self._down is not None or self._lost

    @property
    def linked(self) -> bool:
        """Whether a link exists (connecting or up): submitting will not have to start one."""
        return self._link is not None

    @property
    def protocol(self) -> int:
        """The RESP version the current link speaks (0 while none is up)."""
        link = self._link
        return 0 if link is None else link.protocol

    @property
    def window(self) -> int:
        """How many commands one ``execute_many`` window should hold now."""
        return self._budget.window

    def has_room(self, count: int) -> bool:
        """Whether ``count`` more commands may be submitted without waiting."""
        link = self._link
        return link is None or link.pipeline.has_room(count)

    def statistics(self) -> ConnectionStatistics:
        """A snapshot of this connection's state."""
        link = self._link
        if link is None:
            return ConnectionStatistics(
                False, 0, 0, 0, self._connects, self._past_commands_written, self._past_writes
            )
        pipeline = link.pipeline
        return ConnectionStatistics(
            connected=link.connected and not link.closed,
            # The health check's PINGs are not the callers' commands.
            commands_in_flight=pipeline.outstanding - link.probes,
            commands_queued=pipeline.queued,
            protocol=link.protocol,
            connects=self._connects,
            commands_written=self._past_commands_written + pipeline.commands_written,
            writes=self._past_writes + pipeline.writes,
        )

    # -- submitting (loop thread; synchronous, checkpoint-free) ---------------------

    @overload
    def submit(
        self, payload: bytes, count: int, *, many: bool = ..., sealed: bool = ...
    ) -> Request[Signal]: ...
    @overload
    def submit(
        self, payload: bytes, count: int, *, many: bool = ..., sealed: bool = ..., notify: N
    ) -> Request[N]: ...
    def submit(
        self,
        payload: bytes,
        count: int,
        *,
        many: bool = False,
        sealed: bool = False,
        notify: Notify | None = None,
    ) -> Request[Any]:
        """Queue ``count`` encoded commands as one request and return it.

        Never checkpoints: the caller cannot be cancelled between creating the
        request and queueing it. Callers respect :meth:`has_room` first.
        ``many`` makes the request collect a list of replies even for one
        command (and lets it grow with :meth:`extend`, unless ``sealed``: a
        sealed request never grows, so it may be written at once, without
        waking the sender, when nothing else is being written). ``notify`` replaces
        the loop's own signal (the blocking facade completes a Future with
        it); :meth:`wait` needs the loop's own.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        link = self._link
        if link is None:
            link = self._start_link()
        return self._submit_to(
            link, payload, self._new_signal() if notify is None else notify, count, many, sealed
        )

    def _submit_to(
        self,
        link: Link,
        payload: bytes,
        notify: N,
        count: int = 1,
        many: bool = False,
        sealed: bool = False,
    ) -> Request[N]:
        pipeline = link.pipeline
        if link.sender_wakeup is None:
            # The sender is awake (or not started yet): it will take this. No
            # lock: only the loop thread, this one, puts the sender to sleep.
            return pipeline.submit(payload, count, notify, many)
        stream = link.stream
        with self._thread_lock:
            # An idle link writes a lone command now, without the sender, and
            # a link between writes a sealed window. Not a batch: it stays
            # queued so that it can grow, and a batch whose block fails
            # before yielding sends nothing.
            request = None
            if (
                (sealed or not many)
                and stream is not None
                and stream.direct_writes
                and link.sender_wakeup is not None
            ):
                request = pipeline.write_directly(payload, count, notify, many=many)
                if request is not None and pipeline.wrote(stream.try_send(payload)):
                    return request
            if request is None:
                request = pipeline.submit(payload, count, notify, many)
            self._wake_sender(link)
        return request

    def extend(self, request: Request[Any], payload: bytes) -> bool:
        """Add one encoded command to a ``many`` request still queued.

        Returns False, changing nothing, when the request has already been
        taken by the sender (or its link is gone): submit a new one then.
        """
        link = self._link
        return link is not None and link.pipeline.extend(request, payload)

    def send_only(self, payload: bytes) -> None:
        """Queue commands whose answers come as push messages, not replies.

        For pub/sub (``SUBSCRIBE`` and friends): nothing waits for a reply.
        """
        self.submit(payload, 0, many=True)

    async def wait_for_room(self, count: int) -> None:
        """Wait until :meth:`has_room` holds for ``count`` commands (backpressure).

        Waiters are woken in turn, as many as the freed room admits, and that
        room is theirs until they submit, which the caller does next, without
        waiting. A waiter cancelled, even as it is woken, submits nothing and
        passes its room on. One woken by a broken link tries the next link.
        """
        first = False
        while True:
            link = self._link
            if link is None or link.pipeline.has_room(count):
                return
            pipeline = link.pipeline
            signal = self._new_signal()
            waiter = pipeline.add_waiter(count, signal, first=first)
            if not first and self._observer is not None:
                self._observer.waited_for_room(self._config.address, count)
            first = True
            try:
                await signal.wait()
                # Woken and cancelled in the same step: submit nothing, and
                # pass the room on.
                await self._checkpoint_if_cancelled()
            except BaseException:
                pipeline.remove_waiter(waiter)
                raise
            if pipeline.failed is None:
                # The room is this caller's: it submits next, without waiting.
                pipeline.claim(waiter)
                return

    @staticmethod
    async def wait(request: Request[Signal]) -> Any:
        """Wait for a request's replies: the reply, or the list of replies.

        Cancelling this wait abandons the request: its replies are discarded
        when they arrive, and if it was not written yet it never will be.
        """
        try:
            await request.notify.wait()
        except BaseException:
            request.abandoned = True
            raise
        return request.result()

    async def call(self, payload: bytes, count: int) -> Any:
        """Submit (waiting for room first if needed) and wait for the reply.

        A caller whose scope is already cancelled submits nothing: without this
        check the sender, woken by the submission, could write the command
        before the cancellation is delivered to the waiter.
        """
        link = self._link
        if link is not None and not link.pipeline.has_room(count):
            await self.wait_for_room(count)
        else:
            await self._checkpoint_if_cancelled()
        # Connection.submit() and wait() (with Request.result()), inlined where
        # they can be: this is every command's hot path.
        link = self._link
        if link is None or link.sender_wakeup is not None or self._closed:
            request = self.submit(payload, count)
        else:
            request = link.pipeline.submit(payload, count, self._new_signal())
        try:
            await request.notify.wait()
        except BaseException:
            request.abandoned = True
            raise
        if request.error is not None:
            raise request.error
        return request.value if request.replies is None else request.replies

    async def call_blocking(self, payload: bytes) -> Any:
        """:meth:`call` for a blocking command (``BLPOP``...), on a dedicated connection.

        While it is in flight, the health check leaves the link alone: a
        blocking command may rightly keep it silent for as long as its
        timeout says (TCP keepalive still notices a dead peer).
        """
        self._blocking = True
        try:
            return await self.call(payload, 1)
        finally:
            self._blocking = False

    async def checkpoint_if_cancelled(self) -> None:
        """Raise if the caller's scope is cancelled; do not yield otherwise."""
        await self._checkpoint_if_cancelled()

    # -- the cross-thread hook (any thread) -------------------------------------------

    def call_from_thread(
        self, payload: bytes, timeout: float | None = None
    ) -> Request[ThreadSignal] | None:
        """Write one command from a thread other than the loop's and wait for its reply.

        For the blocking facade (see "Writes without the sender"): the calling
        thread writes the command itself when the link is up on a stream that
        takes synchronous writes, idle, with room; the receiver sets the
        request's signal. Returns the settled request (its
        :meth:`~triopipe._pipeline.Request.outcome`), or None when nothing was
        written: go through the loop then.

        If the wait is interrupted (``KeyboardInterrupt``), or no reply came
        within ``timeout`` seconds (:class:`TimeoutError`), the request is
        abandoned as a cancelled :meth:`call` is: its reply is read and dropped.
        """
        link = self._link
        if link is None:
            return None
        stream = link.stream
        if stream is None or not stream.direct_writes:
            return None
        signal = ThreadSignal()
        with self._thread_lock:
            if link.sender_wakeup is None or link.closed:
                return None
            request = link.pipeline.write_directly(payload, 1, signal, thread=True)
            if request is None:
                return None
            if not link.pipeline.wrote(stream.try_send(payload)):
                # The kernel took only part of it: the sender writes the rest
                # before anything else.
                wakeup = link.sender_wakeup
                link.sender_wakeup = None
                self._backend.run_sync_soon(wakeup.set)
        try:
            if not signal.wait_blocking(timeout):
                raise TimeoutError(f"no reply from {self._config.address} within {timeout:g} s")
        except BaseException:
            request.abandoned = True
            raise
        return request

    def _wake_sender(self, link: Link) -> None:
        """Wake the sender if it sleeps. Only under the thread lock."""
        wakeup = link.sender_wakeup
        if wakeup is not None:
            link.sender_wakeup = None
            wakeup.set()

    # -- the link's life ----------------------------------------------------------------

    async def connect(self) -> None:
        """Make sure a link is up and past its handshake, or raise why not."""
        if self._closed:
            raise anyio.ClosedResourceError
        link = self._link
        if link is None:
            link = self._start_link()
        await link.ready.wait()
        if link.error is not None and not link.connected:
            raise copy_error(link.error)

    def close(self) -> None:
        """Refuse new commands and fail the pending ones (the client is closing).

        A subscription's connection also tells ``on_lost``, with
        :exc:`anyio.ClosedResourceError`: its subscription did not close it
        (a cluster node that left the map is closed under it), so it may
        subscribe elsewhere.
        """
        was_closed, self._closed = self._closed, True
        link = self._link
        if link is not None:
            self._break(link, ConnectionLostError("the client was closed", sent=True))
        if self._runner is not None:
            self._runner.cancel()  # a background connect, if the server is down
        if self._subscriber and self._on_lost is not None and not was_closed:
            self._on_lost(
                anyio.ClosedResourceError(f"the connection to {self._config.address} was closed")
            )

    def retarget(self, config: ClientConfig, error: BaseException) -> None:
        """Point this connection at another server (a Sentinel failover).

        The current link breaks with ``error`` (its written commands get
        ``sent=True``: never resent; unwritten ones ``sent=False``), a
        background connect to the old server stops, and the next submission
        connects to the new one at once, with no backoff left over.
        """
        self._config = config
        self._down = None
        self._failures = 0
        link = self._link
        if link is not None:
            self._break(link, error)
        self._lost = False  # that was the old server's link
        if self._runner is not None:
            self._runner.cancel()  # a connect still aimed at the old server

    def _start_link(self) -> Link:
        """A new link, current at once, its task started; or the server's down error.

        Raises:
            ConnectError: the last connect failed and no new one succeeded yet
                (a background attempt keeps trying): fail now, do not wait.
        """
        down = self._down
        if down is not None:
            raise down.error(self._config.address)
        link = self._new_link()
        self._task_group.start_soon(
            self._run_link, link, name=f"triopipe link {self._config.address}"
        )
        # Only once its task exists: a link nobody runs would hold its
        # requests forever.
        self._link = link
        return link

    def _new_link(self) -> Link:
        return Link(Pipeline(self._budget, subscriber=self._subscriber))

    async def _open_configured_stream(self) -> Stream:
        return await open_stream(self._config, self._backend)

    async def _run_link(self, link: Link) -> None:
        """A link's task: connect, then serve the link until it breaks.

        While connects fail, the task keeps trying in the background, with
        backoff, on links nobody can submit to: the connection is *down* and
        submissions fail at once (:class:`Down`). The first link that
        connects becomes the current one.
        """
        stream: Stream | None = None
        try:
            with anyio.CancelScope() as scope:
                self._runner = scope
                reader = make_reader(
                    decode=self._config.decode, max_bulk_length=self._config.max_bulk_length
                )
                while True:
                    down = self._down
                    if down is not None:
                        await anyio.sleep(max(0.0, down.retry_at - time.monotonic()))
                    error: BaseException
                    try:
                        with anyio.fail_after(self._config.connect_timeout):
                            stream = await self._open_stream()
                            link.protocol = await run_handshake(
                                stream,
                                reader,
                                await new_handshake(self._config),
                                self._budget.observe_round_trip,
                            )
                        break
                    except (ResponseError, ProtocolError) as exc:
                        error = exc
                    except _CONNECT_ERRORS as exc:
                        error = connect_error(self._config.address, exc)
                    if stream is not None:
                        with anyio.CancelScope(shield=True):
                            await stream.aclose()
                        stream = None
                    link = self._connect_failed(link, error)
                if link.closed:
                    return  # broken while connecting (retargeted): its requests failed unsent
                # Only a link that is up ends the task when it breaks; a
                # failed connect leaves the task to try again.
                link.scope = scope
                link.stream = stream
                self._failures = 0
                self._down = None
                self._lost = False
                self._connects += 1
                link.connected = True
                if self._link is None and not self._closed:
                    self._link = link  # a background attempt succeeded
                link.ready.set()
                logger.debug("connected to %s (RESP%d)", self._config.address, link.protocol)
                if self._observer is not None:
                    self._observer.connected(self._config.address, link.protocol)
                link.last_received = time.monotonic()
                async with anyio.create_task_group() as task_group:
                    address = self._config.address
                    task_group.start_soon(
                        send_loop, stream, link, self._new_signal, self._break, address
                    )
                    task_group.start_soon(
                        receive_loop, stream, reader, link, self._on_push, self._break, address
                    )
                    interval = self._config.health_check_interval
                    if interval is not None:
                        task_group.start_soon(
                            watch,
                            link,
                            interval,
                            self._probe,
                            lambda: self._blocking,
                            self._new_signal,
                            self._break,
                            address,
                        )
        finally:
            # Reached on a break (already handled), on client close, or when
            # the client's task group is cancelled: fail whatever is left.
            self._break(link, ConnectionLostError("the client was closed", sent=True))
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()

    def _connect_failed(self, link: Link, error: BaseException) -> Link:
        """A connect failed: fail ``link``'s requests, go down; the next attempt's link."""
        self._failures += 1
        retry_in = backoff_delay(self._failures)
        now = time.monotonic()
        since = now if self._down is None else self._down.since
        self._down = Down(since, now + retry_in, error)
        self._link = None if self._link is link else self._link
        self._break(link, error)
        if self._observer is not None:
            self._observer.connect_failed(self._config.address, error, retry_in)
        # Not current: while down, submissions fail instead of queueing on it.
        return self._new_link()

    def _break(self, link: Link, error: BaseException) -> None:
        """Fail every request of ``link`` at once and detach it. Idempotent.

        Synchronous on purpose: from the moment a link is known to be broken no
        request can be queued on it, because new submissions see it detached.
        """
        stream = link.stream
        with self._thread_lock:
            # Under the lock: a thread writing either did so before (its
            # request is failed below, as sent) or sees the link closed.
            if link.closed:
                return
            link.closed = True
            unknown = link.pipeline.fail(
                error,
                lambda sent: request_error(error, sent=sent),
                0 if stream is None else stream.in_doubt,
            )
        link.error = error
        if self._link is link:
            self._link = None
        self._past_commands_written += link.pipeline.commands_written
        self._past_writes += link.pipeline.writes
        if stream is not None:
            # The server learns at once that nobody is waiting any more (a
            # blocking command stops blocking for a caller that is gone).
            stream.shutdown()
        if link.connected:
            self._lost = not self._closed
            logger.debug("connection to %s lost: %s", self._config.address, error)
            observer = self._observer
            if observer is not None:
                observer.disconnected(self._config.address, error)
                unknown -= link.probes
                if unknown > 0:
                    observer.outcome_unknown(self._config.address, unknown, error)
        if link.sender_wakeup is not None:
            link.sender_wakeup.set()
        link.ready.set()
        if link.scope is not None:
            link.scope.cancel()
        if self._on_lost is not None and not self._closed:
            self._on_lost(error)

    def _probe(self, link: Link, signal: Signal) -> None:
        """Submit the health check's PING on ``link``; ``signal`` is set when answered.

        On a RESP2 subscription link the server answers a PING with a
        ``pong`` array, indistinguishable by shape from a message: the probe
        awaits no reply there (the array goes to ``on_push``), and only the
        bytes it brings count.
        """
        awaits_reply = 0 if self._subscriber and link.protocol == 2 else 1
        self._submit_to(link, _PING, signal, awaits_reply, many=not awaits_reply)
