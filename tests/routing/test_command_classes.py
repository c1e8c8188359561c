"""The command table: every command has a class, and the API around it (no server)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import triopipe
from triopipe._routing import (
    CommandClass,
    CommandKind,
    CommandNotAllowedError,
    UnknownCommandClassError,
    UnknownCommandError,
    check_commands,
    check_pipelinable,
    class_from_info,
    command_class,
    command_kind,
    command_name,
    forget_learned_commands,
    key_positions,
    learn_command,
    needs_getkeys,
    positions_from_getkeys,
    refusal,
    request_policy,
    response_policy,
    unknown_commands,
)
from triopipe._routing import _commands as commands_module

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = sorted((ROOT / "tools" / "commands").glob("*.json"))
SPECS = Path(
    os.environ.get("TRIOPIPE_COMMAND_SPECS", ROOT.parent / "shared" / "commands" / "json")
)

SHARED = CommandClass.SHARED
BLOCKING = CommandClass.BLOCKING
SUBSCRIPTION = CommandClass.SUBSCRIPTION
STATE = CommandClass.CONNECTION_STATE
PINNED = CommandClass.PINNED
UNKNOWN = CommandClass.UNKNOWN


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    forget_learned_commands()
    yield
    forget_learned_commands()


def _as_args(name: str) -> tuple[str, ...]:
    return tuple(name.replace("|", " ").split(" "))


def _snapshot_commands() -> list[str]:
    names = []
    for path in SNAPSHOTS:
        names += json.loads(path.read_text())["commands"]
    return sorted(set(names))


def test_snapshots_are_there() -> None:
    assert [path.stem for path in SNAPSHOTS] == ["redis-7.0.15", "valkey-9.1.2"]


@pytest.mark.parametrize("name", _snapshot_commands())
def test_every_command_of_the_servers_has_a_class(name: str) -> None:
    assert command_class(_as_args(name)) is not UNKNOWN, name


def test_every_command_of_the_specifications_has_a_class() -> None:
    if not SPECS.is_dir():
        pytest.skip(f"no command specifications at {SPECS}")
    names = []
    for path in SPECS.glob("*.json"):
        ((name, body),) = json.loads(path.read_text()).items()
        container = body.get("container")
        names.append(f"{container} {name}" if container else name)
    assert len(names) == 399
    unknown = [name for name in names if command_class(_as_args(name)) is UNKNOWN]
    assert unknown == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # Shared: answered at once, one reply.
        (("GET", "k"), SHARED),
        ((b"set", b"k", b"v"), SHARED),
        (("PUBLISH", "c", "m"), SHARED),
        (("EVAL", "return 1", 0), SHARED),
        (("CLIENT", "LIST"), SHARED),
        (("client", "id"), SHARED),
        (("HEXPIRE", "h", 10, "FIELDS", 1, "f"), SHARED),  # Valkey 9
        (("HGETEX", "h", "FIELDS", 1, "f"), SHARED),
        (("XREAD", "COUNT", 1, "STREAMS", "s", "0"), SHARED),
        ((42,), SHARED),
        # Blocking: hold the connection until the server answers.
        (("BLPOP", "q", 0), BLOCKING),
        ((bytearray(b"blmove"), "a", "b", "LEFT", "RIGHT", 0), BLOCKING),
        (("BZMPOP", 0, 1, "z", "MIN"), BLOCKING),
        (("XREAD", "block", 0, "STREAMS", "s", "$"), BLOCKING),
        ((b"xreadgroup", b"GROUP", b"g", b"c", b"BLOCK", 5, b"STREAMS", b"s", b">"), BLOCKING),
        # Subscriptions: push frames, not replies.
        (("SUBSCRIBE", "c"), SUBSCRIPTION),
        (("UNSUBSCRIBE",), SUBSCRIPTION),
        (("punsubscribe", "p*"), SUBSCRIPTION),
        (("SUNSUBSCRIBE", "c"), SUBSCRIPTION),
        (("SSUBSCRIBE", "c"), SUBSCRIPTION),
        # Connection state.
        (("MULTI",), STATE),
        (("EXEC",), STATE),
        (("DISCARD",), STATE),
        (("WATCH", "k"), STATE),
        (("UNWATCH",), STATE),
        (("RESET",), STATE),
        (("SELECT", 1), STATE),
        (("HELLO", 3), STATE),
        (("AUTH", "pw"), STATE),
        (("CLIENT", "REPLY", "OFF"), STATE),
        (("client", "tracking", "on"), STATE),
        (("CLIENT", "SETNAME", "n"), STATE),
        (("CLIENT", "CACHING", "YES"), STATE),
        (("READONLY",), STATE),
        (("READWRITE",), STATE),
        (("ASKING",), STATE),
        (("MONITOR",), STATE),
        (("QUIT",), STATE),
        (("SYNC",), STATE),
        (("PSYNC", "?", -1), STATE),
        # Pinned: about the writes of their own connection.
        (("WAIT", 1, 0), PINNED),
        (("WAITAOF", 1, 0, 0), PINNED),
        # Not in the table: the server is asked.
        (("JSON.SET", "k", "$", "1"), UNKNOWN),
        (("FT.SEARCH", "idx", "*"), UNKNOWN),
        (("CLIENT", "NEWTHING"), UNKNOWN),
        (("OBJECT", "NEWTHING", "k"), UNKNOWN),
    ],
)
def test_command_class(args: tuple[Any, ...], expected: CommandClass) -> None:
    assert command_class(args) is expected
    assert command_class(args) is expected  # again, from the cache of names seen


def test_names_seen_are_remembered_only_when_the_arguments_cannot_matter() -> None:
    command_class(("get", "k"))
    assert commands_module._SEEN["get"] is SHARED
    command_class(("XREAD", "STREAMS", "s", "0"))
    command_class(("CLIENT", "LIST"))
    command_class(("JSON.GET", "k"))
    assert "XREAD" not in commands_module._SEEN
    assert "CLIENT" not in commands_module._SEEN
    assert "JSON.GET" not in commands_module._SEEN


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("MULTI",), ["MULTI", "changes the state", "redis.transaction()"]),
        (("EXEC",), ["redis.transaction()"]),
        (("WATCH", "k"), ["redis.transaction(*watch_keys)"]),
        (("SELECT", 2), ["SELECT", "db=N"]),
        (("HELLO", 2), ["protocol=2"]),
        (("AUTH", "pw"), ["password="]),
        (("CLIENT", "REPLY", "OFF"), ["CLIENT REPLY", "replies"]),
        (("CLIENT", "SETNAME", "n"), ["client_name="]),
        (("RESET",), ["open a new one"]),
        (("QUIT",), ["async with"]),
        (("READONLY",), ["cluster client"]),
        (("ASKING",), ["ASK redirection"]),
        (("MONITOR",), ["redis-cli monitor"]),
        (("SUBSCRIBE", "c"), ["SUBSCRIBE", "subscription", "redis.subscribe("]),
        (("UNSUBSCRIBE", "c"), ["unsubscribe()", "Subscription"]),
        (("SSUBSCRIBE", "c"), ["redis.ssubscribe("]),
        (("WAIT", 1, 0), ["WAIT", "writes", "batch()", "transaction()"]),
        (("WAITAOF", 1, 0, 0), ["WAITAOF", "batch()"]),
    ],
)
def test_refusals_name_what_to_use_instead(args: tuple[Any, ...], words: list[str]) -> None:
    error = refusal(args)
    assert isinstance(error, CommandNotAllowedError)
    assert isinstance(error, triopipe.TriopipeError)
    assert isinstance(error, ValueError)
    for word in words:
        assert word in str(error)
    assert error.command == command_name(args)
    assert error.command_class is command_class(args)


def test_where_a_command_may_run() -> None:
    assert refusal(("GET", "k")) is None
    assert refusal(("GET", "k"), "pipeline") is None
    assert refusal(("GET", "k"), "pinned") is None
    # Blocking: alone (a dedicated connection), never among other commands.
    assert refusal(("BLPOP", "q", 0)) is None
    assert "cannot be pipelined" in str(refusal(("BLPOP", "q", 0), "pipeline"))
    assert refusal(("BLPOP", "q", 0), "pinned") is not None
    # Pinned: only where the connection carried the caller's writes.
    assert refusal(("WAIT", 1, 0), "pinned") is None
    assert refusal(("WAIT", 1, 0)) is not None
    assert refusal(("WAIT", 1, 0), "pipeline") is not None
    # Connection state and subscriptions: nowhere on a shared or pinned connection.
    for where in ("execute", "pipeline", "pinned"):
        assert refusal(("MULTI",), where) is not None
        assert refusal(("UNSUBSCRIBE",), where) is not None
    # Unknown: ask the server first.
    error = refusal(("JSON.SET", "k", "$", "1"))
    assert isinstance(error, UnknownCommandClassError)
    assert "learn_commands()" in str(error)


def test_check_commands_refuses_before_anything_is_sent() -> None:
    check_commands([("SET", "k", 1), ("GET", "k")])
    check_commands([("SET", "k", 1), ("WAIT", 1, 0)], "pinned")
    with pytest.raises(CommandNotAllowedError, match="WAIT"):
        check_commands([("SET", "k", 1), ("WAIT", 1, 0)])
    with pytest.raises(CommandNotAllowedError, match="MULTI"):
        check_commands([("GET", "k"), ("multi",)])
    with pytest.raises(UnknownCommandClassError, match=r"JSON\.SET"):
        check_commands([("JSON.SET", "k", "$", "1")])


def test_triopipe_0_1_checks_keep_their_meaning() -> None:
    # The facades send ASKING and READONLY in pipelines themselves.
    check_pipelinable([("ASKING",), ("GET", "k")])
    check_pipelinable([("READONLY",), ("GET", "k"), ("JSON.GET", "k")])
    with pytest.raises(ValueError, match="BLPOP"):
        check_pipelinable([("GET", "k"), ("blpop", "q", 0)])
    with pytest.raises(ValueError, match="UNSUBSCRIBE"):
        check_pipelinable([("UNSUBSCRIBE", "c")])
    with pytest.raises(ValueError, match="MONITOR"):
        check_pipelinable([("MONITOR",)])
    assert command_kind(("GET", "k")) is CommandKind.SHARED
    assert command_kind(("BLPOP", "q", 0)) is CommandKind.BLOCKING
    assert command_kind(("WAIT", 1, 0)) is CommandKind.BLOCKING
    assert command_kind(("SUBSCRIBE", "c")) is CommandKind.SUBSCRIPTION
    assert command_kind(("UNSUBSCRIBE", "c")) is CommandKind.SUBSCRIPTION
    assert command_kind(("MONITOR",)) is CommandKind.SUBSCRIPTION
    assert command_kind(("ASKING",)) is CommandKind.SHARED
    assert command_kind(("JSON.GET", "k")) is CommandKind.SHARED


def test_unknown_commands_are_listed_once() -> None:
    commands = [("GET", "k"), ("JSON.GET", "a"), (b"json.get", "b"), ("CLIENT", "NEWTHING")]
    assert unknown_commands(commands) == ["JSON.GET", "CLIENT|NEWTHING"]


# What COMMAND INFO answers for a module's commands, in both protocols.
JSON_SET_RESP2 = [
    b"json.set",
    -4,
    [b"write", b"denyoom", b"module"],
    1,
    1,
    1,
    [b"@write", b"@module"],
    [],
    [
        [
            b"flags",
            [b"RW", b"update"],
            b"begin_search",
            [b"type", b"index", b"spec", [b"index", 1]],
            b"find_keys",
            [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]],
        ]
    ],
    [],
]
BLOCKING_RESP3 = [
    "bf.waitfor",
    3,
    {"blocking", "module"},
    1,
    1,
    1,
    {"@slow", "@blocking", "@module"},
    [],
    [
        {
            "flags": ["RO"],
            "begin_search": {"type": "index", "spec": {"index": 1}},
            "find_keys": {"type": "range", "spec": {"lastkey": 0, "keystep": 1, "limit": 0}},
        }
    ],
    [],
]
CONTAINER = [
    "ft.config",
    -2,
    [],
    0,
    0,
    0,
    [],
    [],
    [],
    [
        ["ft.config|get", -3, ["readonly"], 0, 0, 0, ["@read"], [], [], []],
        [
            "ft.config|set",
            -4,
            ["write"],
            0,
            0,
            0,
            ["@write"],
            ["request_policy:all_shards"],
            [],
            [],
        ],
    ],
]
MOVABLE = ["mod.multi", -2, ["readonly", "movablekeys", "module"], 0, 0, 0, [], [], [], []]
OLD_STYLE = ["old.mget", -2, ["readonly", "module"], 1, -1, 1, [], [], [], []]
STATEFUL = ["mod.clientstate", 2, ["fast"], 0, 0, 0, ["@connection"], [], [], []]
SUBSCRIBING = ["mod.subscribe", -2, ["pubsub", "noscript"], 0, 0, 0, ["@pubsub"], [], [], []]


def test_learning_a_command_from_the_server() -> None:
    args = ("JSON.SET", "doc", "$", '{"a": 1}')
    with pytest.raises(UnknownCommandError):
        key_positions(args)
    assert learn_command(JSON_SET_RESP2) is SHARED
    assert command_class(args) is SHARED
    assert command_class((b"json.set", b"k", b"$", b"1")) is SHARED
    assert key_positions(args) == [1]
    assert request_policy(args) == "keys"
    check_commands([args])


def test_learning_from_resp3_a_blocking_command() -> None:
    assert learn_command(BLOCKING_RESP3) is BLOCKING
    assert command_class(("BF.WAITFOR", "k", 1)) is BLOCKING
    assert key_positions(("BF.WAITFOR", "k", 1)) == [1]


def test_learning_a_container() -> None:
    assert learn_command(CONTAINER) is SHARED
    assert command_class(("FT.CONFIG", "GET", "*")) is SHARED
    assert command_class(("FT.CONFIG", "SET", "x", "1")) is SHARED
    assert command_class(("FT.CONFIG", "NOPE")) is UNKNOWN
    assert key_positions(("FT.CONFIG", "GET", "*")) == []
    assert request_policy(("FT.CONFIG", "SET", "x", "1")) == "all_shards"
    assert request_policy(("FT.CONFIG", "GET", "*")) == "any_node"


def test_learning_keys_only_the_server_can_find() -> None:
    learn_command(MOVABLE)
    args = ("MOD.MULTI", "2", "a", "b")
    assert needs_getkeys(args)
    with pytest.raises(UnknownCommandError, match="COMMAND GETKEYS"):
        key_positions(args)
    assert positions_from_getkeys(args, [b"a", b"b"]) == [2, 3]
    assert request_policy(args) == "keys"
    with pytest.raises(ValueError, match="not among"):
        positions_from_getkeys(args, [b"zz"])


def test_learning_an_older_module_command() -> None:
    # No key specs, only first key, last key and step (-1: to the end).
    learn_command(OLD_STYLE)
    assert key_positions(("OLD.MGET", "a", "b", "c")) == [1, 2, 3]


def test_learned_classes_come_from_the_servers_flags() -> None:
    assert class_from_info(STATEFUL) is STATE
    assert class_from_info(SUBSCRIBING) is SUBSCRIPTION
    assert class_from_info(MOVABLE) is SHARED
    assert learn_command(STATEFUL) is STATE
    assert "changes the state" in str(refusal(("MOD.CLIENTSTATE", "x")))


def test_a_command_the_server_does_not_know_either() -> None:
    assert learn_command(None, name="NOSUCH") is SHARED
    assert command_class(("NOSUCH", "x")) is SHARED
    assert key_positions(("NOSUCH", "x")) == []
    with pytest.raises(ValueError, match="name"):
        learn_command(None)


def test_the_table_wins_over_what_is_learned() -> None:
    # A server that renamed its commands cannot make MULTI shared.
    assert learn_command(["multi", 1, ["fast"], 0, 0, 0, [], [], [], []]) is STATE
    assert command_class(("MULTI",)) is STATE


def test_the_stricter_of_two_learned_classes_stays() -> None:
    learn_command(["mod.x", 2, ["blocking"], 0, 0, 0, [], [], [], []])
    assert learn_command(["mod.x", 2, [], 0, 0, 0, [], [], [], []]) is BLOCKING


def test_forgetting_what_was_learned() -> None:
    learn_command(JSON_SET_RESP2)
    forget_learned_commands()
    assert command_class(("JSON.SET", "k", "$", "1")) is UNKNOWN
    with pytest.raises(UnknownCommandError):
        key_positions(("JSON.SET", "k", "$", "1"))


@pytest.mark.parametrize(
    ("args", "goes", "combines"),
    [
        (("GET", "k"), "keys", None),
        (("PUBLISH", "c", "m"), "any_node", None),
        (("EVAL", "return 1", 0), "any_node", None),
        (("EVAL", "return 1", 1, "k"), "keys", None),
        (("FCALL", "f", 0), "any_node", None),
        (("DBSIZE",), "all_shards", "agg_sum"),
        (("FLUSHALL",), "all_shards", "all_succeeded"),
        (("KEYS", "*"), "all_shards", None),
        (("SCRIPT", "LOAD", "return 1"), "all_nodes", "all_succeeded"),
        (("FUNCTION", "LOAD", "code"), "all_shards", "all_succeeded"),
        (("FUNCTION", "DELETE", "lib"), "all_shards", "all_succeeded"),
        (("FUNCTION", "FLUSH"), "all_shards", "all_succeeded"),
        (("MGET", "a", "b"), "multi_shard", None),
        (("DEL", "a"), "multi_shard", "agg_sum"),
        (("RANDOMKEY",), "all_shards", None),
        (("INFO",), "all_shards", "special"),
        (("SCAN", 0), "special", "special"),
    ],
)
def test_request_and_response_policies(
    args: tuple[Any, ...], goes: str, combines: str | None
) -> None:
    assert request_policy(args) == goes
    assert response_policy(args) == combines


def test_keys_of_commands_newer_than_redis_7_0() -> None:
    assert key_positions(("HGETEX", "h", "EX", 10, "FIELDS", 1, "f")) == [1]
    assert key_positions(("HEXPIRE", "h", 10, "FIELDS", 2, "a", "b")) == [1]
    assert key_positions(("MSETEX", 2, "a", 1, "b", 2, "EX", 10)) == [2, 4]
    assert key_positions(("DELIFEQ", "k", "v")) == [1]
