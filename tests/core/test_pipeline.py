"""The sans-io pipeline, method by method: plain synchronous tests, no event loop, no I/O.

Each test drives :class:`~triopipe._pipeline.Pipeline` as the connection
does (submit, next_write, wrote, feed, fail, ...) and checks the rule of the
module header it is named after.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triopipe._exceptions import ConnectionLostError, ProtocolError
from triopipe._pipeline import (
    BDP_GAIN,
    INITIAL_REPLY_SIZE,
    MAX_REPLY_BUDGET,
    MAX_WINDOW,
    REPLY_BUDGET,
    WINDOW_SHARE,
    WRITE_BYTES,
    Pipeline,
    ReplyBudget,
    Request,
)
from triopipe._resp import Push, encode_command


class Flag:
    """A :class:`~triopipe._pipeline.Notify` that counts how often it was set."""

    def __init__(self) -> None:
        self.sets = 0

    def set(self) -> None:
        self.sets += 1


def cmd(token: str) -> bytes:
    return encode_command(("ECHO", token))


def lost(sent: bool) -> ConnectionLostError:
    return ConnectionLostError("lost", sent=sent)


def make(max_in_flight: int = 10_000, *, subscriber: bool = False) -> Pipeline[Flag]:
    return Pipeline(ReplyBudget(max_in_flight), subscriber=subscriber)


def submit(pipeline: Pipeline[Flag], *tokens: str, many: bool = False) -> Request[Flag]:
    """Submit ``tokens`` as one request (a batch when ``many`` or several)."""
    payload = b"".join(cmd(token) for token in tokens)
    return pipeline.submit(payload, len(tokens), Flag(), many or len(tokens) > 1)


def write_all(pipeline: Pipeline[Flag]) -> bytes:
    """Hand every byte there is to write to the kernel, whole; return them."""
    written = b""
    while (data := pipeline.next_write()) is not None:
        written += bytes(data)
        assert pipeline.wrote(len(data))
    return written


# -- ReplyBudget ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_in_flight", "limit", "window"),
    [
        (
            10_000,
            int(REPLY_BUDGET / INITIAL_REPLY_SIZE),
            int(REPLY_BUDGET / INITIAL_REPLY_SIZE) // WINDOW_SHARE,
        ),
        (10, 10, 2),
        (3, 3, 1),
        (1, 1, 1),
    ],
)
def test_budget_starts_from_the_large_reply_guess_capped_by_max_in_flight(
    max_in_flight: int, limit: int, window: int
) -> None:
    """Before any reply: 1 KiB per reply assumed (256 in flight), at most ``max_in_flight``."""
    budget = ReplyBudget(max_in_flight)
    assert (budget.reply_size, budget.limit, budget.window) == (1024.0, limit, window)
    assert (budget.limit, budget.window) != (0, 0)


@pytest.mark.parametrize(
    ("observations", "reply_size", "limit", "window"),
    [
        # Half way from 1024 to 100 bytes a reply: 262144 / 562 = 466.4.
        ([(100, 1)], 562.0, 466, 116),
        # Then 100 replies of 10 bytes: half way from 562 to 10.
        ([(100, 1), (1000, 100)], 286.0, 916, 229),
        # Larger replies shrink the limit: half way to 3072 is 2048 bytes.
        ([(3072, 1)], 2048.0, 128, 32),
        # A 10 MB reply: one command in flight at a time.
        ([(10_000_000, 1)], 5_000_512.0, 1, 1),
    ],
)
def test_budget_follows_the_mean_reply_size(
    observations: list[tuple[int, int]], reply_size: float, limit: int, window: int
) -> None:
    """Each read moves the mean half way to its own; limit = 256 KiB / mean, window a quarter."""
    budget = ReplyBudget(10_000)
    for size, count in observations:
        budget.observe(size, count)
    assert (budget.reply_size, budget.limit, budget.window) == (reply_size, limit, window)


def test_budget_with_tiny_replies_reaches_max_in_flight_and_the_window_cap() -> None:
    """Many tiny replies: the limit is ``max_in_flight``, the window at most 512."""
    budget = ReplyBudget(10_000)
    for _ in range(40):
        budget.observe(4, 1)
    assert budget.limit == 10_000
    assert budget.window == MAX_WINDOW
    small = ReplyBudget(100)
    small.observe(4, 1)
    assert (small.limit, small.window) == (100, 25)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


KIB4 = 4096


def test_budget_on_a_short_round_trip_stays_at_its_floor() -> None:
    """Loopback: 50 µs and 500 MB/s make a 25 kB product: the 256 KiB floor holds."""
    budget = ReplyBudget(10_000)
    budget.observe(KIB4, 1)
    budget.observe(KIB4, 1)
    floor_limit = budget.limit
    budget.observe_round_trip(50e-6)
    for _ in range(20):
        budget.observe_delivery(500_000_000 // 100, 0.01)
    assert budget.budget == REPLY_BUDGET
    assert budget.limit == floor_limit


def test_budget_grows_each_round_trip_while_it_limits_the_rate() -> None:
    """2 ms round trips: a budget-limited rate (budget / round trip) grows it, up to the cap."""
    budget = ReplyBudget(1_000_000)
    budget.observe_round_trip(0.002)
    seen = [budget.budget]
    while budget.budget < MAX_REPLY_BUDGET:
        budget.observe_delivery(int(budget.budget), 0.002)
        seen.append(budget.budget)
    assert seen[:3] == pytest.approx(
        [REPLY_BUDGET, BDP_GAIN * REPLY_BUDGET, BDP_GAIN**2 * REPLY_BUDGET], rel=1e-4
    )
    assert len(seen) == 5  # 256 KiB to 8 MiB in four round trips
    budget.observe_delivery(int(budget.budget), 0.002)
    assert budget.budget == MAX_REPLY_BUDGET


def test_budget_holds_at_the_gain_times_the_product_once_the_link_is_the_limit() -> None:
    """A link that delivers 200 MB/s at most, 2 ms round trip: 2.89 x 400 kB aimed at, no more."""
    budget = ReplyBudget(1_000_000)
    budget.observe_round_trip(0.002)
    for _ in range(30):
        # In flight beyond the product only queues: the time grows, not the rate.
        in_flight = budget.budget
        seconds = max(0.002, in_flight / 200e6)
        budget.observe_delivery(int(in_flight), seconds)
    assert budget.budget == pytest.approx(BDP_GAIN * 200e6 * 0.002, rel=0.01)
    assert budget.budget < MAX_REPLY_BUDGET


def test_budget_round_trip_only_goes_down_and_rates_fade() -> None:
    budget = ReplyBudget(10_000, Clock())
    budget.observe_delivery(10_000_000, 0.01)  # no round trip known yet: the floor
    assert budget.budget == REPLY_BUDGET
    budget.observe_round_trip(0.004)
    budget.observe_round_trip(0.009)
    assert budget.round_trip == 0.004
    rate = budget.delivery_rate
    budget.observe_delivery(1, 1.0)
    assert budget.delivery_rate == pytest.approx(rate * 0.95)


def test_pipeline_times_the_round_trip_from_a_write_on_an_empty_pipe() -> None:
    clock = Clock()
    pipeline: Pipeline[Flag] = Pipeline(ReplyBudget(10_000, clock))
    submit(pipeline, "a")
    write_all(pipeline)
    clock.now += 0.003
    submit(pipeline, "b")
    write_all(pipeline)  # behind "a": not timed
    clock.now += 0.002
    pipeline.feed([b"a"], 7)
    assert pipeline.budget.round_trip == pytest.approx(0.005)
    clock.now += 0.001
    pipeline.feed([b"b"], 7)
    assert pipeline.budget.round_trip == pytest.approx(0.005)
    # Both writes' replies: one delivery sample, over the first write's life.
    assert pipeline.budget.delivery_rate == pytest.approx(7 / 0.005)


def test_pipeline_times_a_lone_direct_write() -> None:
    clock = Clock()
    pipeline: Pipeline[Flag] = Pipeline(ReplyBudget(10_000, clock))
    request = pipeline.write_directly(cmd("a"), 1, Flag())
    assert request is not None
    assert pipeline.wrote(len(cmd("a")))
    clock.now += 0.0002
    pipeline.feed([b"a"], 7)
    assert pipeline.budget.round_trip == pytest.approx(0.0002)


@given(
    max_in_flight=st.integers(1, 100_000),
    observations=st.lists(
        st.tuples(st.integers(0, 50_000_000), st.integers(1, 10_000)), max_size=20
    ),
)
def test_budget_limit_and_window_stay_within_bounds(
    max_in_flight: int, observations: list[tuple[int, int]]
) -> None:
    """Whatever the replies: 1 <= limit <= max_in_flight, 1 <= window <= min(512, limit)."""
    budget = ReplyBudget(max_in_flight)
    for size, count in observations:
        budget.observe(size, count)
        assert 1 <= budget.limit <= max_in_flight
        assert 1 <= budget.window <= min(MAX_WINDOW, budget.limit)
        replies_fit = int(REPLY_BUDGET / budget.reply_size)
        assert budget.window == max(1, min(MAX_WINDOW, budget.limit // WINDOW_SHARE, replies_fit))


# -- submitting and writing ------------------------------------------------------------


def test_submit_queues_and_counts_without_writing() -> None:
    """A submitted request is queued and counted at once; nothing is taken for writing yet."""
    pipeline = make()
    assert pipeline.idle
    assert pipeline.between_writes
    assert not pipeline.writing
    first = submit(pipeline, "a")
    batch = submit(pipeline, "b", "c")
    assert pipeline.outstanding == 3
    assert pipeline.queued == 3
    assert list(pipeline.queue) == [first, batch]
    assert not pipeline.pending
    assert not pipeline.idle
    assert not pipeline.between_writes
    assert pipeline.writing
    assert not first.taken
    assert not first.done
    assert first.replies is None
    assert batch.replies == []


def test_next_write_joins_queued_requests_in_order_and_records_each_start() -> None:
    """One write holds every queued request in order; each knows its first byte's offset."""
    pipeline = make()
    requests = [submit(pipeline, "a"), submit(pipeline, "bb", "ccc"), submit(pipeline, "d")]

    write = pipeline.next_write()

    assert write == cmd("a") + cmd("bb") + cmd("ccc") + cmd("d")
    assert [request.start for request in requests] == [
        0,
        len(cmd("a")),
        len(cmd("a") + cmd("bb") + cmd("ccc")),
    ]
    assert list(pipeline.pending) == requests
    assert not pipeline.queue
    assert all(request.taken for request in requests)
    assert pipeline.commands_written == 4
    assert pipeline.writes == 0  # the kernel took nothing yet
    assert pipeline.outstanding == 4
    assert pipeline.queued == 0


