"""``triopipe pump``: mass insertion from a file or standard input, exactly accounted.

Commands are read lazily (:mod:`._input`), run through the client's
:meth:`~triopipe.Client.pump` (pipelined in bounded windows, no reply kept),
and every outcome is counted in input order (:mod:`._accounting`). The rules:

- a bad command (malformed line, truncated RESP, a command a pipeline may not
  hold) ends the input *before* it: every command before it is still sent and
  answered, then the run stops with :attr:`~ExitStatus.BAD_INPUT` naming it;
- a broken connection stops the reading of more input; commands written and
  unanswered are counted as of unknown outcome;
- Ctrl-C or SIGTERM stops the run; commands in flight are counted as unknown.

The summary goes to standard error, ``--json`` to standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from typing import IO, Any, BinaryIO

from .._exceptions import TriopipeError
from .._tasks import background_task_group
from ._accounting import Accounting, ErrorLog, count_lines
from ._checkpoint import Checkpoint, CheckpointFile, Recorder
from ._durability import WINDOW, Durability, WindowLog, wait_on_each
from ._exits import CliError, ExitStatus, statuses_help
from ._input import CommandSource, Mark
from ._options import (
    Target,
    add_backend_option,
    add_report_options,
    add_target_options,
    run_on_backend,
    stop_on_signals,
    target_from_args,
)
from ._progress import LINE_INTERVAL, Progress, choose_mode
from ._pump_shares import check_workers, pump_share
from ._refusals import CommandCheck
from ._workers import BLOCK, add_workers_option, run_reported

__all__ = ["add_parser", "run"]


class _Run:
    """One pump run's state, kept outside the event loop so an interrupt still reports it."""

    def __init__(
        self,
        args: argparse.Namespace,
        target: Target,
        stream: BinaryIO,
        size: int | None,
        errors: IO[str] | None,
    ) -> None:
        self.args = args
        self.target = target
        self.size = size
        self.checkpoint_file = None if args.checkpoint is None else CheckpointFile(args.checkpoint)
        self.resumed = self._resume_point(stream, size)
        start = None if self.resumed is None else self.resumed.mark
        skip = 0 if self.resumed is None else self.resumed.answered - self.resumed.mark.commands
        self.source = CommandSource(
            stream,
            args.format,
            start=start,
            skip=skip,
            check=CommandCheck(idempotent=args.checkpoint is not None and not args.at_least_once),
            track_offsets=self.checkpoint_file is not None,
        )
        self.recorder: Recorder | None = None
        if self.checkpoint_file is not None:
            self.recorder = Recorder(
                self.checkpoint_file,
                Checkpoint(
                    input=os.path.abspath(args.file),
                    size=size or 0,
                    form=self.source.form,
                    answered=start.commands + skip if start else 0,
                    mark=start or Mark(0, 0, 0),
                    lease=0,
                ),
                self.source.mark_before,
            )
            self.source.limit_taken(self.recorder.lease, self.recorder.extend_lease)
        self.accounting = Accounting(
            self.source.locate,
            start=0 if self.resumed is None else self.resumed.answered,
            error_log=None if errors is None else ErrorLog(errors),
            on_broken=self._halt,
            on_answered=self._answered,
        )
        self.progress = Progress(
            lambda: self.accounting.settled,
            self._fraction,
            mode=choose_mode(args.quiet),
            label="pump",
            line_interval=args.progress_interval,
        )
        self.windows: WindowLog | None = None
        if args.wait_replicas is not None or args.wait_aof:
            durability = Durability(args.wait_replicas or 0, args.wait_timeout, args.wait_aof)
            self.windows = WindowLog(durability)
        self.failure: str | None = None
        self.status: ExitStatus | None = None
        self.interrupted = False

    def _resume_point(self, stream: BinaryIO, size: int | None) -> Checkpoint | None:
        """The checkpoint to resume from (the stream put at its mark), or None: from the start."""
        if self.checkpoint_file is None:
            return None
        if self.args.file == "-" or size is None:
            raise CliError("--checkpoint needs a regular input file, not a pipe", ExitStatus.USAGE)
        resumed = self.checkpoint_file.load()
        if resumed is None:
            return None
        if resumed.input != os.path.abspath(self.args.file) or resumed.size != size:
            raise CliError(
                f"checkpoint {self.checkpoint_file.path} is for {resumed.input} "
                f"({resumed.size:,} bytes), not this input ({size:,} bytes)",
                ExitStatus.USAGE,
            )
        stream.seek(resumed.mark.offset)
        return resumed

    def stopped_by(self, error: CliError) -> None:
        """The run stopped midway for ``error`` (a checkpoint that cannot be written)."""
        self.accounting.interrupted(self.source.taken)
        self.failure = f"stopped: {error}"
        self.status = error.status

    def _answered(self, answered: int) -> None:
        self.source.release(answered)
        if self.recorder is not None:
            self.recorder.answered_to(answered)

    def _halt(self) -> None:
        self.source.halted = True

    def _fraction(self) -> float | None:
        """How much of the input is answered, by bytes (estimated from those read)."""
        if not self.size:
            return None
        source = self.source
        start = self.resumed.mark if self.resumed is not None else Mark(0, 0, 0)
        taken = source.taken - start.commands
        if taken <= 0:
            return start.offset / self.size
        read = source.bytes_read - start.offset
        answered = start.offset + read * min(self.accounting.settled / taken, 1.0)
        return min(answered / self.size, 1.0)

    async def pump(self) -> None:
        """The run; Ctrl-C or SIGTERM cancels it cleanly, leaving every count consistent."""
        await stop_on_signals(self._pump, self, signal.SIGINT, signal.SIGTERM)

    async def _pump(self) -> None:
        # With waits, one connection per server: a wait counts its connection's writes.
        options = {} if self.windows is None else {"connections": 1}
        async with self.target.open(**options) as client, background_task_group() as task_group:
            task_group.start_soon(self.progress.run)
            try:
                if self.windows is None:
                    await client.pump(self.source, on_outcomes=self.accounting.add)
                else:
                    await self._pump_windows(client, self.windows)
            except (TriopipeError, TypeError, ValueError) as exc:
                # Refused before its window was sent: what was in flight is unknown.
                self.accounting.interrupted(self.source.taken)
                self.failure = f"after {self.source.locate(self.source.taken - 1)}: {exc}"
                self.status = ExitStatus.BAD_INPUT

    async def _pump_windows(self, client: Any, windows: WindowLog) -> None:
        """Run the input window by window, each followed by its wait on every server."""
        servers = self._servers(client)
        commands = iter(self.source)
        wait = windows.durability.command()
        accounting = self.accounting
        done = accounting.start
        while window := list(itertools.islice(commands, WINDOW)):
            before = done - accounting.start

            def add(first: int, outcomes: list[Any], before: int = before) -> None:
                accounting.add(before + first, outcomes)

            await client.pump(window, on_outcomes=add)
            locate = self.source.locate
            span = f"{locate(done)} to {locate(done + len(window) - 1)}"
            windows.add(span, await wait_on_each(servers, wait))
            done += len(window)
            if self.source.halted:
                return

    def _servers(self, client: Any) -> dict[str, Any]:
        """Each server's client by URL: the one server, the shards, or the cluster's primaries."""
        if self.target.kind == "shards":
            return dict(client.shards)
        if self.target.kind == "cluster":
            return dict(client.nodes)
        return {self.target.describe(): client}

    def finish(self, interrupted: bool) -> ExitStatus:
        accounting = self.accounting
        accounting.finished = time.perf_counter()
        self.progress.close()
        failure = self.source.failure
        if interrupted:
            accounting.interrupted(self.source.taken)
            self.status, self.failure = ExitStatus.INTERRUPTED, "interrupted"
        elif failure is not None:
            self.status = failure.status
            self.failure = f"stopped at {failure}; every command before it was answered"
        elif self.status is None:
            self.status = accounting.status()
            if self.status is ExitStatus.OK and self.windows and self.windows.unconfirmed:
                self.status = ExitStatus.UNCONFIRMED
            if self.status is ExitStatus.CONNECTION_LOST:
                read = self.source.locate(self.source.taken - 1)
                self.failure = f"a connection broke; the input was read up to {read}"
        if self.recorder is not None:
            finished = self.status in (ExitStatus.OK, ExitStatus.ERROR_REPLIES)
            self.recorder.answered_to(accounting.answered_prefix)
            self.recorder.close(in_doubt=self._in_doubt(), finished=finished)
        if not self.args.quiet:
            self._print_summary()
        elif self.failure is not None:  # quiet, but why the run stopped is still said
            print(f"triopipe pump: {self.failure}", file=sys.stderr, flush=True)
        if self.args.json:
            print(json.dumps(self._json()), flush=True)
        return self.status

    def _in_doubt(self) -> int:
        """Commands past the answered prefix that may have been applied (a rerun repeats them)."""
        accounting = self.accounting
        return accounting.start + accounting.sent - accounting.answered_prefix

    def _print_summary(self) -> None:
        name = "standard input" if self.args.file == "-" else self.args.file
        lines = [f"triopipe pump: {name} ({self.source.form}) -> {self.target.describe()}"]
        resumed = self.resumed
        if resumed is not None:
            how = "exactly" if resumed.closed else "at most: the last run was killed"
            lines.append(
                f"  resumed from {self.args.checkpoint}: the first {resumed.answered:,} commands "
                f"were answered before; {resumed.may_apply_twice:,} commands may be applied "
                f"twice ({how})"
            )
        lines.extend(self.accounting.summary())
        if self.windows is not None:
            lines.extend(self.windows.summary())
        if self.failure is not None:
            lines.append(f"  {self.failure}")
        if self.accounting.unknown:
            lines.append(
                f"  {self.accounting.unknown:,} commands may or may not have been applied"
            )
        print("\n".join(lines), file=sys.stderr, flush=True)

    def _json(self) -> dict[str, Any]:
        accounting = self.accounting
        failure = self.source.failure
        return {
            "target": self.target.describe(),
            "input": self.args.file,
            "format": self.source.form,
            **accounting.counts(),
            "seconds": round(accounting.elapsed(), 3),
            "rate": round(accounting.settled / accounting.elapsed()),
            "stopped_at": None if failure is None else failure.where,
            "stop_reason": None if failure is None else failure.reason,
            "first_errors": [
                {"at": where, "error": message} for where, message in accounting.first_errors
            ],
            "exit_status": int(self.status or 0),
            "resumed_after": None if self.resumed is None else self.resumed.answered,
            "may_apply_twice": None if self.resumed is None else self.resumed.may_apply_twice,
            "checkpoint_in_doubt": None if self.recorder is None else self._in_doubt(),
            "windows": None if self.windows is None else self.windows.windows,
            "unconfirmed_windows": None if self.windows is None else self.windows.unconfirmed,
        }


