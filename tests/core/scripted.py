"""Support code (not tests): a scripted in-memory stream and the connection around it.

Theory of operation
-------------------

:class:`ScriptedStream` is a :class:`~triopipe._streams.Stream` whose two far
ends are the test itself:

- the *kernel*: how many bytes each write takes. ``room`` is what the kernel
  takes before it blocks (None: no limit), ``chunk`` the most one call takes.
  :meth:`ScriptedStream.try_send` takes what fits and never waits; a
  :meth:`ScriptedStream.send_some` that finds no room waits until the test
  gives some (:meth:`ScriptedStream.allow`), breaks the writes
  (:meth:`ScriptedStream.break_writes`) or the stream is shut down. Every call
  is recorded (``calls``), and every byte taken is in ``written``.
- the *server*: the test makes bytes readable with :meth:`ScriptedStream.feed`
  (each call is one chunk, one ``receive``), ends the stream with
  :meth:`ScriptedStream.eof` or breaks the reads. With a ``respond`` function
  the server answers each complete command the kernel took (see
  :func:`echo`), at once, even when a worker thread wrote it.

With ``tls=True`` the stream behaves like :class:`~triopipe._streams.AnyioStream`:
no synchronous writes, each ``send_some`` is all or nothing for its chunk and
its bytes are ``in_doubt`` while the call runs, and ``shutdown`` does nothing.

Waiting is on conditions, never on time: :meth:`ScriptedStream.until` waits for
a predicate over the stream's state, woken by every change (changes made by
worker threads are posted to the loop), bounded by ``anyio.fail_after``.

:class:`StreamFactory` is the ``open_stream`` a :class:`~triopipe._connection.Connection`
is given: it makes a new stream per link, or fails connects as told.
:func:`scripted_connection` runs a connection on it in a task group of its own.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from triopipe._backend import current_backend
from triopipe._config import ClientConfig
from triopipe._connection import Connection
from triopipe._resp import NEED_DATA, Push, encode_command, make_reader

__all__ = [
    "WAIT",
    "Recorder",
    "ScriptedStream",
    "StreamFactory",
    "bulk",
    "echo",
    "echo_payload",
    "idle_connection",
    "in_thread",
    "push_frame",
    "scripted_connection",
    "sender_asleep",
    "wait_until",
    "waiting",
]

#: Seconds any wait of these tests may take before it counts as a hang.
WAIT = 5.0

Responder = Callable[[list[bytes]], bytes | None]


def echo_payload(token: str | bytes) -> bytes:
    """The encoded ``ECHO token``: a command whose reply names its sender."""
    return encode_command(("ECHO", token))


def bulk(value: str | bytes) -> bytes:
    """``value`` as a RESP bulk string."""
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(data), data)


def push_frame(*items: str | bytes) -> bytes:
    """A RESP3 push frame (``>``) of bulk strings, e.g. a pub/sub message."""
    return b">%d\r\n" % len(items) + b"".join(bulk(item) for item in items)


def echo(command: list[bytes]) -> bytes | None:
    """A server that answers ``ECHO x`` with ``x``, ``PING`` with ``PONG``, the rest with OK."""
    name = command[0].upper()
    if name == b"ECHO":
        return bulk(command[1])
    if name == b"PING":
        return b"+PONG\r\n"
    return b"+OK\r\n"


class ScriptedStream:
    """A stream whose kernel and server are scripted by the test (see the module docstring).

    Args:
        room: bytes the kernel takes before blocking; None for no limit.
        chunk: the most bytes one write call takes; None for no limit.
        tls: behave like a TLS stream (no direct writes, ``in_doubt``).
        respond: the server: given each complete command written, the bytes
            of its answer (or None for no answer).
    """

    def __init__(
        self,
        *,
        room: int | None = None,
        chunk: int | None = None,
        tls: bool = False,
        respond: Responder | None = None,
    ) -> None:
        self.direct_writes = not tls
        self.in_doubt = 0
        self.tls = tls
        self.room = room
        self.chunk = chunk
        self.respond = respond
        #: Every byte the kernel took, in order.
        self.written = bytearray()
        #: Every write call: ("try_send" or "send_some", bytes taken, thread id).
        self.calls: list[tuple[str, int, int]] = []
        #: The commands parsed from ``written`` so far.
        self.commands: list[list[bytes]] = []
        #: A ``send_some`` call waits for room.
        self.send_blocked = False
        self.shut_down = False
        self.closed = False
        self._parser = make_reader()
        self._inbox: deque[bytes] = deque()
        self._eof = False
        self._read_error: BaseException | None = None
        self._write_error: BaseException | None = None
        self._lock = threading.Lock()
        self._loop_thread = threading.get_ident()
        self._run_sync_soon = current_backend().run_sync_soon
        self._changed = anyio.Event()

    def __repr__(self) -> str:
        return f"<ScriptedStream written={len(self.written)} calls={len(self.calls)}>"

    # -- what the test scripts ------------------------------------------------------

    def allow(self, count: int | None = None) -> None:
        """Let the kernel take ``count`` more bytes (None: any number from now on)."""
        with self._lock:
            if count is None or self.room is None:
                self.room = None if count is None else self.room
            else:
                self.room += count
        self._notify()

    def block(self) -> None:
        """Make the kernel take nothing more until :meth:`allow`."""
        with self._lock:
            self.room = 0

    def feed(self, data: bytes) -> None:
        """Make ``data`` readable, as one chunk for one ``receive``."""
        with self._lock:
            self._inbox.append(data)
        self._notify()

    def eof(self) -> None:
        """The server closes the connection: reads end once the inbox is empty."""
        self._eof = True
        self._notify()

    def break_reads(self, error: BaseException) -> None:
        """The next (or current) ``receive`` raises ``error``."""
        self._read_error = error
        self._notify()

    def break_writes(self, error: BaseException) -> None:
        """The next (or current) ``send_some`` raises ``error``; ``try_send`` takes nothing."""
        self._write_error = error
        self._notify()

    # -- observing ------------------------------------------------------------------

    @property
    def sends(self) -> list[tuple[str, int]]:
        """The write calls that took bytes: (method, bytes taken)."""
        return [(method, taken) for method, taken, _ in self.calls if taken]

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checked after every change of the stream."""
        with anyio.fail_after(WAIT):
            while not predicate():
                await self._changed.wait()

    async def wait_commands(self, count: int) -> list[list[bytes]]:
        """Wait until the kernel took ``count`` complete commands; return them all."""
        await self.until(lambda: len(self.commands) >= count)
        return self.commands

    async def wait_written(self, count: int) -> bytes:
        """Wait until the kernel took ``count`` bytes; return all it took."""
        await self.until(lambda: len(self.written) >= count)
        return bytes(self.written)

    # -- the Stream protocol ----------------------------------------------------------

    def try_send(self, data: bytes | memoryview) -> int:
        """Take what the kernel takes now (maybe nothing); never wait."""
        if self.tls or self._write_error is not None or self.shut_down or self.closed:
            self._record("try_send", b"")
            return 0
        return self._take("try_send", data, all_or_nothing=False)

    async def send_some(self, data: bytes | memoryview) -> int:
        """Take at least one byte, waiting for room; raise if the writes are broken."""
        if self.tls:
            # An anyio TLS stream: the chunk is in doubt from the start of the call.
            self.in_doubt = min(len(data), self.chunk or len(data))
            self._notify()
            await anyio.lowlevel.checkpoint()
        while True:
            if self._write_error is not None:
                raise self._write_error
            if self.closed:
                raise anyio.ClosedResourceError
            if self.shut_down:
                raise BrokenPipeError("the stream was shut down")
            taken = self._take("send_some", data, all_or_nothing=self.tls)
            if taken:
                self.in_doubt = 0
                return taken
            self.send_blocked = True
            self._notify()
            try:
                await self._changed.wait()
            finally:
                self.send_blocked = False

    async def receive(self, max_bytes: int) -> bytes:
        """Return the next chunk the server sent (at most ``max_bytes``), waiting for one."""
        await anyio.lowlevel.checkpoint()
        while True:
            if self._read_error is not None:
                raise self._read_error
            if self.closed:
                raise anyio.ClosedResourceError
            with self._lock:
                if self._inbox:
                    data = self._inbox.popleft()
                    if len(data) > max_bytes:
                        self._inbox.appendleft(data[max_bytes:])
                        data = data[:max_bytes]
                    return data
            if self._eof or (self.shut_down and not self.tls):
                raise anyio.EndOfStream
            await self._changed.wait()

    def shutdown(self) -> None:
        """Like a socket's SHUT_RDWR: later writes fail, reads end. A TLS stream does nothing."""
        if not self.tls:
            self.shut_down = True
            self._notify()

    async def aclose(self) -> None:
        """Mark the stream closed."""
        self.closed = True
        self._notify()
        await anyio.lowlevel.checkpoint()

    # -- the machinery ----------------------------------------------------------------

    def _take(self, method: str, data: bytes | memoryview, *, all_or_nothing: bool) -> int:
        with self._lock:
            want = len(data) if self.chunk is None else min(len(data), self.chunk)
            room = want if self.room is None else self.room
            taken = want if room >= want else (0 if all_or_nothing else room)
            if self.room is not None:
                self.room -= taken
            piece = bytes(data[:taken])
            self._record(method, piece)
            answer = self._parse(piece)
            if answer:
                self._inbox.append(answer)
        if taken:
            self._notify()
        return taken

    def _record(self, method: str, piece: bytes) -> None:
        self.calls.append((method, len(piece), threading.get_ident()))
        self.written += piece

    def _parse(self, piece: bytes) -> bytes:
        """Commands completed by ``piece``, and the server's answers to them."""
        if not piece:
            return b""
        self._parser.feed(piece)
        answers = []
        while (command := self._parser.next_reply()) is not NEED_DATA:
            assert isinstance(command, list), command
            self.commands.append(command)
            if self.respond is not None and (answer := self.respond(command)) is not None:
                answers.append(answer)
        return b"".join(answers)

    def _notify(self) -> None:
        """Wake every wait of the stream; from another thread, through the loop."""
        if threading.get_ident() != self._loop_thread:
            self._run_sync_soon(self._notify)
            return
        changed, self._changed = self._changed, anyio.Event()
        changed.set()