def test_wrote_in_parts_gives_the_rest_until_the_write_is_complete() -> None:
    """Partial writes: ``next_write`` gives what is left, later requests come after it."""
    pipeline = make()
    submit(pipeline, "first")
    write = pipeline.next_write()
    assert write is not None
    later = submit(pipeline, "later")

    assert pipeline.wrote(0) is False  # the kernel took nothing: nothing changes
    assert pipeline.writes == 0
    assert pipeline.next_write() == write
    assert pipeline.wrote(3) is False
    rest = pipeline.next_write()
    assert isinstance(rest, memoryview)  # no copy of the payload
    assert bytes(rest) == write[3:]
    assert pipeline.wrote(len(rest) - 1) is False
    assert bytes(pipeline.next_write() or b"") == write[-1:]
    assert pipeline.wrote(1) is True
    assert pipeline.writes == 3
    assert not later.taken

    assert pipeline.next_write() == cmd("later")
    assert later.start == len(write)
    assert pipeline.wrote(len(cmd("later"))) is True
    assert pipeline.next_write() is None
    assert pipeline.between_writes
    assert not pipeline.idle


def test_command_without_reply_is_written_but_awaits_nothing() -> None:
    """A request of 0 commands (``send_only``) is written and never enters ``pending``."""
    pipeline = make()
    subscribe = pipeline.submit(encode_command(("SUBSCRIBE", "ch")), 0, Flag(), True)
    assert write_all(pipeline) == encode_command(("SUBSCRIBE", "ch"))
    assert not pipeline.pending
    assert pipeline.outstanding == 0
    assert subscribe.taken
    assert not subscribe.done
    assert pipeline.idle


