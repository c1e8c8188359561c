"""The slot table (rendezvous hashing) and routing plans (pure, no server)."""

from __future__ import annotations

import pytest

import triopipe
from triopipe._routing import (
    SLOTS,
    AnyServer,
    Broadcast,
    ShardRouter,
    SlotRouter,
    Split,
    key_slot,
    slot_table,
)

NAMES = ("redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379")


def test_table_is_deterministic_and_balanced() -> None:
    table = slot_table(NAMES)
    assert len(table) == SLOTS
    assert table == slot_table(tuple(NAMES))
    for index in range(len(NAMES)):
        # Each of three shards gets a third of the slots, give or take 5%.
        assert abs(table.count(index) - SLOTS / 3) < SLOTS / 3 * 0.05


def test_table_depends_on_names_not_order() -> None:
    table = slot_table(NAMES)
    reordered = ("redis://10.0.0.3:6379", "redis://10.0.0.1:6379", "redis://10.0.0.2:6379")
    other = slot_table(reordered)
    assert [NAMES[i] for i in table] == [reordered[i] for i in other]


def test_adding_a_server_moves_about_a_quarter_of_the_slots_to_it() -> None:
    before = [NAMES[i] for i in slot_table(NAMES)]
    grown = (*NAMES, "redis://10.0.0.4:6379")
    after = [grown[i] for i in slot_table(grown)]
    moved = [slot for slot in range(SLOTS) if before[slot] != after[slot]]
    assert abs(len(moved) - SLOTS / 4) < SLOTS / 4 * 0.1
    # Every moved slot went to the new server; no slot changed hands otherwise.
    assert all(after[slot] == grown[3] for slot in moved)


def test_removing_a_server_moves_only_its_slots() -> None:
    before = [NAMES[i] for i in slot_table(NAMES)]
    shrunk = NAMES[:1] + NAMES[2:]
    after = [shrunk[i] for i in slot_table(shrunk)]
    for slot in range(SLOTS):
        if before[slot] != NAMES[1]:
            assert after[slot] == before[slot]
        else:
            assert after[slot] in shrunk


def test_no_shards_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        slot_table(())
    with pytest.raises(ValueError, match="distinct"):
        ShardRouter(["a", "a"])


