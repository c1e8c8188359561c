"""The Sentinel client against real sentinels: discovery, failover, a killed primary.

One setup (a primary, 2 replicas, 3 sentinels) is shared by the module's
tests of both backends; tests read the primary from the sentinels, never
assume it, and wait for a settled setup after failing over. The killed
primary test uses the fresh ``redis_sentinel`` fixture of the plugin.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator

import anyio
import anyio.abc
import pytest
from helpers import free_port

import triopipe
import triopipe.sync
from triopipe.testing import RedisSentinel, RedisSentinelProcesses, redis_sentinel_processes

SERVICE = "mymaster"


@pytest.fixture(scope="module")
def sentinel_processes() -> Iterator[RedisSentinelProcesses]:
    with redis_sentinel_processes(service_name=SERVICE) as processes:
        yield processes


@pytest.fixture
def setup(sentinel_processes: RedisSentinelProcesses) -> RedisSentinel:
    sentinel_processes.wait_settled()
    return RedisSentinel(sentinel_processes)


class _Writers:
    """20 tasks, each INCRing its own key, counting acknowledged and unknown outcomes."""

    def __init__(self, redis: triopipe.SentinelClient, prefix: str, pause: float = 0.0) -> None:
        self.redis = redis
        # Seconds between a writer's commands (0: as fast as it can).
        self.pause = pause
        self.keys = [f"{prefix}:{index}" for index in range(20)]
        self.acked: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.refused = 0
        self.last_ack = 0.0
        self.first_ack_after: float | None = None
        self.since = float("inf")
        self.running = True
        self.gate = anyio.Event()
        self.gate.set()

    def start(self, task_group: anyio.abc.TaskGroup) -> None:
        for key in self.keys:
            task_group.start_soon(self.write, key)

    async def write(self, key: str) -> None:
        while self.running:
            await self.gate.wait()
            try:
                await self.redis.incr(key)
            except triopipe.ConnectionLostError as exc:
                # An unwritten command is retried, never surfaced.
                self.unknown[key] += 1 if exc.sent else self._unsent_surfaced(exc)
            except (triopipe.ConnectError, triopipe.ReadOnlyError):
                # Refused or never sent: not applied. Try again shortly.
                self.refused += 1
                await anyio.sleep(0.01)
            else:
                self.acked[key] += 1
                now = time.monotonic()
                if self.first_ack_after is None and now > self.since:
                    self.first_ack_after = now
                if self.pause:
                    await anyio.sleep(self.pause)

    async def replicated(self, primary_url: str, replicas: int) -> None:
        """Hold the writers until every replica has every write so far, then let them go.

        Replication is asynchronous: a replica lagging on a busy machine
        makes Redis lose what its killed primary acknowledged, whatever the
        client does.
        """
        self.gate = anyio.Event()
        await anyio.sleep(0.02)  # the calls under way end
        async with triopipe.open_client(primary_url) as plain, plain.batch() as batch:
            batch.set("sentinel:sync", 1)
            acknowledged = batch.execute("WAIT", replicas, 5000)
        assert acknowledged.result() == replicas
        self.gate.set()

    @staticmethod
    def _unsent_surfaced(error: triopipe.ConnectionLostError) -> int:
        raise AssertionError(f"an unwritten command failed instead of going again: {error}")

    async def finals(self) -> dict[str, int]:
        values = await self.redis.mget(self.keys)
        return {key: int(value or 0) for key, value in zip(self.keys, values, strict=True)}


async def _switch_time(url: str, old_port: int, task_status: anyio.abc.TaskStatus[float]) -> None:
    """Report when a sentinel announces a new primary (``+switch-master``)."""
    async with (
        triopipe.open_client(url) as sentinel,
        sentinel.subscribe("+switch-master") as subscription,
    ):
        task_status.started(0.0)
        async for message in subscription:
            if message.data.split()[2] == str(old_port).encode():
                raise _Switched(time.monotonic())


class _Switched(Exception):
    def __init__(self, at: float) -> None:
        super().__init__(at)
        self.at = at


async def _run_failover(
    setup: RedisSentinel, redis: triopipe.SentinelClient, writers: _Writers, *, kill: bool
) -> float:
    """Fail the primary over under the writers' load; when the sentinels named the new one."""
    old = await setup.primary()
    switched_at = 0.0

    async def watch(task_status: anyio.abc.TaskStatus[float]) -> None:
        nonlocal switched_at
        try:
            await _switch_time(setup.sentinel_urls[1], old.port, task_status)
        except _Switched as switched:
            switched_at = switched.at
            writers.since = switched.at

    async with anyio.create_task_group() as task_group:
        await task_group.start(watch)
        writers.start(task_group)
        await anyio.sleep(0.3)
        if kill:
            await writers.replicated(old.url, len(setup.servers) - 1)
            await anyio.sleep(0.003)  # calls in flight when the primary dies
            await old.kill()
        else:
            await setup.failover()
        with anyio.fail_after(20):
            new = await setup.wait_for_new_primary(old)
            while writers.first_ack_after is None:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        writers.running = False
    assert redis.primary == f"{new.host}:{new.port}"
    assert redis.failovers >= 1  # a loaded machine may make the sentinels fail over twice
    assert switched_at
    return switched_at


