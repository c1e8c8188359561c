"""What ``import`` and ``copy`` did, counted exactly; their exit statuses and progress.

Rules that live here:

* Every command sent is counted once, from its outcome: acknowledged (the
  server replied), an error reply, unknown (written before its link broke:
  maybe applied), or not sent (its server could not be reached). Records that
  became no command are counted apart, as bad.
* Each failure is described by the caller (``where``: a record number, a
  key) and kept in full only in the ``--errors`` file; the summary shows the
  first few.
* A finished run's exit status, first match wins: :data:`EXIT_INTERRUPTED`
  for Ctrl-C (the summary then counts what was answered before it; commands
  in flight may or may not have been applied), :data:`EXIT_CONNECTION_LOST`
  when a link failed midway (unknown or unsent commands, a source read or
  scan broken off), :data:`EXIT_BAD_INPUT` for input that stopped the run,
  :data:`EXIT_DIFFERENT` when ``copy --verify`` found differences,
  :data:`EXIT_ERROR_REPLIES` for error replies, else :data:`EXIT_OK`.
* Tallies of several workers add up field by field.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import anyio

from .._exceptions import ConnectionLostError, ResponseError, TransportError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CANNOT_CONNECT",
    "EXIT_CONNECTION_LOST",
    "EXIT_DIFFERENT",
    "EXIT_ERROR_REPLIES",
    "EXIT_INTERRUPTED",
    "EXIT_NO_INPUT",
    "EXIT_OK",
    "EXIT_USAGE",
    "INPUT_ERRORS",
    "Progress",
    "Tally",
    "input_problem",
]

# The numbers of pump's statuses (the command line's one table).
EXIT_OK = 0
#: The server answered some command with an error.
EXIT_ERROR_REPLIES = 1
#: A bad option, URL or template, or a header without a template's field:
#: nothing was sent.
EXIT_USAGE = 2
#: Bad input stopped the run (a bad record, unreadable text); everything
#: before it was applied.
EXIT_BAD_INPUT = 3
#: A server could not be reached, or refused the credentials: nothing was sent.
EXIT_CANNOT_CONNECT = 4
#: A link broke midway: some commands have an unknown outcome or were not
#: sent (copy: some keys could not be read).
EXIT_CONNECTION_LOST = 5
#: The input file is missing or unreadable: nothing was sent.
EXIT_NO_INPUT = 6
#: copy --verify found differences between source and target.
EXIT_DIFFERENT = 9
#: Interrupted (Ctrl-C), as shells report SIGINT.
EXIT_INTERRUPTED = 130

# Failures quoted in the summary; the --errors file has them all.
_QUOTED = 5


@dataclasses.dataclass
class Tally:
    """Counts of one run (or the sum of several workers' runs)."""

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
    #: The bad record that stopped the run (import), if one did.
    stopped_at: str | None = None
    quoted: list[str] = dataclasses.field(default_factory=list)
    errors_file: TextIO | None = dataclasses.field(default=None, repr=False, compare=False)

    def failure(self, text: str) -> None:
        """Keep the description of one failure (bad record or failed command)."""
        if len(self.quoted) < _QUOTED:
            self.quoted.append(text)
        if self.errors_file is not None:
            self.errors_file.write(text + "\n")

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
                kind = "error reply"
            self.failure(f"{where(first + offset)}: {kind}: {outcome}")
        self.acknowledged += len(outcomes) - failed

    def merge(self, other: Tally) -> None:
        """Add another worker's counts to these."""
        for field in dataclasses.fields(self):
            if field.type == "int":  # every count
                name = field.name
                setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stopped_at = self.stopped_at or other.stopped_at
        self.quoted = (self.quoted + other.quoted)[:_QUOTED]

    def exit_status(self) -> int:
        """The run's exit status (see the module's rules)."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.unknown or self.not_sent or self.broken_scans or self.source_link_errors:
            return EXIT_CONNECTION_LOST
        if self.stopped_at is not None:
            return EXIT_BAD_INPUT
        if self.different:
            return EXIT_DIFFERENT
        return EXIT_ERROR_REPLIES if self.errors or self.source_errors else EXIT_OK

    def as_dict(self, names: dict[str, str], target: str, elapsed: float) -> dict[str, Any]:
        """The counts for ``--json``, each under its name in ``names`` (fields left out are 0)."""
        result: dict[str, Any] = {"target": target, "seconds": round(elapsed, 3)}
        for field, name in names.items():
            result[name] = getattr(self, field)
        result["exit_status"] = self.exit_status()
        if self.interrupted:
            result["interrupted"] = True
        if self.stopped_at is not None:
            result["stopped_at"] = self.stopped_at
        return result

    def print_summary(self, lines: list[str], json_form: dict[str, Any] | None) -> None:
        """Print the summary: ``json_form`` on stdout if given, else ``lines`` on stderr."""
        if json_form is not None:
            print(json.dumps(json_form), flush=True)
            return
        if self.interrupted and lines:
            print(
                "interrupted (Ctrl-C): commands in flight may or may not be applied",
                file=sys.stderr,
            )
        for line in lines:
            print(line, file=sys.stderr)
        if self.stopped_at is not None:
            print(f"  stopped at bad {self.stopped_at}", file=sys.stderr)
        for text in self.quoted:
            if text != self.stopped_at:
                print(f"  {text}", file=sys.stderr)


#: What reading or using the input may raise (EOFError: a cut gzip stream).
INPUT_ERRORS = (OSError, ValueError, EOFError)


def input_problem(exc: OSError | ValueError | EOFError) -> str:
    """A one-line message for input that cannot be read or used."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot read {exc.filename}: {exc.strerror}"
    if isinstance(exc, UnicodeDecodeError):
        return f"the input is not valid {exc.encoding} (say --encoding): {exc.reason}"
    if isinstance(exc, EOFError):
        return f"the compressed input is cut short: {exc}"
    return str(exc)


class Progress:
    """A progress line from a done count and an optional total.

    On a terminal it is rewritten in place four times a second; otherwise a
    plain line is printed every five seconds; nothing when quiet.
    """

    def __init__(
        self,
        done: Callable[[], int],
        total: Callable[[], float | None],
        unit: str,
        *,
        quiet: bool,
        fraction: Callable[[], float | None] | None = None,
    ) -> None:
        self._done = done
        self._total = total
        self._fraction = fraction
        self._unit = unit
        self._quiet = quiet
        self._terminal = sys.stderr.isatty()
        self._started = time.monotonic()
        self._printed = False

    def line(self) -> str:
        """The current progress, e.g. ``40% 400,000 keys, 210,000/s, ETA 3 s``."""
        done = self._done()
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = done / elapsed
        fraction = self._fraction() if self._fraction is not None else None
        total = self._total()
        if fraction is None and total:
            fraction = min(done / total, 1.0)
        text = f"{done:,} {self._unit}, {rate:,.0f}/s"
        if fraction:
            eta = elapsed * (1 - fraction) / fraction
            text = f"{fraction:4.0%} {text}, ETA {eta:,.0f} s"
        return text

    @property
    def period(self) -> float:
        """Seconds between two prints."""
        return 0.25 if self._terminal else 5.0

    def tick(self) -> None:
        """Print the progress (unless quiet)."""
        if self._quiet:
            return
        if self._terminal:
            print(f"\r{self.line()}\x1b[K", end="", file=sys.stderr, flush=True)
        else:
            print(self.line(), file=sys.stderr, flush=True)
        self._printed = True

    async def run(self) -> None:
        """Print every period until cancelled."""
        if self._quiet:
            return
        while True:
            await anyio.sleep(self.period)
            self.tick()

    def finish(self) -> None:
        """End the in-place line, so the summary starts on a line of its own."""
        if self._printed and self._terminal:
            print(file=sys.stderr)
