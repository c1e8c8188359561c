"""The whole triopipe error tree.

::

    TriopipeError                  base of everything triopipe raises
    ├── CommandNotAllowedError     a command refused before sending (also a ValueError)
    │   └── UnknownCommandClassError  its class is unknown until the server is asked
    ├── NoShardError               a key-less command with no server to run on (also a ValueError)
    ├── MessagesLostError          a subscription's link was down: messages may be lost
    ├── UnknownCommandError        neither the table nor the server knows the command's keys
    ├── ResponseError              the server answered with an error reply
    │   ├── WrongTypeError         WRONGTYPE: operation against a key of the wrong type
    │   ├── NoScriptError          NOSCRIPT: EVALSHA for a script the server lacks
    │   ├── ExecAbortError         EXECABORT: EXEC refused because a queued command failed
    │   ├── WatchError             EXEC returned nil: a watched key changed
    │   ├── CrossSlotError         CROSSSLOT: keys of one command on different slots/shards
    │   ├── AuthenticationError    WRONGPASS / NOAUTH / invalid password
    │   ├── NoPermissionError      NOPERM: the ACL user may not run this
    │   ├── BusyLoadingError       LOADING: the server is loading its dataset
    │   ├── ReadOnlyError          READONLY: write sent to a replica
    │   ├── OutOfMemoryError       OOM: maxmemory reached
    │   ├── TryAgainError          TRYAGAIN: cluster key migration in progress
    │   ├── ClusterDownError       CLUSTERDOWN: the cluster cannot serve the slot
    │   ├── MaxClientsError        ERR max number of clients reached
    │   └── RedirectError          base of cluster redirections (.slot, .host, .port)
    │       ├── MovedError         MOVED: the slot lives elsewhere for good
    │       └── AskError           ASK: the slot is migrating, ask elsewhere once
    └── TransportError             the connection is unusable
        ├── ConnectError           could not connect or complete the handshake
        ├── ConnectionLostError    the connection broke with the command pending
        └── ProtocolError          the server sent bytes that are not valid RESP

Names end in ``Error`` and never shadow built-ins (``ConnectionError``,
``TimeoutError``). No exception text ever carries a password: messages are
built from server replies and addresses only, never from URLs or options.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AskError",
    "AuthenticationError",
    "BusyLoadingError",
    "ClusterDownError",
    "CommandNotAllowedError",
    "ConnectError",
    "ConnectionLostError",
    "CrossSlotError",
    "ExecAbortError",
    "MaxClientsError",
    "MessagesLostError",
    "MovedError",
    "NoPermissionError",
    "NoScriptError",
    "NoShardError",
    "OutOfMemoryError",
    "ProtocolError",
    "ReadOnlyError",
    "RedirectError",
    "ResponseError",
    "TransportError",
    "TriopipeError",
    "TryAgainError",
    "UnknownCommandClassError",
    "UnknownCommandError",
    "WatchError",
    "WrongTypeError",
    "connect_error",
    "copy_error",
    "error_from_reply",
    "request_error",
]


class TriopipeError(Exception):
    """Base class of every exception triopipe raises on purpose."""


class CommandNotAllowedError(TriopipeError, ValueError):
    """Raised before sending a command that may not run where it was sent.

    The message names the command, says why, and names the API to use
    instead (``transaction()`` for MULTI, ``subscribe()`` for SUBSCRIBE,
    a ``batch()`` for WAIT...).

    Attributes:
        command: the command's name, upper case (``"CLIENT REPLY"``).
        command_class: its :class:`~triopipe._routing.CommandClass`.
    """

    def __init__(self, message: str, command: str, command_class: Any) -> None:
        super().__init__(message)
        self.command = command
        self.command_class = command_class

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.command, self.command_class))


class UnknownCommandClassError(CommandNotAllowedError):
    """Raised for a command whose class is unknown until the server is asked.

    The clients ask the server (``COMMAND INFO``) and try again; this reaches
    a caller only when the server cannot say either.
    """


class UnknownCommandError(TriopipeError, ValueError):
    """Raised, before sending, for a command whose keys neither the table nor the server knows.

    The sharded and cluster clients route by key: a command they cannot
    place (a typo, or a module the servers do not have) is refused.
    """


class NoShardError(TriopipeError, ValueError):
    """Raised, before anything is sent, for a key-less command with no meaning across servers.

    The sharded and cluster clients route by key; ``INFO``, ``EVAL`` with no
    keys and the like name none and do not concern every server. Aim such a
    command at one server (``redis.shards[url].execute(...)``,
    ``redis.nodes[url].execute(...)``) or at every shard
    (``redis.for_each_shard(...)``).
    """


class MessagesLostError(TriopipeError):
    """Raised by a subscription's iteration, with ``on_gap="raise"``, after an outage.

    The subscription's link broke and was replaced: messages published
    between ``lost_at`` and ``resubscribed_at`` (``time.time()`` values) may
    never arrive. When this is raised the subscription is already back:
    catch it and iterate again to go on. The error that broke the link is
    the ``__cause__``.

    Attributes:
        lost_at: when the link was found broken.
        resubscribed_at: when the server confirmed every resubscription.
    """

    def __init__(self, lost_at: float, resubscribed_at: float) -> None:
        super().__init__(
            f"the subscription's link was down for {resubscribed_at - lost_at:.3f} s: "
            "messages published meanwhile may be lost"
        )
        self.lost_at = lost_at
        self.resubscribed_at = resubscribed_at

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.lost_at, self.resubscribed_at))


class ResponseError(TriopipeError):
    """Raised when the server answers a command with an error reply.

    The connection is fine: only this command failed. ``code`` is the first
    word of the reply (``"ERR"``, ``"WRONGTYPE"``, ...) and ``message`` the
    rest.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}" if message else code)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, self.message))

    def __eq__(self, other: object) -> bool:
        # Error replies are values: two replies with the same text are equal,
        # which lets tests and users compare results of ``execute_many``.
        if not isinstance(other, ResponseError):
            return NotImplemented
        return (type(self), self.code, self.message) == (
            type(other),
            other.code,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((type(self), self.code, self.message))


class WrongTypeError(ResponseError):
    """Raised when a command is run against a key holding another type."""


class NoScriptError(ResponseError):
    """Raised when ``EVALSHA`` names a script the server has not cached."""


class ExecAbortError(ResponseError):
    """Raised when ``EXEC`` is refused because a queued command was invalid."""


class WatchError(ResponseError):
    """Raised at the end of a transaction when a watched key was changed.

    Nothing of the transaction was applied; retry it if that is what you want.
    """

    def __init__(self, code: str = "WATCH", message: str = "watched key changed") -> None:
        super().__init__(code, message)


class CrossSlotError(ResponseError):
    """Raised when one command's keys live on different slots or shards.

    The sharded and cluster clients raise it before anything is sent; a Redis
    Cluster node raises it as the ``CROSSSLOT`` error reply.
    """


class AuthenticationError(ResponseError):
    """Raised when the server refuses the credentials (``WRONGPASS``, ``NOAUTH``).

    Never retried: a wrong password stays wrong.
    """


class NoPermissionError(ResponseError):
    """Raised when the ACL user lacks the right to run a command (``NOPERM``)."""


class BusyLoadingError(ResponseError):
    """Raised while the server loads its dataset into memory (``LOADING``)."""


class ReadOnlyError(ResponseError):
    """Raised when a write is sent to a read-only replica (``READONLY``)."""


class OutOfMemoryError(ResponseError):
    """Raised when the server refuses a write at ``maxmemory`` (``OOM``)."""


class TryAgainError(ResponseError):
    """Raised when a cluster slot is being migrated (``TRYAGAIN``)."""


class ClusterDownError(ResponseError):
    """Raised when the cluster cannot serve a slot (``CLUSTERDOWN``)."""


class MaxClientsError(ResponseError):
    """Raised when the server has reached its ``maxclients`` limit."""


class RedirectError(ResponseError):
    """Base of the cluster redirections: the slot is served by another node.

    ``slot`` is the key's slot and ``host``/``port`` the node to ask.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        slot, _, address = message.partition(" ")
        host, _, port = address.rpartition(":")
        self.slot = int(slot) if slot.isdigit() else -1
        self.host = host
        self.port = int(port) if port.isdigit() else 0


class MovedError(RedirectError):
    """Raised when a slot has moved to another cluster node for good."""


class AskError(RedirectError):
    """Raised when a slot is migrating: ask the named node once, with ``ASKING``."""


class TransportError(TriopipeError):
    """Base of the errors that leave a connection unusable."""


class ConnectError(TransportError):
    """Raised when a connection or its handshake cannot be completed in time."""


class ConnectionLostError(TransportError):
    """Raised for every pending command when its connection breaks.

    ``sent`` is True when the command had been written before the break: its
    outcome is unknown (the server may or may not have applied it), so it is
    never resent automatically.
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_connection_lost, (str(self), self.sent))


