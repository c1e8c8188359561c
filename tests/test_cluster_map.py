"""The pure half of the cluster client: topology parsing, the slot map, the retry rule."""

from __future__ import annotations

from typing import Any

import pytest

from triopipe import AskError, ClusterDownError, ConnectionLostError, MovedError, TryAgainError
from triopipe._cluster_map import (
    Address,
    Shard,
    SlotMap,
    parse_cluster_shards,
    parse_cluster_slots,
)
from triopipe._exceptions import error_from_reply
from triopipe._retry import ClusterRetryPolicy, RetryPolicy


def _node(
    port: int, role: str, health: str = "online", endpoint: Any = b"10.0.0.1"
) -> dict[bytes, Any]:
    return {
        b"id": b"x" * 40,
        b"port": port,
        b"ip": b"10.0.0.9",
        b"endpoint": endpoint,
        b"role": role.encode(),
        b"replication-offset": 0,
        b"health": health.encode(),
    }


RESP3_SHARDS = [
    {b"slots": [0, 5460, 6000, 6001], b"nodes": [_node(7000, "master"), _node(7003, "replica")]},
    {b"slots": [5461, 5999, 6002, 16383], b"nodes": [_node(7001, "master", endpoint=b"")]},
    {b"slots": [], b"nodes": [_node(7002, "master")]},  # an empty shard
    {
        b"slots": [],
        b"nodes": [_node(7004, "replica", "failed"), _node(7005, "master", endpoint=b"?")],
    },
]


def _flatten(value: Any) -> Any:
    """The RESP2 shape of a RESP3 reply: maps become [name, value, ...] arrays."""
    if isinstance(value, dict):
        return [item for pair in value.items() for item in map(_flatten, pair)]
    if isinstance(value, list):
        return [_flatten(item) for item in value]
    return value


@pytest.mark.parametrize("reply", [RESP3_SHARDS, _flatten(RESP3_SHARDS)], ids=["resp3", "resp2"])
def test_cluster_shards_in_both_shapes(reply: Any) -> None:
    shards = parse_cluster_shards(reply, "seed-host")
    assert shards == [
        Shard(Address("10.0.0.1", 7000), (Address("10.0.0.1", 7003),), ((0, 5460), (6000, 6001))),
        Shard(Address("seed-host", 7001), (), ((5461, 5999), (6002, 16383))),
    ]
    slot_map = SlotMap(shards)
    assert slot_map.covered() == 16384
    assert slot_map.primary(6001) == Address("10.0.0.1", 7000)
    assert slot_map.primary(6002) == Address("seed-host", 7001)
    assert slot_map.replicas(0) == (Address("10.0.0.1", 7003),)


def test_cluster_slots_and_decoded_strings() -> None:
    reply = [
        [0, 99, ["h1", 7000, "id1"], ["h2", 7003, "id3", {"hostname": "x"}]],
        [100, 16383, ["", 7001, "id2"]],
        [200, 300, [None, 7001, "id2"]],
    ]
    shards = parse_cluster_slots(reply, "seed")
    assert shards == [
        Shard(Address("h1", 7000), (Address("h2", 7003),), ((0, 99),)),
        Shard(Address("seed", 7001), (), ((100, 16383), (200, 300))),
    ]


@pytest.mark.parametrize("reply", [[{b"slots": [0]}], [[1, 2]], [5]])
def test_malformed_topology_is_refused(reply: Any) -> None:
    with pytest.raises(ValueError, match="unexpected"):
        parse_cluster_shards(reply, "h")
    with pytest.raises(ValueError, match="unexpected"):
        parse_cluster_slots(reply, "h")


def test_moved_updates_one_slot() -> None:
    slot_map = SlotMap([Shard(Address("a", 1), (), ((0, 16383),))])
    assert slot_map.move(5, Address("b", 2))
    assert not slot_map.move(5, Address("b", 2))
    assert slot_map.primary(5) == Address("b", 2)
    assert slot_map.primary(6) == Address("a", 1)
    assert slot_map.primaries() == [Address("a", 1), Address("b", 2)]
    assert slot_map.addresses(replicas=True) == {Address("a", 1), Address("b", 2)}
    assert SlotMap().primary(0) is None
    assert str(Address("::1", 7000)) == "[::1]:7000"


def test_redirect_errors_carry_their_target() -> None:
    moved = error_from_reply("MOVED 3999 127.0.0.1:6381")
    assert isinstance(moved, MovedError)
    assert (moved.slot, moved.host, moved.port) == (3999, "127.0.0.1", 6381)
    ask = error_from_reply("ASK 12 :6380")  # empty host: the node that answered
    assert isinstance(ask, AskError)
    assert (ask.slot, ask.host, ask.port) == (12, "", 6380)


def test_cluster_retry_rule() -> None:
    policy = ClusterRetryPolicy(redirects=3)
    moved = MovedError("MOVED", "1 h:1")
    assert policy.delay(moved, 0) == 0.0
    assert policy.delay(AskError("ASK", "1 h:1"), 2) == 0.0
    assert policy.delay(moved, 3) is None  # the redirect limit
    for refusal in (TryAgainError("TRYAGAIN", ""), ClusterDownError("CLUSTERDOWN", "")):
        delay = policy.delay(refusal, 1)
        assert delay is not None
        assert 0 < delay <= 1.0
    assert policy.delay(ConnectionLostError("x", sent=False), 0) is not None
    assert policy.delay(ConnectionLostError("x", sent=True), 0) is None
    assert (
        ClusterRetryPolicy(at_least_once=True).delay(ConnectionLostError("x", sent=True), 0) == 0
    )
    # The single-server rule is unchanged: a redirect is final there.
    assert RetryPolicy().delay(moved, 0) is None