@contextlib.contextmanager
def _opened_input(path: str) -> Iterator[tuple[BinaryIO, int | None]]:
    """The input stream and its size when known (a regular file)."""
    if path == "-":
        yield sys.stdin.buffer, None
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", ExitStatus.NO_INPUT) from None
    with stream:
        info = os.fstat(stream.fileno())
        yield stream, info.st_size if stat.S_ISREG(info.st_mode) else None


@contextlib.contextmanager
def _error_file(path: str | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    try:
        stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}", ExitStatus.USAGE) from None
    with stream:
        yield stream


def run(args: argparse.Namespace) -> int:
    """Run ``triopipe pump`` with parsed arguments; returns the exit status."""
    try:
        target = target_from_args(args)
        check_workers(args)
        if args.workers > 1:
            return _run_shares(args, target)
        with _opened_input(args.file) as (stream, size), _error_file(args.errors) as errors:
            state = _Run(args, target, stream, size, errors)
            try:
                run_on_backend(state.pump, args.backend)
            except KeyboardInterrupt:  # before the signals were taken over
                state.interrupted = True
            except CliError as exc:
                if exc.status is ExitStatus.CANNOT_CONNECT:
                    raise  # nothing was sent: one line says it all
                state.stopped_by(exc)
            return state.finish(state.interrupted)
    except CliError as exc:
        print(f"triopipe pump: {exc}", file=sys.stderr)
        if getattr(args, "json", False):  # scripts get an object whatever happened
            print(json.dumps({"error": str(exc), "exit_status": int(exc.status)}), flush=True)
        return exc.status


