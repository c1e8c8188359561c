"""Batches, windows, transactions and dedicated connections, against real servers."""

from __future__ import annotations

import anyio
import pytest

import triopipe
import triopipe.testing

pytestmark = pytest.mark.usefixtures("anyio_backend")


async def test_batch_returns_pendings_resolved_at_exit(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        async with redis.batch() as b:
            set_reply = b.set("name", "triopipe")
            hits = b.incr("hits")
            name = b.execute("GET", "name")
            members = b.smembers("nope")
            with pytest.raises(RuntimeError):
                hits.result()
            assert not hits.done()
        assert set_reply.result() is True
        assert hits.result() == 1
        assert name.result() == b"triopipe"
        assert members.result() == set()
        assert len(b) == 4


async def test_batch_error_reply_stays_in_its_own_slot(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        async with redis.batch() as b:
            first = b.set("k", "v")
            wrong = b.lpush("k", 1)
            after = b.get("k")
        assert first.result() is True
        with pytest.raises(triopipe.WrongTypeError):
            wrong.result()
        assert after.result() == b"v"


async def test_batch_streams_while_the_block_runs(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as observer,
    ):
        async with redis.batch() as b:
            b.set("streamed", "yes")
            # Not waiting for exit: the command reaches the server as soon as
            # the block yields.
            with anyio.fail_after(5):
                while await observer.get("streamed") is None:
                    await anyio.sleep(0.01)
            b.set("second", 2)
        assert await observer.get("second") == b"2"


async def test_batch_coalesces_into_few_requests(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        before = redis.statistics()
        async with redis.batch() as b:
            pendings = [b.incr("n") for _ in range(5000)]
        after = redis.statistics()
        assert [p.result() for p in pendings] == list(range(1, 5001))
        assert after.commands_written - before.commands_written == 5000
        assert after.writes - before.writes <= 2


async def test_cancelled_batch_leaves_the_connection_in_step(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with anyio.CancelScope() as scope:
            async with redis.batch() as b:
                slow = b.execute("DEBUG", "SLEEP", "0.2")
                late = b.incr("late")
                await anyio.sleep(0.01)  # both are written now
                scope.cancel()
                await anyio.sleep(1)
        with pytest.raises(RuntimeError):
            slow.result()
        with pytest.raises(RuntimeError):
            late.result()
        # The dropped replies never reach the next caller.
        assert await redis.execute("ECHO", "mine") == b"mine"
        assert await redis.get("late") == b"1"
        assert redis.statistics().commands_in_flight == 0
        assert redis.statistics().connects == 1


async def test_batch_that_raises_never_sends_what_was_not_written(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with pytest.raises(KeyError):
            async with redis.batch() as b:
                b.set("unsent", 1)
                raise KeyError("before any checkpoint")
        assert await redis.get("unsent") is None
        assert redis.statistics().commands_in_flight == 0


async def test_windows_complete_under_a_tight_output_buffer_limit() -> None:
    async with (
        triopipe.testing.redis_server(client_output_buffer_limit="normal 1mb 0 0") as server,
        triopipe.open_client(server.url) as redis,
    ):
        value = b"x" * 1024
        await redis.execute_many([("SET", f"k{i}", value) for i in range(10)])
        replies = await redis.execute_many(("GET", f"k{i % 10}") for i in range(10_000))
        assert len(replies) == 10_000
        assert all(reply == value for reply in replies)
        assert redis.statistics().connects == 1


async def test_transaction_applies_all_and_resolves_pendings(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        async with redis.transaction() as tx:
            a = tx.incr("a")
            b = tx.incrby("a", 10)
            h = tx.hgetall("nope")
        assert (a.result(), b.result(), h.result()) == (1, 11, {})
        assert await redis.get("a") == b"11"


async def test_transaction_with_watch_and_immediate_reads(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        await redis.set("balance", 100)
        async with redis.transaction("balance") as tx:
            balance = int(await tx.now.get("balance"))
            tx.set("balance", balance - 30)
        assert await redis.get("balance") == b"70"


async def test_watch_conflict_raises_watch_error(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as other,
    ):
        await redis.set("balance", 100)
        with pytest.raises(triopipe.WatchError):
            async with redis.transaction("balance") as tx:
                balance = int(await tx.now.get("balance"))
                await other.set("balance", 0)  # someone else changes it
                update = tx.set("balance", balance - 30)
        assert await redis.get("balance") == b"0"
        with pytest.raises(triopipe.WatchError):
            update.result()


async def test_execabort_is_reported_per_command(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with pytest.raises(triopipe.ExecAbortError):
            async with redis.transaction() as tx:
                good = tx.set("k", "v")
                bad = tx.execute("NOSUCHCOMMAND", "x")
        with pytest.raises(triopipe.ExecAbortError):
            good.result()
        with pytest.raises(triopipe.ResponseError) as info:
            bad.result()
        assert not isinstance(info.value, triopipe.ExecAbortError)
        assert "unknown command" in info.value.message
        assert await redis.get("k") is None  # nothing was applied


async def test_runtime_error_inside_exec_fails_only_that_command(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        async with redis.transaction() as tx:
            tx.set("k", "v")
            wrong = tx.lpush("k", 1)
            after = tx.incr("n")
        with pytest.raises(triopipe.WrongTypeError):
            wrong.result()
        assert after.result() == 1


async def test_blocking_command_never_stalls_the_shared_connection(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        popped: list[object] = []

        async def waiter() -> None:
            popped.append(await redis.execute("BLPOP", "queue", 0))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(waiter)
            with anyio.fail_after(5):
                # The shared connection keeps serving while BLPOP waits.
                for i in range(1000):
                    assert await redis.incr("busy") == i + 1
                replies = await redis.execute_many([("PING",)] * 1000)
                assert replies == [b"PONG"] * 1000
            assert popped == []
            await redis.rpush("queue", "job")
        assert popped == [[b"queue", b"job"]]


async def _blocked_clients(redis: triopipe.Client) -> int:
    info = await redis.execute("INFO", "clients")
    for line in info.splitlines():
        if line.startswith(b"blocked_clients:"):
            return int(line.split(b":")[1])
    raise AssertionError("no blocked_clients in INFO")  # pragma: no cover


async def test_cancelled_blocking_command_stops_blocking_on_the_server(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with anyio.move_on_after(0.1):
            await redis.execute("BLPOP", "queue", 0)
        # The dedicated connection was shut down at the cancellation, so the
        # server stops blocking for a caller that is gone: nothing pushed
        # afterwards is popped into a reply nobody reads.
        with anyio.fail_after(5):
            while await _blocked_clients(redis):
                await anyio.sleep(0.01)
        await redis.rpush("queue", "job")
        assert await redis.lrange("queue", 0, -1) == [b"job"]


async def test_xread_block_runs_on_a_dedicated_connection(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        result: list[object] = []

        async def reader() -> None:
            result.append(await redis.execute("XREAD", "block", 0, "STREAMS", "stream", "$"))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(reader)
            await anyio.sleep(0.05)
            assert await redis.ping() is True
            await redis.execute("XADD", "stream", "*", "field", "value")
        assert result
        assert result[0]


async def test_commands_that_cannot_share_a_pipeline_are_refused(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with pytest.raises(ValueError, match="BLPOP"):
            await redis.execute_many([("SET", "a", 1), ("blpop", "q", 0)])
        with pytest.raises(ValueError, match="SUBSCRIBE"):
            await redis.execute("SUBSCRIBE", "news")
        with pytest.raises(ValueError, match="BRPOP"):
            async with redis.batch() as b:
                b.execute(b"BRPOP", "q", 0)
        assert await redis.ping() is True


async def test_big_values_go_as_many_requests(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        value = b"v" * (1024 * 1024)
        before = redis.statistics()
        replies = await redis.execute_many([("SET", f"big:{i}", value) for i in range(20)])
        assert replies == [b"OK"] * 20
        # Twenty 1 MiB commands: requests of at most 1 MiB each, not one
        # 20 MiB payload.
        assert redis.statistics().writes - before.writes >= 10
        got = await redis.execute_many([("GET", f"big:{i}") for i in range(20)])
        assert got == [value] * 20


async def test_short_replies_of_long_pipelines_share_one_object(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        replies = await redis.execute_many(("SET", "k", i) for i in range(5000))
        assert replies[0] == b"OK"
        assert all(reply is replies[0] for reply in replies)
