"""A link: one stream's lifetime, the tasks that serve it, and what happens between links.

A :class:`Link` is what a connection knows of one stream: its pipeline, the
stream once connected, whether it is closed and why, when bytes last came in.
While it is up, three tasks serve it, each a plain loop that reports a break
through ``on_break`` and decides nothing else:

- :func:`send_loop` writes whatever the pipeline gives, and sleeps when there
  is nothing until it is woken (``Link.sender_wakeup``);
- :func:`receive_loop` reads, parses every reply available in one go, feeds
  them to the pipeline and hands push frames to ``on_push``;
- :func:`watch` is the health check: a link silent for its interval is probed
  with a PING; silent for two, it is broken.

Between links: :class:`Down` says that a server cannot be reached (since when,
when the next attempt is due, why), :func:`backoff_delay` how long to wait
before the next attempt, and :func:`new_handshake` what the next link says
first (with the credentials as they are then).

What a break means (failing the requests, detaching the link, reconnecting)
is decided in :mod:`triopipe._connection`; this module only moves bytes and
keeps time.
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable
from typing import Any

import anyio

from ._backend import Signal
from ._config import ClientConfig
from ._exceptions import ConnectError, ConnectionLostError, ProtocolError, copy_error
from ._pipeline import Pipeline
from ._resp import Push, Reader
from ._resp._handshake import Handshake
from ._streams import STREAM_ERRORS, Stream

__all__ = ["Down", "Link", "backoff_delay", "new_handshake", "receive_loop", "send_loop", "watch"]

#: Reports a broken link and why; the connection decides what follows.
OnBreak = Callable[["Link", BaseException], None]

_READ_SIZE = 256 * 1024
# Reconnect backoff: base * 2**(failures - 1), capped, times a jitter factor
# in [0.5, 1) so that many clients do not reconnect in lockstep.
_BACKOFF_BASE = 0.02
_BACKOFF_CAP = 1.0


class Link:
    """One stream's lifetime: its pipeline, its stream once connected, its task's scope."""

    __slots__ = (
        "closed",
        "connected",
        "error",
        "last_received",
        "pipeline",
        "probes",
        "protocol",
        "ready",
        "scope",
        "sender_wakeup",
        "stream",
    )

    def __init__(self, pipeline: Pipeline[Any]) -> None:
        self.pipeline = pipeline
        # When bytes last came in (time.monotonic()), for the health check.
        self.last_received = 0.0
        # Health-check PINGs in flight (not the callers' commands).
        self.probes = 0
        self.stream: Stream | None = None
        # Set while the sender sleeps; setting it wakes the sender. Changed to
        # None (the sender is woken) only under the connection's thread lock.
        self.sender_wakeup: Signal | None = None
        self.closed = False
        self.connected = False
        self.protocol = 0
        self.error: BaseException | None = None
        self.ready = anyio.Event()
        self.scope: anyio.CancelScope | None = None


class Down:
    """The server could not be reached: since when, when the next attempt is, and why."""

    __slots__ = ("cause", "retry_at", "since")

    def __init__(self, since: float, retry_at: float, cause: BaseException) -> None:
        self.since = since
        self.retry_at = retry_at
        self.cause = cause

    def error(self, address: str) -> BaseException:
        """The error a command for the server gets at once, saying so."""
        if not isinstance(self.cause, ConnectError):
            refusal: BaseException = copy_error(self.cause)  # AUTH...: as the server said it
            return refusal
        now = time.monotonic()
        error = ConnectError(
            f"{address} is down (for {now - self.since:.1f} s: {self.cause}); "
            f"the next attempt to connect is due in {max(0.0, self.retry_at - now):.1f} s"
        )
        error.__cause__ = self.cause.__cause__
        return error


def backoff_delay(failures: int) -> float:
    """Seconds to wait before the next connect, after ``failures`` failed in a row."""
    if failures == 0:
        return 0.0
    delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0 ** (failures - 1))
    return delay * random.uniform(0.5, 1.0)


async def new_handshake(config: ClientConfig) -> Handshake:
    """The handshake of a new link, with the credentials as they are now.

    A credentials provider (sync or async) is called for every link, so a
    rotated password is picked up at the next reconnect.
    """
    username, password = config.username, config.password
    if config.credentials is not None:
        given = config.credentials()
        if inspect.isawaitable(given):
            given = await given
        username, password = given
    return Handshake(
        protocol=config.protocol,
        username=username,
        password=password,
        client_name=config.client_name,
        db=config.db,
    )


async def send_loop(
    stream: Stream,
    link: Link,
    new_signal: Callable[[], Signal],
    on_break: OnBreak,
    address: str,
) -> None:
    """The sender: write what the pipeline gives until the link closes."""
    pipeline = link.pipeline
    next_write = pipeline.next_write
    wrote = pipeline.wrote
    send_some = stream.send_some
    try:
        while not link.closed:
            data = next_write()
            if data is None:
                wakeup = link.sender_wakeup = new_signal()
                await wakeup.wait()
                continue
            wrote(await send_some(data))
    except STREAM_ERRORS as exc:
        on_break(link, ConnectionLostError(f"writing to {address} failed: {exc!r}", sent=True))


async def receive_loop(
    stream: Stream,
    reader: Reader,
    link: Link,
    on_push: Callable[[Push], None] | None,
    on_break: OnBreak,
    address: str,
) -> None:
    """The receiver, the link's only reader: feed replies to the pipeline until it closes."""
    feed = link.pipeline.feed
    read_replies = reader.read_replies
    receive = stream.receive
    clock = time.monotonic
    try:
        while not link.closed:
            data = await receive(_READ_SIZE)
            link.last_received = clock()
            pushes = feed(read_replies(data), len(data))
            if pushes is not None and on_push is not None:
                for push in pushes:
                    on_push(push)
    except anyio.EndOfStream:
        on_break(link, ConnectionLostError(f"{address} closed the connection", sent=True))
    except ProtocolError as exc:
        on_break(link, exc)
    except STREAM_ERRORS as exc:
        on_break(link, ConnectionLostError(f"reading from {address} failed: {exc!r}", sent=True))


async def watch(
    link: Link,
    interval: float,
    probe: Callable[[Link, Signal], None],
    blocking: Callable[[], bool],
    new_signal: Callable[[], Signal],
    on_break: OnBreak,
    address: str,
) -> None:
    """The health check: a link silent for ``interval`` is probed; silent for two, broken.

    ``probe(link, signal)`` submits a PING that sets ``signal`` when answered.
    It goes behind whatever is outstanding (its reply cannot come before
    theirs, and nobody receives it): any byte read meanwhile proves the link
    alive. While ``blocking()`` (a BLPOP may rightly wait minutes), only TCP
    keepalive watches the link.
    """
    while True:
        quiet = time.monotonic() - link.last_received
        if quiet < interval or blocking():
            await anyio.sleep(interval - quiet if quiet < interval else interval)
            continue
        signal = new_signal()
        link.probes += 1
        try:
            probe(link, signal)
            with anyio.move_on_after(2 * interval - quiet):
                await signal.wait()
        finally:
            link.probes -= 1
        if time.monotonic() - link.last_received >= 2 * interval:
            error = ConnectionLostError(
                f"{address} sent nothing for {2 * interval:g} s: the link is dead (health check)",
                sent=True,
            )
            on_break(link, error)
            return
