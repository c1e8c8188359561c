"""The task group that holds a client's connection tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc

__all__ = ["background_task_group"]


@asynccontextmanager
async def background_task_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group for connection tasks, cancelled when the block exits.

    Its tasks never raise (a connection records its failures and fails its
    requests instead), so whatever the block raises, cancellation included,
    propagates as itself rather than wrapped in an exception group: users of
    ``open_client`` see their own exceptions.
    """
    error: BaseException | None = None
    async with anyio.create_task_group() as task_group:
        try:
            yield task_group
        except BaseException as exc:
            error = exc
        finally:
            task_group.cancel_scope.cancel()
    if error is not None:
        raise error
