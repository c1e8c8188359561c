"""pytest plugin: real Redis or Valkey servers, URLs and clients as fixtures.

Registered through the ``pytest11`` entry point ``triopipe``, so installing
triopipe is enough. It works for tests run by anyio's plugin, pytest-asyncio
and pytest-trio, and for plain sync tests: every fixture that starts servers
is synchronous, and the async client fixture adapts to the runner (see
``triopipe.testing._client_fixtures``). The fixtures, each described in
the docs' "Testing with real servers" page:

* server objects, started from the server binary: ``redis_server``,
  ``redis_shards``, ``redis_cluster`` and ``redis_sentinel`` (fresh for each
  test, which may stop or restart them); ``redis_session_server``, ``redis_session_shards``
  and ``redis_session_cluster`` (shared by the session);
* URLs of shared servers, emptied before each test: ``redis_url``,
  ``redis_shard_urls``, ``redis_cluster_urls``; with ``--redis-url``,
  ``--redis-shard-urls`` or ``--redis-cluster-url`` (or their environment
  variables) they point at existing servers instead;
* clients on ``redis_url``: ``redis_client`` (async) and
  ``redis_sync_client`` (blocking);
* ``redis_server_info``: what the server behind ``redis_url`` is.

The marker ``@pytest.mark.requires_server(tls=..., cluster=..., redis="7.4",
valkey="9.0")`` skips a test, with the reason, when the server it would use
lacks a capability; the report header names the server binary in use.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from . import _plugin_settings
from ._binary import ServerInfo
from ._client_fixtures import _redis_client as _redis_client
from ._client_fixtures import redis_client as redis_client
from ._client_fixtures import redis_server_info as redis_server_info
from ._client_fixtures import redis_sync_client as redis_sync_client
from ._cluster_fixtures import redis_cluster_fixture as redis_cluster_fixture
from ._cluster_fixtures import redis_cluster_urls as redis_cluster_urls
from ._cluster_fixtures import redis_session_cluster as redis_session_cluster
from ._fixtures import redis_server_fixture as redis_server_fixture
from ._fixtures import redis_session_server as redis_session_server
from ._fixtures import redis_session_shards as redis_session_shards
from ._fixtures import redis_shard_urls as redis_shard_urls
from ._fixtures import redis_shards_fixture as redis_shards_fixture
from ._fixtures import redis_url as redis_url
from ._sentinel_fixtures import redis_sentinel_fixture as redis_sentinel_fixture

# Defined only when pytest-asyncio is installed.
with contextlib.suppress(ImportError):
    from ._client_fixtures import asyncio_redis_client as asyncio_redis_client

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_report_header",
    "pytest_runtest_setup",
]

_MARKER = "requires_server"
_REQUIREMENTS = ("tls", "cluster", "redis", "valkey")

# Fixtures whose servers come from the binary even when existing ones are given.
_BINARY_FIXTURES = frozenset(
    {
        "redis_server",
        "redis_session_server",
        "redis_shards",
        "redis_session_shards",
        "redis_cluster",
        "redis_session_cluster",
        "redis_sentinel",
    }
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the options that point the fixtures at existing servers."""
    _plugin_settings.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and read the options."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(tls=False, cluster=False, redis=None, valkey=None): skip the test unless "
        "its server can do TLS, run a cluster, and is Redis or Valkey of at least the "
        "version given (naming a kind excludes the other)",
    )
    _plugin_settings.configure(config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name the server binary the fixtures run, and the existing servers given."""
    info = _plugin_settings.binary_info()
    if isinstance(info, ServerInfo):
        lines = [f"triopipe: server binary: {info}"]
    else:
        lines = [f"triopipe: no server binary: {info}"]
    lines += [f"triopipe: {line}" for line in _plugin_settings.settings(config).header()]
    return lines


def _requirements(marker: pytest.Mark) -> dict[str, Any]:
    unknown = sorted(set(marker.kwargs) - set(_REQUIREMENTS))
    if marker.args or unknown:
        what = f"unknown requirement(s) {', '.join(unknown)}" if unknown else "positional args"
        pytest.fail(
            f"@pytest.mark.{_MARKER}: {what}; it takes keyword arguments only: "
            f"{', '.join(_REQUIREMENTS)}",
            pytrace=False,
        )
    return dict(marker.kwargs)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a ``requires_server`` test, with the reason, when its server falls short."""
    markers = list(item.iter_markers(_MARKER))
    if not markers:
        return
    settings = _plugin_settings.settings(item.config)
    names = list(getattr(item, "fixturenames", ()))
    servers = settings.existing_info(names)
    if not servers or _BINARY_FIXTURES & set(names):
        info = _plugin_settings.binary_info()
        if isinstance(info, ServerInfo):
            servers.append(info)
        elif settings.any_existing:
            pytest.skip(f"needs a server binary: {info}")
        # else: no server at all, which the test reports when it starts one
    for marker in markers:
        requirements = _requirements(marker)
        for server in servers:
            try:
                reason = server.unmet(**requirements)
            except ValueError as exc:
                reason = f"@pytest.mark.{_MARKER}: {exc}"
                pytest.fail(reason, pytrace=False)
            if reason is not None:
                pytest.skip(reason)
