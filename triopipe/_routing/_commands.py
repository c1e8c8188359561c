"""How a command uses the connection it runs on: its *class*.

Theory of operation
-------------------

A connection is shared by many callers whose commands and replies are
paired by order alone. That is safe only for commands that get exactly one
reply and leave the connection as they found it. Every command therefore has
a class, generated from the command specifications into
:data:`~._keyspecs.COMMAND_CLASS` (``tools/gen_commands.py``, with the
decisions of ``tools/command_rules.py``):

``SHARED``
    Answered at once, one reply, no effect on the connection: shares a
    multiplexed connection (``GET``, ``SET``, ``XREAD`` without ``BLOCK``...).
``BLOCKING``
    Holds its connection until the server answers, which may be never
    (``BLPOP``, ``XREAD ... BLOCK``): runs alone on a dedicated connection,
    never in a shared pipeline.
``SUBSCRIPTION``
    Puts the connection in (or takes it out of) subscription mode, where
    replies are push frames (``SUBSCRIBE``, ``UNSUBSCRIBE``...): only the
    pub/sub API sends them.
``CONNECTION_STATE``
    Changes the state of its connection (``MULTI``, ``SELECT``, ``HELLO``,
    ``CLIENT REPLY``, ``READONLY``, ``MONITOR``...), which every other caller
    would inherit: refused on shared connections; the error names the API
    to use instead.
``PINNED``
    Reports on the writes of its own connection (``WAIT``, ``WAITAOF``):
    meaningful only on a connection that carried the caller's writes, so
    allowed in a pinned ``batch()`` or ``transaction()``, refused elsewhere.
``UNKNOWN``
    Not in the table (a module command, or one newer than the table): the
    client must ask the server (``COMMAND INFO``) and :func:`learn_command`
    what it says before running it. It is never guessed to be shared.

:func:`command_class` is on the path of every command: names already seen
are one dict lookup, under the spelling the caller used. :func:`refusal`
gives the error for a command that may not run where the caller wants it;
:func:`check_commands` raises it for a whole batch of commands.
:func:`command_kind` and :func:`check_pipelinable` keep the semantics of
triopipe 0.1 for the facades that still use them. The learned classes are
process-wide (a command name means the same on every server a process
talks to; should two servers disagree, the stricter class stays).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from .._exceptions import CommandNotAllowedError, UnknownCommandClassError
from ._keys import learn_key_specs, text
from ._keyspecs import BLOCKING_TOKEN, COMMAND_CLASS, CONTAINERS, INSTEAD

__all__ = [
    "CommandClass",
    "CommandKind",
    "CommandNotAllowedError",
    "UnknownCommandClassError",
    "check_commands",
    "check_pipelinable",
    "class_from_info",
    "command_class",
    "command_kind",
    "command_name",
    "forget_learned_commands",
    "learn_command",
    "refusal",
    "unknown_commands",
]


class CommandClass(enum.Enum):
    """What a command needs from its connection (see the module's docstring)."""

    SHARED = "shared"
    BLOCKING = "blocking"
    SUBSCRIPTION = "subscription"
    CONNECTION_STATE = "connection_state"
    PINNED = "pinned"
    UNKNOWN = "unknown"


class CommandKind(enum.Enum):
    """The three kinds triopipe 0.1's facades know; see :func:`command_kind`."""

    SHARED = "shared"
    BLOCKING = "blocking"
    SUBSCRIPTION = "subscription"


#: Where a command is to run: alone through ``execute`` (a blocking command
#: then gets a dedicated connection), in a pipeline on a shared connection
#: (``execute_many``, a batch), or on a connection pinned to the caller.
Where = Literal["execute", "pipeline", "pinned"]

_BY_VALUE = {member.value: member for member in CommandClass}
_TABLE: dict[str, CommandClass] = {name: _BY_VALUE.get(value, CommandClass.UNKNOWN)
                                   for name, value in COMMAND_CLASS.items()}  # fmt: skip
# A container whose subcommands differ ("subcommand" in the table) is looked
# up with its subcommand; so is every container, so that a subcommand the
# table lacks is UNKNOWN rather than the container's class.
_CONTAINERS: set[str] = set(CONTAINERS)
_LEARNED: dict[str, CommandClass] = {}

# Classes of names already seen, under the exact spelling callers used
# (str or bytes, any case): pipelines repeat a few names millions of times,
# and one dict lookup is far cheaper than upper-casing each. Only names
# whose class cannot depend on the other arguments go here. Bounded,
# because names come from callers.
_SEEN: dict[Any, CommandClass] = {}
_SEEN_SHARED: set[Any] = set()
_SEEN_MAX = 1024


def command_name(args: Sequence[Any]) -> str:
    """The command's name, upper-case, for messages (``"CLIENT REPLY"`` for subcommands)."""
    name = text(args[0]).upper()
    if name in _CONTAINERS and len(args) > 1:
        return f"{name} {text(args[1]).upper()}"
    return name


def command_class(args: Sequence[Any]) -> CommandClass:
    """The class of the command ``args`` (``args[0]`` is its name, any case, str or bytes).

    ``XREAD``/``XREADGROUP`` are :attr:`~CommandClass.BLOCKING` with a
    ``BLOCK`` option and shared without; a container's class is its
    subcommand's. A name that is not a string at all is ``SHARED``: the
    server will refuse it with an error reply.
    """
    name = args[0]
    try:
        known = _SEEN.get(name)
    except TypeError:  # unhashable (bytearray): classified below
        known = None
    if known is not None:
        return known
    return _classify(args)


def _classify(args: Sequence[Any]) -> CommandClass:
    raw = args[0]
    if not isinstance(raw, (str, bytes, bytearray, memoryview)):
        return CommandClass.SHARED
    name = text(raw).upper()
    cacheable = True
    if name in _CONTAINERS:
        if len(args) < 2 or not isinstance(args[1], (str, bytes, bytearray, memoryview)):
            # The server answers a bare container with an error reply.
            return CommandClass.SHARED
        name = f"{name}|{text(args[1]).upper()}"
        cacheable = False
    found = _TABLE.get(name) or _LEARNED.get(name) or CommandClass.UNKNOWN
    token = BLOCKING_TOKEN.get(name)
    if token is not None:
        cacheable = False
        for arg in args[1:]:
            if isinstance(arg, (str, bytes)) and text(arg).upper() == token:
                found = CommandClass.BLOCKING
                break
    if cacheable and found is not CommandClass.UNKNOWN and len(_SEEN) < _SEEN_MAX:
        try:
            _SEEN[raw] = found
            if found is CommandClass.SHARED:
                _SEEN_SHARED.add(raw)
        except TypeError:
            pass
    return found


def refusal(args: Sequence[Any], where: Where = "execute") -> CommandNotAllowedError | None:
    """The error for running ``args`` ``where``, or None if it may run there.

    - ``"execute"``: alone on a client. Shared and blocking commands may
      (a blocking one gets a dedicated connection).
    - ``"pipeline"``: on a shared connection, among other commands
      (``execute_many``, a batch). Only shared commands may.
    - ``"pinned"``: on a connection reserved for the caller, after its
      writes (a pinned batch, a transaction). Shared and pinned commands may.

    Unknown commands get an :class:`UnknownCommandClassError`: learn their
    class first (:func:`learn_command`).
    """
    found = command_class(args)
    if found is CommandClass.SHARED:
        return None
    if found is CommandClass.BLOCKING and where == "execute":
        return None
    if found is CommandClass.PINNED and where == "pinned":
        return None
    name = command_name(args)
    key = name.replace(" ", "|")
    instead = INSTEAD.get(key, "")
    if found is CommandClass.UNKNOWN:
        return UnknownCommandClassError(
            f"{name} is not in triopipe's command table (a module's, or a newer server's) "
            "and a batch cannot ask the server what it is: run `await redis.learn_commands()` "
            "once (execute() and execute_many() ask by themselves)",
            name,
            found,
        )
    if found is CommandClass.BLOCKING:
        message = (
            f"{name} cannot be pipelined: it blocks its connection until the server "
            "answers; run it alone with execute() (or its helper), which gives it a "
            "dedicated connection"
        )
    elif found is CommandClass.SUBSCRIPTION:
        message = f"{name} belongs to a subscription, which needs a connection of its own"
    elif found is CommandClass.CONNECTION_STATE:
        message = (
            f"{name} changes the state of the connection it runs on, which other callers share"
        )
    else:
        message = f"{name} reports on the writes of the connection it runs on"
    if instead and found is not CommandClass.BLOCKING:
        message += f": {instead}"
    return CommandNotAllowedError(message, name, found)


def check_commands(commands: Iterable[Sequence[Any]], where: Where = "pipeline") -> None:
    """Refuse, before anything is sent, a command of ``commands`` that may not run ``where``.

    The strict check of issue 12 (see :func:`refusal`): in a pipeline only
    shared commands; on a pinned connection shared and pinned ones.

    Raises:
        CommandNotAllowedError: the first command that may not run there
            (:class:`UnknownCommandClassError` for one not yet learned).
    """
    _check(commands, lambda args: refusal(args, where))


def check_pipelinable(commands: Iterable[Sequence[Any]]) -> None:
    """Refuse blocking and subscription commands in a pipeline (triopipe 0.1's check).

    Connection-state and unknown commands pass, as in triopipe 0.1: the
    facades send ASKING and READONLY this way themselves. The check of
    issue 12 is :func:`check_commands`.

    Raises:
        CommandNotAllowedError: a blocking or subscription command is among
            ``commands`` (a ValueError, as in triopipe 0.1).
    """
    _check(commands, _refusal_0_1)


def _refusal_0_1(args: Sequence[Any]) -> CommandNotAllowedError | None:
    if command_kind(args) is CommandKind.SHARED:
        return None
    return refusal(args, "pipeline")


def _check(
    commands: Iterable[Sequence[Any]],
    refuse: Callable[[Sequence[Any]], CommandNotAllowedError | None],
) -> None:
    seen = _SEEN_SHARED
    for args in commands:
        if not args:
            continue
        try:
            if args[0] in seen:  # the common case, inlined
                continue
        except TypeError:
            pass
        error = refuse(args)
        if error is not None:
            raise error


def unknown_commands(commands: Iterable[Sequence[Any]]) -> list[str]:
    """The names (``"JSON.SET"``, ``"CLIENT|NEWSUB"``) of the commands not yet classed, once each.

    What the client asks the server about (``COMMAND INFO name ...``) before
    running ``commands``.
    """
    names: list[str] = []
    for args in commands:
        if args and command_class(args) is CommandClass.UNKNOWN:
            name = command_name(args).replace(" ", "|")
            if name not in names:
                names.append(name)
    return names


# triopipe 0.1's facades refuse SUBSCRIPTION kinds in execute and run BLOCKING
# ones on a dedicated connection. Its kinds stay as they were, so that the
# facades (and the ASKING/READONLY the cluster client sends) work unchanged
# until they use command_class(): pinned commands count as blocking;
# connection-state and unknown ones as shared, except the three that 0.1
# already refused.
_KINDS = {
    CommandClass.SHARED: CommandKind.SHARED,
    CommandClass.BLOCKING: CommandKind.BLOCKING,
    CommandClass.SUBSCRIPTION: CommandKind.SUBSCRIPTION,
    CommandClass.CONNECTION_STATE: CommandKind.SHARED,
    CommandClass.PINNED: CommandKind.BLOCKING,
    CommandClass.UNKNOWN: CommandKind.SHARED,
}
_REFUSED_BY_0_1 = frozenset({"MONITOR", "SYNC", "PSYNC"})


def command_kind(args: Sequence[Any]) -> CommandKind:
    """Classify a command in the three kinds of triopipe 0.1 (prefer :func:`command_class`).

    Pinned commands count as blocking (a dedicated connection); connection
    state and unknown commands as shared, except MONITOR, SYNC and PSYNC,
    which count as subscription commands (refused by ``execute``), as in 0.1.
    """
    name = args[0]
    try:
        if name in _SEEN_SHARED:
            return CommandKind.SHARED
    except TypeError:
        pass
    found = command_class(args)
    if found is CommandClass.CONNECTION_STATE and command_name(args) in _REFUSED_BY_0_1:
        return CommandKind.SUBSCRIPTION
    return _KINDS[found]


# -- Learning from the server ----------------------------------------------------------------

_STRICTNESS = [
    CommandClass.SHARED,
    CommandClass.BLOCKING,
    CommandClass.PINNED,
    CommandClass.SUBSCRIPTION,
    CommandClass.CONNECTION_STATE,
]


def class_from_info(info: Sequence[Any]) -> CommandClass:
    """The class of a command the table lacks, from its ``COMMAND INFO`` entry.

    The server's flags and ACL categories decide: ``blocking`` (or
    ``@blocking``) makes it blocking; ``pubsub`` without ``fast`` (the
    subscribe family; PUBLISH is fast) a subscription command; ``no_multi``,
    ``@connection`` or ``@transaction`` a connection-state command (refused:
    a command about the connection cannot safely be shared unless the table
    knows it); anything else is shared.
    """
    flags = {text(flag).lower() for flag in _as_list(info[2])}
    categories = (
        {text(category).lower() for category in _as_list(info[6])} if len(info) > 6 else set()
    )
    if "blocking" in flags or "@blocking" in categories:
        return CommandClass.BLOCKING
    if "pubsub" in flags and "fast" not in flags:
        return CommandClass.SUBSCRIPTION
    if "no_multi" in flags or categories & {"@connection", "@transaction"}:
        return CommandClass.CONNECTION_STATE
    return CommandClass.SHARED


def learn_command(info: Sequence[Any] | None, name: str | bytes | None = None) -> CommandClass:
    """Record what the server says of a command the table lacks; return its class.

    ``info`` is one entry of a ``COMMAND INFO`` reply, RESP2 or RESP3, bytes
    or str: its class (:func:`class_from_info`), key specs and cluster tips
    are recorded, and its subcommands' too, so that :func:`command_class`,
    :func:`~triopipe._routing.key_positions` and the routing policies know
    it from then on. A nil entry (the server does not know the command
    either; pass the ``name``) records it as shared and key-less: the server
    will answer it with an error reply.
    """
    if info is None:
        if name is None:
            raise ValueError("learn_command(None) needs the command's name")
        key = text(name).upper().replace(" ", "|")
        _record(key, CommandClass.SHARED)
        learn_key_specs(key, None)
        return CommandClass.SHARED
    # The name asked about: a renamed command (rename-command) answers with
    # its original name, but callers send the new one.
    key = text(info[0] if name is None else name).upper().replace(" ", "|")
    subcommands = _as_list(info[9]) if len(info) > 9 else []
    if subcommands and "|" not in key:
        _CONTAINERS.add(key)
        learn_key_specs(key, info, container=True)
        classes = [learn_command(sub) for sub in subcommands]
        return max(classes, key=_STRICTNESS.index, default=CommandClass.SHARED)
    found = class_from_info(info)
    found = _record(key, found)
    learn_key_specs(key, info)
    return found


def _record(key: str, found: CommandClass) -> CommandClass:
    if key in _TABLE:
        return _TABLE[key]
    previous = _LEARNED.get(key)
    if previous is not None and _STRICTNESS.index(previous) > _STRICTNESS.index(found):
        found = previous
    _LEARNED[key] = found
    # A name cached before it was learned may now have another class.
    _SEEN.clear()
    _SEEN_SHARED.clear()
    return found


def forget_learned_commands() -> None:
    """Forget everything :func:`learn_command` recorded (for tests)."""
    from ._keys import forget_learned_key_specs

    for key in list(_LEARNED):
        del _LEARNED[key]
    _CONTAINERS.clear()
    _CONTAINERS.update(CONTAINERS)
    _SEEN.clear()
    _SEEN_SHARED.clear()
    forget_learned_key_specs()


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]
