"""Lua scripts run by SHA1 (``EVALSHA``), falling back to ``EVAL`` on ``NOSCRIPT``.

The commands are built by the generated ``evalsha``/``eval`` builders (the
same ones every facade's helpers use), so keys are counted and checked in
one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from ._commands import Arg, Key
from ._commands.scripting import eval as eval_command
from ._commands.scripting import evalsha
from ._exceptions import NoScriptError

__all__ = ["Script", "Scripting"]


class _Executes(Protocol):
    async def execute(self, *args: Arg) -> Any: ...


class Script:
    """A Lua script registered with ``register_script``; call it to run it.

    The first call on a server that has not seen the script gets ``NOSCRIPT``
    for ``EVALSHA`` and sends the source with ``EVAL``, which also caches it;
    later calls send only the 40-character digest.
    """

    def __init__(self, client: _Executes, source: str | bytes) -> None:
        self.source = source
        raw = source.encode() if isinstance(source, str) else source
        self.sha = hashlib.sha1(raw).hexdigest()
        self._client = client

    def __repr__(self) -> str:
        return f"<Script sha={self.sha}>"

    async def __call__(self, keys: Key | Sequence[Key] = (), args: Sequence[Arg] = ()) -> Any:
        """Run the script with ``KEYS`` and ``ARGV`` and return its reply."""
        try:
            return await self._client.execute(*evalsha(self.sha, keys, args).args)
        except NoScriptError:
            return await self._client.execute(*eval_command(self.source, keys, args).args)


class Scripting:
    """``register_script`` for any facade with an async ``execute``."""

    __slots__ = ()

    def register_script(self: _Executes, source: str | bytes) -> Script:
        """Return a :class:`Script` to run ``source`` by its digest."""
        return Script(self, source)
