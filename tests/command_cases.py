"""The sweep's cases: a call of every data command's helper, and how to judge its result.

Support code (not tests) for ``tests/integration/test_helpers_sweep.py`` and
``tests/integration/test_command_table.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections.abc import Sequence
from typing import Any

import triopipe
import triopipe.sync
import triopipe.testing
from triopipe._commands import Commands

DATA_GROUPS = frozenset(
    {"string", "bitmap", "hash", "list", "set", "sorted_set", "stream", "geo", "hyperloglog",
     "generic"}
)  # fmt: skip

STRINGS = [("SET", "s", "hello"), ("SET", "n", 10), ("SET", "f", "1.5")]
BITS = [("SET", "b", b"\xff\xf0\x00")]
HASH = [("HSET", "h", "f1", "v1", "f2", "v2", "n", 5)]
LIST = [("RPUSH", "l", "a", "b", "c", "a"), ("RPUSH", "l2", "x")]
SETS = [("SADD", "s1", "a", "b", "c"), ("SADD", "s2", "b", "c", "d")]
ZSET = [("ZADD", "z", 1, "a", 2.5, "b", 3, "c"), ("ZADD", "z2", 2, "b", 4, "d")]
GEO = [("GEOADD", "g", 13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania")]
HLL = [("PFADD", "p", "a", "b", "c"), ("PFADD", "p2", "c", "d")]
STREAM = [
    ("XADD", "st", "1-1", "f", "v"),
    ("XADD", "st", "2-1", "f2", "v2"),
    ("XGROUP", "CREATE", "st", "grp", "0"),
    ("XREADGROUP", "GROUP", "grp", "alice", "STREAMS", "st", ">"),
]
LFU = [("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"), ("SET", "s", "hello")]


@dataclasses.dataclass
class Case:
    """One helper call: the data it needs, and whether its value is the same each time."""

    helper: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    setup: Sequence[Sequence[Any]]
    same_value: bool = True
    #: Whether the reply is binary (not UTF-8): skipped with ``decode=True``.
    binary: bool = False
    #: The first version of each server with an argument the case uses
    #: (the command itself may be older); other servers skip the case.
    since: dict[str, tuple[int, ...]] | None = None


def case(
    helper: str,
    *args: Any,
    setup: Sequence[Sequence[Any]] = (),
    same_value: bool = True,
    since: dict[str, tuple[int, ...]] | None = None,
    binary: bool = False,
    **kwargs: Any,
) -> Case:
    return Case(helper, args, kwargs, setup, same_value, binary, since)


# Arguments newer than the command: NOVALUES, NOSCORES (Valkey 8, Redis 7.4),
# WITHSCORE (Redis 7.2, so Valkey 7.2).
VALKEY_8 = {"valkey": (8, 0), "redis": (7, 4)}
REDIS_7_2 = {"valkey": (7, 2), "redis": (7, 2)}


CASES: list[Case] = [
    # strings
    case("append", "s", "!", setup=STRINGS),
    case("decr", "n", setup=STRINGS),
    case("decrby", "n", 3, setup=STRINGS),
    case("delifeq", "s", "hello", setup=STRINGS),
    case("get", "s", setup=STRINGS),
    case("get", "missing"),
    case("getdel", "s", setup=STRINGS),
    case("getex", "s", ex=100, setup=STRINGS),
    case("getrange", "s", 0, 2, setup=STRINGS),
    case("getset", "s", "new", setup=STRINGS),
    case("incr", "n", setup=STRINGS),
    case("incrby", "n", 5, setup=STRINGS),
    case("incrbyfloat", "f", 0.25, setup=STRINGS),
    case("lcs", "s", "s"),
    case("lcs", "s", "s2", setup=[*STRINGS, ("SET", "s2", "help")]),
    case("lcs", "s", "s2", len=True, setup=[*STRINGS, ("SET", "s2", "help")]),
    case("lcs", "s", "s2", idx=True, withmatchlen=True, setup=[*STRINGS, ("SET", "s2", "help")]),
    case("mget", "s", "n", "missing", setup=STRINGS),
    case("mget", ["s", "n"], setup=STRINGS),
    case("mset", {"a": 1, "b": 2}),
    case("msetex", {"a": 1, "b": 2}, ex=100),
    case("msetnx", {"a": 1, "b": 2}),
    case("psetex", "k", 100000, "v"),
    case("set", "k", "v"),
    case("set", "k", "v", get=True, setup=[("SET", "k", "old")]),
    case("set", "k", "v", nx=True, setup=[("SET", "k", "old")]),
    case("setex", "k", 100, "v"),
    case("setnx", "k", "v"),
    case("setrange", "s", 1, "a", setup=STRINGS),
    case("strlen", "s", setup=STRINGS),
    case("substr", "s", 0, 2, setup=STRINGS),
    # bitmaps
    case("bitcount", "b", setup=BITS),
    case("bitcount", "b", 0, 1, setup=BITS),
    case("bitfield", "b", ("GET", "u8", 0), ("INCRBY", "u4", 0, 1), setup=BITS),
    case("bitfield_ro", "b", get=[("u8", 0), ("u4", 4)], setup=BITS),
    case("bitop", "AND", "dest", "b", "b", setup=BITS),
    case("bitpos", "b", 0, setup=BITS),
    case("getbit", "b", 3, setup=BITS),
    case("setbit", "b", 3, 0, setup=BITS),
    # hashes
    case("hdel", "h", "f1", setup=HASH),
    case("hexists", "h", "f1", setup=HASH),
    case("hexpire", "h", 100, ["f1", "nope"], setup=HASH),
    case("hexpireat", "h", 4_000_000_000, ["f1"], setup=HASH),
    case("hexpiretime", "h", ["f1"], setup=[*HASH, ("HEXPIRE", "h", 100, "FIELDS", 1, "f1")]),
    case("hget", "h", "f1", setup=HASH),
    case("hgetall", "h", setup=HASH),
    case("hgetall", "missing"),
    case("hgetdel", "h", ["f1", "nope"], setup=HASH),
    case("hgetex", "h", ["f1", "nope"], ex=100, setup=HASH),
    case("hincrby", "h", "n", 2, setup=HASH),
    case("hincrbyfloat", "h", "n", 0.5, setup=HASH),
    case("hkeys", "h", setup=HASH),
    case("hlen", "h", setup=HASH),
    case("hmget", "h", "f1", "nope", setup=HASH),
    case("hmset", "h", {"f3": "v3"}),
    case("hpersist", "h", ["f1"], setup=[*HASH, ("HEXPIRE", "h", 100, "FIELDS", 1, "f1")]),
    case("hpexpire", "h", 100000, ["f1"], setup=HASH),
    case("hpexpireat", "h", 4_000_000_000_000, ["f1"], setup=HASH),
    case("hpexpiretime", "h", ["f1"], setup=HASH),
    case("hpttl", "h", ["f1"], setup=HASH),
    case("hrandfield", "h", setup=HASH, same_value=False),
    case("hrandfield", "h", 2, setup=HASH, same_value=False),
    case("hrandfield", "h", 2, withvalues=True, setup=HASH, same_value=False),
    case("hrandfield", "missing"),
    case("hscan", "h", 0, setup=HASH),
    case("hscan", "h", 0, novalues=True, setup=HASH, since=VALKEY_8),
    case("hset", "h", {"f1": "x", "f9": "y"}, setup=HASH),
    case("hsetex", "h", {"f1": "x"}, ex=100, setup=HASH),
    case("hsetnx", "h", "f1", "x", setup=HASH),
    case("hstrlen", "h", "f1", setup=HASH),
    case("httl", "h", ["f1"], setup=HASH),
    case("hvals", "h", setup=HASH),
    # lists
    case("blmove", "l", "l2", "LEFT", "RIGHT", 1, setup=LIST),
    case("blmpop", 1, ["nope", "l"], "LEFT", count=2, setup=LIST),
    case("blpop", ["nope", "l"], 1, setup=LIST),
    case("brpop", "l", 1, setup=LIST),
    case("brpoplpush", "l", "l2", 1, setup=LIST),
    case("lindex", "l", 1, setup=LIST),
    case("linsert", "l", "BEFORE", "b", "z", setup=LIST),
    case("llen", "l", setup=LIST),
    case("lmove", "l", "l2", "RIGHT", "LEFT", setup=LIST),
    case("lmpop", ["l"], "RIGHT", setup=LIST),
    case("lmpop", ["nope"], "RIGHT"),
    case("lpop", "l", setup=LIST),
    case("lpop", "l", 2, setup=LIST),
    case("lpop", "missing", 2),
    case("lpos", "l", "a", setup=LIST),
    case("lpos", "l", "a", count=0, setup=LIST),
    case("lpush", "l", "x", "y", setup=LIST),
    case("lpushx", "l", "x", setup=LIST),
    case("lrange", "l", 0, -1, setup=LIST),
    case("lrem", "l", 0, "a", setup=LIST),
    case("lset", "l", 0, "q", setup=LIST),
    case("ltrim", "l", 0, 1, setup=LIST),
    case("rpop", "l", setup=LIST),
    case("rpop", "l", 3, setup=LIST),
    case("rpoplpush", "l", "l2", setup=LIST),
    case("rpush", "l", "x", setup=LIST),
    case("rpushx", "l", "x", setup=LIST),
    # sets
    case("sadd", "s1", "x", "a", setup=SETS),
    case("scard", "s1", setup=SETS),
    case("sdiff", "s1", "s2", setup=SETS),
    case("sdiffstore", "d", "s1", "s2", setup=SETS),
    case("sinter", ["s1", "s2"], setup=SETS),
    case("sintercard", ["s1", "s2"], limit=5, setup=SETS),
    case("sinterstore", "d", "s1", "s2", setup=SETS),
    case("sismember", "s1", "a", setup=SETS),
    case("smembers", "s1", setup=SETS),
    case("smembers", "missing"),
    case("smismember", "s1", "a", "z", setup=SETS),
    case("smove", "s1", "s2", "a", setup=SETS),
    case("spop", "s1", setup=SETS, same_value=False),
    case("spop", "s1", 2, setup=SETS, same_value=False),
    case("srandmember", "s1", setup=SETS, same_value=False),
    case("srandmember", "s1", -5, setup=SETS, same_value=False),
    case("srem", "s1", "a", setup=SETS),
    case("sscan", "s1", 0, setup=SETS, same_value=False),
    case("sunion", "s1", "s2", setup=SETS),
    case("sunionstore", "d", "s1", "s2", setup=SETS),
    # sorted sets
    case("bzmpop", 1, ["z"], "MIN", count=2, setup=ZSET),
    case("bzpopmax", ["nope", "z"], 1, setup=ZSET),
    case("bzpopmin", "z", 1, setup=ZSET),
    case("zadd", "z", {"x": 1.5, "a": 0}, ch=True, setup=ZSET),
    case("zcard", "z", setup=ZSET),
    case("zcount", "z", "-inf", "(3", setup=ZSET),
    case("zdiff", ["z", "z2"], setup=ZSET),
    case("zdiff", ["z", "z2"], withscores=True, setup=ZSET),
    case("zdiffstore", "d", ["z", "z2"], setup=ZSET),
    case("zincrby", "z", 1.5, "a", setup=ZSET),
    case("zinter", ["z", "z2"], setup=ZSET),
    case("zinter", ["z", "z2"], weights=[1, 2], aggregate="MAX", withscores=True, setup=ZSET),
    case("zintercard", ["z", "z2"], setup=ZSET),
    case("zinterstore", "d", ["z", "z2"], setup=ZSET),
    case("zlexcount", "z", "-", "+", setup=ZSET),
    case("zmpop", ["z"], "MAX", setup=ZSET),
    case("zmpop", ["nope"], "MAX"),
    case("zmscore", "z", "a", "nope", setup=ZSET),
    case("zpopmax", "z", setup=ZSET),
    case("zpopmax", "missing"),
    case("zpopmin", "z", 2, setup=ZSET),
    case("zpopmin", "z", 1, setup=ZSET),
    case("zrandmember", "z", setup=ZSET, same_value=False),
    case("zrandmember", "z", 2, setup=ZSET, same_value=False),
    case("zrandmember", "z", 2, withscores=True, setup=ZSET, same_value=False),
    case("zrange", "z", 0, -1, setup=ZSET),
    case("zrange", "z", 0, -1, withscores=True, setup=ZSET),
    case("zrange", "z", "(1", "+inf", byscore=True, limit=(0, 2), setup=ZSET),
    case("zrangebylex", "z", "-", "+", setup=ZSET),
    case("zrangebyscore", "z", "-inf", "+inf", withscores=True, setup=ZSET),
    case("zrangestore", "d", "z", 0, -1, setup=ZSET),
    case("zrank", "z", "b", setup=ZSET),
    case("zrank", "z", "b", withscore=True, setup=ZSET, since=REDIS_7_2),
    case("zrank", "z", "nope", withscore=True, setup=ZSET, since=REDIS_7_2),
    case("zrem", "z", "a", setup=ZSET),
    case("zremrangebylex", "z", "[a", "[b", setup=ZSET),
    case("zremrangebyrank", "z", 0, 0, setup=ZSET),
    case("zremrangebyscore", "z", 0, 2, setup=ZSET),
    case("zrevrange", "z", 0, -1, withscores=True, setup=ZSET),
    case("zrevrangebylex", "z", "+", "-", setup=ZSET),
    case("zrevrangebyscore", "z", 10, 0, setup=ZSET),
    case("zrevrank", "z", "a", setup=ZSET),
    case("zscan", "z", 0, setup=ZSET),
    case("zscan", "z", 0, noscores=True, setup=ZSET, since=VALKEY_8),
    case("zscore", "z", "b", setup=ZSET),
    case("zscore", "z", "nope", setup=ZSET),
    case("zunion", ["z", "z2"], withscores=True, setup=ZSET),
    case("zunionstore", "d", ["z", "z2"], weights=[2, 1], setup=ZSET),
    # streams
    case("xack", "st", "grp", "1-1", setup=STREAM),
    case("xadd", "st", {"a": 1}, id="3-1", maxlen=10, approximately=True, setup=STREAM),
    case("xautoclaim", "st", "grp", "bob", 0, "0", setup=STREAM, same_value=False),
    case("xautoclaim", "st", "grp", "bob", 0, "0", justid=True, setup=STREAM, same_value=False),
    case("xclaim", "st", "grp", "bob", 0, "1-1", setup=STREAM, same_value=False),
    case("xclaim", "st", "grp", "bob", 0, "1-1", justid=True, setup=STREAM, same_value=False),
    case("xdel", "st", "1-1", setup=STREAM),
    case("xgroup_create", "st", "grp2", "$", mkstream=True, setup=STREAM),
    case("xgroup_createconsumer", "st", "grp", "carol", setup=STREAM),
    case("xgroup_delconsumer", "st", "grp", "alice", setup=STREAM),
    case("xgroup_destroy", "st", "grp", setup=STREAM),
    case("xgroup_setid", "st", "grp", "0", setup=STREAM),
    case("xinfo_consumers", "st", "grp", setup=STREAM, same_value=False),
    case("xinfo_groups", "st", setup=STREAM),
    case("xinfo_stream", "st", setup=STREAM),
    case("xinfo_stream", "st", full=True, setup=STREAM, same_value=False),
    case("xlen", "st", setup=STREAM),
    case("xpending", "st", "grp", setup=STREAM),
    case("xpending", "st", "grp", "-", "+", 10, setup=STREAM, same_value=False),
    case("xrange", "st", "-", "+", setup=STREAM),
    case("xrange", "missing", "-", "+"),
    case("xread", {"st": "0", "nope": "0"}, count=5, setup=STREAM),
    case("xread", {"nope": "0"}),
    case("xreadgroup", "grp", "bob", {"st": "0"}, setup=STREAM),
    case(
        "xreadgroup", "grp", "bob", {"st": ">"}, setup=[*STREAM, ("XADD", "st", "5-1", "k", "v")]
    ),
    case("xrevrange", "st", "+", "-", count=1, setup=STREAM),
    case("xsetid", "st", "9-1", setup=STREAM),
    case("xtrim", "st", maxlen=1, setup=STREAM),
    # geo
    case("geoadd", "g", [(2.35, 48.85, "Paris")], setup=GEO),
    case("geodist", "g", "Palermo", "Catania", unit="km", setup=GEO),
    case("geodist", "g", "Palermo", "nope", setup=GEO),
    case("geohash", "g", "Palermo", "nope", setup=GEO),
    case("geopos", "g", "Palermo", "nope", setup=GEO),
    case("georadius", "g", 15, 37, 200, "km", setup=GEO),
    case("georadius", "g", 15, 37, 200, "km", withdist=True, withcoord=True, setup=GEO),
    case("georadius", "g", 15, 37, 200, "km", store="dest", setup=GEO),
    case("georadius_ro", "g", 15, 37, 200, "km", withhash=True, setup=GEO),
    case("georadiusbymember", "g", "Palermo", 200, "km", withdist=True, setup=GEO),
    case("georadiusbymember_ro", "g", "Palermo", 200, "km", setup=GEO),
    case(
        "geosearch",
        "g",
        fromlonlat=(15, 37),
        byradius=(200, "km"),
        withcoord=True,
        withdist=True,
        withhash=True,
        setup=GEO,
    ),
    case("geosearch", "g", frommember="Palermo", bybox=(400, 400, "km"), asc=True, setup=GEO),
    case("geosearchstore", "d", "g", frommember="Palermo", byradius=(200, "km"), setup=GEO),
    # hyperloglog
    case("pfadd", "p", "z", setup=HLL),
    case("pfcount", "p", "p2", setup=HLL),
    case("pfmerge", "p3", "p", "p2", setup=HLL),
    # generic
    case("copy", "s", "s2", setup=STRINGS),
    case("delete", "s", "n", "missing", setup=STRINGS),
    case("delete", ["s", "n"], setup=STRINGS),
    case("dump", "s", setup=STRINGS, binary=True),
    case("exists", ["s", "missing"], setup=STRINGS),
    case("expire", "s", 100, setup=STRINGS),
    case("expire", "missing", 100),
    case("expireat", "s", 4_000_000_000, setup=STRINGS),
    case("expiretime", "s", setup=STRINGS),
    case("keys", "*", setup=STRINGS, same_value=False),
    case("move", "s", 1, setup=STRINGS),
    case("object_encoding", "s", setup=STRINGS),
    case("object_freq", "s", setup=LFU, same_value=False),
    case("object_idletime", "s", setup=STRINGS, same_value=False),
    case("object_refcount", "s", setup=STRINGS),
    case("persist", "s", setup=[*STRINGS, ("EXPIRE", "s", 100)]),
    case("pexpire", "s", 100000, setup=STRINGS),
    case("pexpireat", "s", 4_000_000_000_000, setup=STRINGS),
    case("pexpiretime", "s", setup=STRINGS),
    case("pttl", "s", setup=STRINGS),
    case("randomkey", setup=STRINGS, same_value=False),
    case("randomkey"),
    case("rename", "s", "s9", setup=STRINGS),
    case("renamenx", "s", "n", setup=STRINGS),
    case("scan", 0, match="*", count=100, setup=STRINGS, same_value=False),
    case("sort", "l", alpha=True, setup=LIST),
    case("sort", "l", alpha=True, limit=(0, 2), store="dest", setup=LIST),
    case("sort_ro", "l", alpha=True, desc=True, setup=LIST),
    case("touch", "s", "n", setup=STRINGS),
    case("ttl", "s", setup=STRINGS),
    case("type", "s", setup=STRINGS),
    case("type", "missing"),
    case("unlink", "s", "missing", setup=STRINGS),
    case("wait", 0, 0),
    case("waitaof", 0, 0, 0),
]

LIBRARY = (
    "#!lua name=lib\nredis.register_function('echo1', function(keys, args) return args[1] end)"
)
LIBRARY_LOADED = [("FUNCTION", "LOAD", "REPLACE", LIBRARY)]
SCRIPT = "return ARGV[1]"
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
SCRIPT_LOADED = [("SCRIPT", "LOAD", SCRIPT)]
UNKNOWN_SHA = "0" * 40

#: Helpers of the other groups (scripts, publishing, server and connection
#: commands a user calls): swept the same way, reported apart.
OTHER_CASES: list[Case] = [
    case("eval", SCRIPT, args=["x"]),
    case("eval_ro", "return redis.call('GET', KEYS[1])", keys=["s"], setup=STRINGS),
    case(
        "evalsha",
        SCRIPT_SHA,
        args=["x"],
        setup=SCRIPT_LOADED,
    ),
    case(
        "evalsha_ro",
        SCRIPT_SHA,
        args=["x"],
        setup=SCRIPT_LOADED,
    ),
    case("fcall", "echo1", args=["x"], setup=LIBRARY_LOADED),
    case("function_delete", "lib", setup=LIBRARY_LOADED),
    case("function_dump", setup=LIBRARY_LOADED, binary=True),
    case("function_flush"),
    case("function_list", withcode=True, setup=LIBRARY_LOADED),
    case("function_load", LIBRARY, replace=True),
    case("function_stats", setup=LIBRARY_LOADED),
    case(
        "script_exists",
        UNKNOWN_SHA,
        SCRIPT_SHA,
        setup=SCRIPT_LOADED,
    ),
    case("script_flush", asynchronous=True),
    case("script_load", SCRIPT),
    case("publish", "channel", "message"),
    case("spublish", "channel", "message"),
    case("pubsub_channels", "*"),
    case("pubsub_numpat"),
    case("pubsub_numsub", "a", "b"),
    case("pubsub_shardchannels"),
    case("pubsub_shardnumsub", "a"),
    case("acl_cat"),
    case("acl_cat", "string"),
    case("acl_deluser", "nobody"),
    case("acl_dryrun", "default", "GET", "k"),
    case("acl_genpass", same_value=False),
    case("acl_getuser", "default"),
    case("acl_getuser", "nobody"),
    case("acl_list"),
    case("acl_log", same_value=False),
    case("acl_log", reset=True),
    case("acl_setuser", "someone", "on", "nopass"),
    case("acl_users"),
    case("acl_whoami"),
    case("command_count"),
    case("command_getkeys", "MSET", "a", 1, "b", 2),
    case("command_getkeysandflags", "MSET", "a", 1, "b", 2),
    case("command_list", pattern="x*"),
    case("config_get", "maxmemory", "port", same_value=False),
    case("config_resetstat"),
    case("config_set", {"maxmemory-policy": "noeviction"}),
    case("dbsize", setup=STRINGS),
    case("flushall", asynchronous=True),
    case("flushdb"),
    case("info", "server", same_value=False),
    case("lastsave", same_value=False),
    case("latency_doctor", same_value=False),
    case("latency_history", "command"),
    case("latency_latest"),
    case("latency_reset"),
    case("lolwut", version=5, same_value=False),
    case("memory_doctor", same_value=False),
    case("memory_malloc_stats", same_value=False),
    case("memory_purge"),
    case("memory_stats", same_value=False),
    case("memory_usage", "s", setup=STRINGS, same_value=False),
    case("memory_usage", "missing"),
    case("module_list"),
    case("role", same_value=False),
    case("slowlog_get", 10, same_value=False),
    case("slowlog_len", same_value=False),
    case("slowlog_reset"),
    case("swapdb", 0, 1),
    case("time", same_value=False),
    case("client_getname"),
    case("client_getredir"),
    case("client_id", same_value=False),
    case("client_info", same_value=False),
    case("client_kill", addr="1.2.3.4:5"),
    case("client_list", type="normal", same_value=False),
    case("client_pause", 1, write=True),
    case("client_trackinginfo"),
    case("client_unblock", 123456),
    case("client_unpause"),
    case("echo", "hi"),
    case("ping"),
    case("ping", "hi"),
]

# Cases that need more than a helper call: the value of DUMP for RESTORE, a
# second server for MIGRATE.
SPECIAL = {"restore", "migrate"}


def shape(value: Any) -> Any:
    """The Python type of ``value``, all the way down."""
    if isinstance(value, dict):
        return ("dict", frozenset((shape(k), shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", frozenset(shape(v) for v in value))
    if isinstance(value, tuple):
        return ("tuple", tuple(shape(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(shape(v) for v in value))
    return type(value).__name__


def conforms(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is of the type ``annotation`` (the subset helpers use)."""
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, option) for option in arguments)
    if origin is typing.Literal:
        return value in arguments
    if origin is list:
        return type(value) is list and all(conforms(v, arguments[0]) for v in value)
    if origin is set:
        return type(value) is set and all(conforms(v, arguments[0]) for v in value)
    if origin is dict:
        return type(value) is dict and all(
            conforms(k, arguments[0]) and conforms(v, arguments[1]) for k, v in value.items()
        )
    if origin is tuple:
        return (
            type(value) is tuple
            and len(value) == len(arguments)
            and all(conforms(v, a) for v, a in zip(value, arguments, strict=True))
        )
    if annotation in (bytes, str, int, float, bool):
        return type(value) is annotation
    raise AssertionError(f"no run-time check for {annotation!r}")


