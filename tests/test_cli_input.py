"""The pump's input reader (``triopipe._cli._input``), without a server.

Compared with the plain definition: every line split by ``split_inline``,
blank lines and comments skipped. Blocks are 64 KiB, so the inputs here
span many blocks, with lines cut across block boundaries.
"""

from __future__ import annotations

import io
import random

import hiredis
import pytest

from triopipe._cli._exits import ExitStatus
from triopipe._cli._inline import split_inline
from triopipe._cli._input import CommandSource, Mark
from triopipe._cli._refusals import CommandCheck


def _text_input(seed: int, lines: int = 20_000) -> bytes:
    chooser = random.Random(seed)
    out = []
    for number in range(lines):
        kind = chooser.random()
        if kind < 0.03:
            out.append(b"")
        elif kind < 0.05:
            out.append(b"# a comment")
        elif kind < 0.1:
            out.append(b'SET "k %d" "v\\x41\\n"' % number)
        else:
            out.append(b"SET k:%d %s" % (number, b"v" * chooser.randrange(1, 40)))
    return b"\n".join(out) + b"\n"


def _expected(data: bytes) -> list[tuple[tuple[bytes, ...], int]]:
    """Each command with its line number, by the plain definition."""
    commands = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        arguments = split_inline(line)
        if arguments and not arguments[0].startswith(b"#"):
            commands.append((tuple(arguments), number))
    return commands


@pytest.mark.parametrize("seed", [1, 2])
def test_text_commands_and_their_lines(seed: int) -> None:
    data = _text_input(seed)
    source = CommandSource(io.BytesIO(data))
    commands = list(source)
    expected = _expected(data)
    assert commands == [command for command, _ in expected]
    assert source.failure is None
    assert source.taken == len(expected)
    for index, (_, line) in enumerate(expected):
        assert source.locate(index) == f"line {line}"


def test_resuming_from_any_mark_gives_the_rest() -> None:
    data = _text_input(3)
    expected = [command for command, _ in _expected(data)]
    source = CommandSource(io.BytesIO(data))
    marks = []
    for index, _ in enumerate(source):
        if index % 997 == 0:
            marks.append(source.mark_before(index))
    assert len({mark.offset for mark in marks}) > 5
    for mark in marks:
        skip = 3
        stream = io.BytesIO(data)
        stream.seek(mark.offset)
        resumed = CommandSource(stream, start=mark, skip=skip)
        rest = list(resumed)
        assert rest == expected[mark.commands + skip :]
        assert resumed.skipped == skip
        if rest:
            line = _expected(data)[mark.commands + skip][1]
            assert resumed.locate(mark.commands + skip) == f"line {line}"


def test_resp_offsets_are_command_boundaries() -> None:
    commands = [(b"SET", b"k:%d" % i, b"x" * (i % 300)) for i in range(5_000)]
    data = b"".join(hiredis.pack_command(command) for command in commands)
    source = CommandSource(io.BytesIO(data), track_offsets=True)
    taken = list(source)
    assert taken == commands
    mark = source.mark_before(2_500)
    assert 0 < mark.commands <= 2_500
    stream = io.BytesIO(data)
    stream.seek(mark.offset)
    resumed = CommandSource(stream, start=mark, skip=2_500 - mark.commands)
    assert list(resumed) == commands[2_500:]
    assert resumed.locate(2_500) == "command 2501"


def test_taken_is_exact_inside_a_block() -> None:
    data = b"".join(b"SET k:%d v\n" % i for i in range(10_000))
    source = CommandSource(io.BytesIO(data))
    iterator = iter(source)
    for count in range(1, 5_001):
        next(iterator)
        assert source.taken == count


def test_the_lease_is_extended_before_a_command_past_it() -> None:
    data = b"".join(b"SET k:%d v\n" % i for i in range(50_000))
    source = CommandSource(io.BytesIO(data))
    leases = [1_000]

    def extend(needed: int) -> int:
        leases.append(needed + 7_000)
        return leases[-1]

    source.limit_taken(leases[0], extend)
    for _ in source:
        assert source.taken <= leases[-1]
    assert len(leases) > 3


@pytest.mark.parametrize(
    ("data", "where", "reason"),
    [
        (b'SET a 1\n\nSET b "x\nSET c 3\n', "line 3", "unbalanced quotes"),
        (b"SET a 1\nBLPOP q 0\nSET c 3\n", "line 2", "a blocking command cannot be pumped"),
        (b"SET a 1\nSUBSCRIBE ch\n", "line 2", "a subscription command cannot be pumped"),
        (b"SET a 1\nselect 2\n", "line 2", "changing the connection's state"),
        (b"*1\r\n$4\r\nPING\r\n+OK\r\n", "command 2", "arrays of bulk strings"),
        (b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPI", "command 2", "ends in the middle"),
        (b"*1\r\n$4\r\nPING\r\n*x\r\n", "command 2", "not RESP"),
    ],
)
def test_a_bad_command_ends_the_input_before_it(data: bytes, where: str, reason: str) -> None:
    source = CommandSource(io.BytesIO(data), check=CommandCheck())
    commands = list(source)
    assert source.failure is not None
    assert source.failure.where == where
    assert reason in source.failure.reason
    assert source.failure.status is ExitStatus.BAD_INPUT
    assert len(commands) == source.taken


def test_idempotency_refusal_names_its_line() -> None:
    data = b"SET a 1\nZADD z 1 m\nZADD z INCR 1 m\n"
    source = CommandSource(io.BytesIO(data), check=CommandCheck(idempotent=True))
    assert list(source) == [(b"SET", b"a", b"1"), (b"ZADD", b"z", b"1", b"m")]
    assert source.failure is not None
    assert source.failure.where == "line 3"
    assert source.failure.status is ExitStatus.REFUSED


def test_crlf_lines_and_a_last_line_without_newline() -> None:
    source = CommandSource(io.BytesIO(b"SET a 1\r\nSET b 2\r\nSET c 3"))
    assert list(source) == [(b"SET", b"a", b"1"), (b"SET", b"b", b"2"), (b"SET", b"c", b"3")]
    assert source.mark_before(3) == Mark(3, 25, 3)  # the end of the input
