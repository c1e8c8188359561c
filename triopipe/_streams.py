"""Byte streams to a server: the sockets themselves.

Theory of operation
-------------------

A connection talks to its server through a :class:`Stream`, and through
nothing else, so that tests can hand it a scripted one. Two kinds exist:

- :class:`SocketStream`: a plain TCP or unix socket, non-blocking, driven
  directly with the loop's readiness waits. ``sock.send`` either takes some
  bytes and says how many, or raises having taken none, so a writer always
  knows exactly which bytes reached the kernel. It also takes synchronous
  writes (:meth:`SocketStream.try_send`), which let an idle link write a lone
  command without waking its sender task.
- :class:`AnyioStream`: any anyio byte stream (used for TLS). Its ``send``
  is all or nothing from here, so writes go in chunks of at most
  ``_TLS_CHUNK`` bytes and the chunk being sent is *in doubt* while the call
  runs: if it is interrupted, its bytes may or may not have left.

:func:`open_stream` connects one, as a client's config says, and
:func:`run_handshake` makes the first exchange on it.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Protocol

import anyio
import anyio.abc

from ._backend import Backend
from ._config import ClientConfig
from ._exceptions import ProtocolError
from ._resp import NEED_DATA, Push, Reader, encode_commands
from ._resp._handshake import Handshake

__all__ = [
    "STREAM_ERRORS",
    "AnyioStream",
    "SocketStream",
    "Stream",
    "keep_alive",
    "open_stream",
    "run_handshake",
    "send_all",
]

# Errors that mean "the byte stream is gone"; anything else is a bug and
# propagates.
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ssl.SSLError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)
# Largest TLS write: what is in doubt if a TLS write is interrupted.
_TLS_CHUNK = 64 * 1024
_HANDSHAKE_READ = 64 * 1024


class Stream(Protocol):
    """What a connection needs of its byte stream.

    Attributes:
        direct_writes: :meth:`try_send` may take bytes (else it always
            returns 0 and every write goes through :meth:`send_some`).
        in_doubt: bytes of a :meth:`send_some` call under way that may have
            left if the call is interrupted; 0 when the stream always knows.
    """

    direct_writes: bool
    in_doubt: int

    def try_send(self, data: bytes | memoryview) -> int:
        """Write what the kernel takes now, without waiting; 0 if it takes nothing."""

    async def send_some(self, data: bytes | memoryview) -> int:
        """Write at least one byte of ``data``, waiting for room; return how many went."""

    async def receive(self, max_bytes: int) -> bytes | memoryview:
        """Read at most ``max_bytes``, waiting for some; raise ``anyio.EndOfStream`` at EOF.

        The bytes returned may be a view of the stream's own buffer, valid
        until the next call: use them (feed a reader, which copies) at once.
        """

    def shutdown(self) -> None:
        """Tell the peer at once that nothing more will be read or written."""

    async def aclose(self) -> None:
        """Release the stream."""


async def send_all(stream: Stream, data: bytes) -> None:
    """Write all of ``data`` (the handshake's writes)."""
    view = memoryview(data)
    while view:
        view = view[await stream.send_some(view) :]


async def run_handshake(
    stream: Stream,
    reader: Reader,
    handshake: Handshake,
    on_round_trip: Callable[[float], None] | None = None,
) -> int:
    """Exchange ``handshake``'s commands on a new stream; return the protocol it settled on.

    ``on_round_trip`` is told how long the first exchange took, if there was
    one: a round trip on an empty link, which sizes the connection's
    pipeline (see ``ReplyBudget``).

    Raises:
        ResponseError: the server refused (e.g. :class:`~triopipe.AuthenticationError`).
        ProtocolError: the server sent more replies than asked for: one would
            otherwise be handed to the first user command.
    """
    hello = handshake.first_batch_uses_hello
    while True:
        commands = handshake.commands(hello=hello)
        if not commands:
            return 2
        started = time.monotonic()
        await send_all(stream, encode_commands(commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = reader.next_reply()
            if reply is NEED_DATA:
                reader.feed(await stream.receive(_HANDSHAKE_READ))
            elif type(reply) is not Push:
                replies.append(reply)
        if on_round_trip is not None:
            on_round_trip(time.monotonic() - started)
            on_round_trip = None
        if reader.next_reply() is not NEED_DATA or reader.has_partial():
            raise ProtocolError("the server sent more replies than the handshake asked for")
        result = handshake.check(replies, hello=hello)
        if result is not None:
            return result.protocol
        hello = False


class SocketStream:
    """A connected non-blocking TCP or unix socket, driven with the loop's readiness waits."""

    __slots__ = ("_backend", "_buffer", "_drained", "_readable", "_view", "_yielded", "sock")

    direct_writes = True
    in_doubt = 0

    def __init__(self, sock: socket.socket, backend: Backend) -> None:
        self.sock = sock
        self._backend = backend
        self._readable = backend.readable_watcher(sock)
        self._yielded = True
        self._drained = False
        # One read buffer for the stream's life: reading into it allocates
        # nothing, where recv(256 KiB) would allocate (and often mmap, then
        # shrink and free) that much for every read, most of a round trip's
        # cost on the latency path.
        self._buffer = bytearray()
        self._view = memoryview(self._buffer)

    def try_send(self, data: bytes | memoryview) -> int:
        """Write what the kernel takes now, without waiting; 0 if it takes nothing."""
        try:
            return self.sock.send(data)
        except OSError:
            # Would block, or the socket is broken: either way the sender
            # takes over, and a broken socket breaks the link from there.
            return 0

    async def send_some(self, data: bytes | memoryview) -> int:
        """Write at least one byte of ``data``, waiting for room; return how many went."""
        sock = self.sock
        while True:
            try:
                return sock.send(data)
            except (BlockingIOError, InterruptedError):  # noqa: PERF203 - the loop is the retry
                await self._backend.wait_writable(sock)

    async def receive(self, max_bytes: int) -> bytes | memoryview:
        """Read at most ``max_bytes``, waiting for some; raise ``anyio.EndOfStream`` at EOF.

        Returns a view of the stream's buffer, valid until the next call.
        """
        sock = self.sock
        if len(self._buffer) != max_bytes:
            self._buffer = bytearray(max_bytes)
            self._view = memoryview(self._buffer)
        if self._drained:
            # The last read took everything there was: a recv now would most
            # likely fail (EAGAIN). Wait first, saving a system call per
            # round trip on the latency path.
            await self._readable.wait()
            self._yielded = True
        while True:
            try:
                count = sock.recv_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                await self._readable.wait()
                self._yielded = True
                continue
            self._drained = count < max_bytes
            if not count:
                raise anyio.EndOfStream
            data = self._view[:count]
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
        """Stop watching the socket, then close it."""
        self._readable.close()
        if self._backend.name == "trio":
            import trio

            trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


class AnyioStream:
    """Any anyio byte stream (used for TLS): no synchronous writes."""

    __slots__ = ("_stream", "in_doubt")

    direct_writes = False

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self.in_doubt = 0

    def try_send(self, data: bytes | memoryview) -> int:
        """Never writes synchronously: 0."""
        return 0

    async def send_some(self, data: bytes | memoryview) -> int:
        """Write up to ``_TLS_CHUNK`` bytes of ``data``; return how many went."""
        chunk = bytes(data[:_TLS_CHUNK])
        self.in_doubt = len(chunk)
        await self._stream.send(chunk)
        self.in_doubt = 0
        return len(chunk)

    async def receive(self, max_bytes: int) -> bytes | memoryview:
        """Read at most ``max_bytes``; raise ``anyio.EndOfStream`` at EOF."""
        return await self._stream.receive(max_bytes)

    def shutdown(self) -> None:
        """TLS needs an async close: nothing to do synchronously."""

    async def aclose(self) -> None:
        """Close the stream at once, without the TLS goodbye."""
        await anyio.aclose_forcefully(self._stream)


async def open_stream(config: ClientConfig, backend: Backend) -> Stream:
    """Connect to the server ``config`` names (TCP, unix socket or TLS)."""
    if config.tls:
        context = config.ssl_context or ssl.create_default_context()
        tls = await anyio.connect_tcp(
            config.host,
            config.port,
            ssl_context=context,
            tls_hostname=config.host,
            tls_standard_compatible=False,
        )
        keep_alive(tls.extra(anyio.abc.SocketAttribute.raw_socket), config.keepalive)
        return AnyioStream(tls)
    if config.unix_path is not None:
        sock = await _connect_socket(socket.AF_UNIX, config.unix_path, backend, None)
        return SocketStream(sock, backend)
    addresses = await anyio.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
    error: OSError | None = None
    for family, _, _, _, address in addresses:
        try:
            sock = await _connect_socket(family, address, backend, config.keepalive)
        except OSError as exc:
            error = exc
            continue
        return SocketStream(sock, backend)
    raise error or OSError(f"no address found for {config.host}")


def keep_alive(sock: socket.socket, idle: float | None) -> None:
    """Switch TCP keepalive on: probes after ``idle`` seconds of silence (None: leave it off).

    The kernel then probes every third of ``idle`` (at least a second) and
    gives up after three unanswered probes: a peer that vanished without a
    word (a cut cable, a dead host) is noticed within about twice ``idle``,
    even on a link that waits for nothing.
    """
    if idle is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    interval = max(1, int(idle / 3))
    # The options' names differ per platform; Linux has all three.
    for name, value in (
        ("TCP_KEEPIDLE", max(1, int(idle))),
        ("TCP_KEEPALIVE", max(1, int(idle))),  # macOS's name for the idle time
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", 3),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def _connect_socket(
    family: int, address: Any, backend: Backend, keepalive: float | None
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keep_alive(sock, keepalive)
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
