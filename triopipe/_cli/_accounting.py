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

Every failure is said one way, by :func:`failure_text` and :func:`failure_lines`,
whichever subcommand met it: ``line 17: error reply: WRONGTYPE ...`` in the
summary, ``{"line": 17, "error": "error reply: WRONGTYPE ..."}`` in the
``--errors`` file (the position as fields, the kind of failure first in the
message: ``error reply``, ``unknown outcome (its link broke)``, ``not
sent``; a bad record's or a verification's own words).

``import`` and ``copy`` count into a :class:`Tally` instead: the same four
outcomes (and a copy's own: keys kept, unreadable, gone), in counts that the
processes of ``--workers`` add up field by field. Its exit status, first
match wins: interrupted; a link broken midway (unknown or unsent commands, a
source read or scan broken off); bad input that stopped the run; differences
found by ``copy --verify``; error replies; else OK. Both kinds of summary
print their counts with :func:`count_lines`, under the same names.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from .._exceptions import ConnectionLostError, ResponseError, TransportError
from .._statistics import PumpTally
from ._exits import ExitStatus

__all__ = ["Accounting", "ErrorLog", "Tally", "count_lines", "failure_lines", "failure_text"]

#: Error replies printed in the summary; the others are only counted (and
#: written to the ``--errors`` file when given).
SHOWN_ERRORS = 5


#: The kind of failure of a command the server refused.
ERROR_REPLY = "error reply"


def failure_text(kind: str, detail: object) -> str:
    """What failed, as summaries and ``--errors`` files say it: ``error reply: WRONGTYPE ...``."""
    return f"{kind}: {detail}"


def failure_lines(failures: Sequence[tuple[str, str]]) -> list[str]:
    """Summary lines of ``(where, what)`` failures: ``  line 17: error reply: WRONGTYPE ...``."""
    return [f"  {where}: {what}" for where, what in failures]


class ErrorLog:
    """Failures, one JSON object a line: ``{"line": 17, "error": "WRONGTYPE ..."}``.

    The position becomes fields: ``line 17`` -> ``{"line": 17}``, ``record 4
    (line 5)`` -> ``{"record": 4, "line": 5}``, ``key user:1`` -> ``{"key":
    "user:1"}``; anything else -> ``{"at": ...}``.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, where: str, message: str) -> None:
        """Log the failure at ``where`` (said by :func:`failure_text`)."""
        self._stream.write(json.dumps({**_position(where), "error": message}) + "\n")


def _position(where: str) -> dict[str, Any]:
    numbered = _NUMBERED.fullmatch(where)
    if numbered is not None:
        kind, number, line = numbered.groups()
        position: dict[str, Any] = {kind: int(number)}
        if line is not None:
            position["line"] = int(line)
        return position
    kind, _, name = where.partition(" ")
    return {kind: name} if name and kind.isalpha() else {"at": where}


# "line 17", "command 17", "record 4 (line 5)"
_NUMBERED = re.compile(r"(line|command|record) (\d+)(?: \(line (\d+)\))?")


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
        message = failure_text(ERROR_REPLY, error)
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
        lines = count_lines(
            [
                ("commands read", self.settled, ""),
                *_outcome_rows(self.sent, self.acknowledged, self.errors, self.unknown),
                ("not sent", self.not_sent, ""),
            ]
        )
        lines.append(f"  {elapsed:.2f} s, {self.settled / elapsed:,.0f} commands/s")
        lines.extend(failure_lines(self.first_errors))
        if self.errors > len(self.first_errors):
            lines.append(f"  ... and {self.errors - len(self.first_errors):,} more error replies")
        return lines


def _first_unanswered(outcomes: list[Any]) -> int:
    """The index in ``outcomes`` of the first one of unknown outcome or not sent."""
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, TransportError):
            return index
    return len(outcomes)


def count_lines(rows: Sequence[tuple[str, int, str]]) -> list[str]:
    """Summary lines of ``(name, count, note)`` rows, counts aligned (a note only when nonzero)."""
    return [
        f"  {name:<18}{count:>12,}" + (f"   ({note})" if note and count else "")
        for name, count, note in rows
    ]


def _outcome_rows(
    sent: int, acknowledged: int, errors: int, unknown: int
) -> list[tuple[str, int, str]]:
    return [
        ("sent", sent, ""),
        ("acknowledged", acknowledged, ""),
        ("error replies", errors, ""),
        ("unknown outcome", unknown, "written, unanswered when a link broke"),
    ]


@dataclasses.dataclass
class Tally:
    """Counts of one ``import`` or ``copy`` run (or the sum of its workers' runs)."""

    #: import: records read (good and bad); copy: keys found by SCAN.
    items: int = 0
    #: import: records that became no command; copy: keys gone before DUMP.
    skipped: int = 0
    commands: int = 0
    acknowledged: int = 0
    errors: int = 0
    unknown: int = 0
    not_sent: int = 0
    #: copy without --replace: keys already at the target (kept as they were).
    busy: int = 0
    #: copy: keys the source could not read (an error reply to DUMP or PTTL).
    source_errors: int = 0
    #: copy: of those, keys unread because the source's link broke.
    source_link_errors: int = 0
    #: copy: source servers whose SCAN broke off (their other keys not copied).
    broken_scans: int = 0
    #: copy --verify: sampled keys compared, and differences found.
    checked: int = 0
    different: int = 0
    #: Ctrl-C stopped the run (commands in flight then are not counted).
    interrupted: bool = False
    #: Where the bad record that stopped the run (import) is, and what was wrong.
    stopped_at: str | None = None
    stop_reason: str | None = None
    #: The exit status that stop calls for (default: bad input).
    stop_status: ExitStatus | None = None
    #: The first failures, as (where, what) pairs: shown in the summary.
    quoted: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: Where every failure goes (``--errors``), if anywhere.
    errors_file: ErrorLog | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def sent(self) -> int:
        """Commands written to a server (answered, kept, or of unknown outcome)."""
        return self.commands - self.not_sent

    def failure(self, where: str, what: str) -> None:
        """Keep one failure (bad record, failed command): ``where`` it is, and ``what`` failed."""
        if len(self.quoted) < SHOWN_ERRORS:
            self.quoted.append((where, what))
        if self.errors_file is not None:
            self.errors_file.write(where, what)

    def outcomes(self, first: int, outcomes: list[Any], where: Callable[[int], str]) -> None:
        """Count the outcomes of commands ``first``, ``first + 1``, ... as they come.

        ``where(index)`` names command ``index`` for people (its record, its key).
        """
        self.commands += len(outcomes)
        failed = 0
        for offset, outcome in enumerate(outcomes):
            if not isinstance(outcome, Exception):
                continue
            failed += 1
            if isinstance(outcome, ResponseError) and outcome.code == "BUSYKEY":
                self.busy += 1
                continue
            if isinstance(outcome, ConnectionLostError) and outcome.sent:
                self.unknown += 1
                kind = "unknown outcome (its link broke)"
            elif isinstance(outcome, TransportError):
                self.not_sent += 1
                kind = "not sent"
            else:
                self.errors += 1
                kind = ERROR_REPLY
            self.failure(where(first + offset), failure_text(kind, outcome))
        self.acknowledged += len(outcomes) - failed

    def merge(self, other: Tally) -> None:
        """Add another worker's counts to these."""
        for field in dataclasses.fields(self):
            if field.type == "int":  # every count
                name = field.name
                setattr(self, name, getattr(self, name) + getattr(other, name))
        if self.stopped_at is None:
            self.stopped_at, self.stop_reason = other.stopped_at, other.stop_reason
            self.stop_status = other.stop_status
        self.interrupted = self.interrupted or other.interrupted
        self.quoted = (self.quoted + other.quoted)[:SHOWN_ERRORS]

    def exit_status(self) -> ExitStatus:
        """The run's exit status (see the module's rules)."""
        if self.interrupted:
            return ExitStatus.INTERRUPTED
        if self.unknown or self.not_sent or self.broken_scans or self.source_link_errors:
            return ExitStatus.CONNECTION_LOST
        if self.stopped_at is not None:
            return self.stop_status or ExitStatus.BAD_INPUT
        if self.different:
            return ExitStatus.DIFFERENT
        if self.errors or self.source_errors:
            return ExitStatus.ERROR_REPLIES
        return ExitStatus.OK

    def outcome_lines(self) -> list[str]:
        """The commands' outcomes as summary lines, named as pump's are."""
        return count_lines(
            [
                *_outcome_rows(self.sent, self.acknowledged, self.errors, self.unknown),
                ("not sent", self.not_sent, "their server could not be reached"),
            ]
        )

    def as_dict(self, names: dict[str, str], elapsed: float, **about: Any) -> dict[str, Any]:
        """The counts for ``--json``, each under its name in ``names``, after ``about``."""
        result: dict[str, Any] = dict(about)
        for field, name in names.items():
            result[name] = getattr(self, field)
        result["seconds"] = round(elapsed, 3)
        result["rate"] = round(self.commands / max(elapsed, 1e-9))
        result["stopped_at"] = self.stopped_at
        result["stop_reason"] = self.stop_reason
        result["first_errors"] = [{"at": where, "error": what} for where, what in self.quoted]
        result["interrupted"] = self.interrupted
        result["exit_status"] = int(self.exit_status())
        return result

    def print_summary(
        self, name: str, lines: list[str] | None, json_form: dict[str, Any] | None
    ) -> None:
        """Print ``lines`` (the summary; None: quiet) on stderr, ``json_form`` on stdout if given.

        Quiet, why the run stopped is still said, in one line (as pump does).
        """
        if lines is None:
            if self.stopped_at is not None:
                print(
                    f"triopipe {name}: stopped at {self.stopped_at}: {self.stop_reason}",
                    file=sys.stderr,
                    flush=True,
                )
        else:
            if self.interrupted:
                lines.append(
                    "  interrupted (Ctrl-C): commands in flight may or may not be applied"
                )
            if self.stopped_at is not None:
                lines.append(f"  stopped at {self.stopped_at}: {self.stop_reason}")
            lines.extend(
                failure_lines([quoted for quoted in self.quoted if quoted[0] != self.stopped_at])
            )
            if self.unknown:
                lines.append(f"  {self.unknown:,} commands may or may not have been applied")
            print("\n".join(lines), file=sys.stderr, flush=True)
        if json_form is not None:
            print(json.dumps(json_form), flush=True)
