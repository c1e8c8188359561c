"""A minimal blocking RESP connection: a plain socket, ``hiredis`` to pack and parse.

It serves three purposes, none of which may depend on the client under test:
the raw ceilings of B1 and B8 (one thread, no event loop, no client library), loading
the data sets that the timed sections read, and sampling ``INFO memory`` from
the harness while a measurement runs.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import hiredis

__all__ = ["RawConnection", "address_of", "pack", "parse_info"]

_READ_SIZE = 256 * 1024
_FEED_BYTES = 16 * 1024


def pack(args: tuple[Any, ...]) -> bytes:
    """``hiredis.pack_command``, typed for any tuple of arguments."""
    packed: bytes = hiredis.pack_command(args)
    return packed


def address_of(url: str) -> tuple[str, int]:
    """The ``(host, port)`` of a ``redis://host:port`` URL."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def parse_info(text: bytes | str) -> dict[str, str]:
    """The ``field:value`` lines of an ``INFO`` reply, as a dict of strings."""
    if isinstance(text, bytes):
        text = text.decode()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and not name.startswith("#"):
            fields[name] = value
    return fields


class RawConnection:
    """One blocking TCP connection speaking RESP2 through hiredis."""

    def __init__(self, host: str, port: int, *, timeout: float | None = 60.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = hiredis.Reader()

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = 60.0) -> RawConnection:
        host, port = address_of(url)
        return cls(host, port, timeout=timeout)

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send(self, payload: bytes) -> None:
        """Write ``payload`` (already encoded commands) whole."""
        self._sock.sendall(payload)

    def drain(self, count: int) -> None:
        """Read and discard ``count`` replies; raise on the first error reply."""
        reader = self._reader
        recv = self._sock.recv
        while count:
            reply = reader.gets()
            if reply is False:
                data = recv(_READ_SIZE)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                reader.feed(data)
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise reply
            count -= 1

    def read(self, count: int) -> list[Any]:
        """Read ``count`` replies and return them; raise on the first error reply."""
        replies: list[Any] = []
        reader = self._reader
        while len(replies) < count:
            reply = reader.gets()
            if reply is False:
                data = self._sock.recv(_READ_SIZE)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                reader.feed(data)
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise reply
            replies.append(reply)
        return replies

    def run_window(
        self, payloads: Iterator[bytes], window: int, take: Callable[[list[Any]], object]
    ) -> int:
        """Send encoded commands with up to ``window`` of them in flight; return how many.

        A sliding window, B8's raw ceiling: as soon as replies come in, as many
        commands go out, so the link never idles while commands remain. The
        replies of each read go to ``take`` and are not kept; the first error
        reply raises.
        """
        reader, recv, send = self._reader, self._sock.recv, self._sock.sendall
        first = list(itertools.islice(payloads, window))
        send(b"".join(first))
        in_flight, done = len(first), 0
        while in_flight:
            data = recv(_READ_SIZE)
            if not data:
                raise ConnectionResetError("the server closed the connection")
            replies = []
            # Fed in pieces, as triopipe does: hiredis moves what is left of
            # its buffer after each reply, a cost quadratic in the piece's size.
            for start in range(0, len(data), _FEED_BYTES):
                reader.feed(data[start : start + _FEED_BYTES])
                while (reply := reader.gets()) is not False:
                    if isinstance(reply, hiredis.ReplyError):
                        raise reply
                    replies.append(reply)
            take(replies)
            answered = len(replies)
            in_flight -= answered
            done += answered
            more = list(itertools.islice(payloads, answered))
            if more:
                send(b"".join(more))
                in_flight += len(more)
        return done

    def execute(self, *args: bytes | str | int | float) -> Any:
        """Run one command and return its reply."""
        self.send(pack(args))
        return self.read(1)[0]

    def execute_many(self, commands: Iterable[Sequence[bytes | str | int | float]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies."""
        payloads = [pack(tuple(command)) for command in commands]
        self.send(b"".join(payloads))
        return self.read(len(payloads))

    def add_set(self, key: str, members: Sequence[str], *, chunk: int = 10_000) -> None:
        """Create the set ``key`` with ``members`` (``SADD`` in chunks)."""
        self.execute_many(
            ("SADD", key, *members[start : start + chunk])
            for start in range(0, len(members), chunk)
        )

    def info(self, section: str) -> dict[str, str]:
        """One ``INFO`` section, parsed."""
        return parse_info(self.execute("INFO", section))
