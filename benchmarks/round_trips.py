"""B8's timed code: bulk and sequential work over a link with real round trips.

The harness (:mod:`benchmarks.runner`, through :mod:`benchmarks.link`) puts
the server behind a delay; the functions here only see the URL to connect to.
Each measures one client doing one ``shape`` of work:

- ``bulk_set``: ``count`` small ``SET`` of distinct keys (small replies);
- ``bulk_get``: ``count`` ``GET`` of one 4 KiB value (4 KiB replies);
- ``sequential``: ``count`` ``GET`` one after another, each awaited.

Pipelining clients get the commands as their bulk API takes them: triopipe's
``pump``, 10k-command pipelines (``batch``) for redis-py, redis.asyncio,
coredis and valkey-glide's non-atomic ``Batch``; the raw socket keeps
``window`` commands in flight (:meth:`RawConnection.run_window`).

The bulk jobs keep no reply, with every client: each reply is checked as its
batch (or window, or read) comes in, then dropped, as a job that streams
values through would do. Kept, 50,000 replies of 4 KiB are 200 MB of fresh
memory, and the page faults of touching it cost every client alike (the raw
socket itself ran at half its speed keeping them with no added delay, 4-20%
slower at 1 ms); a ceiling that dropped its replies while the clients kept
theirs would compare different jobs. Command lists are built before the clock
starts. B8's fan-in reuses B2's functions of :mod:`benchmarks.workloads`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from ._raw import RawConnection, pack
from .workloads import SMALL_VALUE, Context, Outcome, _expect, _register

__all__ = ["SHAPES"]

#: The shapes of work every B8 function accepts as ``params["shape"]``.
SHAPES = ("bulk_set", "bulk_get", "sequential")

_BIG_KEY = "b8:big"
_BIG_SIZE = 4096
_SMALL_KEY = "b8:small"
_SET_DONE = (b"OK", "OK", True)

Command = tuple[str, ...] | tuple[str, str, bytes]


class _Work:
    """One shape of work: its commands, made and loaded untimed, and the check of its result."""

    def __init__(self, ctx: Context) -> None:
        self.shape: str = ctx.params["shape"]
        if self.shape not in SHAPES:
            raise ValueError(f"B8 shape must be one of {', '.join(SHAPES)}; got {self.shape!r}")
        self.count: int = ctx.params["count"]
        self.batch: int = ctx.params.get("batch", 10_000)
        self._address = ctx.address()
        self.value = os.urandom(_BIG_SIZE) if self.shape == "bulk_get" else SMALL_VALUE
        with RawConnection(*self._address) as connection:
            connection.execute(
                "SET", _BIG_KEY if self.shape == "bulk_get" else _SMALL_KEY, self.value
            )
        self.commands: list[Command] = (
            [("set", f"key:{i}", SMALL_VALUE) for i in range(self.count)]
            if self.shape == "bulk_set"
            else [("get", _BIG_KEY)] * self.count
        )
        # Replies checked so far (see take), and how many of them were wrong.
        self.replies = self.wrong = 0

    def chunks(self) -> Iterator[list[Command]]:
        for start in range(0, self.count, self.batch):
            yield self.commands[start : start + self.batch]

    def take(self, replies: list[Any]) -> None:
        """Check a batch of bulk replies as it comes in, and keep none of them."""
        self.replies += len(replies)
        if self.shape == "bulk_set":
            # +OK, as each client gives it (redis-py says True).
            self.wrong += sum(reply not in _SET_DONE for reply in replies)
        else:
            self.wrong += sum(reply != self.value for reply in replies)

    def check(self) -> None:
        """Every reply in and right; the keys all written (bulk SET)."""
        _expect(self.wrong == 0, f"{self.wrong} replies were wrong")
        _expect(self.replies == self.count, f"{self.replies} replies for {self.count} commands")
        if self.shape == "bulk_set":
            with RawConnection(*self._address) as connection:
                stored = connection.execute("DBSIZE") - 1  # less the SET of the setup
            _expect(stored == self.count, f"{stored} keys after {self.count} SETs")


def _queue(pipeline: Any, chunk: list[Command]) -> None:
    """Add ``chunk`` to a client's pipeline (or batch) through its typed ``set``/``get``."""
    for name, *args in chunk:
        getattr(pipeline, name)(*args)


