"""The public subscription: one or more subscription links, one stream of messages.

Theory of operation
-------------------

A :class:`Subscription` puts each name on the server(s) whose subscribers
receive its messages, as its client's :class:`Placement` says: everything on
the one server of ``open_client``; on independent shards a channel on the
shard its name hashes to (where ``PUBLISH`` sends it) and a pattern on every
shard; on a cluster a shard channel on the primary serving its slot. Each
server gets one link (:class:`~triopipe._pubsub.Subscriber`), made on first
use, with its own task that resubscribes it after a loss; all links deliver
into one unbounded memory channel that ``async for`` reads (a consumer that
falls behind makes it grow, as the server's own buffer would).

A call sends its command on every link concerned first, then waits for
each. A refusal the placement can explain (``MOVED``: the cluster map
learns the new owner; ``ASK``, ``TRYAGAIN``...: after a backoff) sends those
names again where the refreshed map says, up to ``_MAX_REDIRECTS`` times.

Names a server unsubscribes of its own accord (a cluster node whose slot
moved away sends ``sunsubscribe``), refuses to take back after a lost link
(``MOVED``), or that a link can no longer carry (its connection was closed
under it: its cluster node left the map), are *moved*: a task refreshes the
placement and subscribes
them where it now says, with backoff until that works, then reports the
interval as one :class:`~triopipe.Gap` (the server stopped sending them at
the first, and confirmed them elsewhere at the second).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import AsyncExitStack, suppress
from functools import partial
from typing import Any, Protocol

import anyio
import anyio.abc

from ._exceptions import (
    AskError,
    ClusterDownError,
    MessagesLostError,
    MovedError,
    ResponseError,
    TransportError,
    TryAgainError,
    copy_error,
)
from ._pubsub import (
    CHANNELS,
    KINDS,
    PATTERNS,
    SHARD_CHANNELS,
    Call,
    Gap,
    Kind,
    Message,
    Names,
    OnGap,
    Subscriber,
    SubscriberSource,
    check_names,
    commands_for,
)
from ._retry import backoff
from ._routing import key_slot
from ._tasks import background_task_group

__all__ = ["OneServer", "Placement", "Subscribing", "Subscription"]

logger = logging.getLogger("triopipe")

_ON_GAP = ("yield", "raise")
# Refusals a placement may explain, and how many times a name is sent again.
_REDIRECTS = (MovedError, AskError, TryAgainError, ClusterDownError)
_MAX_REDIRECTS = 16


class Placement(Protocol):
    """Where a client's subscriptions put each name."""

    def place(self, kind: Kind, key: bytes) -> Sequence[Hashable]:
        """The servers (as keys for :meth:`source`) where a name must be subscribed.

        Raises:
            ClusterDownError: no known server serves it now.
        """
        ...

    def source(self, server: Hashable) -> SubscriberSource:
        """The connection group of ``server``."""
        ...

    def learn(self, error: ResponseError) -> None:
        """A server refused a subscription with ``error`` (a redirect): learn from it."""
        ...

    async def refresh(self) -> None:
        """Bring the placement up to date (a cluster's slot map)."""
        ...


class OneServer:
    """The placement of a single server: everything on it."""

    def __init__(self, source: SubscriberSource) -> None:
        self._source = source

    def place(self, kind: Kind, key: bytes) -> Sequence[Hashable]:
        return (None,)

    def source(self, server: Hashable) -> SubscriberSource:
        return self._source

    def learn(self, error: ResponseError) -> None:
        pass

    async def refresh(self) -> None:
        pass


async def _refusal(call: Call) -> ResponseError | None:
    """Wait for ``call``; return its refusal if a placement may explain it."""
    try:
        await call.wait()
    except _REDIRECTS as exc:
        return exc
    return None


class _Link:
    """A subscription link being made or made: whether it is ready, or why it failed."""

    __slots__ = ("error", "ready", "subscriber")

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.ready = anyio.Event()
        self.error: BaseException | None = None


