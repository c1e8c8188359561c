"""``triopipe pump``: mass insertion from a file or standard input.

It reads commands from a file or standard input and sends them
through ``execute_many`` (pipelined, in bounded windows) to one server,
several shards or a Redis Cluster, with a progress line on a terminal and a
throughput summary at the end. Input is either text, one command per line
(``SET key value``; quote arguments with spaces as in a shell), or the RESP
that ``redis-cli --pipe`` takes; it is recognised by its first byte.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import shlex
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, BinaryIO

import anyio

from .._client import open_client
from .._cluster import open_cluster_client
from .._exceptions import ProtocolError, TriopipeError
from .._resp import NEED_DATA, make_reader
from .._sharded import open_sharded_client
from .._tasks import background_task_group

__all__ = ["add_parser", "read_commands", "run"]

_READ_SIZE = 1024 * 1024
# Commands per execute_many call: replies of one call are held until it
# returns, so a call bounds the memory spent on them. Each call consumes its
# share of the input lazily, window by window, so that reading and parsing
# the next window overlaps the server's work on the last one.
_CALL_SIZE = 1_000_000


def _text_commands(source: Iterable[bytes]) -> Iterator[tuple[bytes, ...]]:
    """Commands from text lines; blank lines and ``#`` comments are skipped."""
    for raw in source:
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if b'"' in line or b"'" in line or b"\\" in line:
            yield tuple(part.encode() for part in shlex.split(line.decode()))
        else:
            yield tuple(line.split())


def _resp_commands(source: BinaryIO, first: bytes) -> Iterator[tuple[bytes, ...]]:
    """Commands from RESP arrays of bulk strings, as ``redis-cli --pipe`` reads them."""
    reader = make_reader()
    data = first
    while data:
        for command in reader.read_replies(data):
            if not isinstance(command, list) or not command:
                raise ProtocolError("RESP input must be arrays of bulk strings (commands)")
            yield tuple(command)
        data = source.read(_READ_SIZE)
    if reader.next_reply() is not NEED_DATA or reader.has_partial():
        raise ProtocolError("the RESP input ends in the middle of a command")


def read_commands(source: BinaryIO, form: str = "auto") -> Iterator[tuple[bytes, ...]]:
    """Commands from ``source``: ``text``, ``resp``, or ``auto`` (by the first byte)."""
    if form == "text":
        return _text_commands(source)
    first = source.read(_READ_SIZE)
    if form == "resp" or first[:1] == b"*":
        return _resp_commands(source, first)
    return _text_commands(_Prepended(first, source))


class _Prepended:
    """A binary source that yields ``head`` before the rest of ``source``, line by line."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self._head = head
        self._source = source

    def __iter__(self) -> Iterator[bytes]:
        pending = self._head
        while True:
            lines = pending.split(b"\n")
            pending = lines.pop()
            yield from lines
            more = self._source.read(_READ_SIZE)
            if not more:
                break
            pending += more
        if pending:
            yield pending


@contextlib.asynccontextmanager
async def _open_target(args: argparse.Namespace) -> AsyncIterator[Any]:
    if args.cluster:
        async with open_cluster_client(args.cluster) as client:
            yield client
    elif args.shards:
        async with open_sharded_client(args.shards) as client:
            yield client
    else:
        async with open_client(args.url) as client:
            yield client


class _Progress:
    """Counts sent commands; prints a progress line every second on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.done = 0
        self.errors = 0
        self.started = time.perf_counter()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return (
            f"{self.done:,} commands in {elapsed:.2f} s, {self.done / elapsed:,.0f}/s, "
            f"{self.errors:,} error replies"
        )

    async def run(self) -> None:
        while self.enabled:
            await anyio.sleep(1)
            print(f"\r{self.line()}", end="", file=sys.stderr, flush=True)


async def _pump(args: argparse.Namespace, source: BinaryIO) -> int:
    progress = _Progress(enabled=sys.stderr.isatty() and not args.quiet)
    first_errors: list[str] = []
    # The progress printer's task group lets errors of the body out as they
    # are (a bad input raises ProtocolError, not an exception group).
    async with _open_target(args) as client, background_task_group() as task_group:
        task_group.start_soon(progress.run)
        commands = read_commands(source, args.format)
        while True:
            share = itertools.islice(commands, _CALL_SIZE)
            replies = await client.execute_many(share, raise_on_error=False)
            progress.done += len(replies)
            for reply in replies:
                if isinstance(reply, Exception):
                    progress.errors += 1
                    if len(first_errors) < 5:
                        first_errors.append(str(reply))
            if len(replies) < _CALL_SIZE:
                break
    if progress.enabled:
        print(file=sys.stderr)
    if not args.quiet:
        print(f"pumped {progress.line()}", file=sys.stderr)
        for error in first_errors:
            print(f"  error reply: {error}", file=sys.stderr)
    return 1 if progress.errors else 0


def run(args: argparse.Namespace) -> int:
    """Run ``triopipe pump`` with parsed arguments; returns the exit status."""
    backend = args.backend
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            backend = "asyncio"
    with contextlib.ExitStack() as stack:
        if args.file == "-":
            source: BinaryIO = sys.stdin.buffer
        else:
            source = stack.enter_context(open(args.file, "rb"))
        try:
            return anyio.run(functools.partial(_pump, args, source), backend=backend)
        except (TriopipeError, OSError, ValueError) as exc:
            print(f"triopipe pump: {exc}", file=sys.stderr)
            return 2


def add_parser(commands: Any) -> None:
    """Add ``pump`` and its options to the command line's subcommands."""
    pump = commands.add_parser(
        "pump",
        help="send commands from a file or stdin, pipelined",
        description=(
            "Send commands from FILE (or stdin) to Redis, pipelined in bounded windows. "
            "Input: one command per line (shell-style quoting), or RESP as for "
            "redis-cli --pipe (recognised by its first byte). Exit status 1 when the "
            "server answered any command with an error."
        ),
    )
    pump.set_defaults(run=run)
    pump.add_argument("file", nargs="?", default="-", help="input file (default: stdin)")
    target = pump.add_mutually_exclusive_group()
    target.add_argument("--url", default="redis://localhost:6379", help="one server's URL")
    target.add_argument("--shards", nargs="+", metavar="URL", help="shard over these servers")
    target.add_argument("--cluster", nargs="+", metavar="URL", help="a Redis Cluster's nodes")
    pump.add_argument("--format", choices=["auto", "text", "resp"], default="auto")
    pump.add_argument("--backend", choices=["trio", "asyncio"], default="asyncio")
    pump.add_argument("--quiet", action="store_true", help="no progress and no summary")
