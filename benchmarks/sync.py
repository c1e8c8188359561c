"""Benchmark of the blocking facade (``triopipe.sync``) against redis-py sync.

Starts its own throwaway servers (``triopipe.testing``) and prints a table.
Figures are ratios taken side by side in one run; the variants of a workload
alternate round by round, and the median round counts, so that a busy
machine skews them all alike.

Workloads:

- *small*: 10k sequential ``PING`` (facade ``execute`` and typed ``ping()``
  vs redis-py ``r.ping()``), per call; and 10k ``PING`` at once, vs one
  redis-py pipeline of 10k: submitted as Futures then waited, and as one
  facade ``execute_many``.
- *big*: 200 ``SINTER`` of two 100k-member sets (server-bound: the
  intersection is 10 members), keys over 2 servers, through the sharded
  facade, vs redis-py sync on the same two servers, one command after
  another and as per-shard pipelines run one after another; and the facade
  on 1 server, for the speed-up that parallel shards give.

Run: ``python -m benchmarks sync [--rounds 5] [--backends asyncio,trio]``
(``nox -s bench -- sync ...``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import redis

from triopipe import sync
from triopipe.testing import redis_server_process

SMALL = 10_000
SET_SIZE = 100_000
BIG = 200


def _timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _rounds(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each variant; the variants alternate within a round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, function in variants.items():
            times[name].append(_timed(function))
    return {name: statistics.median(values) for name, values in times.items()}


def _loops(backends: Sequence[str]) -> list[tuple[str, str, dict[str, Any] | None]]:
    loops: list[tuple[str, str, dict[str, Any] | None]] = []
    for backend in backends:
        if backend == "asyncio":
            loops.append(("asyncio+uvloop (default)", "asyncio", None))
            loops.append(("asyncio", "asyncio", {"use_uvloop": False}))
        else:
            loops.append((backend, backend, None))
    return loops


def small_commands(url: str, backends: Sequence[str], rounds: int) -> None:
    client = redis.Redis.from_url(url)

    def redis_py_ping() -> None:
        for _ in range(SMALL):
            client.ping()

    def redis_py_pipeline() -> None:
        pipeline = client.pipeline(transaction=False)
        for _ in range(SMALL):
            pipeline.ping()
        pipeline.execute()

    print(f"\n10k sequential PING, per call (median of {rounds} rounds)")
    print(f"{'loop':28} {'redis-py':>10} {'execute':>10} {'ping()':>10} {'ratio':>7}")
    futures_rows = []
    for label, backend, options in _loops(backends):
        with sync.open_client(url, backend=backend, backend_options=options) as facade:

            def facade_execute(facade: sync.SyncClient = facade) -> None:
                for _ in range(SMALL):
                    facade.execute("PING")

            def facade_ping(facade: sync.SyncClient = facade) -> None:
                for _ in range(SMALL):
                    facade.ping()

            def facade_futures(facade: sync.SyncClient = facade) -> None:
                futures = [facade.submit("PING") for _ in range(SMALL)]
                for future in futures:
                    future.result()

            def facade_pipeline(facade: sync.SyncClient = facade) -> None:
                facade.execute_many([("PING",)] * SMALL)

            facade_execute()  # warm up
            times = _rounds(
                {
                    "redis-py": redis_py_ping,
                    "execute": facade_execute,
                    "ping": facade_ping,
                    "futures": facade_futures,
                    "execute_many": facade_pipeline,
                    "pipeline": redis_py_pipeline,
                },
                rounds,
            )
        per_call = {name: seconds / SMALL * 1e6 for name, seconds in times.items()}
        print(
            f"{label:28} {per_call['redis-py']:8.1f}us {per_call['execute']:8.1f}us "
            f"{per_call['ping']:8.1f}us {per_call['execute'] / per_call['redis-py']:6.2f}x"
        )
        futures_rows.append((label, times["pipeline"], times["futures"], times["execute_many"]))
    print("ratio: facade execute time / redis-py time (target <= 1.15)")
    print("\n10k PING at once: redis-py pipeline vs facade Futures and execute_many")
    print(
        f"{'loop':28} {'pipeline':>10} {'futures':>10} {'ratio':>7} {'exec_many':>10} {'ratio':>7}"
    )
    for label, pipeline, futures, many in futures_rows:
        print(
            f"{label:28} {pipeline * 1e3:8.1f}ms "
            f"{futures * 1e3:8.1f}ms {futures / pipeline:6.2f}x "
            f"{many * 1e3:8.1f}ms {many / pipeline:6.2f}x"
        )
    print("ratio: facade time / redis-py pipeline time")
    client.close()


def _fill_sets(url: str, tag: str) -> tuple[str, str]:
    """Two 100k-member sets on the server at ``url`` that share 10 members."""
    client = redis.Redis.from_url(url, socket_timeout=None)
    first, second = f"{{{tag}}}:first", f"{{{tag}}}:second"
    pipeline = client.pipeline(transaction=False)
    offset = SET_SIZE - 10
    for start in range(0, SET_SIZE, 10_000):
        members = range(start, start + 10_000)
        pipeline.sadd(first, *members)
        pipeline.sadd(second, *(member + offset for member in members))
    pipeline.execute()
    client.close()
    return first, second


def big_commands(backends: Sequence[str], rounds: int) -> None:
    with ExitStack() as stack:
        servers = [stack.enter_context(redis_server_process()) for _ in range(2)]
        urls = [server.url for server in servers]
        # One pair of sets per server: a hash tag that the sharded client
        # places on it.
        with sync.open_sharded_client(urls) as sharded:
            tags: dict[str, str] = {}
            number = 0
            while len(tags) < len(urls):
                tags.setdefault(sharded.shard_for(f"{{t{number}}}"), f"t{number}")
                number += 1
        pairs = {url: _fill_sets(url, tags[url]) for url in urls}
        # 200 commands, half per server, interleaved as a caller would.
        work = [(urls[i % 2], pairs[urls[i % 2]]) for i in range(BIG)]
        # No socket timeout: a pipeline of 100 SINTERs outlasts redis-py's default.
        clients = {url: redis.Redis.from_url(url, socket_timeout=None) for url in urls}
        one_server = [pairs[urls[0]]] * BIG

        def redis_py_one_by_one() -> None:
            for url, (first, second) in work:
                clients[url].sinter(first, second)

        def redis_py_pipelines() -> None:
            for url in urls:
                pipeline = clients[url].pipeline(transaction=False)
                for command_url, (first, second) in work:
                    if command_url == url:
                        pipeline.sinter(first, second)
                pipeline.execute()

        print(f"\n{BIG} SINTER of two {SET_SIZE // 1000}k-member sets (median of {rounds} rounds)")
        print(
            f"{'loop':28} {'redis-py':>9} {'r-py pipe':>9} {'1 server':>9} "
            f"{'2 shards':>9} {'vs pipe':>8} {'vs 1 srv':>8}"
        )
        # The default asyncio loop (uvloop) and trio: these take a while.
        big_loops = [loop for loop in _loops(backends) if loop[0] != "asyncio"]
        for label, backend, options in big_loops:
            with (
                sync.open_sharded_client(urls, backend=backend, backend_options=options) as facade,
                sync.open_client(urls[0], backend=backend, backend_options=options) as single,
            ):

                def sharded_futures(facade: sync.SyncClient = facade) -> None:
                    futures = [facade.submit("SINTER", *pair) for _, pair in work]
                    for future in futures:
                        assert len(future.result()) == 10

                def single_futures(single: sync.SyncClient = single) -> None:
                    futures = [single.submit("SINTER", *pair) for pair in one_server]
                    for future in futures:
                        future.result()

                times = _rounds(
                    {
                        "redis-py": redis_py_one_by_one,
                        "pipelines": redis_py_pipelines,
                        "single": single_futures,
                        "sharded": sharded_futures,
                    },
                    rounds,
                )
            print(
                f"{label:28} {times['redis-py']:8.2f}s {times['pipelines']:8.2f}s "
                f"{times['single']:8.2f}s {times['sharded']:8.2f}s "
                f"{times['pipelines'] / times['sharded']:7.2f}x "
                f"{times['single'] / times['sharded']:7.2f}x"
            )
        print("vs pipe: redis-py per-shard pipelines, one after another / facade over 2 shards")
        print(
            "vs 1 srv: facade on 1 server / facade over 2 shards "
            "(the facade must win; B4 asks 1.8x of the async client)"
        )
        for client in clients.values():
            client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks sync", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default="asyncio,trio")
    parser.add_argument("--skip-big", action="store_true")
    arguments = parser.parse_args(argv)
    backends = arguments.backends.split(",")
    with redis_server_process() as server:
        small_commands(server.url, backends, arguments.rounds)
    if arguments.skip_big:
        return
    big_commands(backends, arguments.rounds)


if __name__ == "__main__":
    main()
