"""The timed code of every measurement, run inside a fresh child process.

Each function here takes a :class:`Context` (the servers the harness started,
the event loop to use and the workload's sizes), prepares its data untimed,
times only the workload itself with :func:`time.perf_counter`, checks that
the replies are right, and returns an :class:`Outcome`. Imports of the client
libraries happen inside the functions, so that a child loads only the library
it measures (which keeps B6's peak RSS about triopipe alone).

:data:`REGISTRY` maps the names that :mod:`benchmarks.plan` refers to onto
these functions (B8's, in :mod:`benchmarks.round_trips`, register here too).
Nothing here starts servers or processes of its own, except B1's
``redis-benchmark`` and B7's pump commands, which are external programs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ._raw import RawConnection, address_of, pack

__all__ = ["REGISTRY", "Context", "Outcome", "SkippedError"]

T = TypeVar("T")

#: B1's small value (16 bytes, like a short id or counter).
SMALL_VALUE = b"0123456789abcdef"


class SkippedError(Exception):
    """The measurement cannot run here (a missing feature or program); the message says why."""


@dataclasses.dataclass
class Outcome:
    """What one timed run produced.

    Attributes:
        seconds: wall time of the timed section.
        ops: operations done in it (commands, or input lines for B7).
        extra: anything else worth keeping in the JSON (client statistics, ...).
    """

    seconds: float
    ops: int
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Context:
    """What the harness hands a measurement.

    Attributes:
        urls: the throwaway servers started for this run (``redis://host:port``).
        backend: ``trio``, ``asyncio``, ``uvloop`` or ``sync``.
        params: the workload's sizes (see :mod:`benchmarks.plan`).
    """

    urls: tuple[str, ...]
    backend: str
    params: dict[str, Any]

    @property
    def url(self) -> str:
        return self.urls[0]

    def address(self, index: int = 0) -> tuple[str, int]:
        return address_of(self.urls[index])

    def run(self, main: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run ``main(*args)`` on this context's event loop."""
        if self.backend == "trio":
            import trio

            return trio.run(main, *args)
        if self.backend == "uvloop":
            import uvloop

            return uvloop.run(main(*args))
        if self.backend == "asyncio":
            return asyncio.run(main(*args))
        raise ValueError(f"not an async backend: {self.backend!r}")


Workload = Callable[[Context], Outcome]
REGISTRY: dict[str, Workload] = {}


def _register(function: Workload) -> Workload:
    REGISTRY[function.__name__] = function
    return function


def _expect(condition: bool, message: str) -> None:
    # Replies are checked after the clock stops: a fast wrong answer is no result.
    if not condition:
        raise AssertionError(message)


def _triopipe_statistics(client: Any) -> dict[str, int]:
    stats = client.statistics()
    return {"writes": stats.writes, "commands_written": stats.commands_written}


# -- B1 bulk: many small SETs ------------------------------------------------------------------


def _set_commands(count: int) -> Iterator[tuple[str, str, bytes]]:
    return (("SET", f"key:{i}", SMALL_VALUE) for i in range(count))


@_register
def b1_triopipe(ctx: Context) -> Outcome:
    import triopipe

    count = ctx.params["count"]

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:
            await redis.ping()
            start = time.perf_counter()
            replies = await redis.execute_many(_set_commands(count))
            seconds = time.perf_counter() - start
            _expect(len(replies) == count, f"{len(replies)} replies for {count} SETs")
            return Outcome(seconds, count, _triopipe_statistics(redis))

    return ctx.run(main)


@_register
def b1_redispy_pipeline(ctx: Context) -> Outcome:
    import redis

    count, window = ctx.params["count"], ctx.params["window"]
    host, port = ctx.address()
    client = redis.Redis(host=host, port=port)
    try:
        client.ping()
        pipe = client.pipeline(transaction=False)
        replies = 0
        start = time.perf_counter()
        for i in range(count):
            pipe.set(f"key:{i}", SMALL_VALUE)
            if (i + 1) % window == 0:
                replies += len(pipe.execute())
        if len(pipe):
            replies += len(pipe.execute())
        seconds = time.perf_counter() - start
    finally:
        client.close()
    _expect(replies == count, f"{replies} replies for {count} SETs")
    return Outcome(seconds, count)


@_register
def b1_raw_hiredis(ctx: Context) -> Outcome:
    count, window = ctx.params["count"], ctx.params["window"]
    with RawConnection(*ctx.address()) as connection:
        connection.execute("PING")
        start = time.perf_counter()
        for base in range(0, count, window):
            size = min(window, count - base)
            connection.send(
                b"".join(pack(("SET", f"key:{i}", SMALL_VALUE)) for i in range(base, base + size))
            )
            connection.drain(size)
        seconds = time.perf_counter() - start
        stored = connection.execute("DBSIZE")
    _expect(stored == count, f"DBSIZE is {stored} after {count} SETs")
    return Outcome(seconds, count)


@_register
def b1_redis_benchmark(ctx: Context) -> Outcome:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise SkippedError("redis-benchmark is not installed")
    count = ctx.params["count"]
    host, port = ctx.address()
    argv = [binary, "-h", host, "-p", str(port), "-P", "100", "-n", str(count)]
    argv += ["-t", "set", "-q"]
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    seconds = time.perf_counter() - start
    # "SET: 1012145.75 requests per second, p50=..." (progress lines end in \r)
    line = result.stdout.replace("\r", "\n").strip().splitlines()[-1]
    rate = float(line.split(":", 1)[1].split("requests", 1)[0])
    # Report redis-benchmark's own figure; the wall time includes its startup.
    return Outcome(count / rate, count, {"reported_rate": rate, "wall_seconds": seconds})


# -- B2 fan-in: many tasks, one client ------------------------------------------------------------

_B2_KEY = "fanin:key"


def _b2_prepare(ctx: Context) -> None:
    with RawConnection(*ctx.address()) as connection:
        connection.execute("SET", _B2_KEY, SMALL_VALUE)


async def _fan_in(tasks: int, per_task: int, get: Callable[[str], Any]) -> Outcome:
    import anyio

    wrong = 0

    async def worker() -> None:
        nonlocal wrong
        for _ in range(per_task):
            if await get(_B2_KEY) != SMALL_VALUE:
                wrong += 1

    start = time.perf_counter()
    async with anyio.create_task_group() as task_group:
        for _ in range(tasks):
            task_group.start_soon(worker)
    seconds = time.perf_counter() - start
    _expect(wrong == 0, f"{wrong} GETs returned a wrong value")
    return Outcome(seconds, tasks * per_task)


@_register
def b2_triopipe(ctx: Context) -> Outcome:
    import triopipe

    _b2_prepare(ctx)

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:
            await redis.get(_B2_KEY)
            outcome = await _fan_in(ctx.params["tasks"], ctx.params["per_task"], redis.get)
            outcome.extra = _triopipe_statistics(redis)
            return outcome

    return ctx.run(main)


@_register
def b2_probe(ctx: Context) -> Outcome:
    """The ceiling: the lean probe client of :mod:`benchmarks.probe` on the same loop."""
    from .probe import open_probe

    _b2_prepare(ctx)

    async def main() -> Outcome:
        async with open_probe(*ctx.address()) as probe:

            def get(key: str) -> Any:
                return probe.execute("GET", key)

            await get(_B2_KEY)
            return await _fan_in(ctx.params["tasks"], ctx.params["per_task"], get)

    return ctx.run(main)


@_register
def b2_redis_asyncio(ctx: Context) -> Outcome:
    import redis.asyncio

    _b2_prepare(ctx)
    host, port = ctx.address()

    async def main() -> Outcome:
        pool = redis.asyncio.BlockingConnectionPool(host=host, port=port, max_connections=50)
        client = redis.asyncio.Redis(connection_pool=pool)
        try:
            await client.get(_B2_KEY)
            return await _fan_in(ctx.params["tasks"], ctx.params["per_task"], client.get)
        finally:
            await client.aclose()
            await pool.disconnect()

    return ctx.run(main)


@_register
def b2_coredis(ctx: Context) -> Outcome:
    import coredis

    _b2_prepare(ctx)
    host, port = ctx.address()

    async def main() -> Outcome:
        # coredis' own pooled client with its defaults (a blocking pool of up to 64).
        async with coredis.Redis(host=host, port=port) as client:
            await client.get(_B2_KEY)
            return await _fan_in(ctx.params["tasks"], ctx.params["per_task"], client.get)

    return ctx.run(main)


@_register
def b2_glide(ctx: Context) -> Outcome:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    _b2_prepare(ctx)
    host, port = ctx.address()

    async def main() -> Outcome:
        config = GlideClientConfiguration([NodeAddress(host, port)])
        client = await GlideClient.create(config)
        try:
            await client.get(_B2_KEY)
            return await _fan_in(ctx.params["tasks"], ctx.params["per_task"], client.get)
        finally:
            await client.close()

    return ctx.run(main)


# -- B3 latency: sequential PINGs from one task ---------------------------------------------------

_WARMUP_PINGS = 200


@_register
def b3_triopipe(ctx: Context) -> Outcome:
    import triopipe

    count = ctx.params["count"]

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:
            for _ in range(_WARMUP_PINGS):
                await redis.ping()
            start = time.perf_counter()
            for _ in range(count):
                await redis.ping()
            return Outcome(time.perf_counter() - start, count, _triopipe_statistics(redis))

    return ctx.run(main)


@_register
def b3_redispy(ctx: Context) -> Outcome:
    import redis

    count = ctx.params["count"]
    host, port = ctx.address()
    client = redis.Redis(host=host, port=port)
    try:
        for _ in range(_WARMUP_PINGS):
            client.ping()
        start = time.perf_counter()
        for _ in range(count):
            client.ping()
        seconds = time.perf_counter() - start
    finally:
        client.close()
    return Outcome(seconds, count)


# -- B4 shards: server-bound SINTERs, on one server and over two ----------------------------------


def _pair_members(size: int, overlap: int) -> tuple[list[str], list[str]]:
    """Two sets of ``size`` members sharing ``overlap``: SINTER costs the server, not the reply."""
    first = [f"m:{i}" for i in range(size)]
    second = [f"m:{i}" for i in range(size - overlap, 2 * size - overlap)]
    return first, second


def _pair_keys(tag: str) -> tuple[str, str]:
    return f"{{{tag}}}s1", f"{{{tag}}}s2"


def _load_pair(url: str, tag: str, size: int, overlap: int) -> None:
    first, second = _pair_members(size, overlap)
    key1, key2 = _pair_keys(tag)
    with RawConnection.from_url(url) as connection:
        connection.add_set(key1, first)
        connection.add_set(key2, second)


def _sinters(tags: tuple[str, ...], count: int) -> list[tuple[str, str, str]]:
    """``count`` SINTERs, split evenly over the pairs of ``tags``, grouped pair by pair.

    Grouped, not interleaved: a server alternating between two pairs of
    100k-member sets runs each SINTER 2-3x slower than one working on one pair
    (the sets no longer stay in the CPU cache), which would make two servers
    look faster than one for the wrong reason. Grouped, one server sees the
    same sequence as the two servers together.
    """
    commands: list[tuple[str, str, str]] = []
    for index, tag in enumerate(tags):
        share = count // len(tags) + (1 if index < count % len(tags) else 0)
        commands += [("SINTER", *_pair_keys(tag))] * share
    return commands


def _check_sinter(replies: list[Any], count: int, overlap: int) -> None:
    _expect(len(replies) == count, f"{len(replies)} replies for {count} SINTERs")
    _expect(all(len(reply) == overlap for reply in replies), "a SINTER reply has the wrong size")


@_register
def b4_triopipe_one_server(ctx: Context) -> Outcome:
    import triopipe

    size, overlap, count = ctx.params["size"], ctx.params["overlap"], ctx.params["count"]
    for tag in ("a", "b"):
        _load_pair(ctx.url, tag, size, overlap)

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:
            await redis.ping()
            start = time.perf_counter()
            replies = await redis.execute_many(_sinters(("a", "b"), count))
            seconds = time.perf_counter() - start
        _check_sinter(replies, count, overlap)
        return Outcome(seconds, count)

    return ctx.run(main)


@_register
def b4_triopipe_two_clients(ctx: Context) -> Outcome:
    """Two plain clients driven in parallel by hand: what sharding could reach here."""
    import anyio

    import triopipe

    size, overlap, count = ctx.params["size"], ctx.params["overlap"], ctx.params["count"]
    _load_pair(ctx.urls[0], "a", size, overlap)
    _load_pair(ctx.urls[1], "b", size, overlap)
    halves = {"a": _sinters(("a",), (count + 1) // 2), "b": _sinters(("b",), count // 2)}

    async def main() -> Outcome:
        replies: list[Any] = []
        async with (
            triopipe.open_client(ctx.urls[0]) as first,
            triopipe.open_client(ctx.urls[1]) as second,
        ):
            await first.ping()
            await second.ping()

            async def run(client: Any, commands: list[tuple[str, str, str]]) -> None:
                replies.extend(await client.execute_many(commands))

            start = time.perf_counter()
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(run, first, halves["a"])
                task_group.start_soon(run, second, halves["b"])
            seconds = time.perf_counter() - start
        _check_sinter(replies, count, overlap)
        return Outcome(seconds, count)

    return ctx.run(main)


def _split_tags(shard_for: Callable[[str], str]) -> tuple[str, str]:
    """Two hash tags whose set pairs land on different shards ("a" and "b" if they do)."""
    candidates = ["a", "b", *(f"t{i}" for i in range(1000))]
    first = candidates[0]
    home = shard_for(_pair_keys(first)[0])
    for tag in candidates[1:]:
        if shard_for(_pair_keys(tag)[0]) != home:
            return first, tag
    raise SkippedError("no two hash tags found on different shards")


@_register
def b4_triopipe_sharded(ctx: Context) -> Outcome:
    import triopipe

    open_sharded_client = getattr(triopipe, "open_sharded_client", None)
    if open_sharded_client is None:
        raise SkippedError("triopipe.open_sharded_client is not available yet")
    size, overlap, count = ctx.params["size"], ctx.params["overlap"], ctx.params["count"]

    async def main() -> Outcome:
        async with open_sharded_client(list(ctx.urls)) as redis:
            tags = _split_tags(redis.shard_for)
            for tag in tags:
                # Load each pair through a plain socket onto the shard that owns it.
                _load_pair(redis.shard_for(_pair_keys(tag)[0]), tag, size, overlap)
            await redis.ping()
            start = time.perf_counter()
            replies = await redis.execute_many(_sinters(tags, count))
            seconds = time.perf_counter() - start
        _check_sinter(replies, count, overlap)
        return Outcome(seconds, count, {"tags": list(tags)})

    return ctx.run(main)


@_register
def b4_redispy_one_server(ctx: Context) -> Outcome:
    import redis

    size, overlap, count = ctx.params["size"], ctx.params["overlap"], ctx.params["count"]
    for tag in ("a", "b"):
        _load_pair(ctx.url, tag, size, overlap)
    host, port = ctx.address()
    client = redis.Redis(host=host, port=port)
    try:
        client.ping()
        start = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for command in _sinters(("a", "b"), count):
            pipe.sinter(list(command[1:]))
        replies = pipe.execute()
        seconds = time.perf_counter() - start
    finally:
        client.close()
    _check_sinter(replies, count, overlap)
    return Outcome(seconds, count)


@_register
def b4_redispy_shards_sequential(ctx: Context) -> Outcome:
    """redis-py has no sharding: one pipeline per shard, executed one after the other."""
    import redis

    size, overlap, count = ctx.params["size"], ctx.params["overlap"], ctx.params["count"]
    _load_pair(ctx.urls[0], "a", size, overlap)
    _load_pair(ctx.urls[1], "b", size, overlap)
    clients = [redis.Redis(*ctx.address(index)) for index in range(2)]
    work = [
        (clients[0], _sinters(("a",), (count + 1) // 2)),
        (clients[1], _sinters(("b",), count // 2)),
    ]
    replies: list[Any] = []
    try:
        for client in clients:
            client.ping()
        start = time.perf_counter()
        for client, commands in work:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.sinter(list(command[1:]))
            replies.extend(pipe.execute())
        seconds = time.perf_counter() - start
    finally:
        for client in clients:
            client.close()
    _check_sinter(replies, count, overlap)
    return Outcome(seconds, count)


# -- B4 replies: big array replies, parsing-bound -------------------------------------------------

_UNION_KEYS = ("{u}1", "{u}2")


def _b4_replies_prepare(ctx: Context) -> int:
    size: int = ctx.params["size"]
    with RawConnection(*ctx.address()) as connection:
        connection.add_set(_UNION_KEYS[0], [f"a:{i}" for i in range(size)])
        connection.add_set(_UNION_KEYS[1], [f"b:{i}" for i in range(size)])
    return 2 * size


def _check_unions(replies: list[Any], count: int, members: int) -> None:
    _expect(len(replies) == count, f"{len(replies)} replies for {count} SUNIONs")
    _expect(all(len(reply) == members for reply in replies), "a SUNION reply has the wrong size")


@_register
def b4_replies_triopipe(ctx: Context) -> Outcome:
    import triopipe

    members = _b4_replies_prepare(ctx)
    count = ctx.params["count"]

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:
            await redis.ping()
            start = time.perf_counter()
            replies = await redis.execute_many([("SUNION", *_UNION_KEYS)] * count)
            seconds = time.perf_counter() - start
        _check_unions(replies, count, members)
        return Outcome(seconds, count)

    return ctx.run(main)


@_register
def b4_replies_redispy(ctx: Context) -> Outcome:
    import redis

    members = _b4_replies_prepare(ctx)
    count = ctx.params["count"]
    client = redis.Redis(*ctx.address())
    try:
        client.ping()
        start = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for _ in range(count):
            pipe.sunion(list(_UNION_KEYS))
        replies = pipe.execute()
        seconds = time.perf_counter() - start
    finally:
        client.close()
    _check_unions(replies, count, members)
    return Outcome(seconds, count)


@_register
def b4_replies_raw(ctx: Context) -> Outcome:
    """The ceiling: the same SUNIONs in one write on a blocking socket, parsed by hiredis."""
    members = _b4_replies_prepare(ctx)
    count = ctx.params["count"]
    with RawConnection(*ctx.address()) as connection:
        connection.execute("PING")
        start = time.perf_counter()
        connection.send(pack(("SUNION", *_UNION_KEYS)) * count)
        replies = connection.read(count)
        seconds = time.perf_counter() - start
    _check_unions(replies, count, members)
    return Outcome(seconds, count)


# -- B5 big values --------------------------------------------------------------------------------


def _big_value(ctx: Context) -> bytes:
    return os.urandom(ctx.params["size"])


def _check_big(replies: list[Any], value: bytes) -> None:
    _expect(all(reply == value for reply in replies), "a GET returned a wrong big value")


def _big_outcome(seconds: float, count: int, size: int) -> Outcome:
    moved = 2 * count * size
    return Outcome(seconds, 2 * count, {"mib_per_s": moved / seconds / 2**20})


@_register
def b5_triopipe_execute_many(ctx: Context) -> Outcome:
    import triopipe

    count, value = ctx.params["count"], _big_value(ctx)

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:
            await redis.ping()
            start = time.perf_counter()
            await redis.execute_many([("SET", f"big:{i}", value) for i in range(count)])
            replies = await redis.execute_many([("GET", f"big:{i}") for i in range(count)])
            seconds = time.perf_counter() - start
        _check_big(replies, value)
        return _big_outcome(seconds, count, len(value))

    return ctx.run(main)


@_register
def b5_triopipe_sequential(ctx: Context) -> Outcome:
    import triopipe

    count, value = ctx.params["count"], _big_value(ctx)

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:
            await redis.ping()
            start = time.perf_counter()
            for i in range(count):
                await redis.set(f"big:{i}", value)
            replies = [await redis.get(f"big:{i}") for i in range(count)]
            seconds = time.perf_counter() - start
        _check_big(replies, value)
        return _big_outcome(seconds, count, len(value))

    return ctx.run(main)


@_register
def b5_redispy_pipeline(ctx: Context) -> Outcome:
    import redis

    count, value = ctx.params["count"], _big_value(ctx)
    client = redis.Redis(*ctx.address())
    try:
        client.ping()
        start = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            pipe.set(f"big:{i}", value)
        pipe.execute()
        for i in range(count):
            pipe.get(f"big:{i}")
        replies = pipe.execute()
        seconds = time.perf_counter() - start
    finally:
        client.close()
    _check_big(replies, value)
    return _big_outcome(seconds, count, len(value))


@_register
def b5_redispy_sequential(ctx: Context) -> Outcome:
    import redis

    count, value = ctx.params["count"], _big_value(ctx)
    client = redis.Redis(*ctx.address())
    try:
        client.ping()
        start = time.perf_counter()
        for i in range(count):
            client.set(f"big:{i}", value)
        replies = [client.get(f"big:{i}") for i in range(count)]
        seconds = time.perf_counter() - start
    finally:
        client.close()
    _check_big(replies, value)
    return _big_outcome(seconds, count, len(value))


# -- B6 memory: a huge generator through pump, replies not kept ----------------------------------


@_register
def b6_triopipe(ctx: Context) -> Outcome:
    import triopipe

    from .run_one import peak_rss_mib

    count = ctx.params["count"]

    async def main() -> Outcome:
        async with triopipe.open_client(ctx.url) as redis:
            await redis.ping()
            rss_before = peak_rss_mib()
            # One key for every SET: the dataset stays tiny, only buffers could grow.
            start = time.perf_counter()
            report = await redis.pump(("SET", "k", i) for i in range(count))
            seconds = time.perf_counter() - start
            last = await redis.get("k")
        _expect(
            report.commands == report.acknowledged == count,
            f"{report} for {count} SETs",
        )
        _expect(last == str(count - 1).encode(), f"k is {last!r} after {count} SETs")
        return Outcome(seconds, count, {"rss_before_mib": rss_before})

    return ctx.run(main)


# -- B7 pump: mass insertion from a file ----------------------------------------------------------


def _write_pump_input(directory: Path, count: int, form: str) -> Path:
    path = directory / f"input.{form}"
    with path.open("wb") as file:
        for base in range(0, count, 10_000):
            end = min(count, base + 10_000)
            if form == "resp":
                chunk = b"".join(pack(("SET", f"key:{i}", SMALL_VALUE)) for i in range(base, end))
            else:
                value = SMALL_VALUE.decode()
                chunk = "".join(f"SET key:{i} {value}\n" for i in range(base, end)).encode()
            file.write(chunk)
    return path


def _compile_triopipe() -> None:
    """Write triopipe's bytecode, as installing a wheel does.

    Without it a run under ``PYTHONDONTWRITEBYTECODE`` (or from a read-only
    checkout) compiles the whole package every time: about 0.2 s that no
    installed copy pays.
    """
    import triopipe

    package = Path(triopipe.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def _stored(ctx: Context) -> int:
    """Keys on every server of the run."""
    total = 0
    for index in range(len(ctx.urls)):
        with RawConnection(*ctx.address(index)) as connection:
            total += connection.execute("DBSIZE")
    return total


def _timed_pump(argv: list[str], source: Path, count: int, ctx: Context) -> Outcome:
    with source.open("rb") as stdin:
        start = time.perf_counter()
        result = subprocess.run(argv, stdin=stdin, capture_output=True, timeout=600, check=False)
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{argv[0]} exited with {result.returncode}: {' / '.join(tail)}")
    stored = _stored(ctx)
    _expect(stored == count, f"DBSIZE is {stored} after pumping {count} SETs")
    # The largest process this one waited for: the pump (or redis-cli).
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return Outcome(seconds, count, {"child_peak_rss_mib": peak})


def pump_available() -> bool:
    """Whether the installed triopipe has a ``pump`` command (``python -m triopipe pump``)."""
    result = subprocess.run(
        [sys.executable, "-m", "triopipe", "pump", "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


@_register
def b7_redis_cli_pipe(ctx: Context) -> Outcome:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise SkippedError("redis-cli is not installed")
    host, port = ctx.address()
    with tempfile.TemporaryDirectory(prefix="triopipe-bench-") as directory:
        source = _write_pump_input(Path(directory), ctx.params["count"], "resp")
        argv = [binary, "-h", host, "-p", str(port), "--pipe"]
        return _timed_pump(argv, source, ctx.params["count"], ctx)


@_register
def b7_triopipe_pump(ctx: Context) -> Outcome:
    if not pump_available():
        raise SkippedError("needs `triopipe pump` (not built yet)")
    _compile_triopipe()
    form = ctx.params["form"]
    # B7 workers: the same lines into every server of the run as shards.
    workers = ctx.params.get("workers")
    with tempfile.TemporaryDirectory(prefix="triopipe-bench-") as directory:
        source = _write_pump_input(Path(directory), ctx.params["count"], form)
        argv = [sys.executable, "-m", "triopipe", "pump", "--quiet"]
        if workers is None:
            argv += ["--url", ctx.url, "-"]
        else:
            # --workers reads a file (each worker reads all of it), not stdin.
            argv += ["--shards", *ctx.urls, "--workers", str(workers), str(source)]
        return _timed_pump(argv, source, ctx.params["count"], ctx)
