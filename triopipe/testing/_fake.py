"""A scripted fake Redis server, for tests that need a server to misbehave.

Theory of operation: :func:`fake_server` listens on a free port of 127.0.0.1
and serves every accepted connection in its own task. The server reads the
client's commands (arrays of bulk strings) and answers them in order:

* handshake commands (``HELLO``, ``AUTH``, ``SELECT``, ``CLIENT``), and the
  ``COMMAND LIST`` a client sends as it opens, get the replies a Redis 7
  server gives: ``HELLO 3`` a RESP3 map, ``COMMAND`` an empty array (no
  command beyond the table), the others ``+OK``;
  with ``hello=False`` it answers ``HELLO`` with "unknown command", like a
  server older than Redis 6, and with ``hello=b"-NOPROTO ..."`` with that
  error reply, and the client falls back to RESP2;
* the connection's :class:`Script` (the n-th accepted connection plays
  ``scripts[n]``) counts every other command; once ``after`` of them have
  arrived (or, with ``after=0``, as soon as the connection is accepted) it
  waits ``delay`` seconds, sends ``data`` verbatim and then closes the
  connection, hangs (reads and ignores everything, answers nothing) or goes
  on serving, as ``then`` says;
* a connection without a script, or a script's commands before its trigger
  is met, and every command after ``then="serve"`` are answered like a tiny
  Redis would: ``PING`` with ``+PONG`` (or its argument), ``ECHO`` with its
  argument, anything else with ``+OK``. Commands counted towards a trigger
  are not answered (unless ``answer`` is set): the script's ``data`` is
  their answer.

Every command received is recorded per connection (:class:`FakeConnection`),
and :attr:`FakeConnection.closed` is set when the client closes its end, so
a test can check that a client dropped a connection it could no longer trust.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Literal

import anyio
import anyio.abc

from .._tasks import background_task_group

__all__ = ["FakeConnection", "FakeServer", "Script", "fake_server"]

_HOST = "127.0.0.1"
_READ_SIZE = 65536
_HANDSHAKE_COMMANDS = frozenset({b"HELLO", b"AUTH", b"SELECT", b"CLIENT", b"COMMAND"})


@dataclasses.dataclass(frozen=True)
class Script:
    """What the fake server does on one connection.

    Attributes:
        data: the bytes to send, verbatim (valid RESP or not).
        after: how many commands (handshake commands excepted) to receive
            before sending ``data``; those commands get no other answer. 0:
            send as soon as the connection is accepted (after ``delay``).
        delay: seconds to wait between the trigger and sending ``data``.
        then: after sending: ``"close"`` the connection (the client reads
            EOF), ``"hang"`` (keep it open, answer nothing more) or ``"serve"``
            (answer the following commands normally).
        with_handshake: send ``data`` in the same write as the replies to the
            first handshake commands (implies ``after=0`` and no delay).
        answer: answer the ``after`` commands normally too, ``data`` following
            their replies (e.g. one reply too many).
    """

    data: bytes
    after: int = 1
    delay: float = 0.0
    then: Literal["close", "hang", "serve"] = "close"
    with_handshake: bool = False
    answer: bool = False


@dataclasses.dataclass
class FakeConnection:
    """What happened on one accepted connection.

    Attributes:
        commands: every command received, as tuples of bytes, handshake
            included.
        closed: set once the connection has ended: the client closed its
            end, or the script closed the connection.
    """

    commands: list[tuple[bytes, ...]] = dataclasses.field(default_factory=list)
    closed: anyio.Event = dataclasses.field(default_factory=anyio.Event)


class FakeServer:
    """A running fake server, as yielded by :func:`fake_server`."""

    def __init__(self, port: int, scripts: Sequence[Script], *, hello: bool | bytes) -> None:
        self._port = port
        self._scripts = list(scripts)
        self._hello = hello
        self.connections: list[FakeConnection] = []

    def __repr__(self) -> str:
        return f"<FakeServer {self.url} connections={len(self.connections)}>"

    @property
    def host(self) -> str:
        """The address the server listens on, always ``127.0.0.1``."""
        return _HOST

    @property
    def port(self) -> int:
        """The server's TCP port."""
        return self._port

    @property
    def url(self) -> str:
        """The server's URL, ``redis://127.0.0.1:PORT``."""
        return f"redis://{_HOST}:{self._port}"

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        """Serve one accepted connection: the script of its turn, then plain replies."""
        log = FakeConnection()
        index = len(self.connections)
        self.connections.append(log)
        script = self._scripts[index] if index < len(self._scripts) else None
        async with stream, anyio.create_task_group() as task_group:
            session = _Session(stream, log, script, hello=self._hello, client_id=index + 1)
            if script is not None and script.after == 0 and not script.with_handshake:
                task_group.start_soon(session.play)
            try:
                await session.run()
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                pass
            finally:
                log.closed.set()
                task_group.cancel_scope.cancel()


