"""``triopipe pump --wait-replicas/--wait-aof``: every window confirmed durable, or counted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from helpers import Control

from triopipe.testing import RedisServerProcess, redis_server_process, server_info

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
LINES = b"".join(b"SET k:%d %d\n" % (i, i) for i in range(25_000))  # 3 windows


def _pump(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "triopipe", "pump", "--json", *args],
        input=LINES,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def primary_with_replica() -> Iterator[RedisServerProcess]:
    with (
        redis_server_process(repl_diskless_sync_delay=0) as primary,  # sync at once
        redis_server_process(replicaof=f"127.0.0.1 {primary.port}") as replica,
    ):
        Control(primary.url).execute_command("SET", "probe", "1")
        deadline = time.monotonic() + 20
        while Control(replica.url).get("probe") != b"1":  # it syncs in its own time
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.02)
        yield primary


@BACKENDS
def test_every_window_confirmed_by_the_replica(
    primary_with_replica: RedisServerProcess, backend: str
) -> None:
    result = _pump("--url", primary_with_replica.url, "--wait-replicas", "1",
                   "--backend", backend)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["acknowledged"] == 25_000
    assert (report["windows"], report["unconfirmed_windows"]) == (3, 0)
    assert b"3 of 3 windows confirmed" in result.stderr


def test_windows_short_of_replicas_are_reported(
    primary_with_replica: RedisServerProcess,
) -> None:
    result = _pump("--url", primary_with_replica.url, "--wait-replicas", "2",
                   "--wait-timeout", "20")  # fmt: skip
    assert result.returncode == 8, result.stderr
    report = json.loads(result.stdout)
    assert report["acknowledged"] == 25_000
    assert report["unconfirmed_windows"] == 3
    assert b"unconfirmed line 1 to line 10000: acknowledged by 1 of 2 replicas" in result.stderr


def test_wait_aof(tmp_path: object) -> None:
    info = server_info()
    if info.kind == "redis" and info.version < (7, 2):
        pytest.skip(f"WAITAOF is new in Redis 7.2; this server is {info.kind} {info.version}")
    with redis_server_process(appendonly=True) as server:
        result = _pump("--url", server.url, "--wait-aof")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["unconfirmed_windows"] == 0
    with redis_server_process() as server:  # no append-only file: nothing confirmed
        result = _pump("--url", server.url, "--wait-aof")
        assert result.returncode == 8, result.stderr
        assert json.loads(result.stdout)["unconfirmed_windows"] == 3


def test_waits_on_every_shard(redis_shard_urls: list[str]) -> None:
    # The shards have no replicas: WAIT 0 confirms every window, WAIT 1 none.
    confirmed = _pump("--shards", *redis_shard_urls, "--wait-replicas", "0")
    assert confirmed.returncode == 0, confirmed.stderr
    assert json.loads(confirmed.stdout)["windows"] == 3
    assert b"3 of 3 windows confirmed" in confirmed.stderr
    short = _pump("--shards", *redis_shard_urls, "--wait-replicas", "1", "--wait-timeout", "10")
    assert short.returncode == 8, short.stderr
    report = json.loads(short.stdout)
    assert (report["acknowledged"], report["unconfirmed_windows"]) == (25_000, 3)
    assert b"acknowledged by 0 of 1 replicas on redis://127.0.0.1:" in short.stderr
    assert sum(int(Control(url).dbsize()) for url in redis_shard_urls) == 25_000  # type: ignore[call-overload]


def test_waits_on_every_cluster_primary(redis_cluster_urls: list[str]) -> None:
    result = _pump("--cluster", *redis_cluster_urls, "--wait-replicas", "0")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["acknowledged"], report["windows"], report["unconfirmed_windows"]) == (
        25_000,
        3,
        0,
    )
