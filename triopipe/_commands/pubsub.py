"""Pub/Sub commands that use an ordinary connection: PUBLISH."""

from __future__ import annotations

from ._base import Arg, Command, Key

__all__ = ["publish"]


def publish(channel: Key, message: Arg) -> Command[int]:
    """Publish ``message`` on ``channel``; returns how many clients received it."""
    return Command(("PUBLISH", channel, message))
