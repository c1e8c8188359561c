"""Connections: the one place that touches sockets.

Theory of operation
-------------------

A :class:`Connection` is a logical connection to one server. It owns at most
one *link* at a time: one socket's lifetime, from connect to break. A link has

- a send queue of :class:`Request` objects (encoded commands not yet written),
  bounded by ``max_in_flight``;
- a FIFO ``pending`` of requests already written, awaiting replies;
- a *sender* task that moves everything queued into ``pending`` and writes it
  with one ``send``, and a *receiver* task that feeds bytes to the RESP reader
  and hands each reply to ``pending[0]``.

A request is one submission: a single command or a whole batch (many
commands, one payload, one waiter). Submitting is synchronous and
checkpoint-free (:meth:`Connection.submit`): the request is appended to the
send queue in the same step that makes it the owner of the next replies, so a
cancellation can never leave a command written without an owner, or an owner
without its command. Only waiting for the reply is cancellable; a cancelled
waiter marks its request *abandoned*: if it was never written the sender drops
it, otherwise the receiver reads its replies and throws them away. No reply
can ever reach a caller other than the one that sent the command.

Commands in flight are bounded twice: by ``max_in_flight``, and by a budget
of reply bytes (``_REPLY_BUDGET``) divided by the mean reply size seen so far,
so that a server with a tight output-buffer limit is never made to buffer
more than the budget on our behalf. ``window`` derives from the same bound.

When a link breaks (EOF, socket error, protocol error), it fails every request
at once: those in ``pending`` with ``ConnectionLostError(sent=True)`` (their
outcome is unknown), those still queued with ``sent=False``. The next
submission starts a new link; connecting waits a capped, jittered exponential
backoff after failures. Nothing written is ever resent.

The handshake (``HELLO``/``AUTH``/``SELECT``) runs on the new socket before
the sender starts, so it completes before any user command is written;
commands submitted meanwhile wait in the send queue.

Plain TCP and unix sockets are driven directly, non-blocking, with the loop's
own readiness waits (:class:`_SocketStream`); TLS goes through anyio's stream
(:class:`_AnyioStream`). On a plain socket an *idle* link (nothing queued,
nothing awaiting a reply, the sender asleep) writes a submitted request
synchronously inside :meth:`Connection.submit`: a lone command then costs no
sender wake-up, which is most of a sequential command's latency. Whatever the
kernel does not take at once is left to the sender, ahead of everything else.
Busy links always go through the sender, which coalesces.

Writes from other threads
-------------------------

The blocking facade (``triopipe.sync``) runs this code on a loop thread, and a
caller blocked on one command would pay two thread hand-offs (its command to
the loop, the reply back), as much again as the round trip itself. So
:meth:`Connection.call_from_thread` lets such a caller write its own command
on an idle link, exactly like the direct write above; only the reply comes
back through the receiver, the link's one reader. It is safe because of two
rules:

- *One writer at a time, in the order of* ``pending``. Appending to
  ``pending`` and writing go together. The sender only writes after being
  woken, and every change of ``sender_wakeup`` to None (waking it) happens
  under the connection's ``_thread_lock``, as does every direct write and
  marking the link closed; a thread writes only under that lock while the
  sender sleeps unwoken on an open link. So a thread's command goes either
  wholly before whatever the loop writes next, or not at all.
- *No counter with two writers.* ``in_flight`` is written by the loop thread
  only (every reply read decrements it, a thread's too); the commands threads
  wrote are counted in ``foreign``, written under the lock only. The commands
  in flight are their sum.

Whatever does not fit those conditions (a busy or broken link, TLS, a full
socket buffer) is not written and the caller goes through the loop as usual.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import random
import socket
import ssl
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import anyio.abc

from ._backend import Backend, Signal, ThreadSignal, current_backend
from ._config import ClientConfig
from ._exceptions import (
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    ResponseError,
    TransportError,
)
from ._resp import NEED_DATA, Push, Reader, encode_commands, make_reader
from ._resp._handshake import Handshake

__all__ = [
    "NOT_WRITTEN",
    "Connection",
    "ConnectionGroup",
    "ConnectionStatistics",
    "Request",
    "background_task_group",
]

logger = logging.getLogger("triopipe")

_READ_SIZE = 256 * 1024
# Largest write made by joining queued payloads.
_WRITE_BYTES = 1024 * 1024
# Dedicated connections kept open for reuse, per group.
_IDLE_DEDICATED = 4
# Bytes of replies a connection aims to have in flight. The server holds the
# replies it could not write yet in its client output buffer, which it may
# cap (``client-output-buffer-limit``) by disconnecting the client; so the
# commands in flight are bounded by this budget divided by the observed mean
# reply size, as well as by ``max_in_flight``.
_REPLY_BUDGET = 256 * 1024
# Largest execute_many window, in commands.
_WINDOW = 512
# Start by assuming large replies (a few small windows), like TCP's slow
# start; small replies raise the bound within a few reads.
_INITIAL_REPLY_SIZE = 1024.0
# Reconnect backoff: base * 2**(failures - 1), capped, times a jitter factor
# in [0.5, 1) so that many clients do not reconnect in lockstep.
_BACKOFF_BASE = 0.02
_BACKOFF_CAP = 1.0

# Errors that mean "the byte stream is gone"; anything else is a bug and
# propagates.
_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ssl.SSLError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *_STREAM_ERRORS)


class _NotWritten:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_WRITTEN"


#: :meth:`Connection.call_from_thread` wrote nothing: go through the loop.
NOT_WRITTEN: Any = _NotWritten()


class Request:
    """One submission: a single command, or a batch sharing one write.

    ``count`` replies are expected. A single command's reply lands in
    ``value``; a batch's (``many``) replies are appended to ``replies`` in
    order. A batch request still waiting in the send queue can grow
    (:meth:`Connection.extend`): ``extra`` holds the payloads added to it.
    """

    __slots__ = (
        "abandoned",
        "count",
        "done",
        "error",
        "extra",
        "payload",
        "replies",
        "signal",
        "taken",
        "value",
    )

    def __init__(self, payload: bytes, count: int, signal: Signal, many: bool) -> None:
        self.payload = payload
        self.count = count
        self.replies: list[Any] | None = [] if many or count != 1 else None
        self.extra: list[bytes] | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False
        # Set once the request left the send queue (written, or dropped).
        self.taken = False
        # Set with the signal: every reply is in, or the request failed.
        self.done = False
        self.signal = signal


@dataclasses.dataclass(frozen=True)
class ConnectionStatistics:
    """A snapshot of one connection, part of ``Client.statistics()``.

    Attributes:
        connected: a link is up and past its handshake.
        commands_in_flight: commands submitted whose replies have not been read
            (queued or written); abandoned ones count until their reply is read.
        commands_queued: commands not yet written to the socket.
        protocol: the RESP version the current link speaks (0 when none).
        connects: successful connects so far.
        commands_written: commands written to sockets so far.
        writes: socket writes so far; far fewer than ``commands_written``
            when concurrent commands share writes.
    """

    connected: bool
    commands_in_flight: int
    commands_queued: int
    protocol: int
    connects: int
    commands_written: int
    writes: int


class _Link:
    """One socket's lifetime: send queue, pending FIFO and their accounting."""

    __slots__ = (
        "capacity_waiters",
        "closed",
        "connected",
        "error",
        "foreign",
        "in_flight",
        "pending",
        "protocol",
        "queue",
        "ready",
        "scope",
        "sender_wakeup",
        "stream",
        "tail",
    )

    def __init__(self) -> None:
        self.queue: deque[Request] = deque()
        self.pending: deque[Request] = deque()
        # Commands queued or written whose replies have not been read: this
        # count, written by the loop thread only, plus ``foreign``, the
        # commands other threads wrote (see "Writes from other threads").
        self.in_flight = 0
        self.foreign = 0
        self.closed = False
        self.connected = False
        self.protocol = 0
        self.error: BaseException | None = None
        # Set while the sender sleeps; setting it wakes the sender. Changed to
        # None (the sender is woken) only under the connection's thread lock.
        self.sender_wakeup: Signal | None = None
        # The socket, once connected; only plain sockets take direct writes.
        self.stream: _Stream | None = None
        # Bytes of a direct write the kernel did not take; the sender writes
        # them before anything queued.
        self.tail: bytes | memoryview | None = None
        # Submitters waiting for room, in turn: (commands, event).
        self.capacity_waiters: deque[tuple[int, anyio.Event]] = deque()
        self.ready = anyio.Event()
        self.scope: anyio.CancelScope | None = None


