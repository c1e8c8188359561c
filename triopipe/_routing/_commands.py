"""How a command uses its connection.

Most commands are answered at once and can share a multiplexed connection
with any number of other callers. Two kinds cannot:

- *blocking* commands (``BLPOP``, ``XREAD ... BLOCK``, ``WAIT``, ...) hold
  their connection until the server answers, which may be never; on a shared
  connection they would stall every command queued behind them. They run on a
  dedicated connection.
- *subscription* commands (``SUBSCRIBE``, ``MONITOR``, ...) switch the
  connection into a mode where the server sends messages nobody asked for.
  They are only available through the pub/sub API, never through ``execute``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["CommandKind", "check_pipelinable", "command_kind", "command_name"]


class CommandKind(enum.Enum):
    """What a command needs from its connection."""

    SHARED = "shared"
    BLOCKING = "blocking"
    SUBSCRIPTION = "subscription"


_BLOCKING = frozenset(
    {
        "BLPOP",
        "BRPOP",
        "BRPOPLPUSH",
        "BLMOVE",
        "BLMPOP",
        "BZPOPMIN",
        "BZPOPMAX",
        "BZMPOP",
        "WAIT",
        "WAITAOF",
    }
)
# Blocking only with a BLOCK option.
_BLOCKING_WITH_OPTION = frozenset({"XREAD", "XREADGROUP"})
_SUBSCRIPTION = frozenset({"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SYNC", "PSYNC"})

_KINDS: dict[Any, CommandKind] = {}
for _names, _kind in (
    (_BLOCKING, CommandKind.BLOCKING),
    (_SUBSCRIPTION, CommandKind.SUBSCRIPTION),
):
    for _name in _names:
        _KINDS[_name] = _kind
        _KINDS[_name.encode()] = _kind
for _name in _BLOCKING_WITH_OPTION:
    _KINDS[_name] = _KINDS[_name.encode()] = CommandKind.SHARED  # refined below


# Names already seen to be shared whatever their arguments, exactly as the
# caller spelled them: pipelines repeat a few names millions of times, and a
# set lookup is far cheaper than upper-casing each one. Bounded, because names
# come from callers.
_SEEN_SHARED: set[Any] = set()
_SEEN_SHARED_MAX = 1024


def command_kind(args: Sequence[Any]) -> CommandKind:
    """Classify a command (its name is ``args[0]``, any case, str or bytes)."""
    name = args[0]
    try:
        if name in _SEEN_SHARED:
            return CommandKind.SHARED
    except TypeError:  # unhashable (bytearray): classified below
        pass
    if isinstance(name, (bytearray, memoryview)):
        name = bytes(name)
    try:
        kind = _KINDS.get(name.upper())
    except AttributeError:  # not a string at all: the server will refuse it
        return CommandKind.SHARED
    if kind is None:
        if len(_SEEN_SHARED) < _SEEN_SHARED_MAX:
            _SEEN_SHARED.add(args[0])
        return CommandKind.SHARED
    if kind is CommandKind.SHARED:  # XREAD / XREADGROUP
        for arg in args[1:]:
            if isinstance(arg, (str, bytes)) and arg.upper() in ("BLOCK", b"BLOCK"):
                return CommandKind.BLOCKING
    return kind


def command_name(args: Sequence[Any]) -> str:
    """The command's name, upper-case, for messages."""
    name = args[0]
    if isinstance(name, (bytes, bytearray, memoryview)):
        return bytes(name).decode("utf-8", "replace").upper()
    return str(name).upper()


def check_pipelinable(commands: Iterable[Sequence[Any]]) -> None:
    """Refuse commands that cannot share a pipeline: they would stall it.

    Raises:
        ValueError: a blocking or subscription command is among ``commands``.
    """
    seen = _SEEN_SHARED
    for args in commands:
        if not args:
            continue
        try:
            if args[0] in seen:  # the common case, inlined
                continue
        except TypeError:
            pass
        if command_kind(args) is not CommandKind.SHARED:
            raise ValueError(
                f"{command_name(args)} cannot be pipelined: it would hold the shared "
                "connection; run it alone with execute()"
            )
