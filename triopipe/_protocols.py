"""What the package's parts expect of each other, as checked contracts.

The facades (client, sharded client, cluster client, the blocking facade)
and the fan-out engine meet only through the names below; mypy checks that
each side keeps its half.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

if TYPE_CHECKING:
    from ._commands import Arg, Command, Key
    from ._connection import Connection

__all__ = ["AsyncClient", "DirectRoute"]

T = TypeVar("T")


class DirectRoute(NamedTuple):
    """Where a plain command may go without the loop thread, and when not to trust that.

    The one hook of the blocking facade's direct path (``triopipe.sync``):
    every async client answers ``direct_route(args)`` with one of these, or
    None. The facade encodes the command, writes it on ``connection`` from
    its own thread when the connection allows it, and shapes the reply as
    ``execute`` would. An error for which ``retryable`` is True (a refusal or
    failure the client's ``execute`` would retry, a cluster redirect) sends
    the command through the loop's ``execute`` instead, which starts its
    attempts afresh.
    """

    connection: Connection
    retryable: Callable[[BaseException], bool]


class AsyncClient(Protocol):
    """What the blocking facade needs of an async client (single, sharded or cluster)."""

    async def execute(self, *args: Arg) -> Any: ...

    async def execute_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]: ...

    def batch(self) -> AbstractAsyncContextManager[Any]: ...

    def transaction(self, *watch_keys: Key) -> AbstractAsyncContextManager[Any]: ...

    def scan_iter(
        self, match: Key | None = None, count: int | None = None
    ) -> AsyncIterator[Any]: ...

    def statistics(self) -> Any: ...

    def direct_route(self, args: tuple[Arg, ...]) -> DirectRoute | None: ...

    def _dispatch(self, command: Command[T], /) -> Awaitable[T]: ...
