"""What ``tools/gen_commands.py`` needs beyond the command specifications.

The specifications (``../shared/commands/json``) say what every command's
arguments, keys, flags and replies are. They do not say how a command uses
the *connection* it runs on, which is what decides whether it may share a
multiplexed connection; nor do they say everything a Python signature needs.
This module holds those decisions, each with its reason, as data. The
generator refuses to run when a command of the connection, transactions or
pub/sub groups (or one flagged ``NO_MULTI`` or ``PUBSUB``) has no decision
here, so a new command of that kind is decided by a person, never by
default.
"""

from __future__ import annotations

# -- Command classes -----------------------------------------------------------------

#: Commands that put the connection into subscription mode, or take it out:
#: their replies are push frames, not replies. Only the pub/sub API uses them.
SUBSCRIPTION: dict[str, str] = {
    "SUBSCRIBE": "use `async with redis.subscribe(channel, ...)`",
    "PSUBSCRIBE": "use `async with redis.subscribe(patterns=[...])`",
    "SSUBSCRIBE": "use `async with redis.ssubscribe(channel, ...)`",
    "UNSUBSCRIBE": "call `unsubscribe()` on the Subscription that `redis.subscribe()` gave",
    "PUNSUBSCRIBE": "call `punsubscribe()` on the Subscription that `redis.subscribe()` gave",
    "SUNSUBSCRIBE": "call `unsubscribe()` on the Subscription that `redis.ssubscribe()` gave",
}

#: Commands that change the state of the connection they run on: on a shared
#: connection every other caller would inherit the change (or break). Each
#: names what to use instead.
CONNECTION_STATE: dict[str, str] = {
    "MULTI": "use `async with redis.transaction() as tx:`",
    "EXEC": "use `async with redis.transaction() as tx:` (EXEC is sent when the block exits)",
    "DISCARD": "raise inside `async with redis.transaction()` to discard it",
    "WATCH": "use `async with redis.transaction(*watch_keys) as tx:`",
    "UNWATCH": "use `async with redis.transaction(*watch_keys) as tx:`, which unwatches at exit",
    "RESET": "close the client and open a new one",
    "QUIT": "leave the client's `async with` block",
    "SELECT": "open the client with `db=N` (or `/N` at the end of the URL)",
    "HELLO": "open the client with `protocol=2` or `protocol=3`",
    "AUTH": "open the client with `username=` and `password=` (or put them in the URL)",
    "CLIENT|SETNAME": "open the client with `client_name=`",
    "CLIENT|SETINFO": "the name and version of the library are the client's to set",
    "CLIENT|REPLY": "every caller of a shared connection needs its replies",
    "CLIENT|TRACKING": "client-side caching needs a connection of its own",
    "CLIENT|CACHING": "client-side caching needs a connection of its own",
    "CLIENT|NO-EVICT": "the flag would apply to every caller of the connection",
    "CLIENT|NO-TOUCH": "the flag would apply to every caller of the connection",
    "CLIENT|CAPA": "capabilities are the client's to declare",
    "CLIENT|IMPORT-SOURCE": "the flag would apply to every caller of the connection",
    "READONLY": "the cluster client chooses primaries and replicas itself",
    "READWRITE": "the cluster client chooses primaries and replicas itself",
    "ASKING": "the cluster client sends ASKING itself when it follows an ASK redirection",
    "MONITOR": "it turns the connection into a stream of every command the server runs; "
    "use `redis-cli monitor`",
    "SYNC": "the replication protocol is for replicas, not clients",
    "PSYNC": "the replication protocol is for replicas, not clients",
    "REPLCONF": "the replication protocol is for replicas, not clients",
}

#: Commands whose answer is about the writes of the connection they run on.
PINNED: dict[str, str] = {
    "WAIT": "it counts the writes of its own connection: send it after the writes in the same "
    "`batch()` or `transaction()`",
    "WAITAOF": "it counts the writes of its own connection: send it after the writes in the "
    "same `batch()` or `transaction()`",
}

