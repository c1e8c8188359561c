"""The cluster client against real Redis Clusters (3 masters; 3 masters + 3 replicas).

Two clusters per module, shared by the tests of both backends: tests use their
own keys and read the layout from the cluster, never assume it, because some
of them change it (a reshard, a migration, a failover, a killed node).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import pytest

import triopipe
from triopipe._resp import encode_command
from triopipe._routing import key_slot
from triopipe.testing._cluster import (
    RedisCluster,
    RedisClusterNode,
    RedisClusterProcesses,
    redis_cluster,
    redis_cluster_processes,
)
from triopipe.testing._cluster_fixtures import redis_cluster_urls, redis_session_cluster

__all__ = ["redis_cluster_urls", "redis_session_cluster"]  # fixtures, used by name


@pytest.fixture(scope="module")
def cluster_processes() -> Iterator[RedisClusterProcesses]:
    with redis_cluster_processes(masters=3) as processes:
        yield processes


@pytest.fixture(scope="module")
def replicated_processes() -> Iterator[RedisClusterProcesses]:
    with redis_cluster_processes(masters=3, replicas=1) as processes:
        yield processes


@pytest.fixture
async def cluster(cluster_processes: RedisClusterProcesses) -> RedisCluster:
    cluster = RedisCluster(cluster_processes)
    await cluster.wait_stable()
    return cluster


@pytest.fixture
async def replicated(replicated_processes: RedisClusterProcesses) -> RedisCluster:
    cluster = RedisCluster(replicated_processes)
    await cluster.wait_stable()
    return cluster


def _keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}:{random.random()}:{index}" for index in range(count)]


async def _node_by_url(cluster: RedisCluster, url: str) -> RedisClusterNode:
    return next(node for node in cluster.nodes if node.url == url)


# -- the harness -----------------------------------------------------------------


async def test_harness_starts_a_cluster_and_tears_it_down() -> None:
    async with redis_cluster(masters=2) as cluster:
        assert len(cluster.nodes) == 2
        for node in cluster.nodes:
            assert node.port + 10000 <= 65535
            async with triopipe.open_client(node.url, decode=True) as plain:
                info = await plain.execute("CLUSTER", "INFO")
                assert "cluster_state:ok" in info
                assert "cluster_known_nodes:2" in info
                assert await plain.execute("CLUSTER", "MYID") == node.node_id
        processes = [node.process for node in cluster.nodes]
    assert not any(process.running for process in processes)


async def test_session_cluster_fixture(redis_cluster_urls: list[str]) -> None:
    async with triopipe.open_cluster_client(redis_cluster_urls) as redis:
        assert await redis.dbsize() == 0
        await redis.set("fixture", 1)
        assert await redis.get("fixture") == b"1"


async def test_opening_fails_like_open_client(redis_url: str) -> None:
    with pytest.raises(triopipe.ResponseError, match="cluster support disabled"):
        async with triopipe.open_cluster_client(redis_url):
            pass
    with pytest.raises(triopipe.ConnectError):
        async with triopipe.open_cluster_client("redis://127.0.0.1:1", retries=0):
            pass
    with pytest.raises(ValueError, match="database 0"):
        async with triopipe.open_cluster_client(redis_url + "/3"):
            pass


# -- routing -------------------------------------------------------------------


async def test_each_key_lives_on_the_node_that_owns_its_slot(cluster: RedisCluster) -> None:
    keys = _keys("route", 300)
    async with triopipe.open_cluster_client(cluster.urls[-1]) as redis:
        for key in keys:
            await redis.set(key, key)
        owners = {key: redis.node_for(key) for key in keys}
    assert len(set(owners.values())) == 3
    for node in await cluster.primaries():
        async with triopipe.open_client(node.url) as plain:
            for key in keys:
                assert await plain.execute("CLUSTER", "KEYSLOT", key) == key_slot(key)
                if owners[key] == node.url:
                    assert await plain.get(key) == key.encode()
                else:
                    with pytest.raises(triopipe.MovedError) as caught:
                        await plain.get(key)
                    assert caught.value.slot == key_slot(key)
                    assert f"redis://{caught.value.host}:{caught.value.port}" == owners[key]


async def test_execute_many_and_batch_keep_order_across_nodes(cluster: RedisCluster) -> None:
    keys = _keys("order", 200)
    async with triopipe.open_cluster_client(cluster.urls, decode=True) as redis:
        commands: list[tuple[Any, ...]] = []
        for index, key in enumerate(keys):
            commands += [("SET", key, index), ("INCR", key), ("GET", key)]
        commands.append(("LPUSH", keys[0], "x"))  # WRONGTYPE, in its place
        replies = await redis.execute_many(commands, raise_on_error=False)
        assert replies[:-1] == [r for i in range(len(keys)) for r in ("OK", i + 1, str(i + 1))]
        assert isinstance(replies[-1], triopipe.WrongTypeError)
        with pytest.raises(triopipe.WrongTypeError):
            await redis.execute_many(commands[-1:])

        async with redis.batch() as batch:
            pendings = [batch.incr(key) for key in keys]
            lengths = batch.execute("MGET", *keys)
        assert [p.result() for p in pendings] == [i + 2 for i in range(len(keys))]
        assert lengths.result() == [str(i + 2) for i in range(len(keys))]


async def test_multi_key_commands_split_and_merge(cluster: RedisCluster) -> None:
    keys = _keys("split", 100)
    async with triopipe.open_cluster_client(cluster.urls[0]) as redis:
        assert await redis.execute("MSET", *[part for k in keys for part in (k, k)]) == b"OK"
        assert await redis.execute("MGET", *keys, "missing") == [k.encode() for k in keys] + [None]
        assert await redis.execute("EXISTS", *keys[:50], "missing") == 50
        assert await redis.execute("TOUCH", *keys[:10]) == 10
        assert await redis.execute("UNLINK", *keys[:10]) == 10
        assert await redis.execute("DEL", *keys) == 90
        assert await redis.dbsize() >= 0


async def test_cross_slot_raises_before_sending(cluster: RedisCluster) -> None:
    async with triopipe.open_cluster_client(cluster.urls[0]) as redis:
        written = sum(s.commands_written for s in redis.statistics().per_node.values())
        with pytest.raises(triopipe.CrossSlotError):
            await redis.execute("SINTER", "a", "b")
        with pytest.raises(triopipe.CrossSlotError):
            await redis.execute_many([("GET", "a"), ("RENAME", "a", "b")])
        after = sum(s.commands_written for s in redis.statistics().per_node.values())
        assert after == written
        # Hash tags put keys in one slot.
        await redis.sadd("{u1}:a", "x", "y")
        await redis.sadd("{u1}:b", "y")
        assert await redis.sinter("{u1}:a", "{u1}:b") == {b"y"}
        async with redis.transaction("{u1}:a") as tx:
            tx.sadd("{u1}:b", "z")
            with pytest.raises(triopipe.CrossSlotError):
                tx.sadd("{u2}:b", "z")
        assert await redis.smembers("{u1}:b") == {b"y", b"z"}


async def test_server_wide_commands_reach_every_primary(cluster: RedisCluster) -> None:
    async with triopipe.open_cluster_client(cluster.urls[0]) as redis:
        await redis.flushdb()
        keys = _keys("wide", 60)
        await redis.execute_many([("SET", key, 1) for key in keys])
        assert await redis.ping() is True
        assert await redis.dbsize() == 60
        assert sorted([k async for k in redis.scan_iter()]) == sorted(k.encode() for k in keys)
        with pytest.raises(triopipe.NoShardError):
            await redis.execute("INFO")
        assert len(redis.nodes) == 3


# -- redirects -----------------------------------------------------------------


async def _slot_ids(cluster: RedisCluster, url: str) -> tuple[str, str]:
    node = await _node_by_url(cluster, url)
    others = [n for n in await cluster.primaries() if n is not node]
    return node.node_id, others[0].node_id


async def test_ask_then_moved_during_a_hand_made_migration(cluster: RedisCluster) -> None:
    async with triopipe.open_cluster_client(cluster.urls[0]) as redis:
        key = f"ask:{random.random()}"
        await redis.set(key, "old")
        slot = key_slot(key)
        source = await _node_by_url(cluster, redis.node_for(key))
        target = next(n for n in await cluster.primaries() if n is not source)
        async with (
            triopipe.open_client(source.url) as on_source,
            triopipe.open_client(target.url) as on_target,
        ):
            await on_target.execute("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
            await on_source.execute("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
            await on_source.execute("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", key)
            # The key has moved, the slot has not: ASK, then ASKING on the target.
            assert await redis.get(key) == b"old"
            assert await redis.execute_many([("SET", key, "new"), ("GET", key)]) == [b"OK", b"new"]
            assert redis.node_for(key) == source.url  # ASK leaves the map alone
            assert redis.statistics().asked == 3
            # ASKING in one request with the command it is for, as the
            # cluster client sends it (execute_many refuses ASKING: it would
            # change the state of a shared connection).
            asked = await on_target.run_encoded(
                [encode_command(("ASKING",)), encode_command(("GET", key))]
            )
            assert asked == [b"OK", b"new"]
            for node in await cluster.primaries():
                async with triopipe.open_client(node.url) as plain:
                    await plain.execute("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        # The slot has moved for good: MOVED updates the map.
        async with redis.batch() as batch:
            value = batch.get(key)
        assert value.result() == b"new"
        assert redis.node_for(key) == target.url
        assert redis.statistics().moved >= 1
    await cluster.wait_stable()


def _redis_cli(*args: str) -> None:
    executable = shutil.which("redis-cli")
    if executable is None:
        pytest.skip("redis-cli is not installed")
    subprocess.run([executable, *args], check=True, capture_output=True, timeout=120)


class _Load:
    """Tasks writing INCRs (alone and in pipelines), counting what was acknowledged."""

    def __init__(self, redis: triopipe.ClusterClient, keys: list[str]) -> None:
        self.redis = redis
        self.keys = keys
        self.acked: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.running = True

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        for _ in range(40):
            task_group.start_soon(self.single)
        for _ in range(4):
            task_group.start_soon(self.pipelined)

    async def single(self) -> None:
        while self.running:
            key = random.choice(self.keys)
            try:
                await self.redis.incr(key)
            except triopipe.ConnectionLostError as exc:
                if not exc.sent:  # unsent ones are retried, never surfaced
                    raise
                self.unknown[key] += 1
            else:
                self.acked[key] += 1

    async def pipelined(self) -> None:
        while self.running:
            keys = random.sample(self.keys, 20)
            replies = await self.redis.execute_many(
                [("INCR", key) for key in keys], raise_on_error=False
            )
            for key, reply in zip(keys, replies, strict=True):
                if isinstance(reply, triopipe.ConnectionLostError) and reply.sent:
                    self.unknown[key] += 1
                else:
                    assert not isinstance(reply, Exception), reply
                    self.acked[key] += 1

    async def check(self) -> None:
        values = await self.redis.execute("MGET", *self.keys)
        for key, value in zip(self.keys, values, strict=True):
            final = int(value or 0)
            assert self.acked[key] <= final <= self.acked[key] + self.unknown[key], key


async def test_live_reshard_under_load_loses_and_repeats_nothing(cluster: RedisCluster) -> None:
    primaries = await cluster.primaries()
    source, target = primaries[0], primaries[1]
    async with triopipe.open_cluster_client(cluster.urls) as redis:
        load = _Load(redis, _keys("reshard", 400))
        async with anyio.create_task_group() as task_group:
            load.start(task_group)
            await anyio.to_thread.run_sync(
                lambda: _redis_cli(
                    "--cluster", "reshard", f"{source.host}:{source.port}",
                    "--cluster-from", source.node_id, "--cluster-to", target.node_id,
                    "--cluster-slots", "2000", "--cluster-yes",
                )
            )  # fmt: skip
            await anyio.sleep(0.2)
            load.running = False
        assert sum(load.unknown.values()) == 0  # no connection broke
        await load.check()
        stats = redis.statistics()
        assert stats.moved > 0
    await cluster.wait_stable()


# -- failures ------------------------------------------------------------------


async def _wait_role(cluster: RedisCluster, node: RedisClusterNode, role: str) -> None:
    with anyio.fail_after(30):
        while await cluster.role(node) != role:
            await anyio.sleep(0.05)


async def test_reads_from_replicas(replicated: RedisCluster) -> None:
    keys = _keys("replica", 50)
    async with triopipe.open_cluster_client(replicated.urls, read_from_replicas=True) as redis:
        # WAIT after the writes, on the connections that carried them: in a
        # batch it goes to every primary, behind that primary's writes.
        async with redis.batch() as batch:
            for key in keys:
                batch.set(key, key)
            caught_up = batch.execute("WAIT", 1, 5000)
        assert caught_up.result() == 1  # the fewest replicas any primary reached
        assert await redis.execute("MGET", *keys) == [k.encode() for k in keys]
        replicas = {n.url for n in replicated.nodes} - {
            n.url for n in await replicated.primaries()
        }
        served = {
            url for url, stats in redis.statistics().per_node.items() if stats.commands_written
        }
        assert served & replicas


async def test_manual_failover_under_load(replicated: RedisCluster) -> None:
    primaries = await replicated.primaries()
    replica = next(n for n in replicated.nodes if n.running and n not in primaries)
    async with triopipe.open_cluster_client(replicated.urls) as redis:
        load = _Load(redis, _keys("failover", 300))
        async with anyio.create_task_group() as task_group:
            load.start(task_group)
            await anyio.sleep(0.3)
            async with triopipe.open_client(replica.url) as plain:
                await plain.execute("CLUSTER", "FAILOVER")
            await _wait_role(replicated, replica, "master")
            await anyio.sleep(0.5)
            load.running = False
        await load.check()
        assert sum(load.acked.values()) > 0
    await replicated.wait_stable()


async def test_killed_primary_fails_only_its_slots(replicated: RedisCluster) -> None:
    primaries = await replicated.primaries()
    victim = primaries[0]
    keys = _keys("kill", 200)
    async with triopipe.open_cluster_client(replicated.urls, max_redirects=2) as redis:
        await redis.execute_many([("SET", key, 1) for key in keys])
        doomed = [key for key in keys if redis.node_for(key) == victim.url]
        healthy = [key for key in keys if key not in doomed]
        assert doomed
        assert healthy
        await victim.kill()
        try:
            with anyio.fail_after(5):
                assert await redis.execute_many([("INCR", key) for key in healthy]) == [2] * len(
                    healthy
                )
            with pytest.raises((triopipe.TransportError, triopipe.ClusterDownError)):
                await redis.incr(doomed[0])
            # Once a replica has taken over, every slot is served again.
            promoted = []
            with anyio.fail_after(30):
                while not promoted:
                    await anyio.sleep(0.1)
                    promoted = [n for n in await replicated.primaries() if n not in primaries]
            with anyio.fail_after(10):
                while True:
                    try:
                        await redis.get(doomed[0])
                        break
                    except (triopipe.TransportError, triopipe.ClusterDownError):
                        await anyio.sleep(0.1)
            assert redis.node_for(doomed[0]) == promoted[0].url
        finally:
            await victim.restart()
    await replicated.wait_stable()