async def _timed(
    work: _Work,
    bulk: Callable[[list[Command]], Awaitable[None]],
    get: Callable[[str], Awaitable[Any]],
) -> Outcome:
    """Run ``work`` with an async client's ``bulk`` call per chunk (which hands
    its replies to ``work.take``), or its ``get`` per command."""
    start = time.perf_counter()
    if work.shape == "sequential":
        for _ in range(work.count):
            work.take([await get(_SMALL_KEY)])
    else:
        for chunk in work.chunks():
            await bulk(chunk)
    seconds = time.perf_counter() - start
    work.check()
    return Outcome(seconds, work.count)


@_register
def b8_triopipe(ctx: Context) -> Outcome:
    import triopipe

    work = _Work(ctx)
    work.batch = work.count  # one call: triopipe windows the whole job itself

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:

            async def bulk(chunk: list[Command]) -> None:
                # pump keeps no reply: it hands each request's replies on as they come.
                report = await redis.pump(chunk, on_outcomes=lambda _, replies: work.take(replies))
                _expect(report.acknowledged == len(chunk), f"pump: {report}")

            await redis.ping()
            outcome = await _timed(work, bulk, redis.get)
            outcome.extra = {"writes": redis.statistics().writes}
            return outcome

    return ctx.run(main)


@_register
def b8_redis_asyncio(ctx: Context) -> Outcome:
    import redis.asyncio

    work = _Work(ctx)
    host, port = ctx.address()

    async def main() -> Outcome:
        client = redis.asyncio.Redis(host=host, port=port)

        async def bulk(chunk: list[Command]) -> None:
            pipe = client.pipeline(transaction=False)
            _queue(pipe, chunk)
            work.take(await pipe.execute())

        try:
            await client.ping()
            return await _timed(work, bulk, client.get)
        finally:
            await client.aclose()

    return ctx.run(main)


@_register
def b8_coredis(ctx: Context) -> Outcome:
    import coredis

    work = _Work(ctx)
    host, port = ctx.address()

    async def main() -> Outcome:
        async with coredis.Redis(host=host, port=port) as client:

            async def bulk(chunk: list[Command]) -> None:
                async with client.pipeline(transaction=False) as pipe:
                    _queue(pipe, chunk)
                work.take(list(pipe.results or ()))

            await client.ping()
            return await _timed(work, bulk, client.get)

    return ctx.run(main)


@contextlib.asynccontextmanager
async def _glide_client(host: str, port: int) -> AsyncIterator[Any]:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    # A 10k batch of 4 KiB replies takes longer than glide's default timeout (250 ms).
    config = GlideClientConfiguration([NodeAddress(host, port)], request_timeout=60_000)
    client = await GlideClient.create(config)
    try:
        yield client
    finally:
        await client.close()


@_register
def b8_glide(ctx: Context) -> Outcome:
    from glide import Batch

    work = _Work(ctx)

    async def main() -> Outcome:
        async with _glide_client(*ctx.address()) as client:

            async def bulk(chunk: list[Command]) -> None:
                batch = Batch(is_atomic=False)
                _queue(batch, chunk)
                work.take(list(await client.exec(batch, raise_on_error=True) or ()))

            await client.get(_SMALL_KEY)
            return await _timed(work, bulk, client.get)

    return ctx.run(main)


@_register
def b8_redispy(ctx: Context) -> Outcome:
    import redis

    work = _Work(ctx)
    client = redis.Redis(*ctx.address())
    try:
        client.ping()
        start = time.perf_counter()
        if work.shape == "sequential":
            for _ in range(work.count):
                work.take([client.get(_SMALL_KEY)])
        else:
            for chunk in work.chunks():
                pipe = client.pipeline(transaction=False)
                _queue(pipe, chunk)
                work.take(pipe.execute())
        seconds = time.perf_counter() - start
    finally:
        client.close()
    work.check()
    return Outcome(seconds, work.count)


@_register
def b8_raw(ctx: Context) -> Outcome:
    """The ceiling: a blocking socket, ``window`` commands in flight, hiredis parsing."""
    work = _Work(ctx)
    window: int = ctx.params.get("window", 1)  # sequential work has none
    with RawConnection(*ctx.address()) as connection:
        connection.execute("PING")
        start = time.perf_counter()
        if work.shape == "sequential":
            for _ in range(work.count):
                work.take([connection.execute("GET", _SMALL_KEY)])
        else:
            connection.run_window((pack(c) for c in work.commands), window, work.take)
        seconds = time.perf_counter() - start
    work.check()
    return Outcome(seconds, work.count, {"window": window})