async def test_discovers_the_primary_and_serves_commands(setup: RedisSentinel) -> None:
    primary = await setup.primary()
    async with triopipe.open_sentinel_client(setup.sentinel_urls, SERVICE) as redis:
        assert redis.primary == f"{primary.host}:{primary.port}"
        assert redis.service_name == SERVICE
        assert await redis.set("sentinel:a", "1")
        assert await redis.execute_many([("INCR", "sentinel:a"), ("GET", "sentinel:a")]) == [
            2,
            b"2",
        ]
        assert "mymaster" in repr(redis)


async def test_reads_go_to_a_replica(setup: RedisSentinel) -> None:
    primary = await setup.primary()
    replicas = [server for server in setup.servers if server.port != primary.port]

    async def gets_served() -> list[int]:
        counts = []
        for server in replicas:
            async with triopipe.open_client(server.url) as plain:
                stats = await plain.execute("INFO", "commandstats")
                line = next(
                    (x for x in stats.split(b"\r\n") if x.startswith(b"cmdstat_get:")), b""
                )
                counts.append(int(line.split(b"calls=")[1].split(b",")[0]) if line else 0)
        return counts

    before = await gets_served()
    async with triopipe.open_sentinel_client(
        setup.sentinel_urls, SERVICE, read_from_replicas=True
    ) as redis:
        await redis.set("sentinel:read", "x")
        for _ in range(50):
            await redis.get("sentinel:read")
    after = await gets_served()
    assert sum(after) - sum(before) == 50


async def test_a_dead_sentinel_is_passed_over(setup: RedisSentinel) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    primary = await setup.primary()
    async with triopipe.open_sentinel_client([dead, *setup.sentinel_urls], SERVICE) as redis:
        assert redis.primary == f"{primary.host}:{primary.port}"
        assert await redis.ping()


async def test_unknown_service_names_what_each_sentinel_said(setup: RedisSentinel) -> None:
    with pytest.raises(triopipe.ConnectError, match="does not know 'nobody'") as caught:
        async with triopipe.open_sentinel_client(setup.sentinel_urls, "nobody"):
            pass
    assert str(caught.value).count("does not know") == len(setup.sentinel_urls)


async def test_bad_arguments_are_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="list of sentinel URLs"):
        async with triopipe.open_sentinel_client("redis://127.0.0.1:26379", SERVICE):
            pass
    with pytest.raises(ValueError, match="service_name"):
        async with triopipe.open_sentinel_client(["redis://127.0.0.1:26379"], ""):
            pass


async def test_sentinel_failover_under_load_repeats_nothing(setup: RedisSentinel) -> None:
    async with triopipe.open_sentinel_client(setup.sentinel_urls, SERVICE) as redis:
        writers = _Writers(redis, f"failover:{time.monotonic()}")
        switched_at = await _run_failover(setup, redis, writers, kill=False)
        assert writers.first_ack_after is not None
        assert writers.first_ack_after - switched_at < 2.0
        # The old primary took writes until the sentinels demoted it, and
        # Redis drops those: only "nothing applied twice" can hold.
        for key, final in (await writers.finals()).items():
            assert final <= writers.acked[key] + writers.unknown[key], key
        assert sum(writers.acked.values()) > 0


