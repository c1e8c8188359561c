"""Command specs and the descriptor that turns them into facade methods.

A helper is written once, as a *builder*: a plain function that checks its
arguments and returns a :class:`Command` (the arguments to send, and how to
shape the reply). A facade decides where the command goes: :class:`command`
binds a builder to any object with a ``_dispatch`` method, so the client, the
sharded and cluster clients (``await redis.get(k)``) and batches
(``b.get(k)`` -> ``Pending``) share one definition of every helper.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import MethodType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from .._batch import Pending

__all__ = ["Arg", "Command", "Key", "command", "run_command"]

T = TypeVar("T")
P = ParamSpec("P")

#: What a command argument may be: sent as bytes, str as utf-8, numbers as text.
Arg = bytes | bytearray | memoryview | str | int | float
#: A key: bytes, or str (utf-8).
Key = bytes | str


class Command(Generic[T]):
    """One command to send, and how to shape its reply into ``T``.

    ``transform`` never sees error replies: those raise (or are returned as
    exceptions by ``execute_many(raise_on_error=False)``) untouched.
    """

    __slots__ = ("args", "transform")

    def __init__(self, args: tuple[Arg, ...], transform: Callable[[Any], T] | None = None) -> None:
        self.args = args
        self.transform = transform

    def __repr__(self) -> str:
        return f"Command{self.args!r}"

    def shape(self, reply: Any) -> T:
        """The reply as the helper returns it (``transform`` applied, if any)."""
        transform = self.transform
        result: T = reply if transform is None else transform(reply)
        return result


async def run_command(execute: Callable[..., Awaitable[Any]], command: Command[T]) -> T:
    """Run ``command`` with an async ``execute`` and shape its reply.

    What the async facades' ``_dispatch`` returns for a command with a
    ``transform``.
    """
    return command.shape(await execute(*command.args))


class _AsyncDispatch(Protocol):
    def _dispatch(self, command: Command[T], /) -> Awaitable[T]: ...


class _PendingDispatch(Protocol):
    def _dispatch(self, command: Command[T], /) -> Pending[T]: ...


class _BlockingDispatch(Protocol):
    def _dispatch(self, command: Command[T], /) -> T: ...


class command(Generic[P, T]):
    """Make a command builder a method of every facade that has ``_dispatch``."""

    def __init__(self, builder: Callable[P, Command[T]]) -> None:
        self.builder = builder
        self.__doc__ = builder.__doc__
        self.__name__ = builder.__name__
        self.__signature__ = _method_signature(builder)

        # One plain function per helper, bound to each facade with a C-level
        # MethodType rather than a closure made on every attribute access:
        # it takes about 0.2 µs off every helper call (0.5 -> 0.29 µs).
        def method(facade: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any:
            return facade._dispatch(builder(*args, **kwargs))

        method.__name__ = builder.__name__
        method.__qualname__ = builder.__name__
        method.__doc__ = builder.__doc__
        self._method = method

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Command[T]:
        """Build the command without sending it (``Commands.get("k")``)."""
        return self.builder(*args, **kwargs)

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> command[P, T]: ...
    @overload
    def __get__(
        self, obj: _PendingDispatch, owner: type[Any] | None = None
    ) -> Callable[P, Pending[T]]: ...
    @overload
    def __get__(
        self, obj: _AsyncDispatch, owner: type[Any] | None = None
    ) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(
        self, obj: _BlockingDispatch, owner: type[Any] | None = None
    ) -> Callable[P, T]: ...
    def __get__(self, obj: Any, owner: type[Any] | None = None) -> Any:
        if obj is None:
            return self
        return MethodType(self._method, obj)


def _method_signature(builder: Callable[..., Any]) -> inspect.Signature:
    """The builder's signature as a method's, returning the reply type (for docs)."""
    signature = inspect.signature(builder)
    returns = signature.return_annotation
    if isinstance(returns, str) and returns.startswith("Command[") and returns.endswith("]"):
        returns = returns[len("Command[") : -1]
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    return signature.replace(
        parameters=[self_parameter, *signature.parameters.values()], return_annotation=returns
    )


# Reply shapers shared by the command groups. They make the typed helpers
# return the same Python types under RESP2 and RESP3.


def to_bool(reply: Any) -> bool:
    """1/0 integers and RESP3 booleans as ``bool``."""
    return bool(reply)


def is_ok(reply: Any) -> bool:
    """``+OK`` as True; nil (a condition not met) as False."""
    return reply in (b"OK", "OK")


def to_dict(reply: Any) -> dict[Any, Any]:
    """A RESP3 map, or its RESP2 form, as ``dict``.

    RESP2 sends a map as a flat array of keys and values (``HGETALL``), or
    for a few commands as an array of ``[key, value]`` pairs (``XREAD``); a
    key is never an array, so the first element tells which.
    """
    if isinstance(reply, dict):
        return reply
    if reply and isinstance(reply[0], list):
        return dict(reply)
    items = iter(reply)
    return dict(zip(items, items, strict=True))


def to_set(reply: Any) -> set[Any]:
    """A RESP3 set or a RESP2 array as ``set``."""
    return set(reply)


def to_float(reply: Any) -> float | None:
    """A RESP3 double or a RESP2 bulk string as ``float`` (nil stays None)."""
    return None if reply is None else float(reply)