class Subscription:
    """The channels, patterns and shard channels of one subscription; iterate for messages.

    Made by a client's ``subscribe`` or ``ssubscribe``; use it as ``async
    with redis.subscribe(...) as sub: async for item in sub: ...``. The
    iteration yields :class:`Message` items and, after an outage of a link,
    one :class:`Gap` (or raises :exc:`MessagesLostError` with
    ``on_gap="raise"``); it goes on by itself after either.
    """

    def __init__(
        self,
        placement: Placement,
        channels: Sequence[Any] = (),
        patterns: Sequence[Any] = (),
        *,
        shard_channels: Sequence[Any] = (),
        on_gap: OnGap = "yield",
    ) -> None:
        if on_gap not in _ON_GAP:
            raise ValueError(f"on_gap must be 'yield' or 'raise', not {on_gap!r}")
        self._initial = {
            CHANNELS: check_names(channels),
            PATTERNS: check_names(patterns),
            SHARD_CHANNELS: check_names(shard_channels),
        }
        self._placement = placement
        self._on_gap = on_gap
        self._exit_stack = AsyncExitStack()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._send, self._receive = anyio.create_memory_object_stream[Message | Gap](math.inf)
        self._links: dict[Hashable, _Link] = {}
        # What the user wants, whichever link carries it.
        self._wanted: dict[Kind, Names] = {kind: {} for kind in KINDS}
        # Names being moved to another server, and since when.
        self._moving: dict[Kind, Names] = {kind: {} for kind in KINDS}
        self._moving_since: float | None = None
        self._closed = False

    def _confirmed(self, kind: Kind) -> frozenset[Any]:
        return frozenset(
            name for link in self._links.values() for name in link.subscriber.confirmed[kind]
        )

    @property
    def channels(self) -> frozenset[Any]:
        """The channels the server has confirmed (none while the link is down)."""
        return self._confirmed(CHANNELS)

    @property
    def patterns(self) -> frozenset[Any]:
        """The patterns the server has confirmed (none while the link is down)."""
        return self._confirmed(PATTERNS)

    @property
    def shard_channels(self) -> frozenset[Any]:
        """The shard channels the server has confirmed (none while the link is down)."""
        return self._confirmed(SHARD_CHANNELS)

    async def __aenter__(self) -> Subscription:
        stack = self._exit_stack
        try:
            self._task_group = await stack.enter_async_context(background_task_group())
            stack.callback(self._close)
            for kind, names in self._initial.items():
                await self._change(kind, True, names)
        except BaseException:
            await stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._close()  # first: its links' connections closing is no news then
        await self._exit_stack.aclose()

    async def subscribe(self, *channels: Any) -> None:
        """Subscribe to more channels; returns once the server has registered each.

        If the link breaks first, returns once the resubscription is confirmed.

        Raises:
            TypeError: a name is neither ``bytes`` nor ``str`` (nothing is sent).
            ResponseError: the server refused the command (an ACL, say).
            ConnectError: the server cannot be reached (for a new link).
            anyio.ClosedResourceError: the subscription closed meanwhile.
        """
        await self._change(CHANNELS, True, check_names(channels))

    async def psubscribe(self, *patterns: Any) -> None:
        """Subscribe to more glob-style patterns (``news.*``), as :meth:`subscribe`."""
        await self._change(PATTERNS, True, check_names(patterns))

    async def ssubscribe(self, *channels: Any) -> None:
        """Subscribe to more shard channels (``SSUBSCRIBE``, Redis 7.0+), as :meth:`subscribe`."""
        await self._change(SHARD_CHANNELS, True, check_names(channels))

    async def unsubscribe(self, *channels: Any) -> None:
        """Unsubscribe from channels (every channel when none is named)."""
        await self._change(CHANNELS, False, self._named(CHANNELS, channels))

    async def punsubscribe(self, *patterns: Any) -> None:
        """Unsubscribe from patterns (every pattern when none is named)."""
        await self._change(PATTERNS, False, self._named(PATTERNS, patterns))

    async def sunsubscribe(self, *channels: Any) -> None:
        """Unsubscribe from shard channels (every one when none is named)."""
        await self._change(SHARD_CHANNELS, False, self._named(SHARD_CHANNELS, channels))

    def _named(self, kind: Kind, names: Sequence[Any]) -> Names:
        return check_names(names) if names else dict(self._wanted[kind])

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

    # -- changes ----------------------------------------------------------------------

    async def _change(self, kind: Kind, subscribe: bool, names: Names) -> None:
        if not names:
            return
        if self._closed:
            raise anyio.ClosedResourceError
        wanted = self._wanted[kind]
        if subscribe:
            wanted.update(names)
            try:
                await self._subscribe(kind, names, 0)
            except BaseException:
                # Refused (or never sent): wanted only where a link still wants it.
                for key in names:
                    if not any(
                        key in link.subscriber.wanted[kind] for link in self._links.values()
                    ):
                        wanted.pop(key, None)
                raise
            return
        for key in names:
            wanted.pop(key, None)
            self._moving[kind].pop(key, None)
        # Unsubscribed where they are, whatever the placement says now.
        calls = []
        for link in list(self._links.values()):
            here = link.subscriber.wanted[kind]
            parts = commands_for(kind, {k: n for k, n in names.items() if k in here})
            calls += [link.subscriber.submit(kind, False, part) for part in parts]
        for call in calls:
            await call.wait()

    async def _subscribe(self, kind: Kind, names: Names, attempt: int) -> None:
        """Subscribe ``names`` where the placement says; follow redirects."""
        per_server: dict[Hashable, Names] = {}
        for key, name in names.items():
            for server in self._placement.place(kind, key):
                per_server.setdefault(server, {})[key] = name
        calls = []
        for server, here in per_server.items():
            subscriber = await self._link(server)
            calls += [
                (part, subscriber.submit(kind, True, part)) for part in commands_for(kind, here)
            ]
        redirected: list[tuple[Names, ResponseError]] = []
        for part, call in calls:
            error = await _refusal(call)
            if error is not None:
                if attempt >= _MAX_REDIRECTS:
                    raise error
                self._placement.learn(error)
                redirected.append((part, error))
        for part, error in redirected:
            if not isinstance(error, MovedError):
                await anyio.sleep(backoff(attempt))
                await self._placement.refresh()
            still = {k: n for k, n in part.items() if k in self._wanted[kind]}
            if still:
                await self._subscribe(kind, still, attempt + 1)

    async def _link(self, server: Hashable) -> Subscriber:
        """The link to ``server``, made (connected, its task started) on first use."""
        link = self._links.get(server)
        while link is not None:
            await link.ready.wait()
            if link.error is None:
                return link.subscriber
            if isinstance(link.error, Exception):
                raise copy_error(link.error)
            # Its maker was cancelled: make it here.
            link = self._links.get(server)
        if self._closed or self._task_group is None:
            raise anyio.ClosedResourceError
        subscriber = Subscriber(
            self._deliver,
            on_dropped=partial(self._dropped, server),
            on_refused=partial(self._refused, server),
        )
        link = self._links[server] = _Link(subscriber)
        try:
            connection = await self._exit_stack.enter_async_context(
                self._placement.source(server).subscriber(subscriber.on_push, subscriber.on_lost)
            )
            await subscriber.start(connection)
        except BaseException as exc:
            link.error = exc
            del self._links[server]
            raise
        finally:
            link.ready.set()
        self._task_group.start_soon(subscriber.keep_subscribed, name="triopipe subscription link")
        return subscriber

    # -- names a server let go (from a link's receiver: synchronous) ------------------

    def _dropped(self, server: Hashable, kind: Kind, names: Names) -> None:
        """``server`` let ``names`` go (a slot moved; it left the map): move them."""
        link = self._links.get(server)
        if link is not None and link.subscriber.closed:
            del self._links[server]  # a new link, if the placement names it again
        names = {key: name for key, name in names.items() if key in self._wanted[kind]}
        if not names or self._closed or self._task_group is None:
            return
        start = not any(self._moving.values())
        self._moving[kind].update(names)
        if self._moving_since is None:
            self._moving_since = time.time()
        if start:
            self._task_group.start_soon(self._move, name="triopipe subscription move")

    def _refused(self, server: Hashable, kind: Kind, names: Names, error: ResponseError) -> None:
        """``server`` refused to take ``names`` back after a lost link."""
        if isinstance(error, _REDIRECTS):
            self._placement.learn(error)
            self._dropped(server, kind, names)
        else:
            # An ACL changed meanwhile, say: nothing to try elsewhere.
            logger.warning(
                "%s refused to resubscribe to %s: %s",
                "the server" if server is None else server,
                list(names.values()),
                error,
            )

    async def _move(self) -> None:
        """Subscribe moved names where the placement now says; then report the gap."""
        attempt = 0
        moved: BaseException | None = None
        while any(self._moving.values()) and not self._closed:
            try:
                await self._placement.refresh()
                for kind, moving in self._moving.items():
                    names = dict(moving)
                    if not names:
                        continue
                    await self._subscribe(kind, names, 0)
                    for key in names:
                        moving.pop(key, None)
                    # What happened, as the server would have said it.
                    key = next(iter(names))
                    where = self._placement.place(kind, key)[0]
                    moved = MovedError("MOVED", f"{key_slot(key)} {where}")
            except (TransportError, ResponseError) as exc:
                logger.debug("moving a subscription failed (%s); trying again", exc)
                await anyio.sleep(backoff(attempt))
                attempt += 1
            except anyio.ClosedResourceError:
                return
        lost_at, self._moving_since = self._moving_since, None
        if lost_at is not None and moved is not None and not self._closed:
            self._deliver(Gap(lost_at, time.time(), moved))

    # -- the stream ----------------------------------------------------------------------

    def _deliver(self, item: Message | Gap) -> None:
        # Called from a connection's receiver: never raise into it, even if
        # the subscription's block has just ended.
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(item)

    def _close(self) -> None:
        self._closed = True
        for link in self._links.values():
            link.subscriber.close()
        self._send.close()
        self._receive.close()


