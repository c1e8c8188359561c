"""Learning from a server what the command table lacks (``COMMAND INFO``), once per process.

The table (:mod:`triopipe._routing`) classes every command of the command
specifications. A module's commands, or a newer server's, it does not know:
before such a command runs, a client asks the server what it is and records
the answer (:func:`~triopipe._routing.learn_command`), for every client of the
process. Whoever asks passes its own way of running one command.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ._exceptions import ResponseError
from ._routing import learn_command, unknown_commands

__all__ = ["learn_commands"]

# Commands asked about per COMMAND INFO.
_CHUNK = 100


async def learn_commands(
    execute: Callable[..., Awaitable[Any]], names: Sequence[str] | None = None
) -> None:
    """Ask, with ``execute``, about ``names`` (default: the table's gaps ``COMMAND LIST`` shows).

    A refusal (an ACL without ``COMMAND``, a server before Redis 7 without
    ``COMMAND LIST``) teaches nothing and is not an error: a command still
    unknown is then recorded as the server's answer says, or not at all.
    """
    if names is None:
        try:
            listed = await execute("COMMAND", "LIST")
        except ResponseError:
            return
        names = unknown_commands([(name,) for name in listed])
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        try:
            infos = await execute("COMMAND", "INFO", *chunk)
        except ResponseError:
            infos = [None] * len(chunk)
        for name, info in zip(chunk, infos, strict=True):
            learn_command(info, name)
