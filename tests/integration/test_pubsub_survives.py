"""Subscriptions that survive a lost link, against real servers, on trio and asyncio.

- 1,000 messages published while the subscription link is killed twice: the
  subscription goes on by itself, reports each gap once, in its place, and
  receives every message published while it was subscribed, in order;
- a subscribe whose confirmation is lost with the link completes only once
  the resubscription is confirmed, and the next one does not hang;
- concurrent subscribe/unsubscribe calls each complete on their own
  confirmations;
- a server down for a while, a silent link found by the health check (RESP2
  and RESP3), ``on_gap="raise"``, and calls waiting when the block ends.
"""

from __future__ import annotations

import pickle
import time

import anyio
import pytest
from helpers import NumberedFeed

import triopipe
from triopipe.testing import redis_server, tcp_proxy

pytestmark = pytest.mark.usefixtures("anyio_backend")


async def _next(sub: triopipe.Subscription) -> triopipe.Message | triopipe.Gap:
    with anyio.fail_after(5):
        return await sub.__anext__()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_thousand_messages_across_two_kills(redis_url: str, protocol: int) -> None:
    total = 1000
    kills_at = (333, 666)  # killed just before publishing these
    feed = NumberedFeed()
    # (sequence number, when its PUBLISH was sent, receivers the server counted)
    published: list[tuple[int, float, int]] = []
    async with (
        triopipe.open_client(redis_url, protocol=protocol) as redis,
        triopipe.open_client(redis_url) as admin,
        redis.subscribe("feed") as sub,
    ):

        async def publish() -> None:
            for number in range(total):
                if number in kills_at:
                    assert await admin.execute("CLIENT", "KILL", "TYPE", "pubsub") == 1
                started = time.time()
                published.append((number, started, await admin.publish("feed", number)))
            while await admin.publish("feed", "end") == 0:  # once resubscribed
                await anyio.sleep(0.01)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(feed.consume, sub)
                task_group.start_soon(publish)

    # Each gap reported once, in its place: after the messages published
    # before its kill, before those published after.
    assert len(feed.gaps) == 2
    for (before, gap), kill in zip(feed.gaps, kills_at, strict=True):
        assert all(number < kill for number in feed.received[:before])
        assert all(number >= kill for number in feed.received[before:])
        assert gap.lost_at <= gap.resubscribed_at
        assert isinstance(gap.error, triopipe.ConnectionLostError)
    assert feed.received == sorted(set(feed.received))  # in order, none twice
    # Every message the server delivered to the subscription arrived...
    assert {n for n, _, receivers in published if receivers} <= set(feed.received)
    # ...including all those published after each resubscription, and there
    # were some: the subscription kept delivering without user code.
    ends = (*kills_at[1:], total)
    for (_, gap), end in zip(feed.gaps, ends, strict=True):
        after = {n for n, started, _ in published if started > gap.resubscribed_at and n < end}
        assert after
        assert after <= set(feed.received)
    assert all(number in feed.received for number in range(kills_at[0]))


async def test_a_subscribe_whose_confirmation_is_lost_completes_after_resubscription() -> None:
    async with (
        redis_server() as server,
        tcp_proxy(server.host, server.port) as proxy,
        triopipe.open_client(proxy.url) as redis,
        triopipe.open_client(server.url) as admin,
        redis.subscribe("a") as sub,
    ):
        returned = anyio.Event()

        async def subscribe_b() -> None:
            await sub.subscribe("b")
            returned.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                proxy.stall()  # SUBSCRIBE b is written but never reaches the server
                task_group.start_soon(subscribe_b)
                await anyio.sleep(0.2)
                assert not returned.is_set()
                assert sub.channels == {b"a"}
                proxy.reset()  # the link is lost before the confirmation came
            # It returned once the resubscription was confirmed, not before.
            assert sub.channels == {b"a", b"b"}
            assert isinstance(await _next(sub), triopipe.Gap)
            # The next call does not hang (its count of confirmations is its own).
            await sub.subscribe("c")
        assert sub.channels == {b"a", b"b", b"c"}
        for channel in ("a", "b", "c"):
            assert await admin.publish(channel, channel) == 1
            assert await _next(sub) == triopipe.Message(channel.encode(), channel.encode())


