"""``triopipe copy`` against real servers: every key copied, counted and verified.

The command line runs in a subprocess, on each event loop (``--backend``).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import anyio
import pytest
from cli_runner import run_breaking_links, triopipe
from helpers import Control
from keyspace import keyspace, run_commands

from triopipe.testing import RedisServer

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
# Slower tests run on one event loop each, both loops being covered.
ON_TRIO = pytest.mark.parametrize("backend", ["trio"])
ON_ASYNCIO = pytest.mark.parametrize("backend", ["asyncio"])


def report(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert result.stdout, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def fill(url: str, count: int) -> None:
    """Keys of every common type, some with a time to live, and a big set and hash."""
    commands: list[tuple[Any, ...]] = []
    for i in range(count):
        commands.append(("SET", f"str:{i}", f"value {i}"))
        if i % 10 == 0:
            commands.append(("HSET", f"hash:{i}", "a", i, "b", "x" * (i % 50)))
            commands.append(("PEXPIRE", f"hash:{i}", 600_000))
            commands.append(("RPUSH", f"list:{i % 7}", i))
            commands.append(("ZADD", "zset", i, f"m{i}"))
            commands.append(("XADD", "stream", f"{i + 1}-0", "n", i))
    # Big enough for hash tables: their DUMP order differs between servers.
    commands.append(("SADD", "big-set", *[f"m{i}" for i in range(2000)]))
    commands.append(("HSET", "big-hash", *[part for i in range(900) for part in (f"f{i}", i)]))
    replies = run_commands(url, commands)
    assert not [reply for reply in replies if isinstance(reply, Exception)]


@BACKENDS
def test_copy_from_a_server_to_a_cluster_and_back_keeps_every_key(
    redis_url: str,
    redis_cluster_urls: list[str],
    redis_server: RedisServer,
    backend: str,
) -> None:
    fill(redis_url, 12_000)
    original = keyspace([redis_url])
    assert len(original) == 12_000 + 1_200 + 7 + 4
    there = triopipe(
        "copy", redis_url, ",".join(redis_cluster_urls), "--target-cluster", "--verify",
        "--json", "--backend", backend,
    )  # fmt: skip
    assert there.returncode == 0, there.stderr
    counts = report(there)
    assert counts["keys"] == counts["restores"] == counts["acknowledged"] == len(original)
    assert (counts["verified_sample"], counts["different"]) == (1000, 0)
    assert keyspace(redis_cluster_urls) == original
    assert all(Control(url).dbsize() for url in redis_cluster_urls)

    back_url = redis_server.url
    back = triopipe(
        "copy", redis_cluster_urls[0], back_url, "--source-cluster", "--verify",
        "--backend", backend, "--workers", "2", subprocess_=True,
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert b"triopipe copy: cluster at " in back.stderr
    assert f"copied {len(original):,} keys matching '*'".encode() in back.stderr
    assert keyspace([back_url]) == original


@ON_TRIO
def test_existing_keys_are_kept_and_counted_unless_replaced(
    redis_shard_urls: list[str], backend: str
) -> None:
    source, target = redis_shard_urls[0], redis_shard_urls[1]
    run_commands(source, [("SET", f"user:{i}", i) for i in range(500)] + [("SET", "other", 1)])
    run_commands(target, [("SET", "user:7", "old"), ("SET", "user:8", "old")])
    args = ("copy", source, target, "--match", "user:*", "--json", "--backend", backend)
    kept = triopipe(*args, "--verify", "--verify-sample", "600")
    # Both sides have 500 user keys, but two of the target's differ.
    assert kept.returncode == 9, kept.stderr
    counts = report(kept)
    assert (counts["keys"], counts["acknowledged"], counts["kept_existing"]) == (500, 498, 2)
    assert (counts["verified_sample"], counts["different"]) == (500, 2)
    assert Control(target).get("user:7") == b"old"
    assert Control(target).get("other") is None

    replaced = triopipe(*args, "--replace", "--verify")
    assert replaced.returncode == 0, replaced.stderr
    assert report(replaced)["acknowledged"] == 500
    assert keyspace([target]) == keyspace([source], match="user:*")


@ON_ASYNCIO
def test_copy_with_workers_by_slot_between_shards_and_a_server(
    redis_url: str, redis_shard_urls: list[str], redis_server: RedisServer, backend: str
) -> None:
    fill(redis_url, 6_000)
    original = keyspace([redis_url])
    shards = ",".join(redis_shard_urls)
    result = triopipe(
        "copy", redis_url, shards, "--target-shards", "--workers", "2", "--verify", "--json",
        "--backend", backend, subprocess_=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts = report(result)
    assert counts["keys"] == counts["acknowledged"] == len(original)
    assert counts["different"] == 0
    assert keyspace(redis_shard_urls) == original

    # Three source servers, two workers: each worker takes whole servers.
    back = triopipe(
        "copy", shards, redis_server.url, "--source-shards", "--workers", "2", "--verify",
        "--json", "--backend", backend, subprocess_=True,
    )  # fmt: skip
    assert back.returncode == 0, back.stderr
    counts = report(back)
    assert counts["source"] == f"{len(redis_shard_urls)} shards: {', '.join(redis_shard_urls)}"
    assert counts["target"] == f"{redis_server.url} (one server)"
    assert counts["keys"] == counts["acknowledged"] == len(original)
    assert (counts["verified_sample"], counts["different"]) == (1000, 0)
    assert keyspace([redis_server.url]) == original


def test_copy_refuses_bad_urls_and_unreachable_servers(redis_url: str) -> None:
    bad = triopipe("copy", redis_url, "http://nowhere")
    assert bad.returncode == 2
    assert b"unsupported URL scheme" in bad.stderr
    several = triopipe("copy", redis_url, f"{redis_url},{redis_url}")
    assert several.returncode == 2
    assert b"several URLs for one server" in several.stderr
    unreachable = triopipe("copy", "redis://:hunter2@127.0.0.1:1", redis_url)
    assert unreachable.returncode == 4
    assert b"cannot connect" in unreachable.stderr
    assert b"hunter2" not in unreachable.stderr


def test_verify_compares_values_when_dump_payloads_differ(
    redis_url: str, redis_shard_urls: list[str]
) -> None:
    fill(redis_url, 10)
    target = redis_shard_urls[0]
    result = triopipe("copy", redis_url, target, "--match", "big-*", "--verify", "--json")
    assert result.returncode == 0, result.stderr
    counts = report(result)
    assert (counts["acknowledged"], counts["verified_sample"], counts["different"]) == (2, 2, 0)
    # Hash tables are serialised in their own order on each server.
    dumps = [run_commands(url, [("DUMP", "big-set")])[0] for url in (redis_url, target)]
    assert dumps[0] != dumps[1]
    assert keyspace([target]) == keyspace([redis_url], match="big-*")


async def test_a_source_link_broken_mid_copy_is_counted_and_exit_5(
    redis_url: str, redis_server: RedisServer, anyio_backend_name: str
) -> None:
    source = redis_server.url
    await anyio.to_thread.run_sync(fill, source, 150_000)
    args = ["copy", "{proxy}", redis_url, "--batch", "500", "--backend", anyio_backend_name]
    status, counts = await run_breaking_links(args, source, redis_url, 10_000)
    target = Control(redis_url)
    # The reads in flight failed; the scan too if it was waiting on the link.
    assert counts["unreadable"] == counts["unreadable_link_broken"] > 0
    assert counts["broken_scans"] in (0, 1)
    assert status == counts["exit_status"] == 5
    # Every key found was either restored, or counted as unreadable.
    assert counts["keys"] == counts["acknowledged"] + counts["unreadable"] + counts["gone"]
    assert counts["keys"] <= 150_000 + 15_000 + 7 + 4
    assert int(target.dbsize()) == counts["acknowledged"]  # type: ignore[call-overload]
