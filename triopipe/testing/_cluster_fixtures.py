"""pytest fixtures that run throwaway Redis Clusters (or use an existing one).

Synchronous like the server fixtures, so tests of every runner can use them.
A binary that cannot form a cluster (the harness needs Redis 7.0 or later, or
any Valkey) makes the tests that use these fixtures skip, saying so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._binary import server_info
from ._cluster import RedisCluster, RedisClusterProcesses, redis_cluster_processes
from ._fixtures import prepared
from ._plugin_settings import settings, skip_without_binary

__all__ = [
    "CLUSTER_MASTERS",
    "redis_cluster_fixture",
    "redis_cluster_urls",
    "redis_session_cluster",
]

#: How many masters the cluster fixtures run.
CLUSTER_MASTERS = 3


def _skip_without_cluster(config: pytest.Config, fixture: str) -> None:
    skip_without_binary(config, fixture)
    reason = server_info().unmet(cluster=True)
    if reason is not None:
        pytest.skip(f"{fixture}: {reason}")


@pytest.fixture(name="redis_cluster")
def redis_cluster_fixture(request: pytest.FixtureRequest) -> Iterator[RedisCluster]:
    """A fresh throwaway Redis Cluster (3 masters) for this test alone."""
    _skip_without_cluster(request.config, "redis_cluster")
    with redis_cluster_processes(masters=CLUSTER_MASTERS) as processes:
        yield RedisCluster(processes)


@pytest.fixture(scope="session")
def redis_session_cluster(request: pytest.FixtureRequest) -> Iterator[RedisClusterProcesses]:
    """One Redis Cluster (3 masters) shared by the whole test session."""
    _skip_without_cluster(request.config, "redis_session_cluster")
    with redis_cluster_processes(masters=CLUSTER_MASTERS) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_urls(request: pytest.FixtureRequest) -> list[str]:
    """The node URLs of the shared cluster (or the existing one given), every master emptied."""
    existing = settings(request.config).cluster
    if existing is not None:
        return prepared(existing.prepare)
    cluster: RedisClusterProcesses = request.getfixturevalue("redis_session_cluster")
    cluster.wait_stable()
    for node in cluster.primaries():
        node.flush()
    return cluster.urls
