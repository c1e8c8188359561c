"""A hypothesis state machine over the pipeline: any interleaving of operations keeps its rules.

Theory of operation
-------------------

The machine drives one :class:`~triopipe._pipeline.Pipeline` as a connection
and a server would, in any order hypothesis picks: submissions (single,
batches, commands answered by push only), ``extend``, abandonment,
``next_write`` and ``wrote`` with any partial count, direct writes from the
loop and from a thread, server replies with push frames between them,
stray replies, partial reads, waiters added and given up, and ``fail`` with
any number of bytes in doubt.

Every command carries a unique token (``ECHO t17``) and the server answers a
command with its token, so a reply names its owner. The server answers only
commands whose bytes were all handed to the kernel, in the order written.

A small model keeps what the pipeline should hold: each request's state
(queued, pending, answered, dropped, failed), its first byte's offset in
the write stream, the bytes handed to the kernel, the waiters in line. After
every step the invariants check the pipeline against it: nobody but the
owner ever receives a reply, ``outstanding`` equals the model's count and is
never negative, each request is notified at most once and exactly when it
settles, ``pending`` and the waiters are what the model says. ``fail``
checks every ``sent`` flag against ``start < handed + in_doubt``. At
teardown, unless the pipeline failed, everything is written and answered and
every request must be done with all its replies.

Woken waiters resolve in the step that woke them (they submit, or give up),
as a task woken by the loop would before the next read; the case of a
second reply read before a woken waiter submits is the unit test
``test_second_reply_before_a_woken_waiter_submits_wakes_only_one_more``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from triopipe._exceptions import ConnectionLostError, ProtocolError
from triopipe._pipeline import WRITE_BYTES, Pipeline, ReplyBudget, Request, Waiter
from triopipe._resp import Push, encode_command


class Counting:
    """A Notify that counts how often it was set."""

    def __init__(self) -> None:
        self.sets = 0

    def set(self) -> None:
        self.sets += 1


@dataclass(eq=False)
class Model:
    """What the model knows of one request."""

    request: Request[Any]
    tokens: list[bytes]
    # "single", "many", "window" (sealed, written directly), "direct", "thread"
    # or "push" (answered by a push only)
    kind: str
    state: str = "queued"  # then "pending", "answered", "dropped", "failed" or "written"
    start: int = -1
    received: int = 0

    @property
    def count(self) -> int:
        return 0 if self.kind == "push" else len(self.tokens)


@dataclass(eq=False)
class Line:
    """A waiter the model knows, in line or woken."""

    waiter: Waiter
    count: int
    notify: Counting = field(default_factory=Counting)


@dataclass
class Command:
    """One command in the write stream: its owner, its token, where its bytes end."""

    owner: Model
    token: bytes
    end: int


def lost(sent: bool) -> ConnectionLostError:
    return ConnectionLostError("lost", sent=sent)


class PipelineMachine(RuleBasedStateMachine):
    """Any sequence of pipeline operations, checked against a model after each step."""

    @initialize(max_in_flight=st.integers(1, 6), subscriber=st.booleans())
    def start(self, max_in_flight: int, subscriber: bool) -> None:
        self.budget = ReplyBudget(max_in_flight)
        self.subscriber = subscriber
        self.retired: list[Model] = []
        self.links = 0
        self.new_link()

    def new_link(self) -> None:
        """A fresh pipeline, as a connection starts after a break; the reply budget outlives it."""
        self.pipeline: Pipeline[Counting] = Pipeline(self.budget, subscriber=self.subscriber)
        self.links += 1
        self.models: list[Model] = []
        self.queue: list[Model] = []
        self.commands: list[Command] = []
        self.answered = 0
        self.stream_size = 0  # bytes taken into writes
        self.handed = 0  # bytes the kernel took
        self.current: bytes | None = None  # what is left of the write under way
        self.line: list[Line] = []
        self.thread_commands = 0

    # -- helpers ---------------------------------------------------------------------

    def token(self) -> bytes:
        self.tokens = getattr(self, "tokens", 0) + 1
        return b"t%d" % self.tokens

    def pending(self) -> list[Model]:
        return [model for model in self.models if model.state == "pending"]

    def outstanding(self) -> int:
        return sum(model.count for model in self.models if model.state in ("queued", "pending"))

    @staticmethod
    def encode(kind: str, token: bytes) -> bytes:
        return encode_command(("SUBSCRIBE" if kind == "push" else "ECHO", token))

    def payload(self, model: Model) -> bytes:
        return b"".join(self.encode(model.kind, token) for token in model.tokens)

    def take(self, model: Model) -> bytes:
        """The model's side of a request taken into the write stream; returns its bytes."""
        model.start = self.stream_size
        model.state = "pending" if model.count else "written"
        for token in model.tokens:
            self.stream_size += len(self.encode(model.kind, token))
            self.commands.append(Command(model, token, self.stream_size))
        return self.payload(model)

    def check_release(self, data: st.DataObject) -> None:
        """The pipeline just released room: the head of the line, as far as room admits, woke.

        Each woken waiter then submits its commands, or gives up (which
        releases its room again).
        """
        admitted = self.outstanding()
        limit = self.pipeline.budget.limit
        woken = []
        for line in self.line:
            if admitted and admitted + line.count > limit:
                break
            woken.append(line)
            admitted += line.count
        assert [line.waiter.woken for line in self.line] == [line in woken for line in self.line]
        self.line = self.line[len(woken) :]
        assert all(line.notify.sets == 1 for line in woken)
        # All submit, except perhaps the last, which may give up: its room is
        # then released with every other woken waiter's room already taken.
        for line in woken[:-1]:
            self.pipeline.claim(line.waiter)
            self.submit(line.count, many=line.count > 1)
        if woken:
            last = woken[-1]
            if data.draw(st.booleans(), label="last woken waiter submits"):
                self.pipeline.claim(last.waiter)
                self.submit(last.count, many=last.count > 1)
            else:
                self.pipeline.remove_waiter(last.waiter)
                self.check_release(data)

    def submit(self, count: int, *, many: bool, kind: str | None = None) -> None:
        kind = kind or ("many" if many else "single")
        tokens = [self.token() for _ in range(max(count, 1))]
        payload = b"".join(self.encode(kind, token) for token in tokens)
        request = self.pipeline.submit(payload, count, Counting(), many)
        model = Model(request, tokens, kind)
        self.models.append(model)
        self.queue.append(model)

    def cut(self, data: st.DataObject, label: str) -> int:
        """A number of bytes of the write under way, likely at or next to a command's edge.

        Where a write stops matters at the edges (the kernel took none, one
        or all of a command's bytes), so those are drawn more often.
        """
        size = len(self.current or b"")
        edges = {0, size}
        for command in self.commands:
            edge = command.end - self.handed
            if 0 < edge < size:
                edges.update((edge, edge + 1))
        return data.draw(
            st.one_of(st.sampled_from(sorted(edges)), st.integers(0, size)), label=label
        )

    def answerable(self) -> int:
        """Commands written whole and not answered yet."""
        return sum(1 for command in self.commands[self.answered :] if command.end <= self.handed)

    # -- submitting --------------------------------------------------------------------

    @rule()
    def submit_single(self) -> None:
        self.submit(1, many=False)

    @rule(count=st.integers(1, 4))
    def submit_batch(self, count: int) -> None:
        self.submit(count, many=True)

    @rule()
    def submit_answered_by_push(self) -> None:
        """A request of 0 commands (SUBSCRIBE): written, answered by a push frame only."""
        self.submit(0, many=True, kind="push")

    @rule(data=st.data())
    def extend(self, data: st.DataObject) -> None:
        batches = [model for model in self.models if model.kind == "many"]
        if not batches:
            return
        model = data.draw(st.sampled_from(batches), label="batch")
        token = self.token()
        expected = model in self.queue
        assert self.pipeline.extend(model.request, encode_command(("ECHO", token))) is expected
        if expected:
            model.tokens.append(token)

    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        """The waiter gives up: as ``Connection.wait`` does when cancelled."""
        candidates = [
            model
            for model in self.models
            if model.state in ("queued", "pending") and not model.request.abandoned
        ]
        if candidates:
            data.draw(st.sampled_from(candidates), label="abandoned").request.abandoned = True

    # -- writing -----------------------------------------------------------------------------

    @rule(data=st.data())
    def next_write(self, data: st.DataObject) -> None:
        """The sender asks for the next bytes to write."""
        self.take_next_write(data)

    @precondition(lambda self: self.current is not None)
    @rule(data=st.data())
    def wrote(self, data: st.DataObject) -> None:
        """The kernel takes any part of the write under way, maybe nothing."""
        self.kernel_took(self.cut(data, "kernel took"))

    @rule(data=st.data())
    def kernel_takes_everything(self, data: st.DataObject) -> None:
        """The sender writes until nothing is left, the kernel taking each write whole."""
        while self.take_next_write(data) is not None:
            assert self.current is not None
            self.kernel_took(len(self.current))

    def take_next_write(self, data: st.DataObject) -> bytes | None:
        write = self.pipeline.next_write()
        if self.current is not None:
            assert write is not None
            assert bytes(write) == self.current
            return self.current
        expected = b""
        dropped = 0
        for model in self.queue:
            if model.request.abandoned:
                model.state = "dropped"
                dropped += model.count
                continue
            expected += self.take(model)
        self.queue = []
        assert len(expected) < WRITE_BYTES  # small payloads: one write holds them all
        if expected:
            assert write is not None
            assert bytes(write) == expected
            self.current = expected
        else:
            assert write is None
        # Dropped commands free room (a dropped request of 0 commands frees none).
        if dropped and self.line:
            self.check_release(data)
        return self.current

    def kernel_took(self, count: int) -> None:
        assert self.current is not None
        complete = self.pipeline.wrote(count)
        self.handed += count
        if count:
            self.current = self.current[count:] or None
        assert complete is (self.current is None and count > 0)

    @rule(thread=st.booleans())
    def write_directly(self, thread: bool) -> None:
        """A lone command written without the sender, by the loop or by another thread."""
        token = self.token()
        payload = encode_command(("ECHO", token))
        between_writes = not self.queue and self.current is None
        outstanding = self.outstanding()
        if thread:
            allowed = between_writes and (
                outstanding == 0 or outstanding + 1 <= self.pipeline.budget.limit
            )
        else:
            allowed = between_writes and not self.pending()
        request = self.pipeline.write_directly(payload, 1, Counting(), thread=thread)
        assert (request is not None) is allowed
        if request is None:
            return
        model = Model(request, [token], "thread" if thread else "direct")
        self.models.append(model)
        assert self.take(model) == payload
        self.current = payload
        self.thread_commands += thread

    @rule(count=st.integers(1, 4))
    def write_window_directly(self, count: int) -> None:
        """A sealed window of a pipeline, written by the loop without the sender.

        Replies may be awaited: the window only needs the link between writes.
        """
        tokens = [self.token() for _ in range(count)]
        payload = b"".join(self.encode("window", token) for token in tokens)
        allowed = not self.queue and self.current is None
        request = self.pipeline.write_directly(payload, count, Counting(), many=True)
        assert (request is not None) is allowed
        if request is None:
            return
        assert request.replies == []
        model = Model(request, tokens, "window")
        self.models.append(model)
        assert self.take(model) == payload
        self.current = payload

    # -- reading -------------------------------------------------------------------------------

    @precondition(lambda self: self.answerable() > 0)
    @rule(data=st.data())
    def server_replies(self, data: st.DataObject) -> None:
        """The server answers the next commands written whole, push frames among the replies."""
        count = data.draw(st.integers(1, self.answerable()), label="replies")
        replies: list[Any] = []
        for command in self.commands[self.answered : self.answered + count]:
            if data.draw(st.booleans(), label="push before"):
                replies.append(Push([b"message", b"news", b"%d" % len(replies)]))
            if command.owner.kind == "push":
                replies.append(Push([b"subscribe", command.token, 1]))
            else:
                replies.append(command.token)
        size = data.draw(st.integers(0, 300_000), label="bytes read")

        pushes = self.pipeline.feed(replies, size)

        expected = [reply for reply in replies if type(reply) is Push]
        assert pushes == (expected or None)
        for command in self.commands[self.answered : self.answered + count]:
            owner = command.owner
            if owner.kind == "push":
                continue
            owner.received += 1
            if owner.received == owner.count:
                owner.state = "answered"
        self.answered += count
        if self.line:
            self.check_release(data)

    @rule(size=st.integers(1, 100))
    def partial_read(self, size: int) -> None:
        """Bytes that complete no reply: nothing is handed to anyone."""
        assert self.pipeline.feed([], size) is None

    @precondition(lambda self: not self.pending())
    @rule(data=st.data())
    def stray_reply(self, data: st.DataObject) -> None:
        """A reply with nothing pending: a push in pub/sub mode, else the link breaks."""
        if self.subscriber:
            assert self.pipeline.feed([b"stray"], 10) == [Push([b"stray"])]
            if self.line:
                self.check_release(data)
            return
        with pytest.raises(ProtocolError):
            self.pipeline.feed([b"stray"], 10)
        self.fail_all(self.cut(data, "in doubt"))

    # -- room ----------------------------------------------------------------------------

    @rule(count=st.integers(1, 3), first=st.booleans())
    def add_waiter(self, count: int, first: bool) -> None:
        line = Line(None, count)  # type: ignore[arg-type]
        line.waiter = self.pipeline.add_waiter(count, line.notify, first=first)
        if first:
            self.line.insert(0, line)
        else:
            self.line.append(line)

    @rule(data=st.data())
    def give_up_waiting(self, data: st.DataObject) -> None:
        if self.line:
            line = data.draw(st.sampled_from(self.line), label="gives up")
            self.pipeline.remove_waiter(line.waiter)
            self.line.remove(line)

    # -- failing -------------------------------------------------------------------------

    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        self.fail_all(self.cut(data, "in doubt"))

    @precondition(lambda self: self.current is not None)
    @rule(data=st.data())
    def break_mid_write(self, data: st.DataObject) -> None:
        """The kernel takes part of the write under way, then the link breaks."""
        count = self.cut(data, "kernel took")
        if count:
            self.kernel_took(count)
        self.fail_all(self.cut(data, "in doubt"))

    def fail_all(self, in_doubt: int) -> None:
        expected: dict[int, bool] = {}
        for model in self.pending():
            expected[id(model)] = model.start < self.handed + in_doubt
        for model in self.queue:
            expected[id(model)] = False
        error = RuntimeError("link broken")

        self.pipeline.fail(error, lost, in_doubt)

        for model in self.models:
            if id(model) in expected:
                model.state = "failed"
                failure = model.request.error
                assert isinstance(failure, ConnectionLostError)
                assert failure.sent is expected[id(model)], (model, self.handed, in_doubt)
            else:
                assert model.request.error is None
        assert all(line.waiter.woken and line.notify.sets == 1 for line in self.line)
        # Idempotent: a second failure changes nothing.
        self.pipeline.fail(RuntimeError("again"), lambda sent: RuntimeError("never"), 10**9)
        assert self.pipeline.failed is error
        assert self.pipeline.outstanding == 0
        assert not self.pipeline.writing
        assert not self.pipeline.pending
        assert not self.pipeline.waiters
        for model in self.models:
            if model.kind == "many":
                assert not self.pipeline.extend(model.request, b"*1\r\n$4\r\nPING\r\n")
        self.retired += self.models
        self.new_link()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def counts_match_the_model(self) -> None:
        pipeline = self.pipeline
        assert pipeline.outstanding >= 0
        assert pipeline.outstanding == self.outstanding()
        assert pipeline.queued == sum(model.count for model in self.queue)
        assert pipeline.thread_submitted == self.thread_commands

    @invariant()
    def replies_go_to_their_owner_only(self) -> None:
        for model in self.retired + self.models:
            request = model.request
            settled = model.state in ("answered", "failed")
            assert request.done is settled
            assert request.notify.sets == (1 if settled else 0)
            if model.kind == "push":
                assert request.replies == []
            elif request.replies is None:
                assert request.value == (model.tokens[0] if model.state == "answered" else None)
            else:
                assert request.replies == model.tokens[: model.received]

    @invariant()
    def pending_and_line_are_the_models(self) -> None:
        assert list(self.pipeline.pending) == [model.request for model in self.pending()]
        assert list(self.pipeline.queue) == [model.request for model in self.queue]
        assert list(self.pipeline.waiters) == [line.waiter for line in self.line]

    def teardown(self) -> None:
        """Nothing lost: with everything written and answered, every request is done."""
        if not hasattr(self, "pipeline"):
            return
        pipeline = self.pipeline
        while True:
            while (write := pipeline.next_write()) is not None:
                pipeline.wrote(len(write))
            for model in self.queue:
                if model.request.abandoned:
                    model.state = "dropped"
                else:
                    self.take(model)
            self.queue = []
            self.handed = self.stream_size
            replies = [
                Push([b"subscribe", command.token, 1])
                if command.owner.kind == "push"
                else command.token
                for command in self.commands[self.answered :]
            ]
            self.answered = len(self.commands)
            if not replies:
                break
            pipeline.feed(replies, 100)
            # Woken waiters submit; those still in line keep waiting.
            for line in [line for line in self.line if line.waiter.woken]:
                self.line.remove(line)
                pipeline.claim(line.waiter)
                self.submit(line.count, many=line.count > 1)
        assert pipeline.outstanding == 0
        assert all(
            model.state in ("failed", "answered", "dropped", "written") for model in self.retired
        )
        for model in self.models:
            request = model.request
            if model.kind == "push" or model.state == "dropped":
                continue
            assert request.done, model
            assert request.error is None
            expected = model.tokens[0] if request.replies is None else model.tokens
            assert request.outcome() == expected


PipelineMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_pipeline_state_machine = PipelineMachine.TestCase
