"""The pytest plugin's options: which existing servers to use, and what may be emptied.

Each option has an environment variable, for CI jobs that cannot change the
pytest command line; the option wins when both are given.

The fixtures that yield URLs (``redis_url``, ``redis_shard_urls``,
``redis_cluster_urls``) and the client fixtures built on them use an
existing server when one is given. The fixtures that yield server objects
(which a test may stop or restart) always start throwaway servers; without a
server binary they skip when existing servers were given (the user chose to
run without one), and fail otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from ._binary import RedisServerNotFoundError, ServerInfo, locate_redis_server, server_info
from ._existing import ExistingCluster, ExistingServer, existing_servers

__all__ = [
    "ALLOW_FLUSH_ENV",
    "CLUSTER_URL_ENV",
    "SHARD_URLS_ENV",
    "URL_ENV",
    "Settings",
    "add_options",
    "binary_info",
    "settings",
    "skip_without_binary",
]

URL_ENV = "TRIOPIPE_TEST_REDIS_URL"
SHARD_URLS_ENV = "TRIOPIPE_TEST_REDIS_SHARD_URLS"
CLUSTER_URL_ENV = "TRIOPIPE_TEST_REDIS_CLUSTER_URL"
ALLOW_FLUSH_ENV = "TRIOPIPE_TEST_REDIS_ALLOW_FLUSH"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def add_options(parser: pytest.Parser) -> None:
    """Register the plugin's command-line options."""
    group = parser.getgroup("triopipe", "triopipe test servers")
    group.addoption(
        "--redis-url",
        metavar="URL",
        help=f"use this running server for redis_url and the client fixtures instead of "
        f"starting one (env {URL_ENV})",
    )
    group.addoption(
        "--redis-shard-urls",
        metavar="URL,URL,...",
        help=f"use these running servers for redis_shard_urls (env {SHARD_URLS_ENV})",
    )
    group.addoption(
        "--redis-cluster-url",
        metavar="URL",
        help=f"use the running Redis Cluster with this seed node for redis_cluster_urls "
        f"(env {CLUSTER_URL_ENV})",
    )
    group.addoption(
        "--redis-allow-flush",
        action="store_true",
        default=None,
        help="let the fixtures empty existing servers that hold data (they are emptied "
        f"before every test; without this such servers are refused) (env {ALLOW_FLUSH_ENV}=1)",
    )


@dataclasses.dataclass
class Settings:
    """The existing servers given, if any."""

    server: ExistingServer | None = None
    shards: list[ExistingServer] | None = None
    cluster: ExistingCluster | None = None

    @property
    def any_existing(self) -> bool:
        """Whether the user gave any existing server."""
        return self.server is not None or self.shards is not None or self.cluster is not None

    def existing_info(self, fixture_names: list[str]) -> list[ServerInfo]:
        """What the existing servers behind ``fixture_names`` are."""
        found: list[ServerInfo] = []
        if self.server is not None and {"redis_url", "redis_server_info"} & set(fixture_names):
            found.append(self.server.info())
        if self.shards is not None and "redis_shard_urls" in fixture_names:
            found.extend(shard.info() for shard in self.shards)
        if self.cluster is not None and "redis_cluster_urls" in fixture_names:
            found.append(self.cluster.info())
        return found

    def header(self) -> list[str]:
        """Lines for pytest's report header."""
        lines = []
        if self.server is not None:
            lines.append(f"existing server: {self.server.masked_url}")
        if self.shards is not None:
            lines.append(f"existing shards: {', '.join(s.masked_url for s in self.shards)}")
        if self.cluster is not None:
            lines.append(f"existing cluster: {self.cluster!r}")
        return lines


_SETTINGS = pytest.StashKey[Settings]()


def _value(config: pytest.Config, option: str, env: str) -> tuple[str | None, str]:
    """The option's value, else the environment variable's; and which one it was."""
    value = config.getoption(option)
    if value is not None:
        return str(value), f"--{option.replace('_', '-')}"
    value = os.environ.get(env) or None
    return value, env


def _allow_flush(config: pytest.Config) -> bool:
    if config.getoption("redis_allow_flush"):
        return True
    value = os.environ.get(ALLOW_FLUSH_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise pytest.UsageError(
        f"{ALLOW_FLUSH_ENV}={value!r}: expected 1/true/yes/on or 0/false/no/off"
    )


def make_settings(config: pytest.Config) -> Settings:
    """Read the options and environment; raise :exc:`pytest.UsageError` on bad values."""
    allow = _allow_flush(config)
    found = Settings()
    try:
        url, given_by = _value(config, "redis_url", URL_ENV)
        if url is not None:
            found.server = ExistingServer(url, allow_flush=allow, given_by=given_by)
        urls, given_by = _value(config, "redis_shard_urls", SHARD_URLS_ENV)
        if urls is not None:
            shard_urls = [part for part in re.split(r"[,\s]+", urls) if part]
            if not shard_urls:
                raise ValueError("no URL given")
            found.shards = existing_servers(shard_urls, allow_flush=allow, given_by=given_by)
        url, given_by = _value(config, "redis_cluster_url", CLUSTER_URL_ENV)
        if url is not None:
            found.cluster = ExistingCluster(url, allow_flush=allow, given_by=given_by)
    except ValueError as exc:
        raise pytest.UsageError(f"{given_by}: {exc}") from exc
    return found


def configure(config: pytest.Config) -> None:
    """Read the settings once per session."""
    config.stash[_SETTINGS] = make_settings(config)


def settings(config: pytest.Config) -> Settings:
    """The session's settings."""
    return config.stash[_SETTINGS]


def binary_info() -> ServerInfo | str:
    """The server binary's description, or why there is none."""
    try:
        return server_info()
    except (RedisServerNotFoundError, ValueError) as exc:
        return str(exc)


def skip_without_binary(config: pytest.Config, fixture: str) -> None:
    """Skip a test that needs a throwaway server when the user runs on existing ones only."""
    if not settings(config).any_existing:
        return  # no binary is an error then, raised when the server starts
    try:
        locate_redis_server()
    except RedisServerNotFoundError:
        pytest.skip(
            f"{fixture} starts throwaway servers and no server binary was found "
            "(existing servers were given, but a test may stop or restart these)"
        )
