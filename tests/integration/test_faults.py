"""Server faults with real servers: kills, restarts, stalls, refusals.

The accounting rule throughout: every command is either acknowledged (its
reply arrived) or failed with ConnectionLostError/ConnectError; the server's
state lies between "acknowledged" and "acknowledged + failed after being
written". Nothing acknowledged is lost, nothing is applied twice.
"""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest

import triopipe
import triopipe.testing
from triopipe.testing import RedisServer

pytestmark = pytest.mark.usefixtures("anyio_backend")

INCRS = 300_000


async def _info_field(redis: triopipe.Client, section: str, field: str) -> int:
    info = await redis.execute("INFO", section)
    for line in info.splitlines():
        if line.startswith(field.encode() + b":"):
            return int(line.split(b":")[1])
    raise AssertionError(f"no {field} in INFO {section}")  # pragma: no cover


async def _incr_pipeline(redis: triopipe.Client) -> list[triopipe.Pending[int]]:
    """300k INCRs of one counter through a streaming batch; returns the pendings.

    The batch raises when its connection breaks; the pendings tell each
    command's fate either way.
    """
    pendings: list[triopipe.Pending[int]] = []
    try:
        async with redis.batch() as batch:
            for i in range(INCRS):
                pendings.append(batch.incr("counter"))
                if i % 1000 == 999:
                    await anyio.lowlevel.checkpoint()  # the batch streams meanwhile
    except triopipe.TransportError:
        pass
    return pendings


def _account(pendings: list[triopipe.Pending[int]]) -> tuple[int, int, int]:
    """(acknowledged, failed after being written, failed unwritten)."""
    acked = written = unwritten = 0
    for pending in pendings:
        try:
            pending.result()
        except triopipe.ConnectionLostError as exc:
            if exc.sent:
                written += 1
            else:
                unwritten += 1
        else:
            acked += 1
    assert acked + written + unwritten == len(pendings)
    return acked, written, unwritten


async def _wait_for_counter(admin: triopipe.Client, at_least: int) -> None:
    with anyio.fail_after(30):
        while int(await admin.get("counter") or 0) < at_least:
            await anyio.sleep(0.001)


async def test_client_kill_during_incr_pipeline(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as admin,
    ):
        victim = await redis.execute("CLIENT", "ID")
        result: list[list[triopipe.Pending[int]]] = []

        async def pump() -> None:
            result.append(await _incr_pipeline(redis))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pump)
            await _wait_for_counter(admin, 50_000)
            # Hold the writes so that INCRs are surely pending at the kill.
            await admin.execute("CLIENT", "PAUSE", 10_000, "WRITE")
            assert await admin.execute("CLIENT", "KILL", "ID", victim) == 1
            await admin.execute("CLIENT", "UNPAUSE")
        acked, written, unwritten = _account(result[0])
        counter = int(await admin.get("counter"))
        print(f"CLIENT KILL: {acked=} {written=} {unwritten=} {counter=}")
        assert acked > 0  # (replies of executed INCRs may be unread at the kill)
        assert written + unwritten > 0
        assert acked <= counter <= acked + written
        # Acknowledged replies are exactly 1..acked: none lost, none doubled.
        values = [p.result() for p in result[0][:acked]]
        assert values == list(range(1, acked + 1))
        # The client reconnects for the next command; nothing was resent.
        assert await redis.incr("counter") == counter + 1
        assert redis.statistics().commands_in_flight == 0


async def test_kill_9_during_incr_pipeline_then_restart() -> None:
    # appendfsync always: an acknowledged INCR is on disk before its reply.
    async with (
        triopipe.testing.redis_server(appendonly="yes", appendfsync="always") as server,
        triopipe.open_client(server.url) as redis,
        triopipe.open_client(server.url) as admin,
    ):
        result: list[list[triopipe.Pending[int]]] = []

        async def pump() -> None:
            result.append(await _incr_pipeline(redis))

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pump)
            await _wait_for_counter(admin, 20_000)
            await admin.execute("CLIENT", "PAUSE", 10_000, "WRITE")
            await anyio.sleep(0.05)  # INCRs pile up, held by the server
            await server.kill()
        acked, written, _ = _account(result[0])
        await server.restart()
        with anyio.fail_after(10):
            counter = int(await admin.get("counter"))
        print(f"kill -9: {acked=} {written=} {counter=}")
        assert acked > 0
        assert acked <= counter <= acked + written
        assert await redis.incr("counter") == counter + 1


