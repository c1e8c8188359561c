"""The blocking facade's blocks: subscriptions, transactions, scripts, stream consumers.

Each test drives them from several threads at once, with the facade's loop
on asyncio and on trio (the ``backend`` fixture).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest

import triopipe
from triopipe import sync

pytestmark = pytest.mark.usefixtures("no_thread_left")

THREADS = 6


def _in_threads(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """``work(i)`` in ``count`` threads started together; their results in order."""
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait(timeout=10)
        return work(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count), timeout=60))


def test_subscriptions_in_several_threads(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend, timeout=20) as redis:
        ready = threading.Barrier(THREADS + 1)

        def listen(index: int) -> list[Any]:
            with redis.subscribe(f"ch{index}", patterns=["all.*"]) as sub:
                assert sub.channels == {f"ch{index}".encode()}
                assert sub.patterns == {b"all.*"}
                ready.wait(timeout=10)
                messages = [sub.get(timeout=10) for _ in range(21)]
                with pytest.raises(TimeoutError):
                    sub.get(timeout=0.05)
                sub.subscribe("late")
                ready.wait(timeout=10)
                messages.append(next(iter(sub)))
                return messages

        def publish() -> None:
            ready.wait(timeout=10)
            for n in range(20):
                for index in range(THREADS):
                    redis.publish(f"ch{index}", n)
            redis.publish("all.done", "end")
            # Every listener subscribed to "late" by the second rendezvous.
            ready.wait(timeout=10)
            assert redis.publish("late", "news") == THREADS

        publisher = threading.Thread(target=publish)
        publisher.start()
        try:
            results = _in_threads(listen)
        finally:
            publisher.join()
        for index, messages in enumerate(results):
            channel = f"ch{index}".encode()
            assert messages[:20] == [triopipe.Message(channel, str(n).encode()) for n in range(20)]
            assert messages[20] == triopipe.Message(b"all.done", b"end", b"all.*")
            assert messages[21] == triopipe.Message(b"late", b"news")


def test_a_message_that_comes_after_a_timeout_is_kept(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis, redis.subscribe("c") as sub:
        with pytest.raises(TimeoutError):
            sub.get(timeout=0.05)  # the fetch goes on in the loop
        redis.publish("c", "one")
        redis.publish("c", "two")
        assert [sub.get(timeout=5), sub.get(timeout=5)] == [
            triopipe.Message(b"c", b"one"),
            triopipe.Message(b"c", b"two"),
        ]
        sub.unsubscribe("c")
        assert sub.channels == set()


def test_one_subscription_shared_by_several_threads(redis_url: str, backend: str) -> None:
    """Threads take turns waiting; each message goes to exactly one of them."""
    total = 60
    with sync.open_client(redis_url, backend=backend) as redis, redis.subscribe("c") as sub:
        received: list[list[bytes]] = [[] for _ in range(3)]
        stop = threading.Event()

        def take(index: int) -> None:
            while not stop.is_set():
                try:
                    message = sub.get(timeout=0.02)  # short: timeouts interleave the turns
                except TimeoutError:
                    continue
                received[index].append(message.data)
                if sum(map(len, received)) == total:
                    stop.set()

        def publish(_: int) -> None:
            for n in range(total):
                redis.publish("c", n)

        with ThreadPoolExecutor(4) as pool:
            takers = [pool.submit(take, index) for index in range(3)]
            pool.submit(publish, 0).result(timeout=30)
            for taker in takers:
                taker.result(timeout=30)
        everything = sorted(int(data) for part in received for data in part)
        assert everything == list(range(total))


def test_transactions_in_several_threads_never_lose_an_increment(
    redis_url: str, backend: str
) -> None:
    rounds = 15
    with sync.open_client(redis_url, backend=backend, timeout=20) as redis:
        redis.set("counter", 0)

        def increment(_: int) -> int:
            conflicts = 0
            done = 0
            while done < rounds:
                try:
                    with redis.transaction("counter") as tx:
                        value = int(tx.now.get("counter"))
                        written = tx.set("counter", value + 1)
                        tx.rpush("log", value + 1)
                except triopipe.WatchError:
                    conflicts += 1
                    continue
                assert written.result() is True
                done += 1
            return conflicts

        _in_threads(increment)
        assert redis.get("counter") == str(THREADS * rounds).encode()
        # Each value was written once: no two transactions read the same one.
        assert sorted(int(v) for v in redis.lrange("log", 0, -1)) == list(
            range(1, THREADS * rounds + 1)
        )


def test_a_transaction_block_that_raises_commits_nothing(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        with pytest.raises(RuntimeError, match="changed my mind"), redis.transaction() as tx:
            tx.set("k", "v")
            raise RuntimeError("changed my mind")
        assert redis.exists("k") == 0
        with redis.transaction() as tx:
            first = tx.set("k", "v")
            second = tx.execute("GET", "k")
            assert len(tx) == 2
        assert (first.result(), second.result()) == (True, b"v")
        # The connection of the failed block was not reused in a bad state.
        assert redis.get("k") == b"v"


def test_scripts_in_several_threads(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend, timeout=20) as redis:
        script = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        redis.execute("SCRIPT", "FLUSH")  # the first calls fall back to EVAL

        def run(index: int) -> int:
            last = 0
            for _ in range(30):
                last = script(keys=["total"], args=[index + 1])
            return last

        _in_threads(run)
        assert redis.get("total") == str(30 * sum(range(1, THREADS + 1))).encode()
        script.load()
        with redis.batch() as batch:
            queued = script.queue(batch, keys=["total"], args=[0])
        assert queued.result() == 30 * sum(range(1, THREADS + 1))


def test_stream_consumers_in_several_threads(redis_url: str, backend: str) -> None:
    total = 1200
    with sync.open_client(redis_url, backend=backend, timeout=20) as redis:
        ids = redis.execute_many([("XADD", "jobs", "*", "n", i) for i in range(total)])
        seen: list[Any] = []
        lock = threading.Lock()
        finished = threading.Event()

        def consume(index: int) -> int:
            mine = 0
            with redis.stream_consumer("jobs", "workers", f"c{index}", create=True) as consumer:
                while not finished.is_set():
                    try:
                        entry = consumer.get(timeout=0.1)
                    except TimeoutError:
                        continue
                    assert isinstance(entry, sync.SyncStreamEntry)
                    assert entry.stream == "jobs"
                    entry.ack()
                    mine += 1
                    with lock:
                        seen.append(entry.id)
                        if len(set(seen)) == total:
                            finished.set()
            return mine

        counts = _in_threads(consume, 3)
        assert set(seen) == set(ids)
        assert sum(counts) == len(seen)
        assert redis.xpending("jobs", "workers")[0] == 0


def test_stream_consumer_iterates_and_acknowledges_automatically(
    redis_url: str, backend: str
) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        ids = redis.execute_many([("XADD", "jobs", "*", "n", i) for i in range(5)])
        with redis.stream_consumer("jobs", "workers", "one", create=True, ack="auto") as c:
            got = [entry.id for _, entry in zip(range(5), c, strict=False)]
        assert got == ids
        assert redis.xpending("jobs", "workers")[0] == 0
        with pytest.raises(ValueError, match="claim_after"):
            redis.stream_consumer("jobs", "workers", "one", claim_after=-1)
        with pytest.raises(TypeError):
            redis.stream_consumer("jobs", "workers", "one", claim_afer=1)


def test_closing_the_client_ends_blocks_other_threads_hold(redis_url: str, backend: str) -> None:
    """Leaving the client's block while a thread waits on a subscription does not hang."""
    errors: list[BaseException] = []
    entered = threading.Event()

    with sync.open_client(redis_url, backend=backend) as redis:

        def listen() -> None:
            try:
                with redis.subscribe("nothing") as sub:
                    with pytest.raises(TimeoutError):
                        sub.get(timeout=0.2)  # the fetch now waits in the loop
                    entered.set()
                    sub.get()
            except BaseException as exc:
                errors.append(exc)

        listener = threading.Thread(target=listen)
        listener.start()
        assert entered.wait(10)
    listener.join(10)
    assert not listener.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], anyio.ClosedResourceError)


