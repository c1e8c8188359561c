"""Fixtures of the blocking facade's tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from triopipe.testing import redis_server_process


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    """The event loop the facade runs its async client on.

    These are plain (sync) tests: the top conftest marks only ``async def``
    tests for the two backends, so the facade's own backend is parametrised.
    """
    return str(request.param)


@pytest.fixture(scope="module")
def shard_urls() -> Iterator[list[str]]:
    """Two throwaway servers for the sharded client, one pair per test module."""
    with redis_server_process() as first, redis_server_process() as second:
        yield [first.url, second.url]


@pytest.fixture
def no_thread_left() -> Iterator[None]:
    """Fail the test if a thread it started is still alive at its end."""
    before = set(threading.enumerate())
    yield
    left = [thread for thread in threading.enumerate() if thread not in before]
    assert left == []
