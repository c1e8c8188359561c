"""Typed command helpers, one module per Redis command group.

:class:`Commands` is the mixin every facade (client, sharded client, cluster
client, batch, transaction) inherits; each helper is defined once, as a
builder in its group's module.
"""

from __future__ import annotations

from . import hashes, keys, lists, pubsub, server, sets, sorted_sets, strings
from ._base import Arg, Command, Key, command, run_command

__all__ = ["Arg", "Command", "Commands", "Key", "command", "run_command"]


class Commands:
    """The typed helpers. A facade provides ``_dispatch(command)``."""

    __slots__ = ()

    # strings
    get = command(strings.get)
    set = command(strings.set)
    incr = command(strings.incr)
    incrby = command(strings.incrby)
    mget = command(strings.mget)
    mset = command(strings.mset)
    # keys
    delete = command(keys.delete)
    exists = command(keys.exists)
    expire = command(keys.expire)
    ttl = command(keys.ttl)
    # hashes
    hset = command(hashes.hset)
    hget = command(hashes.hget)
    hgetall = command(hashes.hgetall)
    # lists
    lpush = command(lists.lpush)
    rpush = command(lists.rpush)
    lrange = command(lists.lrange)
    # sets
    sadd = command(sets.sadd)
    smembers = command(sets.smembers)
    sinter = command(sets.sinter)
    sunion = command(sets.sunion)
    # sorted sets
    zadd = command(sorted_sets.zadd)
    zrange = command(sorted_sets.zrange)
    # pub/sub
    publish = command(pubsub.publish)
    # server
    ping = command(server.ping)
    flushdb = command(server.flushdb)
    dbsize = command(server.dbsize)
