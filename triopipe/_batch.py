"""Batches: commands queued at once, replies awaited when the block exits."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["Pending"]

T = TypeVar("T")
_UNSET: Any = object()


class Pending(Generic[T]):
    """The future reply of a command queued in a batch.

    :meth:`result` returns it once the batch block has exited.
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: Any = _UNSET

    def result(self) -> T:
        """The reply; raises its :class:`ResponseError` if it was an error reply.

        Raises:
            RuntimeError: the batch block has not exited yet.
        """
        if self._value is _UNSET:
            raise RuntimeError("the batch has not completed yet: leave its block first")
        if isinstance(self._value, BaseException):
            raise self._value
        value: T = self._value
        return value
