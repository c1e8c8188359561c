"""Every command class on every client, against real servers.

The table (``tests/routing/test_command_classes.py``) says what each command
is; these tests show each client acting on it: what would change a shared
connection is refused before anything is sent, ``WAIT`` counts the writes
of the connection it runs on, a command the table lacks is learned from the
server once, key-less commands go where their request policy says, and
scripts run on every client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import Control

import triopipe
import triopipe.sync
from triopipe._routing import forget_learned_commands
from triopipe.testing import redis_server, redis_server_process

# Commands refused everywhere outside the APIs made for them.
REFUSED = [
    ("MULTI",),
    ("EXEC",),
    ("DISCARD",),
    ("WATCH", "k"),
    ("UNWATCH",),
    ("RESET",),
    ("SELECT", 1),
    ("HELLO", 3),
    ("AUTH", "nobody", "wrong"),
    ("CLIENT", "REPLY", "OFF"),
    ("CLIENT", "TRACKING", "ON"),
    ("CLIENT", "SETNAME", "x"),
    ("READONLY",),
    ("READWRITE",),
    ("ASKING",),
    ("MONITOR",),
    ("QUIT",),
    ("SUBSCRIBE", "c"),
    ("PSUBSCRIBE", "c*"),
    ("SSUBSCRIBE", "c"),
    ("UNSUBSCRIBE",),
    ("PUNSUBSCRIBE",),
    ("SUNSUBSCRIBE",),
]
# Allowed only after the writes they count, in a batch or a transaction.
PINNED = [("WAIT", 0, 0), ("WAITAOF", 0, 0, 0)]


@pytest.fixture
def forget_learned() -> Iterator[None]:
    """Tests of learning start from the table alone, and leave nothing learned behind."""
    forget_learned_commands()
    yield
    forget_learned_commands()


def _written(redis: Any) -> int:
    stats = redis.statistics()
    if hasattr(stats, "per_shard"):
        return sum(s.commands_written for s in stats.per_shard.values())
    if hasattr(stats, "per_node"):
        return sum(s.commands_written for s in stats.per_node.values())
    return int(stats.commands_written)


async def _refuses_everywhere(redis: Any, dbsize: Any) -> None:
    for args in REFUSED + PINNED:
        before = _written(redis)
        with pytest.raises(triopipe.CommandNotAllowedError) as refused:
            await redis.execute(*args)
        assert refused.value.command.split()[0] == args[0]
        with pytest.raises(triopipe.CommandNotAllowedError):
            await redis.execute_many([("SET", "before", 1), args])
        if args not in PINNED:
            with pytest.raises(triopipe.CommandNotAllowedError):
                async with redis.batch() as batch:
                    batch.set("in-batch", 1)
                    batch.execute(*args)
        assert _written(redis) == before, args  # nothing of it went out
        assert await dbsize() == 0


async def test_the_client_refuses_before_sending(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        await redis.ping()
        await _refuses_everywhere(redis, redis.dbsize)
        # The connection is as it was: RESP3, db 0, replies on.
        assert redis.statistics().per_connection[0].protocol == 3
        assert await redis.execute("CLIENT", "INFO") != b""
        await redis.set("k", "v")
        assert await redis.get("k") == b"v"


async def test_the_sharded_client_refuses_before_sending(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        await _refuses_everywhere(redis, redis.dbsize)


async def test_the_cluster_client_refuses_before_sending(redis_cluster_urls: list[str]) -> None:
    async with triopipe.open_cluster_client(redis_cluster_urls) as redis:
        await _refuses_everywhere(redis, redis.dbsize)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_blocking_client_refuses_before_sending(redis_url: str, backend: str) -> None:
    with triopipe.sync.open_client(redis_url, backend=backend) as redis:
        for args in REFUSED + PINNED:
            with pytest.raises(triopipe.CommandNotAllowedError):
                redis.execute(*args)
            with pytest.raises(triopipe.CommandNotAllowedError):
                redis.submit(*args).result()
        assert redis.dbsize() == 0
        assert redis.incr("n") == 1


async def test_unsubscribe_under_a_storm_of_callers_misdelivers_nothing(redis_url: str) -> None:
    """UNSUBSCRIBE through execute used to leave a push frame in a shared reply's place."""
    wrong: list[tuple[str, Any]] = []
    refused = 0
    async with triopipe.open_client(redis_url, connections=2) as redis:

        async def caller(number: int) -> None:
            for i in range(50):
                token = f"{number}:{i}"
                reply = await redis.execute("ECHO", token)
                if reply != token.encode():
                    wrong.append((token, reply))

        async def unsubscriber() -> None:
            nonlocal refused
            for name in ("UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE") * 10:
                with pytest.raises(triopipe.CommandNotAllowedError):
                    await redis.execute(name)
                refused += 1
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as task_group:
                for number in range(100):
                    task_group.start_soon(caller, number)
                for _ in range(10):
                    task_group.start_soon(unsubscriber)
            # Pipelines and batches do not hang either.
            assert await redis.execute_many([("ECHO", "a"), ("ECHO", "b")]) == [b"a", b"b"]
            async with redis.batch() as batch:
                echoed = batch.execute("ECHO", "c")
            assert echoed.result() == b"c"
    assert wrong == []
    assert refused == 300


