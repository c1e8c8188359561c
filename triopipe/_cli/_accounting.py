"""Exact accounting of a mass insertion: what every command's outcome was.

The pump hands each command's outcome here, in input order
(:meth:`Accounting.add`, the ``on_outcomes`` of :meth:`~triopipe.Client.pump`).
Every command taken from the input ends in exactly one count:

- *acknowledged*: the server answered with a reply (it was applied);
- *error replies*: the server answered with an error reply (each one is
  kept with its position: the first few for the summary, all of them in the
  ``--errors`` file as JSON lines);
- *unknown*: written, then its connection broke before the reply (the server
  may or may not have applied it), or in flight when the run was interrupted;
- *not sent*: never written (the server could not be reached).

*Answered* (acknowledged or error reply) commands at the start of the input
form the **answered prefix**: what a checkpoint records. The first command of
unknown outcome or not sent ends it, and stops the reading of more input
(``on_broken``).

Positions come from a ``locate(index)`` callable (``line 17``, ``command 17``,
``record 17``), so the same accounting serves every input format.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, Any

from .._exceptions import TransportError
from .._statistics import PumpTally
from ._exits import ExitStatus

__all__ = ["Accounting", "ErrorLog"]

#: Error replies printed in the summary; the others are only counted (and
#: written to the ``--errors`` file when given).
SHOWN_ERRORS = 5


class ErrorLog:
    """Error replies, one JSON object a line: ``{"line": 17, "error": "WRONGTYPE ..."}``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, where: str, message: str) -> None:
        kind, _, number = where.partition(" ")
        entry: dict[str, Any] = {kind: int(number) if number.isdigit() else where}
        entry["error"] = message
        self._stream.write(json.dumps(entry) + "\n")


class Accounting:
    """Counts every command's outcome as it comes, in input order.

    Args:
        locate: the position of a command by its index (0-based, from the
            input's start; indexes continue from ``start`` when resuming).
        start: commands before this run (a checkpoint's answered prefix).
        error_log: where every error reply goes, if anywhere.
        on_broken: called once, when the first command of unknown outcome or
            not sent comes in (the run should stop reading input).
        on_answered: called with the answered prefix's length as it grows.
    """

    def __init__(
        self,
        locate: Callable[[int], str],
        *,
        start: int = 0,
        error_log: ErrorLog | None = None,
        on_broken: Callable[[], object] | None = None,
        on_answered: Callable[[int], object] | None = None,
    ) -> None:
        self._locate = locate
        self._error_log = error_log
        self._on_broken = on_broken
        self._on_answered = on_answered
        self.start = start
        # Counted as the client's own pump counts them; what is added here:
        # positions, the answered prefix, and commands cut off by a stop.
        self._tally = PumpTally(None)
        self._counts = self._tally.report()
        self._cut_off = 0
        #: The answered prefix: input commands (from the start) all answered.
        self.answered_prefix = start
        self.first_errors: list[tuple[str, str]] = []
        self.started = time.perf_counter()
        self.finished: float | None = None

    def add(self, first: int, outcomes: list[Any]) -> None:
        """Count the outcomes of this run's commands ``first``, ``first + 1``, ..."""
        before = self._counts
        self._tally.add(outcomes)
        counts = self._counts = self._tally.report()
        if counts.errors != before.errors:
            for offset, outcome in enumerate(outcomes):
                if isinstance(outcome, Exception) and not isinstance(outcome, TransportError):
                    self._error(self.start + first + offset, outcome)
        if before.unknown or before.not_sent:
            return  # the prefix ended earlier
        if counts.unknown or counts.not_sent:
            self.answered_prefix = self.start + first + _first_unanswered(outcomes)
            if self._on_broken is not None:
                self._on_broken()
        else:
            self.answered_prefix = self.start + counts.commands
            if self._on_answered is not None:
                self._on_answered(self.answered_prefix)

    def _error(self, index: int, error: Exception) -> None:
        if len(self.first_errors) >= SHOWN_ERRORS and self._error_log is None:
            return
        where = self._locate(index)
        message = str(error)
        if len(self.first_errors) < SHOWN_ERRORS:
            self.first_errors.append((where, message))
        if self._error_log is not None:
            self._error_log.write(where, message)

    def interrupted(self, taken: int) -> None:
        """Count commands taken and not settled as of unknown outcome (the run was stopped)."""
        self._cut_off += max(taken - self.start - self.settled, 0)

    @property
    def acknowledged(self) -> int:
        """Commands answered with a reply."""
        return self._counts.acknowledged

    @property
    def errors(self) -> int:
        """Commands answered with an error reply."""
        return self._counts.errors

    @property
    def unknown(self) -> int:
        """Commands written and unanswered, or in flight when the run stopped."""
        return self._counts.unknown + self._cut_off

    @property
    def not_sent(self) -> int:
        """Commands never written: the server could not be reached."""
        return self._counts.not_sent

    @property
    def settled(self) -> int:
        """Commands whose outcome is counted (each in exactly one count)."""
        return self._counts.commands + self._cut_off

    @property
    def sent(self) -> int:
        """Commands written to a server (answered, or of unknown outcome)."""
        return self.acknowledged + self.errors + self.unknown

    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return max(end - self.started, 1e-9)

    def status(self) -> ExitStatus:
        """The exit status the counts alone call for (a stop's reason comes first)."""
        if self.unknown or self.not_sent:
            return ExitStatus.CONNECTION_LOST
        if self.errors:
            return ExitStatus.ERROR_REPLIES
        return ExitStatus.OK

    def counts(self) -> dict[str, int]:
        """The counts by name, as ``--json`` gives them."""
        return {
            "read": self.settled,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "error_replies": self.errors,
            "unknown": self.unknown,
            "not_sent": self.not_sent,
        }

    def summary(self) -> list[str]:
        """The counts as lines for people, with the first error replies and their positions."""
        elapsed = self.elapsed()
        lines = [
            f"  commands read     {self.settled:>12,}",
            f"  sent              {self.sent:>12,}",
            f"  acknowledged      {self.acknowledged:>12,}",
            f"  error replies     {self.errors:>12,}",
            f"  unknown outcome   {self.unknown:>12,}"
            + ("   (written, unanswered when a link broke)" if self.unknown else ""),
            f"  not sent          {self.not_sent:>12,}",
            f"  {elapsed:.2f} s, {self.settled / elapsed:,.0f} commands/s",
        ]
        lines.extend(
            f"  error reply at {where}: {message}" for where, message in self.first_errors
        )
        if self.errors > len(self.first_errors):
            lines.append(f"  ... and {self.errors - len(self.first_errors):,} more error replies")
        return lines


def _first_unanswered(outcomes: list[Any]) -> int:
    """The index in ``outcomes`` of the first one of unknown outcome or not sent."""
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, TransportError):
            return index
    return len(outcomes)
