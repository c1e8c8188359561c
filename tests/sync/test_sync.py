"""The blocking facade against real servers, with its loop on asyncio and on trio.

These are plain (sync) tests: the conftest marks only ``async def`` tests for
the two backends, so the facade's own ``backend`` is a parametrised fixture
(``conftest.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import anyio
import pytest
from helpers import Control

import triopipe
import triopipe.testing
from triopipe import sync
from triopipe.testing import redis_server_process

pytestmark = pytest.mark.usefixtures("no_thread_left")


def test_commands_helpers_and_statistics(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        assert redis.ping() is True
        assert redis.set("k", "v") is True
        assert redis.get("k") == b"v"
        assert redis.execute("GET", "k") == b"v"
        assert redis.incr("n") == 1
        assert redis.hset("h", {"f": 1}) == 1
        assert redis.hgetall("h") == {b"f": b"1"}
        assert redis.sadd("s", "a", "b") == 2
        assert redis.smembers("s") == {b"a", b"b"}
        assert redis.execute_many([("SET", "a", 1), ("GET", "a"), ("INCR", "a")]) == [
            b"OK",
            b"1",
            2,
        ]
        assert redis.submit_many([("GET", "a")]).result() == [b"2"]
        assert redis.submit("ECHO", "x").result() == b"x"
        statistics = redis.statistics()
        assert isinstance(statistics, triopipe.ClientStatistics)
        assert statistics.commands_written >= 10
        assert "SyncClient" in repr(redis)


def test_futures_from_many_threads_get_their_own_replies(redis_url: str, backend: str) -> None:
    threads = 12
    rounds = 200
    with sync.open_client(redis_url, backend=backend, connections=2) as redis:
        start = threading.Barrier(threads)
        results: dict[int, list[Any]] = {}

        def work(number: int) -> None:
            start.wait()
            futures: list[Future[Any]] = []
            for i in range(rounds):
                futures.append(redis.submit("INCR", f"counter:{number}"))
                futures.append(redis.submit("ECHO", f"{number}:{i}"))
            # Blocking calls interleave with the Futures still in flight. Over
            # two connections nothing orders them: any count may show.
            count = redis.get(f"counter:{number}")
            assert count is None or 0 < int(count) <= rounds
            results[number] = [future.result() for future in futures]

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    for number in range(threads):
        # Futures are not ordered among themselves (two connections, and
        # tasks the loop may run in any order), but each gets its own reply.
        assert results[number][1::2] == [f"{number}:{i}".encode() for i in range(rounds)]
        assert sorted(results[number][0::2]) == list(range(1, rounds + 1))


def _async_errors(url: str, backend: str) -> list[type[BaseException] | None]:
    """The error types the async client raises for ERROR_CASES."""

    async def error_type(awaitable: Awaitable[object]) -> type[BaseException] | None:
        try:
            await awaitable
        except Exception as exc:
            return type(exc)
        return None

    async def main() -> list[type[BaseException] | None]:
        async with triopipe.open_client(url) as redis:
            return [await error_type(redis.execute(*args)) for args in ERROR_CASES]

    return anyio.run(main, backend=backend)


def _error_type(call: Callable[[], object]) -> type[BaseException] | None:
    try:
        call()
    except Exception as exc:
        return type(exc)
    return None


ERROR_CASES: list[tuple[Any, ...]] = [
    ("LPUSH", "string", "x"),  # WRONGTYPE
    ("NO-SUCH-COMMAND",),
    ("EVALSHA", "0" * 40, 0),  # NOSCRIPT
    ("SUBSCRIBE", "channel"),  # refused by the client: ValueError
]


def test_errors_are_the_async_clients_own(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        redis.set("string", "v")
        sync_types = []
        for args in ERROR_CASES:
            blocking = _error_type(lambda args=args: redis.execute(*args))
            submitted = _error_type(lambda args=args: redis.submit(*args).result())
            assert blocking is submitted
            sync_types.append(blocking)
        with pytest.raises(triopipe.WrongTypeError) as helper:
            redis.sadd("string", "x")
        assert helper.value.code == "WRONGTYPE"
        replies = redis.execute_many(
            [("LPUSH", "string", "x"), ("GET", "string")], raise_on_error=False
        )
        assert type(replies[0]) is triopipe.WrongTypeError
        assert replies[1] == b"v"
        with pytest.raises(triopipe.WrongTypeError):
            redis.execute_many([("LPUSH", "string", "x")])
    assert sync_types == [
        triopipe.WrongTypeError,
        triopipe.ResponseError,
        triopipe.NoScriptError,
        triopipe.CommandNotAllowedError,
    ]
    assert sync_types == _async_errors(redis_url, backend)


def test_batch_returns_pendings_resolved_at_exit(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        with redis.batch() as batch:
            first = batch.incr("n")
            second = batch.execute("INCR", "n")
            error = batch.execute("LPUSH", "n", "x")
            members = batch.smembers("nothing")
            with pytest.raises(RuntimeError):
                first.result()
            assert len(batch) == 4
        assert (first.result(), second.result(), members.result()) == (1, 2, set())
        with pytest.raises(triopipe.WrongTypeError):
            error.result()
        with pytest.raises(RuntimeError):
            batch.incr("n")

        # A block that raises sends nothing.
        with pytest.raises(KeyError), redis.batch() as batch:
            batch.incr("n")
            raise KeyError
        assert redis.get("n") == b"2"

        # A command refused by the batch fails the whole batch, as on the
        # async client, before anything is sent.
        with pytest.raises(ValueError, match="BLPOP"), redis.batch() as batch:
            batch.incr("n")
            batch.execute("BLPOP", "list", 0)
        assert redis.get("n") == b"2"


def test_future_cancelled_before_pickup_is_never_sent(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        # Hold the loop thread, so that nothing submitted now is picked up.
        entered = threading.Event()
        release = threading.Event()

        async def hold_loop() -> None:
            entered.set()
            release.wait(10)

        held = redis._submit(hold_loop, ())
        assert entered.wait(10)
        cancelled = [redis.submit("INCR", "n") for _ in range(3)]
        kept = redis.submit("INCR", "kept")
        assert all(future.cancel() for future in cancelled)
        release.set()
        held.result()
        assert kept.result() == 1
        assert all(future.cancelled() for future in cancelled)
        assert redis.get("n") is None


def test_a_running_future_cannot_be_cancelled_and_gets_its_reply(
    redis_url: str, backend: str
) -> None:
    control = Control(redis_url)
    with sync.open_client(redis_url, backend=backend) as redis:
        try:
            # The server holds writes for a while: the INCR is written
            # (or queued to be), and its Future is running.
            control.execute_command("CLIENT", "PAUSE", "300", "WRITE")
            future = redis.submit("INCR", "n")
            deadline = time.monotonic() + 5
            while not future.running() and time.monotonic() < deadline:
                time.sleep(0.001)
            assert future.cancel() is False
            assert future.result() == 1
        finally:
            control.execute_command("CLIENT", "UNPAUSE")
            control.close()


def test_exit_fails_commands_in_flight_without_hanging(redis_url: str, backend: str) -> None:
    control = Control(redis_url)
    try:
        with sync.open_client(redis_url, backend=backend) as redis:
            control.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
            futures = [redis.submit("INCR", "n") for _ in range(100)]
            while not all(future.running() or future.done() for future in futures):
                time.sleep(0.001)
            started = time.monotonic()
        assert time.monotonic() - started < 2
        for future in futures:
            with pytest.raises(triopipe.ConnectionLostError) as caught:
                future.result(timeout=0)
            assert caught.value.sent is True
    finally:
        control.execute_command("CLIENT", "UNPAUSE")
        control.close()


def test_exit_fails_futures_not_yet_picked_up(redis_url: str, backend: str) -> None:
    release = threading.Event()

    async def hold_loop() -> None:
        release.wait(10)

    with sync.open_client(redis_url, backend=backend) as redis:
        redis._submit(hold_loop, ())
        queued = [redis.submit("INCR", "n") for _ in range(5)]
        # The exit closes the submitter first: these are never sent.
        release.set()
    for future in queued:
        with pytest.raises(anyio.ClosedResourceError):
            future.result(timeout=0)
    assert Control(redis_url).get("n") is None


@pytest.mark.parametrize("error", [KeyboardInterrupt, ZeroDivisionError])
def test_body_raising_closes_everything(
    redis_url: str, backend: str, error: type[BaseException]
) -> None:
    with pytest.raises(error), sync.open_client(redis_url, backend=backend) as redis:
        future = redis.submit("BLPOP", "nothing", 0)  # would block forever
        redis.ping()
        raise error
    # Failed, not hung: lost if the dedicated connection had been lent,
    # refused if the client closed first.
    with pytest.raises((triopipe.ConnectionLostError, anyio.ClosedResourceError)):
        future.result(timeout=5)
    with pytest.raises(anyio.ClosedResourceError):
        redis.ping()


def test_use_after_exit_raises_closed_resource_error(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        pass
    with pytest.raises(anyio.ClosedResourceError):
        redis.execute("PING")
    with pytest.raises(anyio.ClosedResourceError):
        redis.submit("PING")
    with pytest.raises(anyio.ClosedResourceError):
        redis.get("k")
    with pytest.raises(anyio.ClosedResourceError):
        redis.execute_many([("PING",)])
    with pytest.raises(anyio.ClosedResourceError):
        redis.statistics()
    with pytest.raises(anyio.ClosedResourceError), redis.batch() as batch:
        batch.ping()


def test_connect_error_raises_at_entry(backend: str) -> None:
    with redis_server_process() as server:
        url = server.url
    with (
        pytest.raises(triopipe.ConnectError),
        sync.open_client(url, backend=backend, connect_timeout=2),
    ):
        pytest.fail("the block must not run")


def test_scan_iter_in_chunks(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        redis.execute_many(("SET", f"key:{i}", i) for i in range(3000))
        redis.set("other", 1)
        keys = set(redis.scan_iter(match="key:*", count=500))
        assert keys == {f"key:{i}".encode() for i in range(3000)}
        for key in redis.scan_iter():
            assert key
            break
        assert redis.ping() is True


def test_sharded_fan_out(shard_urls: list[str], backend: str) -> None:
    servers = [Control(url) for url in shard_urls]
    for server in servers:
        server.flushall()
    keys = [f"key:{i}" for i in range(400)]
    with sync.open_sharded_client(shard_urls, backend=backend) as redis:
        futures = [redis.submit("SET", key, key) for key in keys]
        assert all(future.result() == b"OK" for future in futures)
        assert redis.mget(*keys) == [key.encode() for key in keys]
        assert redis.dbsize() == len(keys)
        assert redis.execute_many([("GET", key) for key in keys]) == [k.encode() for k in keys]
        with redis.batch() as batch:
            pendings = [batch.incr(f"n:{key}") for key in keys[:50]]
        assert [pending.result() for pending in pendings] == [1] * 50
        owner = redis.shard_for("key:1")
        assert owner in shard_urls
    counts = [server.dbsize() for server in servers]
    assert all(count > 0 for count in counts)
    assert sum(counts) == len(keys) + 50
    assert servers[shard_urls.index(owner)].get("key:1") == b"key:1"
    for server in servers:
        server.close()


def test_cluster_client_runs_through_the_same_path(backend: str) -> None:
    if not hasattr(triopipe, "open_cluster_client"):
        pytest.skip("triopipe.open_cluster_client does not exist yet")
    with (
        triopipe.testing.redis_cluster_processes(masters=3) as cluster,
        sync.open_cluster_client(cluster.urls, backend=backend) as redis,
    ):
        keys = [f"key:{i}" for i in range(100)]
        futures = [redis.submit("SET", key, key) for key in keys]
        assert all(future.result() == b"OK" for future in futures)
        assert redis.execute_many([("GET", key) for key in keys]) == [k.encode() for k in keys]