@pytest.fixture
def replicated() -> Iterator[tuple[str, str]]:
    """A primary and one replica in sync: their URLs.

    The primary starts the sync at once (by default it waits 5 s for more
    replicas), and a busy machine gets 20 s to finish it.
    """
    with (
        redis_server_process(repl_diskless_sync_delay=0) as primary,
        redis_server_process(replicaof=f"127.0.0.1 {primary.port}") as replica,
    ):
        control = Control(replica.url)
        deadline = time.monotonic() + 20
        while True:
            info = control.execute_command("INFO", "replication")
            assert isinstance(info, bytes)
            if b"master_link_status:up" in info:
                break
            if time.monotonic() > deadline:
                pytest.fail("the replica did not sync within 20 s")
            time.sleep(0.01)
        yield primary.url, replica.url


async def test_wait_counts_the_writes_of_its_own_connection(replicated: tuple[str, str]) -> None:
    primary_url, replica_url = replicated
    async with triopipe.open_client(primary_url) as redis:
        with pytest.raises(triopipe.CommandNotAllowedError, match="batch"):
            await redis.execute("WAIT", 1, 100)
        async with redis.batch() as batch:
            batch.set("k", 1)
            caught_up = batch.wait(1, 2000)
        assert caught_up.result() == 1
        # A stalled replica does not acknowledge: WAIT says so.
        stall = threading.Thread(
            target=Control(replica_url).execute_command, args=("DEBUG", "SLEEP", "1")
        )
        stall.start()
        try:
            await anyio.sleep(0.1)
            async with redis.batch() as batch:
                batch.set("k", 2)
                stalled = batch.wait(1, 200)
            assert stalled.result() == 0
        finally:
            await anyio.to_thread.run_sync(stall.join)
        # In a transaction, after its commands, too. WAIT cannot block inside
        # MULTI, so it counts the replicas that had acknowledged by then: Redis
        # 7.0 answers 0 here, Valkey 9 may already count the one replica.
        async with redis.transaction() as tx:
            tx.set("k", 3)
            in_tx = tx.execute("WAIT", 0, 0)
        assert in_tx.result() in (0, 1)


@pytest.mark.usefixtures("forget_learned")
async def test_a_command_the_table_lacks_is_learned_once() -> None:
    async with (
        redis_server(rename_command=("GET", "MYGET")) as server,
        triopipe.open_client(server.url) as redis,
    ):

        def info_calls() -> int:
            stats = Control(server.url).execute_command("INFO", "commandstats")
            assert isinstance(stats, bytes)
            for line in stats.decode().splitlines():
                if line.startswith("cmdstat_command|info:"):
                    return int(line.split("calls=")[1].split(",")[0])
            return 0

        await redis.set("k", "v")
        assert info_calls() == 0
        assert await redis.execute("MYGET", "k") == b"v"
        assert await redis.execute("MYGET", "k") == b"v"
        assert info_calls() == 1
        # Known now: in a pipeline and a batch without asking again.
        assert await redis.execute_many([("MYGET", "k")] * 3) == [b"v"] * 3
        async with redis.batch() as batch:
            got = batch.execute("MYGET", "k")
        assert got.result() == b"v"
        assert info_calls() == 1