async def test_killed_primary_loses_and_repeats_nothing(redis_sentinel: RedisSentinel) -> None:
    setup = redis_sentinel
    async with triopipe.open_sentinel_client(setup.sentinel_urls, SERVICE) as redis:
        writers = _Writers(redis, "kill", pause=0.002)
        switched_at = await _run_failover(setup, redis, writers, kill=True)
        assert writers.first_ack_after is not None
        assert writers.first_ack_after - switched_at < 2.0
        for key, final in (await writers.finals()).items():
            acked, unknown = writers.acked[key], writers.unknown[key]
            assert acked <= final <= acked + unknown, (key, acked, final, unknown)


def test_blocking_facade(setup: RedisSentinel) -> None:
    with triopipe.sync.open_sentinel_client(setup.sentinel_urls, SERVICE, timeout=5) as redis:
        redis.execute("SET", "sentinel:sync", "v")
        assert redis.execute("GET", "sentinel:sync") == b"v"
        assert redis.incr("sentinel:sync:n") >= 1
    with triopipe.sync.open_sentinel_client(
        setup.sentinel_urls, SERVICE, read_from_replicas=True
    ) as redis:
        # Replica reads go through the loop (the replica may lag: ask until seen).
        deadline = time.monotonic() + 5
        while redis.get("sentinel:sync") != b"v":
            assert time.monotonic() < deadline
            time.sleep(0.01)


async def test_retargeting_fails_written_commands_and_moves_the_rest(
    redis_shard_urls: list[str],
) -> None:
    """The mechanism under a failover: a client's connection group aimed at another server."""
    first, second = redis_shard_urls[:2]
    async with (
        triopipe.open_client(first, connections=2) as redis,
        triopipe.open_client(second) as other,
    ):
        await redis.set("retarget:k", "first")
        await other.set("retarget:k", "second")
        async with redis.transaction() as tx:  # leaves an idle dedicated connection
            before = tx.get("retarget:k")
        assert before.result() == b"first"
        async with anyio.create_task_group() as task_group:
            written: list[BaseException] = []

            async def sleeper() -> None:
                with pytest.raises(triopipe.ConnectionLostError) as caught:
                    await redis.execute("DEBUG", "SLEEP", "0.5")
                written.append(caught.value)

            task_group.start_soon(sleeper)
            await anyio.sleep(0.1)
            error = triopipe.ConnectionLostError("the primary moved", sent=True)
            target = dataclasses.replace(redis.config, port=_port(second))
            redis.group.retarget(target, error)
        assert written[0].sent
        assert "the primary moved" in str(written[0])
        assert await redis.get("retarget:k") == b"second"
        async with redis.transaction() as tx:  # dedicated connections follow too
            in_transaction = tx.get("retarget:k")
        assert in_transaction.result() == b"second"
        async with redis.batch() as batch:
            value = batch.get("retarget:k")
        assert value.result() == b"second"


def _port(url: str) -> int:
    return int(url.rpartition(":")[2].split("/")[0])


class _Moves(triopipe.Observer):
    def __init__(self) -> None:
        self.moves: list[tuple[str, str, str]] = []

    def primary_changed(self, service: str, old: str, new: str) -> None:
        self.moves.append((service, old, new))


async def test_readonly_makes_the_client_ask_the_sentinels_again(setup: RedisSentinel) -> None:
    observer = _Moves()
    async with triopipe.open_sentinel_client(
        setup.sentinel_urls, SERVICE, observer=observer
    ) as redis:
        primary = redis.primary
        replica = next(s for s in setup.servers if f"{s.host}:{s.port}" != primary)
        # Let the check made on subscribing to +switch-master end first: it
        # would aim the client back before the write below meets READONLY.
        await anyio.sleep(0.3)
        # As if the primary had been demoted without the client hearing of it.
        lost = triopipe.ConnectionLostError("aimed at a replica by the test", sent=True)
        redis.retarget(dataclasses.replace(redis.config, port=replica.port), lost)
        key = f"sentinel:readonly:{time.monotonic()}"
        with pytest.raises(triopipe.ReadOnlyError):
            await redis.incr(key)
        with anyio.fail_after(5):
            while True:
                try:
                    # The replica applies no write: the first to succeed is the first.
                    assert await redis.incr(key) == 1
                    break
                except (triopipe.ReadOnlyError, triopipe.ConnectionLostError):
                    # Refused, or in flight to the replica when the client
                    # moved back (sent=True: its outcome unknown to the client).
                    await anyio.sleep(0.02)
        assert redis.primary == primary
        assert redis.config.port == int(primary.rpartition(":")[2])
    assert observer.moves == [(SERVICE, f"{replica.host}:{replica.port}", primary)]
