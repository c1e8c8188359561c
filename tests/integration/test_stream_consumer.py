"""The consumer-group helper against a real server: batches, restarts, claims, kills.

The last tests are the issue's done-when: a consumer killed midway (its task
cancelled and its connections killed) through 10,000 entries, with a second
consumer in the group, and a consumer whose links are killed under it; every
entry ends processed at least once and acknowledged.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

import triopipe
from triopipe._consumer import ConsumerOptions, StreamConsumer
from triopipe.testing import RedisServer, tcp_proxy

pytestmark = pytest.mark.usefixtures("anyio_backend")


async def _fill(redis: triopipe.Client, count: int, stream: str = "jobs") -> list[bytes]:
    """Add ``count`` entries ``n=<i>`` to ``stream``; their ids in order."""
    ids: list[bytes] = await redis.execute_many(
        [("XADD", stream, "*", "n", i) for i in range(count)]
    )
    return ids


async def _calls(redis: triopipe.Client, command: str) -> int:
    """How many times the server ran ``command`` so far (``INFO commandstats``)."""
    info = await redis.execute("INFO", "commandstats")
    for line in info.decode().splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def _kill(admin: triopipe.Client, client_name: str) -> int:
    """Kill every connection named ``client_name``; how many there were."""
    listing = (await admin.execute("CLIENT", "LIST")).decode()
    victims = [
        fields["id"]
        for fields in (
            dict(item.split("=", 1) for item in line.split()) for line in listing.splitlines()
        )
        if fields.get("name") == client_name
    ]
    for victim in victims:
        await admin.execute("CLIENT", "KILL", "ID", victim)
    return len(victims)


async def _wait_until_blocked(admin: triopipe.Client) -> None:
    """Until a connection is blocked in XREADGROUP (``flags=b``), not merely last ran it."""
    while True:
        listing = (await admin.execute("CLIENT", "LIST")).decode().splitlines()
        if any("cmd=xreadgroup" in line and " flags=b " in line for line in listing):
            return
        await anyio.sleep(0.01)


async def _take(consumer: triopipe.StreamConsumer, count: int) -> list[Any]:
    """The ids of the next ``count`` entries, each acknowledged as its turn ends."""
    seen: list[Any] = []
    with anyio.fail_after(10):
        async for entry in consumer:
            seen.append(entry.id)
            await entry.ack()
            if len(seen) == count:
                break
    return seen


async def _pending(redis: triopipe.Client, stream: str = "jobs", group: str = "workers") -> int:
    summary = await redis.xpending(stream, group)
    return summary[0]


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("ack", ["manual", "auto"])
async def test_consumer_delivers_everything_once_and_acks_in_batches(
    redis_url: str, protocol: int, ack: Any
) -> None:
    async with triopipe.open_client(redis_url, protocol=protocol) as redis:
        ids = await _fill(redis, 1000)
        acks_before = await _calls(redis, "xack")
        seen: list[Any] = []
        async with redis.stream_consumer("jobs", "workers", "one", create=True, ack=ack) as c:
            assert "one" in repr(c)
            async for entry in c:
                assert isinstance(entry, triopipe.StreamEntry)
                assert entry.stream == "jobs"
                assert entry.fields == {b"n": str(len(seen)).encode()}
                seen.append(entry.id)
                if ack == "manual":
                    await entry.ack()
                if len(seen) == len(ids):
                    break
        assert seen == ids
        assert await _pending(redis) == 0
        # One XACK per read of 100 entries (and one at exit), not one per entry.
        assert await _calls(redis, "xack") - acks_before <= 12


async def test_auto_ack_leaves_the_entry_whose_body_raised(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        ids = await _fill(redis, 5)
        with pytest.raises(RuntimeError, match="boom"):
            async with redis.stream_consumer(
                "jobs", "workers", "one", create=True, ack="auto"
            ) as c:
                async for entry in c:
                    if entry.id == ids[2]:
                        raise RuntimeError("boom")
        pending = await redis.xpending("jobs", "workers", "-", "+", 10)
        assert [item[0] for item in pending] == [ids[2], ids[3], ids[4]]


async def test_a_restarted_consumer_first_finishes_its_own_pending_entries(
    redis_url: str,
) -> None:
    async with triopipe.open_client(redis_url, decode=True) as redis:
        ids = await _fill(redis, 250)
        async with redis.stream_consumer("jobs", "workers", "one", create=True, count=50) as c:
            async for entry in c:
                if entry.id == ids[120]:
                    break  # "crash" with 121 entries delivered, none acknowledged
                if ids.index(entry.id) < 100:
                    await entry.ack()
        assert await _pending(redis) == 21 + 29  # in hand, and the rest of the last read
        seen = []
        async with redis.stream_consumer("jobs", "workers", "one", count=50) as c:
            async for entry in c:
                seen.append(entry.id)
                await entry.ack()
                if entry.id == ids[-1]:
                    break
        # The history first (ID 0 on), then the entries never delivered.
        assert seen == ids[100:]
        assert await _pending(redis) == 0


async def test_group_creation_tolerates_an_existing_group_and_can_start_at_the_end(
    redis_url: str,
) -> None:
    async with triopipe.open_client(redis_url) as redis:
        await _fill(redis, 3)
        async with redis.stream_consumer("jobs", "late", "one", create=True, start="$") as c:
            async with redis.stream_consumer("jobs", "late", "two", create=True):
                pass  # BUSYGROUP is no error
            new_id = await redis.xadd("jobs", {"n": "new"})
            with anyio.fail_after(5):
                entry = await c.__anext__()
            assert (entry.id, entry.fields) == (new_id, {b"n": b"new"})
        async with redis.stream_consumer("missing", "nobody", "one") as c:
            with pytest.raises(triopipe.ResponseError, match="NOGROUP"):
                await c.__anext__()


async def test_deleted_pending_entries_are_acknowledged_and_skipped(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        ids = await _fill(redis, 4)
        await redis.xgroup_create("jobs", "workers", "0")
        await redis.xreadgroup("workers", "one", {"jobs": ">"})  # all four pending for "one"
        await redis.xdel("jobs", ids[1], ids[2])
        async with redis.stream_consumer("jobs", "workers", "one", ack="auto") as c:
            with anyio.fail_after(5):
                assert [(await c.__anext__()).id for _ in range(2)] == [ids[0], ids[3]]
        assert await _pending(redis) == 0


async def test_bad_options_are_refused_before_anything_is_sent(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with pytest.raises(ValueError, match="claim_after"):
            redis.stream_consumer("jobs", "g", "c", claim_after=0)
        with pytest.raises(ValueError, match="ack must be"):
            redis.stream_consumer("jobs", "g", "c", ack="sometimes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="count"):
            redis.stream_consumer("jobs", "g", "c", count=0)
        assert await redis.exists("jobs") == 0


async def test_claims_take_a_dead_consumers_entries_page_by_page(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        ids = await _fill(redis, 250)
        await redis.xgroup_create("jobs", "workers", "0")
        # "dead" takes every entry and never acknowledges one.
        await redis.xreadgroup("workers", "dead", {"jobs": ">"})
        async with redis.stream_consumer(
            "jobs", "workers", "heir", claim_after=0.05, count=40
        ) as c:
            assert await _take(c, len(ids)) == ids  # seven pages of XAUTOCLAIM, in order
        assert await _pending(redis) == 0


class _Loading:
    """A client whose server answers ``LOADING`` to the first few reads and acks.

    A restarted server refuses commands while it loads its dataset, for as
    long as loading takes: too unpredictable to produce in a test, so this
    wraps a real client and refuses in its place.
    """

    def __init__(self, client: triopipe.Client, refusals: dict[str, int]) -> None:
        self._client = client
        self.refusals = refusals

    async def execute(self, *args: Any) -> Any:
        if self.refusals.get(args[0]):
            self.refusals[args[0]] -= 1
            raise triopipe.BusyLoadingError("LOADING", "Redis is loading the dataset in memory")
        return await self._client.execute(*args)


async def test_passing_refusals_are_waited_out(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        ids = await _fill(redis, 30)
        loading = _Loading(redis, {"XREADGROUP": 2, "XACK": 2})
        options = ConsumerOptions(create=True, count=10)
        async with StreamConsumer(loading, "jobs", "workers", "one", options) as c:
            assert await _take(c, len(ids)) == ids
        assert loading.refusals == {"XREADGROUP": 0, "XACK": 0}
        assert await _pending(redis) == 0


async def test_a_consumer_killed_midway_loses_nothing(redis_url: str) -> None:
    """10,000 entries, two consumers; one dies holding entries (task and links)."""
    total, crash_at = 10_000, 3_000
    processed: dict[bytes, int] = {}
    by_first: list[bytes] = []
    crashed = anyio.Event()

    async def first(redis: triopipe.Client) -> None:
        async with redis.stream_consumer("jobs", "workers", "first", create=True) as c:
            async for entry in c:
                processed[entry.id] = processed.get(entry.id, 0) + 1
                by_first.append(entry.id)
                if len(by_first) == crash_at:
                    crashed.set()
                    await anyio.sleep_forever()  # dies with this entry in hand
                await entry.ack()
                await anyio.lowlevel.checkpoint()

    async def second(redis: triopipe.Client) -> None:
        async with redis.stream_consumer(
            "jobs", "workers", "second", create=True, claim_after=0.3
        ) as c:
            async for entry in c:
                processed[entry.id] = processed.get(entry.id, 0) + 1
                await entry.ack()
                await anyio.lowlevel.checkpoint()

    async with (
        triopipe.open_client(redis_url) as admin,
        triopipe.open_client(redis_url, client_name="first") as first_client,
        triopipe.open_client(redis_url, client_name="second") as second_client,
    ):
        ids = await _fill(admin, total)
        async with anyio.create_task_group() as tasks:
            first_scope = anyio.CancelScope()

            async def run_first() -> None:
                with first_scope:
                    await first(first_client)

            tasks.start_soon(run_first)
            tasks.start_soon(second, second_client)
            with anyio.fail_after(30):
                await crashed.wait()
                first_scope.cancel()
                assert await _kill(admin, "first") >= 1
                while len(processed) < total or await _pending(admin) > 0:
                    await anyio.sleep(0.05)
            tasks.cancel_scope.cancel()
        assert set(processed) == set(ids)
        assert await _pending(admin) == 0
        # The entry the first consumer died holding was processed again, by the other.
        assert processed[by_first[-1]] == 2
        assert crash_at <= len(by_first) < total


async def test_a_consumer_whose_links_are_killed_goes_on(redis_url: str) -> None:
    total = 3_000
    processed: dict[bytes, int] = {}
    async with (
        triopipe.open_client(redis_url) as admin,
        triopipe.open_client(redis_url, client_name="worker") as redis,
    ):
        ids = await _fill(admin, total)

        async def consume() -> None:
            async with redis.stream_consumer("jobs", "workers", "one", create=True, count=20) as c:
                async for entry in c:
                    processed[entry.id] = processed.get(entry.id, 0) + 1
                    await entry.ack()
                    await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            with anyio.fail_after(30):
                for threshold in (total // 3, 2 * total // 3):
                    while len(processed) < threshold:
                        await anyio.sleep(0.001)
                    assert await _kill(admin, "worker") >= 1
                while len(processed) < total or await _pending(admin) > 0:
                    await anyio.sleep(0.05)
                # Killed again while it waits in XREADGROUP ... BLOCK: new
                # entries still flow after it.
                await _wait_until_blocked(admin)
                assert await _kill(admin, "worker") >= 1
                late = await admin.xadd("jobs", {"n": "late"})
                while late not in processed or await _pending(admin) > 0:
                    await anyio.sleep(0.01)
            tasks.cancel_scope.cancel()
        assert set(processed) == {*ids, late}
        assert await _pending(admin) == 0


async def test_entries_whose_read_reply_was_lost_are_delivered_from_the_history(
    redis_server: RedisServer,
) -> None:
    """The server delivers an entry to the consumer, the reply never arrives, the link breaks."""
    async with (
        tcp_proxy(redis_server.host, redis_server.port) as proxy,
        triopipe.open_client(redis_server.url) as admin,
        triopipe.open_client(proxy.url) as redis,
    ):
        await admin.xgroup_create("jobs", "workers", "$", mkstream=True)
        received: list[Any] = []

        async def consume() -> None:
            async with redis.stream_consumer("jobs", "workers", "one", ack="auto") as c:
                async for entry in c:
                    received.append(entry.id)  # noqa: PERF401 - the test reads it meanwhile

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            with anyio.fail_after(20):
                await _wait_until_blocked(admin)
                proxy.blackhole()  # the reply to the blocked read will be dropped
                lost = await admin.xadd("jobs", {"n": "lost"})
                # The server handed the entry to "one": it is pending for it.
                while await _pending(admin) == 0:
                    await anyio.sleep(0.01)
                proxy.restore()
                proxy.reset()
                while received != [lost] or await _pending(admin) > 0:
                    await anyio.sleep(0.01)
                after = await admin.xadd("jobs", {"n": "after"})
                while received != [lost, after]:
                    await anyio.sleep(0.01)
            tasks.cancel_scope.cancel()


async def test_a_sharded_client_consumes_on_the_streams_shard(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        ids = [await redis.xadd("{q}jobs", {"n": i}) for i in range(50)]
        async with redis.stream_consumer("{q}jobs", "workers", "one", create=True) as c:
            assert await _take(c, len(ids)) == ids
        assert (await redis.xpending("{q}jobs", "workers"))[0] == 0


async def test_a_cluster_client_consumes_on_the_streams_node(
    redis_cluster_urls: list[str],
) -> None:
    async with triopipe.open_cluster_client(redis_cluster_urls) as redis:
        ids = [await redis.xadd("jobs", {"n": i}) for i in range(50)]
        async with redis.stream_consumer("jobs", "workers", "one", create=True, count=20) as c:
            assert await _take(c, len(ids)) == ids
        assert (await redis.xpending("jobs", "workers"))[0] == 0