class _SocketStream:
    """A connected non-blocking TCP or unix socket, driven with the loop's readiness waits."""

    __slots__ = ("_backend", "_drained", "_readable", "_yielded", "sock")

    def __init__(self, sock: socket.socket, backend: Backend) -> None:
        self.sock = sock
        self._backend = backend
        self._readable = backend.readable_watcher(sock)
        self._yielded = True
        self._drained = False

    def try_send(self, data: bytes) -> int:
        """Write what the kernel takes now, without waiting; 0 if it takes nothing."""
        try:
            return self.sock.send(data)
        except OSError:
            # Would block, or the socket is broken: either way the sender
            # takes over, and a broken socket breaks the link from there.
            return 0

    async def send(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        sock = self.sock
        while view:
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                await self._backend.wait_writable(sock)
                continue
            view = view[sent:]

    async def receive(self, max_bytes: int) -> bytes:
        sock = self.sock
        if self._drained:
            # The last read took everything there was: a recv now would most
            # likely fail (EAGAIN). Wait first, saving a system call per
            # round trip on the latency path.
            await self._readable.wait()
            self._yielded = True
        while True:
            try:
                data = sock.recv(max_bytes)
            except (BlockingIOError, InterruptedError):
                await self._readable.wait()
                self._yielded = True
                continue
            self._drained = len(data) < max_bytes
            if not data:
                raise anyio.EndOfStream
            # Never read twice in a row without yielding: a server streaming
            # replies must not starve the tasks those replies wake up.
            if not self._yielded:
                await self._backend.checkpoint()
            self._yielded = False
            return data

    def shutdown(self) -> None:
        """Send FIN now, synchronously; the descriptor is released by :meth:`aclose`.

        Closing would free the descriptor number while a task may still wait
        on it; shutting down tells the server at once and wakes any reader.
        """
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    async def aclose(self) -> None:
        self._readable.close()
        if self._backend.name == "trio":
            import trio

            trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


class _AnyioStream:
    """Any anyio byte stream (used for TLS): no synchronous writes."""

    __slots__ = ("_stream",)

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    def try_send(self, data: bytes) -> int:
        return 0

    def shutdown(self) -> None:
        """TLS needs an async close: nothing to do synchronously."""

    async def send(self, data: bytes | memoryview) -> None:
        await self._stream.send(bytes(data))

    async def receive(self, max_bytes: int) -> bytes:
        return await self._stream.receive(max_bytes)

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(self._stream)


_Stream = _SocketStream | _AnyioStream


async def _connect_socket(family: int, address: Any, backend: Backend) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            await backend.wait_writable(sock)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
    except BaseException:
        sock.close()
        raise
    return sock


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
    """

    def __init__(
        self,
        config: ClientConfig,
        task_group: anyio.abc.TaskGroup,
        *,
        on_push: Callable[[Push], None] | None = None,
        on_lost: Callable[[BaseException], None] | None = None,
        subscriber: bool = False,
    ) -> None:
        self._config = config
        self._task_group = task_group
        self._on_push = on_push
        self._on_lost = on_lost
        self._subscriber = subscriber
        self._handshake = Handshake(
            protocol=config.protocol,
            username=config.username,
            password=config.password,
            client_name=config.client_name,
            db=config.db,
        )
        self._max_in_flight = config.max_in_flight
        # Mean reply size (moving average) and the bounds it implies.
        self._reply_size = _INITIAL_REPLY_SIZE
        self._limit = config.max_in_flight
        self._window = 1
        self._update_limits()
        backend = self._backend = current_backend()
        self._new_signal = backend.new_signal
        self._checkpoint_if_cancelled = backend.checkpoint_if_cancelled
        self._link: _Link | None = None
        self._failures = 0
        self._connects = 0
        self._commands_written = 0
        self._writes = 0
        # Writes and commands written by other threads (under _thread_lock).
        self._foreign_writes = 0
        self._closed = False
        # Serialises socket writes with writers in other threads; see
        # "Writes from other threads". Never held across an await.
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Connection {self._config.address} in_flight={self.load}>"

    # -- submission (synchronous, checkpoint-free) ---------------------------

    @property
    def load(self) -> int:
        """Commands in flight on the current link; the group picks the lowest."""
        link = self._link
        return 0 if link is None else link.in_flight + link.foreign

    def has_capacity(self, count: int) -> bool:
        """Whether ``count`` more commands may be submitted without waiting."""
        link = self._link
        if link is None:
            return True
        in_flight = link.in_flight + link.foreign
        return in_flight == 0 or in_flight + count <= self._limit

    def submit(
        self, payload: bytes, count: int, *, many: bool = False, signal: Signal | None = None
    ) -> Request:
        """Queue ``count`` encoded commands as one request and return it.

        Never checkpoints: the caller cannot be cancelled between creating the
        request and queueing it. Callers respect :meth:`has_capacity` first.
        ``many`` makes the request collect a list of replies even for one
        command (and lets it grow with :meth:`extend`). ``signal`` replaces the
        loop's own signal (e.g. with one that completes a Future: ``triopipe.sync``).
        """
        if self._closed:
            raise anyio.ClosedResourceError
        link = self._link
        if link is None:
            link = self._start_link()
        request = Request(payload, count, self._new_signal() if signal is None else signal, many)
        link.in_flight += count
        if link.sender_wakeup is None:
            # The sender is awake (or being woken): it will take this. No
            # lock: only the loop thread, this one, makes the sender sleep.
            link.queue.append(request)
            return request
        with self._thread_lock:
            wakeup = link.sender_wakeup
            if wakeup is not None and not many and not link.pending and link.tail is None:
                # Idle link (the sender sleeps, so nothing is queued): write
                # now. Not for batches: their requests stay queued so they can
                # grow, and a batch whose block fails before yielding sends
                # nothing.
                stream = link.stream
                assert stream is not None
                written = stream.try_send(payload)
                if written:
                    request.taken = True
                    link.pending.append(request)
                    self._writes += 1
                    self._commands_written += count
                    if written < len(payload):
                        link.tail = memoryview(payload)[written:]  # no copy of a big payload
                        link.sender_wakeup = None
                        wakeup.set()
                    return request
            link.queue.append(request)
            if wakeup is not None:
                link.sender_wakeup = None
                wakeup.set()
        return request

    def call_from_thread(self, payload: bytes) -> Any:
        """Write one command from a thread other than the loop's and wait for its reply.

        For the blocking facade (see "Writes from other threads"): the
        calling thread writes the command itself when the link is up on a
        plain socket, its sender asleep, the kernel takes the bytes at once
        and there is room in flight; the receiver hands the reply back.
        Otherwise nothing is written and :data:`NOT_WRITTEN` is returned: go
        through the loop. An error reply is returned as its exception, like
        :meth:`call`; a broken link raises :class:`ConnectionLostError`.

        If the wait is interrupted (``KeyboardInterrupt``), the request is
        abandoned as a cancelled :meth:`call` is: its reply is read and dropped.
        """
        link = self._link
        if link is None or type(link.stream) is not _SocketStream:
            return NOT_WRITTEN
        signal = ThreadSignal()
        with self._thread_lock:
            wakeup = link.sender_wakeup
            if wakeup is None or link.closed or link.tail is not None or not self.has_capacity(1):
                return NOT_WRITTEN
            request = Request(payload, 1, signal, False)
            request.taken = True
            # Counted and queued before writing: the receiver may read the
            # reply before send() returns.
            link.foreign += 1
            link.pending.append(request)
            written = link.stream.try_send(payload)
            if not written:
                link.pending.pop()  # still last: nobody else appends now
                link.foreign -= 1
                return NOT_WRITTEN
            self._foreign_writes += 1
            if written < len(payload):
                # The kernel took part of it: the sender writes the rest
                # before anything else, as after a partial direct write.
                link.tail = memoryview(payload)[written:]
                link.sender_wakeup = None
                self._backend.run_sync_soon(wakeup.set)
        try:
            signal.wait_blocking()
        except BaseException:
            request.abandoned = True
            raise
        if request.error is not None:
            raise request.error
        return request.value

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
        return self._window

    def _observe_replies(self, size: int, count: int) -> None:
        # A moving average over socket reads: quick to follow a change of
        # workload, cheap (once per read, not per reply).
        self._reply_size += (size / count - self._reply_size) * 0.5
        self._update_limits()

    def _update_limits(self) -> None:
        self._limit = max(1, min(self._max_in_flight, int(_REPLY_BUDGET / self._reply_size)))
        # Half the limit, so that the next window is sent while the replies of
        # the previous one are still coming back.
        self._window = max(1, min(_WINDOW, self._limit // 2))

    def send_only(self, payload: bytes) -> None:
        """Queue commands whose answers come as push messages, not replies.

        For pub/sub (``SUBSCRIBE`` and friends): nothing waits for a reply.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        link = self._link or self._start_link()
        link.queue.append(Request(payload, 0, self._new_signal(), True))
        self._wake_sender(link)

    def _wake_sender(self, link: _Link) -> None:
        if link.sender_wakeup is not None:
            with self._thread_lock:
                wakeup = link.sender_wakeup
                link.sender_wakeup = None
            if wakeup is not None:
                wakeup.set()

    def extend(self, request: Request, payload: bytes) -> bool:
        """Add one encoded command to a ``many`` request that is still queued.

        Returns False, changing nothing, when the request has already been
        taken by the sender (or its link is gone): submit a new one then.
        Synchronous, like :meth:`submit`.
        """
        if request.taken:
            return False
        link = self._link
        if link is None:
            return False
        extra = request.extra
        if extra is None:
            request.extra = [payload]
        else:
            extra.append(payload)
        request.count += 1
        link.in_flight += 1
        return True

    async def wait_for_capacity(self, count: int) -> None:
        """Wait until :meth:`has_capacity` holds for ``count`` commands (backpressure).

        Waiters are woken in turn, as many as the freed room admits, not all
        at once: thousands of waiters would otherwise all wake on every read
        and all but a few go back to sleep. A waiter woken but beaten to the
        room keeps its turn.
        """
        first = True
        while not self.has_capacity(count):
            link = self._link
            assert link is not None
            waiter = (count, anyio.Event())
            if first:
                link.capacity_waiters.append(waiter)
                first = False
            else:
                link.capacity_waiters.appendleft(waiter)
            try:
                await waiter[1].wait()
            except BaseException:
                if waiter[1].is_set():
                    # Woken, then cancelled: the room it was given goes on.
                    _release_capacity(link, self._limit)
                else:
                    link.capacity_waiters.remove(waiter)
                raise

    @staticmethod
    async def wait(request: Request) -> Any:
        """Wait for a request's replies: the reply, or the list of replies.

        Cancelling this wait abandons the request: its replies are discarded
        when they arrive, and if it was not written yet it never will be.
        """
        try:
            await request.signal.wait()
        except BaseException:
            request.abandoned = True
            raise
        if request.error is not None:
            raise request.error
        return request.value if request.replies is None else request.replies

    async def call(self, payload: bytes, count: int) -> Any:
        """Submit (waiting for capacity first if needed) and wait for the reply.

        A caller whose scope is already cancelled submits nothing: without this
        check the sender, woken by the submission, could write the command
        before the cancellation is delivered to the waiter.
        """
        if not self.has_capacity(count):
            await self.wait_for_capacity(count)
        else:
            await self._checkpoint_if_cancelled()
        # Connection.wait(), inlined: this is every command's hot path.
        request = self.submit(payload, count)
        try:
            await request.signal.wait()
        except BaseException:
            request.abandoned = True
            raise
        if request.error is not None:
            raise request.error
        return request.value if request.replies is None else request.replies

    async def checkpoint_if_cancelled(self) -> None:
        """Raise if the caller's scope is cancelled; do not yield otherwise."""
        await self._checkpoint_if_cancelled()

    async def connect(self) -> None:
        """Make sure a link is up and past its handshake, or raise why not."""
        if self._closed:
            raise anyio.ClosedResourceError
        link = self._link or self._start_link()
        await link.ready.wait()
        if link.error is not None and not link.connected:
            raise _copy_error(link.error)

    def statistics(self) -> ConnectionStatistics:
        """A snapshot of this connection's state."""
        link = self._link
        return ConnectionStatistics(
            connected=link is not None and link.connected and not link.closed,
            commands_in_flight=0 if link is None else link.in_flight + link.foreign,
            commands_queued=0 if link is None else sum(r.count for r in link.queue),
            protocol=0 if link is None else link.protocol,
            connects=self._connects,
            commands_written=self._commands_written + self._foreign_writes,
            writes=self._writes + self._foreign_writes,
        )

    def close(self) -> None:
        """Refuse new commands and fail the pending ones (the client is closing)."""
        self._closed = True
        link = self._link
        if link is not None:
            self._break(link, ConnectionLostError("the client was closed", sent=True))

    # -- the link's life ------------------------------------------------------

    def _start_link(self) -> _Link:
        link = _Link()
        self._task_group.start_soon(
            self._run_link, link, name=f"triopipe link {self._config.address}"
        )
        # Only once its task exists: a link nobody runs would hold its
        # requests forever.
        self._link = link
        return link

    def _backoff_delay(self) -> float:
        if self._failures == 0:
            return 0.0
        delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0 ** (self._failures - 1))
        return delay * random.uniform(0.5, 1.0)

    async def _run_link(self, link: _Link) -> None:
        stream: _Stream | None = None
        try:
            with anyio.CancelScope() as scope:
                link.scope = scope
                delay = self._backoff_delay()
                if delay:
                    await anyio.sleep(delay)
                reader = make_reader(
                    decode=self._config.decode, max_bulk_length=self._config.max_bulk_length
                )
                try:
                    with anyio.fail_after(self._config.connect_timeout):
                        stream = await self._open_stream()
                        link.protocol = await self._run_handshake(stream, reader)
                        link.stream = stream
                except (ResponseError, ProtocolError) as exc:
                    self._failures += 1
                    self._break(link, exc)
                    return
                except _CONNECT_ERRORS as exc:
                    self._failures += 1
                    self._break(link, _connect_error(self._config.address, exc))
                    return
                self._failures = 0
                self._connects += 1
                link.connected = True
                link.ready.set()
                logger.debug("connected to %s (RESP%d)", self._config.address, link.protocol)
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(self._send_loop, stream, link)
                    task_group.start_soon(self._receive_loop, stream, reader, link)
        finally:
            # Reached on a break (already handled), on client close, or when
            # the client's task group is cancelled: fail whatever is left.
            self._break(link, ConnectionLostError("the client was closed", sent=True))
            if stream is not None:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()

    async def _open_stream(self) -> _Stream:
        config = self._config
        if config.tls:
            context = config.ssl_context or ssl.create_default_context()
            return _AnyioStream(
                await anyio.connect_tcp(
                    config.host,
                    config.port,
                    ssl_context=context,
                    tls_hostname=config.host,
                    tls_standard_compatible=False,
                )
            )
        if config.unix_path is not None:
            sock = await _connect_socket(socket.AF_UNIX, config.unix_path, self._backend)
            return _SocketStream(sock, self._backend)
        addresses = await anyio.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
        error: OSError | None = None
        for family, _, _, _, address in addresses:
            try:
                sock = await _connect_socket(family, address, self._backend)
            except OSError as exc:
                error = exc
                continue
            return _SocketStream(sock, self._backend)
        raise error or OSError(f"no address found for {config.host}")

    async def _run_handshake(self, stream: _Stream, reader: Reader) -> int:
        handshake = self._handshake
        hello = handshake.first_batch_uses_hello
        while True:
            commands = handshake.commands(hello=hello)
            if not commands:
                return 2
            await stream.send(encode_commands(commands))
            replies = await _read_replies(stream, reader, len(commands))
            if reader.next_reply() is not NEED_DATA or reader.has_partial():
                # More than the handshake's replies: a reply nobody asked for,
                # which would otherwise be handed to the first user command.
                raise ProtocolError("the server sent more replies than the handshake asked for")
            result = handshake.check(replies, hello=hello)
            if result is not None:
                return result.protocol
            hello = False

    def _break(self, link: _Link, error: BaseException) -> None:
        """Fail every request of ``link`` at once and detach it. Idempotent.

        Synchronous on purpose: from the moment a link is known to be broken no
        request can be queued on it, because new submissions see it detached.
        """
        with self._thread_lock:
            # Under the lock: a thread appending to ``pending`` either did so
            # before (its request is failed below) or sees the link closed.
            if link.closed:
                return
            link.closed = True
        link.error = error
        if self._link is link:
            self._link = None
        if link.stream is not None:
            # The server learns at once that nobody is waiting any more (a
            # blocking command stops blocking for a caller that is gone).
            link.stream.shutdown()
        if link.connected:
            logger.debug("connection to %s lost: %s", self._config.address, error)
        for sent, requests in ((True, link.pending), (False, link.queue)):
            while requests:
                request = requests.popleft()
                request.taken = True
                request.error = _request_error(error, sent=sent)
                request.done = True
                request.signal.set()
        link.in_flight = link.foreign = 0
        for _, waiting in link.capacity_waiters:
            waiting.set()
        link.capacity_waiters.clear()
        if link.sender_wakeup is not None:
            link.sender_wakeup.set()
        link.ready.set()
        if link.scope is not None:
            link.scope.cancel()
        if self._on_lost is not None and not self._closed:
            self._on_lost(error)

    async def _send_loop(self, stream: _Stream, link: _Link) -> None:
        queue = link.queue
        pending = link.pending
        new_signal = self._new_signal
        try:
            while not link.closed:
                tail = link.tail
                if tail is not None:
                    link.tail = None
                    await stream.send(tail)
                    continue
                if not queue:
                    wakeup = link.sender_wakeup = new_signal()
                    await wakeup.wait()
                    continue
                # Everything queued goes out in one write. A request abandoned
                # before being written is dropped here: it is never sent.
                chunks = []
                written = 0
                while queue:
                    request = queue.popleft()
                    request.taken = True
                    if request.abandoned:
                        link.in_flight -= request.count
                        _release_capacity(link, self._limit)
                        continue
                    if request.count:
                        pending.append(request)
                    chunks.append(request.payload)
                    if request.extra is not None:
                        chunks += request.extra
                    written += request.count
                if chunks:
                    self._commands_written += written
                    for data in _coalesced(chunks):
                        self._writes += 1
                        await stream.send(data)
        except _STREAM_ERRORS as exc:
            self._break(
                link,
                ConnectionLostError(
                    f"writing to {self._config.address} failed: {exc!r}", sent=True
                ),
            )

    async def _receive_loop(self, stream: _Stream, reader: Reader, link: _Link) -> None:
        pending = link.pending
        read_replies = reader.read_replies
        on_push = self._on_push
        unattributed = 0  # bytes read since the last complete reply
        try:
            while not link.closed:
                data = await stream.receive(_READ_SIZE)
                unattributed += len(data)
                replies_read = read_replies(data)
                if replies_read:
                    self._observe_replies(unattributed, len(replies_read))
                    unattributed = 0
                for reply in replies_read:
                    if type(reply) is Push:
                        if on_push is not None:
                            on_push(reply)
                        continue
                    if not pending:
                        if self._subscriber and on_push is not None:
                            on_push(Push(reply) if isinstance(reply, list) else Push([reply]))
                            continue
                        raise ProtocolError(
                            "the server sent a reply with no command waiting for it"
                        )
                    request = pending[0]
                    replies = request.replies
                    if replies is None:
                        pending.popleft()
                        link.in_flight -= 1
                        request.value = reply
                        request.done = True
                        request.signal.set()
                    else:
                        replies.append(reply)
                        if len(replies) == request.count:
                            pending.popleft()
                            link.in_flight -= request.count
                            request.done = True
                            request.signal.set()
                if link.capacity_waiters:
                    _release_capacity(link, self._limit)
        except anyio.EndOfStream:
            self._break(
                link,
                ConnectionLostError(f"{self._config.address} closed the connection", sent=True),
            )
        except ProtocolError as exc:
            self._break(link, exc)
        except _STREAM_ERRORS as exc:
            self._break(
                link,
                ConnectionLostError(
                    f"reading from {self._config.address} failed: {exc!r}", sent=True
                ),
            )


