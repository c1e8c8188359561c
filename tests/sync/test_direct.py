"""The blocking call's direct path: the calling thread writes its own command.

``Connection.call_from_thread`` lets a blocked caller skip the hand-off to the
loop thread on an idle link; only the reply comes back through the receiver.
These tests check that it is taken when it should be, and that sharing the
socket's writes with the loop thread never mixes up replies, counters or the
order of one thread's commands, including under interrupts, broken links,
partial writes and cluster redirects.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from helpers import Control, trusting

import triopipe
import triopipe.testing
from triopipe import _connection, sync
from triopipe._routing import key_slot
from triopipe.testing import redis_server_process


class _Tally:
    """Counts what ``Connection.call_from_thread`` did: written by the thread, or not.

    It returns None when it wrote nothing; an interrupted wait raises after
    the command was written.
    """

    def __init__(self) -> None:
        self.written = 0
        self.not_written = 0


@pytest.fixture
def tally(monkeypatch: pytest.MonkeyPatch) -> _Tally:
    counts = _Tally()
    original = _connection.Connection.call_from_thread

    def counting(self: _connection.Connection, *args: Any) -> Any:
        try:
            request = original(self, *args)
        except BaseException:
            counts.written += 1
            raise
        if request is None:
            counts.not_written += 1
        else:
            counts.written += 1
        return request

    monkeypatch.setattr(_connection.Connection, "call_from_thread", counting)
    return counts


def test_sequential_blocking_calls_write_from_the_calling_thread(
    redis_url: str, backend: str, tally: _Tally
) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        redis.ping()  # connected
        tally.written = tally.not_written = 0
        for _ in range(200):
            redis.incr("n")
        assert redis.execute("GET", "n") == b"200"
        redis.sadd("s", "a", "b")
        # The reply is shaped as on the loop's path: a RESP3 set is a set.
        assert redis.execute("SMEMBERS", "s") == {b"a", b"b"}
        assert redis.smembers("s") == {b"a", b"b"}
        assert tally.written == 204
        assert tally.not_written == 0
        statistics = redis.statistics()
        assert statistics.commands_in_flight == 0
        assert statistics.writes >= 204


def test_threads_futures_and_pipelines_share_one_connection(
    redis_url: str, backend: str, tally: _Tally
) -> None:
    """Direct writes from 16 threads mix with the loop's writes; each reply is the caller's."""
    threads = 16
    rounds = 300
    errors: list[BaseException] = []
    with sync.open_client(redis_url, backend=backend, connections=1) as redis:
        start = threading.Barrier(threads + 2)

        def blocking_caller(number: int) -> None:
            start.wait()
            for i in range(rounds):
                token = f"{number}:{i}"
                reply = redis.execute("ECHO", token)
                if reply != token.encode():
                    errors.append(AssertionError(f"{token!r} got {reply!r}"))

        def future_submitter() -> None:
            start.wait()
            for i in range(rounds // 10):
                futures = [redis.submit("ECHO", f"f:{i}:{j}") for j in range(20)]
                for j, future in enumerate(futures):
                    if future.result() != f"f:{i}:{j}".encode():
                        errors.append(AssertionError(f"future {i}:{j}"))

        def pipeliner() -> None:
            start.wait()
            for i in range(rounds // 10):
                commands = [("ECHO", f"p:{i}:{j}") for j in range(50)]
                if redis.execute_many(commands) != [f"p:{i}:{j}".encode() for j in range(50)]:
                    errors.append(AssertionError(f"pipeline {i}"))

        workers = [threading.Thread(target=blocking_caller, args=(n,)) for n in range(threads)]
        workers += [threading.Thread(target=future_submitter), threading.Thread(target=pipeliner)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        # Both paths were taken, and the two in-flight counters add up to 0.
        assert tally.written > 0
        statistics = redis.statistics()
        assert statistics.commands_in_flight == 0
        assert statistics.connects == 1


def test_a_threads_commands_keep_their_order_after_a_future(redis_url: str, backend: str) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        for i in range(300):
            redis.submit("SET", "k", i)
            # The Future's command may not be written yet: this blocking call
            # must not overtake it.
            assert redis.get("k") == str(i).encode()


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, even where it was ignored on start.

    A shell starts background commands with SIGINT ignored, and Python then
    installs no handler for it.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_main_after(delay: float) -> threading.Thread:
    main = threading.main_thread().ident
    assert main is not None

    def interrupt() -> None:
        time.sleep(delay)
        signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    return thread


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
@pytest.mark.usefixtures("sigint_raises")
def test_interrupted_blocking_call_leaves_the_connection_in_step(
    redis_url: str, backend: str, tally: _Tally
) -> None:
    with sync.open_client(redis_url, backend=backend) as redis:
        redis.ping()
        tally.written = 0
        interrupter = _interrupt_main_after(0.1)
        with pytest.raises(KeyboardInterrupt):
            redis.execute("DEBUG", "SLEEP", "0.5")
        interrupter.join()
        assert tally.written == 1
        # The sleep's "OK" arrives now and is dropped: this gets its own reply.
        assert redis.execute("ECHO", "after") == b"after"
        assert redis.incr("n") == 1
        statistics = redis.statistics()
        assert statistics.connects == 1
        assert statistics.commands_in_flight == 0


def test_link_breaking_under_a_blocking_call_fails_it_as_sent(backend: str, tally: _Tally) -> None:
    with redis_server_process() as server, sync.open_client(server.url, backend=backend) as redis:
        redis.ping()
        tally.written = 0
        killer = threading.Timer(0.1, server.kill)
        killer.start()
        started = time.monotonic()
        with pytest.raises(triopipe.ConnectionLostError) as caught:
            redis.execute("DEBUG", "SLEEP", "5")
        killer.join()
        assert caught.value.sent is True
        assert time.monotonic() - started < 3
        assert tally.written == 1
        server.restart()
        # Through the loop (the link is down), which reconnects.
        assert redis.execute("ECHO", "again") == b"again"
        assert redis.statistics().commands_in_flight == 0


def test_a_payload_the_kernel_takes_in_part_is_finished_by_the_sender(
    redis_url: str, backend: str, tally: _Tally
) -> None:
    size = 48 * 1024 * 1024  # far more than a socket buffer takes at once
    with sync.open_client(redis_url, backend=backend) as redis:
        redis.ping()
        tally.written = 0
        assert redis.set("big", b"x" * size) is True
        assert tally.written == 1
        assert redis.execute("STRLEN", "big") == size
        assert redis.execute("ECHO", "after") == b"after"
        assert redis.statistics().commands_in_flight == 0
    assert Control(redis_url).execute_command("STRLEN", "big") == size


@pytest.fixture
def cluster() -> Iterator[triopipe.testing.RedisClusterProcesses]:
    with triopipe.testing.redis_cluster_processes(masters=3) as processes:
        yield processes


def _on_all(
    processes: triopipe.testing.RedisClusterProcesses,
) -> Callable[..., list[object]]:
    def run(*args: str | int) -> list[object]:
        return [Control(node.url).execute_command(*args) for node in processes.primaries()]

    return run


def test_cluster_redirects_met_on_the_direct_path_go_through_the_loop(
    cluster: triopipe.testing.RedisClusterProcesses, backend: str, tally: _Tally
) -> None:
    with sync.open_cluster_client(cluster.urls, backend=backend) as redis:
        key = "moving-key"
        slot = key_slot(key)
        assert redis.set(key, "old") is True
        source_url = redis.shard_for(key)
        source = next(n for n in cluster.primaries() if n.url == source_url)
        target = next(n for n in cluster.primaries() if n.url != source_url)
        source_id, target_id = cluster.node_id(source), cluster.node_id(target)
        on_source, on_target = Control(source.url), Control(target.url)
        on_target.execute_command("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        on_source.execute_command("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        on_source.execute_command(
            "MIGRATE", target.host, str(target.port), "", "0", "5000", "KEYS", key
        )
        tally.written = 0
        # ASK: the direct write gets it, the loop follows it.
        assert redis.get(key) == b"old"
        assert tally.written == 1
        assert redis.statistics().asked == 1
        _on_all(cluster)("CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        # MOVED: likewise, and the loop updates the slot map.
        assert redis.get(key) == b"old"
        assert redis.shard_for(key) == target.url
        assert redis.statistics().moved >= 1
        # Now straight to the new owner.
        tally.written = 0
        assert redis.execute("GET", key) == b"old"
        assert tally.written == 1
        # Futures and blocking calls from several threads over three nodes.
        keys = [f"key:{i}" for i in range(300)]
        futures: list[Future[Any]] = [redis.submit("SET", k, k) for k in keys]
        assert all(future.result() == b"OK" for future in futures)

        def read(part: list[str]) -> None:
            for k in part:
                assert redis.get(k) == k.encode()

        readers = [threading.Thread(target=read, args=(keys[i::4],)) for i in range(4)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        assert redis.statistics().commands_in_flight == 0


def test_sharded_blocking_calls_go_straight_to_their_shard(
    shard_urls: list[str], backend: str, tally: _Tally
) -> None:
    for url in shard_urls:
        Control(url).flushall()
    keys = [f"shard-key:{i}" for i in range(100)]
    with sync.open_sharded_client(shard_urls, backend=backend) as redis:
        redis.execute_many([("SET", key, key) for key in keys])
        tally.written = tally.not_written = 0
        assert [redis.get(key) for key in keys] == [key.encode() for key in keys]
        assert tally.written == len(keys)
        # Over several shards: the loop splits and merges, as before.
        assert redis.mget(*keys) == [key.encode() for key in keys]
        assert tally.written == len(keys)
        # Refused before anything is sent, by the same routing as the loop's.
        first, second = (next(k for k in keys if redis.shard_for(k) == u) for u in shard_urls)
        with pytest.raises(triopipe.CrossSlotError):
            redis.execute("SINTER", first, second)
        owners = {url: Control(url) for url in shard_urls}
        assert all(owners[redis.shard_for(key)].get(key) == key.encode() for key in keys)


def test_tls_links_leave_every_call_to_the_loop(
    tls_server: tuple[triopipe.testing.RedisServerProcess, int],
    ca: Any,
    backend: str,
    tally: _Tally,
) -> None:
    """Only plain sockets take writes from other threads: TLS state is the loop's alone."""
    _, port = tls_server
    with sync.open_client(
        f"rediss://localhost:{port}", backend=backend, ssl_context=trusting(ca)
    ) as redis:
        redis.delete("tls-n")
        tally.written = tally.not_written = 0
        assert [redis.incr("tls-n") for _ in range(50)] == list(range(1, 51))
        assert (tally.written, tally.not_written) == (0, 50)


