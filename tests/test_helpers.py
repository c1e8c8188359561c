"""Generated builders and reply shapers, without a server.

What each builder sends, how it checks its arguments before anything is
sent, and how the shapers turn RESP2 and RESP3 replies into one type. The
sweep against a real server is ``tests/integration/test_helpers_sweep.py``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from triopipe._commands import Commands, _shapes, keys, lists, sorted_sets, strings
from triopipe._commands._base import is_ok, to_dict

Command = Any


def args_of(helper: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    command: Command = getattr(Commands, helper)(*args, **kwargs)
    return tuple(command.args)


def test_every_helper_is_a_method_with_a_docstring_naming_its_command() -> None:
    names = [n for n in dir(Commands) if not n.startswith("_")]
    assert len(names) > 300
    for name in names:
        helper = getattr(Commands, name)
        assert helper.__doc__, name
        signature = inspect.signature(helper)
        assert next(iter(signature.parameters)) == "self", name


def test_names_follow_the_commands() -> None:
    for name in ("hincrby", "zrangebyscore", "xgroup_create", "client_list", "delete"):
        assert hasattr(Commands, name)
    assert args_of("xgroup_create", "s", "g", "$", mkstream=True) == (
        "XGROUP",
        "CREATE",
        "s",
        "g",
        "$",
        "MKSTREAM",
    )
    assert args_of("client_list", type="normal") == ("CLIENT", "LIST", "TYPE", "normal")
    assert args_of("delete", "a") == ("DEL", "a")


@pytest.mark.parametrize("helper", ["mget", "delete", "exists", "unlink", "touch", "sinter"])
def test_several_keys_or_one_list(helper: str) -> None:
    word = "DEL" if helper == "delete" else helper.upper()
    assert args_of(helper, "a", "b") == (word, "a", "b")
    assert args_of(helper, ["a", "b"]) == (word, "a", "b")
    assert args_of(helper, ("a", b"b")) == (word, "a", b"b")
    assert args_of(helper, "only") == (word, "only")
    with pytest.raises(ValueError, match="at least one key"):
        args_of(helper)
    with pytest.raises(ValueError, match="at least one key"):
        args_of(helper, [])


def test_keys_before_other_arguments_are_one_key_or_a_list() -> None:
    assert args_of("blpop", ["a", "b"], 1.5) == ("BLPOP", "a", "b", 1.5)
    assert args_of("blpop", "a", 0) == ("BLPOP", "a", 0)
    assert args_of("zunion", ["a", "b"], withscores=True) == (
        "ZUNION",
        2,
        "a",
        "b",
        "WITHSCORES",
    )
    assert args_of("lmpop", "a", "LEFT", count=2) == ("LMPOP", 1, "a", "LEFT", "COUNT", 2)


def test_mappings() -> None:
    assert args_of("hset", "h", mapping={"f": "v", "n": 1}) == ("HSET", "h", "f", "v", "n", 1)
    assert args_of("mset", {"a": 1}) == ("MSET", "a", 1)
    assert args_of("zadd", "z", {"m": 1.5}) == ("ZADD", "z", 1.5, "m")
    assert args_of("xadd", "s", {"f": "v"}) == ("XADD", "s", "*", "f", "v")
    assert args_of("xread", {"s1": "0", "s2": "$"}, count=1) == (
        "XREAD",
        "COUNT",
        1,
        "STREAMS",
        "s1",
        "s2",
        "0",
        "$",
    )
    assert args_of("hexpire", "h", 10, ["a", "b"], nx=True) == (
        "HEXPIRE",
        "h",
        10,
        "NX",
        "FIELDS",
        2,
        "a",
        "b",
    )
    assert args_of("msetex", {"a": 1, "b": 2}, px=5) == ("MSETEX", 2, "a", 1, "b", 2, "PX", 5)
    with pytest.raises(ValueError, match="at least one field"):
        args_of("hset", "h", {})


def test_scripts_count_their_keys() -> None:
    assert args_of("eval", "return 1") == ("EVAL", "return 1", 0)
    assert args_of("eval", "s", ["a", "b"], [1]) == ("EVAL", "s", 2, "a", "b", 1)
    assert args_of("evalsha", "abc", keys="k", args=["x"]) == ("EVALSHA", "abc", 1, "k", "x")
    assert args_of("fcall", "f", keys=[], args=[1, 2]) == ("FCALL", "f", 0, 1, 2)


def test_tokens_and_flags() -> None:
    assert args_of("zrange", "z", "(1", "+inf", byscore=True, limit=(0, 10), withscores=True) == (
        "ZRANGE",
        "z",
        "(1",
        "+inf",
        "BYSCORE",
        "LIMIT",
        0,
        10,
        "WITHSCORES",
    )
    assert args_of("xadd", "s", {"f": 1}, maxlen=100, approximately=True, id="5-1") == (
        "XADD",
        "s",
        "MAXLEN",
        "~",
        100,
        "5-1",
        "f",
        1,
    )
    assert args_of("xtrim", "s", minid="0-1", limit=10) == (
        "XTRIM",
        "s",
        "MINID",
        "0-1",
        "LIMIT",
        10,
    )
    assert args_of(
        "geosearch", "g", fromlonlat=(1.5, 2), bybox=(3, 4, "km"), count=2, any=True
    ) == (
        "GEOSEARCH",
        "g",
        "FROMLONLAT",
        1.5,
        2,
        "BYBOX",
        3,
        4,
        "km",
        "COUNT",
        2,
        "ANY",
    )
    assert args_of("zinterstore", "d", ["a"], aggregate="max") == (
        "ZINTERSTORE",
        "d",
        1,
        "a",
        "AGGREGATE",
        "MAX",
    )
    assert args_of("sort", "k", get=["#", "w_*"], desc=True) == (
        "SORT",
        "k",
        "GET",
        "#",
        "GET",
        "w_*",
        "DESC",
    )
    assert args_of("bitcount", "b", 0, 1, unit="BIT") == ("BITCOUNT", "b", 0, 1, "BIT")
    assert args_of("flushdb", asynchronous=True) == ("FLUSHDB", "ASYNC")
    assert args_of("command_list", pattern="x*") == (
        "COMMAND",
        "LIST",
        "FILTERBY",
        "PATTERN",
        "x*",
    )


@pytest.mark.parametrize(
    ("helper", "args", "kwargs", "message"),
    [
        ("getex", ("k",), {"ex": 1, "px": 2}, "ex, px, exat, pxat and persist are mutually"),
        ("expire", ("k", 1), {"nx": True, "xx": True}, "mutually exclusive"),
        ("zadd", ("z", {"m": 1}), {"nx": True, "gt": True}, "nx, gt and lt"),
        ("xtrim", ("s",), {}, "exactly one of maxlen or minid"),
        ("xtrim", ("s",), {"maxlen": 1, "minid": "0"}, "exactly one of maxlen or minid"),
        ("xadd", ("s", {"f": 1}), {"limit": 5}, "limit needs maxlen or minid"),
        ("geosearch", ("g",), {"byradius": (1, "km")}, "exactly one of frommember or fromlonlat"),
        ("geosearch", ("g",), {"frommember": "m"}, "exactly one of byradius or bybox"),
        (
            "geosearch",
            ("g",),
            {"frommember": "m", "bybox": (1, "km")},
            "bybox must be a tuple of 3",
        ),
        ("georadius", ("g", 1, 2, 3, "parsecs"), {}, "unit must be one of m, km, ft, mi"),
        ("linsert", ("l", "MIDDLE", "p", "e"), {}, "where must be one of BEFORE, AFTER"),
        ("bitcount", ("b",), {"end": 1}, "end or unit needs start"),
        ("zrange", ("z", 0, 1), {"limit": (1,)}, "limit must be a tuple of 2"),
        ("xinfo_stream", ("s",), {"count": 5}, "count needs full"),
        ("shutdown", (), {"nosave": True, "abort": True}, "are mutually exclusive"),
        ("geoadd", ("g", [(1, 2)]), {}, "items must be a tuple of 3"),
        ("bitfield", ("b", ("FLIP", "u8", 0)), {}, "is not one of GET"),
        ("client_kill", (), {}, "at least one filter"),
        ("migrate", ("h", 1, [], 0, 100), {}, "at least one key"),
    ],
)
def test_bad_arguments_are_refused_before_sending(
    helper: str, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        args_of(helper, *args, **kwargs)
    assert helper in str(caught.value)


def test_the_hot_helpers_need_no_shaper() -> None:
    # A helper without a shaper is dispatched straight to execute().
    for command in (
        strings.get("k"),
        strings.incr("k"),
        strings.mget("a", "b"),
        lists.lpush("l", 1),
    ):
        assert command.transform is None
    assert strings.get("k").args == ("GET", "k")
    assert strings.set("k", "v").transform is is_ok
    assert keys.delete("a").transform is None


def test_shapers_take_resp2_and_resp3_replies() -> None:
    pairs = _shapes.pairs_of(None, _shapes.to_number)
    assert pairs([[b"a", 1.5], [b"b", 2.0]]) == pairs([b"a", b"1.5", b"b", b"2"])
    assert pairs([]) == []
    assert to_dict([[b"s", [1]], [b"t", [2]]]) == {b"s": [1], b"t": [2]}  # XREAD under RESP2
    assert _shapes.entry([b"1-1", [b"f", b"v"]]) == (b"1-1", {b"f": b"v"})
    assert _shapes.entry([b"1-1", None]) == (b"1-1", None)
    fields = _shapes.fields_of({"ratio": _shapes.to_number}, {r"^db\.\d+$": to_dict})
    assert fields([b"ratio", b"1.5", b"db.0", [b"a", 1], b"other", 2]) == {
        b"ratio": 1.5,
        b"db.0": {b"a": 1},
        b"other": 2,
    }
    assert fields({"ratio": 1.5, "db.0": {"a": 1}}) == {"ratio": 1.5, "db.0": {"a": 1}}
    assert _shapes.scan_page(to_dict)([b"17", [b"f", b"v"]]) == (17, {b"f": b"v"})
    assert _shapes.optional_pair(None, _shapes.to_number)([]) is None
    assert _shapes.geo_items([[b"m", b"1.5", 123, [b"2.5", b"3.5"]]]) == [
        (b"m", 1.5, 123, (2.5, 3.5))
    ]
    assert _shapes.geo_items([["m", [2.5, 3.5]]]) == [("m", None, None, (2.5, 3.5))]
    assert sorted_sets.zscore("z", "m").shape(b"2.5") == sorted_sets.zscore("z", "m").shape(2.5)