@asynccontextmanager
async def background_task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group for connection tasks, cancelled when the block exits.

    Its tasks never raise (a connection records its failures and fails its
    requests instead), so whatever the block raises, cancellation included,
    propagates as itself rather than wrapped in an exception group: users of
    ``open_client`` see their own exceptions.
    """
    error: BaseException | None = None
    async with anyio.create_task_group() as task_group:
        try:
            yield task_group
        except BaseException as exc:
            error = exc
        finally:
            task_group.cancel_scope.cancel()
    if error is not None:
        raise error


class ConnectionGroup:
    """``config.connections`` connections to one server; commands go to the least loaded.

    Besides the shared, multiplexed connections, the group lends *dedicated*
    connections (:meth:`reserve`) to what must hold a connection alone:
    transactions and blocking commands.
    """

    def __init__(
        self,
        config: ClientConfig,
        task_group: anyio.abc.TaskGroup,
        *,
        on_push: Callable[[Push], None] | None = None,
    ) -> None:
        self.config = config
        self._task_group = task_group
        self.connections = [
            Connection(config, task_group, on_push=on_push) for _ in range(config.connections)
        ]
        self._single = self.connections[0] if len(self.connections) == 1 else None
        self._idle: list[Connection] = []
        self._reserved: set[Connection] = set()
        self.closed = False

    @asynccontextmanager
    async def reserve(self) -> AsyncIterator[Connection]:
        """Lend a dedicated connection for the block's duration.

        It goes back to the idle pool when the block ends normally; when the
        block raises or is cancelled the connection's state is unknown (a
        blocking command still waiting, keys still watched), so it is closed.
        """
        if self.closed:
            raise anyio.ClosedResourceError
        connection = self._idle.pop() if self._idle else Connection(self.config, self._task_group)
        self._reserved.add(connection)
        clean = False
        try:
            yield connection
            clean = True
        finally:
            self._reserved.discard(connection)
            if clean and not self.closed and len(self._idle) < _IDLE_DEDICATED:
                self._idle.append(connection)
            else:
                connection.close()

    def choose(self) -> Connection:
        """The connection with the fewest commands in flight."""
        if self.closed:
            raise anyio.ClosedResourceError
        single = self._single
        if single is not None:
            return single
        return min(self.connections, key=_load)

    async def connect(self) -> None:
        """Connect every connection of the group in parallel, or raise the first failure."""
        errors: list[BaseException] = []

        async def connect_one(connection: Connection) -> None:
            try:
                await connection.connect()
            except TransportError as exc:
                errors.append(exc)
            except ResponseError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as task_group:
            for connection in self.connections:
                task_group.start_soon(connect_one, connection)
        if errors:
            raise errors[0]

    @asynccontextmanager
    async def subscriber(
        self,
        on_push: Callable[[Push], None],
        on_lost: Callable[[BaseException], None],
    ) -> AsyncIterator[Connection]:
        """A new connection in pub/sub mode for the block's duration; closed after."""
        if self.closed:
            raise anyio.ClosedResourceError
        connection = Connection(
            self.config, self._task_group, on_push=on_push, on_lost=on_lost, subscriber=True
        )
        self._reserved.add(connection)
        try:
            yield connection
        finally:
            self._reserved.discard(connection)
            connection.close()

    def close(self) -> None:
        """Refuse new commands and fail every pending one."""
        self.closed = True
        for connection in [*self.connections, *self._idle, *self._reserved]:
            connection.close()
        self._idle.clear()

    def statistics(self) -> list[ConnectionStatistics]:
        """One snapshot per connection."""
        return [connection.statistics() for connection in self.connections]