def returns(helper: str) -> Any:
    """The Python type a helper declares (the ``T`` of its ``Command[T]``)."""
    builder = getattr(Commands, helper).builder
    hints = typing.get_type_hints(builder)
    return typing.get_args(hints["return"])[0]


async def server_facts(
    redis: triopipe.Client,
) -> tuple[str, tuple[int, ...], dict[str, str]]:
    """The server's name and version, and the group of each of its commands."""
    info = await redis.execute("INFO", "server")
    fields = dict(line.split(":", 1) for line in info.decode().splitlines() if ":" in line)
    product = "valkey" if "valkey_version" in fields else "redis"
    version = tuple(int(part) for part in fields[f"{product}_version"].strip().split("."))
    groups = groups_of(await redis.execute("COMMAND", "DOCS"))
    return product, version, groups


def groups_of(docs: Any) -> dict[str, str]:
    """The group of each command and subcommand, from a ``COMMAND DOCS`` reply (bytes)."""
    docs = docs if isinstance(docs, dict) else dict(zip(docs[::2], docs[1::2], strict=True))
    groups: dict[str, str] = {}
    for name, doc in docs.items():
        doc = doc if isinstance(doc, dict) else dict(zip(doc[::2], doc[1::2], strict=True))
        subcommands = doc.get(b"subcommands")
        if subcommands:
            if not isinstance(subcommands, dict):
                subcommands = dict(zip(subcommands[::2], subcommands[1::2], strict=True))
            for sub, sub_doc in subcommands.items():
                if not isinstance(sub_doc, dict):
                    sub_doc = dict(zip(sub_doc[::2], sub_doc[1::2], strict=True))
                groups[sub.decode().upper().replace("|", " ")] = _group(sub_doc)
        else:
            groups[name.decode().upper()] = _group(doc)
    return groups


def runs_on(item: Case, product: str, version: tuple[int, ...], known: set[str]) -> bool:
    """Whether the server has the command (not WAITAOF on Redis 7.0) and the arguments."""
    if item.helper not in known:
        return False
    return item.since is None or version >= item.since.get(product, (99,))


def helper_of(command: str) -> str:
    return "delete" if command == "DEL" else command.lower().replace(" ", "_").replace("-", "_")


def helpers_of(groups: dict[str, str]) -> set[str]:
    """The helper names of the server's commands."""
    return {helper_of(command) for command in groups}


def _group(doc: dict[bytes, Any]) -> str:
    # COMMAND DOCS spells it "sorted-set"; the specifications "sorted_set".
    group: bytes = doc[b"group"]
    return group.decode().replace("-", "_")
