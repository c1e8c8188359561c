"""The connection handshake, as data.

Theory of operation: before any user command, a connection sends one batch of
handshake commands and checks their replies. With ``protocol=3`` the batch is
``HELLO 3 [AUTH user pass] [SETNAME name]`` followed by ``SELECT db`` when
``db`` is not 0. With ``protocol=2`` the RESP2 batch is sent at once:
``AUTH``, ``CLIENT SETNAME``, ``SELECT``. All commands of one batch share a
single write and a single round trip.

When the server did not run ``HELLO``, the connection sends the RESP2 batch
instead. Real servers say so in three ways (:func:`hello_not_served`):

* ``ERR unknown command 'HELLO'``: Redis before 6.0, or a server where HELLO
  was renamed away (Redis 7 looks the command up before checking
  authentication);
* ``NOAUTH Authentication required`` when our ``HELLO`` carried ``AUTH``:
  a ``HELLO ... AUTH`` that the server knows authenticates the connection
  itself, so NOAUTH means the command was refused before it ran, which is
  what Valkey answers for a command it does not know on a connection that
  has not authenticated yet. Without credentials in ``HELLO``, NOAUTH means
  the server wants a password we do not have, and is raised as it is;
* ``NOPROTO``: the server knows HELLO but refuses protocol 3.

Otherwise the first error reply decides the outcome: credentials refused
raise :class:`AuthenticationError` (never retried: a wrong password stays
wrong), anything else raises the server's error as is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .._exceptions import ResponseError

__all__ = ["Handshake", "HandshakeResult", "hello_not_served"]


@dataclasses.dataclass(frozen=True)
class HandshakeResult:
    """What the handshake settled: the protocol spoken from now on."""

    protocol: int


@dataclasses.dataclass(frozen=True)
class Handshake:
    """The handshake of one connection; the password stays out of ``repr``."""

    protocol: int = 3
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    client_name: str | None = None
    db: int = 0

    def commands(self, *, hello: bool) -> list[tuple[str | int, ...]]:
        """The commands to send: the HELLO form, or the RESP2 form."""
        batch: list[tuple[str | int, ...]] = []
        if hello:
            command: list[str | int] = ["HELLO", self.protocol]
            if self.password is not None:
                command += ["AUTH", self.username or "default", self.password]
            if self.client_name:
                command += ["SETNAME", self.client_name]
            batch.append(tuple(command))
        else:
            if self.password is not None:
                if self.username:
                    batch.append(("AUTH", self.username, self.password))
                else:
                    batch.append(("AUTH", self.password))
            if self.client_name:
                batch.append(("CLIENT", "SETNAME", self.client_name))
        if self.db:
            batch.append(("SELECT", self.db))
        return batch

    @property
    def first_batch_uses_hello(self) -> bool:
        """Whether the first batch is the HELLO form (RESP3 wanted)."""
        return self.protocol == 3

    def check(self, replies: Sequence[object], *, hello: bool) -> HandshakeResult | None:
        """Check the replies to ``commands(hello=hello)``.

        Returns:
            The result, or None when the server does not know HELLO and the
            RESP2 batch must be sent instead.

        Raises:
            ResponseError: a handshake command failed (``AuthenticationError``
                for refused credentials).
        """
        with_auth = self.password is not None
        for index, reply in enumerate(replies):
            if not isinstance(reply, ResponseError):
                continue
            if hello and index == 0 and hello_not_served(reply, with_auth=with_auth):
                return None
            raise reply
        return HandshakeResult(protocol=self.protocol if hello else 2)


def hello_not_served(error: ResponseError, *, with_auth: bool) -> bool:
    """Whether ``error``, the reply to ``HELLO 3``, means "speak RESP2 instead".

    Args:
        error: the error reply to ``HELLO``.
        with_auth: whether that ``HELLO`` carried ``AUTH`` credentials.

    Returns:
        True for "unknown command", for ``NOPROTO``, and for ``NOAUTH`` when
        ``HELLO`` carried credentials (the module docstring says why).
    """
    if error.code == "ERR":
        return error.message.lower().startswith("unknown command")
    if error.code == "NOPROTO":
        return True
    return error.code == "NOAUTH" and with_auth