def test_connections_killed_again_and_again_under_direct_calls(
    redis_url: str, backend: str
) -> None:
    """Blocking calls from 6 threads while the server kills the connection every 20 ms.

    Each call gets its own reply or ConnectionLostError; none hangs or gets
    another's reply, and nothing is left counted in flight.
    """
    control = Control(redis_url)
    wrong: list[tuple[str, object]] = []
    unexpected: list[BaseException] = []
    outcomes = {"ok": 0, "lost": 0}
    tally_lock = threading.Lock()
    stop = time.monotonic() + 1.5
    with sync.open_client(redis_url, backend=backend) as redis:

        def caller(number: int) -> None:
            i = 0
            while time.monotonic() < stop:
                token = f"{number}:{i}"
                i += 1
                try:
                    if i % 5 == 0:  # some through the loop, as Futures
                        reply = redis.submit("ECHO", token).result(timeout=10)
                    else:
                        reply = redis.execute("ECHO", token)
                except triopipe.ConnectionLostError:
                    with tally_lock:
                        outcomes["lost"] += 1
                    continue
                except Exception as exc:
                    unexpected.append(exc)
                    continue
                if reply != token.encode():
                    wrong.append((token, reply))
                with tally_lock:
                    outcomes["ok"] += 1

        callers = [threading.Thread(target=caller, args=(n,)) for n in range(6)]
        for thread in callers:
            thread.start()
        kills = 0
        while time.monotonic() < stop:
            time.sleep(0.02)
            control.execute_command("CLIENT", "KILL", "TYPE", "normal")
            kills += 1
        for thread in callers:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in callers)
        assert (wrong, unexpected) == ([], [])
        assert outcomes["ok"] > 0
        assert outcomes["lost"] > 0  # the kills did land on calls in flight
        statistics = redis.statistics()
        assert statistics.commands_in_flight == 0
        assert statistics.connects > kills // 2