class _Session:
    """One connection's state: the script's progress and a parse buffer."""

    def __init__(
        self,
        stream: anyio.abc.SocketStream,
        log: FakeConnection,
        script: Script | None,
        *,
        hello: bool | bytes,
        client_id: int,
    ) -> None:
        self._stream = stream
        self._log = log
        self._script = script
        self._hello = hello
        self._client_id = client_id
        self._buffer = bytearray()
        self._lock = anyio.Lock()
        # "waiting" for the trigger, then what ``then`` says once played.
        self._state: Literal["waiting", "close", "hang", "serve"] = (
            "waiting" if script is not None else "serve"
        )
        self._counted = 0
        self._handshake_open = True

    async def run(self) -> None:
        """Read and answer commands until the client or the script closes."""
        while self._state != "close":
            data = await self._stream.receive(_READ_SIZE)
            self._buffer += data
            replies: list[bytes] = []
            trigger = False
            for command in _parse_commands(self._buffer):
                self._log.commands.append(command)
                reply, fired = self._answer(command)
                if reply is not None:
                    replies.append(reply)
                trigger = trigger or fired
            script = self._script
            if script is not None and script.with_handshake and self._state == "waiting":
                if replies:
                    replies.append(script.data)
                    async with self._lock:
                        await self._stream.send(b"".join(replies))
                    await self._finish(script)
                continue
            if replies:
                async with self._lock:
                    await self._stream.send(b"".join(replies))
            if trigger:
                await self.play()
        # Wait for the client to notice and close its end.
        await self._drain()

    def _answer(self, command: tuple[bytes, ...]) -> tuple[bytes | None, bool]:
        """The reply to ``command`` (None: none), and whether it fires the script."""
        name = command[0].upper() if command else b""
        if self._handshake_open and name in _HANDSHAKE_COMMANDS:
            return self._handshake_reply(name, command), False
        self._handshake_open = False
        if self._state == "serve":
            return _normal_reply(name, command), False
        if self._state == "waiting":
            assert self._script is not None
            self._counted += 1
            reply = _normal_reply(name, command) if self._script.answer else None
            return reply, self._counted == self._script.after
        return None, False  # hanging

    def _handshake_reply(self, name: bytes, command: tuple[bytes, ...]) -> bytes:
        if name == b"COMMAND":
            return b"*0\r\n"  # a client opening asks what it knows: nothing more
        if name != b"HELLO":
            return b"+OK\r\n"
        if isinstance(self._hello, bytes):
            return self._hello
        if not self._hello:
            return b"-ERR unknown command 'HELLO', with args beginning with: \r\n"
        version = command[1] if len(command) > 1 else b"2"
        fields = [
            (b"$6\r\nserver\r\n", b"$5\r\nredis\r\n"),
            (b"$7\r\nversion\r\n", b"$6\r\n7.0.15\r\n"),
            (b"$5\r\nproto\r\n", b":" + version + b"\r\n"),
            (b"$2\r\nid\r\n", b":%d\r\n" % self._client_id),
            (b"$4\r\nmode\r\n", b"$10\r\nstandalone\r\n"),
            (b"$4\r\nrole\r\n", b"$6\r\nmaster\r\n"),
            (b"$7\r\nmodules\r\n", b"*0\r\n"),
        ]
        body = b"".join(key + value for key, value in fields)
        if version == b"3":
            return b"%%%d\r\n" % len(fields) + body
        return b"*%d\r\n" % (2 * len(fields)) + body

    async def play(self) -> None:
        """Send the script's data after its delay, then do what ``then`` says."""
        script = self._script
        assert script is not None
        if self._state != "waiting":
            return
        await anyio.sleep(script.delay)
        async with self._lock:
            await self._stream.send(script.data)
        await self._finish(script)

    async def _finish(self, script: Script) -> None:
        self._state = script.then
        if script.then == "close":
            await self._stream.aclose()

    async def _drain(self) -> None:
        with contextlib.suppress(anyio.ClosedResourceError):
            while True:
                await self._stream.receive(_READ_SIZE)


