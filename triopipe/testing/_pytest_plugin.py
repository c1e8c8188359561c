"""pytest fixtures that run real ``redis-server`` processes.

Registered through the ``pytest11`` entry point ``triopipe``, so installing
triopipe is enough. The fixtures:

``redis_server`` (function scope, async)
    A fresh throwaway :class:`~triopipe.testing.RedisServer` for this test
    alone, for tests that stop, restart or kill it. Runs in the test's anyio
    backend (the test must be marked ``anyio``).
``redis_session_server`` (session scope)
    One :class:`~triopipe.testing.RedisServerProcess` shared by the whole
    session; cheap, but tests must not stop it or change its settings.
``redis_url`` (function scope)
    The URL of the shared session server, emptied first (``FLUSHALL`` and
    ``SCRIPT FLUSH`` over a plain socket) so that each test starts clean.
``redis_shards`` (function scope, async)
    Three fresh throwaway servers (a list of
    :class:`~triopipe.testing.RedisServer`), started in parallel, for tests
    that stop or kill a shard.
``redis_session_shards`` (session scope)
    Three :class:`~triopipe.testing.RedisServerProcess` shared by the whole
    session, started in parallel; tests must not stop them.
``redis_shard_urls`` (function scope)
    The URLs of the three shared shard servers, each emptied first like
    ``redis_url``.
``redis_cluster``, ``redis_session_cluster``, ``redis_cluster_urls``
    The same for Redis Clusters (a fresh cluster per test, one per session,
    and the session cluster's URLs, emptied first): see
    ``triopipe.testing._cluster_fixtures``.

This module never imports the client, so the fixtures load even while the
client is broken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from ._cluster_fixtures import redis_cluster_fixture as redis_cluster_fixture
from ._cluster_fixtures import redis_cluster_urls as redis_cluster_urls
from ._cluster_fixtures import redis_session_cluster as redis_session_cluster
from ._server import (
    RedisServer,
    RedisServerProcess,
    redis_server,
    redis_server_process,
    redis_server_processes,
    redis_servers,
)

__all__ = [
    "SHARDS",
    "redis_server_fixture",
    "redis_session_server",
    "redis_session_shards",
    "redis_shard_urls",
    "redis_shards_fixture",
    "redis_url",
]

#: How many servers the shard fixtures run.
SHARDS = 3


@pytest.fixture(name="redis_server")
async def redis_server_fixture() -> AsyncIterator[RedisServer]:
    """A fresh throwaway Redis server for this test alone."""
    async with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_session_server() -> Iterator[RedisServerProcess]:
    """One Redis server shared by the whole test session."""
    with redis_server_process() as server:
        yield server


@pytest.fixture
def redis_url(redis_session_server: RedisServerProcess) -> str:
    """The URL of the shared session server, with every database emptied."""
    return _cleaned(redis_session_server)


@pytest.fixture(name="redis_shards")
async def redis_shards_fixture() -> AsyncIterator[list[RedisServer]]:
    """Three fresh throwaway Redis servers for this test alone, started in parallel."""
    async with redis_servers(SHARDS) as servers:
        yield servers


@pytest.fixture(scope="session")
def redis_session_shards() -> Iterator[list[RedisServerProcess]]:
    """Three Redis servers shared by the whole test session."""
    with redis_server_processes(SHARDS) as servers:
        yield servers


@pytest.fixture
def redis_shard_urls(redis_session_shards: list[RedisServerProcess]) -> list[str]:
    """The URLs of the shared shard servers, each with every database emptied."""
    return [_cleaned(server) for server in redis_session_shards]


def _cleaned(server: RedisServerProcess) -> str:
    """Empty a shared server for the next test and return its URL."""
    try:
        server._flush()
    except OSError as exc:
        # Bring it back for the tests that follow, but fail this one loudly:
        # an earlier test broke the shared server.
        server.restart()
        raise RuntimeError(
            f"the shared Redis server at {server.url} was not answering "
            f"({exc!r}) and has been restarted; a test must not stop or shut down a "
            "shared server: use the redis_server or redis_shards fixture for that"
        ) from exc
    return server.url
