"""Pub/Sub subscriptions that survive a lost link.

Theory of operation
-------------------

A :class:`Subscription` holds a connection of its own in pub/sub mode. The
server only sends it messages and confirmations (RESP3 push frames; under
RESP2, arrays nobody asked for), and every frame goes to
:meth:`Subscriber.on_push`, which turns messages into :class:`Message` items
of an unbounded memory channel that ``async for`` reads (a consumer that
falls behind makes it grow, as the server's own buffer would).

What was asked and what the server confirmed are kept apart, per kind
(channels, patterns, shard channels):

- ``wanted`` changes as soon as a call asks; it is what a new link
  subscribes to;
- ``confirmed`` changes only on the server's confirmations and is emptied
  when the link is lost; ``channels``, ``patterns`` and ``shard_channels``
  show it.

Each call waits for the confirmations of its own names: one waiter per
(confirmation, name), queued in the order the commands were sent, so
concurrent callers never share, replace or steal each other's event.

A lost link (``on_lost``, called by the connection as it breaks) opens a
*gap*. Calls still waiting for a subscription that is still wanted keep
waiting: the resubscription's confirmation completes them (a name's waiters
are merged, since one command resubscribes it); the others complete at once
(the server holds nothing for them). The subscriber's task connects again
(the connection backs off by itself; while the server is down the task
sleeps a capped, jittered backoff between tries), sends one command per kind
with everything wanted, and once the server has confirmed every name the
gap closes: a :class:`Gap` goes into the message stream, after the last
message received before the loss and before the first one after, or the
iteration raises :exc:`MessagesLostError` there (``on_gap="raise"``). A link
lost again before that extends the same gap: one report per outage.

Pub/Sub delivers at most once: messages published during a gap are lost.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, suppress
from typing import Any, Literal, Protocol

import anyio

from ._connection import Connection
from ._exceptions import MessagesLostError, ResponseError, TransportError
from ._resp import Push, encode_command
from ._retry import backoff
from ._tasks import background_task_group

__all__ = [
    "CHANNELS",
    "PATTERNS",
    "SHARD_CHANNELS",
    "Gap",
    "Message",
    "OnGap",
    "Subscriber",
    "Subscription",
    "check_names",
    "name_key",
]

logger = logging.getLogger("triopipe")

#: What the iteration does at the end of an outage: yield a :class:`Gap`, or
#: raise :exc:`MessagesLostError`.
OnGap = Literal["yield", "raise"]
_ON_GAP = ("yield", "raise")


@dataclasses.dataclass(frozen=True)
class Message:
    """One published message.

    Attributes:
        channel: the channel it was published to.
        data: the message (``bytes``, or ``str`` with ``decode=True``).
        pattern: the pattern that matched, for pattern subscriptions; else None.
    """

    channel: Any
    data: Any
    pattern: Any = None


@dataclasses.dataclass(frozen=True)
class Gap:
    """An outage of a subscription's link: messages published during it may be lost.

    The iteration yields one between the messages received before the link
    was lost and those received after the server confirmed every
    resubscription. Times are ``time.time()`` values.

    Attributes:
        lost_at: when the link was found broken.
        resubscribed_at: when the server had confirmed every resubscription.
        error: what broke the link (a :class:`TransportError` as a rule).
    """

    lost_at: float
    resubscribed_at: float
    error: BaseException


@dataclasses.dataclass(frozen=True)
class _Kind:
    """One kind of subscription: its commands and the names of their confirmations."""

    subscribe: str
    unsubscribe: str
    subscribed: str
    unsubscribed: str


CHANNELS = _Kind("SUBSCRIBE", "UNSUBSCRIBE", "subscribe", "unsubscribe")
PATTERNS = _Kind("PSUBSCRIBE", "PUNSUBSCRIBE", "psubscribe", "punsubscribe")
SHARD_CHANNELS = _Kind("SSUBSCRIBE", "SUNSUBSCRIBE", "ssubscribe", "sunsubscribe")
_KINDS = (CHANNELS, PATTERNS, SHARD_CHANNELS)
# Confirmation name -> (kind, whether it confirms a subscription).
_CONFIRMATIONS = {
    **{kind.subscribed: (kind, True) for kind in _KINDS},
    **{kind.unsubscribed: (kind, False) for kind in _KINDS},
}
_MESSAGE_KINDS = frozenset({"message", "smessage"})


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def name_key(name: Any) -> bytes:
    """A channel or pattern name as the server compares it: its bytes.

    Raises:
        TypeError: the name is neither ``bytes`` nor ``str``.
    """
    if isinstance(name, bytes):
        return name
    if isinstance(name, str):
        return name.encode()
    raise TypeError(
        f"a channel or pattern name must be bytes or str, not {type(name).__name__}: {name!r}"
    )


def check_names(names: Iterable[Any]) -> dict[bytes, Any]:
    """The names given, without repeats, by :func:`name_key`; raises before anything is sent."""
    return {name_key(name): name for name in names}


class _Call:
    """One subscribe or unsubscribe call: how many confirmations it still waits for."""

    __slots__ = ("error", "event", "remaining")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.event = anyio.Event()
        self.error: BaseException | None = None

    def confirm(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.event.set()

    def fail(self, error: BaseException) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()

    async def wait(self) -> None:
        await self.event.wait()
        if self.error is not None:
            raise self.error


class SubscriberSource(Protocol):
    """Where a subscription gets its connection: a connection group."""

    def subscriber(
        self, on_push: Callable[[Push], None], on_lost: Callable[[BaseException], None]
    ) -> AbstractAsyncContextManager[Connection]: ...


class Subscriber:
    """One subscription link's state: wanted and confirmed names, waiters, gaps.

    Args:
        deliver: takes each :class:`Message` and :class:`Gap`, in order.
        on_dropped: called with a kind, a name's key and the name when the
            server ends a subscription nobody asked to end (a cluster node
            whose slot moved away); the default forgets it.
    """

    def __init__(
        self,
        deliver: Callable[[Message | Gap], None],
        on_dropped: Callable[[_Kind, bytes, Any], None] | None = None,
    ) -> None:
        self._deliver = deliver
        self._on_dropped = on_dropped
        self.connection: Connection | None = None
        self.wanted: dict[_Kind, dict[bytes, Any]] = {kind: {} for kind in _KINDS}
        self.confirmed: dict[_Kind, set[Any]] = {kind: set() for kind in _KINDS}
        # (confirmation, name key) -> calls waiting for it, one entry per
        # command sent (an entry of several calls after a gap merged them).
        self._waiting: dict[tuple[str, bytes], deque[list[_Call]]] = {}
        # Calls whose commands are on the current link, in order: an error
        # reply is the first unfinished one's.
        self._sent: deque[_Call] = deque()
        # Whether commands may go on the link now (else the resubscription
        # will send what is wanted).
        self._up = False
        self._closed = False
        self._lost_at: float | None = None
        self._lost_error: BaseException | None = None
        self._resubscribing: set[tuple[str, bytes]] = set()
        self._lost = anyio.Event()

    @property
    def idle(self) -> bool:
        """Whether nothing is wanted any more (the link can go)."""
        return not any(self.wanted.values())

    async def start(self, connection: Connection) -> None:
        """Connect ``connection`` (made with :meth:`on_push` and :meth:`on_lost`)."""
        await connection.connect()
        self.connection = connection
        self._up = True

    async def change(self, kind: _Kind, subscribe: bool, names: Sequence[Any]) -> None:
        """(Un)subscribe ``names`` of ``kind``; returns once the server confirmed each."""
        given = check_names(names)
        if not given:
            return
        connection = self.connection
        if self._closed or connection is None:
            raise anyio.ClosedResourceError
        command = kind.subscribe if subscribe else kind.unsubscribe
        payload = encode_command((command, *given.values()))
        wanted = self.wanted[kind]
        if subscribe:
            wanted.update(given)
        else:
            for key in given:
                wanted.pop(key, None)
        confirmation = kind.subscribed if subscribe else kind.unsubscribed
        call = _Call(len(given))
        if self._up:
            for key in given:
                self._waiting.setdefault((confirmation, key), deque()).append([call])
            self._sent.append(call)
            while self._sent and self._sent[0].event.is_set():
                self._sent.popleft()
            connection.send_only(payload)
        else:
            for key in given:
                if subscribe:
                    # The resubscription sends it once: wait with the others.
                    entries = self._waiting.setdefault((confirmation, key), deque())
                    if entries:
                        entries[-1].append(call)
                    else:
                        entries.append([call])
                else:
                    # The server holds nothing now; a subscribe still waiting
                    # for this name is superseded.
                    for entry in self._waiting.pop((kind.subscribed, key), ()):
                        for waiting in entry:
                            waiting.confirm()
                    call.confirm()
        await call.wait()

    # -- from the connection's receiver (synchronous; must never raise) -------------

    def on_push(self, push: Push) -> None:
        """Take one frame of the subscription link."""
        if not push:
            return
        head = push[0]
        if isinstance(head, ResponseError):
            self._refused(head)
            return
        kind = _text(head).lower()
        if kind in _MESSAGE_KINDS and len(push) >= 3:
            self._deliver(Message(push[1], push[2]))
        elif kind == "pmessage" and len(push) >= 4:
            self._deliver(Message(push[2], push[3], push[1]))
        elif kind in _CONFIRMATIONS and len(push) >= 2 and push[1] is not None:
            self._confirmed(kind, push[1])
        # Anything else ("pong", the health check's probe under RESP2) only
        # proves the link alive.

    def _confirmed(self, confirmation: str, name: Any) -> None:
        kind, subscribed = _CONFIRMATIONS[confirmation]
        key = name_key(name) if isinstance(name, (bytes, str)) else _text(name).encode()
        if subscribed:
            self.confirmed[kind].add(name)
        else:
            self.confirmed[kind].discard(name)
        entries = self._waiting.get((confirmation, key))
        if entries:
            for call in entries.popleft():
                call.confirm()
            if not entries:
                del self._waiting[(confirmation, key)]
        elif not subscribed and self._up and key in self.wanted[kind]:
            # Nobody asked: the server ended it (a cluster slot moved away).
            if self._on_dropped is not None:
                self._on_dropped(kind, key, self.wanted[kind][key])
            else:
                del self.wanted[kind][key]
        if self._resubscribing:
            self._resubscribing.discard((confirmation, key))
            if not self._resubscribing:
                self._close_gap()

    def _refused(self, error: ResponseError) -> None:
        """An error reply: the oldest call still waiting on this link gets it."""
        sent = self._sent
        while sent:
            call = sent.popleft()
            if not call.event.is_set():
                self._forget(call)
                call.fail(error)
                return
        logger.warning("a subscription command was refused: %s", error)

    def _forget(self, call: _Call) -> None:
        """Drop ``call``'s waiters (its command was refused)."""
        for key in [
            key for key, entries in self._waiting.items() if any(call in e for e in entries)
        ]:
            entries = deque(e for e in self._waiting[key] if call not in e)
            kind, subscribed = _CONFIRMATIONS[key[0]]
            if subscribed:
                self.wanted[kind].pop(key[1], None)
            if entries:
                self._waiting[key] = entries
            else:
                del self._waiting[key]

    def on_lost(self, error: BaseException) -> None:
        """The link broke (or a connect failed): open or extend the gap."""
        if self._closed or self.connection is None:
            return
        if self._lost_at is None:
            self._lost_at = time.time()
            self._lost_error = error
        self._up = False
        for confirmed in self.confirmed.values():
            confirmed.clear()
        self._resubscribing.clear()
        self._sent.clear()
        waiting, self._waiting = self._waiting, {}
        for (confirmation, key), entries in waiting.items():
            kind, subscribed = _CONFIRMATIONS[confirmation]
            calls = [call for entry in entries for call in entry]
            if subscribed and key in self.wanted[kind]:
                self._waiting[(confirmation, key)] = deque([calls])
            else:
                for call in calls:
                    call.confirm()
        self._lost.set()

    def _close_gap(self) -> None:
        lost_at, error = self._lost_at, self._lost_error
        if lost_at is None or error is None:
            return
        self._lost_at = self._lost_error = None
        self._deliver(Gap(lost_at, time.time(), error))

    # -- the subscriber's task ------------------------------------------------------

    async def keep_subscribed(self) -> None:
        """Resubscribe on a new link after each loss, until the subscription closes."""
        while not self._closed:
            await self._lost.wait()
            attempt = 0
            while True:
                connection = self.connection
                if self._closed or connection is None:
                    return
                try:
                    await connection.connect()
                    break
                except anyio.ClosedResourceError:
                    self.close()  # the client is closing
                    return
                except (TransportError, ResponseError) as exc:
                    logger.debug("resubscribing failed (%s); trying again", exc)
                    await anyio.sleep(backoff(attempt))
                    attempt += 1
            # Losses before this connect are behind us; one after it sets a
            # new event.
            self._lost = anyio.Event()
            self._resubscribe(connection)

    def _resubscribe(self, connection: Connection) -> None:
        commands = [
            (kind.subscribe, *wanted.values()) for kind, wanted in self.wanted.items() if wanted
        ]
        self._resubscribing = {
            (kind.subscribed, key) for kind, wanted in self.wanted.items() for key in wanted
        }
        self._up = True
        if commands:
            connection.send_only(b"".join(encode_command(command) for command in commands))
        if not self._resubscribing:
            self._close_gap()

    def close(self) -> None:
        """Fail every waiting call; forget the connection."""
        self._closed = True
        self.connection = None
        self._lost.set()
        for entries in self._waiting.values():
            for entry in entries:
                for call in entry:
                    call.fail(anyio.ClosedResourceError())
        self._waiting.clear()


