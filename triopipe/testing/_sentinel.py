"""Throwaway Redis Sentinel setups for tests: a primary, its replicas and sentinels.

Theory of operation: :class:`RedisSentinelProcesses` is the one
implementation, with blocking calls like the rest of the harness; every
server *is* a :class:`~triopipe.testing.RedisServerProcess` (the sentinels
run the same binary with ``--sentinel`` and a configuration file of their
own, which they rewrite as they learn). :func:`redis_sentinel_processes`
drives it from plain ``with`` code; :func:`redis_sentinel` runs the same
steps in a worker thread, so it works unchanged on trio and asyncio.

Starting does, in order:

1. start the primary, then the replicas (``replicaof`` the primary), and
   wait until the primary reports every replica ``online``;
2. start the sentinels, each monitoring the primary under ``service_name``
   with a short ``down-after-milliseconds``, so a killed primary is failed
   over within seconds;
3. wait until every sentinel knows every replica and every other sentinel
   (``INFO sentinel``); they find each other through the primary's
   ``__sentinel__:hello`` channel, every two seconds, so this is the slow
   step.

:meth:`RedisSentinelProcesses.primary` asks a sentinel who the primary is
now; :meth:`RedisSentinelProcesses.wait_for_new_primary` waits for the
sentinels to name another one after a failover.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.to_thread

from ._server import (
    _HOST,
    ConfigValue,
    RedisServer,
    RedisServerProcess,
    _in_parallel,
    _poll_until,
)

__all__ = [
    "RedisSentinel",
    "RedisSentinelError",
    "RedisSentinelProcesses",
    "redis_sentinel",
    "redis_sentinel_processes",
]

_SETTLE_TIMEOUT = 30.0
_POLL_INTERVAL = 0.05
_COMMAND_TIMEOUT = 5.0
_CONFIG_NAME = "sentinel.conf"


class RedisSentinelError(RuntimeError):
    """Raised when a Sentinel setup does not form, or no new primary is named in time."""


class _SentinelProcess(RedisServerProcess):
    """A server binary run with ``--sentinel``, monitoring one primary."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self._lines = lines

    @property
    def argv(self) -> list[str]:
        # The configuration file must come first; sentinels rewrite it.
        executable, *rest = super().argv
        return [executable, str(self.directory / _CONFIG_NAME), "--sentinel", *rest]

    def _spawn(self) -> Any:
        config = self.directory / _CONFIG_NAME
        if not config.exists():  # a restart keeps what the sentinel learnt
            config.write_text("".join(f"{line}\n" for line in self._lines))
        return super()._spawn()

    def info_fields(self) -> dict[str, str]:
        """The ``INFO sentinel`` line of the first monitored primary, as fields."""
        text = self.run(("INFO", "sentinel"), timeout=_COMMAND_TIMEOUT)[0].decode()
        for line in text.splitlines():
            if line.startswith("master0:"):
                pairs = (item.partition("=") for item in line[len("master0:") :].split(","))
                return {name: value for name, _, value in pairs}
        return {}


