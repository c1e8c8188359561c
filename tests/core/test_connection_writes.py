"""How a connection writes: direct writes, shared writes, partial writes, the handshake.

Every test drives a real :class:`~triopipe._connection.Connection` over a
:class:`ScriptedStream`: the test is the kernel (how many bytes each write
takes) and the server (what comes back, and when). No redis-server, no socket.
"""

from __future__ import annotations

import threading

import anyio
import pytest

from triopipe._exceptions import AuthenticationError, ConnectionLostError, ProtocolError
from triopipe._resp import Push, encode_command

from .scripted import (
    Recorder,
    StreamFactory,
    bulk,
    echo,
    echo_payload,
    idle_connection,
    push_frame,
    scripted_connection,
    wait_until,
)


async def test_lone_command_on_idle_link_is_written_inside_submit() -> None:
    """On an idle link, ``submit`` itself hands a lone command to the kernel, before any await."""
    factory = StreamFactory(respond=echo)
    async with idle_connection(factory) as (connection, stream):
        payload = echo_payload("lone")

        request = connection.submit(payload, 1)

        # Nothing awaited since submit(): whatever the kernel holds, submit wrote.
        assert bytes(stream.written) == payload
        assert stream.calls == [("try_send", len(payload), threading.get_ident())]
        assert connection.statistics().writes == 1
        assert connection.statistics().commands_written == 1
        assert await connection.wait(request) == b"lone"
        assert connection.statistics().commands_in_flight == 0


async def test_command_on_busy_link_is_left_to_the_sender() -> None:
    """With a reply awaited, a new command is queued for the sender, not written by submit."""
    factory = StreamFactory()
    async with idle_connection(factory) as (connection, stream):
        first_payload, second_payload = echo_payload("first"), echo_payload("second")

        first = connection.submit(first_payload, 1)
        second = connection.submit(second_payload, 1)

        assert bytes(stream.written) == first_payload
        assert connection.statistics().commands_queued == 1
        written = await stream.wait_written(len(first_payload + second_payload))
        assert written == first_payload + second_payload
        assert stream.sends == [
            ("try_send", len(first_payload)),
            ("send_some", len(second_payload)),
        ]
        stream.feed(bulk("first") + bulk("second"))
        assert await connection.wait(first) == b"first"
        assert await connection.wait(second) == b"second"


async def test_batch_is_never_written_inside_submit_and_grows_until_taken() -> None:
    """A batch stays queued on an idle link, grows with ``extend``, then goes in one write."""
    factory = StreamFactory()
    async with idle_connection(factory) as (connection, stream):
        payloads = [echo_payload(f"item{index}") for index in range(4)]

        batch = connection.submit(payloads[0], 1, many=True)
        assert stream.written == b""
        assert connection.extend(batch, payloads[1])
        assert connection.extend(batch, payloads[2])
        assert connection.statistics().commands_queued == 3

        written = await stream.wait_written(len(b"".join(payloads[:3])))
        assert written == b"".join(payloads[:3])
        assert stream.sends == [("send_some", len(written))]
        # Taken for writing: it can no longer grow.
        assert not connection.extend(batch, payloads[3])
        stream.feed(bulk("item0") + bulk("item1") + bulk("item2"))
        assert await connection.wait(batch) == [b"item0", b"item1", b"item2"]
        assert connection.statistics().commands_in_flight == 0


async def test_concurrent_callers_share_one_write() -> None:
    """Fifty callers arriving while the kernel is full go out in one shared write."""
    factory = StreamFactory(room=0, respond=echo)
    results: dict[int, object] = {}
    async with idle_connection(factory) as (connection, stream):

        async def caller(index: int) -> None:
            results[index] = await connection.call(echo_payload(f"caller{index}"), 1)

        async with anyio.create_task_group() as task_group:
            for index in range(50):
                task_group.start_soon(caller, index)
            await wait_until(lambda: connection.statistics().commands_in_flight == 50)
            stream.allow()

        assert results == {index: f"caller{index}".encode() for index in range(50)}
        statistics = connection.statistics()
        # The first caller's direct write found the kernel full; the sender
        # wrote its bytes, then everyone else's at once.
        assert statistics.writes == 2
        assert statistics.commands_written == 50
        assert [method for method, _ in stream.sends] == ["send_some", "send_some"]
        assert sorted(command[1] for command in stream.commands) == sorted(
            f"caller{index}".encode() for index in range(50)
        )


