"""The event loop's cheapest primitives, picked once per connection.

Every command waits for its reply once. ``anyio.Event`` costs about a
microsecond to create on either backend (it looks the backend up on each
call), which is a tenth of a command's whole cost under fan-in; so reply
waits use the loop's native primitive instead: a bare future on asyncio, and
``wait_task_rescheduled``/``reschedule`` on trio. Both are cancelled by anyio
cancel scopes like any other wait.

:func:`current_backend` returns the primitives of the running loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio.lowlevel

if TYPE_CHECKING:
    import trio

__all__ = ["Backend", "Signal", "ThreadSignal", "current_backend"]


class Signal(Protocol):
    """A one-shot event with one waiter: set by the receiver, awaited by the caller."""

    def set(self) -> None:
        """Wake the waiter (now or when it starts waiting); idempotent."""

    def wait(self) -> Awaitable[None]:
        """Wait until :meth:`set` is called; cancellable."""


class _AsyncioSignal:
    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def set(self) -> None:
        future = self._future
        # A cancelled waiter leaves a cancelled future behind: nothing to do.
        if not future.done():
            future.set_result(None)

    def wait(self) -> Awaitable[None]:
        return self._future


class ThreadSignal:
    """A :class:`Signal` whose waiter is a thread outside the loop (the blocking facade).

    Set from the loop thread like any signal; waited on with
    :meth:`wait_blocking`, which blocks the calling thread on a lock (and, on
    the main thread, can be interrupted by Ctrl-C like any lock wait).
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        # Only the loop thread sets a signal, so checking first is race-free.
        if self._lock.locked():
            self._lock.release()

    def wait(self) -> Awaitable[None]:
        raise TypeError("a ThreadSignal is waited on by a thread: use wait_blocking()")

    def wait_blocking(self) -> None:
        """Block the calling thread until :meth:`set` is called."""
        self._lock.acquire()


# Bound by current_backend() the first time it finds trio running, so that
# trio stays an optional dependency.
_trio: Any = None


class _TrioSignal:
    __slots__ = ("_is_set", "_task")

    def __init__(self) -> None:
        self._is_set = False
        self._task: trio.lowlevel.Task | None = None

    def set(self) -> None:
        self._is_set = True
        task = self._task
        if task is not None:
            self._task = None
            _trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        if self._is_set:
            await _trio.lowlevel.checkpoint()
            return
        self._task = _trio.lowlevel.current_task()
        await _trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: Any) -> Any:
        self._task = None
        return _trio.lowlevel.Abort.SUCCEEDED


@dataclasses.dataclass(frozen=True)
class Backend:
    """The running loop's primitives.

    Attributes:
        name: ``"asyncio"`` or ``"trio"``.
        new_signal: makes a :class:`Signal`.
        checkpoint_if_cancelled: raises the cancellation if the caller's scope
            is cancelled, without yielding otherwise.
        checkpoint: yields to the scheduler (and raises if cancelled).
        wait_readable: waits until a non-blocking socket has data (or EOF).
        wait_writable: waits until a non-blocking socket accepts more bytes.
        run_sync_soon: schedules a plain function in the loop thread; callable
            from any thread (``call_soon_threadsafe`` / ``run_sync_soon``).
    """

    name: str
    new_signal: Callable[[], Signal]
    checkpoint_if_cancelled: Callable[[], Awaitable[None]]
    checkpoint: Callable[[], Awaitable[None]]
    wait_readable: Callable[[socket.socket], Awaitable[None]]
    wait_writable: Callable[[socket.socket], Awaitable[None]]
    run_sync_soon: Callable[[Callable[[], object]], object]


def _anyio_checkpoint_if_cancelled() -> Callable[[], Awaitable[None]]:
    # anyio's public function looks the backend up on every call; its backend
    # class does the same work without the lookup. Fall back to the public
    # function if anyio ever moves this.
    try:
        from anyio._core._eventloop import get_async_backend

        method: Callable[[], Awaitable[None]] = get_async_backend().checkpoint_if_cancelled
    except (ImportError, AttributeError):  # pragma: no cover - depends on anyio's internals
        return anyio.lowlevel.checkpoint_if_cancelled
    return method


def current_backend() -> Backend:
    """The primitives of the event loop running now (call from inside it)."""
    global _trio
    try:
        import trio

        trio.lowlevel.current_task()
    except (ImportError, RuntimeError):
        pass
    else:
        _trio = trio
        return Backend(
            "trio",
            _TrioSignal,
            trio.lowlevel.checkpoint_if_cancelled,
            trio.lowlevel.checkpoint,
            trio.lowlevel.wait_readable,
            trio.lowlevel.wait_writable,
            trio.lowlevel.current_trio_token().run_sync_soon,
        )
    return _asyncio_backend(asyncio.get_running_loop())


def _set_result_unless_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _asyncio_backend(loop: asyncio.AbstractEventLoop) -> Backend:
    create_future = loop.create_future

    def new_signal() -> Signal:
        return _AsyncioSignal(create_future())

    # The selector registrations last for one wait only, like trio's: nothing
    # stays registered on a socket that is about to be closed.
    # Registering the file descriptor, not the socket object, saves asyncio
    # from resolving (and, in debug mode, printing) the object on every wait.
    async def wait_readable(sock: socket.socket) -> None:
        future = create_future()
        fd = sock.fileno()
        loop.add_reader(fd, _set_result_unless_done, future)
        try:
            await future
        finally:
            loop.remove_reader(fd)

    async def wait_writable(sock: socket.socket) -> None:
        future = create_future()
        fd = sock.fileno()
        loop.add_writer(fd, _set_result_unless_done, future)
        try:
            await future
        finally:
            loop.remove_writer(fd)

    return Backend(
        "asyncio",
        new_signal,
        _anyio_checkpoint_if_cancelled(),
        anyio.lowlevel.checkpoint,
        wait_readable,
        wait_writable,
        loop.call_soon_threadsafe,
    )