async def test_restart_on_the_same_port_no_task_hangs(redis_server: RedisServer) -> None:
    async with triopipe.open_client(redis_server.url) as redis:
        outcomes = {"ok": 0, "failed": 0}
        stop = anyio.Event()

        async def worker() -> None:
            while not stop.is_set():
                with anyio.fail_after(10):  # no call may hang
                    try:
                        await redis.incr("n")
                        outcomes["ok"] += 1
                    except triopipe.TransportError:
                        outcomes["failed"] += 1
                        await anyio.sleep(0.005)

        async with anyio.create_task_group() as task_group:
            for _ in range(20):
                task_group.start_soon(worker)
            await anyio.sleep(0.2)
            await redis_server.stop()
            await anyio.sleep(0.3)
            before_restart = outcomes["ok"]
            await redis_server.restart()
            with anyio.fail_after(10):
                while outcomes["ok"] == before_restart:
                    await anyio.sleep(0.01)
            stop.set()
        assert outcomes["failed"] > 0
        assert redis.statistics().connects >= 2
        assert redis.statistics().commands_in_flight == 0


async def test_debug_sleep_stall_under_fail_after(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis, anyio.create_task_group() as tg:
        tg.start_soon(redis.execute, "DEBUG", "SLEEP", "0.3")
        await anyio.sleep(0.02)
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.1):
                await redis.incr("x")
        # The late reply is discarded; the next replies are right.
        assert await redis.execute("ECHO", "next") == b"next"
        assert await redis.get("x") == b"1"  # the INCR ran once
        assert redis.statistics().commands_in_flight == 0
        assert redis.statistics().connects == 1


async def test_client_pause_stall_under_fail_after(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as admin,
    ):
        await admin.execute("CLIENT", "PAUSE", 300, "ALL")
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.1):
                await redis.incr("x")
        with anyio.fail_after(5):
            assert await redis.execute("ECHO", "after") == b"after"
        assert await redis.get("x") == b"1"
        assert redis.statistics().commands_in_flight == 0


async def test_maxclients_gives_a_clear_error_with_backoff() -> None:
    async with (
        triopipe.testing.redis_server(maxclients=2) as server,
        triopipe.open_client(server.url) as first,
        triopipe.open_client(server.url) as second,
    ):
        with pytest.raises(triopipe.MaxClientsError):
            async with triopipe.open_client(server.url):
                pass  # pragma: no cover
        # A client whose connection drops while the server is full says why
        # at once; behind the caller, attempts to connect back off: no tight
        # loop, and the first command after a slot frees up goes through.
        victim = await first.execute("CLIENT", "ID")
        before = await _info_field(second, "stats", "rejected_connections")
        await second.execute("CLIENT", "KILL", "ID", victim)
        async with triopipe.open_client(server.url, retries=0):  # takes the free slot
            with pytest.raises(triopipe.MaxClientsError):
                await first.ping()
            await anyio.sleep(0.5)
            rejected = await _info_field(second, "stats", "rejected_connections") - before
        # Backoff from 20 ms doubling: a handful of attempts in half a second.
        assert 1 <= rejected <= 8, rejected
        with anyio.fail_after(3):
            while True:
                try:
                    assert await first.ping() is True  # a slot is free again
                    break
                except triopipe.MaxClientsError:
                    await anyio.sleep(0.05)


async def test_loading_gives_a_clear_error_or_is_retried_with_backoff() -> None:
    # key-load-delay slows loading only: loading 30k keys with a 20 us sleep
    # each takes a few seconds after the restart (a sleep lasts longer than
    # asked). A loading server answers only between chunks of its load: make
    # the chunks small so that it answers LOADING promptly.
    async with (
        triopipe.testing.redis_server(
            key_load_delay=20, loading_process_events_interval_bytes=1024
        ) as server,
        triopipe.open_client(server.url) as redis,
        triopipe.open_client(server.url, retries=0) as impatient,
    ):
        await redis.execute("DEBUG", "POPULATE", 30_000)
        await redis.execute("SAVE")
        seen: list[BaseException] = []
        retried: list[tuple[float, object]] = []
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(server.restart)  # returns once loading is over
            with anyio.fail_after(60):
                # Without retries, a loading server's refusal surfaces at once.
                while not seen:
                    try:
                        await impatient.get("key:1")
                    except triopipe.BusyLoadingError as exc:
                        seen.append(exc)
                    except triopipe.TransportError:  # stopped, or not listening yet
                        await anyio.sleep(0.005)
                # With retries (the default), the refusal is retried with
                # backoff: the call succeeds once loading ends, or reports
                # LOADING after its retries.
                started = time.monotonic()
                try:
                    outcome: object = await redis.get("key:1")
                except triopipe.BusyLoadingError as exc:
                    outcome = exc
                retried.append((time.monotonic() - started, outcome))
        assert seen[0].code == "LOADING"  # type: ignore[attr-defined]
        elapsed, outcome = retried[0]
        if isinstance(outcome, triopipe.BusyLoadingError):
            assert elapsed > 0.15  # backed off: at least 25 + 50 + 100 ms
        else:
            assert outcome == b"value:1"
        assert await redis.get("key:1") == b"value:1"
