"""Lua scripts run by SHA1 (``EVALSHA``), falling back to ``EVAL`` on ``NOSCRIPT``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from ._commands import Arg
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

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        """Run the script with ``KEYS`` and ``ARGV`` and return its reply."""
        try:
            return await self._client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._client.execute("EVAL", self.source, len(keys), *keys, *args)


class Scripting:
    """``register_script`` for any facade with an async ``execute``."""

    __slots__ = ()

    def register_script(self: _Executes, source: str | bytes) -> Script:
        """Return a :class:`Script` to run ``source`` by its digest."""
        return Script(self, source)