class Subscription:
    """The channels, patterns and shard channels of one subscription; iterate for messages.

    Made by ``Client.subscribe`` or ``Client.ssubscribe``; use it as ``async
    with redis.subscribe(...) as sub: async for item in sub: ...``. The
    iteration yields :class:`Message` items and, after an outage of the
    link, one :class:`Gap` (or raises :exc:`MessagesLostError` with
    ``on_gap="raise"``); it goes on by itself after either.
    """

    def __init__(
        self,
        source: SubscriberSource,
        channels: Sequence[Any] = (),
        patterns: Sequence[Any] = (),
        *,
        shard_channels: Sequence[Any] = (),
        on_gap: OnGap = "yield",
    ) -> None:
        if on_gap not in _ON_GAP:
            raise ValueError(f"on_gap must be 'yield' or 'raise', not {on_gap!r}")
        self._initial = {
            CHANNELS: tuple(check_names(channels).values()),
            PATTERNS: tuple(check_names(patterns).values()),
            SHARD_CHANNELS: tuple(check_names(shard_channels).values()),
        }
        self._source = source
        self._on_gap = on_gap
        self._exit_stack = AsyncExitStack()
        self._send, self._receive = anyio.create_memory_object_stream[Message | Gap](math.inf)
        self._subscriber = Subscriber(self._deliver)

    @property
    def channels(self) -> frozenset[Any]:
        """The channels the server has confirmed (none while the link is down)."""
        return frozenset(self._subscriber.confirmed[CHANNELS])

    @property
    def patterns(self) -> frozenset[Any]:
        """The patterns the server has confirmed (none while the link is down)."""
        return frozenset(self._subscriber.confirmed[PATTERNS])

    @property
    def shard_channels(self) -> frozenset[Any]:
        """The shard channels the server has confirmed (none while the link is down)."""
        return frozenset(self._subscriber.confirmed[SHARD_CHANNELS])

    async def __aenter__(self) -> Subscription:
        subscriber = self._subscriber
        async with AsyncExitStack() as stack:
            task_group = await stack.enter_async_context(background_task_group())
            connection = await stack.enter_async_context(
                self._source.subscriber(subscriber.on_push, subscriber.on_lost)
            )
            stack.callback(self._close)
            await subscriber.start(connection)
            task_group.start_soon(subscriber.keep_subscribed, name="triopipe resubscriber")
            for kind, names in self._initial.items():
                await subscriber.change(kind, True, names)
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._exit_stack.aclose()

    async def subscribe(self, *channels: Any) -> None:
        """Subscribe to more channels; returns once the server has registered each.

        If the link breaks first, returns once the resubscription is confirmed.

        Raises:
            TypeError: a name is neither ``bytes`` nor ``str`` (nothing is sent).
            ResponseError: the server refused the command (an ACL, say).
            anyio.ClosedResourceError: the subscription closed meanwhile.
        """
        await self._subscriber.change(CHANNELS, True, channels)

    async def psubscribe(self, *patterns: Any) -> None:
        """Subscribe to more glob-style patterns (``news.*``), as :meth:`subscribe`."""
        await self._subscriber.change(PATTERNS, True, patterns)

    async def ssubscribe(self, *channels: Any) -> None:
        """Subscribe to more shard channels (``SSUBSCRIBE``, Redis 7.0+), as :meth:`subscribe`."""
        await self._subscriber.change(SHARD_CHANNELS, True, channels)

    async def unsubscribe(self, *channels: Any) -> None:
        """Unsubscribe from channels (every channel when none is named)."""
        await self._subscriber.change(CHANNELS, False, channels or self._wanted(CHANNELS))

    async def punsubscribe(self, *patterns: Any) -> None:
        """Unsubscribe from patterns (every pattern when none is named)."""
        await self._subscriber.change(PATTERNS, False, patterns or self._wanted(PATTERNS))

    async def sunsubscribe(self, *channels: Any) -> None:
        """Unsubscribe from shard channels (every one when none is named)."""
        await self._subscriber.change(
            SHARD_CHANNELS, False, channels or self._wanted(SHARD_CHANNELS)
        )

    def _wanted(self, kind: _Kind) -> tuple[Any, ...]:
        return tuple(self._subscriber.wanted[kind].values())

    def __aiter__(self) -> AsyncIterator[Message | Gap]:
        return self

    async def __anext__(self) -> Message | Gap:
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        if isinstance(item, Gap) and self._on_gap == "raise":
            raise MessagesLostError(item.lost_at, item.resubscribed_at) from item.error
        return item

    def _deliver(self, item: Message | Gap) -> None:
        # Called from the connection's receiver: never raise into it, even if
        # the subscription's block has just ended.
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(item)

    def _close(self) -> None:
        self._subscriber.close()
        self._send.close()
        self._receive.close()
