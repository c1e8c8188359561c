"""Throwaway Redis Clusters for tests: real ``redis-server`` nodes in cluster mode.

Theory of operation: :class:`RedisClusterProcesses` is the one implementation,
written with blocking calls like :class:`~triopipe.testing.RedisServerProcess`
(each node *is* one, with cluster settings and a port whose cluster bus port,
``port + 10000``, is free too). :func:`redis_cluster_processes` drives it from
plain ``with`` code; :func:`redis_cluster` runs the same steps in a worker
thread, so it works unchanged on trio and asyncio.

Creating the cluster does what ``redis-cli --cluster create`` does, without
its one-second sleeps:

1. start every node (in parallel), each in its own directory with its own
   ``nodes.conf``;
2. give the masters contiguous, equal slot ranges (``CLUSTER ADDSLOTSRANGE``)
   and distinct config epochs (``CLUSTER SET-CONFIG-EPOCH``), so that no
   epoch collision has to be resolved later;
3. introduce every node to the first (``CLUSTER MEET``) and wait until each
   knows all of them;
4. make each replica replicate its master (``CLUSTER REPLICATE``);
5. wait until the cluster is *stable*: every node says ``cluster_state:ok``,
   sees no node failing or in handshake, and draws the same map (nodes,
   roles, slots); every replica's link to its master is up.

:meth:`RedisClusterProcesses.wait_stable` is the same wait, for tests that
reshard or fail over and then want a settled cluster.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from ._server import (
    _HOST,
    _PORT_ATTEMPTS,
    ConfigValue,
    RedisServer,
    RedisServerError,
    RedisServerProcess,
    _in_parallel,
    _poll_until,
    _probe_free_port,
    _release_port,
    _reserved_ports,
    _reserved_ports_lock,
)

__all__ = [
    "RedisCluster",
    "RedisClusterError",
    "RedisClusterNode",
    "RedisClusterProcesses",
    "redis_cluster",
    "redis_cluster_processes",
]

SLOTS = 16384
_BUS_OFFSET = 10000
_MAX_PORT = 65535
_STABLE_TIMEOUT = 30.0
_POLL_INTERVAL = 0.02
_COMMAND_TIMEOUT = 5.0


class RedisClusterError(RuntimeError):
    """Raised when a cluster does not form, or does not settle in time."""


def _reserve_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = _probe_free_port()
        bus = port + _BUS_OFFSET
        if bus > _MAX_PORT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((_HOST, bus))
            except OSError:
                continue
        with _reserved_ports_lock:
            if port in _reserved_ports or bus in _reserved_ports:
                continue
            _reserved_ports.update((port, bus))
            return port


class _ClusterNodeProcess(RedisServerProcess):
    """A :class:`RedisServerProcess` in cluster mode, on a port with a free bus port."""

    def _start(self, checkpoint: Callable[[], object] | None, *, new_port: bool) -> None:
        if not new_port:  # a restart keeps its ports
            super()._start(checkpoint, new_port=False)
            return
        for _ in range(_PORT_ATTEMPTS):
            self._release_ports()
            self._port = _reserve_cluster_port()
            try:
                super()._start(checkpoint, new_port=False)
                return
            except RedisServerError as exc:
                # Someone took the port or the bus port between probe and bind.
                if "Address already in use" not in str(exc):
                    raise
        raise RedisServerError(
            f"redis-server could not find free ports in {_PORT_ATTEMPTS} attempts"
        )

    def _release_ports(self) -> None:
        if self._port:
            _release_port(self._port + _BUS_OFFSET)
            _release_port(self._port)
            self._port = 0

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._release_ports()

    def command(self, *args: str) -> bytes:
        """Run one command over a plain socket; return its simple or bulk reply."""
        return self.run(tuple(args), timeout=_COMMAND_TIMEOUT)[0]


def _parse_nodes(text: str) -> tuple[str, frozenset[tuple[str, str, str, str]], bool]:
    """``CLUSTER NODES`` as (own id, the map this node draws, whether all is healthy).

    The map holds one ``(id, role, master id, slots)`` per node; what changes
    from node to node (``myself``, ping times, link states) is left out.
    """
    own = ""
    entries = set()
    healthy = True
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, flags, master = fields[0], fields[2].split(","), fields[3]
        if "myself" in flags:
            own = node_id
        failing = {"fail", "fail?", "handshake", "noaddr"} & set(flags) or fields[7] != "connected"
        if failing and "myself" not in flags:
            healthy = False
        role = "master" if "master" in flags else "replica"
        # Slots being migrated ([slot->-id]) are part of the state too.
        entries.add((node_id, role, master, " ".join(sorted(fields[8:]))))
    return own, frozenset(entries), healthy


class RedisClusterProcesses:
    """A Redis Cluster of throwaway nodes (blocking API); see :func:`redis_cluster_processes`.

    Attributes:
        nodes: every node, masters first as created (roles change on failover).
    """

    def __init__(self, masters: int, replicas: int, **config: ConfigValue) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master and no negative replicas")
        settings: dict[str, ConfigValue] = {
            "cluster_enabled": True,
            "cluster_config_file": "nodes.conf",
            "cluster_node_timeout": 2000,
            **config,
        }
        self._masters = masters
        self._replicas = replicas
        self.nodes = [_ClusterNodeProcess(**settings) for _ in range(masters * (1 + replicas))]
        self._ids: dict[RedisServerProcess, str] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.urls}>"

    @property
    def urls(self) -> list[str]:
        """Every node's URL (``redis://127.0.0.1:PORT``); any of them is a seed."""
        return [node.url for node in self.nodes]

    def node_id(self, node: RedisServerProcess) -> str:
        """The cluster node id of ``node`` (it survives restarts)."""
        return self._ids[node]

    def open(self) -> None:
        """Start every node and form the cluster; undo everything on failure."""
        reason = self.nodes[0].info.unmet(cluster=True)
        if reason is not None:
            raise RedisClusterError(f"cannot form a cluster: the harness {reason}")
        try:
            _in_parallel([node.open for node in self.nodes])
            self._create()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every node and remove their directories."""
        _in_parallel([node.close for node in self.nodes])

    def _create(self) -> None:
        masters = self.nodes[: self._masters]
        for node in self.nodes:
            self._ids[node] = node.command("CLUSTER", "MYID").decode()
        for index, node in enumerate(masters):
            first = index * SLOTS // len(masters)
            last = (index + 1) * SLOTS // len(masters) - 1
            node.command("CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        for epoch, node in enumerate(self.nodes, 1):
            node.command("CLUSTER", "SET-CONFIG-EPOCH", str(epoch))
        first_node = self.nodes[0]
        for node in self.nodes[1:]:
            first_node.command("CLUSTER", "MEET", _HOST, str(node.port))
        known = f"cluster_known_nodes:{len(self.nodes)}\r\n".encode()
        self._wait(lambda: all(known in n.command("CLUSTER", "INFO") for n in self.nodes))
        replicas = self.nodes[self._masters :]
        for index, node in enumerate(replicas):
            master = masters[index % len(masters)]
            node.command("CLUSTER", "REPLICATE", self._ids[master])
        self.wait_stable()

    def wait_stable(self, timeout: float = _STABLE_TIMEOUT) -> None:
        """Wait until every running node is ``ok``, healthy and agrees on one map.

        Also waits for every replica's link to its master. Nodes that are not
        running are ignored (their peers must see them as failed, though).

        Raises:
            RedisClusterError: the cluster did not settle within ``timeout`` seconds.
        """
        self._wait(self._stable, timeout)

    def _stable(self) -> bool:
        views = []
        running = [node for node in self.nodes if node.running]
        for node in running:
            if b"cluster_state:ok" not in node.command("CLUSTER", "INFO"):
                return False
            own, view, healthy = _parse_nodes(node.command("CLUSTER", "NODES").decode())
            if not healthy and len(running) == len(self.nodes):
                return False
            views.append(view)
            if any(entry[0] == own and entry[1] == "replica" for entry in view):
                info = node.command("INFO", "replication")
                if b"master_link_status:up" not in info:
                    return False
        return all(view == views[0] for view in views)

    def _wait(self, ready: Callable[[], bool], timeout: float = _STABLE_TIMEOUT) -> None:
        _poll_until(ready, timeout, _POLL_INTERVAL, RedisClusterError, "the cluster")

    def primaries(self) -> list[RedisServerProcess]:
        """The running nodes that are masters now, in :attr:`nodes` order."""
        return [node for node in self.nodes if node.running and self.role(node) == "master"]

    def role(self, node: RedisServerProcess) -> str:
        """``"master"`` or ``"replica"``, as ``node`` itself says (``ROLE``-free: INFO)."""
        info = node.run(("INFO", "replication"), timeout=_COMMAND_TIMEOUT)[0]
        return "master" if b"role:master" in info else "replica"


@contextlib.contextmanager
def redis_cluster_processes(
    masters: int = 3, replicas: int = 0, **config: ConfigValue
) -> Iterator[RedisClusterProcesses]:
    """Run a throwaway Redis Cluster for a ``with`` block (blocking).

    The blocking counterpart of :func:`redis_cluster`, e.g. for a session-wide
    fixture. Every node is stopped and its directory removed on exit.

    Args:
        masters: how many masters (the slots are split evenly between them).
        replicas: replicas per master.
        **config: ``redis-server`` settings for every node (see
            :class:`~triopipe.testing.RedisServerProcess`), e.g.
            ``cluster_node_timeout=1000`` or
            ``cluster_require_full_coverage=False``.

    Raises:
        RedisServerNotFoundError: there is no ``redis-server`` binary.
        RedisServerError: a node did not start.
        RedisClusterError: the cluster did not form, or the binary cannot form one
            (the harness needs Redis 7.0 or later, or Valkey).
    """
    cluster = RedisClusterProcesses(masters, replicas, **config)
    try:
        cluster.open()
        yield cluster
    finally:
        cluster.close()


class RedisClusterNode(RedisServer):
    """One node of a :class:`RedisCluster`: a :class:`~triopipe.testing.RedisServer`
    with its cluster node id."""

    def __init__(self, process: RedisServerProcess, node_id: str) -> None:
        super().__init__(process)
        self._node_id = node_id

    @property
    def node_id(self) -> str:
        """The node's cluster id (it survives restarts)."""
        return self._node_id


