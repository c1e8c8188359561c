"""Pub/Sub that survives a lost link, against a throwaway server.

Run it with ``python examples/pubsub.py`` (add ``--backend asyncio`` to use
asyncio instead of trio). A publisher sends a numbered message every 10 ms;
halfway through, an admin connection kills the subscription's link
(``CLIENT KILL TYPE pubsub``). The subscription resubscribes by itself and
the loop sees one :class:`triopipe.Gap` where messages may be missing.
"""

from __future__ import annotations

import argparse

import anyio

import triopipe
import triopipe.testing


async def main() -> None:
    async with (
        triopipe.testing.redis_server() as server,
        triopipe.open_client(server.url, decode=True) as redis,
        redis.subscribe("ticks", patterns=["alerts.*"]) as sub,
    ):

        async def publish() -> None:
            for number in range(40):
                if number == 20:
                    await redis.execute("CLIENT", "KILL", "TYPE", "pubsub")
                await redis.publish("ticks", number)
                await anyio.sleep(0.01)
            for _ in range(500):  # the subscription may still be coming back
                if await redis.publish("alerts.done", "bye"):
                    return
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(publish)
            async for item in sub:
                if isinstance(item, triopipe.Gap):
                    down = item.resubscribed_at - item.lost_at
                    print(f"gap: the link was down {down * 1000:.1f} ms ({item.error})")
                elif item.pattern is not None:
                    print(f"{item.channel} (matched {item.pattern}): {item.data}")
                    break
                else:
                    print(f"{item.channel}: {item.data}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    anyio.run(main, backend=parser.parse_args().backend)