def keys_on_shards(router: ShardRouter) -> list[str]:
    """One key per shard, in shard order."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(router.names):
        key = f"key:{i}"
        found.setdefault(router.shard_of_key(key), key)
        i += 1
    return [found[index] for index in range(len(router.names))]


def test_single_key_commands_go_to_the_owner() -> None:
    router = ShardRouter(NAMES)
    for key in ("a", "b", "{user1}:x", b"bytes", 42):
        owner = router.table[key_slot(key)]
        assert router.route(("GET", key)) == owner
        assert router.route((b"get", key)) == owner  # the shortcut, learned
        assert router.route(("SINTER", key, key)) == owner
        assert router.shard_of_command(("HSET", key, "f", "v")) == owner


def test_hash_tags_keep_multi_key_commands_whole() -> None:
    router = ShardRouter(NAMES)
    route = router.route(("SINTER", "{t}a", "{t}b", "{t}c"))
    assert route == router.shard_of_key("t")


def test_cross_shard_commands_raise() -> None:
    router = ShardRouter(NAMES)
    a, b, _ = keys_on_shards(router)
    for args in [
        ("SINTER", a, b),
        ("RENAME", a, b),
        ("EVAL", "return 1", 2, a, b),
        ("MSETNX", a, 1, b, 2),
        ("ZUNIONSTORE", a, 1, b),
    ]:
        with pytest.raises(triopipe.CrossSlotError, match="different shards"):
            router.route(args)
        with pytest.raises(triopipe.CrossSlotError):
            router.shard_of_command(args)


def test_mget_splits_and_reassembles_in_order() -> None:
    router = ShardRouter(NAMES)
    a, b, c = keys_on_shards(router)
    route = router.route(("MGET", a, b, a, c))
    assert isinstance(route, Split)
    assert route.parts == [(0, ("MGET", a, a)), (1, ("MGET", b)), (2, ("MGET", c))]
    assert route.merge([[b"a1", b"a2"], [b"b"], [None]]) == [b"a1", b"b", b"a2", None]


def test_mset_and_counting_commands_split() -> None:
    router = ShardRouter(NAMES)
    a, b, _ = keys_on_shards(router)
    route = router.route(("MSET", b, 1, a, 2))
    assert isinstance(route, Split)
    assert route.parts == [(1, ("MSET", b, 1)), (0, ("MSET", a, 2))]
    assert route.merge([b"OK", b"OK"]) == b"OK"
    for name in ("DEL", "UNLINK", "EXISTS", "TOUCH"):
        route = router.route((name, a, b, a))
        assert isinstance(route, Split)
        assert route.merge([2, 1]) == 3


def test_an_error_in_a_part_is_the_commands_error() -> None:
    router = ShardRouter(NAMES)
    a, b, _ = keys_on_shards(router)
    route = router.route(("DEL", a, b))
    assert isinstance(route, Split)
    error = triopipe.ConnectionLostError("gone", sent=True)
    assert route.merge([1, error]) is error


def test_server_wide_commands_fan_out() -> None:
    # A broadcast names no shard: the client sends it to every server it
    # knows (here three) and merges their replies, in the order it sent.
    router = ShardRouter(NAMES)
    cases = [
        (("DBSIZE",), [1, 2, 3], 6),
        (("PING",), [b"PONG"] * 3, b"PONG"),
        (("FLUSHDB",), [b"OK"] * 3, b"OK"),
        (("FLUSHALL", "ASYNC"), [b"OK"] * 3, b"OK"),
        (("KEYS", "*"), [[b"a"], [], [b"b", b"c"]], [b"a", b"b", b"c"]),
        (("RANDOMKEY",), [None, b"x", b"y"], b"x"),
        (("SCRIPT", "EXISTS", "s1", "s2"), [[1, 1], [1, 0], [1, 1]], [1, 0]),
        (("SCRIPT", "KILL"), [triopipe.ResponseError("NOTBUSY", "no"), b"OK", b"OK"], b"OK"),
    ]
    for args, replies, merged in cases:
        route = router.route(args)
        assert isinstance(route, Broadcast)
        assert route.command == args
        assert route.merge(replies) == merged


def test_key_less_commands_without_a_meaning_across_shards_raise() -> None:
    # Their replies cannot be merged (INFO: "special"), or each server must
    # be walked on its own (SCAN).
    router = ShardRouter(NAMES)
    for args in [("INFO",), ("SCAN", 0), ("MEMORY", "STATS")]:
        with pytest.raises(triopipe.NoShardError, match="shards"):
            router.route(args)
        assert router.shard_of_command(args) is None


def test_key_less_commands_any_server_may_run_go_to_any_one() -> None:
    router = ShardRouter(NAMES)
    for args in [("EVAL", "return 1", 0), ("FCALL", "f", 0), ("TIME",), ("ECHO", "x")]:
        route = router.route(args)
        assert isinstance(route, AnyServer)
        assert route.command == args
        assert route.merge([b"reply"]) == b"reply"


def test_publish_goes_to_the_shard_its_channel_hashes_to() -> None:
    # Independent shards do not spread messages: a channel lives where a key
    # of the same name would, for publishers and subscribers alike.
    router = ShardRouter(NAMES)
    for channel in ["news", "alerts", "{user1}:inbox"]:
        assert router.route(("PUBLISH", channel, "hi")) == router.shard_of_key(channel)
    # On a cluster, any node spreads it to all.
    assert isinstance(SlotRouter().route(("PUBLISH", "news", "hi")), AnyServer)


def test_empty_and_unknown_commands_are_refused() -> None:
    router = ShardRouter(NAMES)
    with pytest.raises(ValueError, match="empty"):
        router.route(())
    with pytest.raises(ValueError, match="unknown command"):
        router.route(("NOSUCH", "k"))