class StreamFactory:
    """The ``open_stream`` of a scripted connection: a new :class:`ScriptedStream` per link.

    Args:
        options: passed to every new stream.

    Attributes:
        streams: every stream made, in order.
        connect_errors: errors to raise instead of connecting, one per attempt.
        hang: connects wait until the connection gives up (its connect timeout).
    """

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.streams: list[ScriptedStream] = []
        self.connect_errors: deque[BaseException] = deque()
        self.attempts = 0
        self.hang = False
        self._made: anyio.Event | None = None

    async def __call__(self) -> ScriptedStream:
        self.attempts += 1
        await anyio.lowlevel.checkpoint()
        if self.hang:
            await anyio.sleep_forever()
        if self.connect_errors:
            raise self.connect_errors.popleft()
        stream = ScriptedStream(**self.options)
        self.streams.append(stream)
        if self._made is not None:
            self._made.set()
        return stream

    @property
    def stream(self) -> ScriptedStream:
        """The latest stream."""
        return self.streams[-1]

    async def wait_streams(self, count: int) -> ScriptedStream:
        """Wait until ``count`` streams were made; return the latest."""
        with anyio.fail_after(WAIT):
            while len(self.streams) < count:
                self._made = anyio.Event()
                await self._made.wait()
        return self.streams[-1]