#: Commands of the groups that need a decision, reviewed and found to share a
#: connection safely: they neither change the connection's state nor read
#: more than one reply's worth of it.
REVIEWED_SHARED: dict[str, str] = {
    "PING": "answered at once; PONG (or the message) is an ordinary reply",
    "ECHO": "answered at once",
    "CLIENT": "a container: its subcommands are classed one by one",
    "CLIENT|ID": "reads the connection's id without changing anything",
    "CLIENT|INFO": "reads the connection's description without changing anything",
    "CLIENT|GETNAME": "reads the connection's name without changing anything",
    "CLIENT|GETREDIR": "reads the tracking redirection without changing anything",
    "CLIENT|TRACKINGINFO": "reads the tracking state without changing anything",
    "CLIENT|LIST": "server-wide listing",
    "CLIENT|KILL": "acts on other connections, by filter; the server answers at once",
    "CLIENT|PAUSE": "server-wide; the server answers at once",
    "CLIENT|UNPAUSE": "server-wide",
    "CLIENT|UNBLOCK": "acts on another, blocked, connection",
    "CLIENT|HELP": "help text",
    "PUBLISH": "answered at once with the number of receivers",
    "SPUBLISH": "answered at once with the number of receivers",
    "PUBSUB": "a container: its subcommands are classed one by one",
    "PUBSUB|CHANNELS": "server-wide listing",
    "PUBSUB|NUMPAT": "server-wide count",
    "PUBSUB|NUMSUB": "server-wide counts",
    "PUBSUB|SHARDCHANNELS": "server-wide listing",
    "PUBSUB|SHARDNUMSUB": "server-wide counts",
    "PUBSUB|HELP": "help text",
    "SAVE": "server-wide; the server answers when the dump is written",
    "SHUTDOWN": "server-wide: it ends every connection alike",
}

#: Groups whose every command needs a decision above.
DECIDED_GROUPS = frozenset({"connection", "transactions", "pubsub"})
#: Flags that make a command need a decision above, whatever its group.
DECIDED_FLAGS = frozenset({"NO_MULTI", "PUBSUB"})

#: Cluster tips (``request_policy``/``response_policy``) that differ from the
#: specifications', and why. None removes the tip.
TIP_OVERRIDES: dict[str, dict[str, str | None]] = {
    # The specifications say "special"; Redis 7.0 gives no response policy.
    # A key from any shard is a random key, so the first shard's non-nil
    # reply will do, which is what a reply without a policy gets.
    "RANDOMKEY": {"response_policy": None},
}

# -- Helpers -------------------------------------------------------------------------

#: Groups without typed helpers: sentinel commands run on sentinels, not on
#: the servers these clients talk to.
NO_HELPER_GROUPS = frozenset({"sentinel", "transactions"})

#: Commands without a typed helper, and why. (Commands of the subscription,
#: connection-state classes have none either: ``execute`` refuses them.)
NO_HELPER: dict[str, str] = {
    "DEBUG": "debugging subcommands of the server, with free-form arguments",
    "PFDEBUG": "an internal debugging command of HyperLogLog",
    "PFSELFTEST": "an internal test of HyperLogLog",
    "RESTORE-ASKING": "sent by the cluster itself during slot migration",
    "COMMAND": "the whole command table: the client reads it with `execute`",
    "COMMAND|DOCS": "a recursive reply; the client reads it with `execute`",
    "COMMAND|INFO": "a recursive reply; the client reads it with `execute`",
    "LATENCY|HISTOGRAM": "a nested reply of per-command maps; use `execute`",
    "CLUSTER|GETSLOTMIGRATIONS": "Valkey 9 slot migration: no reply schema anywhere yet",
    "CLUSTER|MIGRATESLOTS": "Valkey 9 slot migration: no reply schema anywhere yet",
    "CLUSTER|CANCELSLOTMIGRATIONS": "Valkey 9 slot migration: no reply schema anywhere yet",
    "CLUSTER|FLUSHSLOT": "Valkey 9 slot migration: no reply schema anywhere yet",
    "CLUSTER|SYNCSLOTS": "Valkey 9 slot migration: no reply schema anywhere yet",
}

#: Hand-written helpers (``triopipe/_commands/_manual.py``), and why.
MANUAL: dict[str, str] = {
    "SET": "the most used write: its builder is tuned by hand, and its reply depends on GET",
    "PING": "True for PONG, or the message echoed back",
    "BITFIELD": "a list of GET/SET/INCRBY/OVERFLOW operations, in the caller's order",
    "MIGRATE": "one key or several (sent with KEYS and an empty key), and AUTH/AUTH2",
    "REPLICAOF": "a host and port, or NO ONE",
    "SLAVEOF": "a host and port, or NO ONE",
    "CLIENT|KILL": "an old single-address form and a list of filters",
}

