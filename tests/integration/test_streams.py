"""Stream replies as ``(id, {field: value})`` entries, the same under RESP2 and RESP3.

The sweep (``test_helpers_sweep.py``) checks every helper's types; these
tests pin the values of the entry-returning helpers, including the cases a
consumer meets: an entry deleted while pending, a blocking read that times
out, several streams in one read, ``decode=True``.
"""

from __future__ import annotations

from typing import Any

import pytest

import triopipe

pytestmark = pytest.mark.usefixtures("anyio_backend")


async def _prepare(redis: triopipe.Client) -> None:
    await redis.xadd("s", {"a": 1}, id="1-1")
    await redis.xadd("s", {"b": 2, "c": 3}, id="2-1")
    await redis.xadd("s", {"d": 4}, id="3-1")
    await redis.xadd("t", {"x": "y"}, id="5-1")
    await redis.xgroup_create("s", "g", "0")


async def _stream_replies(url: str, protocol: int, decode: bool) -> dict[str, Any]:
    async with triopipe.open_client(url, protocol=protocol, decode=decode) as redis:
        await redis.flushdb()
        await _prepare(redis)
        replies: dict[str, Any] = {
            "xrange": await redis.xrange("s", "-", "+"),
            "xrevrange": await redis.xrevrange("s", "+", "-", count=2),
            "xread": await redis.xread({"s": "1-1", "t": "0"}, count=1),
            "xread_timeout": await redis.xread({"s": "$"}, block=10),
            "xreadgroup_new": await redis.xreadgroup("g", "alice", {"s": ">"}, count=2),
        }
        # An entry deleted while pending: history reads give it without fields.
        await redis.xdel("s", "2-1")
        replies["xreadgroup_history"] = await redis.xreadgroup("g", "alice", {"s": "0"})
        replies["xreadgroup_rest"] = await redis.xreadgroup(
            "g", "alice", {"s": ">"}, count=5, block=10
        )
        replies["xreadgroup_timeout"] = await redis.xreadgroup(
            "g", "alice", {"s": ">"}, count=5, block=10
        )
        replies["xautoclaim"] = await redis.xautoclaim("s", "g", "bob", 0, "0")
        replies["xclaim"] = await redis.xclaim("s", "g", "alice", 0, "1-1")
        await redis.xgroup_create("s", "idle", "$")
        replies["xpending_empty"] = await redis.xpending("s", "idle")
        replies["xpending"] = await redis.xpending("s", "g")
        async with redis.batch() as batch:
            in_batch = batch.xrange("s", "-", "+", count=1)
        replies["batch"] = in_batch.result()
        return replies


@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decode"])
async def test_entries_are_id_and_field_dict_under_both_protocols(
    redis_url: str, decode: bool
) -> None:
    resp2 = await _stream_replies(redis_url, 2, decode)
    resp3 = await _stream_replies(redis_url, 3, decode)
    assert resp2 == resp3

    def b(text: str) -> Any:
        return text if decode else text.encode()

    def entry(entry_id: str, **fields: Any) -> tuple[Any, Any]:
        return b(entry_id), {b(key): b(str(value)) for key, value in fields.items()}

    assert resp3["xrange"] == [entry("1-1", a=1), entry("2-1", b=2, c=3), entry("3-1", d=4)]
    assert resp3["xrevrange"] == [entry("3-1", d=4), entry("2-1", b=2, c=3)]
    assert resp3["xread"] == {b("s"): [entry("2-1", b=2, c=3)], b("t"): [entry("5-1", x="y")]}
    assert resp3["xread_timeout"] is None
    assert resp3["xreadgroup_new"] == {b("s"): [entry("1-1", a=1), entry("2-1", b=2, c=3)]}
    assert resp3["xreadgroup_history"] == {b("s"): [entry("1-1", a=1), (b("2-1"), None)]}
    assert resp3["xreadgroup_rest"] == {b("s"): [entry("3-1", d=4)]}
    assert resp3["xreadgroup_timeout"] is None
    # XAUTOCLAIM: next cursor, the claimed entries, the deleted ids it dropped.
    assert resp3["xautoclaim"] == (b("0-0"), [entry("1-1", a=1), entry("3-1", d=4)], [b("2-1")])
    assert resp3["xclaim"] == [entry("1-1", a=1)]
    # XPENDING's summary: nothing pending, then what alice and bob hold.
    assert resp3["xpending_empty"] == (0, None, None, None)
    assert resp3["xpending"] == (2, b("1-1"), b("3-1"), [(b("alice"), b("1")), (b("bob"), b("1"))])
    assert resp3["batch"] == [entry("1-1", a=1)]
    for shape in (resp3["xrange"], resp3["xread"][b("s")]):
        assert all(isinstance(item, tuple) and isinstance(item[1], dict) for item in shape)
