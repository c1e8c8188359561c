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

This module never imports the client, so the fixtures load even while the
client is broken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from ._server import RedisServer, RedisServerProcess, redis_server, redis_server_process

__all__ = ["redis_server_fixture", "redis_session_server", "redis_url"]


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
    try:
        redis_session_server._flush()
    except OSError as exc:
        # Bring it back for the tests that follow, but fail this one loudly:
        # an earlier test broke the shared server.
        redis_session_server.restart()
        raise RuntimeError(
            f"the shared Redis server at {redis_session_server.url} was not answering "
            f"({exc!r}) and has been restarted; a test must not stop or shut down the "
            "shared server: use the redis_server fixture for that"
        ) from exc
    return redis_session_server.url