def test_transactions_and_consumers_on_a_sharded_client(
    shard_urls: list[str], backend: str
) -> None:
    with sync.open_sharded_client(shard_urls, backend=backend) as redis:
        redis.execute_many([("DEL", "{u}:n", "{u}:log", "{q}jobs")])
        with redis.transaction("{u}:n") as tx:
            before = tx.now.get("{u}:n")
            tx.incr("{u}:n")
            tx.rpush("{u}:log", "one")
        assert before is None
        assert redis.get("{u}:n") == b"1"
        # Server names carry random ports: find a key the other shard owns.
        elsewhere = next(
            key
            for key in (f"{{k{n}}}:n" for n in range(1000))
            if redis.shard_for(key) != redis.shard_for("{u}:n")
        )
        with pytest.raises(triopipe.CrossSlotError), redis.transaction("{u}:n") as tx:
            tx.incr(elsewhere)
        ids = [redis.xadd("{q}jobs", {"n": n}) for n in range(3)]
        with redis.stream_consumer("{q}jobs", "workers", "one", create=True) as consumer:
            entries = [consumer.get(timeout=5) for _ in ids]
            for entry in entries:
                entry.ack()
        assert [entry.id for entry in entries] == ids
        assert redis.xpending("{q}jobs", "workers")[0] == 0


def test_a_block_that_fails_to_start_raises_in_the_calling_thread(
    redis_url: str, backend: str
) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        # Options go to the async subscribe as they are: an unknown one fails there.
        with pytest.raises(TypeError, match="bogus"), redis.subscribe("c", bogus=1):
            pass
        with (
            pytest.raises(triopipe.ResponseError, match="NOGROUP"),
            redis.stream_consumer("missing", "nobody", "one") as consumer,
        ):
            consumer.get(timeout=5)
        assert redis.ping() is True


def test_a_block_that_cannot_start_in_time_raises_and_is_let_go(
    redis_url: str, backend: str
) -> None:
    """One dedicated connection, taken: the next transaction times out, and leaks nothing."""
    with sync.open_client(redis_url, backend=backend, timeout=0.3, max_dedicated=1) as redis:
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with redis.transaction() as tx:
                tx.set("first", 1)
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert holding.wait(10)
            with pytest.raises(TimeoutError), redis.transaction() as tx:
                tx.set("second", 2)
        finally:
            release.set()
            holder.join(10)
        # The abandoned transaction took its turn, left at once, applied nothing.
        with redis.transaction() as tx:
            tx.set("third", 3)
        assert redis.mget("first", "second", "third") == [b"1", None, b"3"]
