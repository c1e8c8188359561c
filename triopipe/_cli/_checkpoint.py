"""``--checkpoint FILE``: where a mass insertion may resume, and what it may apply twice.

A checkpoint is a small JSON file rewritten atomically (a temporary file in
the same directory, flushed and renamed over the old one), a few times a
second while a run goes. It records:

- ``answered``: the length of the *answered prefix*, every command from the
  input's start up to it answered by the server (a reply or an error reply);
- ``mark``: a command boundary in the input at or before that prefix (its
  byte offset, commands and line before it), where a rerun seeks to before
  skipping ``answered - mark.commands`` commands;
- ``lease``: how many commands may have been taken from the input. A run
  takes no command at or past its lease before a checkpoint with a longer
  lease is on disk, so after a crash, even ``kill -9``, the commands that may
  have been applied past the prefix are fewer than ``lease - answered``;
- ``closed``: written by a run that ended (rather than was killed); then
  ``in_doubt`` is exact: the commands of unknown outcome.

Rerunning with the same checkpoint resumes after the answered prefix; the
commands that may then be applied twice are those in doubt. That is why a
checkpoint is refused for commands that are not idempotent (``INCR``,
``LPUSH``...) unless the user accepts at-least-once delivery: see
``IDEMPOTENT`` in ``_refusals``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ._exits import CliError, ExitStatus
from ._input import Mark

__all__ = ["LEASE", "Checkpoint", "CheckpointFile", "Recorder"]

# Refreshed at most this often (seconds) as the answered prefix grows.
_INTERVAL = 0.2
#: Commands a run may take past the answered prefix before writing a new lease.
LEASE = 250_000


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds (see the module's docstring)."""

    input: str
    size: int
    form: str
    answered: int
    mark: Mark
    lease: int
    closed: bool = False
    in_doubt: int = 0
    finished: bool = False

    @property
    def may_apply_twice(self) -> int:
        """Commands past the answered prefix the last run may have applied (an upper bound)."""
        return self.in_doubt if self.closed else max(self.lease - self.answered, 0)


class CheckpointFile:
    """Reads and atomically rewrites one checkpoint file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._last_write = 0.0

    def load(self) -> Checkpoint | None:
        """The checkpoint on disk, or None when there is none yet.

        Raises:
            CliError: the file is unreadable or not a checkpoint (USAGE).
        """
        try:
            with open(self.path, encoding="utf-8") as stream:
                data: dict[str, Any] = json.load(stream)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            message = f"cannot read checkpoint {self.path}: {exc}"
            raise CliError(message, ExitStatus.USAGE) from None
        try:
            data["mark"] = Mark(**data["mark"])
            return Checkpoint(**data)
        except (KeyError, TypeError) as exc:
            raise CliError(
                f"{self.path} is not a triopipe checkpoint ({exc})", ExitStatus.USAGE
            ) from None

    def write(self, checkpoint: Checkpoint) -> None:
        """Replace the file with ``checkpoint``, atomically (readers see old or new, whole)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, temporary = tempfile.mkstemp(prefix=".checkpoint-", dir=directory)
        except OSError as exc:
            raise self._unwritable(exc) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                json.dump(dataclasses.asdict(checkpoint), stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, OSError):
                raise self._unwritable(exc) from None
            raise
        self._last_write = time.monotonic()

    def _unwritable(self, error: OSError) -> CliError:
        return CliError(
            f"cannot write checkpoint {self.path}: {error.strerror or error}", ExitStatus.USAGE
        )

    def due(self) -> bool:
        """Whether the last write is old enough for another one."""
        return time.monotonic() - self._last_write >= _INTERVAL


class Recorder:
    """Keeps a checkpoint file up to date as a run's answered prefix grows.

    Args:
        file: where to write.
        template: the run's checkpoint at its start (input, size, format).
        mark_before: the last command boundary at or before a prefix.
    """

    def __init__(
        self, file: CheckpointFile, template: Checkpoint, mark_before: Callable[[int], Mark]
    ) -> None:
        self._file = file
        self._template = template
        self._mark_before = mark_before
        self.answered = template.answered
        self.lease = template.answered + LEASE
        self._write()

    def answered_to(self, answered: int) -> None:
        """The answered prefix grew to ``answered``; rewrite the file if due."""
        self.answered = answered
        if self._file.due():
            self._write()

    def extend_lease(self, taken: int) -> int:
        """Allow taking commands past ``taken``: write a longer lease first; returns it."""
        self.lease = max(taken, self.answered) + LEASE
        self._write()
        return self.lease

    def close(self, in_doubt: int, finished: bool) -> None:
        """Write the final checkpoint of a run that ended, its in-doubt count exact."""
        self._write(closed=True, in_doubt=in_doubt, finished=finished)

    def _write(self, **final: Any) -> None:
        self._file.write(
            dataclasses.replace(
                self._template,
                answered=self.answered,
                mark=self._mark_before(self.answered),
                lease=self.lease,
                **final,
            )
        )
