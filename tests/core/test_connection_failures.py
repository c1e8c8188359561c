"""Broken links: exact ``sent`` flags, protocol errors, stray replies, reconnects, connecting.

A request is *sent* once the kernel took one of its bytes (or may have: a
TLS-like stream's write in doubt). When a link breaks, every request fails
at once with :class:`ConnectionLostError` carrying its own ``sent``; the next
submission starts a new link on a new stream. All over a
:class:`ScriptedStream`, on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from triopipe._connection import Connection
from triopipe._exceptions import ConnectError, ConnectionLostError, ProtocolError
from triopipe._pipeline import Request

from .scripted import (
    Recorder,
    ScriptedStream,
    StreamFactory,
    bulk,
    echo,
    echo_payload,
    idle_connection,
    scripted_connection,
    wait_until,
    waiting,
)


async def failure(connection: Connection, request: Request[Any]) -> BaseException:
    """The error ``request`` failed with (it must fail)."""
    try:
        value = await connection.wait(request)
    except Exception as exc:
        return exc
    raise AssertionError(f"the request succeeded with {value!r}")


async def sent_flags(connection: Connection, requests: list[Request[Any]]) -> list[bool]:
    """Each request's ``ConnectionLostError.sent``, checking that each failed so."""
    flags = []
    for request in requests:
        error = await failure(connection, request)
        assert isinstance(error, ConnectionLostError), error
        flags.append(error.sent)
    return flags


async def stall_mid_write(
    connection: Connection, stream: ScriptedStream, room_after_first: int
) -> tuple[list[Request[Any]], bytes]:
    """Requests A (alone), then B, C, D in one write of which the kernel takes some, then E queued.

    The kernel is full when A is submitted, so B, C and D queue behind it and
    go out together. The kernel then takes all of A and ``room_after_first``
    bytes of the B+C+D write, and blocks; E arrives while that write is
    under way. Returns the requests A to E and the bytes written.
    """
    stream.block()
    requests = [connection.submit(echo_payload("A"), 1)]
    requests += [connection.submit(echo_payload(name), 1) for name in "BCD"]
    first = len(echo_payload("A"))
    stream.allow(first + room_after_first)
    written = await stream.wait_written(first + room_after_first)
    await wait_until(lambda: connection.statistics().commands_queued == 0)
    requests.append(connection.submit(echo_payload("E"), 1))
    assert connection.statistics().commands_queued == 1
    return requests, written


# The size of each payload ECHO x: the room after A's write cuts the B+C+D write.
SIZE = len(echo_payload("B"))


@pytest.mark.parametrize(
    ("room", "expected"),
    [
        pytest.param(0, [True, False, False, False, False], id="nothing-of-the-second-write"),
        pytest.param(1, [True, True, False, False, False], id="one-byte-of-B"),
        pytest.param(SIZE, [True, True, False, False, False], id="B-whole-C-nothing"),
        pytest.param(SIZE + 1, [True, True, True, False, False], id="B-and-one-byte-of-C"),
        pytest.param(3 * SIZE - 1, [True, True, True, True, False], id="all-but-a-byte"),
    ],
)
async def test_writes_broken_mid_write_report_sent_exactly(
    room: int, expected: list[bool]
) -> None:
    """The write breaks after the kernel took ``room`` bytes of B+C+D: sent = took a byte."""
    factory = StreamFactory()
    async with idle_connection(factory) as (connection, stream):
        requests, written = await stall_mid_write(connection, stream, room)
        assert written == b"".join(map(echo_payload, "ABCD"))[: SIZE + room]

        stream.break_writes(ConnectionResetError("reset by peer"))

        assert await sent_flags(connection, requests) == expected
        assert not connection.statistics().connected
        assert connection.statistics().commands_in_flight == 0


@pytest.mark.parametrize(
    ("end_reads", "message"),
    [
        pytest.param(lambda stream: stream.eof(), "closed the connection", id="eof"),
        pytest.param(
            lambda stream: stream.break_reads(ConnectionResetError(104, "reset")),
            "reading from",
            id="reset",
        ),
    ],
)
async def test_reads_ending_while_a_write_is_blocked_report_sent_exactly(
    end_reads: Callable[[ScriptedStream], None], message: str
) -> None:
    """EOF or a read error while the sender waits for room: bytes never taken are unsent."""
    factory = StreamFactory()
    async with idle_connection(factory) as (connection, stream):
        requests, _ = await stall_mid_write(connection, stream, SIZE + 1)

        end_reads(stream)

        assert await sent_flags(connection, requests) == [True, True, True, False, False]
        error = await failure(connection, requests[0])
        assert message in str(error)
        await stream.until(lambda: stream.closed)


