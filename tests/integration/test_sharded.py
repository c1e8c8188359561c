"""The sharded client against three real servers, on trio and asyncio.

Where keys live is always checked from outside: a plain client per server
looks at what each one holds.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

import triopipe
from triopipe._routing import key_positions
from triopipe.testing import RedisServer

pytestmark = pytest.mark.usefixtures("anyio_backend")


@asynccontextmanager
async def plain_clients(urls: Sequence[str]) -> AsyncIterator[dict[str, triopipe.Client]]:
    """One ordinary client per server, by URL."""
    async with AsyncExitStack() as stack:
        yield {url: await stack.enter_async_context(triopipe.open_client(url)) for url in urls}


async def holders(clients: dict[str, triopipe.Client], key: str) -> list[str]:
    """The URLs of the servers that hold ``key``."""
    return [url for url, client in clients.items() if await client.exists(key)]


def keys_per_shard(redis: triopipe.ShardedClient, per_shard: int = 2) -> dict[str, list[str]]:
    """A few keys owned by each shard, by shard URL."""
    found: dict[str, list[str]] = {url: [] for url in redis.shards}
    i = 0
    while any(len(keys) < per_shard for keys in found.values()):
        key = f"key:{i}"
        if len(found[redis.shard_for(key)]) < per_shard:
            found[redis.shard_for(key)].append(key)
        i += 1
    return found


async def set_or_fail(redis: triopipe.ShardedClient, key: str, value: str) -> bool:
    try:
        return bool(await redis.set(key, value))
    except triopipe.TransportError:
        return False


def written(redis: triopipe.ShardedClient) -> dict[str, int]:
    return {url: s.commands_written for url, s in redis.statistics().per_shard.items()}


async def test_each_key_lives_on_exactly_one_server_and_load_is_balanced(
    redis_shard_urls: list[str],
) -> None:
    keys = [f"user:{i}" for i in range(3000)]
    async with (
        triopipe.open_sharded_client(redis_shard_urls) as redis,
        plain_clients(redis_shard_urls) as clients,
    ):
        assert list(redis.shards) == redis_shard_urls
        await redis.execute_many([("SET", key, key) for key in keys])
        sizes = {url: await client.dbsize() for url, client in clients.items()}
        assert sum(sizes.values()) == len(keys)
        for size in sizes.values():
            assert abs(size - 1000) <= 150
        # Each key on exactly one server: the one shard_for names.
        pipelines = {
            url: await client.execute_many([("EXISTS", key) for key in keys])
            for url, client in clients.items()
        }
        for index, key in enumerate(keys):
            holding = [url for url in clients if pipelines[url][index]]
            assert holding == [redis.shard_for(key)]
        assert await redis.dbsize() == len(keys)


async def test_hash_tags_co_locate(redis_shard_urls: list[str]) -> None:
    async with (
        triopipe.open_sharded_client(redis_shard_urls) as redis,
        plain_clients(redis_shard_urls) as clients,
    ):
        for user in range(10):
            keys = [f"{{user{user}}}:{field}" for field in ("name", "mail", "friends", "x")]
            await redis.mset(dict.fromkeys(keys, "v"))
            homes = {redis.shard_for(key) for key in keys}
            assert len(homes) == 1
            for key in keys:
                assert await holders(clients, key) == list(homes)
            # Multi-key commands within one tag run as usual.
            sets = f"{{user{user}}}:s1", f"{{user{user}}}:s2"
            await redis.sadd(sets[0], "a", "b")
            await redis.sadd(sets[1], "b", "c")
            assert await redis.sinter(*sets) == {b"b"}


async def test_execute_many_and_batch_keep_the_callers_order(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        keys = [f"k{i}" for i in range(600)]
        await redis.execute_many([("SET", key, i) for i, key in enumerate(keys)])
        order = list(range(len(keys)))
        random.Random(4).shuffle(order)
        replies = await redis.execute_many([("GET", keys[i]) for i in order])
        assert replies == [str(i).encode() for i in order]
        # Mixed commands, a split MGET and an error reply, in place.
        await redis.hset("h", {"f": 1})
        mixed = await redis.execute_many(
            [
                ("INCR", "k1"),
                ("MGET", "k5", "k6", "k7", "nope"),
                ("INCR", "h"),
                ("GET", "k2"),
                ("DBSIZE",),
            ],
            raise_on_error=False,
        )
        assert mixed[0] == 2
        assert mixed[1] == [b"5", b"6", b"7", None]
        assert isinstance(mixed[2], triopipe.WrongTypeError)
        assert mixed[3:] == [b"2", 601]
        with pytest.raises(triopipe.WrongTypeError):
            await redis.execute_many([("GET", "k1"), ("INCR", "h")])

        async with redis.batch() as batch:
            pendings = [batch.get(keys[i]) for i in order]
            mget = batch.mget("k5", "k6", "k7")
            count = batch.dbsize()
            wrong = batch.incr("h")
        values = [str(i).encode() for i in range(len(keys))]
        values[1] = b"2"  # incremented above
        assert [p.result() for p in pendings] == [values[i] for i in order]
        assert mget.result() == [b"5", b"6", b"7"]
        assert count.result() == 601
        with pytest.raises(triopipe.WrongTypeError):
            wrong.result()


async def test_multi_key_commands_split_and_merge(redis_shard_urls: list[str]) -> None:
    async with (
        triopipe.open_sharded_client(redis_shard_urls) as redis,
        plain_clients(redis_shard_urls) as clients,
    ):
        keys = [f"m{i}" for i in range(30)]
        assert len({redis.shard_for(key) for key in keys}) == 3
        assert await redis.mset({key: i for i, key in enumerate(keys)}) is True
        for key in keys:
            assert await holders(clients, key) == [redis.shard_for(key)]
        assert await redis.mget(*keys, "missing") == [
            *(str(i).encode() for i in range(30)),
            None,
        ]
        assert await redis.execute("MGET", keys[3], keys[0]) == [b"3", b"0"]
        assert await redis.exists(*keys, keys[0], "missing") == 31
        assert await redis.execute("TOUCH", *keys[:10]) == 10
        assert await redis.execute("UNLINK", *keys[:10]) == 10
        assert await redis.delete(*keys) == 20
        assert await redis.dbsize() == 0


async def test_cross_shard_commands_raise_before_sending(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        (a, _), (b, _), _ = keys_per_shard(redis).values()
        await redis.execute_many([("SADD", a, 1), ("SADD", b, 1)])
        before = written(redis)
        with pytest.raises(triopipe.CrossSlotError):
            await redis.sinter(a, b)
        with pytest.raises(triopipe.CrossSlotError):
            await redis.execute("RENAME", a, b)
        with pytest.raises(triopipe.CrossSlotError):
            await redis.execute("EVAL", "return redis.call('DEL', KEYS[1])", 2, a, b)
        with pytest.raises(triopipe.CrossSlotError):
            await redis.execute("MSETNX", a, 1, b, 2)
        # In a pipeline, a cross-shard command anywhere stops all of it.
        with pytest.raises(triopipe.CrossSlotError):
            await redis.execute_many([("SET", "first", 1), ("SINTER", a, b)])
        with pytest.raises(triopipe.CrossSlotError):
            async with redis.batch() as batch:
                batch.sunion(a, b)
        assert written(redis) == before
        assert await redis.get("first") is None
        assert await redis.exists(a, b) == 2


async def test_key_less_commands(redis_shard_urls: list[str]) -> None:
    async with (
        triopipe.open_sharded_client(redis_shard_urls) as redis,
        plain_clients(redis_shard_urls) as clients,
    ):
        assert await redis.ping() is True
        assert await redis.ping("hi") == b"hi"
        keys = {f"s{i}" for i in range(100)}
        await redis.execute_many([("SET", key, 1) for key in keys])
        assert await redis.dbsize() == 100
        assert {key.decode() async for key in redis.scan_iter()} == keys
        assert {key.decode() async for key in redis.scan_iter(match="s1*", count=5)} == {
            key for key in keys if key.startswith("s1")
        }
        assert {key.decode() for key in await redis.execute("KEYS", "*")} == keys
        with pytest.raises(triopipe.NoShardError, match="for_each_shard"):
            await redis.execute("INFO")
        infos = await redis.for_each_shard("INFO", "keyspace")
        assert list(infos) == redis_shard_urls
        assert all(b"keys=" in info for info in infos.values())
        url = redis_shard_urls[1]
        assert await redis.shards[url].dbsize() == await clients[url].dbsize()
        assert await redis.flushdb() is True
        for client in clients.values():
            assert await client.dbsize() == 0


async def test_transaction_on_one_shard(redis_shard_urls: list[str]) -> None:
    async with (
        triopipe.open_sharded_client(redis_shard_urls) as redis,
        plain_clients(redis_shard_urls) as clients,
    ):
        await redis.set("{acct}:balance", 100)
        async with redis.transaction("{acct}:balance") as tx:
            balance = int(await tx.now.get("{acct}:balance"))
            tx.set("{acct}:balance", balance - 30)
            log = tx.rpush("{acct}:log", "-30")
            tx.ping()
        assert log.result() == 1
        home = redis.shard_for("acct")
        assert await clients[home].get("{acct}:balance") == b"70"
        # Without watch keys the first keyed command picks the shard.
        async with redis.transaction() as tx:
            first = tx.incr("{x}a")
            second = tx.incr("{x}b")
        assert (first.result(), second.result()) == (1, 1)
        assert await holders(clients, "{x}b") == [redis.shard_for("x")]
        # A watched key changing makes it fail, every pending holding the error.
        with pytest.raises(triopipe.WatchError):
            async with redis.transaction("{acct}:balance") as tx:
                await clients[home].set("{acct}:balance", 0)
                lost = tx.set("{acct}:balance", 1)
        with pytest.raises(triopipe.WatchError):
            lost.result()
        (a, _), (b, _), _ = keys_per_shard(redis).values()
        with pytest.raises(triopipe.CrossSlotError):
            async with redis.transaction(a, b):
                pass
        with pytest.raises(triopipe.CrossSlotError):
            async with redis.transaction() as tx:
                tx.set(a, 1)
                tx.set(b, 1)
        with pytest.raises(RuntimeError, match="watch keys"):
            async with redis.transaction() as tx:
                await tx.now.get(a)
        assert await redis.exists(a, b) == 0


async def test_a_killed_shard_fails_only_its_own_keys(redis_shards: list[RedisServer]) -> None:
    urls = [server.url for server in redis_shards]
    async with triopipe.open_sharded_client(urls) as redis:
        keys = [f"k{i}" for i in range(300)]
        await redis.execute_many([("SET", key, key) for key in keys])
        dead = redis_shards[1]
        await dead.kill()
        on_dead = [key for key in keys if redis.shard_for(key) == dead.url]
        alive = [key for key in keys if redis.shard_for(key) != dead.url]
        assert on_dead
        assert alive
        with pytest.raises(triopipe.TransportError):
            await redis.get(on_dead[0])
        for key in alive[:20]:
            assert await redis.get(key) == key.encode()
        replies = await redis.execute_many([("GET", key) for key in keys], raise_on_error=False)
        for key, reply in zip(keys, replies, strict=True):
            if key in on_dead:
                assert isinstance(reply, (triopipe.ConnectError, triopipe.ConnectionLostError))
            else:
                assert reply == key.encode()
        with pytest.raises(triopipe.TransportError):
            await redis.execute_many([("GET", key) for key in keys])
        with pytest.raises(triopipe.TransportError):
            async with redis.batch() as batch:
                pendings = {key: batch.get(key) for key in keys}
        for key, pending in pendings.items():
            if key in on_dead:
                with pytest.raises(triopipe.TransportError):
                    pending.result()
            else:
                assert pending.result() == key.encode()
        # A split command touching the dead shard fails; one that does not works.
        with pytest.raises(triopipe.TransportError):
            await redis.mget(alive[0], on_dead[0])
        assert await redis.mget(*alive[:5]) == [key.encode() for key in alive[:5]]
        assert redis.statistics().connected_shards == 2
        # It comes back (empty: no persistence) and serves its keys again.
        await dead.restart()
        with anyio.fail_after(10):
            while not await set_or_fail(redis, on_dead[0], "again"):
                await anyio.sleep(0.05)
        assert await redis.get(on_dead[0]) == b"again"


async def test_a_slow_shard_delays_only_its_own_commands(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        slow_url, fast_url, _ = redis_shard_urls
        fast_key = keys_per_shard(redis)[fast_url][0]
        slow_key = keys_per_shard(redis)[slow_url][0]
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(redis.shards[slow_url].execute, "DEBUG", "SLEEP", 2)
            await anyio.sleep(0.1)
            # Not a speed test: a healthy shard must simply not wait for 2 s.
            with anyio.fail_after(1.5):
                assert await redis.set(fast_key, 1) is True
                assert await redis.execute_many([("GET", fast_key)] * 10) == [b"1"] * 10
            assert await redis.get(slow_key) is None  # waits for the sleep


async def test_shard_for_hides_passwords() -> None:
    async with triopipe.testing.redis_servers(2, requirepass="s3cret") as servers:
        urls = [f"redis://:s3cret@127.0.0.1:{server.port}/0" for server in servers]
        async with triopipe.open_sharded_client(urls) as redis:
            names = {f"redis://127.0.0.1:{server.port}" for server in servers}
            assert set(redis.shards) == names
            assert redis.shard_for("k") in names
            assert "s3cret" not in repr(redis)
            assert "s3cret" not in repr(redis.statistics())
            assert await redis.set("k", 1) is True


async def test_named_shards_keep_their_slots_when_addresses_change(
    redis_shard_urls: list[str],
) -> None:
    names = ["alpha", "beta", "gamma"]
    named = dict(zip(names, redis_shard_urls, strict=True))
    async with triopipe.open_sharded_client(named) as first:
        layout = [first.shard_for(f"k{i}") for i in range(100)]
    moved = dict(zip(names, reversed(redis_shard_urls), strict=True))
    async with triopipe.open_sharded_client(moved) as second:
        assert [second.shard_for(f"k{i}") for i in range(100)] == layout


async def test_open_fails_when_a_shard_is_unreachable(redis_shard_urls: list[str]) -> None:
    async with triopipe.testing.redis_server() as server:
        url = server.url
    with pytest.raises(triopipe.ConnectError):
        async with triopipe.open_sharded_client([*redis_shard_urls, url], connect_timeout=2):
            pass


async def test_closed_client_refuses_commands(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        pass
    with pytest.raises(anyio.ClosedResourceError):
        await redis.get("k")
    with pytest.raises(anyio.ClosedResourceError):
        await redis.execute_many([("GET", "a"), ("GET", "b"), ("GET", "c")])


# Key positions against the server's own answer (COMMAND GETKEYS).
GETKEYS_CASES: list[tuple[Any, ...]] = [
    ("GET", "k"),
    ("MSET", "a", 1, "b", 2),
    ("EVAL", "return 1", 2, "a", "b", "arg"),
    ("ZUNIONSTORE", "d", 2, "a", "b", "WEIGHTS", 1, 2),
    ("ZINTER", 2, "a", "b"),
    ("LMPOP", 2, "a", "b", "LEFT"),
    ("BLMPOP", 0, 2, "a", "b", "LEFT"),
    ("BZMPOP", 0, 2, "a", "b", "MAX"),
    ("SINTERCARD", 2, "a", "b"),
    ("XREAD", "COUNT", 2, "STREAMS", "a", "b", "0", "0"),
    ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", ">", ">"),
    ("GEORADIUS", "k", 1, 2, 3, "m", "STORE", "d"),
    ("SORT", "k", "LIMIT", 0, 10, "STORE", "d"),
    ("MIGRATE", "h", 6379, "", 0, 5000, "KEYS", "a", "b"),
    ("OBJECT", "ENCODING", "k"),
    ("BITOP", "AND", "dest", "a", "b"),
    ("RENAME", "a", "b"),
]


async def test_key_positions_match_the_server(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        for args in GETKEYS_CASES:
            expected = await redis.execute("COMMAND", "GETKEYS", *args)
            assert [args[p] for p in key_positions(args)] == [k.decode() for k in expected], args