# -- coalescing ------------------------------------------------------------------------


def test_many_small_payloads_are_joined_into_one_write() -> None:
    """A thousand small requests: one write, their bytes in order."""
    pipeline = make()
    for index in range(1000):
        submit(pipeline, f"k{index}")
    write = pipeline.next_write()
    assert write == b"".join(cmd(f"k{index}") for index in range(1000))
    assert pipeline.wrote(len(write or b""))
    assert pipeline.next_write() is None


def test_payloads_up_to_write_bytes_share_a_write_one_byte_more_splits() -> None:
    """Two payloads of exactly ``WRITE_BYTES`` together share a write; a byte more, they don't."""
    half = WRITE_BYTES // 2
    pipeline = make()
    pipeline.submit(b"a" * half, 1, Flag())
    pipeline.submit(b"b" * half, 1, Flag())
    assert pipeline.next_write() == b"a" * half + b"b" * half

    pipeline = make()
    pipeline.submit(b"a" * half, 1, Flag())
    pipeline.submit(b"b" * (half + 1), 1, Flag())
    assert pipeline.next_write() == b"a" * half
    pipeline.wrote(half)
    assert pipeline.next_write() == b"b" * (half + 1)


def test_next_write_takes_only_what_fits_in_one_write_the_rest_stays_queued() -> None:
    """Requests behind a full write stay queued: not taken, not pending, a batch can still grow."""
    value = 600 * 1024
    pipeline = make()
    first = pipeline.submit(b"a" * value, 1, Flag())
    second = pipeline.submit(b"b" * value, 1, Flag())
    batch = pipeline.submit(b"c" * 10, 1, Flag(), True)

    assert pipeline.next_write() == b"a" * value
    assert list(pipeline.pending) == [first]
    assert list(pipeline.queue) == [second, batch]
    assert pipeline.queued == 2
    assert pipeline.extend(batch, b"d" * 10)
    pipeline.wrote(value)
    # The next write takes the rest: 600 KiB and 20 bytes fit together.
    assert pipeline.next_write() == b"b" * value + b"c" * 10 + b"d" * 10
    assert not pipeline.extend(batch, b"e")
    assert batch.start == 2 * value


