"""Server and connection commands: PING, FLUSHDB, DBSIZE."""

from __future__ import annotations

from typing import Any

from ._base import Command, is_ok

__all__ = ["dbsize", "flushdb", "ping"]


def _pong(reply: Any) -> Any:
    return True if reply in (b"PONG", "PONG") else reply


def ping(message: str | bytes | None = None) -> Command[Any]:
    """``PING``: True for PONG, or the ``message`` echoed back."""
    if message is None:
        return Command(("PING",), _pong)
    return Command(("PING", message))


def flushdb(*, asynchronous: bool = False) -> Command[bool]:
    """Delete every key of the current database (``FLUSHDB``); returns True."""
    return Command(("FLUSHDB", "ASYNC") if asynchronous else ("FLUSHDB",), is_ok)


def dbsize() -> Command[int]:
    """Return the number of keys in the current database (``DBSIZE``)."""
    return Command(("DBSIZE",))
