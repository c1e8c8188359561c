"""Pub/Sub subscriptions: a dedicated connection in subscriber mode.

Theory of operation: a :class:`Subscription` is an async context manager
that borrows a new connection in pub/sub mode from its client's group (the
server then only sends messages and confirmations on it, as RESP3 push
frames, or under RESP2 as arrays nobody asked for). Every frame goes to
:meth:`Subscription._on_push`, which turns messages into :class:`Message`
objects on a memory channel that ``async for`` reads, and counts
confirmations, so that ``subscribe()`` returns only once the server has
registered every channel: a message published after it returns is received.

Pub/Sub delivers at most once: if the connection breaks, messages sent
meanwhile are lost, and iteration raises the ``ConnectionLostError`` (open a
new subscription to go on). The memory channel is unbounded: a consumer that
falls behind makes it grow, as the server's own buffer would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from types import TracebackType
from typing import Any, Protocol

import anyio

from ._connection import Connection
from ._resp import Push, encode_command

__all__ = ["Message", "Subscription"]

_MESSAGE_KINDS = frozenset({"message", "smessage"})
_CONFIRMATION_KINDS = frozenset({"subscribe", "psubscribe", "unsubscribe", "punsubscribe"})


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


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class SubscriberSource(Protocol):
    """Where a subscription gets its connection: a connection group."""

    def subscriber(
        self, on_push: Callable[[Push], None], on_lost: Callable[[BaseException], None]
    ) -> AbstractAsyncContextManager[Connection]: ...


class Subscription:
    """The channels and patterns of one subscription; iterate for messages.

    Made by ``Client.subscribe``; use it as ``async with redis.subscribe(...)
    as sub: async for message in sub: ...``.
    """

    def __init__(
        self, source: SubscriberSource, channels: Sequence[Any] = (), patterns: Sequence[Any] = ()
    ) -> None:
        self._source = source
        self._initial = (tuple(channels), tuple(patterns))
        self._exit_stack = AsyncExitStack()
        self._send, self._receive = anyio.create_memory_object_stream[Message | BaseException](
            math.inf
        )
        self._connection: Connection | None = None
        self._awaiting = 0
        self._confirmed = anyio.Event()
        self.channels: set[Any] = set()
        self.patterns: set[Any] = set()

    async def __aenter__(self) -> Subscription:
        async with AsyncExitStack() as stack:
            self._connection = await stack.enter_async_context(
                self._source.subscriber(self._on_push, self._on_lost)
            )
            stack.callback(self._close)
            channels, patterns = self._initial
            await self.subscribe(*channels)
            await self.psubscribe(*patterns)
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._exit_stack.aclose()

    async def subscribe(self, *channels: Any) -> None:
        """Subscribe to more channels; returns once the server has registered them."""
        await self._change("SUBSCRIBE", channels)

    async def psubscribe(self, *patterns: Any) -> None:
        """Subscribe to more glob-style patterns (``news.*``)."""
        await self._change("PSUBSCRIBE", patterns)

    async def unsubscribe(self, *channels: Any) -> None:
        """Unsubscribe from channels."""
        await self._change("UNSUBSCRIBE", channels)

    async def punsubscribe(self, *patterns: Any) -> None:
        """Unsubscribe from patterns."""
        await self._change("PUNSUBSCRIBE", patterns)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        if isinstance(item, BaseException):
            raise item
        return item

    async def _change(self, command: str, names: tuple[Any, ...]) -> None:
        if not names:
            return
        connection = self._connection
        if connection is None:
            raise anyio.ClosedResourceError
        self._awaiting += len(names)
        self._confirmed = event = anyio.Event()
        connection.send_only(encode_command((command, *names)))
        await event.wait()

    def _on_push(self, push: Push) -> None:
        if not push:
            return
        kind = _text(push[0]).lower()
        if kind in _MESSAGE_KINDS and len(push) >= 3:
            self._deliver(Message(push[1], push[2]))
        elif kind == "pmessage" and len(push) >= 4:
            self._deliver(Message(push[2], push[3], push[1]))
        elif kind in _CONFIRMATION_KINDS and len(push) >= 2:
            name = push[1]
            if kind == "subscribe":
                self.channels.add(name)
            elif kind == "psubscribe":
                self.patterns.add(name)
            elif kind == "unsubscribe":
                self.channels.discard(name)
            else:
                self.patterns.discard(name)
            self._awaiting -= 1
            if self._awaiting <= 0:
                self._awaiting = 0
                self._confirmed.set()

    def _on_lost(self, error: BaseException) -> None:
        self._deliver(error)
        self._confirmed.set()

    def _deliver(self, item: Message | BaseException) -> None:
        # Called from the connection's receiver: never raise into it, even if
        # the subscription's block has just ended.
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._send.send_nowait(item)

    def _close(self) -> None:
        self._connection = None
        self._send.close()
        self._receive.close()
