"""A tiny raw RESP2 client for testing the harness without the triopipe client."""

from __future__ import annotations

import os

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

Reply = bytes | int | list["Reply"] | None


class RawErrorReplyError(Exception):
    """An error reply (``-ERR ...``)."""


def encode(*args: str | bytes | int) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


async def read_reply(stream: BufferedByteReceiveStream) -> Reply:
    """Read one RESP2 reply; error replies raise :class:`RawErrorReplyError`."""
    line = await stream.receive_until(b"\r\n", 1 << 20)
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RawErrorReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        length = int(rest)
        if length < 0:
            return None
        data = await stream.receive_exactly(length + 2)
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        if count < 0:
            return None
        return [await read_reply(stream) for _ in range(count)]
    raise AssertionError(f"not RESP: {line!r}")


async def command(port: int, *args: str | bytes | int, host: str = "127.0.0.1") -> Reply:
    """Run one command on a fresh connection and return its reply."""
    async with await anyio.connect_tcp(host, port) as sock:
        await sock.send(encode(*args))
        return await read_reply(BufferedByteReceiveStream(sock))


def process_exists(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def assert_refused(port: int) -> None:
    """Nothing answers on ``port`` any more."""
    with pytest.raises(OSError):  # noqa: PT011 - refused, reset: any OS error will do
        await command(port, "PING")
