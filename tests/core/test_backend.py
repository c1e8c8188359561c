"""The loop primitives of ``_backend``: the cancellation check every command makes.

Before submitting, a command checks that its caller's scope is not cancelled
(a cancelled caller submits nothing). On asyncio that check reads anyio's
cancel scopes directly, for speed; these tests hold it to anyio's own
semantics (shields included) and make sure the fast check is the one in use,
so that an anyio release that changes its internals is noticed here, not as
a silent slowdown.
"""

from __future__ import annotations

import anyio

from triopipe._backend import current_backend


async def _raises_cancelled() -> bool:
    try:
        await current_backend().checkpoint_if_cancelled()
    except anyio.get_cancelled_exc_class():
        return True
    return False


async def test_an_uncancelled_caller_goes_on() -> None:
    assert not await _raises_cancelled()
    with anyio.CancelScope():
        assert not await _raises_cancelled()


async def test_a_cancelled_scope_raises() -> None:
    with anyio.CancelScope() as scope:
        scope.cancel()
        with anyio.CancelScope():
            assert await _raises_cancelled()


async def test_a_shield_inside_a_cancelled_scope_protects() -> None:
    with anyio.CancelScope() as outer:
        outer.cancel()
        with anyio.CancelScope(shield=True):
            assert not await _raises_cancelled()
            with anyio.CancelScope() as inner:
                inner.cancel()
                assert await _raises_cancelled()


async def test_a_caller_woken_as_its_scope_is_cancelled_is_caught() -> None:
    """The case the check exists for: resumed by a result, cancelled meanwhile."""
    event = anyio.Event()
    outcome: list[bool] = []

    async def waiter(scope: anyio.CancelScope) -> None:
        with scope:
            await event.wait()
            outcome.append(await _raises_cancelled())

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(waiter, scope)
        await anyio.wait_all_tasks_blocked()
        event.set()
        scope.cancel()
    assert outcome in ([True], [])


async def test_the_fast_check_is_in_use(anyio_backend_name: str) -> None:
    check = current_backend().checkpoint_if_cancelled
    if anyio_backend_name == "asyncio":
        from anyio._core._eventloop import get_async_backend

        # Compared with anyio's checks rather than by name: in the compiled
        # build (mypyc) the fast check has no __qualname__.
        anyio_checks = (
            get_async_backend().checkpoint_if_cancelled,
            anyio.lowlevel.checkpoint_if_cancelled,
        )
        assert all(check != slow for slow in anyio_checks), (
            "anyio's internals changed: the per-command cancellation check fell back to "
            "anyio's own, slower one (see _backend._asyncio_checkpoint_if_cancelled)"
        )
    else:
        import trio

        assert check is trio.lowlevel.checkpoint_if_cancelled
