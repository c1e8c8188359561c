"""Support code shared by test modules (not tests): looking at servers from outside, TLS.

Test modules import from here, never from one another; fixtures shared by
several folders live in ``conftest.py``.
"""

from __future__ import annotations

import socket
import ssl
import urllib.parse

import hiredis
import trustme

import triopipe

__all__ = ["Control", "NumberedFeed", "free_port", "trusting"]


class NumberedFeed:
    """What a subscription received of numbered messages, ended by one ``end`` message.

    ``gaps`` holds each :class:`triopipe.Gap` with the count of numbers
    received before it, so a test can tell where in the stream it came.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.gaps: list[tuple[int, triopipe.Gap]] = []

    async def consume(self, sub: triopipe.Subscription) -> None:
        """Iterate ``sub`` until the ``end`` message."""
        async for item in sub:
            if isinstance(item, triopipe.Gap):
                self.gaps.append((len(self.received), item))
            elif item.data == b"end":
                return
            else:
                self.received.append(int(item.data))


class Control:
    """Plain blocking connections, without triopipe, to look at the server from outside.

    Each command uses a connection of its own, closed at once.
    """

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 6379)

    def execute_command(self, *args: str | bytes | int) -> object:
        reader = hiredis.Reader()
        with socket.create_connection(self._address) as sock:
            sock.sendall(hiredis.pack_command(tuple(args)))
            # A RESP2 connection never sends False, which is hiredis' "need data".
            while (reply := reader.gets()) is False:
                reader.feed(sock.recv(65536))
        return reply

    def get(self, key: str) -> object:
        return self.execute_command("GET", key)

    def flushall(self) -> object:
        return self.execute_command("FLUSHALL")

    def dbsize(self) -> object:
        return self.execute_command("DBSIZE")

    def close(self) -> None:
        """Nothing stays open between commands."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts ``ca``."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
