"""The core client against real servers, on trio and asyncio."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import triopipe
from triopipe._resp import encode_command
from triopipe.testing import RedisServer, fake_server

pytestmark = pytest.mark.usefixtures("anyio_backend")

PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3])


@PROTOCOLS
async def test_typed_helpers_return_the_same_types_on_both_protocols(
    redis_url: str, protocol: int
) -> None:
    async with triopipe.open_client(redis_url, protocol=protocol) as redis:
        assert redis.statistics().per_connection[0].protocol == protocol
        assert await redis.ping() is True
        assert await redis.ping("hello") == b"hello"
        assert await redis.set("k", "v") is True
        assert await redis.set("k", "w", nx=True) is False
        assert await redis.set("k", "w", xx=True, get=True) == b"v"
        assert await redis.get("k") == b"w"
        assert await redis.get("missing") is None
        assert await redis.incr("n") == 1
        assert await redis.incrby("n", 41) == 42
        assert await redis.mset({"a": 1, "b": b"\x00\xff"}) is True
        assert await redis.mget("a", "b", "nope") == [b"1", b"\x00\xff", None]
        assert await redis.exists("a", "b", "nope", "a") == 3
        assert await redis.expire("a", 100) is True
        assert await redis.expire("nope", 100) is False
        assert 0 < await redis.ttl("a") <= 100
        assert await redis.ttl("b") == -1
        assert await redis.delete("a", "b", "nope") == 2
        assert await redis.hset("h", {"f": 1, "g": "x"}) == 2
        assert await redis.hget("h", "f") == b"1"
        assert await redis.hgetall("h") == {b"f": b"1", b"g": b"x"}
        assert await redis.hgetall("nope") == {}
        assert await redis.rpush("l", 1, 2) == 2
        assert await redis.lpush("l", 0) == 3
        assert await redis.lrange("l", 0, -1) == [b"0", b"1", b"2"]
        assert await redis.sadd("s1", "a", "b", "c") == 3
        assert await redis.sadd("s2", "b", "c", "d") == 3
        assert await redis.smembers("s1") == {b"a", b"b", b"c"}
        assert await redis.sinter("s1", "s2") == {b"b", b"c"}
        assert await redis.sunion("s1", "s2") == {b"a", b"b", b"c", b"d"}
        assert await redis.zadd("z", {"x": 1.5, "y": 2}) == 2
        assert await redis.zrange("z", 0, -1) == [b"x", b"y"]
        assert await redis.zrange("z", 0, -1, withscores=True) == [(b"x", 1.5), (b"y", 2.0)]
        assert await redis.zrange("z", 0, -1, withscores=True, rev=True) == [
            (b"y", 2.0),
            (b"x", 1.5),
        ]
        assert await redis.dbsize() == 7
        assert sorted([key async for key in redis.scan_iter(match="s*", count=1)]) == [
            b"s1",
            b"s2",
        ]
        assert await redis.flushdb() is True
        assert await redis.dbsize() == 0


@PROTOCOLS
async def test_execute_returns_replies_as_the_protocol_gives_them(
    redis_url: str, protocol: int
) -> None:
    async with triopipe.open_client(redis_url, protocol=protocol) as redis:
        await redis.execute("HSET", "h", "f", "1")
        await redis.execute("ZADD", "z", "1.5", "m")
        reply = await redis.execute("HGETALL", "h")
        score = await redis.execute("ZSCORE", "z", "m")
        if protocol == 3:
            assert reply == {b"f": b"1"}
            assert score == 1.5
        else:
            assert reply == [b"f", b"1"]
            assert score == b"1.5"
        await redis.execute("SADD", "s", "a", "b")
        members = await redis.execute("SMEMBERS", "s")
        if protocol == 3:  # a RESP3 set reply
            assert members == {b"a", b"b"}
        else:  # a RESP2 array
            assert sorted(members) == [b"a", b"b"]
        assert await redis.execute("SET", "k", 1.25) == b"OK"
        assert await redis.execute(b"GET", b"k") == b"1.25"


async def test_decode_returns_str(redis_url: str) -> None:
    async with triopipe.open_client(redis_url, decode=True) as redis:
        await redis.set("ключ", "значение")
        assert await redis.get("ключ") == "значение"
        assert await redis.execute("PING") == "PONG"
        assert await redis.hgetall("nope") == {}


async def test_error_replies_raise_mapped_exceptions(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        await redis.set("k", "v")
        with pytest.raises(triopipe.WrongTypeError) as info:
            await redis.lpush("k", 1)
        assert info.value.code == "WRONGTYPE"
        assert "wrong kind of value" in info.value.message
        with pytest.raises(triopipe.ResponseError) as generic:
            await redis.execute("NOSUCHCOMMAND")
        assert generic.value.code == "ERR"
        with pytest.raises(triopipe.NoScriptError):
            await redis.execute("EVALSHA", "0" * 40, 0)
        # The connection is still in step after the errors.
        assert await redis.get("k") == b"v"


async def test_execute_many_keeps_order_and_errors_in_place(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        commands = [("SET", "a", 1), ("INCR", "a"), ("LPUSH", "a", 1), ("GET", "a"), ("PING",)]
        results = await redis.execute_many(commands, raise_on_error=False)
        assert results[:2] == [b"OK", 2]
        assert isinstance(results[2], triopipe.WrongTypeError)
        assert results[3:] == [b"2", b"PONG"]
        with pytest.raises(triopipe.WrongTypeError):
            await redis.execute_many(commands)
        # Every command still ran, in order: INCR twice.
        assert await redis.get("a") == b"2"
        assert await redis.execute_many([]) == []


async def test_execute_many_windows_a_generator(redis_url: str) -> None:
    async with triopipe.open_client(redis_url, max_in_flight=64) as redis:
        count = 20_000
        results = await redis.execute_many(("INCR", f"k{i % 100}") for i in range(count))
        assert len(results) == count
        assert results[:3] == [1, 1, 1]
        assert results[-1] == count // 100
        stats = redis.statistics()
        assert stats.commands_in_flight == 0
        assert stats.writes < stats.commands_written


async def test_concurrent_tasks_each_get_their_own_reply_through_shared_writes(
    redis_url: str,
) -> None:
    async with triopipe.open_client(redis_url) as redis:
        await redis.execute_many([("SET", f"key:{i}", i) for i in range(500)])
        before = redis.statistics()
        wrong = []

        async def worker(i: int) -> None:
            for _ in range(20):
                value = await redis.get(f"key:{i}")
                if value != str(i).encode():
                    wrong.append((i, value))

        async with anyio.create_task_group() as task_group:
            for i in range(500):
                task_group.start_soon(worker, i)
        assert wrong == []
        after = redis.statistics()
        commands = after.commands_written - before.commands_written
        writes = after.writes - before.writes
        assert commands == 500 * 20
        # The sender coalesces: far fewer writes than commands.
        assert writes * 5 < commands


async def test_max_in_flight_bounds_commands_awaiting_replies(redis_url: str) -> None:
    async with triopipe.open_client(redis_url, max_in_flight=8) as redis:
        peak = 0
        done = anyio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, redis.statistics().commands_in_flight)
                await anyio.lowlevel.checkpoint()

        async def worker() -> None:
            for _ in range(20):
                await redis.incr("n")

        async with anyio.create_task_group() as outer:
            outer.start_soon(sample)
            async with anyio.create_task_group() as task_group:
                for _ in range(50):
                    task_group.start_soon(worker)
            done.set()
        assert await redis.get("n") == b"1000"
        assert 0 < peak <= 8


async def test_many_waiters_for_room_all_get_through_even_when_some_give_up(
    redis_url: str,
) -> None:
    """2,000 submitters on 16 places, woken in turn; a third abandon their wait."""
    async with triopipe.open_client(redis_url, max_in_flight=16) as redis:
        peak = 0
        done = anyio.Event()
        finished = 0
        gave_up = 0

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, redis.statistics().commands_in_flight)
                await anyio.lowlevel.checkpoint()

        async def worker(i: int) -> None:
            nonlocal finished, gave_up
            # Some wait with a deadline they may miss while queued for room.
            with anyio.move_on_after(0.001 if i % 3 == 0 else 60) as scope:
                if i % 4 == 0:
                    replies = await redis.execute_many([("ECHO", f"{i}:{j}") for j in range(8)])
                    assert replies == [f"{i}:{j}".encode() for j in range(8)]
                else:
                    assert await redis.execute("ECHO", str(i)) == str(i).encode()
                finished += 1
            if scope.cancelled_caught:
                gave_up += 1

        with anyio.fail_after(60):
            async with anyio.create_task_group() as outer:
                outer.start_soon(sample)
                async with anyio.create_task_group() as task_group:
                    for i in range(2000):
                        task_group.start_soon(worker, i)
                done.set()
        assert finished + gave_up == 2000
        assert finished >= 2000 * 2 // 3
        assert 0 < peak <= 16
        assert await redis.execute("ECHO", "after") == b"after"
        assert redis.statistics().commands_in_flight == 0


async def test_connection_group_spreads_commands(redis_url: str) -> None:
    async with triopipe.open_client(redis_url, connections=3, client_name="grouped") as redis:

        async def worker() -> None:
            for _ in range(50):
                await redis.incr("n")

        async with anyio.create_task_group() as task_group:
            for _ in range(30):
                task_group.start_soon(worker)
        stats = redis.statistics()
        assert stats.connections == stats.connected == 3
        assert all(c.commands_written > 0 for c in stats.per_connection)
        clients = await redis.execute("CLIENT", "LIST")
        assert clients.count(b"name=grouped") == 3
        assert await redis.get("n") == b"1500"


async def test_cancelled_before_written_is_never_sent(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await redis.incr("never")
        assert await redis.get("never") is None
        assert redis.statistics().commands_in_flight == 0


async def test_cancelled_waiter_never_receives_or_shifts_replies(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        await redis.set("k", "v")
        with anyio.move_on_after(0.05) as scope:
            await redis.execute("DEBUG", "SLEEP", "0.3")
        assert scope.cancelled_caught
        # The late +OK of DEBUG SLEEP is dropped; this GET gets its own reply.
        assert await redis.get("k") == b"v"
        assert await redis.incr("n") == 1
        assert redis.statistics().commands_in_flight == 0
        assert redis.statistics().connects == 1


async def test_lost_connection_fails_pending_then_reconnects(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as admin,
    ):
        victim = await redis.execute("CLIENT", "ID")
        results: list[BaseException] = []

        async def writer() -> None:
            try:
                await redis.set("k", "v")
            except triopipe.ConnectionLostError as exc:
                results.append(exc)

        # Writes are held by the server, so the SET stays pending while the
        # admin connection (not writing) kills the victim's connection.
        await admin.execute("CLIENT", "PAUSE", 5000, "WRITE")
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(writer)
            await anyio.sleep(0.1)
            assert redis.statistics().commands_in_flight == 1
            assert await admin.execute("CLIENT", "KILL", "ID", victim) == 1
        await admin.execute("CLIENT", "UNPAUSE")
        assert len(results) == 1
        assert results[0].sent is True
        assert redis.statistics().commands_in_flight == 0
        # The next command reconnects; the failed SET is not resent.
        assert await redis.ping() is True
        assert redis.statistics().connects == 2


async def test_server_restart_reconnects(redis_server: RedisServer) -> None:
    async with triopipe.open_client(redis_server.url) as redis:
        await redis.set("k", "v")
        await redis_server.stop()
        with pytest.raises((triopipe.ConnectionLostError, triopipe.ConnectError)):
            await redis.get("k")
        await redis_server.restart()
        with anyio.fail_after(10):
            while True:
                try:
                    await redis.ping()
                    break
                except triopipe.TransportError:
                    await anyio.sleep(0.01)
        assert await redis.get("k") is None  # the server keeps nothing on disk


async def test_handshake_selects_db_and_names_the_connection(redis_url: str) -> None:
    async with (
        triopipe.open_client(f"{redis_url}/5?client_name=tp") as redis,
        triopipe.open_client(redis_url, db=5) as same,
        triopipe.open_client(redis_url) as db0,
    ):
        await redis.set("where", "five")
        assert await same.get("where") == b"five"
        assert await db0.get("where") is None
        assert await redis.execute("CLIENT", "GETNAME") == b"tp"
        await same.flushdb()


async def test_password_and_acl_users() -> None:
    async with triopipe.testing.redis_server(requirepass="s3cret") as server:
        url = f"redis://:s3cret@127.0.0.1:{server.port}"
        async with triopipe.open_client(url) as redis:
            assert await redis.ping() is True
            await redis.execute("ACL", "SETUSER", "alice", "on", ">wonder", "~*", "+@all")
        async with triopipe.open_client(f"redis://alice:wonder@127.0.0.1:{server.port}") as alice:
            assert await alice.execute("ACL", "WHOAMI") == b"alice"
        for protocol in (2, 3):
            with pytest.raises(triopipe.AuthenticationError):
                async with triopipe.open_client(
                    f"redis://alice:wrong@127.0.0.1:{server.port}", protocol=protocol
                ):
                    pass  # pragma: no cover
        with pytest.raises(triopipe.AuthenticationError):
            async with triopipe.open_client(server.url):
                pass  # pragma: no cover


async def test_falls_back_to_resp2_auth_without_hello() -> None:
    # A server with HELLO renamed away answers it like a pre-6.0 Redis: Redis
    # with "unknown command", Valkey (which checks authentication first) with
    # NOAUTH. Both mean "HELLO did not run": the client speaks RESP2.
    async with (
        triopipe.testing.redis_server(requirepass="pw", rename_command="HELLO ''") as server,
        triopipe.open_client(server.url, password="pw", db=1) as redis,
    ):
        assert redis.statistics().per_connection[0].protocol == 2
        await redis.set("k", "v")
        assert await redis.hgetall("nope") == {}
        assert (await redis.execute("CLIENT", "INFO")).count(b"db=1") == 1
        await redis.execute("ACL", "SETUSER", "alice", "on", ">wonder", "~*", "+@all")
        async with triopipe.open_client(f"redis://alice:wonder@127.0.0.1:{server.port}") as alice:
            assert alice.statistics().per_connection[0].protocol == 2
            assert await alice.execute("ACL", "WHOAMI") == b"alice"


@pytest.mark.parametrize("password", ["wrong", None])
async def test_resp2_fallback_still_refuses_bad_credentials(password: str | None) -> None:
    # Whatever HELLO's refusal looked like, a wrong password is refused at
    # connect. Without one, Valkey refuses HELLO itself and Redis the first
    # command (a RESP2 handshake without a password sends nothing).
    async with triopipe.testing.redis_server(
        requirepass="pw", rename_command="HELLO ''"
    ) as server:
        with pytest.raises(triopipe.AuthenticationError):
            async with triopipe.open_client(server.url, password=password) as redis:
                await redis.ping()


async def test_falls_back_to_resp2_when_hello_refuses_protocol_3() -> None:
    # No real server refuses protocol 3 (every one with HELLO speaks it), so
    # a fake one answers NOPROTO like Redis does for a protocol it lacks.
    refusal = b"-NOPROTO sorry, this protocol version is not supported.\r\n"
    async with (
        fake_server(hello=refusal) as server,
        triopipe.open_client(server.url, password="pw") as redis,
    ):
        assert redis.statistics().per_connection[0].protocol == 2
        assert await redis.ping() is True
        handshake = server.connections[0].commands[:2]
    assert handshake == [
        (b"HELLO", b"3", b"AUTH", b"default", b"pw"),
        (b"AUTH", b"pw"),
    ]


async def test_unix_socket(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("sock") / "redis.sock"
    async with (
        triopipe.testing.redis_server(unixsocket=str(path), unixsocketperm=700),
        triopipe.open_client(f"unix://{path}?db=2") as redis,
    ):
        await redis.set("k", "v")
        assert await redis.get("k") == b"v"
        assert (await redis.execute("CLIENT", "INFO")).count(b"db=2") == 1


async def test_push_frames_do_not_disturb_replies(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as other,
    ):
        # execute refuses CLIENT TRACKING on a shared connection (every caller
        # would get the invalidations); sent below the client, it makes the
        # server push frames on the very connection the commands below share.
        connection = redis.group.choose()
        assert await connection.call(encode_command(("CLIENT", "TRACKING", "ON")), 1) == b"OK"
        await redis.set("tracked", 1)
        assert await redis.get("tracked") == b"1"
        await other.set("tracked", 2)  # the server pushes an invalidation to `redis`
        for i in range(50):
            assert await redis.incr("counter") == i + 1
        assert await redis.get("tracked") == b"2"


async def test_unreachable_server_raises_connect_error(redis_server: RedisServer) -> None:
    url = redis_server.url
    await redis_server.stop()
    with pytest.raises(triopipe.ConnectError):
        async with triopipe.open_client(url, connect_timeout=2):
            pass  # pragma: no cover


async def test_body_errors_propagate_unwrapped(redis_url: str) -> None:
    with pytest.raises(KeyError):
        async with triopipe.open_client(redis_url):
            raise KeyError("mine")


async def test_closed_client_raises_closed_resource_error(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        pass
    with pytest.raises(anyio.ClosedResourceError):
        await redis.get("k")
    with pytest.raises(anyio.ClosedResourceError):
        await redis.execute_many([("PING",)])
    assert "closed" in repr(redis)


async def test_no_task_outlives_the_client(redis_url: str) -> None:
    async with triopipe.open_client(redis_url, connections=2) as redis:
        await redis.ping()

    # Leaving the block closed every socket: the server no longer lists it.
    async with triopipe.open_client(redis_url, client_name="watcher") as watcher:
        with anyio.fail_after(5):
            while True:
                listing = await watcher.execute("CLIENT", "LIST")
                if listing.count(b"\n") == 1:
                    break
                await anyio.sleep(0.01)