def _rebuild_connection_lost(message: str, sent: bool) -> ConnectionLostError:
    return ConnectionLostError(message, sent=sent)


class ProtocolError(TransportError):
    """Raised when the server sends bytes that are not valid RESP.

    The connection is closed: its byte stream can no longer be trusted.
    """


_ERRORS_BY_CODE: dict[str, type[ResponseError]] = {
    "WRONGTYPE": WrongTypeError,
    "NOSCRIPT": NoScriptError,
    "EXECABORT": ExecAbortError,
    "CROSSSLOT": CrossSlotError,
    "WRONGPASS": AuthenticationError,
    "NOAUTH": AuthenticationError,
    "NOPERM": NoPermissionError,
    "LOADING": BusyLoadingError,
    "READONLY": ReadOnlyError,
    "OOM": OutOfMemoryError,
    "TRYAGAIN": TryAgainError,
    "CLUSTERDOWN": ClusterDownError,
    "MOVED": MovedError,
    "ASK": AskError,
}

# Errors that Redis reports under the generic ERR code, told apart by text.
_ERR_PREFIXES: tuple[tuple[str, type[ResponseError]], ...] = (
    ("max number of clients reached", MaxClientsError),
    ("invalid password", AuthenticationError),
    ("invalid username-password pair", AuthenticationError),
    ("Client sent AUTH, but no password is set", AuthenticationError),
)