def test_big_payload_goes_alone_between_the_small_ones() -> None:
    """small, big, small: three writes; the big one is the very bytes object, not a copy."""
    pipeline = make()
    big = b"x" * (WRITE_BYTES + 10)
    submit(pipeline, "before")
    pipeline.submit(big, 1, Flag())
    submit(pipeline, "after")

    writes = []
    while (data := pipeline.next_write()) is not None:
        writes.append(data)
        pipeline.wrote(len(data))

    assert writes == [cmd("before"), big, cmd("after")]
    assert writes[1] is big
    assert pipeline.writes == 3


def test_batch_bigger_than_a_write_is_split_without_one_huge_join() -> None:
    """A batch of 5 x 300 KiB: writes of at most ``WRITE_BYTES``, never one 1.5 MB join."""
    value = 300 * 1024
    parts = [bytes([65 + index]) * value for index in range(5)]
    pipeline = make()
    batch = pipeline.submit(parts[0], 1, Flag(), True)
    for part in parts[1:]:
        assert pipeline.extend(batch, part)

    writes = []
    while (data := pipeline.next_write()) is not None:
        writes.append(bytes(data))
        pipeline.wrote(len(data))

    assert b"".join(writes) == b"".join(parts)
    # Three parts fit in 1 MiB, the other two make the second write.
    assert [len(write) for write in writes] == [3 * value, 2 * value]
    assert all(len(write) <= WRITE_BYTES for write in writes)
    assert list(pipeline.pending) == [batch]
    assert batch.start == 0


def test_batch_holding_a_payload_bigger_than_a_write_sends_that_payload_alone() -> None:
    """Inside a split batch, a payload over ``WRITE_BYTES`` is its own write, not copied."""
    small = b"s" * 1000
    huge = b"h" * (WRITE_BYTES + 1)
    pipeline = make()
    batch = pipeline.submit(small, 1, Flag(), True)
    pipeline.extend(batch, huge)
    pipeline.extend(batch, small)

    first = pipeline.next_write()
    assert first is small
    pipeline.wrote(len(small))
    second = pipeline.next_write()
    assert second is huge
    pipeline.wrote(len(huge) - 5)  # a partial write of the huge one
    assert bytes(pipeline.next_write() or b"") == huge[-5:]
    pipeline.wrote(5)
    assert pipeline.next_write() is small
    assert pipeline.wrote(len(small)) is True


# -- extend ------------------------------------------------------------------------------


def test_extend_grows_a_queued_batch_and_counts_each_command() -> None:
    """``extend`` adds payloads behind the batch's own, counted at once, written in order."""
    pipeline = make()
    batch = submit(pipeline, "a", many=True)
    assert pipeline.extend(batch, cmd("b"))
    assert pipeline.extend(batch, cmd("c"))
    assert (batch.count, pipeline.outstanding, pipeline.queued) == (3, 3, 3)
    assert write_all(pipeline) == cmd("a") + cmd("b") + cmd("c")
    pipeline.feed([b"a", b"b"], 20)
    assert not batch.done
    pipeline.feed([b"c"], 10)
    assert batch.done
    assert batch.replies == [b"a", b"b", b"c"]
    assert batch.notify.sets == 1
    assert pipeline.outstanding == 0


