"""What to measure: the workloads B1-B8 of ``BENCHMARKS.md`` as measurements and comparisons.

A :class:`Measurement` is one client doing one workload on one event loop;
it names the function of :mod:`benchmarks.workloads` that does the timed work
and the sizes it gets. A :class:`Comparison` is one line of the results
table: a ratio between two measurements (or one measurement against an
absolute limit) and the target it must meet. :func:`build_plan` makes both
lists for a command line's choices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "BACKENDS",
    "WORKLOADS",
    "Comparison",
    "Measurement",
    "Plan",
    "build_plan",
    "sizes",
]

#: The event loops triopipe is measured on, in the default order (the first is
#: also the one used where a workload runs triopipe on one loop only).
BACKENDS = ("trio", "asyncio", "uvloop")

#: Workload ids accepted by ``--only``.
WORKLOADS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8")

#: B8's one-way delays added between client and server, in microseconds.
B8_DELAYS_US = (0, 250, 1000)

#: Sizes from BENCHMARKS.md.
FULL_SIZES: Mapping[str, Mapping[str, int]] = {
    "B1": {"count": 1_000_000, "window": 10_000},
    "B2": {"tasks": 500, "per_task": 200},
    "B2 wide": {"tasks": 2_000, "per_task": 25},
    "B3": {"count": 10_000},
    # Two 100k-member sets sharing 100 members: each SINTER walks 100k members
    # on the server but sends back only 100, so the server is the bottleneck.
    "B4 shards": {"size": 100_000, "overlap": 100, "count": 200},
    "B4 replies": {"size": 1_000, "count": 1_000},
    "B5": {"size": 2**20, "count": 200},
    "B6": {"count": 10_000_000},
    "B6 large": {"count": 100_000_000},
    "B7": {"count": 1_000_000},
    "B8 fan-in": {"tasks": 500, "per_task": 20},
    "B8 bulk_set": {"count": 200_000, "batch": 10_000, "window": 10_000},
    "B8 bulk_get": {"count": 50_000, "batch": 10_000, "window": 1_000},
    "B8 sequential": {"count": 1_000},
}

#: ``--quick``: about a tenth of the work each, same shape (B2 keeps its 500 tasks).
QUICK_SIZES: Mapping[str, Mapping[str, int]] = {
    "B1": {"count": 100_000, "window": 10_000},
    "B2": {"tasks": 500, "per_task": 20},
    "B2 wide": {"tasks": 2_000, "per_task": 10},
    "B3": {"count": 1_000},
    "B4 shards": {"size": 10_000, "overlap": 100, "count": 200},
    "B4 replies": {"size": 1_000, "count": 100},
    "B5": {"size": 2**20, "count": 20},
    "B6": {"count": 1_000_000},
    "B6 large": {"count": 5_000_000},
    "B7": {"count": 100_000},
    "B8 fan-in": {"tasks": 500, "per_task": 5},
    "B8 bulk_set": {"count": 50_000, "batch": 10_000, "window": 10_000},
    "B8 bulk_get": {"count": 10_000, "batch": 10_000, "window": 1_000},
    "B8 sequential": {"count": 200},
}

Metric = Literal["rate", "latency", "rss"]
Kind = Literal["speedup", "latency", "cost", "limit", "info"]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One client doing one workload on one event loop, run ``--repeat`` times.

    Attributes:
        key: unique id, e.g. ``"B2/triopipe/uvloop"``.
        workload: the BENCHMARKS.md id, e.g. ``"B2"``.
        client: what is measured, as shown in the table.
        backend: ``trio``, ``asyncio``, ``uvloop`` or ``sync``.
        function: the name of the timed function in :mod:`benchmarks.workloads`.
        params: the sizes handed to it.
        op: the operation counted, for the unit (``SET/s``, ``us/PING``).
        metric: what the table shows: ``rate`` (ops/s), ``latency`` (µs per op)
            or ``rss`` (the child's peak RSS in MiB).
        servers: how many throwaway servers the run gets.
        timeout: seconds before a run is killed and counted as failed.
        rounds_factor: runs ``rounds_factor * --repeat`` times: for quick,
            noise-prone measurements (B3's runs take about a second, and one
            busy second of a neighbour spoils a run).
        delay_us: for B8, the one-way delay (µs) between client and server
            (see :mod:`benchmarks.link`); None for a plain loopback server.
    """

    key: str
    workload: str
    client: str
    backend: str
    function: str
    params: Mapping[str, Any]
    op: str
    metric: Metric = "rate"
    servers: int = 1
    timeout: float = 300.0
    rounds_factor: int = 1
    delay_us: int | None = None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One line of the results: a ratio (or a limit) and its target.

    Attributes:
        label: the BENCHMARKS.md row, e.g. ``"B1 ceiling"``.
        subject: the key of the measurement judged.
        reference: the key of the measurement it is divided by (None for limits).
        versus: how the reference is named in the table.
        kind: ``speedup`` (subject's rate / reference's rate >= target),
            ``latency`` (subject's µs / reference's µs <= target), ``cost``
            (the time per operation of two rate measurements: reference's
            rate / subject's rate <= target), ``limit``
            (a value <= target; ``limit_of`` names it) or ``info`` (a ratio
            reported without a target).
        target: the target ratio, or the limit (MiB).
        limit_of: for limits, ``rss`` (the client's peak RSS), ``child_rss``
            (the peak RSS of the program it ran, for B7) or
            ``server_peak`` (the server's ``used_memory_peak``).
    """

    label: str
    subject: str
    reference: str | None
    versus: str
    kind: Kind
    target: float | None
    limit_of: Literal["rss", "server_peak", "child_rss"] | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """Measurements in running order, and the comparisons drawn from them."""

    measurements: tuple[Measurement, ...]
    comparisons: tuple[Comparison, ...]


def sizes(quick: bool) -> Mapping[str, Mapping[str, int]]:
    """The workload sizes: BENCHMARKS.md's, or a tenth of them with ``quick``."""
    return QUICK_SIZES if quick else FULL_SIZES


class _Builder:
    def __init__(self, quick: bool) -> None:
        self.sizes = sizes(quick)
        self.measurements: list[Measurement] = []
        self.comparisons: list[Comparison] = []

    def measure(
        self,
        workload: str,
        name: str,
        client: str,
        backend: str,
        function: str,
        *,
        size_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> str:
        key = f"{workload}/{name}/{backend}"
        params = {**self.sizes[size_key or workload], **(extra or {})}
        self.measurements.append(
            Measurement(key, workload, client, backend, function, params, **options)
        )
        return key

    def compare(
        self,
        label: str,
        subject: str,
        reference: str | None,
        versus: str,
        kind: Kind,
        target: float | None,
        **options: Any,
    ) -> None:
        self.comparisons.append(
            Comparison(label, subject, reference, versus, kind, target, **options)
        )


def _b1(b: _Builder, backends: Sequence[str]) -> None:
    redispy = b.measure(
        "B1",
        "redis-py",
        "redis-py sync pipeline (10k/execute)",
        "sync",
        "b1_redispy_pipeline",
        op="SET",
    )
    raw = b.measure(
        "B1", "raw", "raw socket + hiredis (10k windows)", "sync", "b1_raw_hiredis", op="SET"
    )
    bench = b.measure(
        "B1",
        "redis-benchmark",
        "redis-benchmark -P 100 (50 clients)",
        "C",
        "b1_redis_benchmark",
        op="SET",
    )
    for backend in backends:
        subject = b.measure(
            "B1", "triopipe", "triopipe execute_many(generator)", backend, "b1_triopipe", op="SET"
        )
        b.compare("B1 bulk", subject, redispy, "redis-py sync pipeline", "speedup", 3.0)
        b.compare("B1 ceiling", subject, raw, "raw hiredis socket", "speedup", 0.75)
        b.compare("B1 ceiling", subject, bench, "redis-benchmark -P 100", "info", None)


#: The other clients of B2 and the event loops they run on (redis.asyncio is
#: asyncio-only; coredis is built on anyio and valkey-glide supports trio too).
_B2_OTHERS = (
    (
        "redis.asyncio",
        "redis.asyncio BlockingConnectionPool(50)",
        "b2_redis_asyncio",
        ("asyncio", "uvloop"),
        15.0,
    ),
    ("valkey-glide", "valkey-glide GlideClient", "b2_glide", BACKENDS, 5.0),
    ("coredis", "coredis Redis (its pool, 64 max)", "b2_coredis", BACKENDS, 15.0),
)


def _b2(b: _Builder, backends: Sequence[str]) -> None:
    """Each client on the same loop as triopipe where it can run there, else on asyncio."""
    references: list[tuple[dict[str, str], str, float]] = []
    for name, client, function, loops, target in _B2_OTHERS:
        keys = {}
        for backend in [x for x in backends if x in loops] or ["asyncio"]:
            keys[backend] = b.measure("B2", name, client, backend, function, op="GET")
        if "asyncio" not in keys and any(x not in loops for x in backends):
            keys["asyncio"] = b.measure("B2", name, client, "asyncio", function, op="GET")
        references.append((keys, name, target))
    for backend in backends:
        subject = b.measure(
            "B2", "triopipe", "triopipe, 1 connection", backend, "b2_triopipe", op="GET"
        )
        for keys, name, target in references:
            loop = backend if backend in keys else "asyncio"
            b.compare("B2 fan-in", subject, keys[loop], f"{name} ({loop})", "speedup", target)
        _b2_ceiling(b, backend, subject)


def _b2_ceiling(b: _Builder, backend: str, subject: str) -> None:
    """triopipe against the lean probe client, at 500 tasks and at 2,000."""
    wide_tasks = b.sizes["B2 wide"]["tasks"]
    probe = b.measure(
        "B2", "probe", "ceiling probe (benchmarks/probe.py)", backend, "b2_probe", op="GET"
    )
    b.compare("B2 ceiling", subject, probe, "ceiling probe", "speedup", 0.8)
    wide = b.measure(
        "B2",
        "triopipe wide",
        f"triopipe, 1 connection, {wide_tasks:,} tasks",
        backend,
        "b2_triopipe",
        size_key="B2 wide",
        op="GET",
    )
    wide_probe = b.measure(
        "B2",
        "probe wide",
        f"ceiling probe, {wide_tasks:,} tasks",
        backend,
        "b2_probe",
        size_key="B2 wide",
        op="GET",
    )
    b.compare(
        "B2 ceiling", wide, wide_probe, f"ceiling probe, {wide_tasks:,} tasks", "speedup", 0.8
    )
    # Time per GET with 2,000 tasks over that with 500: what many waiters cost.
    b.compare("B2 many tasks", wide, subject, "triopipe at 500 tasks (time per GET)", "cost", 1.3)
    b.compare(
        "B2 many tasks", wide_probe, probe, "probe at 500 tasks (time per GET)", "cost", None
    )


def _b3(b: _Builder, backends: Sequence[str]) -> None:
    reference = b.measure(
        "B3",
        "redis-py",
        "redis-py sync r.ping()",
        "sync",
        "b3_redispy",
        op="PING",
        metric="latency",
        rounds_factor=3,
    )
    for backend in backends:
        subject = b.measure(
            "B3",
            "triopipe",
            "triopipe await ping()",
            backend,
            "b3_triopipe",
            op="PING",
            metric="latency",
            rounds_factor=3,
        )
        b.compare("B3 latency", subject, reference, "redis-py sync", "latency", 1.1)


def _b4(b: _Builder, backend: str) -> None:
    # (name, client, backend, function, servers) of the server-bound SINTER runs.
    shard_runs = [
        (
            "triopipe 1 server",
            "triopipe execute_many, 1 server",
            backend,
            "b4_triopipe_one_server",
            1,
        ),
        (
            "triopipe sharded",
            "triopipe open_sharded_client, 2 servers",
            backend,
            "b4_triopipe_sharded",
            2,
        ),
        (
            "triopipe 2 clients",
            "2 triopipe clients in parallel (by hand)",
            backend,
            "b4_triopipe_two_clients",
            2,
        ),
        (
            "redis-py 1 server",
            "redis-py sync pipeline, 1 server",
            "sync",
            "b4_redispy_one_server",
            1,
        ),
        (
            "redis-py shards",
            "redis-py per-shard pipelines, in turn",
            "sync",
            "b4_redispy_shards_sequential",
            2,
        ),
    ]
    one, sharded, manual, _, redispy = (
        b.measure(
            "B4", name, client, loop, function, op="SINTER", size_key="B4 shards", servers=servers
        )
        for name, client, loop, function, servers in shard_runs
    )
    b.compare("B4 shards", sharded, one, "triopipe on 1 server", "speedup", 1.8)
    b.compare("B4 shards", sharded, redispy, "redis-py shards in turn", "speedup", 1.8)
    b.compare("B4 shards", manual, one, "triopipe on 1 server", "info", None)

    subject = b.measure(
        "B4",
        "triopipe replies",
        "triopipe execute_many, SUNION",
        backend,
        "b4_replies_triopipe",
        op="SUNION",
        size_key="B4 replies",
    )
    reference = b.measure(
        "B4",
        "redis-py replies",
        "redis-py sync pipeline, SUNION",
        "sync",
        "b4_replies_redispy",
        op="SUNION",
        size_key="B4 replies",
    )
    ceiling = b.measure(
        "B4",
        "raw replies",
        "raw socket + hiredis, SUNION",
        "sync",
        "b4_replies_raw",
        op="SUNION",
        size_key="B4 replies",
    )
    b.compare("B4 replies", subject, reference, "redis-py sync pipeline", "speedup", 2.0)
    b.compare("B4 replies", subject, ceiling, "raw hiredis socket", "info", None)


def _b5(b: _Builder, backend: str) -> None:
    pipelined = b.measure(
        "B5",
        "triopipe execute_many",
        "triopipe execute_many",
        backend,
        "b5_triopipe_execute_many",
        op="SET+GET",
    )
    sequential = b.measure(
        "B5",
        "triopipe sequential",
        "triopipe sequential awaits",
        backend,
        "b5_triopipe_sequential",
        op="SET+GET",
    )
    redispy = b.measure(
        "B5",
        "redis-py pipeline",
        "redis-py sync pipeline",
        "sync",
        "b5_redispy_pipeline",
        op="SET+GET",
    )
    redispy_seq = b.measure(
        "B5",
        "redis-py sequential",
        "redis-py sync set()/get()",
        "sync",
        "b5_redispy_sequential",
        op="SET+GET",
    )
    b.compare("B5 big values", pipelined, redispy, "redis-py sync pipeline", "speedup", 1.0)
    b.compare(
        "B5 big values", sequential, redispy_seq, "redis-py sync set()/get()", "speedup", 1.0
    )


#: B6's bound on the server's used_memory_peak (MiB): a fresh server uses about
#: 1 MiB, and one key plus bounded query/reply buffers stay far below this.
SERVER_MEMORY_BOUND_MIB = 32.0


#: B6's bound on the client's peak RSS (MiB), for every job size.
CLIENT_MEMORY_BOUND_MIB = 48.0


def _b6(b: _Builder, backend: str) -> None:
    """``pump`` at two job sizes: the client's peak RSS must not grow with the job."""
    keys = []
    for size_key in ("B6", "B6 large"):
        count = b.sizes[size_key]["count"]
        subject = b.measure(
            "B6",
            f"triopipe {count:,}",
            f"triopipe pump(generator), {count:,} SET",
            backend,
            "b6_triopipe",
            size_key=size_key,
            op="SET",
            metric="rss",
            timeout=1200.0 if count <= 10_000_000 else 7200.0,
        )
        keys.append(subject)
        b.compare(
            "B6 memory",
            subject,
            None,
            "client peak RSS",
            "limit",
            CLIENT_MEMORY_BOUND_MIB,
            limit_of="rss",
        )
        b.compare(
            "B6 memory",
            subject,
            None,
            "server used_memory_peak",
            "limit",
            SERVER_MEMORY_BOUND_MIB,
            limit_of="server_peak",
        )
    small, large = keys
    smaller = b.sizes["B6"]["count"]
    b.compare("B6 memory", large, small, f"peak RSS at {smaller:,} SET", "info", None)


def _b7(b: _Builder) -> None:
    reference = b.measure(
        "B7", "redis-cli", "redis-cli --pipe (RESP input)", "C", "b7_redis_cli_pipe", op="SET"
    )
    for form in ("text", "resp"):
        subject = b.measure(
            "B7",
            f"triopipe pump {form}",
            f"triopipe pump ({form} input)",
            "asyncio",
            "b7_triopipe_pump",
            extra={"form": form},
            op="SET",
        )
        b.compare("B7 pump", subject, reference, "redis-cli --pipe", "speedup", 0.6)
        b.compare("B7 memory", subject, None, "pump peak RSS", "limit", 40.0, limit_of="child_rss")
    # --workers 2 into two shards against one worker into the same two.
    runs = {}
    for workers in (1, 2):
        runs[workers] = b.measure(
            "B7",
            f"triopipe pump shards {workers}",
            f"triopipe pump --workers {workers} (text, 2 shards)",
            "asyncio",
            "b7_triopipe_pump",
            extra={"form": "text", "workers": workers},
            op="SET",
            servers=2,
        )
    b.compare("B7 workers", runs[2], runs[1], "one worker", "speedup", 1.3)


#: B8's shapes of work: (id, how the table names it, the ops counted).
_B8_SHAPES = (
    ("bulk_set", "bulk SET (small replies)", "SET"),
    ("bulk_get", "bulk GET of 4 KiB", "GET"),
    ("sequential", "sequential GET", "GET"),
)

#: B8's clients: (name, how the table names it, function, loop).
_B8_CLIENTS = (
    ("raw", "raw socket, sliding window", "b8_raw", "sync"),
    ("redis-py", "redis-py sync, pipelines of 10k", "b8_redispy", "sync"),
    ("redis.asyncio", "redis.asyncio, pipelines of 10k", "b8_redis_asyncio", "asyncio"),
    ("valkey-glide", "valkey-glide, Batch of 10k", "b8_glide", "asyncio"),
    ("coredis", "coredis, pipelines of 10k", "b8_coredis", "asyncio"),
)

#: B8's fan-in clients: B2's functions, on asyncio where not triopipe.
_B8_FAN_IN = (
    ("redis.asyncio", "redis.asyncio BlockingConnectionPool(50)", "b2_redis_asyncio"),
    ("valkey-glide", "valkey-glide GlideClient", "b2_glide"),
    ("coredis", "coredis Redis (its pool)", "b2_coredis"),
)


def _delay_name(delay_us: int) -> str:
    if not delay_us:
        return "no added delay"
    if delay_us % 1000 == 0:
        return f"{delay_us // 1000} ms one way"
    return f"{delay_us} us one way"


def _b8(b: _Builder, backend: str) -> None:
    """Each shape of work at each delay: triopipe against every other client there.

    The table's label says the shape and the delay; the client column, the client.
    """
    for delay in B8_DELAYS_US:
        where = _delay_name(delay)
        label = f"B8 fan-in, {where}"
        subject = b.measure(
            "B8",
            f"triopipe fan-in {delay}us",
            "triopipe, 1 connection",
            backend,
            "b2_triopipe",
            size_key="B8 fan-in",
            op="GET",
            delay_us=delay,
        )
        for name, client, function in _B8_FAN_IN:
            reference = b.measure(
                "B8",
                f"{name} fan-in {delay}us",
                client,
                "asyncio",
                function,
                size_key="B8 fan-in",
                op="GET",
                delay_us=delay,
            )
            b.compare(label, subject, reference, name, "speedup", None)
        for shape, title, op in _B8_SHAPES:
            size_key = f"B8 {shape}"
            label = f"B8 {title}, {where}"
            api = "await get()" if shape == "sequential" else "pump"
            subject = b.measure(
                "B8",
                f"triopipe {shape} {delay}us",
                f"triopipe {api}",
                backend,
                "b8_triopipe",
                size_key=size_key,
                extra={"shape": shape},
                op=op,
                delay_us=delay,
            )
            for name, client, function, loop in _B8_CLIENTS:
                if shape == "sequential":
                    client = client.split(",")[0]  # no pipelines, no window
                reference = b.measure(
                    "B8",
                    f"{name} {shape} {delay}us",
                    client,
                    loop,
                    function,
                    size_key=size_key,
                    extra={"shape": shape},
                    op=op,
                    delay_us=delay,
                )
                # The one target of B8: big replies over a long link, against the raw window.
                target = 0.8 if (name, shape, delay) == ("raw", "bulk_get", 1000) else None
                b.compare(label, subject, reference, name, "speedup", target)


def build_plan(only: Sequence[str], backends: Sequence[str], *, quick: bool) -> Plan:
    """The measurements and comparisons for workloads ``only`` on event loops ``backends``."""
    b = _Builder(quick)
    primary = backends[0]
    for workload in WORKLOADS:
        if workload not in only:
            continue
        if workload == "B1":
            _b1(b, backends)
        elif workload == "B2":
            _b2(b, backends)
        elif workload == "B3":
            _b3(b, backends)
        elif workload == "B4":
            _b4(b, primary)
        elif workload == "B5":
            _b5(b, primary)
        elif workload == "B6":
            _b6(b, primary)
        elif workload == "B7":
            _b7(b)
        else:
            _b8(b, primary)
    return Plan(tuple(b.measurements), tuple(b.comparisons))
