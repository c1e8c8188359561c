"""pytest fixtures that run throwaway Redis Clusters.

Meant to be re-exported by the ``triopipe`` pytest plugin (or listed in a
``conftest.py`` as ``pytest_plugins = ["triopipe.testing._cluster_fixtures"]``).
The fixtures:

``redis_cluster`` (function scope, async)
    A fresh :class:`~triopipe.testing.RedisCluster` of 3 masters for this
    test alone, for tests that reshard, fail over or kill nodes. Runs in the
    test's anyio backend.
``redis_session_cluster`` (session scope)
    One :class:`~triopipe.testing.RedisClusterProcesses` of 3 masters shared
    by the whole session; tests must not change its layout or stop nodes.
``redis_cluster_urls`` (function scope)
    The node URLs of the shared session cluster, every master emptied
    first (``FLUSHALL`` over a plain socket).

Like the server fixtures, this module never imports the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from ._cluster import (
    RedisCluster,
    RedisClusterProcesses,
    redis_cluster,
    redis_cluster_processes,
)

__all__ = [
    "CLUSTER_MASTERS",
    "redis_cluster_fixture",
    "redis_cluster_urls",
    "redis_session_cluster",
]

#: How many masters the cluster fixtures run.
CLUSTER_MASTERS = 3


@pytest.fixture(name="redis_cluster")
async def redis_cluster_fixture() -> AsyncIterator[RedisCluster]:
    """A fresh throwaway Redis Cluster (3 masters) for this test alone."""
    async with redis_cluster(masters=CLUSTER_MASTERS) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_session_cluster() -> Iterator[RedisClusterProcesses]:
    """One Redis Cluster (3 masters) shared by the whole test session."""
    with redis_cluster_processes(masters=CLUSTER_MASTERS) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_urls(redis_session_cluster: RedisClusterProcesses) -> list[str]:
    """The node URLs of the shared session cluster, with every master emptied."""
    redis_session_cluster.wait_stable()
    for node in redis_session_cluster.primaries():
        node._flush()
    return redis_session_cluster.urls
