"""Pub/Sub over several servers: sharded pub/sub, a cluster, independent shards.

- ``ssubscribe``/``spublish`` on one server;
- on a cluster: classic ``subscribe``/``publish`` (any node), shard channels
  on the primaries of their slots, and a shard channel that keeps receiving
  across a migration of its slot (``CLUSTER SETSLOT``), with one gap;
- on independent shards: channels on the shard ``PUBLISH`` sends them to,
  patterns on every shard.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import anyio
import pytest
from helpers import NumberedFeed

import triopipe
from triopipe._routing import key_slot
from triopipe.testing import (
    RedisCluster,
    RedisClusterNode,
    RedisClusterProcesses,
    redis_cluster_processes,
)

pytestmark = pytest.mark.usefixtures("anyio_backend")


async def _next(sub: triopipe.Subscription) -> triopipe.Message | triopipe.Gap:
    with anyio.fail_after(5):
        return await sub.__anext__()


async def _received(sub: triopipe.Subscription, count: int) -> set[tuple[bytes, bytes]]:
    items = [await _next(sub) for _ in range(count)]
    assert all(isinstance(item, triopipe.Message) for item in items)
    return {(item.channel, item.data) for item in items if isinstance(item, triopipe.Message)}


def _two_per_server(prefix: str, server_of: Callable[[str], str]) -> list[str]:
    """Random channel names, two on each server (as ``server_of`` places them)."""
    by_server: dict[str, list[str]] = {}
    for n in range(1000):
        channel = f"{prefix}:{random.random()}:{n}"
        names = by_server.setdefault(server_of(channel), [])
        if len(names) < 2:
            names.append(channel)
    return [channel for names in by_server.values() for channel in names]


async def test_shard_channels_on_one_server(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as admin,
        redis.ssubscribe("s:{a}", "s:{b}") as sub,
    ):
        assert sub.shard_channels == {b"s:{a}", b"s:{b}"}
        assert await redis.spublish("s:{a}", "one") == 1
        assert await _next(sub) == triopipe.Message(b"s:{a}", b"one")
        await sub.sunsubscribe("s:{a}")
        assert sub.shard_channels == {b"s:{b}"}
        assert await redis.spublish("s:{a}", "none") == 0
        # Shard channels are resubscribed too.
        await admin.execute("CLIENT", "KILL", "TYPE", "pubsub")
        assert isinstance(await _next(sub), triopipe.Gap)
        assert sub.shard_channels == {b"s:{b}"}
        assert await redis.spublish("s:{b}", "two") == 1
        assert await _next(sub) == triopipe.Message(b"s:{b}", b"two")


@pytest.fixture
async def cluster(redis_session_cluster: RedisClusterProcesses) -> RedisCluster:
    """The session's cluster (a test that moves a slot moves it back)."""
    cluster = RedisCluster(redis_session_cluster)
    await cluster.wait_stable()
    return cluster


async def test_pubsub_on_a_cluster(cluster: RedisCluster) -> None:
    channels = [f"c:{random.random()}:{n}" for n in range(6)]
    async with triopipe.open_cluster_client(cluster.urls[0]) as redis:
        shard_channels = _two_per_server("s", redis.node_for)
        assert len({redis.node_for(channel) for channel in shard_channels}) == 3
        async with (
            redis.subscribe(*channels, patterns=["p.*"]) as sub,
            redis.ssubscribe(*shard_channels) as shard_sub,
        ):
            assert sub.channels == {c.encode() for c in channels}
            assert shard_sub.shard_channels == {c.encode() for c in shard_channels}
            # A cluster spreads PUBLISH to every node: any node reaches them
            # (the count is of the receivers on the node that took it).
            for channel in channels:
                await redis.publish(channel, "hi")
            assert await _received(sub, len(channels)) == {(c.encode(), b"hi") for c in channels}
            await redis.publish("p.x", "pattern")
            assert await _next(sub) == triopipe.Message(b"p.x", b"pattern", b"p.*")
            for channel in shard_channels:
                assert await redis.spublish(channel, "shard") == 1
            assert await _received(shard_sub, len(shard_channels)) == {
                (c.encode(), b"shard") for c in shard_channels
            }
            await shard_sub.sunsubscribe()
            assert shard_sub.shard_channels == frozenset()
            assert await redis.spublish(shard_channels[0], "gone") == 0