class Subscribing:
    """``subscribe`` and ``ssubscribe`` for every client, each with its own placement."""

    __slots__ = ()

    def _placement(self) -> Placement:
        raise NotImplementedError

    def subscribe(
        self, *channels: Any, patterns: Sequence[Any] = (), on_gap: OnGap = "yield"
    ) -> Subscription:
        """Subscribe to channels and patterns, on connections of the subscription's own.

        The block starts once the server has registered every channel and
        pattern; iterate the subscription for :class:`Message` objects. More
        channels can be added or removed inside the block. If a connection
        breaks, the subscription resubscribes on a new one by itself, and
        the iteration yields one :class:`Gap` for the outage
        (``on_gap="yield"``) or raises :exc:`MessagesLostError`
        (``on_gap="raise"``); either way iterating again goes on.

        Raises:
            TypeError: a name is neither ``bytes`` nor ``str``.
            ValueError: ``on_gap`` is neither ``"yield"`` nor ``"raise"``.
            ConnectError: (entering the block) the server cannot be reached.
        """
        return Subscription(self._placement(), channels, patterns, on_gap=on_gap)

    def ssubscribe(self, *channels: Any, on_gap: OnGap = "yield") -> Subscription:
        """Subscribe to shard channels (``SSUBSCRIBE``, Redis 7.0+), as :meth:`subscribe`.

        Publish to them with ``spublish``. On a cluster each shard channel
        lives on the primary serving its slot, and the subscription follows
        it when the slot moves; elsewhere shard channels behave as channels.
        """
        return Subscription(self._placement(), shard_channels=channels, on_gap=on_gap)
