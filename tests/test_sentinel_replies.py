"""Reading ``SENTINEL REPLICAS`` replies: which replicas may serve reads (no server needed)."""

from __future__ import annotations

from triopipe._cluster_map import Address
from triopipe._sentinel import _healthy_replicas


def _replica(port: int, flags: str = "slave", link: str = "ok") -> dict[bytes, bytes]:
    return {
        b"name": f"127.0.0.1:{port}".encode(),
        b"ip": b"127.0.0.1",
        b"port": str(port).encode(),
        b"flags": flags.encode(),
        b"master-link-status": link.encode(),
    }


def test_only_replicas_up_and_replicating_are_kept() -> None:
    reply = [
        _replica(7001),
        _replica(7002, flags="slave,s_down"),
        _replica(7003, link="err"),
        _replica(7004, flags="slave,disconnected"),
    ]
    assert list(_healthy_replicas(reply)) == [Address("127.0.0.1", 7001)]


def test_resp2_flat_arrays_read_like_resp3_maps() -> None:
    flat = [[item for pair in _replica(7001).items() for item in pair]]
    assert list(_healthy_replicas(flat)) == [Address("127.0.0.1", 7001)]


def test_an_entry_without_an_address_is_skipped() -> None:
    entry = _replica(7001)
    del entry[b"port"]
    assert list(_healthy_replicas([entry, _replica(7002)])) == [Address("127.0.0.1", 7002)]
