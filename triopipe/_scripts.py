"""Lua scripts run by SHA1 (``EVALSHA``), falling back to ``EVAL`` on ``NOSCRIPT``.

The commands are built by the generated ``evalsha``/``eval`` builders (the
same ones every facade's helpers use), so keys are counted and checked in
one place. A call awaits its reply, so it can fall back; a script queued in
a batch or a transaction cannot (later commands are already on their way),
so it goes as ``EVAL`` with its source, unless :meth:`Script.load` put it on
every server first, after which it goes as ``EVALSHA``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._commands import Arg, Command, Key
from ._commands.scripting import eval as eval_command
from ._commands.scripting import evalsha
from ._exceptions import NoScriptError

if TYPE_CHECKING:
    from ._batch import Pending

__all__ = ["Script", "ScriptSource", "Scripting"]


class _Executes(Protocol):
    async def execute(self, *args: Arg) -> Any: ...


class _Queues(Protocol):
    def execute(self, *args: Arg) -> Pending[Any]: ...


class ScriptSource:
    """A script's source, its digest, and how it goes into a batch; shared by both facades.

    Attributes:
        source: the Lua source.
        sha: its SHA1 digest, as ``EVALSHA`` takes it.
        loaded: :meth:`Script.load` put it on every server: batches send
            ``EVALSHA`` instead of the source.
    """

    def __init__(self, source: str | bytes) -> None:
        self.source = source
        raw = source.encode() if isinstance(source, str) else source
        self.sha = hashlib.sha1(raw).hexdigest()
        self.loaded = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sha={self.sha}>"

    def by_digest(self, keys: Key | Sequence[Key], args: Sequence[Arg]) -> Command[Any]:
        """``EVALSHA`` for these keys and arguments."""
        return evalsha(self.sha, keys, args)

    def by_source(self, keys: Key | Sequence[Key], args: Sequence[Arg]) -> Command[Any]:
        """``EVAL`` of the source for these keys and arguments (it also caches the script)."""
        return eval_command(self.source, keys, args)

    def queue(
        self, batch: _Queues, keys: Key | Sequence[Key] = (), args: Sequence[Arg] = ()
    ) -> Pending[Any]:
        """Queue the script in a batch or a transaction; returns its :class:`~triopipe.Pending`.

        It goes as ``EVALSHA`` once :meth:`Script.load` has run, else as
        ``EVAL`` with the source (a batch cannot fall back on ``NOSCRIPT``).
        """
        command = self.by_digest(keys, args) if self.loaded else self.by_source(keys, args)
        return batch.execute(*command.args)


class Script(ScriptSource):
    """A Lua script registered with ``register_script``; call it to run it.

    The first call on a server that has not seen the script gets ``NOSCRIPT``
    for ``EVALSHA`` and sends the source with ``EVAL``, which also caches it;
    later calls send only the 40-character digest. To run it in a batch or a
    transaction, use ``queue()``.
    """

    def __init__(self, client: _Executes, source: str | bytes) -> None:
        super().__init__(source)
        self._client = client

    async def __call__(self, keys: Key | Sequence[Key] = (), args: Sequence[Arg] = ()) -> Any:
        """Run the script with ``KEYS`` and ``ARGV`` and return its reply."""
        try:
            return await self._client.execute(*self.by_digest(keys, args).args)
        except NoScriptError:
            return await self._client.execute(*self.by_source(keys, args).args)

    async def load(self) -> None:
        """Put the script on every server (``SCRIPT LOAD``), so batches can send its digest."""
        await self._client.execute("SCRIPT", "LOAD", self.source)
        self.loaded = True


class Scripting:
    """``register_script`` for any facade with an async ``execute``."""

    __slots__ = ()

    def register_script(self: _Executes, source: str | bytes) -> Script:
        """Return a :class:`Script` to run ``source`` by its digest."""
        return Script(self, source)
