"""Commands written by worker threads (``Connection.call_from_thread``) next to the loop's own.

A thread may write its command itself while the sender sleeps; its reply
still comes back through the receiver. These tests check that each reply
reaches its own caller, that the counters stay exact (never negative, back to
zero), and that a thread's partial write is finished by the sender.
"""

from __future__ import annotations

import functools
import threading

import anyio
import anyio.from_thread
import pytest

from triopipe._connection import Connection

from .scripted import (
    WAIT,
    StreamFactory,
    echo,
    echo_payload,
    idle_connection,
    in_thread,
    scripted_connection,
    sender_asleep,
    wait_until,
)


def call_in_thread(connection: Connection, token: str) -> tuple[bool, object]:
    """One blocking call as the blocking facade makes it: (written by this thread, reply).

    When the thread may not write, the call goes through the loop instead.
    """
    payload = echo_payload(token)
    request = connection.call_from_thread(payload)
    if request is None:
        return False, anyio.from_thread.run(connection.call, payload, 1)
    return True, request.outcome()


async def test_thread_writes_its_own_command_on_an_idle_link() -> None:
    """One worker thread, one call at a time: each is written by the thread itself."""
    factory = StreamFactory(respond=echo)
    async with idle_connection(factory) as (connection, stream):

        def worker() -> list[tuple[bool, object]]:
            return [call_in_thread(connection, f"t{index}") for index in range(20)]

        results = await in_thread(worker)

        assert results == [(True, f"t{index}".encode()) for index in range(20)]
        loop_thread = threading.get_ident()
        assert [method for method, _, _ in stream.calls] == ["try_send"] * 20
        assert all(thread != loop_thread for _, _, thread in stream.calls)
        statistics = connection.statistics()
        assert statistics.commands_in_flight == 0
        assert statistics.commands_written == 20
        assert statistics.writes == 20


@pytest.mark.parametrize("chunk", [None, 5], ids=["whole-writes", "five-bytes-a-write"])
async def test_threads_and_loop_tasks_share_a_link_each_reply_to_its_caller(
    chunk: int | None,
) -> None:
    """Four threads and four loop tasks, 40 calls each: every reply goes to its own caller.

    With five bytes a write, every thread write is partial and finished by the
    sender while loop tasks submit. A monitor samples ``commands_in_flight``
    at every checkpoint: it never goes negative, and is back to zero at the end.
    """
    factory = StreamFactory(chunk=chunk, respond=echo)
    samples: list[int] = []
    thread_results: dict[str, object] = {}
    loop_results: dict[str, object] = {}
    done = False
    async with idle_connection(factory) as (connection, stream):

        def worker(number: int) -> None:
            for index in range(40):
                token = f"thread{number}-{index}"
                thread_results[token] = call_in_thread(connection, token)[1]

        async def loop_caller(number: int) -> None:
            for index in range(40):
                token = f"loop{number}-{index}"
                loop_results[token] = await connection.call(echo_payload(token), 1)

        async def monitor() -> None:
            while not done:
                samples.append(connection.statistics().commands_in_flight)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as outer:
            outer.start_soon(monitor)
            async with anyio.create_task_group() as task_group:
                for number in range(4):
                    # 40 calls in a row, each waiting for the GIL held by the
                    # spinning monitor: on trio a thread's call took up to
                    # 40 ms on the 2-core machine (6.5 s for the 160).
                    task_group.start_soon(
                        functools.partial(in_thread, worker, number, bound=8 * WAIT)
                    )
                    task_group.start_soon(loop_caller, number)
            done = True

        for results in (thread_results, loop_results):
            assert len(results) == 160
            assert results == {token: token.encode() for token in results}
        assert min(samples) >= 0
        assert max(samples) > 0
        statistics = connection.statistics()
        assert statistics.commands_in_flight == 0
        assert statistics.commands_written == 320
        assert len(stream.commands) == 320
        assert statistics.connects == 1


async def test_thread_partial_write_is_finished_by_the_sender() -> None:
    """The kernel takes 6 bytes of a thread's write; the sender, woken, writes the rest."""
    factory = StreamFactory(chunk=6, respond=echo)
    async with idle_connection(factory) as (connection, stream):
        payload = echo_payload("partial")

        request = await in_thread(connection.call_from_thread, payload)

        assert request is not None
        assert request.outcome() == b"partial"
        assert bytes(stream.written) == payload
        loop_thread = threading.get_ident()
        methods = [(method, thread == loop_thread) for method, _, thread in stream.calls]
        # The thread's try_send, then the loop's sender for the rest.
        assert methods[0] == ("try_send", False)
        assert set(methods[1:]) == {("send_some", True)}
        assert sum(taken for _, taken in stream.sends) == len(payload)
        await wait_until(lambda: sender_asleep(connection))
        assert connection.statistics().commands_in_flight == 0


async def test_thread_partial_write_keeps_the_loop_commands_behind_it() -> None:
    """Loop commands submitted while a thread's write is half done go after all of it."""
    factory = StreamFactory(room=6, respond=echo)
    async with idle_connection(factory) as (connection, stream):
        thread_payload = echo_payload("thread")
        outcome: list[object] = []

        def worker() -> None:
            request = connection.call_from_thread(thread_payload)
            assert request is not None
            outcome.append(request.outcome())

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(in_thread, worker)
            await stream.wait_written(6)
            loop_requests = [connection.submit(echo_payload(f"loop{i}"), 1) for i in range(3)]
            stream.allow()
            assert [await connection.wait(request) for request in loop_requests] == [
                b"loop0",
                b"loop1",
                b"loop2",
            ]

        assert outcome == [b"thread"]
        assert bytes(stream.written) == thread_payload + b"".join(
            echo_payload(f"loop{i}") for i in range(3)
        )


async def test_thread_writes_nothing_without_a_link_without_room_or_mid_write() -> None:
    """``call_from_thread`` returns None, writing nothing, unless the link is idle with room."""
    factory = StreamFactory()
    async with scripted_connection(factory, max_in_flight=1) as connection:
        assert await in_thread(connection.call_from_thread, b"x") is None

        await connection.connect()
        await wait_until(lambda: sender_asleep(connection))
        stream = factory.stream
        # Written, awaiting its reply: with max_in_flight=1 there is no room.
        first = connection.submit(echo_payload("first"), 1)
        assert bytes(stream.written) == echo_payload("first")
        assert await in_thread(connection.call_from_thread, b"x") is None
        stream.feed(b"$5\r\nfirst\r\n")
        assert await connection.wait(first) == b"first"

        # A write under way (the kernel is full): a thread must not cut in.
        stream.block()
        second = connection.submit(echo_payload("second"), 1)
        assert await in_thread(connection.call_from_thread, b"x") is None
        stream.allow()
        await stream.wait_commands(2)
        stream.feed(b"$6\r\nsecond\r\n")
        assert await connection.wait(second) == b"second"

        assert [command[1] for command in stream.commands] == [b"first", b"second"]
        assert all(thread == threading.get_ident() for _, _, thread in stream.calls)


async def test_thread_never_writes_to_a_stream_without_direct_writes() -> None:
    """On a TLS-like stream ``call_from_thread`` always leaves the command to the loop."""
    factory = StreamFactory(tls=True, respond=echo)
    async with idle_connection(factory) as (connection, stream):
        assert await in_thread(connection.call_from_thread, b"x") is None
        assert stream.calls == []
