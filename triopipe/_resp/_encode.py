"""Encoding commands as RESP arrays of bulk strings.

Every command is sent the same way: ``*<argc>\\r\\n`` followed by one
``$<len>\\r\\n<bytes>\\r\\n`` per argument. ``hiredis.pack_command`` does this in C;
:func:`python_encode_command` is the byte-for-byte identical fallback used when
hiredis is missing (or ``TRIOPIPE_PURE_PYTHON=1`` is set).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import Any, TypeAlias, cast

__all__ = [
    "HAVE_HIREDIS",
    "USE_HIREDIS",
    "Arg",
    "encode_alike",
    "encode_command",
    "encode_commands",
    "encode_requests",
    "group_requests",
    "python_encode_command",
]

Arg: TypeAlias = "bytes | bytearray | memoryview | str | int | float"

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis is an optional speed-up
    HAVE_HIREDIS = False
else:
    HAVE_HIREDIS = True

#: Whether the "auto" choice (encoders and ``make_reader``) uses hiredis.
#: ``TRIOPIPE_PURE_PYTHON=1`` forces the pure implementations, e.g. to test
#: them; it is read once, at import.
USE_HIREDIS = HAVE_HIREDIS and os.environ.get("TRIOPIPE_PURE_PYTHON", "") in ("", "0")

# None when encoding in pure Python. The stub leaves the return type out; it
# is always bytes.
_pack: Callable[[tuple[Any, ...]], bytes] | None = (
    cast("Callable[[tuple[Any, ...]], bytes]", hiredis.pack_command) if USE_HIREDIS else None
)


# hiredis.pack_command (3.5) slows down sharply past 64 KiB per argument:
# 1 MiB takes about 1.4 ms against 0.03 ms for python_encode_command, whose
# b"".join copies each argument once; below that, hiredis is the faster.
_BIG_ARGUMENT = 64 * 1024
_SIZED = (bytes, bytearray, memoryview, str)


def _needs_python(args: Sequence[Arg]) -> bool:
    """Whether python_encode_command must pack ``args``: faster, or the only correct one.

    True for an argument over ``_BIG_ARGUMENT`` bytes (faster in Python), and
    for a memoryview that is not C-contiguous: hiredis would send the bytes
    of its underlying buffer instead of the ones the view shows.
    """
    # A loop rather than any(): no generator frame on every SET's path.
    for arg in args:
        kind = type(arg)
        if kind in _SIZED and len(arg) > _BIG_ARGUMENT:  # type: ignore[arg-type]
            return True
        if kind is memoryview and not arg.c_contiguous:  # type: ignore[union-attr]
            return True
    return False


def _unsupported(arg: object) -> TypeError:
    if isinstance(arg, bool):
        # int(True) == 1 would go out as "1" without complaint; that is
        # almost always a bug in the caller, so make it loud.
        return TypeError(
            "bool is not a valid Redis argument (it would be sent as 1/0); "
            "pass an int or a string explicitly"
        )
    return TypeError(
        f"a Redis argument must be bytes, bytearray, memoryview, str, int or float, "
        f"not {type(arg).__name__}"
    )


def python_encode_command(args: Sequence[Arg]) -> bytes:
    """Encode one command without hiredis.

    The output is identical to ``hiredis.pack_command``: str as UTF-8, int as
    decimal, float as ``repr`` (``1e+16``, ``inf``, ``nan``).

    Args:
        args: The command name and its arguments.

    Returns:
        The command as a RESP array of bulk strings.

    Raises:
        ValueError: ``args`` is empty.
        TypeError: An argument is a bool or of an unsupported type.
    """
    if not args:
        raise ValueError("cannot encode an empty command")
    parts: list[bytes] = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        data: bytes
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise _unsupported(arg)
        elif isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, float):
            # float.__repr__, not repr(): a subclass's repr must not leak in.
            data = float.__repr__(arg).encode()
        elif isinstance(arg, (bytearray, memoryview)):
            # bytes() honours strides, so a non-contiguous view is sent as
            # the bytes it shows (hiredis would send its raw buffer instead).
            data = bytes(arg)
        else:
            raise _unsupported(arg)
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


def encode_command(args: Sequence[Arg]) -> bytes:
    """Encode one command, with hiredis when available.

    Args:
        args: The command name and its arguments (a memoryview is sent as
            the bytes it shows, strided or not).

    Returns:
        The command as a RESP array of bulk strings.

    Raises:
        ValueError: ``args`` is empty.
        TypeError: An argument is a bool or of an unsupported type.
    """
    if _pack is None:
        return python_encode_command(args)
    if type(args) is not tuple:
        # pack_command only takes a tuple.
        args = tuple(args)
    if not args:
        # hiredis would happily produce "*0\r\n", which Redis ignores, leaving
        # the caller waiting for a reply that never comes.
        raise ValueError("cannot encode an empty command")
    # Only commands with a value to carry (SET k v, ...) may hold a big one:
    # GET k and PING only check for a view.
    if len(args) > 2:
        if _needs_python(args):
            return python_encode_command(args)
    elif type(args[-1]) is memoryview or type(args[0]) is memoryview:
        return python_encode_command(args)
    try:
        return _pack(args)
    except TypeError:
        # hiredis >= 3 refuses bool, bytearray and int subclasses. The pure
        # encoder handles the legitimate ones (same bytes) and raises a
        # clearer TypeError for the rest, so no check costs the fast path.
        return python_encode_command(args)


def encode_commands(commands: Iterable[Sequence[Arg]]) -> bytes:
    """Encode many commands into one bytes object, for one write.

    Args:
        commands: The commands, each as for :func:`encode_command`.

    Returns:
        The encoded commands, concatenated in order.

    Raises:
        ValueError: A command is empty.
        TypeError: An argument is a bool or of an unsupported type.
    """
    return b"".join(encode_each(commands))


def encode_each(commands: Iterable[Sequence[Arg]], first: int = 0) -> list[bytes]:
    """Encode many commands, one bytes object each (in C when possible).

    For callers that cut a long pipeline into requests by size: joining the
    parts is then their choice. Either every command is encoded, or none.

    Args:
        commands: The commands, each as for :func:`encode_command`.
        first: the number of the first command, for error messages (a
            window of a longer pipeline).

    Raises:
        ValueError: A command is empty; the message says which.
        TypeError: An argument is a bool or of an unsupported type; the
            message says in which command.
    """
    batch = commands if isinstance(commands, list) else list(commands)
    # Commands of one pipeline tend to look alike: the first one tells
    # whether hiredis or the per-command path (big arguments) is faster.
    # Views are looked for in every command: a strided one must not reach
    # hiredis.
    if (
        _pack is not None
        and batch
        and all(batch)
        and not _needs_python(batch[0])
        and memoryview not in set(map(type, chain.from_iterable(batch)))
    ):
        try:
            # All in C when every command is a tuple of exact supported
            # types: the usual case, about as fast as pack_command itself.
            return list(map(_pack, batch))
        except TypeError:
            pass
    encode = encode_command if _pack is not None else python_encode_command
    try:
        return [encode(command) for command in batch]
    except (TypeError, ValueError):
        raise _which_command(batch, first, encode) from None


#: ``$<n>`` for argument lengths below 1 KiB, looked up rather than formatted.
_LENGTHS = tuple(b"$%d" % n for n in range(1024))
_STARS = tuple(b"*%d" % n for n in range(16))


def encode_alike(commands: list[Sequence[Arg]]) -> bytes | None:
    """Encode commands of one shape as one bytes object, or None for any other window.

    A window of a bulk load usually holds commands of one length, each
    argument of which is bytes shorter than 1 KiB (``SET key value`` read
    from a file). Such a window is encoded column by column, every loop in
    C, about 1.5x as fast as packing each command with hiredis, and into the
    same bytes. Anything else (lengths that differ, a str, int or
    memoryview argument, a longer one) gives None: the caller then encodes
    command by command, which also names a bad argument.
    """
    if set(map(type, chain.from_iterable(commands))) != {bytes}:
        return None
    return _encode_columns(cast("list[Sequence[bytes]]", commands))


def _encode_columns(commands: list[Sequence[bytes]]) -> bytes | None:
    """:func:`encode_alike` for commands known to hold bytes only."""
    arity = len(commands[0])
    if not 0 < arity < len(_STARS) or len(set(map(len, commands))) != 1:
        return None
    # Every piece of every command, in order, placed by slice assignment:
    # "*<arity>", then "$<length>" and the argument for each column.
    step = 2 * arity + 1
    parts = [_STARS[arity]] * (step * len(commands))
    header = _LENGTHS.__getitem__
    try:
        for index, column in enumerate(zip(*commands, strict=True)):
            parts[2 * index + 1 :: step] = list(map(header, map(len, column)))
            parts[2 * index + 2 :: step] = column
    except IndexError:  # an argument of 1 KiB or more
        return None
    return b"\r\n".join(parts) + b"\r\n"


def encode_requests(
    commands: Iterable[Sequence[Arg]], first: int = 0, limit: int = 1024 * 1024
) -> list[tuple[bytes, int]]:
    """Encode commands into requests of at most ``limit`` bytes each (but one command).

    Each request is ``(bytes, number of commands)``. A window of small
    commands (the usual case) becomes one request, encoded by
    :func:`encode_alike` or joined in C without a list of parts; big values
    go as several requests instead of one huge join. Either every command is
    encoded, or none.

    Raises:
        ValueError, TypeError: as :func:`encode_each`.
    """
    batch = commands if isinstance(commands, list) else list(commands)
    kinds = set(map(type, chain.from_iterable(batch)))
    if (
        kinds == {bytes}
        and (joined := _encode_columns(cast("list[Sequence[bytes]]", batch))) is not None
        and len(joined) <= limit
    ):
        return [(joined, len(batch))]
    if (
        _pack is not None
        and batch
        and all(batch)
        and not _needs_python(batch[0])
        and memoryview not in kinds
    ):
        try:
            joined = b"".join(map(_pack, batch))
        except TypeError:
            pass
        else:
            if len(joined) <= limit:
                return [(joined, len(batch))]
    return group_requests(encode_each(batch, first), limit)


def group_requests(parts: list[bytes], limit: int) -> list[tuple[bytes, int]]:
    """Encoded commands joined into requests of at most ``limit`` bytes (but one command)."""
    if sum(map(len, parts)) <= limit:
        return [(b"".join(parts), len(parts))]
    requests: list[tuple[bytes, int]] = []
    chunk: list[bytes] = []
    size = 0
    for part in parts:
        if chunk and size + len(part) > limit:
            requests.append((b"".join(chunk), len(chunk)))
            chunk, size = [], 0
        chunk.append(part)
        size += len(part)
    if chunk:
        requests.append((b"".join(chunk), len(chunk)))
    return requests


def _which_command(
    batch: list[Sequence[Arg]], first: int, encode: Callable[[Sequence[Arg]], bytes]
) -> Exception:
    """The error of the first command of ``batch`` that cannot be encoded, naming it."""
    for index, command in enumerate(batch):
        try:
            encode(command)
        except (TypeError, ValueError) as exc:  # noqa: PERF203 - on the error path only
            name = _name(command)
            return type(exc)(f"command #{first + index}{name}: {exc}")
    return AssertionError("no command failed to encode")  # pragma: no cover


def _name(command: Sequence[Arg]) -> str:
    if not command:
        return ""
    name = command[0]
    if isinstance(name, (bytes, str)) and len(name) < 64:
        return f" ({name!r})" if isinstance(name, bytes) else f" ({name})"
    return ""
