"""Reading replies: the reader interface, its hiredis implementation and the factory.

Theory of operation
-------------------

A reader is a sans-io state machine in the style of h11: the connection hands
it whatever bytes arrived (:meth:`Reader.feed`) and pulls complete replies out
(:meth:`Reader.next_reply`), getting :data:`NEED_DATA` when the bytes so far
end in the middle of a reply. :meth:`Reader.read_replies` does both in one
call and is the connection's hot path: one Python call per socket read, not
one per reply. The reader never does I/O and never blocks.

Values, the same for both implementations (the shared test vectors hold them
to it): simple and bulk strings are bytes (str with ``decode=True``), nulls
are None, integers int, arrays and RESP3 sets list, maps dict, doubles float,
booleans bool, big numbers the digits as bytes/str, verbatim strings the text
after their ``txt:`` prefix, push frames :class:`Push`. Error replies are
*returned* as :class:`~triopipe.ResponseError` instances, at any depth, so an
``EXEC`` reply can hold the error of one command next to the results of the
others; raising is the caller's decision.

Failure modes:

* Malformed bytes raise :class:`~triopipe.ProtocolError`, and the reader stays
  poisoned: every later call raises again. The connection must be closed.
* With ``decode=True``, a reply holding invalid UTF-8 is consumed whole (with
  everything nested in it), then :meth:`Reader.next_reply` raises
  :class:`UnicodeDecodeError` for it, once. The reader stays in step: the next
  reply reads normally. :meth:`Reader.read_replies` cannot raise without losing
  the replies around the bad one, so it puts the UnicodeDecodeError instance in
  the list, in the bad reply's place, just as error replies are values.

The pure reader (:mod:`._pyreader`) enforces ``max_depth`` and
``max_bulk_length`` from the headers, before any allocation. hiredis has its
own rules, checked in the tests: it caps nesting at 1024 levels, and it does
pre-allocate a list from an array header (``*3333333333`` fails with
MemoryError, which is turned into ProtocolError here; a header just below the
memory limit does allocate). :class:`HiredisReader` enforces
``max_bulk_length`` by the size of hiredis's buffer, which holds the incomplete
element: so it trips after the bytes arrived, not from the header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol, cast

from .._exceptions import ProtocolError, error_from_reply
from ._encode import HAVE_HIREDIS, USE_HIREDIS
from ._pyreader import DEFAULT_MAX_BULK_LENGTH, DEFAULT_MAX_DEPTH, NEED_DATA, Push, PythonReader

if HAVE_HIREDIS:
    import hiredis

__all__ = [
    "NEED_DATA",
    "HiredisReader",
    "Push",
    "PythonReader",
    "Reader",
    "make_reader",
]

# hiredis trims its buffer once it has consumed 1 KiB of it, so the buffer is
# the incomplete element plus at most that much of what came before.
_HIREDIS_BUFFER_SLACK: Final = 64 * 1024
# Largest piece of a read fed to hiredis at once. Every reply hiredis takes
# that ends past the buffer's first KiB moves the rest of the buffer to its
# front (the trim above), so feeding a whole 256 KiB read costs time
# quadratic in the read's size: measured per 4 KiB bulk reply, 1,240 ns fed
# whole against 300 ns fed in 16 KiB pieces (8-24 KiB are within 5% of
# that); per 100-byte reply 150 against 60 ns; per 5-byte reply 58 against
# 47. Large reads come exactly when the client falls behind a fast stream,
# so without this a client that lags pays more per reply and lags further.
_FEED_BYTES: Final = 16 * 1024


class Reader(Protocol):
    """What the connection needs from a reply reader."""

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the server."""
        ...

    def next_reply(self) -> object:
        """Return the next complete reply, or :data:`NEED_DATA`.

        Raises:
            ProtocolError: The bytes are not valid RESP (now or earlier).
            UnicodeDecodeError: With ``decode=True``, this reply held invalid
                UTF-8. It has been consumed; the next call goes on normally.
        """
        ...

    def has_partial(self) -> bool:
        """Whether bytes of a reply not yet complete are held (after all
        complete replies were taken)."""
        ...

    def read_replies(self, data: bytes | bytearray | memoryview) -> list[object]:
        """Feed ``data`` and return every reply now complete, in order.

        A reply that failed to decode is returned as its UnicodeDecodeError.

        Raises:
            ProtocolError: The bytes are not valid RESP (now or earlier).
                Replies completed earlier in the same call are lost with the
                connection.
        """
        ...


