"""Commands newer than triopipe's command table, on the servers that have them.

The table is generated from the command specifications of Valkey 8.0 (the
Redis 7.2 command set). Hash field expiry (Redis 7.4, Valkey 9.0) is the
first family beyond it: every client asks the server what the commands are
(``COMMAND INFO``) and where their keys are, once, then runs them, in
batches and transactions too. On servers without these commands the tests
are skipped, saying so.
"""

from __future__ import annotations

import pytest

import triopipe

pytestmark = pytest.mark.requires_server(redis="7.4", valkey="9.0")


async def expire_a_field(
    redis: triopipe.Client | triopipe.ShardedClient | triopipe.ClusterClient,
) -> None:
    await redis.hset("user:{1}", mapping={"name": "ada", "session": "s3cr3t"})
    assert await redis.execute("HEXPIRE", "user:{1}", 100, "FIELDS", 1, "session") == [1]
    ttl = await redis.execute("HTTL", "user:{1}", "FIELDS", 2, "session", "name")
    assert 0 < ttl[0] <= 100
    assert ttl[1] == -1  # no expiry on that field
    assert await redis.execute("HPERSIST", "user:{1}", "FIELDS", 1, "session") == [1]


async def test_hash_field_expiry_on_one_server(redis_client: triopipe.Client) -> None:
    await expire_a_field(redis_client)
    # In a batch and a transaction too: the server says how to run them.
    async with redis_client.batch() as batch:
        ttl = batch.execute("HTTL", "user:{1}", "FIELDS", 1, "session")
    assert ttl.result() == [-1]
    async with redis_client.transaction() as tx:
        set_expiry = tx.execute("HPEXPIRE", "user:{1}", 50_000, "FIELDS", 1, "name")
    assert set_expiry.result() == [1]


async def test_hash_field_expiry_through_the_sharded_client(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        await expire_a_field(redis)


async def test_hash_field_expiry_through_the_cluster_client(redis_cluster_urls: list[str]) -> None:
    async with triopipe.open_cluster_client(redis_cluster_urls) as redis:
        await expire_a_field(redis)