class RedisCluster:
    """A throwaway Redis Cluster, as yielded by :func:`redis_cluster`.

    The async face of a :class:`RedisClusterProcesses` (available as
    :attr:`processes`).
    """

    def __init__(self, processes: RedisClusterProcesses) -> None:
        self._processes = processes
        self._nodes = [RedisClusterNode(p, processes.node_id(p)) for p in processes.nodes]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.urls}>"

    @property
    def processes(self) -> RedisClusterProcesses:
        """The underlying blocking implementation."""
        return self._processes

    @property
    def urls(self) -> list[str]:
        """Every node's URL; any of them is a seed for ``open_cluster_client``."""
        return self._processes.urls

    @property
    def nodes(self) -> list[RedisClusterNode]:
        """Every node, masters first as created (roles change on failover)."""
        return self._nodes

    async def primaries(self) -> list[RedisClusterNode]:
        """The running nodes that are masters now."""
        found = await anyio.to_thread.run_sync(self._processes.primaries)
        return [node for node in self._nodes if node.process in found]

    async def role(self, node: RedisClusterNode) -> str:
        """``"master"`` or ``"replica"``, as ``node`` says now."""
        return await anyio.to_thread.run_sync(self._processes.role, node.process)

    async def wait_stable(self) -> None:
        """Wait until the running nodes are ``ok`` and agree on one map.

        Raises:
            RedisClusterError: the cluster did not settle within 30 seconds.
        """
        await anyio.to_thread.run_sync(self._processes.wait_stable)


