"""Cancellation never hands a reply to the wrong caller, never desynchronises.

Every command here is an ``ECHO`` of a token unique to its caller, so a reply
delivered to the wrong caller cannot go unnoticed.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import triopipe

pytestmark = pytest.mark.usefixtures("anyio_backend")

SEED = int(os.environ.get("TRIOPIPE_STRESS_SEED", "20261121"))
TRIALS = int(os.environ.get("TRIOPIPE_STRESS_TRIALS", "3000"))
CONCURRENCY = 64


async def _settle(redis: triopipe.Client) -> None:
    """Wait until every abandoned reply has been read and dropped."""
    with anyio.fail_after(10):
        while redis.statistics().commands_in_flight:
            await anyio.sleep(0.01)


async def _echo_single(redis: triopipe.Client, token: str, size: int) -> bool:
    return await redis.execute("ECHO", token) == token.encode()


async def _echo_many(redis: triopipe.Client, token: str, size: int) -> bool:
    tokens = [f"{token}:{i}:" + "x" * (i * 7 % 2000) for i in range(size)]
    replies = await redis.execute_many([("ECHO", t) for t in tokens])
    return replies == [t.encode() for t in tokens]


async def _echo_batch(redis: triopipe.Client, token: str, size: int) -> bool:
    tokens = [f"{token}:{i}" for i in range(size)]
    async with redis.batch() as batch:
        pendings = []
        for i, t in enumerate(tokens):
            pendings.append(batch.execute("ECHO", t))
            if i % 7 == 6:
                await anyio.lowlevel.checkpoint()
    return [p.result() for p in pendings] == [t.encode() for t in tokens]


OPERATIONS: dict[str, Callable[[triopipe.Client, str, int], Awaitable[bool]]] = {
    "single": _echo_single,
    "many": _echo_many,
    "batch": _echo_batch,
}


def _draw_delay(rng: random.Random) -> float:
    """0: cancelled before starting; else a deadline somewhere in flight."""
    draw = rng.random()
    if draw < 0.1:
        return 0.0
    if draw < 0.55:
        return rng.uniform(0, 0.002)
    return rng.uniform(0, 0.05)


async def test_seeded_cancellation_storm(redis_url: str) -> None:
    rng = random.Random(SEED)
    # The plan is drawn up front, so a seed always means the same storm.
    plan = [
        (
            rng.choice(list(OPERATIONS)),
            rng.randint(1, 300),
            _draw_delay(rng),
        )
        for _ in range(TRIALS)
    ]
    tally: Counter[str] = Counter()
    limiter = anyio.Semaphore(CONCURRENCY)
    async with triopipe.open_client(redis_url, connections=2) as redis:

        async def trial(index: int, kind: str, size: int, delay: float) -> None:
            async with limiter:
                with anyio.move_on_after(delay) as scope:
                    if delay == 0.0:
                        scope.cancel()
                    right = await OPERATIONS[kind](redis, f"t{index}", size)
                    tally["right" if right else "WRONG"] += 1
                if scope.cancelled_caught:
                    tally["cancelled"] += 1

        async with anyio.create_task_group() as task_group:
            for index, (kind, size, delay) in enumerate(plan):
                task_group.start_soon(trial, index, kind, size, delay)

        await _settle(redis)
        stats = redis.statistics()
        assert tally["WRONG"] == 0
        assert tally["right"] + tally["cancelled"] == TRIALS
        # Cancellations landed at every stage, and many calls completed too.
        assert tally["cancelled"] > TRIALS // 10
        assert tally["right"] > TRIALS // 10
        # Cancelling never broke or desynchronised a connection.
        assert stats.connects == 2
        assert stats.commands_in_flight == 0
        assert await redis.execute("ECHO", "still in step") == b"still in step"
        print(f"storm seed={SEED}: {dict(tally)}")


async def _call_in(
    scope: anyio.CancelScope, result: list[Any], redis: triopipe.Client, kind: str, token: str
) -> None:
    with scope:
        result.append(await OPERATIONS[kind](redis, token, 50))


async def _cancel_after(scope: anyio.CancelScope, steps: int) -> None:
    for _ in range(steps):
        await anyio.lowlevel.checkpoint()
    scope.cancel()


@pytest.mark.parametrize("kind", list(OPERATIONS))
async def test_cancel_at_every_checkpoint_of_a_command(redis_url: str, kind: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        outcomes: list[str] = []
        steps = 0
        # Cancel after 0, 1, 2, ... scheduler steps, until the call completes
        # first: every point of its life (queued, written, awaiting the
        # reply, replies half read, reply arrived) gets a cancellation.
        while True:
            result: list[Any] = []
            scope = anyio.CancelScope()
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_call_in, scope, result, redis, kind, f"step{steps}")
                task_group.start_soon(_cancel_after, scope, steps)
            if result:
                assert result == [True]
                outcomes.append("completed")
            else:
                outcomes.append("cancelled")
            # The connection is in step after every cancellation.
            assert await redis.execute("ECHO", f"after{steps}") == f"after{steps}".encode()
            steps += 1
            if outcomes[-3:] == ["completed"] * 3 or steps > 500:
                break
        assert outcomes[0] == "cancelled"
        assert "completed" in outcomes
        await _settle(redis)
        assert redis.statistics().connects == 1