class RedisSentinelProcesses:
    """A primary, its replicas and sentinels (blocking API); see
    :func:`redis_sentinel_processes`.

    Attributes:
        servers: the primary then the replicas, as started (roles change on
            failover).
        sentinels: the sentinel processes.
    """

    def __init__(
        self,
        replicas: int,
        sentinels: int,
        *,
        service_name: str,
        down_after: int,
        failover_timeout: int,
        **config: ConfigValue,
    ) -> None:
        if replicas < 0 or sentinels < 1:
            raise ValueError(
                "a Sentinel setup needs at least one sentinel and no negative replicas"
            )
        self.service_name = service_name
        self._config: dict[str, ConfigValue] = {"repl_diskless_sync_delay": 0, **config}
        self._replicas = replicas
        self._quorum = sentinels // 2 + 1
        self._down_after = down_after
        self._failover_timeout = failover_timeout
        self.servers = [RedisServerProcess(**self._config)]
        self.sentinels: list[_SentinelProcess] = []
        self._sentinel_count = sentinels

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.service_name!r} sentinels={self.sentinel_urls}>"

    @property
    def sentinel_urls(self) -> list[str]:
        """The sentinels' URLs, for :func:`~triopipe.open_sentinel_client`."""
        return [sentinel.url for sentinel in self.sentinels]

    def open(self) -> None:
        """Start everything and wait until the sentinels know each other; undo on failure."""
        try:
            primary = self.servers[0]
            primary.open()
            replicas = [
                RedisServerProcess(replicaof=f"{_HOST} {primary.port}", **self._config)
                for _ in range(self._replicas)
            ]
            self.servers += replicas
            _in_parallel([replica.open for replica in replicas])
            online = f"connected_slaves:{self._replicas}\r\n".encode()
            self._wait(lambda: online in primary.run(("INFO", "replication"), timeout=1.0)[0])
            name = self.service_name
            lines = [
                f"sentinel monitor {name} {_HOST} {primary.port} {self._quorum}",
                f"sentinel down-after-milliseconds {name} {self._down_after}",
                f"sentinel failover-timeout {name} {self._failover_timeout}",
                f"sentinel parallel-syncs {name} {max(1, self._replicas)}",
            ]
            self.sentinels = [_SentinelProcess(lines) for _ in range(self._sentinel_count)]
            _in_parallel([sentinel.open for sentinel in self.sentinels])
            self._wait(self._settled)
        except BaseException:
            self.close()
            raise

    def _settled(self) -> bool:
        """Every running sentinel sees the primary ok, every replica and every other sentinel."""
        expected = {
            "status": "ok",
            "slaves": str(self._replicas),
            "sentinels": str(len(self.sentinels)),
        }
        for sentinel in self.sentinels:
            if sentinel.running:
                fields = sentinel.info_fields()
                if any(fields.get(name) != value for name, value in expected.items()):
                    return False
        return True

    def close(self) -> None:
        """Stop every process and remove their directories."""
        _in_parallel([process.close for process in [*self.sentinels, *self.servers]])

    def primary_port(self) -> int:
        """The port of the primary as the first sentinel that answers names it now."""
        for sentinel in self.sentinels:
            if sentinel.running:
                with contextlib.suppress(OSError):
                    address = sentinel.info_fields().get("address", "")
                    return int(address.rpartition(":")[2])
        raise RedisSentinelError("no sentinel answers")

    def primary(self) -> RedisServerProcess:
        """The server the sentinels name as the primary now."""
        port = self.primary_port()
        for server in self.servers:
            if server.port == port:
                return server
        raise RedisSentinelError(f"the sentinels name an unknown primary (port {port})")

    def failover(self) -> None:
        """Ask a sentinel for a failover (``SENTINEL FAILOVER``), as an operator would."""
        self.sentinels[0].run(
            ("SENTINEL", "FAILOVER", self.service_name), timeout=_COMMAND_TIMEOUT
        )

    def wait_for_new_primary(self, old_port: int, timeout: float = _SETTLE_TIMEOUT) -> int:
        """Wait until every running sentinel names a primary other than ``old_port``; its port."""

        def moved() -> bool:
            ports = {
                sentinel.info_fields().get("address", "").rpartition(":")[2]
                for sentinel in self.sentinels
                if sentinel.running
            }
            return len(ports) == 1 and str(old_port) not in ports

        self._wait(moved, timeout)
        return self.primary_port()

    def wait_settled(self, timeout: float = _SETTLE_TIMEOUT) -> None:
        """Wait until the sentinels agree on the primary and every running replica is online.

        For tests that fail over (or restart a killed server, which the
        sentinels turn into a replica) and then want a settled setup.
        """

        def settled() -> bool:
            ports = {
                sentinel.info_fields().get("address", "").rpartition(":")[2]
                for sentinel in self.sentinels
                if sentinel.running
            }
            if len(ports) != 1:
                return False
            primary = self.primary()
            running = sum(server.running for server in self.servers) - 1
            info = primary.run(("INFO", "replication"), timeout=1.0)[0]
            return (
                b"role:master" in info
                and f"connected_slaves:{running}\r\n".encode() in info
                and info.count(b"state=online") == running
            )

        self._wait(settled, timeout)

    def _wait(self, ready: Callable[[], bool], timeout: float = _SETTLE_TIMEOUT) -> None:
        _poll_until(ready, timeout, _POLL_INTERVAL, RedisSentinelError, "the Sentinel setup")


def _setup(
    replicas: int,
    sentinels: int,
    service_name: str,
    down_after: int,
    failover_timeout: int,
    config: dict[str, ConfigValue],
) -> RedisSentinelProcesses:
    return RedisSentinelProcesses(
        replicas,
        sentinels,
        service_name=service_name,
        down_after=down_after,
        failover_timeout=failover_timeout,
        **config,
    )