class HiredisReader:
    """A :class:`Reader` on ``hiredis.Reader``: the fast one.

    Args:
        decode: Return strings as str (UTF-8) instead of bytes.
        max_bulk_length: Largest bulk string accepted, in bytes.
        max_depth: Ignored: hiredis caps nesting at 1024 levels by itself, and
            checking every reply's depth in Python would cost the hot path.
    """

    __slots__ = ("_buffer_limit", "_feed", "_gets", "_len", "_reader")

    def __init__(
        self,
        *,
        decode: bool = False,
        max_bulk_length: int = DEFAULT_MAX_BULK_LENGTH,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if not HAVE_HIREDIS:
            raise ImportError("hiredis is not installed")
        del max_depth
        # protocolError makes hiredis raise triopipe's ProtocolError itself,
        # and replyError builds our error values, so neither costs a Python
        # frame of ours per reply. hiredis passes error text already decoded
        # as UTF-8 with errors="replace", whatever the encoding.
        self._reader = hiredis.Reader(
            protocolError=ProtocolError,
            replyError=error_from_reply,
            notEnoughData=NEED_DATA,
            encoding="utf-8" if decode else None,
        )
        # Bound methods, looked up once instead of per call.
        self._gets: Callable[[], Any] = self._reader.gets
        self._feed: Callable[[bytes | bytearray | memoryview], None] = cast(
            "Callable[[bytes | bytearray | memoryview], None]", self._reader.feed
        )
        self._len: Callable[[], int] = self._reader.len
        self._buffer_limit = max_bulk_length + _HIREDIS_BUFFER_SLACK

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the server."""
        self._feed(data)

    def has_partial(self) -> bool:
        """Whether bytes of a reply not yet complete are held."""
        # len() counts consumed bytes too; has_data() only unread ones.
        return bool(self._reader.has_data())

    def next_reply(self) -> object:
        """Return the next complete reply, or :data:`NEED_DATA`. See :class:`Reader`."""
        try:
            reply = self._gets()
        except (MemoryError, TypeError) as exc:
            raise self._poison(exc) from exc
        if reply is NEED_DATA:
            self._check_buffer()
        elif reply.__class__ is _PushNotification:
            reply = Push(cast("list[object]", reply))
        return reply

    def read_replies(self, data: bytes | bytearray | memoryview) -> list[object]:
        """Feed ``data`` and return every reply now complete. See :class:`Reader`."""
        replies: list[object] = []
        if len(data) <= _FEED_BYTES:
            self._feed(data)
            self._take_replies(replies)
        else:
            view = memoryview(data)
            for start in range(0, len(view), _FEED_BYTES):
                self._feed(view[start : start + _FEED_BYTES])
                self._take_replies(replies)
        self._check_buffer()
        return replies

    def _take_replies(self, replies: list[object]) -> None:
        """Append every reply complete in what was fed so far to ``replies``."""
        gets = self._gets
        append = replies.append
        while True:
            try:
                reply = gets()
                while reply is not NEED_DATA:
                    # One class check per reply is the price of push frames;
                    # hiredis's own PushNotification is not part of our API.
                    if reply.__class__ is _PushNotification:
                        reply = Push(cast("list[object]", reply))
                    append(reply)
                    reply = gets()
                break
            except UnicodeDecodeError as exc:
                # hiredis consumed the bad reply; keep it as a value, in place.
                append(exc)
            except (MemoryError, TypeError) as exc:
                raise self._poison(exc) from exc

    def _check_buffer(self) -> None:
        if self._len() > self._buffer_limit:
            raise self._poison(None)

    def _poison(self, cause: BaseException | None) -> ProtocolError:
        # MemoryError: an aggregate header hiredis tried to pre-allocate.
        # TypeError: a map with an unhashable (aggregate) key. hiredis poisons
        # itself after both; the buffer limit is ours, so poison by hand.
        if cause is None:
            message = "a bulk string or line is longer than max_bulk_length"
        elif isinstance(cause, MemoryError):
            message = "an aggregate reply declares more elements than fit in memory"
        else:
            message = f"invalid map key in reply: {cause}"

        def poisoned() -> Any:
            raise ProtocolError(message)

        def drop(data: bytes | bytearray | memoryview) -> None:
            pass

        self._gets = poisoned
        self._feed = drop
        return ProtocolError(message)


_PushNotification: Final[type] = hiredis.PushNotification if HAVE_HIREDIS else type(None)


def make_reader(
    *,
    decode: bool = False,
    implementation: str = "auto",
    max_bulk_length: int = DEFAULT_MAX_BULK_LENGTH,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Reader:
    """Create a reply reader.

    Args:
        decode: Return strings as str (UTF-8) instead of bytes.
        implementation: ``"hiredis"``, ``"python"``, or ``"auto"``: hiredis
            when it is installed, unless ``TRIOPIPE_PURE_PYTHON=1`` was set when
            triopipe was imported.
        max_bulk_length: Largest bulk string accepted, in bytes.
        max_depth: Deepest nesting of aggregates accepted (pure reader only).

    Returns:
        A new reader.

    Raises:
        ValueError: Unknown ``implementation``.
        ImportError: ``implementation="hiredis"`` without hiredis installed.
    """
    if implementation == "auto":
        implementation = "hiredis" if USE_HIREDIS else "python"
    if implementation == "hiredis":
        return HiredisReader(decode=decode, max_bulk_length=max_bulk_length, max_depth=max_depth)
    if implementation == "python":
        return PythonReader(decode=decode, max_bulk_length=max_bulk_length, max_depth=max_depth)
    raise ValueError(f"unknown reader implementation {implementation!r}")
