"""``--wait-replicas`` and ``--wait-aof``: each window of commands confirmed durable, or reported.

With either option the pump runs its commands window by window, each window
in one batch (one connection, in order) that ends with ``WAIT numreplicas
timeout`` or ``WAITAOF numlocal numreplicas timeout``: the server then counts
exactly the writes of that connection, so the reply says whether *this
window* reached the replicas (or the append-only file). A window whose wait
falls short (too few replicas before the timeout, or an error such as
``WAITAOF`` on a server without ``appendonly``) is *unconfirmed*: its
commands were applied, but may be lost in a failover or a crash. The summary
counts unconfirmed windows and names the first few by their positions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["Durability", "WindowLog"]

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

    def add(self, span: str, reply: Any) -> None:
        """Record one window (``span``: its positions, e.g. ``lines 1-10000``) and its wait."""
        self.windows += 1
        reason = self.durability.shortfall(reply)
        if reason is None:
            return
        self.unconfirmed += 1
        if len(self.first_unconfirmed) < _SHOWN:
            self.first_unconfirmed.append(f"{span}: {reason}")

    def summary(self) -> list[str]:
        """Lines for the summary."""
        what = "WAITAOF" if self.durability.aof else "WAIT"
        lines = [
            f"  durability ({what}): {self.windows - self.unconfirmed:,} of {self.windows:,} "
            "windows confirmed"
        ]
        lines.extend(f"  unconfirmed {entry}" for entry in self.first_unconfirmed)
        return lines