@contextlib.contextmanager
def redis_sentinel_processes(
    replicas: int = 2,
    sentinels: int = 3,
    *,
    service_name: str = "mymaster",
    down_after: int = 1000,
    failover_timeout: int = 5000,
    **config: ConfigValue,
) -> Iterator[RedisSentinelProcesses]:
    """Run a primary, replicas and sentinels for a ``with`` block (blocking).

    The blocking counterpart of :func:`redis_sentinel`; the arguments are
    the same. Everything is stopped and removed on exit.
    """
    setup = _setup(replicas, sentinels, service_name, down_after, failover_timeout, config)
    try:
        setup.open()
        yield setup
    finally:
        setup.close()


class RedisSentinel:
    """A throwaway Sentinel setup, as yielded by :func:`redis_sentinel`.

    The async face of a :class:`RedisSentinelProcesses` (:attr:`processes`).
    """

    def __init__(self, processes: RedisSentinelProcesses) -> None:
        self._processes = processes
        self._servers = {process: RedisServer(process) for process in processes.servers}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.service_name!r} {self.sentinel_urls}>"

    @property
    def processes(self) -> RedisSentinelProcesses:
        """The underlying blocking implementation."""
        return self._processes

    @property
    def service_name(self) -> str:
        """The name the sentinels monitor the primary under."""
        return self._processes.service_name

    @property
    def sentinel_urls(self) -> list[str]:
        """The sentinels' URLs, for :func:`~triopipe.open_sentinel_client`."""
        return self._processes.sentinel_urls

    @property
    def servers(self) -> list[RedisServer]:
        """The primary and replicas as started (roles change on failover)."""
        return list(self._servers.values())

    async def primary(self) -> RedisServer:
        """The server the sentinels name as the primary now."""
        process = await anyio.to_thread.run_sync(self._processes.primary)
        return self._servers[process]

    async def failover(self) -> None:
        """Ask a sentinel for a failover (``SENTINEL FAILOVER``)."""
        await anyio.to_thread.run_sync(self._processes.failover)

    async def wait_settled(self) -> None:
        """Wait until the sentinels agree on the primary and every running replica is online.

        Raises:
            RedisSentinelError: not within 30 seconds.
        """
        await anyio.to_thread.run_sync(self._processes.wait_settled)

    async def wait_for_new_primary(self, old: RedisServer) -> RedisServer:
        """Wait until every running sentinel names a primary other than ``old``.

        Raises:
            RedisSentinelError: they did not within 30 seconds.
        """
        await anyio.to_thread.run_sync(self._processes.wait_for_new_primary, old.port)
        return await self.primary()


@contextlib.asynccontextmanager
async def redis_sentinel(
    replicas: int = 2,
    sentinels: int = 3,
    *,
    service_name: str = "mymaster",
    down_after: int = 1000,
    failover_timeout: int = 5000,
    **config: ConfigValue,
) -> AsyncIterator[RedisSentinel]:
    """Run a primary, its replicas and sentinels for an ``async with`` block.

    ::

        async with triopipe.testing.redis_sentinel() as setup:
            async with triopipe.open_sentinel_client(setup.sentinel_urls, "mymaster") as redis:
                ...

    Every process listens on a free port of 127.0.0.1, in a fresh temporary
    directory, persistence off. The sentinels (``--sentinel``) monitor the
    primary under ``service_name`` with a quorum of a majority. The block
    starts once the replicas are online and every sentinel knows every
    replica and every other sentinel (a few seconds: sentinels announce
    themselves every 2 s); on exit everything is stopped.

    Args:
        replicas: replicas of the primary.
        sentinels: sentinel processes.
        service_name: the name the primary is monitored under.
        down_after: ``down-after-milliseconds``: how long the primary may be
            silent before a sentinel thinks it down (short, so a killed
            primary is replaced within seconds).
        failover_timeout: ``failover-timeout`` in milliseconds.
        **config: settings for the primary and the replicas.

    Raises:
        RedisServerNotFoundError: there is no server binary.
        RedisServerError: a process did not start.
        RedisSentinelError: the sentinels did not settle within 30 s.
    """
    processes = _setup(replicas, sentinels, service_name, down_after, failover_timeout, config)
    try:
        await anyio.to_thread.run_sync(processes.open)
        yield RedisSentinel(processes)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(processes.close)