#: Builders also importable from another group's module, where triopipe
#: had them before generation (``triopipe._commands.server.ping``).
ALSO_IN: dict[str, str] = {"PING": "server"}

#: Helper names that differ from the command's name (Python keywords).
HELPER_NAMES: dict[str, str] = {"DEL": "delete"}

#: Parameter names that differ from the specification's, to keep the
#: signatures triopipe had before generation, or because the name is a
#: Python keyword.
RENAMES: dict[str, dict[str, str]] = {
    "*": {"async": "asynchronous"},
    "INCRBY": {"increment": "amount"},
    "XADD": {"data": "fields"},
    "HSETEX": {"data": "mapping"},
    "GEOADD": {"data": "items"},
}

#: Arguments left out of a helper, and why.
OMIT: dict[str, dict[str, str]] = {
    # ZADD INCR turns the reply from a count into a score (or nil): use ZINCRBY.
    "ZADD": {"increment": "use `zincrby` to increment a score"},
}

#: Arguments of the specification that are mutually exclusive although the
#: specification lists them apart (the server refuses the combination).
EXCLUSIVE: dict[str, list[tuple[str, ...]]] = {
    "ZADD": [("nx", "gt", "lt")],
}

#: Arguments that are keyword-only with a default in the helper.
DEFAULTS: dict[str, dict[str, str]] = {
    "XADD": {"id": '"*"'},
}

#: String replies that hold a number: the helper returns a float.
NUMBER_STRINGS = frozenset({"INCRBYFLOAT", "HINCRBYFLOAT", "GEODIST"})

#: Commands whose RESP3 reply is a set (the specification's JSON schema
#: cannot tell a set from an array; ``uniqueItems`` is also used for ordered
#: arrays). Checked against a live server by the tests.
SET_REPLIES = frozenset({"SMEMBERS", "SINTER", "SUNION", "SDIFF", "SPOP"})

#: Replies that depend on the arguments: ``(condition, shape)`` pairs tried
#: in order, then the default. A condition is a Python expression over the
#: helper's parameters; a shape is an index into the reply schema's
#: ``oneOf``/``anyOf`` alternatives, or the name of a shape in
#: ``SHAPES``.
VARIANTS: dict[str, tuple[list[tuple[str, int | str]], int | str]] = {
    "ZRANGE": ([("withscores", 1)], 0),
    "ZRANGEBYSCORE": ([("withscores", 1)], 0),
    "ZREVRANGE": ([("withscores", 1)], 0),
    "ZREVRANGEBYSCORE": ([("withscores", 1)], 0),
    "ZUNION": ([("withscores", 1)], 0),
    "ZINTER": ([("withscores", 1)], 0),
    "ZDIFF": ([("withscores", 1)], 0),
    "ZPOPMIN": ([("count is not None", 1)], "optional_member_score"),
    "ZPOPMAX": ([("count is not None", 1)], "optional_member_score"),
    "ZRANDMEMBER": ([("withscores", 3), ("count is not None", 2)], "optional_string"),
    "HRANDFIELD": ([("withvalues", 3), ("count is not None", 2)], "optional_string"),
    "ZRANK": ([("withscore", "optional_rank_score")], "optional_int"),
    "ZREVRANK": ([("withscore", "optional_rank_score")], "optional_int"),
    "LPOP": ([("count is not None", "optional_strings")], "optional_string"),
    "RPOP": ([("count is not None", "optional_strings")], "optional_string"),
    "SPOP": ([("count is not None", "string_set")], "optional_string"),
    "SRANDMEMBER": ([("count is not None", "strings")], "optional_string"),
    "LPOS": ([("count is not None", "ints")], "optional_int"),
    "SORT": ([("store is not None", 0)], 1),
    "GEORADIUS": (
        [
            ("store is not None or storedist is not None", 2),
            ("withcoord or withdist or withhash", "geo_items"),
        ],
        0,
    ),
    "GEORADIUSBYMEMBER": (
        [
            ("store is not None or storedist is not None", 2),
            ("withcoord or withdist or withhash", "geo_items"),
        ],
        0,
    ),
    "GEORADIUS_RO": ([("withcoord or withdist or withhash", "geo_items")], 0),
    "GEORADIUSBYMEMBER_RO": ([("withcoord or withdist or withhash", "geo_items")], 0),
    "GEOSEARCH": ([("withcoord or withdist or withhash", "geo_items")], 0),
    "LCS": ([("len", 1), ("idx", 2)], 0),
    "XAUTOCLAIM": ([("justid", 1)], 0),
    "XCLAIM": ([("justid", 0)], 1),
    # The summary of a group with nothing pending is [0, nil, nil, nil].
    "XPENDING": ([("start is not None", 0)], "pending_summary"),
    "XINFO|STREAM": ([("full", 1)], 0),
    "ACL|LOG": ([("reset", 1)], 0),
    "SCAN": ([], "scan_keys"),
    "SSCAN": ([], "scan_keys"),
    "HSCAN": ([("novalues", "scan_keys")], "scan_mapping"),
    "ZSCAN": ([("noscores", "scan_keys")], "scan_scores"),
    "CLUSTER|BUMPEPOCH": ([], 0),
    "ZADD": ([], "int"),
    # The specifications say an array of strings; a missing member is nil.
    "GEOHASH": ([], "optional_strings_list"),
    "WAITAOF": ([], "int_pair"),
    "ROLE": ([], "any_list"),
    "TIME": ([], "time"),
}

