"""What a client does, for whoever watches: the event interface.

An :class:`Observer`, given as ``observer=`` to any ``open_*`` function, is
told what happens on the client's connections as it happens: connects and
disconnects with their cause, failed connects and when the next attempt is
due, retries, cluster redirects, waits for room (backpressure), commands
whose outcome became unknown and Sentinel failovers. Its :meth:`Observer.command` hook sees every
command and every pipeline window from start to outcome: the OpenTelemetry
integration (:mod:`triopipe.otel`) is an observer.

Every method does nothing by default: subclass and override what you need.
Without an observer nothing is called and nothing is paid but one ``is
None`` test where an event could happen. Methods are called in the event
loop's thread, synchronously, from inside the client's machinery: they must
return quickly and must not raise.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Observation", "Observer"]


class Observation(Protocol):
    """A command (or a window of commands) being watched, from :meth:`Observer.command`."""

    def end(self, error: BaseException | None) -> None:
        """Its outcome is known: ``error`` is None, or why it failed."""


class Observer:
    """Receives the events of a client; every method is a no-op until overridden.

    ``server`` is always the server's address (``host:port``), never a URL
    with credentials.
    """

    def connected(self, server: str, protocol: int) -> None:
        """A connection to ``server`` is up, past its handshake, speaking RESP ``protocol``."""

    def disconnected(self, server: str, error: BaseException) -> None:
        """A connection to ``server`` broke; ``error`` says why."""

    def connect_failed(self, server: str, error: BaseException, retry_in: float) -> None:
        """Connecting to ``server`` failed; the next attempt is due in ``retry_in`` seconds.

        Until a connect succeeds, commands for ``server`` fail at once with
        :class:`~triopipe.ConnectError`.
        """

    def retried(self, server: str, command: str, error: BaseException, attempt: int) -> None:
        """``command`` is sent again (retry number ``attempt``) after ``error``."""

    def redirected(self, command: str, error: BaseException) -> None:
        """A cluster node answered ``command`` with ``MOVED`` or ``ASK`` (``error``)."""

    def waited_for_room(self, server: str, commands: int) -> None:
        """A caller waits for room for ``commands`` commands on a full connection."""

    def outcome_unknown(self, server: str, commands: int, error: BaseException) -> None:
        """``commands`` commands were written before their connection broke.

        The server may or may not have applied them; they are not resent
        (unless ``at_least_once``), and their callers get
        :class:`~triopipe.ConnectionLostError` with ``sent=True``.
        """

    def primary_changed(self, service: str, old: str, new: str) -> None:
        """A Sentinel client moved to another primary of ``service`` (a failover).

        Commands written to ``old`` and not answered failed with
        :class:`~triopipe.ConnectionLostError` (``sent=True``).
        """

    def command(self, server: str, name: str, commands: int) -> Observation | None:
        """A command starts (``commands`` is 1), or a pipeline window of ``commands`` commands.

        ``name`` is the command's name (``"GET"``, ``"CLIENT LIST"``), or
        ``"PIPELINE"`` for a window. Return an :class:`Observation` to learn
        its outcome, or None.
        """
        return None