def test_extend_refuses_once_the_batch_was_taken_or_the_pipeline_failed() -> None:
    """Taken for writing, or failed: ``extend`` returns False and changes nothing."""
    pipeline = make()
    taken = submit(pipeline, "a", many=True)
    pipeline.next_write()
    assert not pipeline.extend(taken, cmd("b"))
    assert (taken.count, pipeline.outstanding) == (1, 1)

    queued = submit(pipeline, "q", many=True)
    pipeline.fail(RuntimeError("gone"), lost)
    assert not pipeline.extend(queued, cmd("r"))
    assert queued.count == 1
    assert pipeline.outstanding == 0


# -- feed ----------------------------------------------------------------------------------


def test_feed_hands_each_reply_to_its_request_in_write_order() -> None:
    """Replies settle requests in order: a single one gets a value, a batch a list."""
    pipeline = make()
    single = submit(pipeline, "a")
    batch = submit(pipeline, "b", "c")
    last = submit(pipeline, "d")
    write_all(pipeline)

    assert pipeline.feed([b"a", b"b"], 20) is None
    assert single.done
    assert single.value == b"a"
    assert single.outcome() == b"a"
    assert not batch.done
    assert batch.replies == [b"b"]
    assert pipeline.outstanding == 3
    pipeline.feed([b"c", b"d"], 20)
    assert batch.outcome() == [b"b", b"c"]
    assert last.outcome() == b"d"
    assert [request.notify.sets for request in (single, batch, last)] == [1, 1, 1]
    assert pipeline.outstanding == 0
    assert pipeline.idle


def test_feed_returns_push_frames_and_never_hands_them_to_a_request() -> None:
    """Push frames among replies are returned to the caller, in order, and skipped otherwise."""
    pipeline = make()
    request = submit(pipeline, "a", "b")
    write_all(pipeline)
    first, second = Push([b"message", b"1"]), Push([b"message", b"2"])

    pushes = pipeline.feed([first, b"a", second, b"b"], 40)

    assert pushes == [first, second]
    assert request.replies == [b"a", b"b"]
    # A push with nothing pending is still no stray reply.
    assert pipeline.feed([Push([b"x"])], 5) == [Push([b"x"])]


def test_feed_of_a_stray_reply_raises_after_settling_the_replies_before_it() -> None:
    """A reply with no request waiting raises ProtocolError; earlier replies still arrived."""
    pipeline = make()
    request = submit(pipeline, "a")
    write_all(pipeline)

    with pytest.raises(ProtocolError, match="no command waiting"):
        pipeline.feed([b"a", b"stray"], 20)

    assert request.done
    assert request.value == b"a"
    assert pipeline.settled == 1
    assert pipeline.outstanding == 0


def test_subscriber_pipeline_turns_unowned_replies_into_pushes() -> None:
    """In pub/sub mode, replies nobody waits for become pushes; owned ones still go home."""
    pipeline = make(subscriber=True)
    request = submit(pipeline, "ping")
    write_all(pipeline)

    pushes = pipeline.feed([b"pong", [b"message", b"ch", b"hi"], b"scalar"], 50)

    assert request.value == b"pong"
    assert pushes == [Push([b"message", b"ch", b"hi"]), Push([b"scalar"])]
    assert all(type(push) is Push for push in pushes or [])


def test_feed_observes_reply_sizes_including_bytes_of_partial_reads() -> None:
    """Bytes read without a complete reply count toward the next replies' mean size."""
    pipeline = make()
    submit(pipeline, "a")
    write_all(pipeline)
    assert pipeline.feed([], 2000) is None
    assert pipeline.budget.reply_size == INITIAL_REPLY_SIZE
    pipeline.feed([b"a"], 48)
    # One reply of 2048 bytes: half way from 1024.
    assert pipeline.budget.reply_size == 1536.0


# -- direct writes ---------------------------------------------------------------------------


def test_write_directly_from_the_loop_only_on_an_idle_link() -> None:
    """The loop writes a lone command itself only when nothing is queued, written or awaited."""
    pipeline = make()
    request = pipeline.write_directly(cmd("a"), 1, Flag())
    assert request is not None
    assert list(pipeline.pending) == [request]
    assert request.start == 0
    assert request.taken
    assert (pipeline.submitted, pipeline.thread_submitted, pipeline.commands_written) == (1, 0, 1)
    # Its bytes are the next write.
    assert pipeline.next_write() == cmd("a")
    assert pipeline.wrote(len(cmd("a")))
    # A reply awaited: not idle any more.
    assert pipeline.write_directly(cmd("b"), 1, Flag()) is None
    pipeline.feed([b"a"], 10)
    assert request.value == b"a"
    # Something queued: not idle either.
    submit(pipeline, "q")
    assert pipeline.write_directly(cmd("c"), 1, Flag()) is None
    assert pipeline.outstanding == 1


