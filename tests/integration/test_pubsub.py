"""Pub/Sub and scripts against a real server, on trio and asyncio."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import anyio
import pytest

import triopipe

pytestmark = pytest.mark.usefixtures("anyio_backend")


@pytest.mark.parametrize("protocol", [2, 3])
async def test_subscribe_receives_messages_and_patterns(redis_url: str, protocol: int) -> None:
    async with (
        triopipe.open_client(redis_url, protocol=protocol) as redis,
        redis.subscribe("news", patterns=["alerts.*"]) as sub,
    ):
        assert sub.channels == {b"news"}
        assert sub.patterns == {b"alerts.*"}
        # subscribe() returned after the server confirmed: nothing is missed.
        assert await redis.publish("news", "hello") == 1
        assert await redis.publish("alerts.fire", "run") == 1
        assert await redis.publish("elsewhere", "nobody") == 0
        with anyio.fail_after(5):
            first = await sub.__anext__()
            second = await sub.__anext__()
        assert first == triopipe.Message(b"news", b"hello", None)
        assert second == triopipe.Message(b"alerts.fire", b"run", b"alerts.*")
        # The shared connection kept working beside the subscription.
        assert await redis.ping() is True


async def test_subscription_changes_inside_the_block(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url, decode=True) as redis,
        redis.subscribe("a") as sub,
    ):
        await sub.subscribe("b")
        await sub.unsubscribe("a")
        assert sub.channels == {"b"}
        assert await redis.publish("a", "x") == 0
        assert await redis.publish("b", "y") == 1
        received = []
        with anyio.fail_after(5):
            async for message in sub:
                received.append(message)
                break
        assert received == [triopipe.Message("b", "y")]


async def test_a_broken_subscription_reports_a_gap_and_goes_on(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as admin,
        redis.subscribe("news") as sub,
    ):
        before = time.time()
        await admin.execute("CLIENT", "KILL", "TYPE", "pubsub")
        with anyio.fail_after(5):
            gap = await sub.__anext__()
        assert isinstance(gap, triopipe.Gap)
        assert before <= gap.lost_at <= gap.resubscribed_at <= time.time()
        assert isinstance(gap.error, triopipe.ConnectionLostError)
        assert sub.channels == {b"news"}
        assert await redis.publish("news", "after") == 1
        with anyio.fail_after(5):
            assert await sub.__anext__() == triopipe.Message(b"news", b"after")


async def test_subscribe_refused_by_execute(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with pytest.raises(ValueError, match="subscribe"):
            await redis.execute("SUBSCRIBE", "x")


async def test_register_script_uses_evalsha_with_fallback(redis_url: str) -> None:
    async with (
        triopipe.open_client(redis_url) as redis,
        triopipe.open_client(redis_url) as admin,
    ):
        script = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        assert len(script.sha) == 40
        assert await script(keys=["n"], args=[5]) == 5  # NOSCRIPT -> EVAL
        assert await script(keys=["n"], args=[2]) == 7  # EVALSHA now
        assert await admin.execute("SCRIPT", "EXISTS", script.sha) == [1]
        await admin.execute("SCRIPT", "FLUSH")
        assert await script(keys=["n"], args=[1]) == 8
        failing = redis.register_script("return redis.call('LPUSH', KEYS[1], 1)")
        with pytest.raises(triopipe.WrongTypeError):
            await failing(keys=["n"])


async def test_the_pubsub_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).parents[2] / "examples" / "pubsub.py"
    spec = importlib.util.spec_from_file_location("pubsub_example", path)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with anyio.fail_after(20):
        await example.main()
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("gap: the link was down") for line in lines) == 1
    assert lines[-1] == "alerts.done (matched alerts.*): bye"
    assert "ticks: 39" in lines
