"""Commands read from a file for ``triopipe pump``, with where each one came from.

:class:`CommandSource` is iterated once, lazily, by the client's pump: it
yields commands while remembering, in bounded memory, where each came from
(its line, or its number in RESP input) and where in the file the answered
prefix ends (for ``--checkpoint``).

Its rules:

- **A bad command is never raised into the pump.** A malformed line, a
  truncated RESP command or a refused command ends the iteration cleanly and
  is kept in :attr:`CommandSource.failure`: the pump then finishes every
  command before it (sent, applied and answered) and the run reports the
  failure with its line.
- **Blocks, not commands, pay the bookkeeping.** Input is read in blocks of
  whole lines (or RESP commands). A block with nothing unusual (no quote,
  comment or blank line; every name already allowed) is split at C speed
  and handed over whole; any other block goes command by command, which
  finds the exact line of a bad one.
- **Positions cost nothing per command.** Text commands are located by
  *segments* (a segment starts where a command's line is not the one after
  the previous command's: after a blank line or a comment); RESP commands by
  their number. Byte offsets are known at *marks*, one per block (a command
  boundary); a checkpoint is a mark plus the number of commands after it to
  skip. :attr:`CommandSource.taken` is exact even inside a block handed over
  whole (the block's iterator says how much of it is left).
- **Memory stays bounded**: :meth:`CommandSource.release` drops the segments
  and marks behind the answered prefix; the accounting calls it as outcomes
  come.
- **A lease bounds what a crash leaves in doubt**: with
  :meth:`~CommandSource.limit_taken`, no command at or past the limit is
  taken before the callback has raised it (a checkpoint writes it to disk
  first).
- :attr:`CommandSource.halted` (set when a connection broke) stops the
  reading at the next block.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, BinaryIO, Protocol

import hiredis

from ._exits import ExitStatus
from ._inline import InlineSyntaxError, split_inline

__all__ = ["Command", "CommandSource", "InputFailure", "Mark", "resp_size"]

_READ_SIZE = 64 * 1024
# A block holding none of these splits like bytes.split(), line by line, and
# has no comment: see _inline for the bytes that need the full rules.
_UNUSUAL = re.compile(rb"[\"'\x0b\x0c\x00#]")
_UNSEEN = ("", ExitStatus.OK)
_name = itemgetter(0)

#: A command as the pump takes it: a tuple, which the encoder packs in one C call.
Command = tuple[bytes, ...]


class Check(Protocol):
    """What refuses commands (see ``_refusals.CommandCheck``)."""

    by_name: dict[bytes, tuple[str, ExitStatus] | None]

    def __call__(self, command: Command) -> tuple[str, ExitStatus] | None: ...


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


def resp_size(command: Command) -> int:
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
        skip: commands to read and drop first (answered after ``start``).
        check: refuses commands (a reason and exit status) or allows them (None).
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
        check: Check | None = None,
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
        # Commands handed over, counting a whole block at once; the block's
        # iterator says how many of it are still to be taken.
        self._handed = self._start.commands
        self._block: Iterator[Command] | None = None
        #: Bytes of the input read so far (for the progress display).
        self.bytes_read = self._start.offset + len(first)
        #: Why the input stopped before its end, if it did.
        self.failure: InputFailure | None = None
        #: Set to stop reading at the next block (a connection broke).
        self.halted = False
        first_line = (self._start.commands, self._start.line + 1)
        self._segments: deque[tuple[int, int]] = deque([first_line])
        self._marks: deque[Mark] = deque([self._start])
        #: Commands read and dropped because a checkpoint says they were answered.
        self.skipped = 0
        self._limit = 1 << 62
        self._extend: Callable[[int], int] | None = None

    @property
    def taken(self) -> int:
        """Commands taken from the input so far (from its start, skipped ones included)."""
        block = self._block
        if block is None:
            return self._handed
        return self._handed - block.__length_hint__()  # type: ignore[attr-defined, no-any-return]

    def limit_taken(self, limit: int, extend: Callable[[int], int]) -> None:
        """Take no command numbered ``limit`` or more before ``extend(number)`` raised the limit.

        What a checkpoint's lease uses: ``extend`` writes the new limit to
        disk before returning it.
        """
        self._limit = limit
        self._extend = extend

    def __iter__(self) -> Iterator[Command]:
        # One C iterator over the blocks' own iterators: nothing runs in
        # Python per command, only per block.
        return chain.from_iterable(self._handed_blocks())

    # -- where commands came from -------------------------------------------

    def locate(self, index: int) -> str:
        """Where command ``index`` (0-based, counted from the input's start) came from."""
        if self.form == "resp":
            return f"command {index + 1}"
        segments = self._segments
        at = bisect.bisect_right(segments, (index, float("inf"))) - 1
        first, line = segments[max(at, 0)]
        return f"line {line + index - first}"

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

    # -- handing commands over ----------------------------------------------

    def _handed_blocks(self) -> Iterator[Iterator[Command]]:
        """An iterator over each block read, the lease extended first when the block passes it.

        The first ``skip`` commands are counted as taken and dropped.
        """
        blocks = self._text() if self.form == "text" else self._resp()
        to_skip = self._skip
        for block in blocks:
            end = self._handed + len(block)
            if end > self._limit and self._extend is not None:
                self._limit = self._extend(end)
            self._handed = end
            if to_skip:
                dropped = min(to_skip, len(block))
                self.skipped += dropped
                to_skip -= dropped
                block = block[dropped:]
            self._block = iter(block)
            yield self._block

    def _allowed(self, commands: list[Command]) -> bool:
        """Whether every command of a block is allowed by its name alone (known and allowed)."""
        check = self._check
        if check is None:
            return True
        by_name = check.by_name
        return all(by_name.get(name, _UNSEEN) is None for name in set(map(_name, commands)))

    def _verdict(self, command: Command, where: str) -> bool:
        """Check one command; on a refusal keep it as the failure and return False."""
        check = self._check
        if check is None:
            return True
        verdict = check(command)
        if verdict is None:
            return True
        reason, status = verdict
        self.failure = InputFailure(where, reason, status)
        return False

    # -- readers --------------------------------------------------------------

    def _blocks(self) -> Iterator[tuple[bytes, int]]:
        """Blocks of whole lines (without the last newline), and the bytes each consumed."""
        stream = self._stream
        data = self._first
        pending = b""
        while True:
            if not data:
                if pending:
                    yield pending, len(pending)
                return
            if pending:
                data = pending + data
            cut = data.rfind(b"\n")
            if cut < 0:
                pending = data
            else:
                pending = data[cut + 1 :]
                yield data[:cut], cut + 1
            data = stream.read(_READ_SIZE)
            self.bytes_read += len(data)

    def _text(self) -> Iterator[list[Command]]:
        """Blocks of commands of text lines; blank lines and ``#`` comments are skipped."""
        offset = self._start.offset
        number = self._start.line  # lines consumed
        expected = number + 1  # the line of the next command, without a gap
        segments, marks = self._segments, self._marks
        for block, consumed in self._blocks():
            if self.halted:
                return
            lines = block.split(b"\n")
            commands = None
            if _UNUSUAL.search(block) is None:
                commands = list(map(tuple, map(bytes.split, lines)))
                if not all(commands) or not self._allowed(commands):
                    commands = None
            if commands is not None:
                if number + 1 != expected:
                    segments.append((self._handed, number + 1))
                number += len(lines)
                expected = number + 1
                yield commands
            else:
                for line in lines:
                    number += 1
                    try:
                        command = tuple(split_inline(line))
                    except InlineSyntaxError as exc:
                        self.failure = InputFailure(f"line {number}", str(exc))
                        return
                    if not command or command[0][:1] == b"#":
                        continue
                    if not self._verdict(command, f"line {number}"):
                        return
                    if number != expected:
                        segments.append((self._handed, number))
                    expected = number + 1
                    yield [command]
            offset += consumed
            marks.append(Mark(self._handed, offset, number))

    def _resp(self) -> Iterator[list[Command]]:
        """Blocks of RESP commands: arrays of bulk strings, as ``redis-cli --pipe`` reads."""
        stream = self._stream
        # hiredis itself, one command at a time: a command before bad bytes
        # is still taken (and sent), and a push or error frame is refused.
        reader = hiredis.Reader()
        gets = reader.gets
        offset = self._start.offset
        marks = self._marks
        data = self._first
        while data:
            if self.halted:
                return
            reader.feed(data)
            commands: list[Any] = []  # hiredis's lists, checked before they are taken
            bad_bytes = None
            try:
                # A loop in C; list.extend keeps what it took before a raise.
                commands.extend(iter(gets, False))
            except hiredis.ProtocolError as exc:
                bad_bytes = f"not RESP: {exc}"
            good = self._good_prefix(commands)
            if good:
                taken: list[Command] = list(map(tuple, commands[:good]))
                if self._track:
                    offset += sum(map(resp_size, taken))
                yield taken
            if self.failure is not None:
                return
            if bad_bytes is not None:
                self.failure = InputFailure(f"command {self._handed + 1}", bad_bytes)
                return
            if self._track:
                marks.append(Mark(self._handed, offset, 0))
            data = stream.read(_READ_SIZE)
            self.bytes_read += len(data)
        if reader.has_data():
            self.failure = InputFailure(
                f"command {self._handed + 1}", "the input ends in the middle of this command"
            )

    def _good_prefix(self, commands: list[Any]) -> int:
        """How many commands of a RESP block come before the first bad one (kept as failure)."""
        if (
            set(map(type, commands)) <= {list}
            and all(commands)
            and set(map(type, chain.from_iterable(commands))) <= {bytes}
            and self._allowed(commands)
        ):
            return len(commands)
        for index, command in enumerate(commands):
            where = f"command {self._handed + index + 1}"
            if type(command) is not list or not command or not _all_bytes(command):
                self.failure = InputFailure(where, "RESP input must be arrays of bulk strings")
                return index
            if not self._verdict(tuple(command), where):
                return index
        return len(commands)


def _all_bytes(command: Sequence[object]) -> bool:
    """Whether every argument of a RESP command is a bulk string."""
    return all(type(argument) is bytes for argument in command)