async def test_partial_direct_write_is_finished_by_the_sender_before_later_commands() -> None:
    """The kernel takes 5 bytes of a direct write; the sender writes the rest, then the others."""
    factory = StreamFactory(room=5)
    async with idle_connection(factory) as (connection, stream):
        payloads = [echo_payload(name) for name in ("one", "two", "three")]

        first = connection.submit(payloads[0], 1)
        assert bytes(stream.written) == payloads[0][:5]
        second = connection.submit(payloads[1], 1)
        third = connection.submit(payloads[2], 1)
        stream.allow()

        written = await stream.wait_written(len(b"".join(payloads)))
        assert written == b"".join(payloads)
        assert stream.sends == [
            ("try_send", 5),
            ("send_some", len(payloads[0]) - 5),
            ("send_some", len(payloads[1]) + len(payloads[2])),
        ]
        stream.feed(bulk("one") + bulk("two") + bulk("three"))
        assert [await connection.wait(request) for request in (first, second, third)] == [
            b"one",
            b"two",
            b"three",
        ]


async def test_lone_partial_direct_write_is_finished_by_the_sender_unprompted() -> None:
    """Nothing submitted after it: the sender, woken by ``submit``, still writes the rest."""
    factory = StreamFactory(chunk=5, respond=echo)
    async with idle_connection(factory) as (connection, stream):
        payload = echo_payload("alone")

        request = connection.submit(payload, 1)

        assert stream.sends == [("try_send", 5)]
        assert await connection.wait(request) == b"alone"
        assert bytes(stream.written) == payload
        assert {method for method, _ in stream.sends[1:]} == {"send_some"}


async def test_kernel_taking_seven_bytes_a_call_keeps_order_and_never_interleaves() -> None:
    """Every write call takes at most 7 bytes: commands still arrive whole, in submission order."""
    factory = StreamFactory(chunk=7, respond=echo)
    async with scripted_connection(factory) as connection:
        await connection.connect()
        stream = factory.stream
        payloads = [echo_payload(f"ordered{index}") for index in range(20)]

        requests = [connection.submit(payload, 1) for payload in payloads]

        assert [await connection.wait(request) for request in requests] == [
            f"ordered{index}".encode() for index in range(20)
        ]
        assert bytes(stream.written) == b"".join(payloads)
        assert all(taken <= 7 for _, taken in stream.sends)


async def test_concurrent_callers_with_a_stingy_kernel_each_get_their_own_reply() -> None:
    """Thirty concurrent callers, 3 bytes a write: each command arrives whole, each reply home."""
    factory = StreamFactory(chunk=3, respond=echo)
    results: dict[int, object] = {}
    async with scripted_connection(factory) as connection:

        async def caller(index: int) -> None:
            for round_ in range(3):
                token = f"c{index}r{round_}"
                results[index, round_] = (token, await connection.call(echo_payload(token), 1))

        async with anyio.create_task_group() as task_group:
            for index in range(30):
                task_group.start_soon(caller, index)

        stream = factory.stream
        assert all(value == token.encode() for token, value in results.values())
        assert len(results) == 90
        # The bytes parse back into exactly the commands sent, each once.
        assert sorted(command[1] for command in stream.commands) == sorted(
            token.encode() for token, _ in results.values()
        )
        assert connection.statistics().commands_in_flight == 0


async def test_handshake_completes_before_any_user_command_is_written() -> None:
    """RESP3: HELLO goes first and alone; a command submitted meanwhile waits for its reply."""
    factory = StreamFactory()
    async with scripted_connection(factory, protocol=3, client_name="core") as connection:
        request = connection.submit(echo_payload("user"), 1)
        stream = await factory.wait_streams(1)
        await stream.wait_commands(1)

        assert bytes(stream.written) == encode_command(("HELLO", 3, "SETNAME", "core"))
        assert connection.statistics().commands_queued == 1
        stream.feed(b"%1\r\n+proto\r\n:3\r\n")

        commands = await stream.wait_commands(2)
        assert commands[1] == [b"ECHO", b"user"]
        assert connection.protocol == 3
        stream.feed(bulk("user"))
        assert await connection.wait(request) == b"user"
        assert connection.statistics().connects == 1


