"""A work queue on a Redis stream: two workers in a consumer group, one of them crashes.

Run it with ``python examples/streams.py`` (add ``--backend asyncio`` to use
asyncio instead of trio). It starts a throwaway server with
``triopipe.testing`` (see ``examples/demo.py`` for where the binary comes
from), never a server you already run.

What happens:

1. A producer adds 2,000 jobs to the stream ``jobs``.
2. Two workers, ``alice`` and ``bob``, consume them as members of the group
   ``workers``. Each acknowledges a job once it is done.
3. After 250 jobs, ``alice`` crashes: her task is cancelled while she holds
   a job. The rest of her last read is pending for her, and so are her last
   50 jobs: she acknowledged them, but acknowledgements go in batches (one
   ``XACK`` per 100 here) and that batch was never sent.
4. ``bob`` reclaims them (``claim_after``: jobs idle longer than half a
   second) and finishes everything. Every job is done at least once; the
   50 that ``alice`` did without her acknowledgement reaching the server
   are done twice.
5. ``alice`` restarts under the same name: she first re-reads her own
   pending jobs (none are left: ``bob`` took them), then waits for new ones.
"""

from __future__ import annotations

import argparse
from collections import Counter

import anyio
import anyio.lowlevel

import triopipe
import triopipe.testing

JOBS = 2_000
CRASH_AFTER = 250


async def main() -> None:
    async with (
        triopipe.testing.redis_server() as server,
        triopipe.open_client(server.url, decode=True) as redis,
    ):
        await redis.execute_many([("XADD", "jobs", "*", "job", n) for n in range(JOBS)])
        print(f"added {await redis.xlen('jobs')} jobs to the stream 'jobs'")

        done: Counter[str] = Counter()
        by_worker: Counter[str] = Counter()
        alice_crashed = anyio.Event()

        async def worker(name: str, claim_after: float | None) -> None:
            async with redis.stream_consumer(
                "jobs", "workers", name, create=True, claim_after=claim_after
            ) as consumer:
                async for entry in consumer:
                    if name == "alice" and by_worker["alice"] == CRASH_AFTER:
                        alice_crashed.set()
                        await anyio.sleep_forever()  # dies holding this job
                    done[entry.fields["job"]] += 1
                    by_worker[name] += 1
                    await entry.ack()
                    await anyio.lowlevel.checkpoint()  # let the other worker run

        async with anyio.create_task_group() as tasks:
            alice = anyio.CancelScope()

            async def run_alice() -> None:
                with alice:
                    await worker("alice", None)

            tasks.start_soon(run_alice)
            tasks.start_soon(worker, "bob", 0.5)
            await alice_crashed.wait()
            alice.cancel()
            print(f"alice crashed after {by_worker['alice']} jobs")
            with anyio.fail_after(30):
                # Polled: done, and every acknowledgement on the server.
                while True:
                    pending = (await redis.xpending("jobs", "workers"))[0]
                    if len(done) == JOBS and pending == 0:
                        break
                    await anyio.sleep(0.1)
            tasks.cancel_scope.cancel()

        twice = sorted(int(job) for job, count in done.items() if count > 1)
        print(f"bob did {by_worker['bob']} jobs, including alice's unacknowledged ones")
        print(f"all {len(done)} jobs done, {len(twice)} of them twice: {twice[0]}..{twice[-1]}")
        print(f"pending in the group: {(await redis.xpending('jobs', 'workers'))[0]}")

        # alice restarts: her own pending entries come first (none are left).
        async with redis.stream_consumer("jobs", "workers", "alice") as consumer:
            await redis.xadd("jobs", {"job": "after the restart"})
            with anyio.fail_after(5):
                entry = await consumer.__anext__()
            await entry.ack()
            print(f"alice, restarted, got {entry.fields['job']!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    anyio.run(main, backend=parser.parse_args().backend)
