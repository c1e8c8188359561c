"""``pump``: any number of commands, no reply kept, every outcome counted."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Control

import triopipe


async def test_pump_counts_every_outcome_and_keeps_nothing(redis_url: str) -> None:
    seen: list[tuple[int, int]] = []
    errors: list[tuple[int, Any]] = []

    def on_outcomes(first: int, outcomes: list[Any]) -> None:
        seen.append((first, len(outcomes)))
        errors.extend((first + i, o) for i, o in enumerate(outcomes) if isinstance(o, Exception))

    def commands() -> Any:
        for i in range(20_000):
            yield ("LPUSH", "string", 1) if i == 777 else ("SET", f"key:{i}", i)

    async with triopipe.open_client(redis_url) as redis:
        await redis.set("string", "x")
        report = await redis.pump(commands(), on_outcomes=on_outcomes)
    assert report == triopipe.PumpReport(
        commands=20_000, acknowledged=19_999, errors=1, unknown=0, not_sent=0
    )
    assert [index for index, _ in errors] == [777]
    assert isinstance(errors[0][1], triopipe.WrongTypeError)
    # Outcomes come in order, each command once.
    assert [first for first, _ in seen] == sorted(first for first, _ in seen)
    assert sum(count for _, count in seen) == 20_000
    assert Control(redis_url).dbsize() == 19_999 + 1


async def test_pump_refuses_bad_input_before_sending_its_window(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        with pytest.raises(TypeError, match="command #3"):
            await redis.pump(
                [("SET", "a", 1), ("SET", "b", 2), ("SET", "c", 3), ("SET", "d", None)]
            )
        assert await redis.dbsize() == 0


async def test_pump_over_shards_keeps_each_keys_order(redis_shard_urls: list[str]) -> None:
    async with triopipe.open_sharded_client(redis_shard_urls) as redis:
        commands = [("INCR", f"counter:{i % 50}") for i in range(120_000)]
        report = await redis.pump(commands)
        assert report.acknowledged == 120_000
        values = await redis.mget([f"counter:{i}" for i in range(50)])
        assert values == [b"2400"] * 50
