"""A TCP forwarding proxy that can go silent or cut, for faults a real server cannot make.

Theory of operation: :func:`tcp_proxy` listens on a free port of 127.0.0.1
and, for every accepted connection, opens one to the target and copies bytes
both ways, each direction in a task of its own. The test then plays the
network:

- :meth:`TcpProxy.blackhole`: every connection open now stops forwarding in
  both directions, without closing anything (a silent network cut: bytes
  are read and dropped, nobody is told); new connections still work;
- :meth:`TcpProxy.stall`: every connection open now stops *reading* from
  the client (and forwarding): the client's writes back up into the kernel's
  buffers, then block, as behind a stalled server or a full network path;
- :meth:`TcpProxy.blackhole_all`: :meth:`TcpProxy.blackhole`, for new
  connections too;
- :meth:`TcpProxy.reset`: every connection open now is closed at once, on
  both sides (the peers see the connection reset);
- :meth:`TcpProxy.restore`: forward normally again, for new connections
  (a connection blackholed stays so).

Connections counted in :attr:`TcpProxy.connections` tell a test how many
links the client opened through the proxy.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import anyio
import anyio.abc

from .._tasks import background_task_group

__all__ = ["TcpProxy", "tcp_proxy"]

_HOST = "127.0.0.1"
_READ_SIZE = 65536


class _Pair:
    """One proxied connection: its two streams, and whether it forwards, or reads at all."""

    def __init__(self, client: anyio.abc.SocketStream, server: anyio.abc.SocketStream) -> None:
        self.client = client
        self.server = server
        self.silent = False
        self.stalled = anyio.Event()
        self.scope = anyio.CancelScope()


class TcpProxy:
    """A running proxy, as yielded by :func:`tcp_proxy`."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self._port = port
        self._target = target
        self._pairs: set[_Pair] = set()
        self._silent_for_new = False
        #: Connections accepted so far.
        self.connections = 0

    @property
    def host(self) -> str:
        """Where the proxy listens."""
        return _HOST

    @property
    def port(self) -> int:
        """The proxy's port."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://`` URL of the proxy: connect here instead of to the target."""
        return f"redis://{_HOST}:{self._port}"

    def blackhole(self) -> None:
        """Silence every connection open now: bytes are dropped both ways, nothing closes."""
        for pair in self._pairs:
            pair.silent = True

    def stall(self) -> None:
        """Stop reading from the clients of every connection open now (and forwarding)."""
        for pair in self._pairs:
            pair.silent = True
            pair.stalled.set()

    def blackhole_all(self) -> None:
        """Silence open connections and every new one too."""
        self._silent_for_new = True
        self.blackhole()

    def restore(self) -> None:
        """New connections forward normally again."""
        self._silent_for_new = False

    def reset(self) -> None:
        """Close every connection open now, both sides, at once (the peers see a reset)."""
        for pair in list(self._pairs):
            for stream in (pair.client, pair.server):
                sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                # SO_LINGER 0: close sends RST, not FIN.
                with contextlib.suppress(OSError):
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
            pair.scope.cancel()

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        """Serve one accepted connection until either side closes it, or a reset."""
        self.connections += 1
        try:
            server = await anyio.connect_tcp(*self._target)
        except OSError:
            await client.aclose()
            return
        pair = _Pair(client, server)
        pair.silent = self._silent_for_new
        self._pairs.add(pair)
        try:
            with pair.scope:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(_copy, pair, client, server, task_group.cancel_scope)
                    task_group.start_soon(_copy, pair, server, client, task_group.cancel_scope)
        finally:
            self._pairs.discard(pair)
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(client)
                await anyio.aclose_forcefully(server)


async def _copy(
    pair: _Pair,
    source: anyio.abc.SocketStream,
    sink: anyio.abc.SocketStream,
    both: anyio.CancelScope,
) -> None:
    """Forward ``source`` to ``sink`` until either ends; drop the bytes while silent."""
    try:
        while True:
            if source is pair.client and pair.stalled.is_set():
                await anyio.sleep_forever()  # read nothing more: the client's writes back up
            data = await source.receive(_READ_SIZE)
            if not pair.silent:
                await sink.send(data)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    both.cancel()  # one side is gone: so is the connection


@contextlib.asynccontextmanager
async def tcp_proxy(host: str, port: int) -> AsyncIterator[TcpProxy]:
    """Run a forwarding proxy to ``host:port`` for the duration of an ``async with`` block.

    ::

        async with redis_server() as server, tcp_proxy(server.host, server.port) as proxy:
            async with triopipe.open_client(proxy.url) as redis:
                proxy.blackhole()  # the link goes silent; the server does not know

    Yields:
        The proxy (see :class:`TcpProxy` for the faults it makes).
    """
    listener = await anyio.create_tcp_listener(local_host=_HOST, local_port=0)
    proxy = TcpProxy(listener.extra(anyio.abc.SocketAttribute.local_port), (host, port))
    async with listener, background_task_group() as task_group:
        task_group.start_soon(listener.serve, proxy.handle)
        yield proxy
