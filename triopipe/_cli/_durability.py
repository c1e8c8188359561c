"""``--wait-replicas`` and ``--wait-aof``: each window of commands confirmed durable, or reported.

With either option the client holds one connection per server (the option
``connections=1``), and the pump runs its commands window by window: once a
window's commands are all answered, every server (the one server, each shard,
each cluster primary) gets ``WAIT numreplicas timeout`` or ``WAITAOF numlocal
numreplicas timeout`` in a batch, which runs on that same connection. The
server counts exactly the writes of the connection it is asked on, so the
replies say whether *this window* reached the replicas (or the append-only
files). A window whose wait falls short on any server (too few replicas
before the timeout, or an error such as ``WAITAOF`` on a server without
``appendonly``) is *unconfirmed*: its commands were applied, but may be lost
in a failover or a crash. The summary counts unconfirmed windows and names
the first few by their positions and server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import anyio

from .._batch import outcome

__all__ = ["WINDOW", "Durability", "WindowLog", "wait_on_each"]

#: Commands per window (one batch, one wait).
WINDOW = 10_000
# Unconfirmed windows named in the summary.
_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class Durability:
    """What each window must reach: ``replicas`` replicas, and the local AOF when ``aof``."""

    replicas: int
    timeout_ms: int
    aof: bool

    def command(self) -> tuple[str | int, ...]:
        """The wait that ends each window."""
        if self.aof:
            return ("WAITAOF", 1, self.replicas, self.timeout_ms)
        return ("WAIT", self.replicas, self.timeout_ms)

    def shortfall(self, reply: Any) -> str | None:
        """Why a window is unconfirmed, from its wait's reply; None when it is confirmed."""
        if isinstance(reply, Exception):
            return str(reply)
        if self.aof:
            local, replicas = reply
            if local < 1:
                return "not yet in the append-only file"
            if replicas < self.replicas:
                return f"in the append-only file of {replicas} of {self.replicas} replicas"
            return None
        if reply < self.replicas:
            return f"acknowledged by {reply} of {self.replicas} replicas"
        return None


class WindowLog:
    """Counts windows and the unconfirmed ones, naming the first few."""

    def __init__(self, durability: Durability) -> None:
        self.durability = durability
        self.windows = 0
        self.unconfirmed = 0
        self.first_unconfirmed: list[str] = []

    def add(self, span: str, replies: Mapping[str, Any]) -> None:
        """Record one window (``span``: its positions) and its waits' replies, by server."""
        self.windows += 1
        shortfalls = [
            (server, reason)
            for server, reply in replies.items()
            if (reason := self.durability.shortfall(reply)) is not None
        ]
        if not shortfalls:
            return
        self.unconfirmed += 1
        if len(self.first_unconfirmed) < _SHOWN:
            server, reason = shortfalls[0]
            where = "" if len(replies) == 1 else f" on {server}"
            self.first_unconfirmed.append(f"{span}: {reason}{where}")

    def summary(self) -> list[str]:
        """Lines for the summary."""
        what = "WAITAOF" if self.durability.aof else "WAIT"
        lines = [
            f"  durability ({what}): {self.windows - self.unconfirmed:,} of {self.windows:,} "
            "windows confirmed"
        ]
        lines.extend(f"  unconfirmed {entry}" for entry in self.first_unconfirmed)
        return lines


async def wait_on_each(
    servers: Mapping[str, Any], command: tuple[str | int, ...]
) -> dict[str, Any]:
    """Run the wait ``command`` on every server's connection at once; each reply (or error)."""
    replies: dict[str, Any] = {}

    async def wait(name: str, server: Any) -> None:
        try:
            async with server.batch() as batch:
                pending = batch.execute(*command)
        except Exception as exc:  # the reply holds it too, or the batch never ran
            replies[name] = exc
        else:
            replies[name] = outcome(pending)

    async with anyio.create_task_group() as task_group:
        for name, server in servers.items():
            task_group.start_soon(wait, name, server)
    return {name: replies[name] for name in servers}