async def test_concurrent_calls_each_complete_on_their_own_confirmations(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url, decode=True) as redis,
        redis.subscribe() as sub,
    ):
        with anyio.fail_after(5):
            async with anyio.create_task_group() as task_group:
                for number in range(20):
                    task_group.start_soon(sub.subscribe, f"c{number}", "shared")
                    task_group.start_soon(sub.psubscribe, f"p{number}.*")
        assert sub.channels == {f"c{n}" for n in range(20)} | {"shared"}
        assert sub.patterns == {f"p{n}.*" for n in range(20)}

        async def unsubscribe_then_subscribe(number: int) -> None:
            await sub.unsubscribe(f"c{number}")
            assert f"c{number}" not in sub.channels
            await sub.subscribe(f"d{number}")
            assert f"d{number}" in sub.channels

        with anyio.fail_after(5):
            async with anyio.create_task_group() as task_group:
                for number in range(20):
                    task_group.start_soon(unsubscribe_then_subscribe, number)
        assert sub.channels == {f"d{n}" for n in range(20)} | {"shared"}
        await sub.unsubscribe()
        await sub.punsubscribe()
        assert sub.channels == sub.patterns == frozenset()


async def test_a_server_down_for_a_while_is_resubscribed_when_back() -> None:
    async with (
        redis_server() as server,
        triopipe.open_client(server.url) as redis,
        redis.subscribe("a", patterns=["p.*"]) as sub,
    ):
        await server.stop()
        with anyio.fail_after(5):
            while sub.channels:
                await anyio.sleep(0.01)
        assert sub.patterns == frozenset()  # only what the server confirmed

        async def subscribe_while_down() -> None:
            await sub.subscribe("b")
            assert b"b" in sub.channels

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(subscribe_while_down)
            await anyio.sleep(0.5)  # several attempts to reconnect fail
            await server.restart()
        gap = await _next(sub)
        assert isinstance(gap, triopipe.Gap)
        assert gap.resubscribed_at - gap.lost_at >= 0.5
        assert sub.channels == {b"a", b"b"}
        assert sub.patterns == {b"p.*"}
        assert await redis.publish("p.x", "1") == 1
        assert await _next(sub) == triopipe.Message(b"p.x", b"1", b"p.*")


@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_health_check_covers_subscription_links(protocol: int) -> None:
    interval = 0.2
    async with (
        redis_server() as server,
        tcp_proxy(server.host, server.port) as proxy,
        triopipe.open_client(
            proxy.url, protocol=protocol, health_check_interval=interval
        ) as redis,
        triopipe.open_client(server.url) as admin,
        redis.subscribe("hc") as sub,
    ):
        await anyio.sleep(interval * 4)  # probed while idle: the answers are no messages
        assert await admin.publish("hc", "alive") == 1
        assert await _next(sub) == triopipe.Message(b"hc", b"alive")
        proxy.blackhole()  # a silent cut: only the health check can tell
        started = time.monotonic()
        gap = await _next(sub)
        assert isinstance(gap, triopipe.Gap)
        assert "health check" in str(gap.error)
        assert time.monotonic() - started < 2 * interval + 1
        assert await admin.publish("hc", "back") == 1
        assert await _next(sub) == triopipe.Message(b"hc", b"back")


async def test_on_gap_raise_raises_and_iteration_goes_on(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as admin,
        redis.subscribe("news", on_gap="raise") as sub,
    ):
        await admin.execute("CLIENT", "KILL", "TYPE", "pubsub")
        with anyio.fail_after(5), pytest.raises(triopipe.MessagesLostError) as lost:
            await sub.__anext__()
        assert lost.value.lost_at <= lost.value.resubscribed_at
        assert isinstance(lost.value.__cause__, triopipe.ConnectionLostError)
        assert await admin.publish("news", "on") == 1
        assert await _next(sub) == triopipe.Message(b"news", b"on")


async def test_a_call_waiting_when_the_block_ends_raises() -> None:
    errors: list[BaseException] = []
    async with redis_server() as server, triopipe.open_client(server.url) as redis:

        async def subscribe_late(sub: triopipe.Subscription) -> None:
            try:
                await sub.subscribe("late")
            except anyio.ClosedResourceError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as task_group, redis.subscribe("a") as sub:
                await server.stop()
                while sub.channels:
                    await anyio.sleep(0.01)
                task_group.start_soon(subscribe_late, sub)
                await anyio.sleep(0.1)
        assert len(errors) == 1
        with pytest.raises(anyio.ClosedResourceError):
            await sub.subscribe("after")


