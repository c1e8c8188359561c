"""pytest fixtures for single servers and shards, and the URLs of shared ones.

Every fixture here is synchronous, so that tests of any runner (anyio's
plugin, pytest-asyncio, pytest-trio, or plain sync tests) can use it: a
server starts and stops in the fixture's own blocking code, and the async
face it yields (:class:`~triopipe.testing.RedisServer`) runs its blocking
steps in worker threads of whatever event loop the test runs on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from ._existing import ExistingServerError
from ._plugin_settings import settings, skip_without_binary
from ._server import (
    RedisServer,
    RedisServerProcess,
    redis_server_process,
    redis_server_processes,
)

__all__ = [
    "SHARDS",
    "prepared",
    "redis_server_fixture",
    "redis_session_server",
    "redis_session_shards",
    "redis_shard_urls",
    "redis_shards_fixture",
    "redis_url",
]

#: How many servers the shard fixtures run.
SHARDS = 3

_T = TypeVar("_T")


@pytest.fixture(name="redis_server")
def redis_server_fixture(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A fresh throwaway Redis server for this test alone."""
    skip_without_binary(request.config, "redis_server")
    with redis_server_process() as process:
        yield RedisServer(process)


@pytest.fixture(scope="session")
def redis_session_server(request: pytest.FixtureRequest) -> Iterator[RedisServerProcess]:
    """One Redis server shared by the whole test session."""
    skip_without_binary(request.config, "redis_session_server")
    with redis_server_process() as server:
        yield server


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of the shared server (or the existing one given), with every database emptied."""
    existing = settings(request.config).server
    if existing is not None:
        return prepared(existing.prepare)
    server: RedisServerProcess = request.getfixturevalue("redis_session_server")
    return _cleaned(server)


@pytest.fixture(name="redis_shards")
def redis_shards_fixture(request: pytest.FixtureRequest) -> Iterator[list[RedisServer]]:
    """Three fresh throwaway Redis servers for this test alone, started in parallel."""
    skip_without_binary(request.config, "redis_shards")
    with redis_server_processes(SHARDS) as processes:
        yield [RedisServer(process) for process in processes]


@pytest.fixture(scope="session")
def redis_session_shards(request: pytest.FixtureRequest) -> Iterator[list[RedisServerProcess]]:
    """Three Redis servers shared by the whole test session."""
    skip_without_binary(request.config, "redis_session_shards")
    with redis_server_processes(SHARDS) as servers:
        yield servers


@pytest.fixture
def redis_shard_urls(request: pytest.FixtureRequest) -> list[str]:
    """The URLs of the shared shard servers (or the existing ones given), each emptied."""
    existing = settings(request.config).shards
    if existing is not None:
        return [prepared(shard.prepare) for shard in existing]
    servers: list[RedisServerProcess] = request.getfixturevalue("redis_session_shards")
    return [_cleaned(server) for server in servers]


def prepared(prepare: Callable[[], _T]) -> _T:
    """Run an existing server's ``prepare``; a refusal fails the test at setup."""
    try:
        return prepare()
    except ExistingServerError as exc:
        refusal = str(exc)
    pytest.fail(refusal, pytrace=False)


def _cleaned(server: RedisServerProcess) -> str:
    """Empty a shared server for the next test and return its URL."""
    try:
        server.flush()
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