def error_from_reply(text: str) -> ResponseError:
    """Build the exception for the error reply ``text`` (without the ``-``)."""
    code, _, message = text.partition(" ")
    cls = _ERRORS_BY_CODE.get(code)
    if cls is None:
        cls = ResponseError
        if code == "ERR":
            for prefix, special in _ERR_PREFIXES:
                if message.startswith(prefix):
                    cls = special
                    break
    return cls(code, message)


def connect_error(address: str, cause: BaseException) -> ConnectError:
    """The :class:`ConnectError` for a failed connect to ``address``, caused by ``cause``."""
    if isinstance(cause, TimeoutError):
        error = ConnectError(f"timed out connecting to {address}")
    else:
        error = ConnectError(f"could not connect to {address}: {cause}")
    error.__cause__ = cause
    return error


def request_error(error: BaseException, *, sent: bool) -> BaseException:
    """The error one request of a failed link gets, from the link's ``error``.

    A fresh exception per request: one instance raised in many tasks tangles
    their tracebacks. A lost link gives every request a
    :class:`ConnectionLostError` whose ``sent`` is its own; a protocol error
    is its cause.
    """
    if isinstance(error, ConnectionLostError):
        lost = ConnectionLostError(str(error), sent=sent)
        lost.__cause__ = error.__cause__
        return lost
    if isinstance(error, ProtocolError):
        what = "connection broken" if sent else "connection broken before sending"
        lost = ConnectionLostError(f"{what}: {error}", sent=sent)
        lost.__cause__ = error
        return lost
    return copy_error(error)


def copy_error(error: BaseException) -> BaseException:
    """A copy of a response or connect error, for one more caller to raise."""
    if isinstance(error, ResponseError):
        copy: BaseException = type(error)(error.code, error.message)
    elif isinstance(error, ConnectError):
        copy = ConnectError(str(error))
    else:
        return error
    copy.__cause__ = error.__cause__
    return copy