def test_a_sealed_window_is_written_directly_between_writes_even_with_replies_awaited() -> None:
    """A window of a pipeline needs only the link between writes; it collects its replies."""
    pipeline = make()
    first = pipeline.write_directly(cmd("a") + cmd("b"), 2, Flag(), many=True)
    assert first is not None
    assert pipeline.write_directly(cmd("c"), 1, Flag(), many=True) is None  # a write under way
    assert pipeline.wrote(len(cmd("a") + cmd("b")))
    second = pipeline.write_directly(cmd("c"), 1, Flag(), many=True)
    assert second is not None
    assert second.start == len(cmd("a") + cmd("b"))
    assert list(pipeline.pending) == [first, second]
    assert pipeline.wrote(len(cmd("c")))
    # Something queued: it goes first, through the sender.
    submit(pipeline, "q")
    assert pipeline.write_directly(cmd("d"), 1, Flag(), many=True) is None
    pipeline.feed([b"a", b"b", b"c"], 30)
    assert (first.replies, second.replies) == ([b"a", b"b"], [b"c"])
    assert (pipeline.submitted, pipeline.commands_written) == (4, 3)


def test_write_directly_from_a_thread_between_writes_with_room() -> None:
    """A thread may write with replies awaited, between writes and within the room."""
    pipeline = make(max_in_flight=2)
    first = pipeline.write_directly(cmd("a"), 1, Flag(), thread=True)
    assert first is not None
    # A write under way (the kernel took part of it): no second writer.
    assert pipeline.write_directly(cmd("b"), 1, Flag(), thread=True) is None
    pipeline.wrote(3)
    assert pipeline.write_directly(cmd("b"), 1, Flag(), thread=True) is None
    pipeline.wrote(len(cmd("a")) - 3)
    second = pipeline.write_directly(cmd("b"), 1, Flag(), thread=True)
    assert second is not None
    assert second.start == len(cmd("a"))
    pipeline.wrote(len(cmd("b")))
    # Two in flight, limit 2: no room.
    assert pipeline.write_directly(cmd("c"), 1, Flag(), thread=True) is None
    assert (pipeline.submitted, pipeline.thread_submitted) == (0, 2)
    pipeline.feed([b"a", b"b"], 20)
    assert (first.value, second.value) == (b"a", b"b")
    assert pipeline.outstanding == 0


# -- abandonment --------------------------------------------------------------------------------


def test_abandoned_queued_requests_are_dropped_unwritten_and_settled() -> None:
    """Abandoned before being taken: never written, settled, its notify never set."""
    pipeline = make()
    keep = submit(pipeline, "keep")
    gone = submit(pipeline, "gone", "gone2")
    last = submit(pipeline, "last")
    gone.abandoned = True

    assert write_all(pipeline) == cmd("keep") + cmd("last")

    assert list(pipeline.pending) == [keep, last]
    assert gone.taken
    assert not gone.done
    assert gone.notify.sets == 0
    assert pipeline.settled == 2
    assert pipeline.outstanding == 2
    assert pipeline.commands_written == 2
    assert last.start == len(cmd("keep"))


def test_only_abandoned_requests_queued_means_nothing_to_write() -> None:
    """If every queued request was abandoned, ``next_write`` gives None and settles them."""
    pipeline = make()
    for token in "abc":
        submit(pipeline, token).abandoned = True
    assert pipeline.next_write() is None
    assert pipeline.outstanding == 0
    assert pipeline.idle


def test_abandoned_written_request_still_takes_its_replies() -> None:
    """Abandoned after the write: its replies are read into it, never into the next request."""
    pipeline = make()
    gone = submit(pipeline, "gone", "gone2")
    after = submit(pipeline, "after")
    write_all(pipeline)
    gone.abandoned = True

    pipeline.feed([b"gone", b"gone2", b"after"], 30)

    assert gone.replies == [b"gone", b"gone2"]
    assert after.value == b"after"
    assert pipeline.outstanding == 0


# -- room and waiters ---------------------------------------------------------------


