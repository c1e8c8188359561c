"""Pub/Sub: one subscription link that survives its connection.

Theory of operation
-------------------

A :class:`Subscriber` is one link of a subscription: a connection of its own
in pub/sub mode, to one server. The server only sends it messages and
confirmations (RESP3 push frames; under RESP2, arrays nobody asked for), and
every frame goes to :meth:`Subscriber.on_push`, which hands messages on as
:class:`Message` items (the subscription, :mod:`triopipe._subscription`,
queues them for ``async for``).

What was asked and what the server confirmed are kept apart, per kind
(channels, patterns, shard channels): ``wanted`` changes as soon as a call
asks, and is what a new link subscribes to; ``confirmed`` changes only on the
server's confirmations, and is emptied when the link is lost.

The server answers a link's commands in order, one confirmation per name or
one error reply per command, so the commands sent form a FIFO: each call
owns its command's entry and completes when the last of its names is
confirmed (or fails with the error reply), whatever other tasks do
meanwhile. A confirmation that matches no command (``sunsubscribe`` when a
cluster slot moves away) is the server's own doing: the name is dropped and
reported (``on_dropped``).

A lost link (``on_lost``, called by the connection as it breaks) opens a
*gap*. Calls waiting for a subscription still wanted keep waiting, now for
the resubscription's confirmation of their names (``_waiting``); the others
complete at once (the server holds nothing for them). The link's task
connects again (the connection backs off by itself; while the server is down
the task sleeps a capped, jittered backoff between tries), sends what is
wanted (shard channels one slot per command, as a cluster requires), and
once the server has confirmed or refused every resubscription the gap closes:
a :class:`Gap` is delivered, after the last message received before the loss
and before the first one after. A link lost again before that extends the
same gap: one report per outage.

Pub/Sub delivers at most once: messages published during a gap are lost.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

import anyio

from ._connection import Connection
from ._exceptions import ResponseError, TransportError
from ._resp import Push, encode_command
from ._retry import backoff
from ._routing import key_slot

__all__ = [
    "CHANNELS",
    "KINDS",
    "PATTERNS",
    "SHARD_CHANNELS",
    "Call",
    "Gap",
    "Kind",
    "Message",
    "Names",
    "OnGap",
    "Subscriber",
    "SubscriberSource",
    "check_names",
    "commands_for",
    "name_key",
]

logger = logging.getLogger("triopipe")

#: What the iteration does at the end of an outage: yield a :class:`Gap`, or
#: raise :exc:`MessagesLostError`.
OnGap = Literal["yield", "raise"]


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
class Kind:
    """One kind of subscription: its commands and the names of their confirmations."""

    subscribe: str
    unsubscribe: str
    subscribed: str
    unsubscribed: str


CHANNELS = Kind("SUBSCRIBE", "UNSUBSCRIBE", "subscribe", "unsubscribe")
PATTERNS = Kind("PSUBSCRIBE", "PUNSUBSCRIBE", "psubscribe", "punsubscribe")
SHARD_CHANNELS = Kind("SSUBSCRIBE", "SUNSUBSCRIBE", "ssubscribe", "sunsubscribe")
KINDS = (CHANNELS, PATTERNS, SHARD_CHANNELS)
# Confirmation name -> (kind, whether it confirms a subscription).
_CONFIRMATIONS = {
    **{kind.subscribed: (kind, True) for kind in KINDS},
    **{kind.unsubscribed: (kind, False) for kind in KINDS},
}
_MESSAGEKINDS = frozenset({"message", "smessage"})


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


class Call:
    """One subscribe or unsubscribe call on one link: the confirmations it still waits for."""

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


class _Sent:
    """A command on the current link: the confirmations it still awaits, and whose it is.

    ``call`` is None for a resubscription, whose confirmations complete the
    calls merged into ``Subscriber._waiting`` instead.
    """

    __slots__ = ("call", "confirmation", "keys", "kind", "names")

    def __init__(
        self, kind: Kind, confirmation: str, names: dict[bytes, Any], call: Call | None
    ) -> None:
        self.kind = kind
        self.confirmation = confirmation
        self.names = names
        self.keys = set(names)
        self.call = call


class SubscriberSource(Protocol):
    """Where a subscription link gets its connection: a connection group."""

    def subscriber(
        self, on_push: Callable[[Push], None], on_lost: Callable[[BaseException], None]
    ) -> AbstractAsyncContextManager[Connection]: ...


Names = dict[bytes, Any]


class Subscriber:
    """One subscription link's state: wanted and confirmed names, calls, gaps.

    The server answers a link's commands in order, each with one
    confirmation per name (or one error reply), so the commands on the link
    form a FIFO (``_sent``): a confirmation belongs to the oldest command,
    and one that does not (an ``sunsubscribe`` when a cluster slot moves
    away) was sent by the server of its own accord.

    Args:
        deliver: takes each :class:`Message` and :class:`Gap`, in order.
        on_dropped: called with a kind and names the server unsubscribed of
            its own accord (they are no longer wanted here).
        on_refused: called with a kind, names and the error reply when the
            server refused to resubscribe them on a new link (they are no
            longer wanted here).
    """

    def __init__(
        self,
        deliver: Callable[[Message | Gap], None],
        *,
        on_dropped: Callable[[Kind, Names], None] | None = None,
        on_refused: Callable[[Kind, Names, ResponseError], None] | None = None,
    ) -> None:
        self._deliver = deliver
        self._on_dropped = on_dropped
        self._on_refused = on_refused
        self.connection: Connection | None = None
        self.wanted: dict[Kind, Names] = {kind: {} for kind in KINDS}
        self.confirmed: dict[Kind, set[Any]] = {kind: set() for kind in KINDS}
        self._sent: deque[_Sent] = deque()
        # (confirmation, name key) -> calls made while the link was down,
        # completed by the resubscription's confirmation of that name.
        self._waiting: dict[tuple[str, bytes], list[Call]] = {}
        # Whether commands may go on the link now (else the resubscription
        # will send what is wanted).
        self._up = False
        self._closed = False
        self._lost_at: float | None = None
        self._lost_error: BaseException | None = None
        self._resubscribing = 0
        self._lost = anyio.Event()

    async def start(self, connection: Connection) -> None:
        """Connect ``connection`` (made with :meth:`on_push` and :meth:`on_lost`)."""
        await connection.connect()
        self.connection = connection
        self._up = True

    def submit(self, kind: Kind, subscribe: bool, names: Names) -> Call:
        """(Un)subscribe ``names`` of ``kind``; the call completes once each is confirmed.

        Raises:
            anyio.ClosedResourceError: the subscription is closed.
        """
        connection = self.connection
        if self._closed or connection is None:
            raise anyio.ClosedResourceError
        command = kind.subscribe if subscribe else kind.unsubscribe
        payload = encode_command((command, *names.values()))
        if self._up:
            # Sent first: if that raises, nothing has changed. No reply can
            # come before this returns (nothing here checkpoints).
            connection.send_only(payload)
        wanted = self.wanted[kind]
        if subscribe:
            wanted.update(names)
        else:
            for key in names:
                wanted.pop(key, None)
        confirmation = kind.subscribed if subscribe else kind.unsubscribed
        call = Call(len(names))
        if self._up:
            self._sent.append(_Sent(kind, confirmation, names, call))
            return call
        for key in names:
            if subscribe:
                # The resubscription sends it: wait for its confirmation.
                self._waiting.setdefault((confirmation, key), []).append(call)
            else:
                # The server holds nothing now; a subscribe still waiting
                # for this name is superseded.
                for waiting in self._waiting.pop((kind.subscribed, key), ()):
                    waiting.confirm()
                call.confirm()
        return call

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
        if kind in _MESSAGEKINDS and len(push) >= 3:
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
        sent = self._sent
        head = sent[0] if sent else None
        if head is not None and head.confirmation == confirmation and key in head.keys:
            head.keys.discard(key)
            if head.call is not None:
                head.call.confirm()
            else:
                for call in self._waiting.pop((confirmation, key), ()):
                    call.confirm()
            if not head.keys:
                sent.popleft()
                if head.call is None:
                    self._resubscribed_one()
        elif not subscribed and key in self.wanted[kind]:
            # Nobody asked: the server ended it (a cluster slot moved away).
            dropped = {key: self.wanted[kind].pop(key)}
            if self._on_dropped is not None:
                self._on_dropped(kind, dropped)

    def _refused(self, error: ResponseError) -> None:
        """An error reply: the oldest command on the link was refused."""
        if not self._sent:
            logger.warning("the server sent an error to a subscription: %s", error)
            return
        head = self._sent.popleft()
        if head.confirmation == head.kind.subscribed:
            for key in head.keys:
                self.wanted[head.kind].pop(key, None)
        if head.call is not None:
            head.call.fail(error)
            return
        for key in head.keys:
            for call in self._waiting.pop((head.confirmation, key), ()):
                call.fail(error)
        refused = {key: head.names[key] for key in head.keys}
        if self._on_refused is not None:
            self._on_refused(head.kind, refused, error)
        else:
            logger.warning("resubscribing to %s was refused: %s", list(refused.values()), error)
        self._resubscribed_one()

    @property
    def closed(self) -> bool:
        """Whether the link is over (its subscription closed, or its connection)."""
        return self._closed

    def on_lost(self, error: BaseException) -> None:
        """The link broke (or a connect failed): open or extend the gap."""
        if self._closed or self.connection is None:
            return
        if isinstance(error, anyio.ClosedResourceError):
            self._abandon()
            return
        if self._lost_at is None:
            self._lost_at = time.time()
            self._lost_error = error
        self._up = False
        self._resubscribing = 0
        for confirmed in self.confirmed.values():
            confirmed.clear()
        sent, self._sent = self._sent, deque()
        for record in sent:
            call = record.call
            if call is None:
                continue  # a resubscription: its calls wait in _waiting already
            for key in record.keys:
                if record.confirmation == record.kind.subscribed:
                    # Resubscribed with the rest: its confirmation will come.
                    self._waiting.setdefault((record.confirmation, key), []).append(call)
                else:
                    call.confirm()
        for waiting_for, calls in list(self._waiting.items()):
            kind, _ = _CONFIRMATIONS[waiting_for[0]]
            if waiting_for[1] not in self.wanted[kind]:
                del self._waiting[waiting_for]
                for call in calls:
                    call.confirm()
        self._lost.set()

    def _resubscribed_one(self) -> None:
        self._resubscribing -= 1
        if self._resubscribing <= 0:
            self._close_gap()

    def _close_gap(self) -> None:
        lost_at, error = self._lost_at, self._lost_error
        if lost_at is None or error is None:
            return
        self._lost_at = self._lost_error = None
        self._deliver(Gap(lost_at, time.time(), error))

    # -- the link's task ------------------------------------------------------------

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
                    self._abandon()
                    return
                except (TransportError, ResponseError) as exc:
                    logger.debug("resubscribing failed (%s); trying again", exc)
                    await anyio.sleep(backoff(attempt))
                    attempt += 1
            # Losses before this connect are behind us; one after it sets a
            # new event.
            self._lost = anyio.Event()
            self._resubscribe(connection)

    def _abandon(self) -> None:
        """The connection was closed under the link: give every name up (``on_dropped``).

        Its cluster node left the map, say: the names may live elsewhere now.
        Calls still waiting fail with :exc:`anyio.ClosedResourceError`.
        """
        wanted = {kind: dict(names) for kind, names in self.wanted.items() if names}
        self.close()
        if self._on_dropped is not None:
            for kind, names in wanted.items():
                self._on_dropped(kind, names)

    def _resubscribe(self, connection: Connection) -> None:
        records = [
            _Sent(kind, kind.subscribed, names, None)
            for kind, wanted in self.wanted.items()
            for names in commands_for(kind, wanted)
        ]
        self._sent.extend(records)
        self._resubscribing = len(records)
        self._up = True
        if records:
            connection.send_only(
                b"".join(
                    encode_command((record.kind.subscribe, *record.names.values()))
                    for record in records
                )
            )
        else:
            # Nothing wanted here any more: nothing to miss, no gap to report.
            self._lost_at = self._lost_error = None

    def close(self) -> None:
        """Fail every waiting call; forget the connection."""
        self._closed = True
        self.connection = None
        self._lost.set()
        error = anyio.ClosedResourceError
        for record in self._sent:
            if record.call is not None:
                record.call.fail(error())
        for calls in self._waiting.values():
            for call in calls:
                call.fail(error())
        self._sent.clear()
        self._waiting.clear()


def commands_for(kind: Kind, wanted: Names) -> list[Names]:
    """``wanted`` cut into commands: shard channels one slot per command (a cluster's rule)."""
    if not wanted:
        return []
    if kind is not SHARD_CHANNELS:
        return [dict(wanted)]
    by_slot: dict[int, Names] = {}
    for key, name in wanted.items():
        by_slot.setdefault(key_slot(key), {})[key] = name
    return list(by_slot.values())
