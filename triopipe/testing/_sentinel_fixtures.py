"""The pytest fixture that runs a throwaway Sentinel setup (primary, replicas, sentinels).

Synchronous like the other server fixtures, so tests of every runner can use
it. Fresh for each test: Sentinel tests fail over, kill and restart servers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._plugin_settings import skip_without_binary
from ._sentinel import RedisSentinel, redis_sentinel_processes

__all__ = ["redis_sentinel_fixture"]


@pytest.fixture(name="redis_sentinel")
def redis_sentinel_fixture(request: pytest.FixtureRequest) -> Iterator[RedisSentinel]:
    """A primary, 2 replicas and 3 sentinels (service ``mymaster``) for this test alone."""
    skip_without_binary(request.config, "redis_sentinel")
    with redis_sentinel_processes() as processes:
        yield RedisSentinel(processes)
