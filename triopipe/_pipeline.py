"""A link's pipeline state, sans-io: everything that changes a link's state lives here.

Theory of operation
-------------------

A *link* is one socket's lifetime, from connect to break. Its pipeline is the
bookkeeping that decides which bytes go out next and whose reply comes in
next; :mod:`triopipe._connection` moves the bytes and calls these methods.
Nothing here does I/O, sleeps, or knows which event loop runs it: the methods
are synchronous, and the objects they wake are handed in (:class:`Notify`).

A :class:`Request` is one submission: a single command, or a batch of
commands sharing one reply list. It goes through three places, in order:

1. the *queue*: submitted, not yet written. A batch request still here may
   grow (:meth:`Pipeline.extend`). An abandoned request is dropped here: it is
   never written.
2. the *write stream*: :meth:`Pipeline.next_write` takes requests off the
   queue in order and turns their bytes into writes (many small ones joined,
   up to ``WRITE_BYTES``; a big one alone). Each request records the stream
   offset of its first byte (``start``); :meth:`Pipeline.wrote` records how
   many bytes the kernel took. A request is *sent* once the kernel took one
   of its bytes: that, and nothing else, is what ``ConnectionLostError.sent``
   reports when the link breaks.
3. ``pending``: requests taken for writing, in write order, awaiting replies.
   :meth:`Pipeline.feed` hands each reply to ``pending[0]``: replies come
   back in the order commands were written, so no reply can reach anyone but
   the request that sent its command. A push frame is never a reply.

The rules:

- *Submitting never waits.* :meth:`Pipeline.submit` queues a request and
  counts it in one step, so a caller cancelled around it leaves either both
  or neither. Only waiting for the reply is cancellable, and a cancelled
  waiter marks its request ``abandoned``: dropped if not yet written,
  otherwise its replies are read and thrown away.
- *One honest count.* ``outstanding`` is the commands submitted and not
  settled (answered, dropped unwritten, or failed). It is derived from three
  monotonic counters, each with one writer: ``submitted`` (the loop thread),
  ``thread_submitted`` (other threads, one at a time under the connection's
  thread lock, see :meth:`Pipeline.write_directly`) and ``settled`` (the
  loop thread). None of them ever goes down.
- *Room.* A request fits when the commands outstanding, and the room
  promised to woken waiters, stay within the :class:`ReplyBudget`'s limit,
  or when nothing is outstanding or promised at all (so a request larger
  than the limit still runs, alone). Submitters that do not fit wait in turn
  as :class:`Waiter` entries; each reply read wakes as many as the freed
  room admits, in order (:meth:`Pipeline.release_room`), and promises them
  that room until they submit (:meth:`Pipeline.claim`) or give up
  (:meth:`Pipeline.remove_waiter`, which passes it on).
- *Failing is total.* :meth:`Pipeline.fail` settles every request at once,
  with an error built for each (``sent`` exact, per the offsets above) and
  wakes every waiter; the pipeline then refuses new work.

Threads
-------

Every method is for the loop thread, except :meth:`Pipeline.write_directly`
with ``thread=True`` and the :meth:`Pipeline.next_write` / :meth:`Pipeline.wrote`
calls that follow it, which another thread may make while holding the
connection's thread lock with the sender asleep (see ``_connection``). Writes
stay in ``pending`` order because only one writer is ever active; ``pending``
is a ``deque``, whose appends and pops are atomic between threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ._exceptions import ProtocolError
from ._resp import Push

__all__ = [
    "WRITE_BYTES",
    "Notify",
    "Pipeline",
    "ReplyBudget",
    "Request",
    "Waiter",
]

#: Largest write made by joining queued payloads; a bigger payload goes alone.
WRITE_BYTES = 1024 * 1024
# Bytes of replies a connection keeps in flight, at least (see ReplyBudget).
# The server holds the replies it could not write yet in its client output
# buffer, which it may cap (``client-output-buffer-limit``) by disconnecting
# the client; so the commands in flight are bounded by the byte budget divided
# by the observed mean reply size, as well as by ``max_in_flight``.
REPLY_BUDGET = 256 * 1024
# ... and at most: the budget grows with the link's bandwidth-delay product,
# up to this (a 1 ms round trip at 64 Gbit/s, or 300 ms at 200 Mbit/s).
MAX_REPLY_BUDGET = 8 * 1024 * 1024
# Bytes in flight aimed at, as a multiple of the bandwidth-delay product:
# BBR's startup gain (2 / ln 2), so that a budget that limits the delivery
# rate grows 2.89-fold every round trip until something else does, and then
# holds. (With 2, measured through a 1 ms delay, growth stalled at 770 KiB:
# a round trip there costs more than the bare delay.)
BDP_GAIN = 2.89
# Each delivery-rate sample lets the best rate seen so far fade by this, so
# the budget follows a workload that slows down.
RATE_DECAY = 0.95
# Writes of at most this many commands on an empty pipe time the round trip.
ROUND_TRIP_COMMANDS = 4
# Largest execute_many window, in commands.
MAX_WINDOW = 512
# An execute_many window is at most this fraction of the limit. Room comes
# back a request at a time, when its last reply is in, so the commands in
# flight swing between the limit less one window and the limit: with windows
# of half the limit the link carries three quarters of it on average, with a
# quarter seven eighths. It matters only where replies are large (small ones
# reach MAX_WINDOW either way); measured with 4 KiB GETs on asyncio, half
# against a quarter: 350k against 650k GET/s with no added delay, 130k
# against 200k at 1 ms one way (an eighth: 410k and 230k; a sixteenth, four
# commands a window on loopback: 100k and 250k). A window also asks for at most
# REPLY_BUDGET bytes of replies, so that once the budget has grown over a
# slow link the server is sent many modest windows rather than a few huge
# ones: 240k against 200k GET/s at 1 ms.
WINDOW_SHARE = 4
# Start by assuming large replies (a few small windows), like TCP's slow
# start; small replies raise the bound within a few reads.
INITIAL_REPLY_SIZE = 1024.0


class Notify(Protocol):
    """What a pipeline wakes: set once a request is settled, or a waiter has room."""

    def set(self) -> None:
        """Wake whoever waits; idempotent, never raises."""


N = TypeVar("N", bound=Notify)


class Request(Generic[N]):
    """One submission: a single command, or a batch sharing one write.

    ``count`` replies are expected. A single command's reply lands in
    ``value``; a batch's (``many``) replies are appended to ``replies`` in
    order. ``notify`` is set once every reply is in, or the request failed
    (``error``).
    """

    __slots__ = (
        "abandoned",
        "count",
        "done",
        "error",
        "extra",
        "notify",
        "payload",
        "replies",
        "start",
        "taken",
        "value",
    )

    #: Set once taken for writing: the offset of its first byte in the link's
    #: write stream (left unset before, which costs nothing per command).
    start: int

    def __init__(self, payload: bytes, count: int, notify: N, many: bool) -> None:
        self.payload = payload
        self.count = count
        self.replies: list[Any] | None = [] if many or count != 1 else None
        # Payloads added while the request was still queued (batches).
        self.extra: list[bytes] | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.notify = notify
        # Set by the waiter that gave up: never write it, drop its replies.
        self.abandoned = False
        # Left the queue (taken for writing, or dropped): it can no longer grow.
        self.taken = False
        # Every reply is in, or the request failed; ``notify`` was set.
        self.done = False

    def outcome(self) -> Any:
        """The reply (or list of replies), or the error as a value; once ``done``."""
        if self.error is not None:
            return self.error
        return self.value if self.replies is None else self.replies

    def result(self) -> Any:
        """The reply (or list of replies), once ``done``; raises the error if it failed."""
        if self.error is not None:
            raise self.error
        return self.value if self.replies is None else self.replies


class Waiter:
    """A submitter waiting for room for ``count`` commands; ``notify`` wakes it."""

    __slots__ = ("count", "notify", "woken")

    def __init__(self, count: int, notify: Notify) -> None:
        self.count = count
        self.notify = notify
        self.woken = False


class ReplyBudget:
    """How many commands a connection keeps in flight, from the replies it sees.

    Outlives links: what was learned about reply sizes and the link's round
    trip holds for the next one.

    The budget is in bytes of replies: what the commands in flight may make
    the server produce before we read it. It is the largest of
    :data:`REPLY_BUDGET` and :data:`BDP_GAIN` times the link's
    bandwidth-delay product (BDP), at most :data:`MAX_REPLY_BUDGET`, with the
    BDP measured as TCP's BBR does:

    - the *round trip* is the least time from a write to its first reply,
      over the connection's handshakes and its writes of a few commands made
      on an empty pipe (behind other commands, or with many, it would count
      the server's time on them too). It only ever goes down.
    - the *delivery rate* is sampled over one write at a time: reply bytes
      received between the write and its last reply, over that time. The
      best recent sample counts.

    On loopback or a LAN the product is small: the budget stays at or near
    256 KiB. Over a slow round trip the budget, while it limits the rate,
    grows 2.89-fold each round trip until the link or a peer is the limit:
    then the rate stops growing, and so does the budget, with the link full
    and what waits beyond it (in the server's buffers among others) bounded
    by the gain and :data:`MAX_REPLY_BUDGET`.

    Attributes:
        limit: commands in flight allowed now (at most ``max_in_flight``).
        window: commands an ``execute_many`` window should hold now: a
            quarter of the limit (see :data:`WINDOW_SHARE`), and at most
            :data:`REPLY_BUDGET` bytes of replies.
        budget: the byte budget now.
        round_trip: the least round trip seen, in seconds (None before any).
        delivery_rate: the best recent delivery rate, in bytes per second.
    """

    __slots__ = (
        "budget",
        "clock",
        "delivery_rate",
        "limit",
        "max_in_flight",
        "reply_size",
        "round_trip",
        "window",
    )

    def __init__(self, max_in_flight: int, clock: Callable[[], float] | None = None) -> None:
        self.max_in_flight = max_in_flight
        # What the pipeline reads the time with when it takes a sample (the
        # connection's monotonic clock); without one, no samples: the budget
        # stays at REPLY_BUDGET.
        self.clock = clock
        # Mean reply size, a moving average over socket reads.
        self.reply_size = INITIAL_REPLY_SIZE
        self.budget = float(REPLY_BUDGET)
        self.round_trip: float | None = None
        self.delivery_rate = 0.0
        self.limit = max_in_flight
        self.window = 1
        self._update()

    def observe(self, size: int, count: int) -> None:
        """``count`` replies took ``size`` bytes: follow the mean reply size."""
        # Quick to follow a change of workload, and cheap: once per read.
        self.reply_size += (size / count - self.reply_size) * 0.5
        self._update()

    def observe_round_trip(self, seconds: float) -> None:
        """A write made on an empty pipe had its first reply ``seconds`` later."""
        if seconds > 0 and (self.round_trip is None or seconds < self.round_trip):
            self.round_trip = seconds
            self._resize()

    def observe_delivery(self, size: int, seconds: float) -> None:
        """``size`` bytes of replies came in over ``seconds`` (one write's life)."""
        if seconds > 0:
            self.delivery_rate = max(size / seconds, self.delivery_rate * RATE_DECAY)
            self._resize()

    def _resize(self) -> None:
        if self.round_trip is None:
            return
        wanted = BDP_GAIN * self.delivery_rate * self.round_trip
        self.budget = min(MAX_REPLY_BUDGET, max(REPLY_BUDGET, wanted))
        self._update()

    def _update(self) -> None:
        self.limit = max(1, min(self.max_in_flight, int(self.budget / self.reply_size)))
        self.window = max(
            1,
            min(MAX_WINDOW, self.limit // WINDOW_SHARE, int(REPLY_BUDGET / self.reply_size)),
        )


class Pipeline(Generic[N]):
    """One link's queue, write stream, pending replies, counts and waiters.

    Args:
        budget: the connection's reply budget (shared by its successive links).
        subscriber: the link is in pub/sub mode: a reply nobody waits for
            (RESP2 sends pub/sub messages as plain arrays) is a push, not a
            protocol error.
    """

    __slots__ = (
        "_delivery",
        "_handed",
        "_more",
        "_received",
        "_replied",
        "_round_trip_start",
        "_taken",
        "_unattributed",
        "_write",
        "budget",
        "commands_written",
        "failed",
        "pending",
        "promised",
        "queue",
        "settled",
        "submitted",
        "subscriber",
        "thread_submitted",
        "waiters",
        "writes",
    )

    def __init__(self, budget: ReplyBudget, *, subscriber: bool = False) -> None:
        self.budget = budget
        self.subscriber = subscriber
        self.queue: deque[Request[Any]] = deque()
        self.pending: deque[Request[Any]] = deque()
        self.waiters: deque[Waiter] = deque()
        self.submitted = 0
        self.thread_submitted = 0
        self.settled = 0
        # Room given to woken waiters that have not submitted yet: theirs.
        self.promised = 0
        # The write stream: bytes taken off the queue, bytes the kernel took,
        # the write being made (its remaining bytes) and the writes after it.
        self._taken = 0
        self._handed = 0
        self._write: bytes | memoryview | None = None
        self._more: deque[bytes] = deque()
        # Commands taken for writing, and writes the kernel took bytes of.
        self.commands_written = 0
        self.writes = 0
        # Bytes read since the last complete reply (for the budget).
        self._unattributed = 0
        # The link's measurements for the budget (see ReplyBudget): bytes
        # read and commands answered so far; when the write timed for the
        # round trip was made; and the delivery sample under way (commands
        # to be answered, when, bytes read by then).
        self._received = 0
        self._replied = 0
        self._round_trip_start: float | None = None
        self._delivery: tuple[int, float, int] | None = None
        # The error the pipeline failed with; it takes no more work.
        self.failed: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"<Pipeline outstanding={self.outstanding} queued={len(self.queue)} "
            f"pending={len(self.pending)}>"
        )

    # -- counts ---------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Commands submitted and not settled yet (queued, or awaiting replies)."""
        return self.submitted + self.thread_submitted - self.settled

    @property
    def queued(self) -> int:
        """Commands not taken for writing yet."""
        return sum(request.count for request in self.queue)

    def has_room(self, count: int) -> bool:
        """Whether ``count`` more commands fit now (see "Room")."""
        taken = self.submitted + self.thread_submitted - self.settled + self.promised
        return taken == 0 or taken + count <= self.budget.limit

    @property
    def between_writes(self) -> bool:
        """Nothing queued and no write under way: a new request could be written at once."""
        return not self.queue and self._write is None and not self._more

    @property
    def idle(self) -> bool:
        """Between writes with no reply awaited either: a lone command is worth writing at once.

        On a busy link a new command waits for the sender instead, which
        writes it together with whatever else arrives meanwhile.
        """
        return not self.queue and self._write is None and not self._more and not self.pending

    # -- submitting (loop thread) ---------------------------------------------

    def submit(self, payload: bytes, count: int, notify: N, many: bool = False) -> Request[N]:
        """Queue ``count`` encoded commands as one request and return it.

        ``many`` makes the request collect a list of replies even for one
        command, and lets it grow with :meth:`extend` while queued.
        """
        request = Request(payload, count, notify, many)
        self.submitted += count
        self.queue.append(request)
        return request

    def extend(self, request: Request[Any], payload: bytes) -> bool:
        """Add one encoded command to a ``many`` request still queued.

        Returns False, changing nothing, when the request was already taken
        (or the pipeline failed): submit a new request then.
        """
        if request.taken or self.failed is not None:
            return False
        extra = request.extra
        if extra is None:
            request.extra = [payload]
        else:
            extra.append(payload)
        request.count += 1
        self.submitted += 1
        return True

    # -- writing (the one active writer) --------------------------------------

    def next_write(self) -> bytes | memoryview | None:
        """The bytes to hand to the kernel next; None when there is nothing to write.

        The rest of the write under way comes first; otherwise requests are
        taken off the queue, in order, into a new write (abandoned ones are
        dropped, never written). Report what the kernel took with
        :meth:`wrote`.
        """
        write = self._write
        if write is not None:
            return write
        if self._more:
            write = self._write = self._more.popleft()
            return write
        queue = self.queue
        if not queue:
            return None
        pending = self.pending
        empty = not pending
        first = offset = self._taken
        chunks: list[bytes] = []
        dropped = written = 0
        while queue:
            request = queue[0]
            if request.abandoned:
                queue.popleft()
                request.taken = True
                dropped += request.count
                continue
            size = len(request.payload)
            extra = request.extra
            if extra is not None:
                size += sum(map(len, extra))
            if chunks and offset - first + size > WRITE_BYTES:
                break
            queue.popleft()
            request.taken = True
            request.start = offset
            offset += size
            written += request.count
            if request.count:
                pending.append(request)
            chunks.append(request.payload)
            if extra is not None:
                chunks += extra
        if dropped:
            self.settled += dropped
            if self.waiters:
                self.release_room()
        self._taken = offset
        if not chunks:
            return None
        self._sample_write(empty, written)
        self.commands_written += written
        if len(chunks) == 1:
            write = chunks[0]
        elif offset - first <= WRITE_BYTES:
            write = b"".join(chunks)
        else:
            # One request bigger than a write (a batch of big values): its
            # payloads in writes of at most WRITE_BYTES, not one huge join.
            writes = _coalesced(chunks)
            write = writes[0]
            self._more.extend(writes[1:])
        self._write = write
        return write

    def wrote(self, count: int) -> bool:
        """The kernel took the first ``count`` bytes of :meth:`next_write`'s bytes.

        Returns whether the write is complete (nothing is left of it).
        """
        write = self._write
        if write is None or not count:
            # None: the link failed while the write was under way (a stream
            # that could not be interrupted finished it): nothing to record.
            return False
        self._handed += count
        self.writes += 1
        if count >= len(write):
            self._write = self._more.popleft() if self._more else None
            return self._write is None
        self._write = memoryview(write)[count:]  # no copy of a big payload
        return False

    def _sample_write(self, empty: bool, written: int) -> None:
        """A write of ``written`` more commands was taken (on an ``empty`` pipe: no
        reply awaited): start the budget's samples it is due for, if any.

        A write of a few commands on an empty pipe times the round trip; a big
        one would count the server's time on all of its commands.
        """
        timed = empty and written <= ROUND_TRIP_COMMANDS
        if self.budget.clock is not None and (
            self._delivery is None or (timed and self._round_trip_start is None)
        ):
            self._start_samples(timed, written)

    def _start_samples(self, timed: bool, written: int) -> None:
        """Time the write of ``written`` more commands, for the budget (see ReplyBudget).

        ``timed``: the write is made on an empty pipe and small, so its first
        reply times the round trip.
        """
        clock = self.budget.clock
        assert clock is not None
        now = clock()
        if timed and self._round_trip_start is None:
            self._round_trip_start = now
        if self._delivery is None:
            self._delivery = (self.commands_written + written, now, self._received)

    @property
    def writing(self) -> bool:
        """Whether :meth:`next_write` has bytes to give (a write under way, or queued requests)."""
        return self._write is not None or bool(self._more) or bool(self.queue)

    def write_directly(
        self, payload: bytes, count: int, notify: N, *, thread: bool = False, many: bool = False
    ) -> Request[N] | None:
        """Make a request the next write, skipping the queue, if the link allows it.

        For a writer other than the sender, which then writes the request's
        bytes at once (:meth:`next_write` gives them) and reports them with
        :meth:`wrote`; the sender writes whatever the kernel did not take.
        The request goes straight to ``pending``, before being written: its
        reply may be read before the write call returns. Returns None,
        changing nothing, when it must wait for the sender instead:

        - from the loop thread, a lone command unless the link is
          :attr:`idle`: on a busy link the sender writes it together with
          what else arrives. A ``many`` request (a window of a pipeline,
          which never grows) needs only :attr:`between_writes`: it is a
          write of its own anyway;
        - from another ``thread`` (under the connection's thread lock, with
          the sender asleep), unless the link is :attr:`between_writes` and
          has room. Such a request is counted in ``thread_submitted``, the
          one counter those threads write.
        """
        if self.queue or self._write is not None or self._more:
            return None
        if thread:
            if not self.has_room(count):
                return None
        elif self.pending and not many:
            return None
        request = Request(payload, count, notify, many)
        request.taken = True
        request.start = self._taken
        self._taken += len(payload)
        if thread:
            self.thread_submitted += count
        else:
            # As the sender's writes are: a lone command on an idle link times
            # the round trip exactly. (Not from other threads: the receiver
            # reads these fields.)
            self._sample_write(not self.pending, count)
            self.submitted += count
        self.commands_written += count
        self.pending.append(request)
        self._write = payload
        return request

    # -- reading (loop thread) --------------------------------------------------

    def feed(self, replies: list[Any], size: int) -> list[Push] | None:
        """Hand the replies parsed from ``size`` bytes to their requests, in order.

        Returns the push frames among them (None when there are none), for
        the connection to deliver.

        Raises:
            ProtocolError: a reply arrived with no command waiting for it
                (the stream is out of step: break the link).
        """
        self._unattributed += size
        self._received += size
        if not replies:
            return None
        self.budget.observe(self._unattributed, len(replies))
        self._unattributed = 0
        pending = self.pending
        pushes: list[Push] | None = None
        settled = settled_in_runs = 0
        if pending and pending[0].replies is not None:
            # A batch's replies are taken as slices, not one by one, up to a
            # push frame; what is left goes through the loop below.
            before = self.settled
            replies = replies[self._settle_in_runs(replies) :]
            settled_in_runs = self.settled - before
        try:
            for reply in replies:
                if type(reply) is Push:
                    if pushes is None:
                        pushes = []
                    pushes.append(reply)
                    continue
                if not pending:
                    if not self.subscriber:
                        raise ProtocolError(
                            "the server sent a reply with no command waiting for it"
                        )
                    if pushes is None:
                        pushes = []
                    pushes.append(Push(reply) if isinstance(reply, list) else Push([reply]))
                    continue
                request = pending[0]
                collected = request.replies
                if collected is None:
                    pending.popleft()
                    settled += 1
                    request.value = reply
                    request.done = True
                    request.notify.set()
                else:
                    collected.append(reply)
                    if len(collected) == request.count:
                        pending.popleft()
                        settled += request.count
                        request.done = True
                        request.notify.set()
        finally:
            self.settled += settled
            self._replied += settled
        if (settled or settled_in_runs) and (
            self._round_trip_start is not None or self._delivery is not None
        ):
            self._end_samples()
        if self.waiters:
            self.release_room()
        return pushes

    def _settle_in_runs(self, replies: list[Any]) -> int:
        """Settle the pending batches with the first ``replies``; return how many replies it used.

        Each batch takes its replies as one slice, not one by one. It stops
        at a single command's request or a push frame, which the general loop
        of :meth:`feed` handles. Each request settled is counted as it is (in
        :attr:`settled`).
        """
        pending = self.pending
        taken = 0
        while pending and taken < len(replies):
            request = pending[0]
            collected = request.replies
            if collected is None:
                break
            count = request.count
            chunk = replies[taken : taken + count - len(collected)]
            if Push in set(map(type, chunk)):
                break
            collected.extend(chunk)
            taken += len(chunk)
            if len(collected) < count:
                break  # the rest comes with later bytes
            pending.popleft()
            self.settled += count
            self._replied += count
            request.done = True
            request.notify.set()
        return taken

    def _end_samples(self) -> None:
        """Replies came: complete the budget's samples they end."""
        budget = self.budget
        assert budget.clock is not None
        now = budget.clock()
        start = self._round_trip_start
        if start is not None:
            # Nothing was in flight before that write: this reply is its first.
            self._round_trip_start = None
            budget.observe_round_trip(now - start)
        delivery = self._delivery
        if delivery is not None and self._replied >= delivery[0]:
            self._delivery = None
            budget.observe_delivery(self._received - delivery[2], now - delivery[1])

    # -- room -----------------------------------------------------------------

    def add_waiter(self, count: int, notify: Notify, *, first: bool = False) -> Waiter:
        """Queue a submitter waiting for room for ``count`` commands.

        ``first`` puts it at the head: a waiter woken but beaten to the room
        keeps its turn.
        """
        waiter = Waiter(count, notify)
        if first:
            self.waiters.appendleft(waiter)
        else:
            self.waiters.append(waiter)
        return waiter

    def remove_waiter(self, waiter: Waiter) -> None:
        """Withdraw a waiter that gave up; room it was promised goes to the next ones."""
        if waiter.woken:
            if self.failed is None:
                self.promised -= waiter.count
                self.release_room()
        else:
            self.waiters.remove(waiter)

    def claim(self, waiter: Waiter) -> None:
        """A woken waiter is about to submit: its promised room becomes its commands'."""
        if self.failed is None:
            self.promised -= waiter.count

    def release_room(self) -> None:
        """Wake waiters in turn, as many as the room admits (see "Room")."""
        waiters = self.waiters
        taken = self.submitted + self.thread_submitted - self.settled + self.promised
        limit = self.budget.limit
        while waiters:
            waiter = waiters[0]
            if taken and taken + waiter.count > limit:
                return
            waiters.popleft()
            waiter.woken = True
            self.promised += waiter.count
            waiter.notify.set()
            taken += waiter.count

    # -- failing ----------------------------------------------------------------

    def fail(
        self, error: BaseException, make_error: Callable[[bool], BaseException], in_doubt: int = 0
    ) -> int:
        """Settle every request at once with an error of its own; wake every waiter.

        Returns the number of commands whose outcome is now unknown (sent).

        ``make_error(sent)`` builds each request's error; ``sent`` is True
        when the kernel took at least one of its bytes, or may have: the
        ``in_doubt`` bytes after those reported to :meth:`wrote` (a write
        interrupted where the stream cannot tell how much went, e.g. TLS).
        Idempotent; the pipeline takes no work afterwards.
        """
        if self.failed is not None:
            return 0
        self.failed = error
        handed = self._handed + in_doubt
        unknown = 0
        self._write = None
        self._more.clear()
        pending = self.pending
        while pending:
            # Every request here was taken for writing: it has a start.
            request = pending.popleft()
            sent = request.start < handed
            if sent:
                unknown += request.count
            request.error = make_error(sent)
            request.done = True
            request.notify.set()
        queue = self.queue
        while queue:
            request = queue.popleft()
            request.taken = True
            request.error = make_error(False)
            request.done = True
            request.notify.set()
        self.settled = self.submitted + self.thread_submitted
        self.promised = 0
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            waiter.woken = True
            waiter.notify.set()
        return unknown


def _coalesced(chunks: list[bytes]) -> list[bytes]:
    """``chunks`` joined into writes of at most ``WRITE_BYTES``; a big chunk goes alone.

    Joining many small payloads saves system calls; joining big ones would
    only copy megabytes for nothing.
    """
    writes: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for chunk in chunks:
        if group and size + len(chunk) > WRITE_BYTES:
            writes.append(group[0] if len(group) == 1 else b"".join(group))
            group, size = [], 0
        group.append(chunk)
        size += len(chunk)
    if group:
        writes.append(group[0] if len(group) == 1 else b"".join(group))
    return writes
