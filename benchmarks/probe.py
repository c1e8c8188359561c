"""The ceiling probe: the leanest auto-pipelining client Python allows, as B2's baseline.

Not part of triopipe and never shipped: it has no retries, no timeouts, no
backpressure and no reconnection, and it trusts the server. What it keeps is
the shape every auto-pipelining client needs, at its lowest cost: callers
queue an encoded command and a slot for the reply in a FIFO, one write
carries everything queued since the last one, and one reader hands replies
to the slots in order. A client doing the same work with its safety rules on
can be measured against it (``B2 ceiling``).

- asyncio (and uvloop): a :class:`asyncio.Protocol`, one future per command
  in a deque; the first caller after a write schedules the next one with
  ``call_soon``, so every caller that runs before the loop comes back shares it.
- trio: callers park with :func:`trio.lowlevel.wait_task_rescheduled` and are
  woken with :func:`trio.lowlevel.reschedule`; one sender task writes what has
  queued whenever it wakes, one receiver task reads.

Both parse with one ``hiredis.Reader``; an error reply is raised to its caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import sniffio

__all__ = ["open_probe"]

_READ_SIZE = 256 * 1024


class _AsyncioProbe(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = hiredis.Reader()
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._queued: list[bytes] = []
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        gets, next_waiter = self._reader.gets, self._waiters.popleft
        while (reply := gets()) is not False:
            future = next_waiter()
            if future.done():  # its caller was cancelled: drop the reply
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(exc or ConnectionResetError("connection closed"))

    def _flush(self) -> None:
        self._transport.write(b"".join(self._queued))
        self._queued.clear()

    async def execute(self, *args: Any) -> Any:
        future = self._loop.create_future()
        self._waiters.append(future)
        if not self._queued:
            self._loop.call_soon(self._flush)
        self._queued.append(hiredis.pack_command(args))
        return await future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _TrioProbe:
    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._reader = hiredis.Reader()
        self._waiters: deque[list[Any]] = deque()  # [task or None once cancelled]
        self._queued: list[bytes] = []
        self._idle_sender: Any = None

    async def execute(self, *args: Any) -> Any:
        import trio

        slot: list[Any] = [trio.lowlevel.current_task()]
        self._waiters.append(slot)
        self._queued.append(hiredis.pack_command(args))
        if self._idle_sender is not None:
            trio.lowlevel.reschedule(self._idle_sender)
            self._idle_sender = None

        def abort(_: Any) -> Any:
            slot[0] = None  # the receiver skips this reply
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    async def send_forever(self) -> None:
        import trio

        while True:
            if not self._queued:
                self._idle_sender = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)
            data = b"".join(self._queued)
            self._queued.clear()
            await self._stream.send_all(data)

    async def receive_forever(self) -> None:
        import outcome
        import trio

        reader, waiters = self._reader, self._waiters
        while data := await self._stream.receive_some(_READ_SIZE):
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                task = waiters.popleft()[0]
                if task is None:
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    trio.lowlevel.reschedule(task, outcome.Error(reply))
                else:
                    trio.lowlevel.reschedule(task, outcome.Value(reply))
        for slot in waiters:
            if slot[0] is not None:
                trio.lowlevel.reschedule(slot[0], outcome.Error(ConnectionResetError("closed")))
        waiters.clear()


@contextlib.asynccontextmanager
async def open_probe(host: str, port: int) -> AsyncIterator[Any]:
    """A connected probe on the running event loop: ``await probe.execute("GET", key)``."""
    if sniffio.current_async_library() == "trio":
        import trio

        stream = await trio.open_tcp_stream(host, port)  # TCP_NODELAY is trio's default
        probe = _TrioProbe(stream)
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(probe.send_forever)
            nursery.start_soon(probe.receive_forever)
            yield probe
            nursery.cancel_scope.cancel()
        return
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: _AsyncioProbe(loop), host, port)
    try:
        yield protocol
    finally:
        protocol.close()