@contextlib.asynccontextmanager
async def redis_cluster(
    masters: int = 3, replicas: int = 0, **config: Any
) -> AsyncIterator[RedisCluster]:
    """Run a throwaway Redis Cluster for the duration of an ``async with`` block.

    ::

        async with triopipe.testing.redis_cluster(masters=3, replicas=1) as cluster:
            async with triopipe.open_cluster_client(cluster.urls) as redis:
                ...

    Nodes listen on free ports of 127.0.0.1 (each with its cluster bus port,
    port + 10000, free as well), in fresh temporary directories, with
    ``cluster-node-timeout`` 2000 ms and persistence off. The block starts
    once every node says ``cluster_state:ok`` and all agree on the map; on
    exit every node is stopped, whatever happened in the block.

    Args:
        masters: how many masters (the slots are split evenly between them).
        replicas: replicas per master.
        **config: ``redis-server`` settings for every node.

    Raises:
        RedisServerNotFoundError: there is no ``redis-server`` binary.
        RedisServerError: a node did not start.
        RedisClusterError: the cluster did not form, or the binary cannot form one
            (the harness needs Redis 7.0 or later, or Valkey).
    """
    processes = RedisClusterProcesses(masters, replicas, **config)
    try:
        await anyio.to_thread.run_sync(processes.open)
        yield RedisCluster(processes)
    finally:
        # Cleanup must run to the end even when the block was cancelled.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(processes.close)
