"""Cancelled callers and waiters: what is written, what is dropped, who gets which reply.

A cancelled waiter abandons its request: never written if it was still
queued, otherwise its replies are read and dropped and the connection stays
in step. Submitters waiting for room are woken in turn. All over a
:class:`ScriptedStream`, on both backends.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest

from triopipe._connection import Connection
from triopipe._pipeline import Request
from triopipe._resp import Push

from .scripted import (
    ScriptedStream,
    StreamFactory,
    bulk,
    echo_payload,
    idle_connection,
    push_frame,
    scripted_connection,
    wait_until,
    waiting,
)


class Caller:
    """A task that makes one call in a cancel scope of its own and records how it ended."""

    def __init__(self, connection: Connection, token: str) -> None:
        self.connection = connection
        self.token = token
        self.scope = anyio.CancelScope()
        self.result: Any = None
        self.finished = anyio.Event()

    async def run(self) -> None:
        with self.scope:
            self.result = await self.connection.call(echo_payload(self.token), 1)
        if self.scope.cancelled_caught:
            self.result = "cancelled"
        self.finished.set()


def tokens(commands: list[list[bytes]]) -> list[bytes]:
    return [command[1] for command in commands]


async def only_then_last_written(
    connection: Connection, stream: ScriptedStream, before: str, owner: Request[Any] | None
) -> None:
    """Submit "last" and open the kernel: exactly ``before`` then "last" go out, nothing else.

    Whatever was abandoned between them was dropped, never written. Each
    reply reaches its owner: ``owner`` is ``before``'s request, or None when
    it was abandoned (its reply is read and dropped).
    """
    last = connection.submit(echo_payload("last"), 1)
    stream.allow()
    payloads = echo_payload(before) + echo_payload("last")
    assert await stream.wait_written(len(payloads)) == payloads
    stream.feed(bulk(before) + bulk("last"))
    if owner is not None:
        assert await connection.wait(owner) == before.encode()
    assert await connection.wait(last) == b"last"
    assert connection.statistics().commands_in_flight == 0
    assert connection.statistics().connected


async def test_caller_cancelled_before_the_write_is_never_written() -> None:
    """A command still queued when its caller gives up never reaches the kernel."""
    factory = StreamFactory(room=0)
    async with idle_connection(factory) as (connection, stream):
        # The kernel is full: this one blocks the sender, so the next one queues.
        first = connection.submit(echo_payload("first"), 1)
        doomed = Caller(connection, "doomed")

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(doomed.run)
            await wait_until(lambda: connection.statistics().commands_queued == 1)
            doomed.scope.cancel()
        await only_then_last_written(connection, stream, "first", first)
        assert doomed.result == "cancelled"
        assert connection.statistics().commands_written == 2


async def test_caller_cancelled_after_the_write_has_its_reply_dropped() -> None:
    """Written, then abandoned: its reply is read and dropped; the next caller gets its own."""
    factory = StreamFactory()
    async with scripted_connection(factory) as connection:
        await connection.connect()
        stream = factory.stream
        doomed = Caller(connection, "doomed")
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(doomed.run)
            await stream.wait_commands(1)
            doomed.scope.cancel()
        after = connection.submit(echo_payload("after"), 1)
        assert tokens(await stream.wait_commands(2)) == [b"doomed", b"after"]
        # The abandoned command counts until its reply is read.
        assert connection.statistics().commands_in_flight == 2

        stream.feed(bulk("doomed"))
        await wait_until(lambda: connection.statistics().commands_in_flight == 1)
        assert not after.done
        stream.feed(bulk("after"))

        assert await connection.wait(after) == b"after"
        assert doomed.result == "cancelled"
        assert connection.statistics().commands_in_flight == 0
        assert connection.statistics().connected


async def test_caller_cancelled_while_its_command_is_half_written_still_writes_it_whole() -> None:
    """The byte stream is never torn: the rest of an abandoned half-written command still goes."""
    factory = StreamFactory(room=5)
    async with idle_connection(factory) as (connection, stream):
        doomed = Caller(connection, "doomed")
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(doomed.run)
            await stream.wait_written(5)
            doomed.scope.cancel()
        await only_then_last_written(connection, stream, "doomed", None)
        assert doomed.result == "cancelled"


async def test_batch_cancelled_while_growing_is_never_written() -> None:
    """A batch grown with ``extend``, abandoned before the sender took it: none of it is sent."""
    factory = StreamFactory(room=0)
    async with idle_connection(factory) as (connection, stream):
        first = connection.submit(echo_payload("first"), 1)
        batch = connection.submit(echo_payload("b0"), 1, many=True)
        assert connection.extend(batch, echo_payload("b1"))
        assert connection.extend(batch, echo_payload("b2"))
        assert connection.statistics().commands_queued == 3

        with anyio.move_on_after(0) as scope:
            await connection.wait(batch)
        assert scope.cancelled_caught
        assert batch.abandoned
        await only_then_last_written(connection, stream, "first", first)
        assert not batch.done


async def test_batch_cancelled_after_its_write_has_every_reply_dropped() -> None:
    """Every reply of an abandoned, written batch is dropped; the next caller gets its own."""
    factory = StreamFactory()
    async with scripted_connection(factory) as connection:
        await connection.connect()
        stream = factory.stream
        batch = connection.submit(echo_payload("b0"), 1, many=True)
        connection.extend(batch, echo_payload("b1"))
        connection.extend(batch, echo_payload("b2"))
        await stream.wait_commands(3)
        with anyio.move_on_after(0):
            await connection.wait(batch)
        after = connection.submit(echo_payload("after"), 1)
        await stream.wait_commands(4)

        stream.feed(bulk("b0") + bulk("b1"))
        stream.feed(bulk("b2"))
        # The batch settles as a whole, once its last reply is read.
        await wait_until(lambda: connection.statistics().commands_in_flight == 1)
        assert not after.done
        stream.feed(bulk("after"))

        assert await connection.wait(after) == b"after"
        assert connection.statistics().commands_in_flight == 0


async def start_callers(
    connection: Connection, task_group: anyio.abc.TaskGroup, names: list[str]
) -> list[Caller]:
    """Start one caller per name, each only once the previous one is in place (FIFO known)."""
    callers = []
    for name in names:
        caller = Caller(connection, name)
        before = connection.statistics().commands_in_flight + waiting(connection)
        task_group.start_soon(caller.run)
        await wait_until(
            lambda before=before: (
                connection.statistics().commands_in_flight + waiting(connection) > before
            )
        )
        callers.append(caller)
    return callers


async def answer_in_turn(stream: Any, total: int, limit: int) -> None:
    """Answer ``total`` commands one at a time, each once the command its reply lets in is written.

    Checks on the way that no more than ``limit`` commands are ever written
    and unanswered.
    """
    for index in range(total):
        expected = min(index + limit, total)
        commands = await stream.wait_commands(expected)
        assert len(commands) == expected
        stream.feed(bulk(commands[index][1]))


@pytest.mark.parametrize("cancelled", [None, 2, 3, 5])
async def test_waiters_for_room_are_woken_in_arrival_order_a_cancelled_one_skipped(
    cancelled: int | None,
) -> None:
    """``max_in_flight=2``, six callers: each reply lets exactly the next waiter write.

    Callers w2 to w5 wait for room, in that order; the one numbered
    ``cancelled`` gives up while waiting: it is skipped and never written,
    and the others keep their order.
    """
    factory = StreamFactory()
    names = [f"w{index}" for index in range(6)]
    async with scripted_connection(factory, max_in_flight=2) as connection:
        await connection.connect()
        stream = factory.stream
        async with anyio.create_task_group() as task_group:
            callers = await start_callers(connection, task_group, names)
            assert waiting(connection) == 4
            if cancelled is not None:
                callers[cancelled].scope.cancel()
                await callers[cancelled].finished.wait()
                assert waiting(connection) == 3
            await answer_in_turn(stream, len(names) - (cancelled is not None), limit=2)

    expected = [name.encode() for name in names]
    if cancelled is not None:
        del expected[cancelled]
    assert tokens(stream.commands) == expected
    assert [caller.result for caller in callers if caller.result != "cancelled"] == expected
    assert [caller.result == "cancelled" for caller in callers] == [
        index == cancelled for index in range(6)
    ]
    assert connection.statistics().commands_in_flight == 0


async def run_woken_and_cancelled(
    stream_factory: StreamFactory,
) -> tuple[Connection, list[Caller]]:
    """Three callers, ``max_in_flight=1``; w1 is cancelled in the very step a reply wakes it.

    The push frame after w0's reply makes ``on_push`` cancel w1's scope right
    after the reply woke it, before w1 runs again. Returns with w0 answered.
    """
    callers: list[Caller] = []

    def cancel_the_woken_waiter(push: Push) -> None:
        callers[1].scope.cancel()

    async with scripted_connection(
        stream_factory, max_in_flight=1, on_push=cancel_the_woken_waiter
    ) as connection:
        await connection.connect()
        stream = stream_factory.stream
        async with anyio.create_task_group() as task_group:
            callers += await start_callers(connection, task_group, ["w0", "w1", "w2"])
            assert waiting(connection) == 2
            await stream.wait_commands(1)
            stream.feed(bulk("w0") + push_frame("wake", "w1"))
            await callers[1].finished.wait()
            commands = await stream.wait_commands(2)
            if commands[1][1] == b"w1":
                # Written before its cancellation landed: answer it (the
                # answer is dropped) so that w2 gets the room.
                stream.feed(bulk("w1"))
                commands = await stream.wait_commands(3)
            stream.feed(bulk(commands[-1][1]))
        return connection, callers


async def test_waiter_cancelled_as_it_is_woken_gets_nothing_and_the_next_waiter_runs() -> None:
    """A waiter cancelled in the step that woke it ends cancelled; the room goes on to w2.

    Whether its command was written first or not (see the xfail test below),
    no reply reaches the wrong caller and nothing stays in flight.
    """
    factory = StreamFactory()
    connection, callers = await run_woken_and_cancelled(factory)
    assert [caller.result for caller in callers] == [b"w0", "cancelled", b"w2"]
    assert factory.stream.commands[-1] == [b"ECHO", b"w2"]
    assert connection.statistics().commands_in_flight == 0


async def test_caller_cancelled_while_waiting_for_room_submits_nothing() -> None:
    """A caller whose scope is cancelled by the time it gets room never writes its command.

    ``call()`` promises that a caller whose scope is already cancelled submits
    nothing, and checks it when there is room at once; after waiting for room
    it submits unchecked. Neither trio nor anyio on asyncio delivers a
    cancellation to a task already woken, so w1 resumes, submits, writes its
    command on the idle link, and only then is cancelled, waiting for a reply
    the server produces by executing a command whose caller was gone.
    """
    factory = StreamFactory()
    await run_woken_and_cancelled(factory)
    assert [command[1] for command in factory.stream.commands] == [b"w0", b"w2"]


async def test_request_larger_than_the_limit_waits_for_an_empty_link_then_runs() -> None:
    """``max_in_flight=2``: room for 3 commands comes only once nothing at all is in flight."""
    factory = StreamFactory()
    async with scripted_connection(factory, max_in_flight=2) as connection:
        await connection.connect()
        stream = factory.stream
        pending = [connection.submit(echo_payload(f"p{index}"), 1) for index in range(2)]
        assert not connection.has_room(3)
        woken: list[str] = []
        async with anyio.create_task_group() as task_group:

            async def big() -> None:
                await connection.wait_for_room(3)
                woken.append("big")

            task_group.start_soon(big)
            await wait_until(lambda: waiting(connection) == 1)
            stream.feed(bulk("p0"))
            await wait_until(lambda: connection.statistics().commands_in_flight == 1)
            assert woken == []
            assert waiting(connection) == 1
            stream.feed(bulk("p1"))
        assert woken == ["big"]
        assert [await connection.wait(request) for request in pending] == [b"p0", b"p1"]
        assert connection.has_room(3)