def _coalesced(chunks: list[bytes]) -> Iterator[bytes]:
    """Writes for ``chunks``: joined up to ``_WRITE_BYTES``; a big chunk goes alone.

    Joining many small payloads saves system calls; joining big ones would
    only copy megabytes for nothing.
    """
    if len(chunks) == 1:
        yield chunks[0]
        return
    if sum(map(len, chunks)) <= _WRITE_BYTES:
        yield b"".join(chunks)
        return
    group: list[bytes] = []
    size = 0
    for chunk in chunks:
        if group and size + len(chunk) > _WRITE_BYTES:
            yield group[0] if len(group) == 1 else b"".join(group)
            group, size = [], 0
        group.append(chunk)
        size += len(chunk)
    if group:
        yield group[0] if len(group) == 1 else b"".join(group)


def _release_capacity(link: _Link, max_in_flight: int) -> None:
    """Wake the submitters waiting for room, in turn, as many as the room admits.

    By :meth:`Connection.has_capacity`'s rule: a request fits if it leaves
    the link within ``max_in_flight``, or if nothing is in flight at all.
    """
    waiters = link.capacity_waiters
    in_flight = link.in_flight + link.foreign
    while waiters:
        count, event = waiters[0]
        if in_flight and in_flight + count > max_in_flight:
            return
        waiters.popleft()
        event.set()
        in_flight += count


