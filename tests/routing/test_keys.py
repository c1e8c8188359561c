"""Key slots, hash tags and key positions (pure, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from triopipe._routing import SLOTS, UnknownCommandError, hash_tag, key_positions, key_slot

# Checked against a real server's CLUSTER KEYSLOT (Redis 7.0).
KNOWN_SLOTS = [
    (b"foo", 12182),
    (b"somekey", 11058),
    (b"{user1000}.following", 3443),
    (b"foo{}{bar}", 8363),
    (b"foo{{bar}}zap", 4015),
    (b"foo{bar}{zap}", 5061),
    (b"{}", 15257),
    (b"{{a}}", 10276),
    (b"", 0),
    (b"a}b{c}", 7365),
    ("é".encode(), 10180),
    (b"123", 5970),
]


@pytest.mark.parametrize(("key", "slot"), KNOWN_SLOTS)
def test_known_slots(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot


def test_str_int_and_float_keys_hash_like_their_bytes() -> None:
    assert key_slot("foo") == key_slot(b"foo") == 12182
    assert key_slot("é") == key_slot("é".encode())
    assert key_slot(123) == key_slot(b"123")
    assert key_slot(1.5) == key_slot(b"1.5")
    assert key_slot(bytearray(b"foo")) == key_slot(memoryview(b"foo")) == 12182


def test_non_key_types_are_refused() -> None:
    with pytest.raises(TypeError):
        key_slot(True)
    with pytest.raises(TypeError):
        key_slot(None)


def test_hash_tags_co_locate() -> None:
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("{user1000}.following") == key_slot("user1000")


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        (b"{user1}:name", b"user1"),
        (b"plain", b"plain"),
        (b"{}", b"{}"),  # empty tag: the whole key
        (b"{}x{y}", b"{}x{y}"),  # only the first { counts, and its tag is empty
        (b"{{a}}", b"{a"),  # first {, first } after it
        (b"x{a", b"x{a"),  # no closing brace
        (b"x}a{", b"x}a{"),  # } before {
        (b"a{b}c{d}", b"b"),
    ],
)
def test_hash_tag_edge_cases(key: bytes, tag: bytes) -> None:
    assert hash_tag(key) == tag


def test_slots_cover_the_range() -> None:
    slots = {key_slot(f"key:{i}") for i in range(100_000)}
    assert min(slots) >= 0
    assert max(slots) < SLOTS
    assert len(slots) > SLOTS * 0.98  # 100k keys hit nearly every slot


@pytest.mark.parametrize(
    ("args", "positions"),
    [
        # first key
        (("GET", "k"), [1]),
        ((b"get", b"k"), [1]),
        (("SET", "k", "v", "EX", 5), [1]),
        (("OBJECT", "ENCODING", "k"), [2]),
        (("object", "encoding", "k"), [2]),
        (("XGROUP", "CREATE", "stream", "g", "$"), [2]),
        # all keys
        (("DEL", "a", "b", "c"), [1, 2, 3]),
        (("SINTER", "a", "b"), [1, 2]),
        (("RENAME", "a", "b"), [1, 2]),
        (("BLPOP", "a", "b", 0), [1, 2]),
        (("BITOP", "AND", "dest", "a", "b"), [2, 3, 4]),
        # keys interleaved with values
        (("MSET", "a", 1, "b", 2), [1, 3]),
        (("MSETNX", "a", 1, "b", 2, "c", 3), [1, 3, 5]),
        # numkeys-prefixed
        (("EVAL", "return 1", 2, "a", "b", "arg"), [3, 4]),
        (("EVALSHA", "abc", 0, "arg"), []),
        (("FCALL", "f", 1, "a", "arg"), [3]),
        (("ZUNIONSTORE", "d", 2, "a", "b", "WEIGHTS", 1, 2), [1, 3, 4]),
        (("ZINTERSTORE", "d", 1, "a"), [1, 3]),
        (("ZDIFFSTORE", "d", 2, "a", "b"), [1, 3, 4]),
        (("ZUNION", 2, "a", "b", "WITHSCORES"), [2, 3]),
        (("ZDIFF", 1, "a"), [2]),
        (("LMPOP", 2, "a", "b", "LEFT"), [2, 3]),
        (("BLMPOP", 0, 2, "a", "b", "LEFT"), [3, 4]),
        (("ZMPOP", 1, "a", "MIN"), [2]),
        (("BZMPOP", 0, 2, "a", "b", "MAX"), [3, 4]),
        (("SINTERCARD", 2, "a", "b", "LIMIT", 1), [2, 3]),
        (("ZINTERCARD", 3, "a", "b", "c"), [2, 3, 4]),
        (("EVAL", "s", "nan"), []),  # a bad count: the server will say so
        (("EVAL", "s", 5, "a"), [3]),  # too few keys: the ones that are there
        # keyword forms
        (("XREAD", "COUNT", 2, "STREAMS", "a", "b", "0", "0"), [4, 5]),
        (("XREAD", "BLOCK", 0, "STREAMS", "a", "$"), [4]),
        (("XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "b", ">", ">"), [5, 6]),
        (("GEORADIUS", "k", 1, 2, 3, "m", "STORE", "d"), [1, 7]),
        (("GEORADIUS", "k", 1, 2, 3, "m", "STOREDIST", "d"), [1, 7]),
        (("GEORADIUS", "k", 1, 2, 3, "m"), [1]),
        (("SORT", "k"), [1]),
        (("SORT", "k", "BY", "w_*", "LIMIT", 0, 10, "GET", "#", "STORE", "d"), [1, 10]),
        (("SORT", "k", "BY", "STORE", "ALPHA"), [1]),  # BY's pattern is not a keyword
        (("SORT_RO", "k", "BY", "w_*"), [1]),
        (("MIGRATE", "h", 6379, "k", 0, 5000), [3]),
        (("MIGRATE", "h", 6379, "", 0, 5000, "REPLACE", "KEYS", "a", "b"), [8, 9]),
        # key-less
        (("PING",), []),
        (("INFO", "server"), []),
        (("FLUSHDB",), []),
        (("DBSIZE",), []),
        (("SCAN", 0, "MATCH", "x*"), []),
        (("KEYS", "*"), []),
        (("RANDOMKEY",), []),
        (("PUBLISH", "channel", "message"), []),
        (("CONFIG", "GET", "maxmemory"), []),
    ],
)
def test_key_positions(args: tuple[Any, ...], positions: list[int]) -> None:
    assert key_positions(args) == positions


def test_unknown_commands_are_refused() -> None:
    with pytest.raises(UnknownCommandError, match="NOSUCH"):
        key_positions(("NOSUCH", "k"))
    with pytest.raises(UnknownCommandError, match="OBJECT"):
        key_positions(("OBJECT",))
    with pytest.raises(UnknownCommandError, match=r"OBJECT\|NOSUCH"):
        key_positions(("OBJECT", "NOSUCH", "k"))
