"""When a failed command may be sent again, and after how long.

The rule (see the architecture guide, "Failures"): retry automatically only
what the server provably did not execute. That is:

- a command that was never written: ``ConnectionLostError`` with
  ``sent=False``, or a ``ConnectError`` (the link failed before writing it);
- a command the server refused without running it: ``LOADING`` (the dataset
  is still loading) and ``max number of clients reached``.

A command that was written when its connection broke (``sent=True``) may or
may not have been applied; it is never resent unless the user opted into
*at-least-once* delivery for an idempotent workload. Everything else (error
replies, a refused password) is final.

Waiting for a reconnection needs no delay here: connections back off by
themselves after failed connects. A refusal by a live server does.
"""

from __future__ import annotations

import dataclasses
import random

from ._exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ConnectError,
    ConnectionLostError,
    MaxClientsError,
    MovedError,
    TryAgainError,
)

__all__ = ["ClusterRetryPolicy", "RetryPolicy", "backoff"]

_REFUSAL_BACKOFF_BASE = 0.05
_REFUSAL_BACKOFF_CAP = 1.0


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry, and whether written commands may be resent.

    Attributes:
        attempts: retries after the first try (0 disables retrying).
        at_least_once: also resend commands whose outcome is unknown (written
            before the connection broke). Only for idempotent commands: an
            ``INCR`` resent this way may be applied twice.
    """

    attempts: int = 3
    at_least_once: bool = False

    def delay(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None: give up.

        Args:
            error: why the last try failed (raised, or an error reply).
            attempt: retries already made for this command.
        """
        if attempt >= self.attempts:
            return None
        if isinstance(error, ConnectionLostError):
            return 0.0 if self.at_least_once or not error.sent else None
        if isinstance(error, ConnectError):
            return 0.0
        if isinstance(error, (BusyLoadingError, MaxClientsError)):
            return backoff(attempt)
        return None


def backoff(attempt: int) -> float:
    """Capped, jittered exponential backoff for refusals by a live server."""
    delay = min(_REFUSAL_BACKOFF_CAP, _REFUSAL_BACKOFF_BASE * 2.0**attempt)
    return delay * random.uniform(0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class ClusterRetryPolicy(RetryPolicy):
    """The retry rule of a Redis Cluster client, on top of each node's :class:`RetryPolicy`.

    The node clients already retried what their own policy allows; this one
    decides what the cluster client does with what they gave up on. Redis
    Cluster adds refusals that prove a command was not executed:

    - ``MOVED`` and ``ASK``: sent again at once, to the node named (the caller
      updates its slot map for ``MOVED``);
    - ``TRYAGAIN`` (a multi-key command while its slot migrates),
      ``CLUSTERDOWN`` (e.g. during a failover) and ``LOADING``: sent again
      after a backoff;
    - a node unreachable (``ConnectError``, or ``ConnectionLostError`` with
      ``sent=False``): it may have failed over, so after a backoff, to
      whichever node the refreshed map names.

    A written command whose outcome is unknown is resent only with
    ``at_least_once``. Every command gets at most ``redirects`` such retries,
    so a redirect loop (nodes disagreeing about a slot) ends with the last
    error instead of spinning.

    Attributes:
        redirects: retries per command, redirects and backoffs together.
    """

    redirects: int = 16

    def delay(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None: give up."""
        if attempt >= self.redirects:
            return None
        if isinstance(error, (MovedError, AskError)):
            return 0.0
        if isinstance(error, (TryAgainError, ClusterDownError, BusyLoadingError, ConnectError)):
            return backoff(attempt)
        if isinstance(error, ConnectionLostError):
            if not error.sent:
                return backoff(attempt)
            return 0.0 if self.at_least_once else None
        return None