def test_has_room_within_the_limit_or_when_nothing_is_outstanding() -> None:
    """Room: within ``limit``, or anything at all on an empty pipeline."""
    pipeline = make(max_in_flight=3)
    assert pipeline.has_room(100)
    submit(pipeline, "a", "b")
    assert pipeline.has_room(1)
    assert not pipeline.has_room(2)


def test_waiters_are_woken_in_order_as_many_as_the_room_admits() -> None:
    """Each reply wakes waiters from the head while they fit; one that does not blocks the rest.

    ``max_in_flight=4``; each woken waiter submits at once, as a caller of
    ``wait_for_room`` does.
    """
    pipeline = make(max_in_flight=4)
    for token in "abcd":
        submit(pipeline, token)
    write_all(pipeline)
    counts = (1, 2, 1, 3, 1)
    waiters = [pipeline.add_waiter(count, Flag()) for count in counts]

    def woken() -> list[bool]:
        return [waiter.woken for waiter in waiters]

    def submit_for(index: int) -> None:
        pipeline.claim(waiters[index])
        submit(pipeline, *(f"w{index}-{n}" for n in range(counts[index])))
        write_all(pipeline)

    pipeline.feed([b"a"], 10)  # 3 out: the 1 fits, the 2 does not
    assert woken() == [True, False, False, False, False]
    assert [waiter.notify.sets for waiter in waiters] == [1, 0, 0, 0, 0]
    submit_for(0)
    pipeline.feed([b"b"], 10)  # 3 out: the 2 still does not fit
    assert woken() == [True, False, False, False, False]
    pipeline.feed([b"c"], 10)  # 2 out: the 2 fits, then the 1 does not
    assert woken() == [True, True, False, False, False]
    submit_for(1)
    pipeline.feed([b"d", b"w0-0"], 20)  # 2 out: the 1 fits; the 3 does not, nor the 1 behind it
    assert woken() == [True, True, True, False, False]
    assert list(pipeline.waiters) == waiters[3:]
    assert pipeline.outstanding == 2


def test_waiter_put_first_keeps_its_turn() -> None:
    """A woken waiter beaten to the room waits again at the head of the line."""
    pipeline = make(max_in_flight=1)
    submit(pipeline, "a")
    write_all(pipeline)
    later = pipeline.add_waiter(1, Flag())
    again = pipeline.add_waiter(1, Flag(), first=True)
    assert list(pipeline.waiters) == [again, later]
    pipeline.feed([b"a"], 10)
    assert again.woken
    assert not later.woken


def test_removed_waiter_leaves_the_line_and_a_woken_one_passes_its_room_on() -> None:
    """Giving up: an unwoken waiter just leaves; a woken one's room goes to the next."""
    pipeline = make(max_in_flight=1)
    submit(pipeline, "a")
    write_all(pipeline)
    first, second, third = (pipeline.add_waiter(1, Flag()) for _ in range(3))

    pipeline.remove_waiter(second)
    assert list(pipeline.waiters) == [first, third]
    pipeline.feed([b"a"], 10)
    assert first.woken
    assert not third.woken
    pipeline.remove_waiter(first)  # woken, but gives up before submitting
    assert third.woken
    assert third.notify.sets == 1
    assert not pipeline.waiters


def test_waiter_larger_than_the_limit_is_woken_when_nothing_is_outstanding() -> None:
    """A request larger than the limit still runs, alone: its waiter wakes on an empty link."""
    pipeline = make(max_in_flight=2)
    submit(pipeline, "a", "b")
    write_all(pipeline)
    big = pipeline.add_waiter(5, Flag())
    pipeline.feed([b"a"], 10)
    assert not big.woken
    pipeline.feed([b"b"], 10)
    assert big.woken


def test_dropping_abandoned_requests_wakes_waiters() -> None:
    """Room freed by dropping abandoned requests goes to the waiters at once."""
    pipeline = make(max_in_flight=1)
    gone = submit(pipeline, "gone")
    waiter = pipeline.add_waiter(1, Flag())
    gone.abandoned = True
    assert pipeline.next_write() is None
    assert waiter.woken