def _load(connection: Connection) -> int:
    return connection.load


async def _read_replies(stream: _Stream, reader: Reader, count: int) -> list[Any]:
    """Read exactly ``count`` replies (used by the handshake only)."""
    replies: list[Any] = []
    while True:
        reply = reader.next_reply()
        if reply is NEED_DATA:
            reader.feed(await stream.receive(_READ_SIZE))
            continue
        if type(reply) is not Push:
            replies.append(reply)
            if len(replies) == count:
                return replies


def _connect_error(address: str, exc: BaseException) -> ConnectError:
    if isinstance(exc, TimeoutError):
        error = ConnectError(f"timed out connecting to {address}")
    else:
        error = ConnectError(f"could not connect to {address}: {exc}")
    error.__cause__ = exc
    return error


def _request_error(error: BaseException, *, sent: bool) -> BaseException:
    """A fresh exception per request: one instance raised in many tasks tangles tracebacks."""
    if isinstance(error, ConnectionLostError):
        return ConnectionLostError(str(error), sent=sent)
    if isinstance(error, ProtocolError):
        if not sent:
            return ConnectionLostError(f"connection closed before sending: {error}", sent=False)
        copy = ProtocolError(str(error))
        copy.__cause__ = error
        return copy
    return _copy_error(error)


def _copy_error(error: BaseException) -> BaseException:
    if isinstance(error, ResponseError):
        copy: BaseException = type(error)(error.code, error.message)
    elif isinstance(error, ConnectError):
        copy = ConnectError(str(error))
    else:
        return error
    copy.__cause__ = error.__cause__
    return copy
