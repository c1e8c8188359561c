"""Ready clients as pytest fixtures, for tests of every runner.

Theory of operation: a :class:`~triopipe.Client` owns a task group, which
must be entered and left by the same task, on the event loop of the test.
How a runner runs an async fixture decides how that can be done:

* anyio's plugin runs an async generator fixture and the test in one task of
  one event loop, and pytest-trio runs the fixture in a task of the test's
  nursery from setup to teardown: for them, ``_triopipe_redis_client`` is a
  plain async generator fixture that opens the client around its ``yield``;
* pytest-asyncio runs a fixture's setup and its teardown as two separate
  tasks, and in strict mode runs only the fixtures declared with
  :func:`pytest_asyncio.fixture`. For its tests,
  ``_triopipe_asyncio_redis_client`` is such a fixture: it starts a *host
  task* on the test's loop, which opens the client, hands it over and waits;
  teardown tells the host to leave the block and waits for it. The task group
  is thus entered and left by the host task alone.

``redis_client`` itself is a synchronous fixture that asks for the flavour
that the test's runner can run (:meth:`pytest.FixtureRequest.getfixturevalue`),
and returns what the runner makes of it: the client, or for pytest-trio the
placeholder that pytest-trio replaces with the client inside the test's run.
So the same test works under all three, with only its marker changed.

``redis_sync_client`` needs no event loop in the test: the blocking facade
runs its own.
"""

from __future__ import annotations

import asyncio
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
    "CLIENT_FIXTURE",
    "redis_client",
    "redis_server_info",
    "redis_sync_client",
]

#: The flavour of ``redis_client`` for anyio's plugin and pytest-trio.
CLIENT_FIXTURE = "_triopipe_redis_client"
#: The pytest-asyncio flavour of ``redis_client`` (registered when pytest-asyncio is installed).
ASYNCIO_CLIENT_FIXTURE = "_triopipe_asyncio_redis_client"


@pytest.fixture(name=CLIENT_FIXTURE)
async def _redis_client(redis_url: str) -> AsyncIterator[Client]:
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


def _runner(request: pytest.FixtureRequest) -> str | None:
    """Which plugin runs the test: ``"asyncio"``, ``"trio"``, ``"anyio"`` or None."""
    item = request.node
    if _HAVE_PYTEST_ASYNCIO and pytest_asyncio.is_async_test(item):
        return "asyncio"
    if item.get_closest_marker("trio") is not None:
        return "trio"
    if "anyio_backend" in request.fixturenames:
        return "anyio"
    return None


@pytest.fixture
def redis_client(request: pytest.FixtureRequest) -> Any:
    """A :class:`~triopipe.Client` on ``redis_url``, for async tests of any runner."""
    runner = _runner(request)
    if runner == "asyncio":
        return request.getfixturevalue(ASYNCIO_CLIENT_FIXTURE)
    if runner is None:
        pytest.fail(
            "redis_client is an async client: use it in an async test run by anyio's "
            "plugin (@pytest.mark.anyio), pytest-asyncio (@pytest.mark.asyncio) or "
            "pytest-trio (@pytest.mark.trio); sync tests can use redis_sync_client",
            pytrace=False,
        )
    return request.getfixturevalue(CLIENT_FIXTURE)


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
