"""Several throwaway servers at once (redis_servers, redis_server_processes) and their fixtures."""

from __future__ import annotations

import socket

import pytest

from triopipe.testing import (
    RedisServer,
    RedisServerError,
    RedisServerProcess,
    redis_server_processes,
    redis_servers,
)

from .raw_resp import assert_refused, command, process_exists


async def test_servers_start_together_and_stop_on_exit() -> None:
    async with redis_servers(3, maxclients=50) as servers:
        assert len(servers) == 3
        assert all(isinstance(server, RedisServer) for server in servers)
        assert len({server.port for server in servers}) == 3
        assert len({server.directory for server in servers}) == 3
        for server in servers:
            assert await command(server.port, "PING") == b"PONG"
            assert await command(server.port, "CONFIG", "GET", "maxclients") == [
                b"maxclients",
                b"50",
            ]
        pids = [server.pid for server in servers]
        directories = [server.directory for server in servers]
    assert not any(process_exists(pid) for pid in pids)
    assert not any(directory.exists() for directory in directories)
    for server in servers:
        await assert_refused(server.port)


async def test_one_server_failing_to_start_stops_the_others() -> None:
    with pytest.raises(RedisServerError, match="Bad directive"):
        async with redis_servers(2, no_such_setting="x"):
            pass


async def test_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        async with redis_servers(0):
            pass
    with pytest.raises(ValueError, match="at least 1"), redis_server_processes(0):
        pass


def test_blocking_servers_start_together_and_stop_on_exit() -> None:
    with redis_server_processes(2) as servers:
        assert all(isinstance(server, RedisServerProcess) for server in servers)
        assert len({server.port for server in servers}) == 2
        for server in servers:
            with socket.create_connection((server.host, server.port), timeout=5) as sock:
                sock.sendall(b"PING\r\n")
                assert sock.recv(100) == b"+PONG\r\n"
        pids = [server.pid for server in servers]
        directories = [server.directory for server in servers]
    assert not any(process_exists(pid) for pid in pids)
    assert not any(directory.exists() for directory in directories)


async def test_shard_fixtures(
    redis_shards: list[RedisServer], redis_shard_urls: list[str]
) -> None:
    assert len(redis_shards) == 3
    assert all(server.running for server in redis_shards)
    assert len(redis_shard_urls) == 3
    assert not {server.url for server in redis_shards} & set(redis_shard_urls)
    for url in redis_shard_urls:
        port = int(url.rsplit(":", 1)[1])
        assert await command(port, "DBSIZE") == 0
        await command(port, "SET", "left", "behind")


def test_shard_urls_are_emptied_for_each_test(redis_shard_urls: list[str]) -> None:
    # Runs after test_shard_fixtures (same module), which left a key behind.
    for url in redis_shard_urls:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"DBSIZE\r\n")
            assert sock.recv(100) == b":0\r\n"