# --json's names of the counts with --workers: those of one process.
_SUMMARY_NAMES = {
    "items": "read",
    "sent": "sent",
    "acknowledged": "acknowledged",
    "errors": "error_replies",
    "unknown": "unknown",
    "not_sent": "not_sent",
}


def _run_shares(args: argparse.Namespace, target: Target) -> int:
    """Run ``pump --workers N``: the parent's part (see :mod:`._pump_shares`)."""
    with _opened_input(args.file) as (stream, size):
        form = CommandSource(stream, args.format).form  # from the first bytes alone
    args.target_chosen, args.input_size = target, size
    started = time.perf_counter()
    tally = run_reported("pump", args, pump_share, unit="commands")
    if isinstance(tally, ExitStatus):
        return tally
    elapsed = time.perf_counter() - started
    described = target.describe()
    lines = [
        f"triopipe pump: {args.file} ({form}) -> {described}, {args.workers} workers",
        *count_lines([("commands read", tally.items, "")]),
        *tally.outcome_lines(),
        f"  {elapsed:.2f} s, {tally.commands / max(elapsed, 1e-9):,.0f} commands/s",
    ]
    about = {"target": described, "input": args.file, "format": form, "workers": args.workers}
    tally.print_summary(
        "pump",
        None if args.quiet else lines,
        tally.as_dict(_SUMMARY_NAMES, elapsed, **about) if args.json else None,
    )
    return tally.exit_status()