def _normal_reply(name: bytes, command: tuple[bytes, ...]) -> bytes:
    if name == b"PING" and len(command) == 1:
        return b"+PONG\r\n"
    if name in (b"PING", b"ECHO") and len(command) == 2:
        return b"$%d\r\n%b\r\n" % (len(command[1]), command[1])
    return b"+OK\r\n"


def _parse_commands(buffer: bytearray) -> list[tuple[bytes, ...]]:
    """Take every complete command (an array of bulk strings) off ``buffer``."""
    commands: list[tuple[bytes, ...]] = []
    while True:
        command, used = _parse_command(buffer)
        if command is None:
            return commands
        del buffer[:used]
        commands.append(command)


def _parse_command(buffer: bytearray) -> tuple[tuple[bytes, ...] | None, int]:
    end = buffer.find(b"\r\n")
    if end < 0:
        return None, 0
    if buffer[:1] != b"*":
        raise ValueError(f"fake server: not a command: {bytes(buffer[:40])!r}")
    count = int(buffer[1:end])
    pos = end + 2
    args: list[bytes] = []
    for _ in range(count):
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            return None, 0
        length = int(buffer[pos + 1 : end])
        start = end + 2
        if len(buffer) < start + length + 2:
            return None, 0
        args.append(bytes(buffer[start : start + length]))
        pos = start + length + 2
    return tuple(args), pos


@contextlib.asynccontextmanager
async def fake_server(
    scripts: Sequence[Script] = (), *, hello: bool | bytes = True
) -> AsyncIterator[FakeServer]:
    """Run a scripted fake Redis server for the duration of an ``async with`` block.

    ::

        script = Script(b"$-5\\r\\n", after=3, then="hang")
        async with fake_server([script]) as server:
            async with triopipe.open_client(server.url) as redis:
                ...  # three concurrent commands get "$-5" as their answer

    Args:
        scripts: what the first, second, ... accepted connection does once
            past the handshake; later connections behave like a tiny Redis
            (see the module docstring).
        hello: answer ``HELLO`` like Redis 7 (True), refuse it as an
            unknown command like Redis 5 (False), or answer it with these
            bytes, an error reply such as ``b"-NOPROTO ...\\r\\n"``.

    Yields:
        The server; :attr:`FakeServer.url` is where to connect, and
        :attr:`FakeServer.connections` records what each connection did.
    """
    listener = await anyio.create_tcp_listener(local_host=_HOST, local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    server = FakeServer(port, scripts, hello=hello)
    # The block's own exception leaves as itself, not wrapped in an exception
    # group by the task group: the server's tasks never fail on their own.
    async with listener, background_task_group() as task_group:
        task_group.start_soon(listener.serve, server.handle)
        yield server
