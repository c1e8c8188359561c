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
import functools
import socket
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio.lowlevel

from ._pipeline import Notify

if TYPE_CHECKING:
    import trio

__all__ = [
    "Backend",
    "Notify",
    "ReadableWatcher",
    "Signal",
    "ThreadSignal",
    "current_backend",
]


class Signal(Notify, Protocol):
    """A one-shot event with one waiter in the loop: set by the receiver, awaited by the caller."""

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
    """A :class:`~triopipe._pipeline.Notify` whose waiter is a thread outside the loop.

    For the blocking facade. Set from the loop thread like any signal; waited
    on with :meth:`wait_blocking`, which blocks the calling thread on a lock
    (and, on the main thread, can be interrupted by Ctrl-C like any lock
    wait). It is not awaitable: nothing in the loop waits for it.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        # Only the loop thread sets a signal, so checking first is race-free.
        if self._lock.locked():
            self._lock.release()

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Block the calling thread until :meth:`set` is called; False after ``timeout`` s."""
        return self._lock.acquire(timeout=-1 if timeout is None else timeout)


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


class ReadableWatcher(Protocol):
    """Waits, again and again, until one socket has data; closed before the socket is."""

    def wait(self) -> Awaitable[None]:
        """Wait until the socket has data (or EOF); cancellable. One waiter at a time."""

    def close(self) -> None:
        """Stop watching (call before closing the socket)."""


class _TrioReadableWatcher:
    """trio registers a socket for one wait at a time, cheaply: nothing to keep."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def wait(self) -> Awaitable[None]:
        result: Awaitable[None] = _trio.lowlevel.wait_readable(self._sock)
        return result

    def close(self) -> None:
        pass


class _AsyncioReadableWatcher:
    """One selector registration for the socket's whole life.

    Registering for each wait (``add_reader``/``remove_reader``) costs about
    7 µs on asyncio's own loop, two ``epoll_ctl`` calls and a handle: as much
    as 6% of a sequential command's round trip. The registration is level
    triggered, so while data waits unread the callback runs on every loop
    pass; it only resolves the waiting future, if any, which is cheap.
    """

    __slots__ = ("_fd", "_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._fd = sock.fileno()
        self._future: asyncio.Future[None] | None = None
        loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        future = self._future
        if future is not None:
            self._future = None
            if not future.done():
                future.set_result(None)

    async def wait(self) -> None:
        future = self._future = self._loop.create_future()
        try:
            await future
        finally:
            self._future = None

    def close(self) -> None:
        self._loop.remove_reader(self._fd)


@dataclasses.dataclass(frozen=True)
class Backend:
    """The running loop's primitives.

    Attributes:
        name: ``"asyncio"`` or ``"trio"``.
        new_signal: makes a :class:`Signal`.
        checkpoint_if_cancelled: raises the cancellation if the caller's scope
            is cancelled, without yielding otherwise.
        checkpoint: yields to the scheduler (and raises if cancelled).
        readable_watcher: makes a :class:`ReadableWatcher` for a socket that
            is read again and again (a connection's receiver).
        wait_writable: waits until a non-blocking socket accepts more bytes.
        run_sync_soon: schedules a plain function in the loop thread; callable
            from any thread (``call_soon_threadsafe`` / ``run_sync_soon``).
    """

    name: str
    new_signal: Callable[[], Signal]
    checkpoint_if_cancelled: Callable[[], Awaitable[None]]
    checkpoint: Callable[[], Awaitable[None]]
    readable_watcher: Callable[[socket.socket], ReadableWatcher]
    wait_writable: Callable[[socket.socket], Awaitable[None]]
    run_sync_soon: Callable[[Callable[[], object]], object]


def _asyncio_checkpoint_if_cancelled(
    loop: asyncio.AbstractEventLoop,
) -> Callable[[], Awaitable[None]]:
    """anyio's ``checkpoint_if_cancelled`` for asyncio, at a third of its cost.

    Every command checks that its caller's scope is not cancelled before
    submitting, so this runs once per command. anyio's check costs about
    0.9 µs on CPython 3.11 (measured under 500-task fan-in: 3.2 µs per
    ``Connection.call`` with it, 2.3 without, 2.6 with this one): it finds the
    task with asyncio's pure-Python ``current_task()``, then its state through
    a ``WeakKeyDictionary``'s Python-level lookup. This reads the same state
    (anyio's task state and cancel scope chain) directly, with the same
    logic: a cancelled scope below the first shielded one means cancelled.

    It depends on anyio's internals, so it is used only if they look as
    expected; otherwise anyio's own check is (correct, only slower).
    ``tests/core/test_backend.py`` checks both agree.
    """
    checkpoint = anyio.lowlevel.checkpoint
    try:
        from anyio._backends._asyncio import CancelScope, _task_states
        from anyio._core._eventloop import get_async_backend

        fallback: Callable[[], Awaitable[None]] = get_async_backend().checkpoint_if_cancelled
        states = _task_states.data  # type: ignore[attr-defined]
        current_tasks = asyncio.tasks._current_tasks  # type: ignore[attr-defined]
        probe = CancelScope()
        if not (
            hasattr(probe, "_cancel_called")
            and hasattr(probe, "_shield")
            and hasattr(probe, "_parent_scope")
            and isinstance(states, dict)
            and isinstance(current_tasks, dict)
            # Where asyncio keeps the current task elsewhere (newer
            # Pythons), this dict would not follow it.
            and current_tasks.get(loop) is asyncio.current_task(loop)
        ):
            return fallback
    except (ImportError, AttributeError):  # pragma: no cover - depends on anyio's internals
        return anyio.lowlevel.checkpoint_if_cancelled
    current_task = current_tasks.get
    ref = weakref.ref

    async def checkpoint_if_cancelled() -> None:
        task = current_task(loop)
        if task is None:
            return
        state = states.get(ref(task))
        if state is None:
            return
        scope = state.cancel_scope
        while scope is not None:
            if scope._cancel_called:
                await checkpoint()
                return
            if scope._shield:
                return
            scope = scope._parent_scope

    return checkpoint_if_cancelled


def current_backend() -> Backend:
    """The primitives of the event loop running now (call from inside it)."""
    global _trio
    # trio runs only once imported: on asyncio, importing it just to ask
    # would cost a fifth of a second.
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            _trio = trio
            return Backend(
                "trio",
                _TrioSignal,
                trio.lowlevel.checkpoint_if_cancelled,
                trio.lowlevel.checkpoint,
                _TrioReadableWatcher,
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

    # Waits for room to write are rare (a full socket buffer): registered for
    # one wait only, like trio's, so nothing stays registered on a socket
    # that is about to be closed. Registering the file descriptor, not the
    # socket object, saves asyncio from resolving the object on every wait.
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
        _asyncio_checkpoint_if_cancelled(loop),
        anyio.lowlevel.checkpoint,
        functools.partial(_AsyncioReadableWatcher, loop),
        wait_writable,
        loop.call_soon_threadsafe,
    )
