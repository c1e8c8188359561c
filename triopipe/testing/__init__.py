"""Real, throwaway Redis servers for tests.

:func:`redis_server` (async) and :func:`redis_server_process` (blocking) run a
``redis-server`` binary on a free port of 127.0.0.1, in a temporary directory,
and stop it on exit. The pytest plugin :mod:`triopipe.testing._pytest_plugin`
(entry point ``triopipe``) offers fixtures built on them.
"""

from __future__ import annotations

from ._server import ENV_VAR as ENV_VAR
from ._server import ConfigValue as ConfigValue
from ._server import RedisServer as RedisServer
from ._server import RedisServerError as RedisServerError
from ._server import RedisServerNotFoundError as RedisServerNotFoundError
from ._server import RedisServerProcess as RedisServerProcess
from ._server import find_redis_server as find_redis_server
from ._server import redis_server as redis_server
from ._server import redis_server_process as redis_server_process

__all__ = [
    "ENV_VAR",
    "ConfigValue",
    "RedisServer",
    "RedisServerError",
    "RedisServerNotFoundError",
    "RedisServerProcess",
    "find_redis_server",
    "redis_server",
    "redis_server_process",
]