def test_second_reply_before_a_woken_waiter_submits_wakes_only_one_more() -> None:
    """Room given to a woken waiter stays given: each freed slot wakes one waiter, in turn.

    ``max_in_flight=2``, two in flight, waiters w2..w5. The first reply wakes
    w2. A second reply read before w2 submits frees one more slot, so it
    should wake w3 alone; ``release_room`` counts only ``outstanding`` (0 by
    then) and wakes w3 and w4 both. Three woken waiters race for two slots,
    and the scheduler, not the arrival order, decides who waits again: on a
    connection w4 may write before w3.
    """
    pipeline = make(max_in_flight=2)
    submit(pipeline, "a")
    submit(pipeline, "b")
    write_all(pipeline)
    waiters = [pipeline.add_waiter(1, Flag()) for _ in range(4)]

    pipeline.feed([b"a"], 10)
    pipeline.feed([b"b"], 10)

    assert [waiter.woken for waiter in waiters] == [True, True, False, False]


# -- failing ------------------------------------------------------------------------------------


def errors(requests: list[Request[Any]]) -> list[tuple[type[BaseException], bool]]:
    result = []
    for request in requests:
        error = request.error
        assert error is not None
        assert request.done
        assert request.notify.sets == 1
        result.append((type(error), getattr(error, "sent", None)))
    return result


def test_fail_gives_sent_exactly_by_the_bytes_the_kernel_took() -> None:
    """sent = the kernel took a byte of it: written, partly written, taken-not-written, queued."""
    pipeline = make()
    requests = [submit(pipeline, token) for token in ("whole", "part", "none")]
    size = len(cmd("whole"))
    pipeline.next_write()
    pipeline.wrote(size + 1)  # all of "whole", one byte of "part"
    requests.append(submit(pipeline, "queued"))
    waiter = pipeline.add_waiter(1, Flag())

    pipeline.fail(RuntimeError("reset"), lost)

    assert errors(requests) == [
        (ConnectionLostError, True),
        (ConnectionLostError, True),
        (ConnectionLostError, False),
        (ConnectionLostError, False),
    ]
    assert waiter.woken
    assert waiter.notify.sets == 1
    assert pipeline.outstanding == 0
    assert not pipeline.pending
    assert not pipeline.queue
    assert not pipeline.waiters
    assert not pipeline.writing
    assert pipeline.next_write() is None


@pytest.mark.parametrize(
    ("in_doubt", "expected"),
    [
        (0, [True, False, False]),
        (1, [True, True, False]),
        (21, [True, True, False]),
        (22, [True, True, True]),
    ],
)
def test_fail_counts_bytes_in_doubt_as_sent(in_doubt: int, expected: list[bool]) -> None:
    """Bytes in doubt (a TLS write interrupted) count as taken: their requests are sent."""
    pipeline = make()
    requests = [submit(pipeline, token) for token in "abc"]
    size = len(cmd("a"))
    assert size == 21  # so 21 bytes in doubt cover "b" exactly
    pipeline.next_write()
    pipeline.wrote(size)
    pipeline.fail(RuntimeError("interrupted"), lost, in_doubt)
    assert [sent for _, sent in errors(requests)] == expected


def test_fail_is_idempotent_and_settles_each_request_once() -> None:
    """A second ``fail`` changes nothing: no second error, no second notification."""
    pipeline = make()
    request = submit(pipeline, "a")
    write_all(pipeline)
    first_error = RuntimeError("first")
    pipeline.fail(first_error, lost)
    error = request.error
    pipeline.fail(RuntimeError("second"), lambda sent: RuntimeError("never built"))
    assert pipeline.failed is first_error
    assert request.error is error
    assert request.notify.sets == 1


def test_fail_builds_a_fresh_error_per_request() -> None:
    """Each request gets its own error object, built with its own ``sent``."""
    pipeline = make()
    requests = [submit(pipeline, token) for token in "ab"]
    pipeline.next_write()
    pipeline.wrote(1)
    built: list[bool] = []

    def make_error(sent: bool) -> BaseException:
        built.append(sent)
        return ConnectionLostError("lost", sent=sent)

    pipeline.fail(RuntimeError("reset"), make_error)
    assert built == [True, False]
    assert requests[0].error is not requests[1].error


def test_outcome_is_the_value_the_list_or_the_error() -> None:
    """``Request.outcome``: a single reply, a batch's list, or the error as a value."""
    pipeline = make()
    single, batch, failed = submit(pipeline, "a"), submit(pipeline, "b", many=True), None
    write_all(pipeline)
    pipeline.feed([b"a", b"b"], 20)
    failed = submit(pipeline, "c")
    pipeline.fail(RuntimeError("x"), lost)
    assert single.outcome() == b"a"
    assert batch.outcome() == [b"b"]
    assert isinstance(failed.outcome(), ConnectionLostError)
