"""The few helpers written by hand, and why generation does not serve them.

Every other helper is generated from the command specifications
(``tools/gen_commands.py``). These are not, each for the reason in its
docstring's first paragraph, and ``tools/command_rules.py`` lists them
(``MANUAL``), so the generator imports them into their group's module
instead of writing its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._args import keys_of
from ._base import Arg, Command, Key, is_ok

__all__ = ["bitfield", "client_kill", "migrate", "ping", "replicaof", "set", "slaveof"]


def set(  # noqa: A001 - the Redis command is called SET
    key: Key,
    value: Arg,
    *,
    ex: int | None = None,
    px: int | None = None,
    nx: bool = False,
    xx: bool = False,
    keepttl: bool = False,
    get: bool = False,
    exat: int | None = None,
    pxat: int | None = None,
    ifeq: Arg | None = None,
) -> Command[Any]:
    """Set ``key`` to ``value`` (``SET``).

    Hand-written: SET is the most used write, and its builder is kept to one
    comparison per option; its reply is a success flag, or with ``get=True``
    the old value.

    Args:
        key: the key.
        value: the value.
        ex: expire after this many seconds.
        px: expire after this many milliseconds.
        nx: only set the key if it does not exist.
        xx: only set the key if it already exists.
        keepttl: keep the key's current time to live.
        get: return the old value instead of a success flag.
        exat: expire at this Unix time, in seconds.
        pxat: expire at this Unix time, in milliseconds.
        ifeq: only set the key if its current value is this (Valkey 8.1).

    Returns:
        True when the key was set, False when ``nx``/``xx``/``ifeq`` prevented
        it; with ``get=True``, the old value (None if there was none).
    """
    if nx + xx + (ifeq is not None) > 1:
        raise ValueError("set: nx, xx and ifeq are mutually exclusive")
    args: list[Arg] = ["SET", key, value]
    if ex is not None or px is not None or keepttl or exat is not None or pxat is not None:
        if (ex is not None) + (px is not None) + keepttl + (exat is not None) + (
            pxat is not None
        ) > 1:
            raise ValueError("set: ex, px, exat, pxat and keepttl are mutually exclusive")
        if ex is not None:
            args += ["EX", ex]
        elif px is not None:
            args += ["PX", px]
        elif exat is not None:
            args += ["EXAT", exat]
        elif pxat is not None:
            args += ["PXAT", pxat]
        else:
            args.append("KEEPTTL")
    if nx:
        args.append("NX")
    elif xx:
        args.append("XX")
    elif ifeq is not None:
        args += ["IFEQ", ifeq]
    if get:
        args.append("GET")
        return Command(tuple(args))
    return Command(tuple(args), is_ok)


def _pong(reply: Any) -> Any:
    return True if reply in (b"PONG", "PONG") else reply


def ping(message: str | bytes | None = None) -> Command[Any]:
    """``PING``: True for PONG, or the ``message`` echoed back.

    Hand-written: the reply's type depends on whether a message was given,
    and the PONG of a bare PING is more useful as True.
    """
    if message is None:
        return Command(("PING",), _pong)
    return Command(("PING", message))


# Each BITFIELD operation and its number of arguments after the word.
_BITFIELD_OPERATIONS = {"GET": 2, "SET": 3, "INCRBY": 3, "OVERFLOW": 1}


def bitfield(key: Key, *operations: Sequence[Arg]) -> Command[list[int | None]]:
    """Run bitfield operations on the string at ``key`` (``BITFIELD``).

    Hand-written: the operations are a list, in the caller's order, of
    ``("GET", encoding, offset)``, ``("SET", encoding, offset, value)``,
    ``("INCRBY", encoding, offset, increment)`` and ``("OVERFLOW", "WRAP" |
    "SAT" | "FAIL")``, which the specification's nested one-of blocks cannot
    express as keyword arguments.

    Returns:
        One integer per GET, SET and INCRBY (the old value for SET), or None
        where ``OVERFLOW FAIL`` stopped an increment.
    """
    args: list[Arg] = ["BITFIELD", key]
    for operation in operations:
        if isinstance(operation, (str, bytes)) or not operation:
            raise ValueError(
                f"bitfield: an operation is a tuple like ('GET', 'u8', 0), not {operation!r}"
            )
        word = operation[0]
        name = (word.decode() if isinstance(word, bytes) else str(word)).upper()
        count = _BITFIELD_OPERATIONS.get(name)
        if count is None or len(operation) != count + 1:
            raise ValueError(
                f"bitfield: {operation!r} is not one of GET encoding offset, SET encoding offset "
                "value, INCRBY encoding offset increment, OVERFLOW WRAP|SAT|FAIL"
            )
        args += (name, *operation[1:])
    return Command(tuple(args))


def migrate(
    host: str,
    port: int,
    keys: Key | Sequence[Key],
    destination_db: int,
    timeout: int,
    *,
    copy: bool = False,
    replace: bool = False,
    auth: Arg | None = None,
    auth2: tuple[Arg, Arg] | None = None,
) -> Command[bool]:
    """Move keys to another server (``MIGRATE``).

    Hand-written: one key goes in the key's place; several go after
    ``KEYS`` with an empty key in its place, a form the specification only
    hints at with a token that is an empty string.

    Args:
        host: the target server's host.
        port: the target server's port.
        keys: one key, or a list of keys.
        destination_db: the database on the target server.
        timeout: milliseconds the transfer may stay idle.
        copy: ``COPY``: keep the keys on this server.
        replace: ``REPLACE``: replace keys that exist on the target.
        auth: ``AUTH password`` for the target.
        auth2: ``AUTH2 username password`` for the target.

    Returns:
        True when keys were moved, False when none of them existed (NOKEY).
    """
    if auth is not None and auth2 is not None:
        raise ValueError("migrate: auth and auth2 are mutually exclusive")
    names = keys_of(keys)
    if not names:
        raise ValueError("migrate needs at least one key")
    args: list[Arg] = ["MIGRATE", host, port, names[0] if len(names) == 1 else ""]
    args += (destination_db, timeout)
    if copy:
        args.append("COPY")
    if replace:
        args.append("REPLACE")
    if auth is not None:
        args += ("AUTH", auth)
    elif auth2 is not None:
        username, password = auth2
        args += ("AUTH2", username, password)
    if len(names) > 1:
        args += ("KEYS", *names)
    return Command(tuple(args), is_ok)


def client_kill(
    *,
    id: int | Sequence[int] | None = None,  # noqa: A002 - the filter is called ID
    type: str | None = None,  # noqa: A002 - the filter is called TYPE
    user: str | None = None,
    addr: str | None = None,
    laddr: str | None = None,
    skipme: bool | None = None,
    maxage: int | None = None,
) -> Command[int]:
    """Close the connections that match every given filter (``CLIENT KILL``).

    Hand-written: the specification's one-of mixes a legacy form (a bare
    address, answered with OK) with a repeated one-of of filters; this
    helper sends the filter form, always answered with a count.

    Args:
        id: ``ID``: one client id, or several (Valkey 8).
        type: ``TYPE``: normal, primary (master), replica (slave) or pubsub.
        user: ``USER``: the connections of this ACL user.
        addr: ``ADDR ip:port``: the connection from that address.
        laddr: ``LADDR ip:port``: the connections to that local address.
        skipme: ``SKIPME yes|no``: whether to spare the calling connection
            (the server spares it unless told otherwise).
        maxage: ``MAXAGE``: connections older than this many seconds (Valkey 8).

    Returns:
        The number of connections closed.
    """
    args: list[Arg] = ["CLIENT", "KILL"]
    if id is not None:
        args += ("ID", *([id] if isinstance(id, int) else id))
    if type is not None:
        args += ("TYPE", type)
    if user is not None:
        args += ("USER", user)
    if addr is not None:
        args += ("ADDR", addr)
    if laddr is not None:
        args += ("LADDR", laddr)
    if skipme is not None:
        args += ("SKIPME", "YES" if skipme else "NO")
    if maxage is not None:
        args += ("MAXAGE", maxage)
    if len(args) == 2:
        raise ValueError("client_kill needs at least one filter")
    return Command(tuple(args))


def replicaof(host: str | None, port: int | None) -> Command[bytes | str]:
    """Replicate the server at ``host``:``port``, or stop replicating (``REPLICAOF``).

    Hand-written: the specification's one-of of two untokened blocks (a host
    and a port, or the words NO ONE) reads best as ``replicaof(None, None)``
    for NO ONE.

    Returns:
        The server's status text.
    """
    if host is None and port is None:
        return Command(("REPLICAOF", "NO", "ONE"))
    if host is None or port is None:
        raise ValueError("replicaof: give a host and a port, or None and None for NO ONE")
    return Command(("REPLICAOF", host, port))


def slaveof(host: str | None, port: int | None) -> Command[bytes | str]:
    """The old name of :func:`replicaof` (``SLAVEOF``); deprecated since 5.0.0."""
    args = replicaof(host, port).args
    return Command(("SLAVEOF", *args[1:]))
