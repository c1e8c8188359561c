"""Regression tests for the defects the core redesign removed, against real servers.

Each test is one defect found by using the client as a user would:

- commands never written were reported ``sent=True`` when the link broke, so
  none was resent;
- the bystanders of a protocol error got ``ProtocolError`` without ``.sent``,
  though their commands had been applied;
- a bad argument in a sharded or cluster ``execute_many`` was found only
  after other servers had applied their share;
- a strided memoryview was sent as the bytes of its underlying buffer.
"""

from __future__ import annotations

import anyio
import pytest
from helpers import Control

import triopipe
from triopipe.testing import redis_server, tcp_proxy

MIB = 1024 * 1024


async def _wait_until_writes_stall(redis: triopipe.Client) -> int:
    """Commands taken for writing, once that number has stopped moving for a while."""
    last = -1
    steady = 0
    with anyio.fail_after(10):
        while steady < 5:
            await anyio.sleep(0.05)
            written = redis.statistics().commands_written
            steady = steady + 1 if written == last else 0
            last = written
    return last


async def test_commands_never_written_are_not_reported_sent_and_are_resent() -> None:
    """A stalled link breaks: only what the kernel took is of unknown outcome."""
    value = b"v" * MIB
    count = 48
    async with (
        redis_server() as server,
        tcp_proxy(server.host, server.port) as proxy,
        triopipe.open_client(proxy.url) as redis,
    ):
        await redis.ping()
        before = redis.statistics().commands_written
        proxy.stall()  # reads nothing more: writes back up, then stall
        results: list[object] = []

        async def pump() -> None:
            commands = [("SET", f"big:{i}", value) for i in range(count)]
            results.extend(await redis.execute_many(commands, raise_on_error=False))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pump)
            taken = await _wait_until_writes_stall(redis) - before
            # The kernel's buffers hold a few MiB: far fewer than 48 commands.
            assert 0 < taken < count
            proxy.reset()  # the link breaks; new links go through again
        unknown = [
            i
            for i, result in enumerate(results)
            if isinstance(result, triopipe.ConnectionLostError) and result.sent
        ]
        applied = [i for i, result in enumerate(results) if result == b"OK"]
        # At most the commands taken for writing were sent; the rest went
        # again, on a new link, and were applied.
        assert unknown == list(range(len(unknown)))
        assert 0 < len(unknown) <= taken
        assert applied == list(range(len(unknown), count))
        control = Control(server.url)
        for i in applied:
            assert control.execute_command("STRLEN", f"big:{i}") == MIB
        # Those of unknown outcome never reached the server (the proxy kept them).
        for i in unknown:
            assert control.execute_command("EXISTS", f"big:{i}") == 0


async def test_bystanders_of_a_protocol_error_learn_their_commands_were_sent(
    redis_url: str,
) -> None:
    """A reply too long to accept breaks the link; 50 applied INCRs say ``sent=True``."""
    Control(redis_url).execute_command("SET", "big", "x" * (4 * MIB))
    async with triopipe.open_client(redis_url, max_bulk_length=4096) as redis:
        outcomes: list[object] = []

        async def run(*args: str) -> None:
            try:
                outcomes.append(await redis.execute(*args))
            except triopipe.TriopipeError as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as task_group:
            # The server sleeps, so everything below is written before any
            # reply comes: the GET's reply is read before the INCRs'.
            task_group.start_soon(run, "DEBUG", "SLEEP", "0.3")
            await anyio.sleep(0.05)
            task_group.start_soon(run, "GET", "big")
            await anyio.sleep(0.05)
            for _ in range(50):
                task_group.start_soon(run, "INCR", "counter")
        failed = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        assert len(outcomes) == 52
        assert len(failed) >= 51  # the GET and every INCR behind it
        for error in failed:
            assert type(error) is triopipe.ConnectionLostError, error
            assert error.sent is True
            assert isinstance(error.__cause__, triopipe.ProtocolError)
        # They were sent indeed: the server applied every one.
        assert Control(redis_url).execute_command("GET", "counter") == b"50"
        # And the client reconnects for the next caller.
        assert await redis.execute("PING") == b"PONG"


def _commands_with_one_bad_argument() -> list[tuple[object, ...]]:
    commands: list[tuple[object, ...]] = [("SET", f"key:{i}", i) for i in range(29)]
    commands[17] = ("SET", "key:17", None)
    return commands


async def test_a_bad_argument_in_a_sharded_execute_many_sends_nothing(
    redis_shard_urls: list[str],
) -> None:
    urls = redis_shard_urls
    async with triopipe.open_sharded_client(urls) as redis:
        with pytest.raises(TypeError, match="command #17"):
            await redis.execute_many(_commands_with_one_bad_argument())  # type: ignore[arg-type]
        assert await redis.dbsize() == 0
    # Nothing anywhere, seen from outside.
    assert [Control(url).dbsize() for url in urls] == [0] * len(urls)


async def test_a_bad_argument_in_a_cluster_execute_many_sends_nothing(
    redis_cluster_urls: list[str],
) -> None:
    async with triopipe.open_cluster_client(redis_cluster_urls) as redis:
        with pytest.raises(TypeError, match="command #17"):
            await redis.execute_many(_commands_with_one_bad_argument())  # type: ignore[arg-type]
        assert await redis.dbsize() == 0


async def test_a_bad_argument_in_a_list_sends_nothing_on_one_server(redis_url: str) -> None:
    commands = [("SET", f"key:{i}", i) for i in range(5000)] + [("SET", "last", None)]
    async with triopipe.open_client(redis_url) as redis:
        # Longer than a window: still checked whole before anything is sent.
        with pytest.raises(TypeError, match="command #5000"):
            await redis.execute_many(commands)  # type: ignore[arg-type]
        assert await redis.dbsize() == 0


@pytest.mark.parametrize("how", ["execute", "helper", "execute_many", "batch"])
async def test_a_strided_memoryview_is_sent_as_the_bytes_it_shows(
    redis_url: str, how: str
) -> None:
    view = memoryview(b"abcdefgh")[::2]
    key = memoryview(b"kkey")[1:]  # contiguous, but a view: sent as is
    async with triopipe.open_client(redis_url) as redis:
        if how == "execute":
            await redis.execute("SET", key, view)
        elif how == "helper":
            await redis.set(key, view)  # type: ignore[arg-type]
        elif how == "execute_many":
            await redis.execute_many([("SET", "other", "x"), ("SET", key, view)])
        else:
            async with redis.batch() as batch:
                batch.execute("SET", key, view)
        assert await redis.get("key") == b"aceg"


async def test_a_strided_memoryview_goes_whole_through_the_sharded_client(
    redis_shard_urls: list[str],
) -> None:
    view = memoryview(b"0123456789")[1::3]
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        await redis.execute_many([("SET", f"k{i}", view) for i in range(20)])
        assert await redis.mget(*[f"k{i}" for i in range(20)]) == [b"147"] * 20
