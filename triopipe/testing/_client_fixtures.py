"""Ready clients as pytest fixtures, for tests of every runner.

Theory of operation: a :class:`~triopipe.Client` owns a task group, which
must be entered and left by the same task, on the event loop of the test.
How a runner runs an async fixture decides how that can be done:

* anyio's plugin runs an async generator fixture and the test in one task of
  one event loop, and pytest-trio runs the fixture in a task of the test's
  nursery from setup to teardown: there, ``redis_client`` is a plain async
  generator fixture that opens the client around its ``yield``;
* pytest-asyncio runs the fixture's setup and its teardown as two separate
  tasks, and in strict mode handles only the fixtures it was told about. For
  its tests (:func:`pytest_asyncio.is_async_test`) the plugin's
  ``pytest_fixture_setup`` hook resolves ``redis_client`` to
  ``_triopipe_asyncio_redis_client`` instead: a pytest-asyncio fixture that
  starts a *host task* on the test's loop, which opens the client, hands it
  over, and waits; teardown tells the host to leave the block and waits for
  it. The task group is thus entered and left by the host task alone.

``redis_sync_client`` needs no event loop in the test: the blocking facade
runs its own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .._client import Client, open_client
from ..sync import SyncClient
from ..sync import open_client as open_sync_client
from ._binary import ServerInfo
from ._plugin_settings import binary_info, settings

__all__ = [
    "ASYNCIO_CLIENT_FIXTURE",
    "asyncio_client_lookup",
    "is_pytest_asyncio_test",
    "open_redis_client",
    "redis_server_info",
    "redis_sync_client",
]

#: The pytest-asyncio flavour of ``redis_client`` (registered when pytest-asyncio is installed).
ASYNCIO_CLIENT_FIXTURE = "_triopipe_asyncio_redis_client"


async def open_redis_client(redis_url: str) -> AsyncIterator[Client]:
    """A client connected to ``redis_url``, closed after the test (anyio and pytest-trio)."""
    async with open_client(redis_url) as client:
        yield client


async def _hosted_asyncio_client(redis_url: str) -> AsyncIterator[Client]:
    """The same client for pytest-asyncio: opened and closed by a host task."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[Client] = loop.create_future()
    leave = asyncio.Event()

    async def host() -> None:
        try:
            async with open_client(redis_url) as client:
                ready.set_result(client)
                await leave.wait()
        except BaseException as exc:
            if ready.done():
                raise
            if isinstance(exc, asyncio.CancelledError):
                ready.cancel()
            else:
                ready.set_exception(exc)

    task = loop.create_task(host())
    try:
        yield await ready
    finally:
        leave.set()
        await task


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - pytest-asyncio is optional
    _HAVE_PYTEST_ASYNCIO = False
else:
    _HAVE_PYTEST_ASYNCIO = True
    asyncio_redis_client = pytest_asyncio.fixture(name=ASYNCIO_CLIENT_FIXTURE)(
        _hosted_asyncio_client
    )
    __all__ += ["asyncio_redis_client"]


def is_pytest_asyncio_test(item: pytest.Item) -> bool:
    """Whether pytest-asyncio runs ``item`` (and so runs its async fixtures)."""
    return _HAVE_PYTEST_ASYNCIO and bool(pytest_asyncio.is_async_test(item))


def _from_asyncio_fixture(request: pytest.FixtureRequest, **_: Any) -> Any:
    return request.getfixturevalue(ASYNCIO_CLIENT_FIXTURE)


def asyncio_client_lookup(request: pytest.FixtureRequest) -> Any:
    """A fixture function that resolves to the pytest-asyncio flavour of ``redis_client``."""
    return functools.partial(_from_asyncio_fixture, request)


@pytest.fixture
def redis_sync_client(redis_url: str) -> Iterator[SyncClient]:
    """A blocking client (:mod:`triopipe.sync`) connected to ``redis_url``."""
    with open_sync_client(redis_url) as client:
        yield client


@pytest.fixture(scope="session")
def redis_server_info(request: pytest.FixtureRequest) -> ServerInfo:
    """What the server behind ``redis_url`` is: kind, version, TLS, cluster."""
    existing = settings(request.config).server
    if existing is not None:
        return existing.info()
    info = binary_info()
    if isinstance(info, str):
        pytest.fail(info, pytrace=False)
    return info