async def test_bad_arguments_are_refused_before_anything_is_sent(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with pytest.raises(ValueError, match="on_gap must be 'yield' or 'raise', not 'skip'"):
            redis.subscribe("a", on_gap="skip")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be bytes or str, not int: 5"):
            redis.subscribe(5)  # type: ignore[arg-type]
        async with redis.subscribe("a") as sub:
            with pytest.raises(TypeError, match="not NoneType"):
                await sub.subscribe("b", None)
            assert sub.channels == {b"a"}


@pytest.mark.parametrize("protocol", [2, 3])
async def test_a_refused_subscribe_raises_and_leaves_the_others_alone(
    redis_url: str, protocol: int
) -> None:
    user = f"pubsub-{protocol}"
    async with triopipe.open_client(redis_url) as admin:
        await admin.execute("ACL", "SETUSER", user, "on", ">pw", "resetchannels", "&ok:*", "+@all")
        try:
            async with (
                triopipe.open_client(
                    redis_url, username=user, password="pw", protocol=protocol
                ) as redis,
                redis.subscribe("ok:1") as sub,
            ):
                # The second task's call completes on its own confirmation,
                # whatever the first one's fate.
                outcomes: dict[str, BaseException | None] = {}

                async def subscribe(name: str) -> None:
                    try:
                        await sub.subscribe(name)
                        outcomes[name] = None
                    except triopipe.ResponseError as exc:
                        outcomes[name] = exc

                with anyio.fail_after(5):
                    async with anyio.create_task_group() as task_group:
                        task_group.start_soon(subscribe, "forbidden")
                        task_group.start_soon(subscribe, "ok:2")
                assert isinstance(outcomes["forbidden"], triopipe.NoPermissionError)
                assert outcomes["ok:2"] is None
                assert sub.channels == {b"ok:1", b"ok:2"}
                assert await admin.publish("ok:2", "fine") == 1
                assert await _next(sub) == triopipe.Message(b"ok:2", b"fine")
        finally:
            await admin.execute("ACL", "DELUSER", user)


async def test_failed_reconnects_extend_one_gap() -> None:
    async with (
        redis_server() as server,
        tcp_proxy(server.host, server.port) as proxy,
        triopipe.open_client(proxy.url, connect_timeout=0.2) as redis,
        triopipe.open_client(server.url) as admin,
        redis.subscribe("a") as sub,
    ):
        proxy.blackhole_all()  # new connections too: every reconnect times out
        proxy.reset()
        started = time.time()
        await anyio.sleep(0.6)  # several links fail meanwhile
        assert sub.channels == frozenset()
        proxy.restore()
        gap = await _next(sub)
        assert isinstance(gap, triopipe.Gap)
        assert gap.resubscribed_at - gap.lost_at >= 0.6
        assert gap.lost_at - started < 0.3  # from the first loss, not the last
        assert proxy.connections >= 4  # the first link, failed reconnects, the last
        assert await admin.publish("a", "back") == 1
        assert await _next(sub) == triopipe.Message(b"a", b"back")
        # Exactly one gap: nothing else is waiting in the stream.
        with anyio.move_on_after(0.2):
            extra = await sub.__anext__()
            pytest.fail(f"unexpected {extra!r}")


async def test_a_call_cancelled_after_sending_still_takes_effect() -> None:
    async with (
        redis_server() as server,
        tcp_proxy(server.host, server.port) as proxy,
        triopipe.open_client(proxy.url) as redis,
        triopipe.open_client(server.url) as admin,
        redis.subscribe("a") as sub,
    ):
        proxy.stall()
        with anyio.move_on_after(0.2) as scope:
            await sub.subscribe("x")  # sent, never confirmed
        assert scope.cancelled_caught
        assert sub.channels == {b"a"}
        proxy.reset()
        assert isinstance(await _next(sub), triopipe.Gap)
        assert sub.channels == {b"a", b"x"}  # resubscribed with the rest
        assert await admin.publish("x", "yes") == 1
        assert await _next(sub) == triopipe.Message(b"x", b"yes")


def test_messages_lost_error_says_how_long_and_pickles() -> None:
    error = triopipe.MessagesLostError(100.0, 100.25)
    assert isinstance(error, triopipe.TriopipeError)
    assert "down for 0.250 s" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.lost_at, copy.resubscribed_at, str(copy)) == (100.0, 100.25, str(error))
