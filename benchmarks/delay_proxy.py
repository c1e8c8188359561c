"""A TCP proxy that holds every chunk for a fixed delay before forwarding it (B8).

``python -m benchmarks.delay_proxy TARGET_HOST TARGET_PORT DELAY_US`` listens
on a free loopback port, prints it as its first line, and forwards each
connection to the target, holding each chunk read for ``DELAY_US``
microseconds in each direction: a link with that one-way delay and no
bandwidth limit, for kernels without netem. On SIGTERM (or when its stdin
closes) it prints the CPU time it spent since it was ready, and the number of
chunks it forwarded, as a JSON line and exits, so that the suite
can say what the proxy cost.

Cheap per message by design, so that it does not flatter a client that sends
few large writes over one that sends many small ones: a chunk costs one deque
append and, when the queue was empty, one timer; when a timer fires, every
chunk that is due goes out in one write. Reads pause while the other side's
write buffer is full, so the proxy's memory stays bounded.

It runs on asyncio with a ``select()``-based selector, not on uvloop or
epoll: libuv's timers and ``epoll_wait`` count milliseconds, which would
turn a 250 us delay into 1 ms; ``select()`` takes microseconds. The timer
slack of the process is lowered to 1 us for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import selectors
import signal
import sys
from collections import deque
from typing import Any

__all__ = ["main"]

_PR_SET_TIMERSLACK = 29
_PAUSE_ABOVE = 4 * 2**20  # bytes waiting in a transport before its source pauses


def _lower_timer_slack() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)


class _Side(asyncio.Protocol):
    """One end of a proxied connection: what it reads goes, delayed, to its peer.

    The side that accepted a client (``target`` given) opens the upstream
    side, and reads nothing until it is connected.
    """

    chunks = 0  # chunks read, over every connection
    cpu_at_start = 0.0

    def __init__(
        self, loop: asyncio.AbstractEventLoop, delay: float, target: tuple[str, int] | None
    ) -> None:
        self._loop = loop
        self._delay = delay
        self._target = target
        self._due: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self.transport: Any = None
        self.peer: _Side | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=_PAUSE_ABOVE)  # type: ignore[attr-defined]
        if self._target is not None:
            transport.pause_reading()  # type: ignore[attr-defined]
            self._loop.create_task(self._connect_upstream(self._target))

    async def _connect_upstream(self, target: tuple[str, int]) -> None:
        try:
            _, upstream = await self._loop.create_connection(
                lambda: _Side(self._loop, self._delay, None), *target
            )
        except OSError:
            self.transport.close()
            return
        upstream.peer, self.peer = self, upstream
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        _Side.chunks += 1
        when = self._loop.time() + self._delay
        self._due.append((when, data))
        if self._timer is None:
            self._timer = self._loop.call_at(when, self._release)

    def _release(self) -> None:
        self._timer = None
        due, now = self._due, self._loop.time()
        chunks = []
        while due and due[0][0] <= now:
            chunks.append(due.popleft()[1])
        if chunks and self.peer is not None:
            self.peer.transport.write(b"".join(chunks))
        if due:
            self._timer = self._loop.call_at(due[0][0], self._release)
        elif self._closing:
            self._close_peer()

    def _close_peer(self) -> None:
        if self.peer is not None:
            self.peer.transport.close()

    def eof_received(self) -> bool:
        self._closing = True
        if not self._due:
            self._close_peer()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if not self._due:
            self._close_peer()

    # Flow control: when our transport's buffer fills, stop reading the peer.
    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.transport.resume_reading()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _serve(target: tuple[str, int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Side(loop, delay, target), "127.0.0.1", 0)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def stdin_readable() -> None:
        if not os.read(sys.stdin.fileno(), 1024):  # closed: the suite is done with us
            stop.set()

    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    _Side.cpu_at_start = _cpu_seconds()
    print(server.sockets[0].getsockname()[1], flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m benchmarks.delay_proxy HOST PORT DELAY_US", file=sys.stderr)
        return 2
    host, port, delay_us = args[0], int(args[1]), int(args[2])
    if delay_us < 0:
        print(f"the delay must be >= 0 microseconds, not {delay_us}", file=sys.stderr)
        return 2
    _lower_timer_slack()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(_serve((host, port), delay_us / 1e6))
    finally:
        loop.close()
    # CPU time since the proxy was ready: what forwarding cost, without start-up.
    cpu = _cpu_seconds() - _Side.cpu_at_start
    print(json.dumps({"cpu_seconds": cpu, "chunks": _Side.chunks}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
