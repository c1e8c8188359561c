"""Real, throwaway Redis and Valkey servers for tests.

:func:`redis_server` (async) and :func:`redis_server_process` (blocking) run a
server binary (``redis-server`` or ``valkey-server``, see
:func:`find_redis_server`) on a free port of 127.0.0.1, in a temporary
directory, and stop it on exit; :func:`redis_servers` and
:func:`redis_server_processes` start several at once, in parallel (shards),
and :func:`redis_cluster` a Redis Cluster; :func:`redis_sentinel` a primary
with replicas and sentinels. :func:`server_info` says what the
binary can do. :func:`tcp_proxy` stands between a client and a server and
makes the network faults a server cannot (silent cuts, resets). The pytest
plugin :mod:`triopipe.testing._pytest_plugin` (entry point ``triopipe``)
offers fixtures built on them.
"""

from __future__ import annotations

from ._binary import EXTRA as EXTRA
from ._binary import ServerInfo as ServerInfo
from ._binary import bundled_redis_server as bundled_redis_server
from ._binary import server_info as server_info
from ._cluster import RedisCluster as RedisCluster
from ._cluster import RedisClusterError as RedisClusterError
from ._cluster import RedisClusterNode as RedisClusterNode
from ._cluster import RedisClusterProcesses as RedisClusterProcesses
from ._cluster import redis_cluster as redis_cluster
from ._cluster import redis_cluster_processes as redis_cluster_processes
from ._fake import FakeConnection as FakeConnection
from ._fake import FakeServer as FakeServer
from ._fake import Script as FakeScript
from ._fake import fake_server as fake_server
from ._proxy import TcpProxy as TcpProxy
from ._proxy import tcp_proxy as tcp_proxy
from ._sentinel import RedisSentinel as RedisSentinel
from ._sentinel import RedisSentinelError as RedisSentinelError
from ._sentinel import RedisSentinelProcesses as RedisSentinelProcesses
from ._sentinel import redis_sentinel as redis_sentinel
from ._sentinel import redis_sentinel_processes as redis_sentinel_processes
from ._server import ENV_VAR as ENV_VAR
from ._server import ConfigValue as ConfigValue
from ._server import RedisServer as RedisServer
from ._server import RedisServerError as RedisServerError
from ._server import RedisServerNotFoundError as RedisServerNotFoundError
from ._server import RedisServerProcess as RedisServerProcess
from ._server import find_redis_server as find_redis_server
from ._server import redis_server as redis_server
from ._server import redis_server_process as redis_server_process
from ._server import redis_server_processes as redis_server_processes
from ._server import redis_servers as redis_servers

__all__ = [
    "ENV_VAR",
    "EXTRA",
    "ConfigValue",
    "FakeConnection",
    "FakeScript",
    "FakeServer",
    "RedisCluster",
    "RedisClusterError",
    "RedisClusterNode",
    "RedisClusterProcesses",
    "RedisSentinel",
    "RedisSentinelError",
    "RedisSentinelProcesses",
    "RedisServer",
    "RedisServerError",
    "RedisServerNotFoundError",
    "RedisServerProcess",
    "ServerInfo",
    "TcpProxy",
    "bundled_redis_server",
    "fake_server",
    "find_redis_server",
    "redis_cluster",
    "redis_cluster_processes",
    "redis_sentinel",
    "redis_sentinel_processes",
    "redis_server",
    "redis_server_process",
    "redis_server_processes",
    "redis_servers",
    "server_info",
    "tcp_proxy",
]