@pytest.mark.parametrize(
    ("taken_chunks", "expected"),
    [
        pytest.param(0, [True, False, False], id="first-chunk-in-doubt"),
        pytest.param(1, [True, True, False], id="second-chunk-in-doubt"),
        pytest.param(2, [True, True, True], id="third-chunk-in-doubt"),
    ],
)
async def test_tls_write_interrupted_counts_its_chunk_in_doubt_as_sent(
    taken_chunks: int, expected: list[bool]
) -> None:
    """A TLS-like stream cannot tell how much of an interrupted chunk left: all of it is sent.

    Each ``send_some`` is all or nothing for one payload-sized chunk. After
    ``taken_chunks`` complete, the next one is under way when the stream
    breaks: its request is sent (in doubt), the later ones are not.
    """
    factory = StreamFactory(tls=True, chunk=SIZE, room=taken_chunks * SIZE)
    async with scripted_connection(factory) as connection:
        await connection.connect()
        stream = factory.stream
        requests = [connection.submit(echo_payload(name), 1) for name in "ABC"]
        await stream.wait_written(taken_chunks * SIZE)
        await stream.until(lambda: stream.in_doubt == SIZE)
        assert stream.sends == [("send_some", SIZE)] * taken_chunks

        stream.break_writes(anyio.BrokenResourceError())

        assert await sent_flags(connection, requests) == expected


async def test_tls_stream_is_never_written_inside_submit() -> None:
    """A stream without direct writes leaves even a lone command on an idle link to the sender."""
    factory = StreamFactory(tls=True, respond=echo)
    async with idle_connection(factory) as (connection, stream):
        request = connection.submit(echo_payload("lone"), 1)
        assert stream.written == b""
        assert await connection.wait(request) == b"lone"
        assert [method for method, _ in stream.sends] == ["send_some"]


async def test_protocol_error_fails_every_request_with_its_cause() -> None:
    """Bytes that are not RESP: written requests lost as sent, the rest as unsent; cause kept."""
    factory = StreamFactory()
    lost = Recorder()
    async with idle_connection(factory, on_lost=lost) as (connection, stream):
        requests, _ = await stall_mid_write(connection, stream, SIZE)
        # A is written, B written, C and D taken but not a byte of them, E queued.

        stream.feed(b"?not resp\r\n")

        assert await sent_flags(connection, requests) == [True, True, False, False, False]
        causes = [(await failure(connection, request)).__cause__ for request in requests]
        assert all(isinstance(cause, ProtocolError) for cause in causes)
        assert len(lost.items) == 1
        assert isinstance(lost.items[0], ProtocolError)
        assert all(cause is lost.items[0] for cause in causes)
        assert not connection.statistics().connected


async def test_reply_with_no_request_waiting_breaks_the_link() -> None:
    """A reply nobody asked for means the stream is out of step: the link is dropped."""
    factory = StreamFactory()
    lost = Recorder()
    async with idle_connection(factory, on_lost=lost) as (connection, stream):
        request = connection.submit(echo_payload("mine"), 1)
        await stream.wait_commands(1)

        stream.feed(bulk("mine") + b"+stray\r\n")

        # The owner gets its own reply; the stray one breaks the link.
        assert await connection.wait(request) == b"mine"
        await wait_until(lambda: len(lost.items) == 1)
        assert isinstance(lost.items[0], ProtocolError)
        assert not connection.statistics().connected
        assert stream.shut_down


async def test_reply_on_an_idle_link_breaks_it_and_the_next_command_reconnects() -> None:
    """A reply arriving with nothing awaited breaks the link; the next call gets a new stream."""
    factory = StreamFactory(respond=echo)
    async with idle_connection(factory) as (connection, stream):
        stream.feed(b":1\r\n")
        await wait_until(lambda: not connection.linked)

        assert await connection.call(echo_payload("again"), 1) == b"again"
        assert len(factory.streams) == 2
        assert factory.streams[1].commands == [[b"ECHO", b"again"]]
        assert connection.statistics().connects == 2


async def test_waiter_for_room_on_a_link_that_breaks_runs_on_the_next_link() -> None:
    """A submitter waiting for room when the link breaks is woken; its call runs on a new link."""
    factory = StreamFactory()
    results: list[object] = []
    async with idle_connection(factory, max_in_flight=1) as (connection, stream):
        first = connection.submit(echo_payload("first"), 1)

        async def waiting_caller() -> None:
            results.append(await connection.call(echo_payload("second"), 1))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(waiting_caller)
            await wait_until(lambda: waiting(connection) == 1)
            stream.eof()
            second = await factory.wait_streams(2)
            assert await second.wait_commands(1) == [[b"ECHO", b"second"]]
            second.feed(bulk("second"))

        assert results == [b"second"]
        assert await sent_flags(connection, [first]) == [True]
        assert stream.commands == [[b"ECHO", b"first"]]


