"""Cluster benchmark: triopipe's cluster client beside redis-py's, on a 3-master cluster.

Two workloads, each against a fresh throwaway cluster started by
:mod:`triopipe.testing` (so nothing but ``redis-server`` is needed):

- *bulk load*: 200,000 ``SET`` in one call (triopipe ``execute_many``;
  redis-py ``RedisCluster.pipeline(transaction=False)``, sync and asyncio);
- *fan-in*: 500 tasks each running 200 ``GET`` one after another (triopipe
  ``get``, auto-pipelined; redis-py ``redis.asyncio.cluster.RedisCluster``).

Run: ``python -m benchmarks cluster [--bulk N] [--tasks N] [--gets N]`` (or
``nox -s bench -- cluster``).
Prints operations per second and the ratio triopipe / redis-py.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
import redis.asyncio.cluster as redis_async_cluster
import redis.cluster

import triopipe
from triopipe.testing._cluster import RedisClusterProcesses, redis_cluster_processes


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("redis://").rpartition(":")
    return host, int(port)


def _bulk_commands(count: int) -> list[tuple[str, str, str]]:
    return [("SET", f"bulk:{index}", "x" * 16) for index in range(count)]


def triopipe_bulk(urls: list[str], count: int, backend: str) -> float:
    commands = _bulk_commands(count)

    async def main() -> float:
        async with triopipe.open_cluster_client(urls) as redis:
            start = time.perf_counter()
            await redis.execute_many(commands)
            return time.perf_counter() - start

    return anyio.run(main, backend=backend)


def triopipe_fan_in(urls: list[str], tasks: int, gets: int, backend: str) -> float:
    async def main() -> float:
        async with triopipe.open_cluster_client(urls) as redis:

            async def worker(index: int) -> None:
                for round_ in range(gets):
                    await redis.get(f"bulk:{(index * gets + round_) % 1000}")

            start = time.perf_counter()
            async with anyio.create_task_group() as task_group:
                for index in range(tasks):
                    task_group.start_soon(worker, index)
            return time.perf_counter() - start

    return anyio.run(main, backend=backend)


def redis_py_bulk_sync(urls: list[str], count: int) -> float:
    host, port = _host_port(urls[0])
    client = redis.cluster.RedisCluster(host=host, port=port)
    try:
        pipe = client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        for _, key, value in _bulk_commands(count):
            pipe.set(key, value)
        pipe.execute()
        return time.perf_counter() - start
    finally:
        client.close()


def redis_py_bulk_async(urls: list[str], count: int) -> float:
    host, port = _host_port(urls[0])

    async def main() -> float:
        client = redis_async_cluster.RedisCluster(host=host, port=port)
        try:
            await client.initialize()
            pipe = client.pipeline(transaction=False)
            start = time.perf_counter()
            for _, key, value in _bulk_commands(count):
                pipe.set(key, value)
            await pipe.execute()
            return time.perf_counter() - start
        finally:
            await client.aclose()

    return asyncio.run(main())


def redis_py_fan_in(urls: list[str], tasks: int, gets: int) -> float:
    host, port = _host_port(urls[0])

    async def main() -> float:
        # Its default (32 connections per node) refuses 500 concurrent tasks.
        client = redis_async_cluster.RedisCluster(host=host, port=port, max_connections=tasks)
        try:
            await client.initialize()

            async def worker(index: int) -> None:
                for round_ in range(gets):
                    await client.get(f"bulk:{(index * gets + round_) % 1000}")

            start = time.perf_counter()
            await asyncio.gather(*(worker(index) for index in range(tasks)))
            return time.perf_counter() - start
        finally:
            await client.aclose()

    return asyncio.run(main())


def _best(run: Callable[[], float], repeat: int) -> float:
    return min(run() for _ in range(repeat))


def _flush(cluster: RedisClusterProcesses) -> None:
    for node in cluster.primaries():
        node._flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bulk", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args(argv)
    results: dict[str, float] = {}
    with redis_cluster_processes(masters=3) as cluster:
        urls = cluster.urls
        bulk: dict[str, Callable[[], Any]] = {
            "triopipe (trio)": lambda: triopipe_bulk(urls, options.bulk, "trio"),
            "triopipe (asyncio)": lambda: triopipe_bulk(urls, options.bulk, "asyncio"),
            "redis-py sync pipeline": lambda: redis_py_bulk_sync(urls, options.bulk),
            "redis-py asyncio pipeline": lambda: redis_py_bulk_async(urls, options.bulk),
        }
        print(f"bulk load: {options.bulk} SET in one pipeline, 3 masters")
        for name, run in bulk.items():
            _flush(cluster)
            seconds = _best(run, options.repeat)
            results[f"bulk {name}"] = rate = options.bulk / seconds
            print(f"  {name:28} {rate:12,.0f} ops/s")
        total = options.tasks * options.gets
        fan_in: dict[str, Callable[[], Any]] = {
            "triopipe (trio)": lambda: triopipe_fan_in(urls, options.tasks, options.gets, "trio"),
            "triopipe (asyncio)": lambda: triopipe_fan_in(
                urls, options.tasks, options.gets, "asyncio"
            ),
            "redis-py asyncio": lambda: redis_py_fan_in(urls, options.tasks, options.gets),
        }
        print(f"fan-in: {options.tasks} tasks x {options.gets} GET")
        for name, run in fan_in.items():
            seconds = _best(run, options.repeat)
            results[f"fan-in {name}"] = rate = total / seconds
            print(f"  {name:28} {rate:12,.0f} ops/s")
    print("ratios (triopipe / redis-py):")
    for backend in ("trio", "asyncio"):
        ours = results[f"bulk triopipe ({backend})"]
        sync = results["bulk redis-py sync pipeline"]
        asynchronous = results["bulk redis-py asyncio pipeline"]
        print(
            f"  bulk ({backend}): {ours / sync:.1f}x redis-py sync, "
            f"{ours / asynchronous:.1f}x redis-py asyncio"
        )
        fan = results[f"fan-in triopipe ({backend})"] / results["fan-in redis-py asyncio"]
        print(f"  fan-in ({backend}): {fan:.1f}x redis-py asyncio")


if __name__ == "__main__":
    main()
