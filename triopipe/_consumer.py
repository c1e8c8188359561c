"""A consumer in a stream's consumer group, with at-least-once delivery.

Theory of operation
-------------------

A :class:`StreamConsumer` hands out the entries of one stream that its group
gives to its consumer name, one at a time, from a local buffer that it fills
in three ways, in this order of preference:

1. **History** (its own pending entries, ``XREADGROUP ... STREAMS s 0`` and
   on from the last id seen): entries the group delivered to this consumer
   name earlier and that nobody acknowledged. Read first when the consumer
   starts (a restarted worker finishes what it had), and again after any
   read whose reply may have been lost: a lost connection, a cancelled
   read. An ``XREADGROUP ... >`` or ``XAUTOCLAIM`` that the server ran but
   whose reply never arrived has put its entries in this consumer's pending
   list, so going back to the history finds them: nothing is lost. An entry
   deleted from the stream while pending comes back without fields; it is
   acknowledged (there is nothing to process) and skipped.
2. **Claims** (with ``claim_after``): ``XAUTOCLAIM`` takes over entries
   pending in the group longer than ``claim_after`` seconds (their consumer
   died, or hangs), every ``claim_after / 2`` seconds, page after page.
3. **New entries**: ``XREADGROUP ... BLOCK ... STREAMS s >``. With ``BLOCK``
   it is a blocking command, so the client runs it on a connection of its
   bounded dedicated pool, never on the shared one; it blocks at most until
   the next claim is due.

Acknowledgements are batched: :meth:`StreamConsumer.ack` records an id, and
one ``XACK`` with every recorded id goes before the next read, when
``count`` ids are waiting, and when the consumer's block exits. ``XACK`` is
idempotent, so a batch whose outcome was lost with its connection is simply
sent again. An acknowledgement that never reached the server (the process
died first) leaves its entry pending: it is delivered again, to this
consumer name on restart or to another by a claim. Hence *at least once*:
an entry may be processed twice, never lost; processing should be
idempotent.

Lost connections, unreachable servers and passing refusals (``LOADING``
after a restart, ``CLUSTERDOWN`` during a failover, a full ``maxclients``)
do not end the iteration: the consumer waits (capped, jittered exponential
backoff), re-reads its history and goes on. Other error replies
(``NOGROUP``, ``WRONGTYPE``) raise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections import deque
from typing import Any, Literal, Protocol

import anyio

from ._commands import Arg, Key, run_command
from ._commands.streams import xack, xautoclaim, xgroup_create, xreadgroup
from ._exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MaxClientsError,
    ResponseError,
    TransportError,
    TryAgainError,
)

__all__ = [
    "ConsumerOptions",
    "EntryData",
    "StreamConsumer",
    "StreamConsuming",
    "StreamEntry",
]

AckMode = Literal["manual", "auto"]

# Longest XREADGROUP BLOCK: the read comes back at least this often, so an
# idle consumer still notices its cancellation promptly and keeps its link.
_BLOCK_SECONDS = 5.0
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0
_FIRST_CLAIM_CURSOR = "0-0"
# What a consumer waits out: a lost link, an unreachable server, and refusals
# of a live server that pass (loading its data after a restart, full,
# a cluster failing over) once the client's own retries are spent.
_TRANSIENT = (TransportError, BusyLoadingError, MaxClientsError, ClusterDownError, TryAgainError)


class _Executes(Protocol):
    async def execute(self, *args: Arg) -> Any: ...


@dataclasses.dataclass(frozen=True)
class ConsumerOptions:
    """How a :class:`StreamConsumer` works; see ``stream_consumer`` for each option."""

    create: bool = False
    start: Arg = "0"
    claim_after: float | None = None
    ack: AckMode = "manual"
    count: int = 100

    def __post_init__(self) -> None:
        claim_after = self.claim_after
        if claim_after is not None and not claim_after > 0:
            raise ValueError(
                f"claim_after must be a positive number of seconds, not {claim_after!r}"
            )
        if self.ack not in ("manual", "auto"):
            raise ValueError(f"ack must be 'manual' or 'auto', not {self.ack!r}")
        count = self.count
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive int, not {count!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class EntryData:
    """What a delivered stream entry holds, on either facade.

    Attributes:
        id: the entry's id (``b"1700000000000-0"``; ``str`` with ``decode=True``).
        fields: its fields and values, as a dict.
        stream: the stream it was read from.
    """

    id: Any
    fields: dict[Any, Any]
    stream: Any


@dataclasses.dataclass(frozen=True, eq=False)
class StreamEntry(EntryData):
    """One stream entry delivered to a :class:`StreamConsumer`: ``id``, ``fields``, ``stream``."""

    _consumer: StreamConsumer = dataclasses.field(repr=False)

    async def ack(self) -> None:
        """Acknowledge the entry (batched; see :meth:`StreamConsumer.ack`)."""
        await self._consumer.ack(self.id)


class StreamConsumer:
    """A named consumer of a stream's consumer group; iterate it for :class:`StreamEntry`.

    Made by ``redis.stream_consumer(...)``; use it as ``async with
    redis.stream_consumer(stream, group, name) as consumer: async for entry
    in consumer: ...``. The iteration never ends by itself: leave it with
    ``break`` or by cancellation. One task iterates a consumer.

    Attributes:
        stream: the stream it reads.
        group: its consumer group.
        name: its consumer name in the group.
    """

    def __init__(
        self, client: _Executes, stream: Key, group: Arg, consumer: Arg, options: ConsumerOptions
    ) -> None:
        self._client = client
        self.stream = stream
        self.group = group
        self.name = consumer
        self._options = options
        self._claim_after = options.claim_after
        self._auto_ack = options.ack == "auto"
        self._count = options.count
        self._buffer: deque[StreamEntry] = deque()
        # Ids acknowledged but not yet sent in an XACK (a dict keeps their order).
        self._acks: dict[Any, None] = {}
        # The entry handed out last, for ack="auto".
        self._current: StreamEntry | None = None
        # Reading the history (own pending entries), and from which id on.
        self._history = True
        self._history_from: Any = "0"
        self._claim_cursor: Any = _FIRST_CLAIM_CURSOR
        self._next_claim = 0.0
        self._failures = 0

    def __repr__(self) -> str:
        return f"<StreamConsumer {self.name!r} of group {self.group!r} on {self.stream!r}>"

    async def __aenter__(self) -> StreamConsumer:
        if self._options.create:
            await self._create_group()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None and self._auto_ack and self._current is not None:
            self._acks[self._current.id] = None
        self._current = None
        self._buffer.clear()
        if exc_type is None or not issubclass(exc_type, anyio.get_cancelled_exc_class()):
            # Best effort: an acknowledgement that does not arrive leaves its
            # entry pending, to be delivered again (at least once).
            with contextlib.suppress(*_TRANSIENT):
                await self.flush()

    def __aiter__(self) -> StreamConsumer:
        return self

    async def __anext__(self) -> StreamEntry:
        if self._auto_ack and self._current is not None:
            # The loop asks for the next entry: the body of the last one completed.
            self._acks[self._current.id] = None
            self._current = None
        while not self._buffer:
            await self._fill()
        entry = self._current = self._buffer.popleft()
        return entry

    async def ack(self, *ids: Any) -> None:
        """Acknowledge entries by id.

        The ids are sent in one ``XACK`` with the others recorded, before the
        consumer reads again (or at once when ``count`` ids are waiting, or
        when its block exits). An entry whose acknowledgement never reaches
        the server (the process dies first) is delivered again.
        """
        for entry_id in ids:
            self._acks[entry_id] = None
        if len(self._acks) >= self._count:
            await self._flush_or_keep()

    async def flush(self) -> None:
        """Send the recorded acknowledgements now (one ``XACK``).

        Raises:
            TransportError: the server was not reached; the ids stay recorded.
        """
        if not self._acks:
            return
        ids = list(self._acks)
        await self._run(xack(self.stream, self.group, *ids))
        for entry_id in ids:
            self._acks.pop(entry_id, None)

    async def _flush_or_keep(self) -> None:
        with contextlib.suppress(*_TRANSIENT):  # sent again with the next batch
            await self.flush()

    async def _create_group(self) -> None:
        try:
            await self._run(
                xgroup_create(self.stream, self.group, self._options.start, mkstream=True)
            )
        except ResponseError as exc:
            if exc.code != "BUSYGROUP":
                raise

    async def _run(self, command: Any) -> Any:
        return await run_command(self._client.execute, command)

    async def _fill(self) -> None:
        """Put entries in the buffer, or wait in vain for new ones; retry what the link lost."""
        try:
            await self._flush_or_keep()
            if self._history:
                await self._read_history()
            elif self._claim_due():
                await self._claim()
            else:
                await self._read_new()
        except _TRANSIENT:
            # Whatever the lost reply carried is pending for this consumer
            # name now: read the history again once the server answers.
            self._restart_history()
            self._failures += 1
            delay = min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0 ** min(self._failures, 16))
            await anyio.sleep(delay * random.uniform(0.5, 1.0))
        else:
            self._failures = 0

    def _restart_history(self) -> None:
        self._buffer.clear()
        self._history = True
        self._history_from = "0"

    async def _read_history(self) -> None:
        reply = await self._run(
            xreadgroup(self.group, self.name, {self.stream: self._history_from}, count=self._count)
        )
        entries = _entries_of(reply)
        if not entries:
            self._history = False
            return
        self._history_from = entries[-1][0]
        for entry_id, fields in entries:
            if fields is None:  # deleted while pending: nothing left to process
                self._acks[entry_id] = None
            elif entry_id not in self._acks:  # acknowledged, the XACK not sent yet
                self._buffer.append(StreamEntry(entry_id, fields, self.stream, self))

    def _claim_due(self) -> bool:
        return self._claim_after is not None and time.monotonic() >= self._next_claim

    async def _claim(self) -> None:
        assert self._claim_after is not None
        try:
            cursor, entries, _deleted = await self._run(
                xautoclaim(
                    self.stream,
                    self.group,
                    self.name,
                    round(self._claim_after * 1000),
                    self._claim_cursor,
                    count=self._count,
                )
            )
        except BaseException:
            # Claimed entries whose reply was lost are pending for us now.
            self._restart_history()
            raise
        if cursor in (_FIRST_CLAIM_CURSOR, _FIRST_CLAIM_CURSOR.encode()):
            self._claim_cursor = _FIRST_CLAIM_CURSOR
            self._next_claim = time.monotonic() + self._claim_after / 2
        else:
            self._claim_cursor = cursor
        # Our own slow entries may come back too: keep only those not held here.
        self._add_new(entries)

    async def _read_new(self) -> None:
        block = _BLOCK_SECONDS
        if self._claim_after is not None:
            block = min(block, max(0.001, self._next_claim - time.monotonic()))
        try:
            reply = await self._run(
                xreadgroup(
                    self.group,
                    self.name,
                    {self.stream: ">"},
                    count=self._count,
                    block=max(1, round(block * 1000)),
                )
            )
        except BaseException:
            # Cancelled or lost: the server may have delivered entries to us.
            self._restart_history()
            raise
        self._add_new(_entries_of(reply))

    def _add_new(self, entries: list[tuple[Any, Any]]) -> None:
        held = {entry.id for entry in self._buffer}
        if self._current is not None:
            held.add(self._current.id)
        for entry_id, fields in entries:
            if fields is not None and entry_id not in held and entry_id not in self._acks:
                self._buffer.append(StreamEntry(entry_id, fields, self.stream, self))


def _entries_of(reply: dict[Any, Any] | None) -> list[tuple[Any, Any]]:
    """The entries of an ``XREADGROUP`` reply for one stream (None when it timed out)."""
    if not reply:
        return []
    return next(iter(reply.values()))


class StreamConsuming:
    """``stream_consumer`` for any facade with an async ``execute``."""

    __slots__ = ()

    def stream_consumer(
        self: _Executes,
        stream: Key,
        group: Arg,
        consumer: Arg,
        *,
        create: bool = False,
        start: Arg = "0",
        claim_after: float | None = None,
        ack: AckMode = "manual",
        count: int = 100,
    ) -> StreamConsumer:
        """Consume ``stream`` as ``consumer`` of ``group``, with at-least-once delivery.

        ::

            async with redis.stream_consumer("jobs", "workers", "worker-1",
                                             create=True, claim_after=30) as consumer:
                async for entry in consumer:
                    await handle(entry.fields)
                    await entry.ack()

        The consumer first delivers its own entries still pending from an
        earlier run, then entries claimed from dead consumers (with
        ``claim_after``), then new ones, read with ``XREADGROUP ... BLOCK`` on
        a dedicated connection. Acknowledgements go in batches. A lost
        connection is waited out; nothing delivered to the group is lost,
        and an entry may be delivered more than once.

        Args:
            stream: the stream's key.
            group: the consumer group.
            consumer: this consumer's name in the group; a restarted worker
                should use the same name to finish its pending entries.
            create: create the group (and the stream) on entry if it does
                not exist (``XGROUP CREATE ... MKSTREAM``).
            start: where a group created here starts: ``"0"`` (default)
                delivers the stream's whole content, ``"$"`` only entries
                added later.
            claim_after: take over entries other consumers left pending
                longer than this many seconds (``XAUTOCLAIM``); None: never.
                Make it longer than processing an entry takes.
            ack: ``"manual"`` (default): call ``entry.ack()``. ``"auto"``: an
                entry is acknowledged when the loop body that received it
                completes (the loop asks for the next entry, or the block
                exits without an exception).
            count: entries fetched per read, and acknowledgements per
                ``XACK`` at most.

        Raises:
            ValueError: a bad ``claim_after``, ``ack`` or ``count`` (before
                anything is sent).
        """
        options = ConsumerOptions(create, start, claim_after, ack, count)
        return StreamConsumer(self, stream, group, consumer, options)
