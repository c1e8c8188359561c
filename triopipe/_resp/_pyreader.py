"""The pure-Python reply reader: the fallback when hiredis is missing.

Theory of operation
-------------------

Fed bytes go to the end of one bytearray; ``_pos`` marks how far parsing has
got. Parsing takes one element at a time: a line (``+OK``, ``:1``, ``*3``,
...) or the body of a bulk string. An element is consumed only once it is
complete, so stopping for more bytes never loses work. Three pieces of state
carry a reply across :data:`NEED_DATA`, and each makes resuming O(1):

* ``_stack``: the aggregates (arrays, maps, sets, pushes, attributes) opened
  but not complete, innermost last, each with its elements so far. An explicit
  stack, not recursion, because the depth is chosen by the server; it is
  capped at ``max_depth``. Elements are appended as they arrive: a declared
  count is a promise, never an allocation size.
* ``_bulk_kind``/``_bulk_len``: a bulk header already read, waiting for its
  body. The length is checked against ``max_bulk_length`` when the header is
  read, before anything is allocated; afterwards each call only compares the
  buffered length, so a 10 MB body fed byte by byte costs linear time.
* ``_scan``: where the search for the current line's CRLF resumes, so a long
  line fed byte by byte is scanned once.

``feed`` drops the consumed prefix of the buffer first; deleting from the
front of a bytearray is cheap in CPython (the start pointer moves).

The grammar is checked as strictly as hiredis checks it (integers in int64,
no ``+``, no leading zeros, no CR/LF inside simple strings, CRLF after every
bulk body), so that both readers reject the same streams. A malformed stream
poisons the reader: every later ``next_reply`` raises the same ProtocolError,
and fed bytes are dropped.

Attributes (``|``) are read and dropped: the value after them is the reply.
Redis only sends them to a client that asked (``CLIENT TRACKING`` does not);
hiredis instead returns the attribute map as a reply of its own, a flat list,
and inside an aggregate counts it as one of the elements, which desynchronises
the reply. Blob errors (``!``) are read as error replies; hiredis 3.5 rejects
them as a protocol error (Redis itself never sends them).
"""

from __future__ import annotations

import re
from typing import Final

from .._exceptions import ProtocolError, error_from_reply

__all__ = ["DEFAULT_MAX_BULK_LENGTH", "DEFAULT_MAX_DEPTH", "NEED_DATA", "Push", "PythonReader"]

#: Redis's own default ``proto-max-bulk-len``.
DEFAULT_MAX_BULK_LENGTH: Final = 512 * 1024 * 1024
DEFAULT_MAX_DEPTH: Final = 64


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        # Pickle by name, so the sentinel stays a singleton.
        return "NEED_DATA"


#: Returned by ``next_reply`` when the bytes so far hold no complete reply.
#: A sentinel object, because None, False and 0 are all valid replies.
NEED_DATA: Final = _NeedData()


