"""Redis's inline command syntax, as the server and ``redis-cli`` split a text line.

Sans-io: bytes in, arguments out. The rules are those of ``sdssplitargs`` in
Redis's ``sds.c``, which both ``redis-cli`` and the server (for inline
commands, what ``redis-cli --pipe`` sends for text) use:

- arguments are separated by spaces, tabs, ``\\r`` or ``\\n``; leading blanks
  (also ``\\v`` and ``\\f``) are skipped;
- inside double quotes, ``\\xHH`` is the byte HH, ``\\n \\r \\t \\b \\a`` are
  control characters and a backslash before any other character stands for
  that character (``\\\\``, ``\\"``);
- inside single quotes everything is literal except ``\\'``;
- a quote may open in the middle of an argument (``a"b c"`` is ``ab c``), but a
  closing quote must be followed by a blank or the end of the line;
- an unclosed quote is an error; so is a closing quote followed by anything
  but a blank;
- a NUL byte ends the line, as in C.

Outside quotes a backslash is an ordinary character.
"""

from __future__ import annotations

__all__ = ["InlineSyntaxError", "split_inline"]

# What ends an unquoted argument, and what is skipped between arguments
# (C's isspace): they differ in \v and \f, as in sds.c.
_ARGUMENT_ENDS = frozenset(b" \n\r\t")
_BLANKS = frozenset(b" \n\r\t\v\f")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_DOUBLE, _SINGLE, _BACKSLASH = ord('"'), ord("'"), ord("\\")
# A line holding none of these bytes splits like bytes.split() does.
_SPECIAL = (b'"', b"'", b"\v", b"\f", b"\0")


class InlineSyntaxError(ValueError):
    """Raised for a line Redis would refuse: an unclosed quote, or text right after one."""


def split_inline(line: bytes) -> list[bytes]:
    """The arguments of one inline command line (no arguments for a blank line).

    Raises:
        InlineSyntaxError: unbalanced quotes, or a closing quote followed by
            something other than a blank.
    """
    if not any(special in line for special in _SPECIAL):
        return line.split()
    end = line.find(b"\0")
    if end >= 0:
        line = line[:end]
    arguments: list[bytes] = []
    position, length = 0, len(line)
    while True:
        while position < length and line[position] in _BLANKS:
            position += 1
        if position == length:
            return arguments
        argument, position = _argument(line, position)
        arguments.append(argument)


def _argument(line: bytes, position: int) -> tuple[bytes, int]:
    """One argument starting at ``position``, and where the next one may start."""
    current = bytearray()
    length = len(line)
    while position < length:
        byte = line[position]
        if byte in _ARGUMENT_ENDS:
            return bytes(current), position + 1
        # A closing quote ends the argument (what follows it is a blank).
        if byte == _DOUBLE:
            position = _double_quoted(line, position + 1, current)
            return bytes(current), position
        if byte == _SINGLE:
            position = _single_quoted(line, position + 1, current)
            return bytes(current), position
        current.append(byte)
        position += 1
    return bytes(current), position


def _double_quoted(line: bytes, position: int, current: bytearray) -> int:
    """Append a double-quoted part to ``current``; returns the position after its quote."""
    length = len(line)
    while position < length:
        byte = line[position]
        if byte == _BACKSLASH and position + 1 < length:
            following = line[position + 1]
            if (
                following == ord("x")
                and position + 3 < length
                and line[position + 2] in _HEX_DIGITS
                and line[position + 3] in _HEX_DIGITS
            ):
                current.append(int(line[position + 2 : position + 4], 16))
                position += 4
            else:
                current.append(_ESCAPES.get(following, following))
                position += 2
        elif byte == _DOUBLE:
            return _closed(line, position, "double")
        else:
            current.append(byte)
            position += 1
    raise InlineSyntaxError("unbalanced quotes: a double quote is not closed")


def _single_quoted(line: bytes, position: int, current: bytearray) -> int:
    """Append a single-quoted part to ``current``; returns the position after its quote."""
    length = len(line)
    while position < length:
        byte = line[position]
        if byte == _BACKSLASH and position + 1 < length and line[position + 1] == _SINGLE:
            current.append(_SINGLE)
            position += 2
        elif byte == _SINGLE:
            return _closed(line, position, "single")
        else:
            current.append(byte)
            position += 1
    raise InlineSyntaxError("unbalanced quotes: a single quote is not closed")


def _closed(line: bytes, quote: int, kind: str) -> int:
    """The position after a closing quote, which must end the argument."""
    after = quote + 1
    if after < len(line) and line[after] not in _BLANKS:
        raise InlineSyntaxError(
            f"a closing {kind} quote must be followed by a space, not {chr(line[after])!r}"
        )
    return after