async def test_handshake_answered_twice_fails_the_connect_and_writes_no_user_command() -> None:
    """A reply the handshake did not ask for fails the connect; queued commands were never sent."""
    factory = StreamFactory()
    async with scripted_connection(factory, protocol=3) as connection:
        request = connection.submit(echo_payload("user"), 1)
        stream = await factory.wait_streams(1)
        await stream.wait_commands(1)
        stream.feed(b"%1\r\n+proto\r\n:3\r\n+surprise\r\n")

        with pytest.raises(ProtocolError):
            await connection.connect()
        with pytest.raises(ConnectionLostError) as caught:
            await connection.wait(request)
        assert caught.value.sent is False
        assert isinstance(caught.value.__cause__, ProtocolError)
        assert stream.commands == [[b"HELLO", b"3"]]
        assert connection.statistics().connects == 0


async def test_refused_credentials_fail_the_connect_and_the_queued_command() -> None:
    """RESP2 AUTH refused: connect raises AuthenticationError, so does the queued command."""
    factory = StreamFactory()
    async with scripted_connection(factory, password="hunter2") as connection:
        request = connection.submit(echo_payload("user"), 1)
        stream = await factory.wait_streams(1)
        assert await stream.wait_commands(1) == [[b"AUTH", b"hunter2"]]
        stream.feed(b"-WRONGPASS invalid username-password pair\r\n")

        with pytest.raises(AuthenticationError):
            await connection.connect()
        with pytest.raises(AuthenticationError):
            await connection.wait(request)
        assert len(stream.commands) == 1


async def test_push_frames_never_reach_a_caller() -> None:
    """Push frames before, between and after replies go to ``on_push``; callers get replies."""
    factory = StreamFactory()
    pushes = Recorder()
    async with scripted_connection(factory, on_push=pushes) as connection:
        first = connection.submit(echo_payload("a"), 1)
        second = connection.submit(echo_payload("b"), 1, many=True)
        stream = await factory.wait_streams(1)
        await stream.wait_commands(2)

        stream.feed(
            push_frame("message", "news", "1")
            + bulk("a")
            + push_frame("message", "news", "2")
            + bulk("b")
            + push_frame("message", "news", "3")
        )

        assert await connection.wait(first) == b"a"
        assert await connection.wait(second) == [b"b"]
        assert pushes.items == [
            Push([b"message", b"news", b"1"]),
            Push([b"message", b"news", b"2"]),
            Push([b"message", b"news", b"3"]),
        ]
        # A push with nothing awaited is no stray reply: the link stays up.
        stream.feed(push_frame("message", "news", "4"))
        await wait_until(lambda: len(pushes.items) == 4)
        third = connection.submit(echo_payload("c"), 1)
        await stream.wait_commands(3)
        stream.feed(bulk("c"))
        assert await connection.wait(third) == b"c"
        assert connection.statistics().connects == 1
        assert all(type(item) is Push for item in pushes.items)


async def test_subscriber_connection_delivers_unowned_replies_as_pushes() -> None:
    """In pub/sub mode a RESP2 message nobody waits for is a push, and the link stays up."""
    factory = StreamFactory()
    pushes = Recorder()
    async with scripted_connection(factory, on_push=pushes, subscriber=True) as connection:
        connection.send_only(encode_command(("SUBSCRIBE", "news")))
        stream = await factory.wait_streams(1)
        assert await stream.wait_commands(1) == [[b"SUBSCRIBE", b"news"]]

        stream.feed(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n+PONG\r\n")

        await wait_until(lambda: len(pushes.items) == 2)
        assert pushes.items == [Push([b"subscribe", b"news", 1]), Push([b"PONG"])]
        assert connection.statistics().connected
        assert connection.statistics().commands_in_flight == 0