class Push(list[object]):
    """A RESP3 push frame (``>``): an out-of-band message, not a reply.

    Pub/sub messages and client-side caching invalidations arrive this way
    on a RESP3 connection, interleaved with replies; the connection routes a
    Push to its subscribers instead of the next reply slot.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Push({list.__repr__(self)})"


# Reply type bytes.
_SIMPLE: Final = ord("+")
_ERROR: Final = ord("-")
_INTEGER: Final = ord(":")
_BULK: Final = ord("$")
_ARRAY: Final = ord("*")
_NULL: Final = ord("_")
_BOOLEAN: Final = ord("#")
_DOUBLE: Final = ord(",")
_BIG_NUMBER: Final = ord("(")
_BLOB_ERROR: Final = ord("!")
_VERBATIM: Final = ord("=")
_MAP: Final = ord("%")
_SET: Final = ord("~")
_ATTRIBUTE: Final = ord("|")
_PUSH: Final = ord(">")

_BULK_KINDS: Final = frozenset((_BULK, _VERBATIM, _BLOB_ERROR))
_AGGREGATE_KINDS: Final = frozenset((_ARRAY, _SET, _MAP, _PUSH, _ATTRIBUTE))

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

# What strtod accepts, minus what hiredis refuses (sign "+", hex, "infinity").
_DOUBLE_RE: Final = re.compile(rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DOUBLE_SPECIAL: Final = {
    b"inf": float("inf"),
    b"-inf": float("-inf"),
    b"nan": float("nan"),
    b"-nan": float("nan"),
}
_BIG_NUMBER_RE: Final = re.compile(rb"-?[0-9]*")


class _Skip:
    __slots__ = ()


# Returned by the element parsers when there is no value to deliver yet
# (a header was read) or at all (an attribute ended).
_SKIP: Final = _Skip()


class _Frame:
    """An aggregate being built."""

    __slots__ = ("items", "kind", "remaining")

    def __init__(self, kind: int, remaining: int) -> None:
        self.kind = kind
        self.remaining = remaining
        self.items: list[object] = []


def _parse_int(line: bytes) -> int:
    try:
        value = int(line)
    except ValueError:
        value = None
    # int() also takes "+1", " 1", "0_1"; RESP allows only the canonical form.
    if value is None or b"%d" % value != line or not _INT64_MIN <= value <= _INT64_MAX:
        raise ProtocolError(f"invalid integer {line[:40]!r} in reply")
    return value


def _parse_double(line: bytes) -> float:
    special = _DOUBLE_SPECIAL.get(line.lower())
    if special is not None:
        return special
    if _DOUBLE_RE.fullmatch(line) is not None:
        value = float(line)
        if value not in (float("inf"), float("-inf")) and (
            value != 0.0 or not re.search(rb"[1-9]", line.partition(b"e")[0].partition(b"E")[0])
        ):
            return value
    # Out of range ("1e400", "1e-400") is refused like hiredis (strtod's ERANGE).
    raise ProtocolError(f"invalid double {line[:40]!r} in reply")


class PythonReader:
    """A :class:`~triopipe._resp.Reader` in pure Python.

    Args:
        decode: Return strings as str (UTF-8) instead of bytes.
        max_bulk_length: Largest bulk string (and line) accepted, in bytes;
            checked from the header, before allocating.
        max_depth: Deepest nesting of aggregates accepted.
    """

    __slots__ = (
        "_buf",
        "_bulk_kind",
        "_bulk_len",
        "_decode",
        "_decode_error",
        "_error",
        "_max_bulk_length",
        "_max_depth",
        "_pos",
        "_scan",
        "_stack",
    )

    def __init__(
        self,
        *,
        decode: bool = False,
        max_bulk_length: int = DEFAULT_MAX_BULK_LENGTH,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._decode = decode
        self._max_bulk_length = max_bulk_length
        self._max_depth = max_depth
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0
        self._bulk_kind = 0  # 0: no bulk header pending
        self._bulk_len = 0
        self._stack: list[_Frame] = []
        self._decode_error: UnicodeDecodeError | None = None
        self._error: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the server (dropped once poisoned)."""
        if self._error is not None:
            return
        pos = self._pos
        if pos:
            del self._buf[:pos]
            self._pos = 0
            if self._scan:
                self._scan -= pos
        self._buf += data

    def next_reply(self) -> object:
        """Return the next complete reply, or :data:`NEED_DATA`.

        Raises:
            ProtocolError: The bytes are not valid RESP (now or earlier).
            UnicodeDecodeError: With ``decode=True``, this reply held invalid
                UTF-8. It has been consumed; the next call goes on normally.
        """
        if self._error is not None:
            raise ProtocolError(self._error)
        try:
            return self._next_reply()
        except ProtocolError as exc:
            self._error = str(exc)
            self._buf.clear()
            self._stack.clear()
            raise

    def read_replies(self, data: bytes | bytearray | memoryview) -> list[object]:
        """Feed ``data`` and return every reply now complete, in order.

        A reply that failed to decode is returned as its UnicodeDecodeError.

        Raises:
            ProtocolError: The bytes are not valid RESP (now or earlier).
        """
        self.feed(data)
        replies: list[object] = []
        while True:
            try:
                reply = self.next_reply()
            except UnicodeDecodeError as exc:
                replies.append(exc)
                continue
            if reply is NEED_DATA:
                return replies
            replies.append(reply)

    def has_partial(self) -> bool:
        """Whether bytes of a reply not yet complete are held."""
        return bool(self._stack or self._bulk_kind or len(self._buf) > self._pos)

    def _next_reply(self) -> object:
        buf = self._buf
        stack = self._stack
        while True:
            pos = self._pos
            kind = self._bulk_kind
            if kind:
                end = pos + self._bulk_len
                if len(buf) < end + 2:
                    return NEED_DATA
                if buf[end : end + 2] != b"\r\n":
                    raise ProtocolError("bulk string not followed by CRLF")
                self._pos = end + 2
                self._bulk_kind = 0
                value = self._bulk_value(kind, bytes(buf[pos:end]))
            else:
                newline = buf.find(b"\r\n", max(pos, self._scan))
                if newline < 0:
                    if len(buf) - pos > self._max_bulk_length:
                        raise ProtocolError("reply line longer than max_bulk_length")
                    # Resume at the last byte: it may be the CR of the CRLF.
                    self._scan = max(pos, len(buf) - 1)
                    return NEED_DATA
                if newline == pos:
                    raise ProtocolError("empty reply line: missing type byte")
                self._pos = newline + 2
                self._scan = 0
                value = self._line_value(buf[pos], bytes(buf[pos + 1 : newline]))
            if value is _SKIP:
                continue
            # Deliver the value to the innermost open aggregate; completing it
            # delivers the aggregate to its parent, and so on up.
            while stack:
                frame = stack[-1]
                frame.items.append(value)
                frame.remaining -= 1
                if frame.remaining:
                    break
                stack.pop()
                value = self._build(frame)
                if value is _SKIP:
                    break
            else:
                error = self._decode_error
                if error is not None:
                    self._decode_error = None
                    raise error
                return value

    def _text(self, raw: bytes) -> object:
        if not self._decode:
            return raw
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            # Finish reading the reply first, so the stream stays in step;
            # the top-level reply raises it (only the first one).
            if self._decode_error is None:
                self._decode_error = exc
            return None

    def _line_value(self, kind: int, line: bytes) -> object:
        if kind in (_SIMPLE, _ERROR):
            if b"\r" in line or b"\n" in line:
                raise ProtocolError("CR or LF inside a simple string or error reply")
            if kind == _SIMPLE:
                return self._text(line)
            return error_from_reply(line.decode("utf-8", "replace"))
        if kind == _INTEGER:
            return _parse_int(line)
        if kind in _BULK_KINDS:
            length = self._parse_length(line)
            if length < 0:
                if kind == _BLOB_ERROR:
                    raise ProtocolError("null blob error")
                return None
            if length > self._max_bulk_length:
                raise ProtocolError(
                    f"bulk string of {length} bytes is over max_bulk_length"
                    f" ({self._max_bulk_length})"
                )
            self._bulk_kind = kind
            self._bulk_len = length
            return _SKIP
        if kind in _AGGREGATE_KINDS:
            count = self._parse_length(line)
            if count < 0:
                if kind == _ATTRIBUTE:
                    raise ProtocolError("null attribute")
                return None
            # Each element takes at least 3 bytes ("_\r\n"), so a count whose
            # elements could not fit in max_bulk_length bytes is not a reply
            # worth waiting for (hiredis caps counts at 2**32 - 1 itself).
            if count > self._max_bulk_length // 3:
                raise ProtocolError(
                    f"aggregate of {count} elements is over what max_bulk_length"
                    f" ({self._max_bulk_length} bytes) can hold"
                )
            if kind in (_MAP, _ATTRIBUTE):
                count *= 2
            if not count:
                return self._build(_Frame(kind, 0))
            if len(self._stack) >= self._max_depth:
                raise ProtocolError(f"reply nested deeper than max_depth ({self._max_depth})")
            self._stack.append(_Frame(kind, count))
            return _SKIP
        if kind == _NULL:
            if line:
                raise ProtocolError("invalid null reply")
            return None
        if kind == _BOOLEAN:
            if line in (b"t", b"T"):
                return True
            if line in (b"f", b"F"):
                return False
            raise ProtocolError(f"invalid boolean {line[:40]!r} in reply")
        if kind == _DOUBLE:
            return _parse_double(line)
        if kind == _BIG_NUMBER:
            if _BIG_NUMBER_RE.fullmatch(line) is None:
                raise ProtocolError(f"invalid big number {line[:40]!r} in reply")
            return self._text(line)
        raise ProtocolError(f"unknown reply type byte {bytes((kind,))!r}")

    def _parse_length(self, line: bytes) -> int:
        try:
            length = _parse_int(line)
        except ProtocolError:
            raise ProtocolError(f"invalid length {line[:40]!r} in reply") from None
        if length < -1:
            raise ProtocolError(f"negative length {length} in reply")
        return length

    def _bulk_value(self, kind: int, raw: bytes) -> object:
        if kind == _BULK:
            return self._text(raw)
        if kind == _VERBATIM:
            # "txt:" or "mkd:" tells how to render; callers want the text.
            if len(raw) < 4 or raw[3] != ord(":"):
                raise ProtocolError("verbatim string without its 3-letter format prefix")
            return self._text(raw[4:])
        return error_from_reply(raw.decode("utf-8", "replace"))

    @staticmethod
    def _build(frame: _Frame) -> object:
        kind = frame.kind
        items = frame.items
        if kind in (_ARRAY, _SET):
            return items
        if kind == _PUSH:
            return Push(items)
        if kind == _MAP:
            it = iter(items)
            try:
                return dict(zip(it, it, strict=True))
            except TypeError as exc:
                raise ProtocolError(f"invalid map key in reply: {exc}") from None
        return _SKIP  # an attribute: dropped