def add_parser(commands: Any) -> None:
    """Add ``pump`` and its options to the command line's subcommands."""
    pump = commands.add_parser(
        "pump",
        help="send commands from a file or stdin, pipelined, every outcome counted",
        description=(
            "Send every command of FILE (or stdin) to Redis, pipelined in bounded windows, "
            "like redis-cli --pipe. Input: one command per line in Redis's inline syntax "
            "(as redis-cli splits it: \"double\" and 'single' quotes, \\xHH, \\n, ...; blank "
            "lines and # comments skipped), or RESP (recognised by a first byte '*'). Every "
            "command's outcome is counted: acknowledged, error reply (with its line), unknown "
            "(written, unanswered when a link broke). A malformed command stops the run after "
            "every command before it was answered."
        ),
        epilog=statuses_help(*(status for status in ExitStatus if status != ExitStatus.DIFFERENT)),
    )
    pump.set_defaults(run=run)
    pump.add_argument(
        "file", nargs="?", default="-", help="input file (default: -, standard input)"
    )
    add_target_options(pump)
    pump.add_argument(
        "--format",
        choices=["auto", "text", "resp"],
        default="auto",
        help="input format (default: auto, RESP when the first byte is '*')",
    )
    add_report_options(
        pump,
        errors_help="write every error reply to FILE, one JSON object a line with its line "
        "or command number (default: only the first 5, in the summary)",
    )
    pump.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="record in FILE, a few times a second, how far the input has been answered; "
        "rerun with the same FILE to resume from there (needs an input file; refuses "
        "commands that are not idempotent unless --at-least-once)",
    )
    pump.add_argument(
        "--at-least-once",
        action="store_true",
        help="with --checkpoint, accept commands that are not idempotent (INCR, LPUSH...): "
        "a rerun may apply those of unknown outcome twice",
    )
    durability = pump.add_argument_group("durability")
    durability.add_argument(
        "--wait-replicas",
        type=int,
        metavar="N",
        help=f"after every window of {WINDOW:,} commands, run WAIT N on each server's "
        "connection: count windows not acknowledged by N replicas of every server before "
        "the timeout (default: no wait)",
    )
    durability.add_argument(
        "--wait-timeout",
        type=int,
        default=1000,
        metavar="MS",
        help="milliseconds each wait may take (default: 1000)",
    )
    durability.add_argument(
        "--wait-aof",
        action="store_true",
        help="after every window, run WAITAOF 1 N instead (N from --wait-replicas, default "
        "0): count windows not yet in the append-only files (Redis 7.2+, Valkey)",
    )
    pump.add_argument(
        "--progress-interval",
        type=float,
        default=LINE_INTERVAL,
        metavar="SECONDS",
        help="when standard error is not a terminal, print a progress line every SECONDS "
        f"(default: {LINE_INTERVAL:g}); on a terminal a live bar is shown",
    )
    add_workers_option(
        pump,
        "to shards or a cluster, by the slot of each command's first key (each key's "
        "commands keep their order; commands without a key go through worker 0; into as "
        "many shards as workers, a shard per worker); to one "
        f"server, by blocks of {BLOCK:,} commands of the input dealt in turn (commands on "
        "one key in different blocks may run out of order). Needs an input file; not with "
        "--checkpoint or --wait-*",
    )
    add_backend_option(pump)