#: Shapes named in ``VARIANTS``: ``(Python type, shaper expression or None)``.
#: The shaper turns the reply, RESP2 or RESP3, into the Python type.
SHAPES: dict[str, tuple[str, str | None]] = {
    "optional_string": ("bytes | str | None", None),
    "optional_strings": ("list[bytes | str] | None", None),
    "strings": ("list[bytes | str]", None),
    "optional_strings_list": ("list[bytes | str | None]", None),
    "string_set": ("set[bytes | str]", "to_set"),
    "optional_int": ("int | None", None),
    "int": ("int", None),
    "int_pair": ("tuple[int, int]", "tuple_of(None, None)"),
    "ints": ("list[int]", None),
    "optional_member_score": (
        "tuple[bytes | str, float] | None",
        "optional_pair(None, to_float)",
    ),
    "optional_rank_score": ("tuple[int, float] | None", "optional_pair(None, to_float)"),
    "geo_items": (
        "list[tuple[bytes | str, float | None, int | None, tuple[float, float] | None]]",
        "geo_items",
    ),
    "scan_keys": ("tuple[int, list[bytes | str]]", "scan_page(None)"),
    "scan_mapping": ("tuple[int, dict[bytes | str, bytes | str]]", "scan_page(to_dict)"),
    "scan_scores": (
        "tuple[int, list[tuple[bytes | str, float]]]",
        "scan_page(pairs_of(None, to_float))",
    ),
    "pending_summary": (
        "tuple[int, bytes | str | None, bytes | str | None,"
        " list[tuple[bytes | str, bytes | str]] | None]",
        "tuple_of(None, None, None, optional(pairs_of(None, None)))",
    ),
    "any_list": ("list[Any]", None),
    "time": ("tuple[int, int]", "tuple_of(int, int)"),
}

#: Reply schemas of commands that only a server snapshot describes (its
#: ``COMMAND DOCS`` has no ``reply_schema``), from the servers' documentation.
EXTRA_REPLIES: dict[str, object] = {
    "HEXPIRE": {"type": "array", "items": {"type": "integer"}},
    "HEXPIREAT": {"type": "array", "items": {"type": "integer"}},
    "HPEXPIRE": {"type": "array", "items": {"type": "integer"}},
    "HPEXPIREAT": {"type": "array", "items": {"type": "integer"}},
    "HEXPIRETIME": {"type": "array", "items": {"type": "integer"}},
    "HPEXPIRETIME": {"type": "array", "items": {"type": "integer"}},
    "HTTL": {"type": "array", "items": {"type": "integer"}},
    "HPTTL": {"type": "array", "items": {"type": "integer"}},
    "HPERSIST": {"type": "array", "items": {"type": "integer"}},
    "HGETEX": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "null"}]}},
    "HGETDEL": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "null"}]}},
    "HSETEX": {"oneOf": [{"const": 0}, {"const": 1}]},
    "DELIFEQ": {"oneOf": [{"const": 0}, {"const": 1}]},
    "MSETEX": {"oneOf": [{"const": 0}, {"const": 1}]},
    "CLUSTERSCAN": {"type": "array", "items": [{"type": "string"}, {"type": "array"}]},
    "COMMANDLOG|GET": {"type": "array"},
    "COMMANDLOG|LEN": {"type": "integer"},
    "COMMANDLOG|RESET": {"const": "OK"},
}