@pytest.mark.usefixtures("forget_learned")
async def test_a_batch_holds_an_unknown_command_and_asks_at_exit() -> None:
    async with (
        redis_server(rename_command=("GET", "MYGET")) as server,
        triopipe.open_client(server.url) as redis,
    ):
        async with redis.batch() as batch:
            first = batch.set("k", "v")
            got = batch.execute("MYGET", "k")  # held: the batch cannot ask yet
            after = batch.incr("n")  # held too: order is kept
        assert [first.result(), got.result(), after.result()] == [True, b"v", 1]


@pytest.mark.usefixtures("forget_learned")
async def test_a_state_changing_command_the_table_lacks_is_refused() -> None:
    async with (
        redis_server(rename_command=("MULTI", "MYMULTI")) as server,
        triopipe.open_client(server.url) as redis,
    ):
        # In a batch, first: held, asked about at exit, refused; what came
        # before it was sent, nothing after it.
        with pytest.raises(triopipe.CommandNotAllowedError, match="MYMULTI"):
            async with redis.batch() as batch:
                before = batch.set("k", 1)
                batch.execute("MYMULTI")
                after = batch.set("later", 1)
        assert before.result() is True
        with pytest.raises(triopipe.ConnectionLostError):
            after.result()
        assert await redis.exists("later") == 0
        # Known now: refused at once, through execute too.
        with pytest.raises(triopipe.CommandNotAllowedError):
            await redis.execute("MYMULTI")
        assert await redis.set("other", 2) is True  # not inside a MULTI


@pytest.mark.usefixtures("forget_learned")
async def test_the_sharded_client_learns_where_the_keys_are() -> None:
    async with (
        redis_server(rename_command=("GET", "MYGET")) as first,
        redis_server(rename_command=("GET", "MYGET")) as second,
        triopipe.open_sharded_client([first.url, second.url]) as redis,
    ):
        keys = [f"key:{i}" for i in range(40)]
        await redis.execute_many([("SET", key, key) for key in keys])
        assert [await redis.execute("MYGET", key) for key in keys] == [k.encode() for k in keys]
        assert await redis.execute_many([("MYGET", key) for key in keys]) == [
            k.encode() for k in keys
        ]


async def test_a_batch_refuses_blocking_helpers(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with pytest.raises(triopipe.CommandNotAllowedError, match="BLPOP"):
            async with redis.batch() as batch:
                batch.blpop("list", 1)
        assert redis.statistics().commands_in_flight == 0


async def test_key_less_commands_go_where_their_policy_says_on_a_cluster(
    redis_cluster_urls: list[str],
) -> None:
    async with triopipe.open_cluster_client(redis_cluster_urls) as redis:
        assert await redis.publish("news", "hello") == 0  # any node spreads it
        assert await redis.eval("return 42") == 42
        library = "#!lua name=triolib\nredis.register_function('answer', function() return 7 end)"
        assert await redis.function_load(library, replace=True) == b"triolib"  # every primary
        assert await redis.fcall("answer") == 7
        assert await redis.dbsize() == 0  # all primaries, summed
        script = redis.register_script("return redis.call('INCR', KEYS[1])")
        assert await script(keys=["counter"]) == 1
        assert await script(keys=["counter"]) == 2
        await script.load()
        async with redis.batch() as batch:
            queued = script.queue(batch, keys=["counter"])
        assert queued.result() == 3
        await redis.function_flush()


async def test_publish_on_shards_reaches_the_subscribers_of_its_channel(
    redis_shard_urls: list[str],
) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        channel = "alerts"
        owner = redis.shards[redis.shard_for(channel)]
        async with owner.subscribe(channel) as subscription:
            assert await redis.publish(channel, "fire") == 1
            with anyio.fail_after(5):
                message = await subscription.__anext__()
        assert message.data == b"fire"
        assert await redis.eval("return 'any shard'") == b"any shard"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_scripts_on_the_blocking_client(redis_url: str, backend: str) -> None:
    with triopipe.sync.open_client(redis_url, backend=backend) as redis:
        script = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        assert script(keys=["n"], args=[5]) == 5
        with redis.batch() as batch:
            queued = script.queue(batch, keys=["n"], args=[2])
        assert queued.result() == 7