async def test_reconnect_after_a_break_starts_a_new_link_and_counts_connects() -> None:
    """After EOF the old stream is closed; the next command goes out on a new one."""
    factory = StreamFactory(respond=echo)
    lost = Recorder()
    async with scripted_connection(factory, on_lost=lost) as connection:
        assert await connection.call(echo_payload("one"), 1) == b"one"
        first = factory.stream
        first.eof()
        await wait_until(lambda: len(lost.items) == 1)
        await first.until(lambda: first.closed)
        assert isinstance(lost.items[0], ConnectionLostError)
        assert not connection.linked

        assert await connection.call(echo_payload("two"), 1) == b"two"

        second = factory.stream
        assert second is not first
        assert first.commands == [[b"ECHO", b"one"]]
        assert second.commands == [[b"ECHO", b"two"]]
        statistics = connection.statistics()
        assert statistics.connects == 2
        assert statistics.connected
        # Counts of writes outlive the links that made them.
        assert statistics.commands_written == 2
        assert statistics.writes == 2


async def test_failed_connects_fail_the_commands_unsent_then_a_later_connect_succeeds() -> None:
    """Refused connects: ``ConnectError`` for the caller and its command; down, retried behind.

    While the connection is down, commands fail at once (nothing queues, no
    caller waits through the backoff); a background attempt keeps trying,
    and once it connects commands go through again.
    """
    factory = StreamFactory(respond=echo)
    factory.connect_errors.extend([ConnectionRefusedError(111, "refused")] * 2)
    async with scripted_connection(factory) as connection:
        request = connection.submit(echo_payload("early"), 1)
        with pytest.raises(ConnectError) as caught:
            await connection.connect()
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
        error = await failure(connection, request)
        assert isinstance(error, ConnectError)

        with pytest.raises(ConnectError, match="down"):
            await connection.connect()
        with pytest.raises(ConnectError, match="next attempt"):
            await connection.call(echo_payload("too soon"), 1)
        await wait_until(lambda: connection.statistics().connected)
        assert await connection.call(echo_payload("late"), 1) == b"late"

        assert factory.attempts == 3
        assert len(factory.streams) == 1
        assert factory.stream.commands == [[b"ECHO", b"late"]]
        assert connection.statistics().connects == 1


async def test_connect_that_hangs_times_out_as_connect_error() -> None:
    """A connect that never completes fails after ``connect_timeout`` with ``ConnectError``."""
    factory = StreamFactory()
    factory.hang = True
    async with scripted_connection(factory, connect_timeout=0.05) as connection:
        with pytest.raises(ConnectError, match="timed out") as caught:
            await connection.connect()
        assert isinstance(caught.value.__cause__, TimeoutError)


async def test_close_fails_every_request_and_refuses_new_ones() -> None:
    """Closing: written requests lost as sent, queued ones as unsent; then submit refuses."""
    factory = StreamFactory()
    lost = Recorder()
    async with idle_connection(factory, on_lost=lost) as (connection, stream):
        requests, _ = await stall_mid_write(connection, stream, SIZE + 1)

        connection.close()

        assert await sent_flags(connection, requests) == [True, True, True, False, False]
        with pytest.raises(anyio.ClosedResourceError):
            connection.submit(echo_payload("late"), 1)
        with pytest.raises(anyio.ClosedResourceError):
            await connection.connect()
        await stream.until(lambda: stream.closed)
        # Closing is not losing: nobody is told.
        assert lost.items == []


async def test_tls_write_completing_after_the_link_broke_is_ignored() -> None:
    """A TLS write that completes after the link was failed must not touch the failed pipeline.

    The sender waits in ``send_some``; in one step the kernel takes the chunk
    (waking the sender) and the client closes the connection (failing every
    request, the chunk in doubt counted as sent). Neither trio nor anyio on
    asyncio interrupts a task already woken, so ``send_some`` returns its
    count and the sender reports it to the failed pipeline:
    ``Pipeline.wrote`` asserts a write under way, which ``fail`` cleared, and
    the AssertionError escapes the link's task into the client's task group.
    """
    factory = StreamFactory(tls=True, room=0)
    async with scripted_connection(factory) as connection:
        await connection.connect()
        stream = factory.stream
        requests = [connection.submit(echo_payload(name), 1) for name in "AB"]
        await stream.until(lambda: stream.send_blocked)
        assert stream.in_doubt == 2 * SIZE

        stream.allow()
        connection.close()

        assert await sent_flags(connection, requests) == [True, True]