async def _migrate(
    cluster: RedisCluster, slot: int, source: RedisClusterNode, target: RedisClusterNode
) -> None:
    """Move ``slot`` and its keys from ``source`` to ``target`` (as ``redis-cli`` would)."""
    async with (
        triopipe.open_client(source.url) as on_source,
        triopipe.open_client(target.url) as on_target,
    ):
        await on_target.execute("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        await on_source.execute("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        while keys := await on_source.execute("CLUSTER", "GETKEYSINSLOT", slot, 100):
            await on_source.execute(
                "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys
            )
        await on_target.execute("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        await on_source.execute("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        for node in await cluster.primaries():
            if node is not source and node is not target:
                async with triopipe.open_client(node.url) as other:
                    await other.execute("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)


async def test_a_shard_channel_follows_a_slot_migration(cluster: RedisCluster) -> None:
    channel = f"moving:{random.random()}"
    slot = key_slot(channel)
    feed = NumberedFeed()
    published: list[tuple[int, float, int]] = []  # (number, sent at, receivers)
    async with triopipe.open_cluster_client(cluster.urls[0]) as redis:
        source = next(n for n in cluster.nodes if n.url == redis.node_for(channel))
        target = next(n for n in await cluster.primaries() if n is not source)

        async def publish() -> None:
            for number in range(300):
                if number == 100:
                    await _migrate(cluster, slot, source, target)
                started = time.time()
                published.append((number, started, await redis.spublish(channel, number)))
                await anyio.sleep(0.002)
            for _ in range(500):  # until the subscription is back
                if await redis.spublish(channel, "end"):
                    return
                await anyio.sleep(0.01)

        try:
            async with redis.ssubscribe(channel) as sub:
                with anyio.fail_after(30):
                    async with anyio.create_task_group() as task_group:
                        task_group.start_soon(feed.consume, sub)
                        task_group.start_soon(publish)
                assert redis.node_for(channel) == target.url
                assert sub.shard_channels == {channel.encode()}
        finally:
            await _migrate(cluster, slot, target, source)
            await cluster.wait_stable()
    # One gap, for the move, reported once, in its place: the old owner
    # stopped sending, the new one confirmed.
    assert len(feed.gaps) == 1
    before, gap = feed.gaps[0]
    assert isinstance(gap.error, triopipe.MovedError)
    assert gap.error.slot == slot
    assert gap.lost_at <= gap.resubscribed_at
    received = set(feed.received)
    assert feed.received == sorted(received)
    assert all(number < 100 for number in feed.received[:before])
    assert set(range(100)) <= received
    assert {n for n, _, receivers in published if receivers} <= received
    # It kept receiving from the new owner everything sent after the gap.
    after = {n for n, started, _ in published if started > gap.resubscribed_at}
    assert after
    assert after <= received


async def test_a_stale_map_is_corrected_by_moved(cluster: RedisCluster) -> None:
    channel = f"stale:{random.random()}"
    slot = key_slot(channel)
    async with triopipe.open_cluster_client(cluster.urls[0]) as redis:
        source = next(n for n in cluster.nodes if n.url == redis.node_for(channel))
        target = next(n for n in await cluster.primaries() if n is not source)
        await _migrate(cluster, slot, source, target)
        try:
            assert redis.node_for(channel) == source.url  # the map is stale
            async with redis.ssubscribe(channel) as sub:
                # MOVED from the old owner: subscribed on the new one.
                assert sub.shard_channels == {channel.encode()}
                assert redis.node_for(channel) == target.url
                assert redis.statistics().moved >= 1
                async with triopipe.open_client(target.url) as on_target:
                    assert await on_target.spublish(channel, "here") == 1
                assert await _next(sub) == triopipe.Message(channel.encode(), b"here")
        finally:
            await _migrate(cluster, slot, target, source)
            await cluster.wait_stable()


@pytest.fixture(scope="module")
def leaving_processes() -> Iterator[RedisClusterProcesses]:
    """A cluster whose primaries may be left without slots (and stay primaries)."""
    with redis_cluster_processes(masters=3, cluster_allow_replica_migration="no") as processes:
        yield processes


async def test_a_node_leaving_the_map_hands_its_channels_over(
    leaving_processes: RedisClusterProcesses,
) -> None:
    cluster = RedisCluster(leaving_processes)
    await cluster.wait_stable()
    channel = f"leaving:{random.random()}"
    async with triopipe.open_cluster_client(cluster.urls[0]) as redis:
        leaving = next(n for n in cluster.nodes if n.url == redis.node_for(channel))
        heir = next(n for n in await cluster.primaries() if n is not leaving)
        async with redis.subscribe(channel) as sub:
            # Every slot of the node to the heir (the cluster is this test's:
            # nothing moves back).
            async with triopipe.open_client(leaving.url) as on_leaving:
                ranges = await on_leaving.execute("CLUSTER", "SLOTS")
            owned = [
                slot
                for start, end, primary, *_ in ranges
                if primary[2] in (leaving.node_id, leaving.node_id.encode())
                for slot in range(start, end + 1)
            ]
            # The heir's epoch above all first: the old owner's gossip, still
            # claiming the slots, must not win them back. The old owner gives
            # them up before the heir claims them: a node that sees all its
            # slots taken by gossip turns into a replica of the taker.
            async with triopipe.open_client(heir.url) as on_heir:
                await on_heir.execute("CLUSTER", "BUMPEPOCH")
            for node in [leaving, heir, *(n for n in cluster.nodes if n not in (heir, leaving))]:
                async with triopipe.open_client(node.url) as client:
                    await client.execute_many(
                        [("CLUSTER", "SETSLOT", slot, "NODE", heir.node_id) for slot in owned]
                    )
            await cluster.wait_stable()
            # The node serves no slot: the client retires it and closes its
            # connections, the subscription's among them.
            await redis.refresh()
            gap = await _next(sub)
            assert isinstance(gap, triopipe.Gap)
            assert isinstance(gap.error, triopipe.MovedError)
            assert redis.node_for(channel) == heir.url
            assert sub.channels == {channel.encode()}
            await redis.publish(channel, "still here")
            assert await _next(sub) == triopipe.Message(channel.encode(), b"still here")


async def test_pubsub_on_independent_shards(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        channels = _two_per_server("c", redis.shard_for)
        assert len({redis.shard_for(c) for c in channels}) == len(redis_shard_urls) > 1
        async with (
            redis.subscribe(*channels, patterns=["p.*"]) as sub,
            redis.ssubscribe(*channels) as shard_sub,
        ):
            assert sub.channels == {c.encode() for c in channels}
            assert sub.patterns == {b"p.*"}  # on every shard
            for channel in channels:
                # PUBLISH goes to the shard the channel hashes to, where the
                # subscription put it.
                assert await redis.publish(channel, "hi") == 1
                assert await redis.spublish(channel, "shard") == 1
            assert await _received(sub, len(channels)) == {(c.encode(), b"hi") for c in channels}
            assert await _received(shard_sub, len(channels)) == {
                (c.encode(), b"shard") for c in channels
            }
            for name in ("p.1", "p.2", "p.3"):
                assert await redis.publish(name, "x") == 1
                assert await _next(sub) == triopipe.Message(name.encode(), b"x", b"p.*")
            await sub.unsubscribe(*channels[:4])
            assert sub.channels == {c.encode() for c in channels[4:]}
            await sub.punsubscribe()
            assert sub.patterns == frozenset()
