"""Staying up and failing fast, against real servers and the harness's proxy.

- a dead server's commands fail at once, and the first command after it is
  back succeeds; shards that are up do not notice;
- a link that goes silent (a network cut nobody reports) is found by the
  health check and replaced;
- dedicated connections are bounded: a burst of blocking commands waits its
  turn instead of exhausting ``maxclients``;
- a credential provider is asked on every connect (rotated passwords);
- an observer hears what the client does;
- the blocking facade's ``timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from helpers import Control

import triopipe
import triopipe.sync
from triopipe.testing import redis_server, redis_servers, tcp_proxy


async def test_a_dead_servers_commands_fail_at_once_and_recover() -> None:
    async with redis_server() as server, triopipe.open_client(server.url) as redis:
        await redis.set("k", "v")
        await server.stop()
        with pytest.raises(triopipe.TransportError):  # the link broke, or the connect failed
            await redis.get("k")
        timings = []
        for _ in range(10):
            started = time.monotonic()
            with pytest.raises(triopipe.ConnectError, match="down"):
                await redis.get("k")
            timings.append(time.monotonic() - started)
        # The first may still try to connect; then each fails at once.
        assert max(timings[1:]) < 0.05, timings
        await server.restart()
        with anyio.fail_after(2):
            while True:
                try:
                    await redis.set("k", "back")
                    break
                except triopipe.ConnectError:
                    await anyio.sleep(0.02)
        assert await redis.get("k") == b"back"


async def test_a_dead_shard_does_not_slow_the_others() -> None:
    async with (
        redis_servers(3) as servers,
        triopipe.open_sharded_client([s.url for s in servers]) as redis,
    ):
        keys = [f"key:{i}" for i in range(300)]
        await redis.execute_many([("SET", key, key) for key in keys])
        dead = servers[1]
        await dead.stop()
        on_dead = [key for key in keys if redis.shard_for(key) == dead.url]
        alive = [key for key in keys if redis.shard_for(key) != dead.url]
        with pytest.raises(triopipe.TransportError):
            await redis.get(on_dead[0])
        started = time.monotonic()
        for key in on_dead[1:20]:
            with pytest.raises(triopipe.ConnectError):
                await redis.get(key)
        assert (time.monotonic() - started) / 19 < 0.05
        with anyio.fail_after(5):
            for key in alive[:100]:
                assert await redis.get(key) == key.encode()
            replies = await redis.execute_many(
                [("GET", key) for key in keys], raise_on_error=False
            )
        assert all(
            isinstance(reply, triopipe.ConnectError) == (key in on_dead)
            for key, reply in zip(keys, replies, strict=True)
        )


async def test_a_silent_link_is_found_and_its_commands_fail_in_two_intervals() -> None:
    interval = 0.5
    async with (
        redis_server() as server,
        tcp_proxy(server.host, server.port) as proxy,
        triopipe.open_client(proxy.url, health_check_interval=interval) as redis,
    ):
        await redis.set("k", "v")
        proxy.blackhole()  # the network cut: the server never hears of it
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(triopipe.ConnectionLostError) as lost:
            await redis.get("k")
        took = time.monotonic() - started
        assert lost.value.sent is True
        assert took <= 2 * interval + 0.2, took
        assert "health check" in str(lost.value)
        # The next link goes through the proxy again, which forwards new ones.
        assert await redis.get("k") == b"v"
        assert proxy.connections == 2


async def test_an_idle_link_is_probed_and_replaced_when_silent() -> None:
    interval = 0.3
    async with (
        redis_server() as server,
        tcp_proxy(server.host, server.port) as proxy,
        triopipe.open_client(proxy.url, health_check_interval=interval) as redis,
    ):
        await redis.ping()
        await anyio.sleep(interval * 3)  # probed while idle: still up
        assert redis.statistics().connects == 1
        assert redis.statistics().commands_in_flight == 0
        proxy.blackhole()
        with anyio.fail_after(5):
            while redis.statistics().connected:
                await anyio.sleep(0.05)
        # No caller waited for that, and no deadline was needed: good replies again.
        with anyio.fail_after(10):
            assert await redis.ping() is True


async def test_a_blocking_command_longer_than_the_interval_is_not_a_dead_link(
    redis_url: str,
) -> None:
    async with triopipe.open_client(redis_url, health_check_interval=0.2) as redis:
        started = time.monotonic()
        assert await redis.blpop("empty-list", 1) is None
        assert time.monotonic() - started >= 0.9


async def test_dedicated_connections_are_bounded() -> None:
    async with (
        redis_server(maxclients=100) as server,
        triopipe.open_client(server.url, max_dedicated=40) as redis,
    ):
        results: list[Any] = []

        async def pop(index: int) -> None:
            results.append(await redis.blpop(f"queue:{index % 10}", 10))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as task_group:
                for index in range(150):
                    task_group.start_soon(pop, index)
                await anyio.sleep(0.2)
                for index in range(150):
                    await redis.rpush(f"queue:{index % 10}", index)
        assert len(results) == 150
        assert all(result is not None for result in results)
        clients = Control(server.url).execute_command("INFO", "clients")
        assert isinstance(clients, bytes)


async def test_a_rotated_password_is_picked_up_on_reconnect(redis_url: str) -> None:
    control = Control(redis_url)
    control.execute_command("ACL", "SETUSER", "rotating", "on", ">first", "~*", "+@all")
    current = {"password": "first"}
    asked = 0

    async def credentials() -> tuple[str, str]:
        nonlocal asked
        asked += 1
        return "rotating", current["password"]

    try:
        async with triopipe.open_client(redis_url, credentials=credentials) as redis:
            assert await redis.execute("ACL", "WHOAMI") == b"rotating"
            control.execute_command("ACL", "SETUSER", "rotating", "resetpass", ">second")
            current["password"] = "second"
            control.execute_command("CLIENT", "KILL", "USER", "rotating")
            with anyio.fail_after(5):
                while True:
                    try:
                        assert await redis.execute("ACL", "WHOAMI") == b"rotating"
                        break
                    except triopipe.ConnectionLostError:
                        await anyio.sleep(0.01)
            assert asked >= 2
            assert redis.statistics().connects >= 2
    finally:
        control.execute_command("ACL", "DELUSER", "rotating")


class _Recorder(triopipe.Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def connected(self, server: str, protocol: int) -> None:
        self.events.append(("connected", protocol))

    def disconnected(self, server: str, error: BaseException) -> None:
        self.events.append(("disconnected", type(error)))

    def connect_failed(self, server: str, error: BaseException, retry_in: float) -> None:
        self.events.append(("connect_failed", type(error)))

    def retried(self, server: str, command: str, error: BaseException, attempt: int) -> None:
        self.events.append(("retried", command))

    def waited_for_room(self, server: str, commands: int) -> None:
        self.events.append(("waited_for_room", commands))

    def outcome_unknown(self, server: str, commands: int, error: BaseException) -> None:
        self.events.append(("outcome_unknown", commands))

    def command(self, server: str, name: str, commands: int) -> Any:
        recorder = self

        class _Watch:
            def end(self, error: BaseException | None) -> None:
                recorder.events.append(("command", (name, commands, type(error))))

        return _Watch()


async def test_an_observer_hears_what_happens() -> None:
    recorder = _Recorder()
    async with (
        redis_server() as server,
        triopipe.open_client(server.url, observer=recorder, max_in_flight=2) as redis,
    ):
        await redis.set("k", 1)
        await redis.execute_many([("INCR", "k")] * 3)
        async with anyio.create_task_group() as task_group:
            for _ in range(6):
                task_group.start_soon(redis.incr, "k")
        with pytest.raises(triopipe.WrongTypeError):
            await redis.lpush("k", 1)
        Control(server.url).execute_command("CLIENT", "PAUSE", "300", "ALL")

        async def written_then_cut() -> None:
            with pytest.raises(triopipe.ConnectionLostError):
                await redis.incr("k")

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(written_then_cut)
            await anyio.sleep(0.05)
            Control(server.url).execute_command("CLIENT", "KILL", "TYPE", "normal")
        await server.stop()
        with pytest.raises(triopipe.ConnectError):
            await redis.get("k")
    kinds = {kind for kind, _ in recorder.events}
    assert {"connected", "disconnected", "connect_failed", "retried"} <= kinds
    assert ("outcome_unknown", 1) in recorder.events
    assert ("command", ("SET", 1, type(None))) in recorder.events
    windows = [e for kind, e in recorder.events if kind == "command" and e[0] == "PIPELINE"]
    assert sum(commands for _, commands, _ in windows) == 3  # max_in_flight=2: small windows
    assert ("command", ("LPUSH", 1, triopipe.WrongTypeError)) in recorder.events
    assert any(kind == "waited_for_room" for kind, _ in recorder.events)


@pytest.fixture
def paused_server() -> Iterator[str]:
    from triopipe.testing import redis_server_process

    with redis_server_process() as server:
        yield server.url


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_blocking_facade_times_out(paused_server: str, backend: str) -> None:
    with triopipe.sync.open_client(paused_server, backend=backend, timeout=0.2) as redis:
        redis.ping()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            redis.execute("DEBUG", "SLEEP", "0.6")
        assert time.monotonic() - started < 0.5
        time.sleep(0.6)
        assert redis.execute("ECHO", "after") == b"after"
        with pytest.raises(TimeoutError):
            redis.submit("DEBUG", "SLEEP", "0.6").result(timeout=0.2)