@asynccontextmanager
async def scripted_connection(
    factory: StreamFactory | None = None,
    *,
    on_push: Callable[[Push], None] | None = None,
    on_lost: Callable[[BaseException], None] | None = None,
    subscriber: bool = False,
    **config: Any,
) -> AsyncIterator[Connection]:
    """A :class:`Connection` on ``factory``'s streams, closed on exit.

    ``config`` goes to :class:`ClientConfig`; ``protocol=2`` by default, whose
    handshake (no password, name or db) sends nothing. The whole block is
    bounded: anything still waiting after ``2 * WAIT`` seconds fails the test.
    """
    config.setdefault("protocol", 2)
    # A bug that leaves a caller waiting fails the test here, not at pytest's timeout.
    with anyio.fail_after(2 * WAIT):
        async with anyio.create_task_group() as task_group:
            connection = Connection(
                ClientConfig(**config),
                task_group,
                on_push=on_push,
                on_lost=on_lost,
                subscriber=subscriber,
                open_stream=factory or StreamFactory(),
            )
            try:
                yield connection
            finally:
                connection.close()


@asynccontextmanager
async def idle_connection(
    factory: StreamFactory, **options: Any
) -> AsyncIterator[tuple[Connection, ScriptedStream]]:
    """A scripted connection whose link is up, with its sender asleep: a submit may write.

    ``options`` as for :func:`scripted_connection`.
    """
    async with scripted_connection(factory, **options) as connection:
        await connection.connect()
        await wait_until(lambda: sender_asleep(connection))
        yield connection, factory.stream


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` holds, re-checking at every checkpoint.

    For conditions no event announces (a task's progress), bounded like
    every wait here.
    """
    with anyio.fail_after(WAIT):
        while not predicate():
            await anyio.lowlevel.checkpoint()


async def in_thread(function: Callable[..., Any], *args: Any, bound: float = WAIT) -> Any:
    """Run a blocking ``function(*args)`` in a worker thread, bounded like every wait here.

    On timeout the thread is abandoned and the test fails; closing the
    connection then fails the thread's request, which releases the thread.
    ``bound`` (seconds) is for a thread making many calls in a row.
    """
    with anyio.fail_after(bound):
        return await anyio.to_thread.run_sync(function, *args, abandon_on_cancel=True)


def sender_asleep(connection: Connection) -> bool:
    """Whether the connection's link is up and its sender sleeps (the link's private state).

    Only then may a submitter write without the sender: tests of that path
    wait for this first.
    """
    link = connection._link
    return link is not None and link.sender_wakeup is not None


def waiting(connection: Connection) -> int:
    """Submitters waiting for room on the connection's link (its pipeline's private state)."""
    link = connection._link
    return 0 if link is None else len(link.pipeline.waiters)


class Recorder:
    """Collects what a callback receives (push frames, lost-link errors)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        self.items.append(item)
