"""Every key of one or more servers, read from outside triopipe, to compare data sets.

One plain socket per server, pipelined with hiredis: SCAN for the keys, then
each key's type, value (whole, in a form that ignores internal order) and
whether it has a time to live.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Sequence
from typing import Any

import hiredis

# The command that reads a whole value of each type.
_READERS = {
    b"string": lambda key: ("GET", key),
    b"hash": lambda key: ("HGETALL", key),
    b"list": lambda key: ("LRANGE", key, 0, -1),
    b"set": lambda key: ("SMEMBERS", key),
    b"zset": lambda key: ("ZRANGE", key, 0, -1, "WITHSCORES"),
    b"stream": lambda key: ("XRANGE", key, "-", "+"),
}


class _Link:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
        self._reader = hiredis.Reader()

    def run(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        self._sock.sendall(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                self._reader.feed(self._sock.recv(1 << 20))
            else:
                replies.append(reply)
        return replies

    def close(self) -> None:
        self._sock.close()


def _normal(kind: bytes, value: Any) -> Any:
    if kind == b"hash":
        return dict(zip(value[0::2], value[1::2], strict=True))
    if kind == b"set":
        return frozenset(value)
    if kind in (b"list", b"zset"):
        return tuple(value)
    if kind == b"stream":
        return tuple((entry_id, tuple(fields)) for entry_id, fields in value)
    return value


def keyspace(urls: Sequence[str], match: str = "*") -> dict[bytes, tuple[bytes, Any, bool]]:
    """Every key matching ``match`` on the servers: ``{key: (type, value, has_ttl)}``."""
    found: dict[bytes, tuple[bytes, Any, bool]] = {}
    for url in urls:
        link = _Link(url)
        try:
            keys: list[bytes] = []
            cursor = b"0"
            while True:
                cursor, batch = link.run([("SCAN", cursor, "MATCH", match, "COUNT", 1000)])[0]
                keys.extend(batch)
                if cursor == b"0":
                    break
            keys = sorted(set(keys))
            kinds = link.run([("TYPE", key) for key in keys])
            ttls = link.run([("PTTL", key) for key in keys])
            values = link.run([_READERS[kind](key) for key, kind in zip(keys, kinds, strict=True)])
            for key, kind, ttl, value in zip(keys, kinds, ttls, values, strict=True):
                found[key] = (kind, _normal(kind, value), ttl > 0)
        finally:
            link.close()
    return found


def run_commands(url: str, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Send ``commands`` to one server as one pipeline; their replies (errors as objects)."""
    link = _Link(url)
    try:
        return link.run(commands)
    finally:
        link.close()
