"""Command builders, reply shapers and routing: no server, no event loop."""

from __future__ import annotations

import pytest

from triopipe._commands import Commands, hashes, keys, server, sets, sorted_sets, strings
from triopipe._commands._base import is_ok, to_dict
from triopipe._exceptions import AuthenticationError, ResponseError
from triopipe._resp._handshake import Handshake
from triopipe._routing import CommandKind, check_pipelinable, command_kind


def test_set_flags() -> None:
    assert strings.set("k", "v").args == ("SET", "k", "v")
    command = strings.set("k", 1, ex=10, nx=True, get=True)
    assert command.args == ("SET", "k", 1, "EX", 10, "NX", "GET")
    assert command.transform is None
    assert strings.set("k", 1, px=5, xx=True, keepttl=False).args[3:] == ("PX", 5, "XX")
    with pytest.raises(ValueError, match="mutually exclusive"):
        strings.set("k", 1, nx=True, xx=True)
    with pytest.raises(ValueError, match="mutually exclusive"):
        strings.set("k", 1, ex=1, keepttl=True)


def test_builders_refuse_empty_arguments() -> None:
    for builder in (strings.mget, keys.delete, keys.exists, sets.sinter, sets.sunion):
        with pytest.raises(ValueError, match="at least one"):
            builder()
    with pytest.raises(ValueError, match="at least one"):
        strings.mset({})
    with pytest.raises(ValueError, match="at least one"):
        hashes.hset("h", {})


def test_zadd_and_zrange() -> None:
    assert sorted_sets.zadd("z", {"a": 1.5}, gt=True, ch=True).args == (
        "ZADD",
        "z",
        "GT",
        "CH",
        1.5,
        "a",
    )
    with pytest.raises(ValueError, match="nx"):
        sorted_sets.zadd("z", {"a": 1}, nx=True, gt=True)
    shape = sorted_sets.zrange("z", 0, -1, withscores=True).transform
    assert shape is not None
    assert shape([[b"a", 1.5], [b"b", 2.0]]) == [(b"a", 1.5), (b"b", 2.0)]  # RESP3
    assert shape([b"a", b"1.5", b"b", b"2"]) == [(b"a", 1.5), (b"b", 2.0)]  # RESP2
    assert shape([]) == []


def test_reply_shapers() -> None:
    assert to_dict({b"a": b"1"}) == {b"a": b"1"}
    assert to_dict([b"a", b"1", b"b", b"2"]) == {b"a": b"1", b"b": b"2"}
    assert is_ok(b"OK")
    assert is_ok("OK")
    assert not is_ok(None)
    pong = server.ping().transform
    assert pong is not None
    assert pong(b"PONG") is True
    assert server.ping("hi").args == ("PING", "hi")
    assert keys.scan(0, match="a*", count=10).args == ("SCAN", 0, "MATCH", "a*", "COUNT", 10)


def test_helpers_are_shared_and_callable_on_the_class() -> None:
    command = Commands.get("k")
    assert command.args == ("GET", "k")
    assert Commands.get.__doc__
    assert "GET" in Commands.get.__doc__


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (("GET", "k"), CommandKind.SHARED),
        (("blpop", "q", 0), CommandKind.BLOCKING),
        ((b"BRPOP", "q", 0), CommandKind.BLOCKING),
        (("BZPOPMIN", "z", 1), CommandKind.BLOCKING),
        (("WAIT", 1, 0), CommandKind.BLOCKING),
        (("XREAD", "COUNT", 1, "STREAMS", "s", "0"), CommandKind.SHARED),
        (("XREAD", "block", 0, "STREAMS", "s", "$"), CommandKind.BLOCKING),
        (
            (b"xreadgroup", b"GROUP", b"g", b"c", b"BLOCK", 5, b"STREAMS", b"s", b">"),
            CommandKind.BLOCKING,
        ),
        (("SUBSCRIBE", "c"), CommandKind.SUBSCRIPTION),
        (("Monitor",), CommandKind.SUBSCRIPTION),
        ((bytearray(b"blmove"), "a", "b", "LEFT", "RIGHT", 0), CommandKind.BLOCKING),
        ((42,), CommandKind.SHARED),
    ],
)
def test_command_kind(args: tuple[object, ...], kind: CommandKind) -> None:
    assert command_kind(args) is kind


def test_check_pipelinable() -> None:
    check_pipelinable([("GET", "k"), ("SET", "k", 1)])
    with pytest.raises(ValueError, match="BLPOP"):
        check_pipelinable([("GET", "k"), ("blpop", "q", 0)])


def test_handshake_commands() -> None:
    plain = Handshake()
    assert plain.commands(hello=True) == [("HELLO", 3)]
    assert plain.commands(hello=False) == []
    full = Handshake(username="u", password="p", client_name="n", db=2)
    assert full.commands(hello=True) == [
        ("HELLO", 3, "AUTH", "u", "p", "SETNAME", "n"),
        ("SELECT", 2),
    ]
    assert full.commands(hello=False) == [
        ("AUTH", "u", "p"),
        ("CLIENT", "SETNAME", "n"),
        ("SELECT", 2),
    ]
    assert Handshake(password="p").commands(hello=True)[0][2:] == ("AUTH", "default", "p")
    assert "p" not in repr(Handshake(password="p")).replace("protocol", "")


def test_handshake_check() -> None:
    handshake = Handshake(password="p")
    ok = handshake.check([{b"proto": 3}], hello=True)
    assert ok is not None
    assert ok.protocol == 3
    unknown = ResponseError("ERR", "unknown command 'HELLO', with args beginning with: ")
    assert handshake.check([unknown], hello=True) is None
    fallback = handshake.check([b"OK"], hello=False)
    assert fallback is not None
    assert fallback.protocol == 2
    with pytest.raises(AuthenticationError):
        handshake.check([AuthenticationError("WRONGPASS", "invalid password")], hello=True)
