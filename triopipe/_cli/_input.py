"""Commands read from a file for ``triopipe pump``, with where each one came from.

:class:`CommandSource` is iterated once, lazily, by the client's pump: it
yields commands while remembering, in bounded memory, where each came from
(its line, or its number in RESP input) and where in the file the
acknowledged prefix ends (for ``--checkpoint``).

Its rules:

- **A bad command is never raised into the pump.** A malformed line, a
  truncated RESP command or a refused command ends the iteration cleanly and
  is kept in :attr:`CommandSource.failure`: the pump then finishes every
  command before it (sent, applied and acknowledged) and the run reports the
  failure with its line.
- **Positions cost nothing per command.** Text commands are located by
  *segments* (a segment starts where a command's line is not the one after
  the previous command's, after a blank line or a comment); RESP commands by
  their number. Byte offsets are known at *marks*, one per block read (a
  command boundary); a checkpoint is a mark plus the number of commands after
  it to skip.
- **Memory stays bounded**: :meth:`CommandSource.release` drops the segments
  and marks behind the acknowledged prefix; the accounting calls it as
  outcomes come.
- :attr:`CommandSource.halted` (set when a connection broke) stops the
  reading at the next command.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO

import hiredis

from ._exits import ExitStatus
from ._inline import InlineSyntaxError, split_inline

__all__ = ["CommandSource", "InputFailure", "Mark", "resp_size"]

_READ_SIZE = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Mark:
    """A command boundary in the input: ``commands`` read before ``offset``, ending at ``line``."""

    commands: int
    offset: int
    line: int


@dataclasses.dataclass(frozen=True)
class InputFailure:
    """Why the input stopped early, and where (the command there was not sent)."""

    where: str
    reason: str
    status: ExitStatus = ExitStatus.BAD_INPUT

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def resp_size(command: list[bytes]) -> int:
    """The bytes of ``command`` encoded as a RESP array of bulk strings."""
    size = 3 + len(str(len(command)))
    for argument in command:
        length = len(argument)
        size += 5 + len(str(length)) + length
    return size


class CommandSource:
    """The commands of ``stream`` (text lines or RESP), located, stopping at the first bad one.

    Args:
        stream: the input, opened in binary mode, positioned at ``start.offset``.
        form: ``"text"``, ``"resp"`` or ``"auto"`` (RESP when the first byte is ``*``).
        start: where reading starts (a checkpoint's mark), default the beginning.
        skip: commands to read and drop first (acknowledged after ``start``).
        check: called with each command's name and arguments; returns a
            refusal (reason, exit status) or None. Its verdicts are not cached
            here: it caches what it can.
        track_offsets: keep byte offsets of RESP input (costs a little per
            command; text input has them for free).
    """

    def __init__(
        self,
        stream: BinaryIO,
        form: str = "auto",
        *,
        start: Mark | None = None,
        skip: int = 0,
        check: Callable[[list[bytes]], tuple[str, ExitStatus] | None] | None = None,
        track_offsets: bool = False,
    ) -> None:
        self._stream = stream
        self._start = start or Mark(0, 0, 0)
        self._skip = skip
        self._check = check
        self._track = track_offsets
        first = stream.read(_READ_SIZE)
        self.form = "resp" if form == "resp" or (form == "auto" and first[:1] == b"*") else "text"
        self._first = first
        #: Commands handed to the pump so far (skipped ones included).
        self.taken = self._start.commands
        #: Bytes of the input read so far (for the progress display).
        self.bytes_read = self._start.offset + len(first)
        #: Why the input stopped before its end, if it did.
        self.failure: InputFailure | None = None
        #: Set to stop reading at the next command (a connection broke).
        self.halted = False
        self._segments: deque[tuple[int, int]] = deque(
            [(self._start.commands, self._start.line + 1)]
        )
        self._marks: deque[Mark] = deque([self._start])

    def __iter__(self) -> Iterator[list[bytes]]:
        commands = self._text() if self.form == "text" else self._resp()
        skip = self._skip
        for command in commands:
            if skip:
                skip -= 1
                continue
            yield command

    # -- where commands came from -------------------------------------------

    def locate(self, index: int) -> str:
        """Where command ``index`` (0-based, counted from the input's start) came from."""
        if self.form == "resp":
            return f"command {index + 1}"
        segments = self._segments
        at = bisect.bisect_right(segments, (index, float("inf"))) - 1
        first, line = segments[max(at, 0)]
        return f"line {line + index - first}"

    def position_kind(self) -> str:
        """How :meth:`locate` names positions: ``line`` or ``command``."""
        return "command" if self.form == "resp" else "line"

    def mark_before(self, commands: int) -> Mark:
        """The last command boundary with an offset at or before ``commands`` commands."""
        marks = self._marks
        best = marks[0]
        for mark in marks:
            if mark.commands > commands:
                break
            best = mark
        return best

    def release(self, commands: int) -> None:
        """Forget positions of the first ``commands`` commands, keeping what locates the rest."""
        segments = self._segments
        while len(segments) > 1 and segments[1][0] <= commands:
            segments.popleft()
        marks = self._marks
        while len(marks) > 1 and marks[1].commands <= commands:
            marks.popleft()

    # -- readers --------------------------------------------------------------

    def _refused(self, command: list[bytes], where: str) -> bool:
        verdict = self._check(command) if self._check is not None else None
        if verdict is None:
            return False
        reason, status = verdict
        self.failure = InputFailure(where, reason, status)
        return True

    def _text(self) -> Iterator[list[bytes]]:
        """Commands of text lines; blank lines and ``#`` comments are skipped."""
        stream = self._stream
        offset = self._start.offset
        number = self._start.line
        index = self.taken
        expected = number + 1
        segments, marks = self._segments, self._marks
        check = self._check
        pending = b""
        data = self._first
        while True:
            if not data:
                if not pending:
                    return
                lines, pending, consumed = [pending], b"", len(pending)
            else:
                if pending:
                    data = pending + data
                cut = data.rfind(b"\n")
                if cut < 0:
                    pending = data
                    data = stream.read(_READ_SIZE)
                    self.bytes_read += len(data)
                    continue
                lines = data[:cut].split(b"\n")
                pending = data[cut + 1 :]
                consumed = cut + 1
            for line in lines:
                number += 1
                try:
                    command = split_inline(line)
                except InlineSyntaxError as exc:
                    self.failure = InputFailure(f"line {number}", str(exc))
                    return
                if not command or command[0][:1] == b"#":
                    continue
                if check is not None and self._refused(command, f"line {number}"):
                    return
                if self.halted:
                    return
                if number != expected:
                    segments.append((index, number))
                expected = number + 1
                yield command
                index += 1
                self.taken = index
            offset += consumed
            marks.append(Mark(index, offset, number))
            data = stream.read(_READ_SIZE)
            self.bytes_read += len(data)

    def _resp(self) -> Iterator[list[bytes]]:
        """Commands of RESP input: arrays of bulk strings, as ``redis-cli --pipe`` reads."""
        stream = self._stream
        # hiredis itself, one command at a time: a command before bad bytes
        # is still taken (and sent), and a push or error frame is refused.
        reader = hiredis.Reader()
        gets = reader.gets
        index = self.taken
        offset = self._start.offset
        track = self._track
        marks = self._marks
        check = self._check
        data = self._first
        while data:
            reader.feed(data)
            while True:
                try:
                    command = gets()
                except hiredis.ProtocolError as exc:
                    self.failure = InputFailure(f"command {index + 1}", f"not RESP: {exc}")
                    return
                if command is False:
                    break
                if type(command) is not list or not command or not _all_bytes(command):
                    self.failure = InputFailure(
                        f"command {index + 1}", "RESP input must be arrays of bulk strings"
                    )
                    return
                if check is not None and self._refused(command, f"command {index + 1}"):
                    return
                if self.halted:
                    return
                yield command
                index += 1
                self.taken = index
                if track:
                    offset += resp_size(command)
            if track:
                marks.append(Mark(index, offset, 0))
            data = stream.read(_READ_SIZE)
            self.bytes_read += len(data)
        if reader.has_data():
            self.failure = InputFailure(
                f"command {index + 1}", "the input ends in the middle of this command"
            )


def _all_bytes(command: list[object]) -> bool:
    """Whether every argument of a RESP command is a bulk string."""
    return all(type(argument) is bytes for argument in command)
