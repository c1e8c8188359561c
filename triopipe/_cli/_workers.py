"""``--workers N``: one run split over processes, with one progress line and one summary.

Theory of operation: every worker reads the whole input (so gzip and quoted
CSV newlines need no splitting) and sends only its *share*:

* to shards or a cluster, the commands whose first key's slot falls in the
  worker's slot range: all commands on one key go through one worker, in
  input order (commands without a key go through worker 0);
* to one server, whole blocks of :data:`BLOCK` records, dealt round-robin:
  commands on one key may then run in another order than the input's, which
  the help says.

``copy`` gives each worker whole source servers (shards, cluster primaries)
when there are at least as many as workers, else the keys of a slot range.

Each worker counts what it sends; records are counted by their block's
owner (by worker 0 when splitting by slot), so the tallies add up to the
run's. A bad record stops every worker (each sees it), so nothing after it
is sent by any. Workers publish their acknowledged count and how far they
have read into shared memory; the parent prints the sum. Their ``--errors``
files are joined in worker order at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from .._exceptions import (
    AuthenticationError,
    CommandNotAllowedError,
    ConnectError,
    TriopipeError,
)
from .._routing import key_positions, key_slot
from .._routing._keys import SLOTS, command_key
from .._routing._keyspecs import INDEX, KEY_SPECS, RANGE, UNKNOWN_KEYS
from ._accounting import SHOWN_ERRORS, ErrorLog, Tally
from ._exits import INPUT_ERRORS, CliError, ExitStatus, input_problem
from ._options import add_backend_option, add_report_options, run_on_backend, stop_on_signals
from ._progress import LINE_INTERVAL, Progress, choose_mode

__all__ = [
    "BLOCK",
    "Counters",
    "Main",
    "Share",
    "WorkerFailure",
    "add_run_options",
    "add_workers_option",
    "first_key_at",
    "key_shape",
    "positive",
    "run_reported",
    "run_workers",
]

#: Records per block dealt to the workers of an import into one server.
BLOCK = 10_000

#: One process's run: ``main(args, share, counters, tally)``, counting into ``tally``.
Main = Callable[[argparse.Namespace, "Share", "Counters | None", Tally], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Share:
    """Which part of the work one process does (the whole of it by default)."""

    index: int = 0
    count: int = 1
    by_slot: bool = False

    def owns_record(self, number: int) -> bool:
        """Whether this worker renders and sends record ``number`` (from 1)."""
        return self.count == 1 or self.by_slot or (number - 1) // BLOCK % self.count == self.index

    def counts_record(self, number: int) -> bool:
        """Whether this worker counts record ``number`` (exactly one worker does)."""
        if self.by_slot:
            return self.index == 0
        return self.owns_record(number)

    def owns_slot(self, slot: int) -> bool:
        """Whether keys of ``slot`` are this worker's."""
        return self.count == 1 or slot * self.count // SLOTS == self.index

    def slot_range(self) -> tuple[int, int]:
        """The slots of this worker, from the first to one past the last (as :meth:`owns_slot`)."""
        # The smallest slot s with s * count // SLOTS >= index, for this and the next index.
        return -(-self.index * SLOTS // self.count), -(-(self.index + 1) * SLOTS // self.count)

    def sends(self, command: Sequence[Any]) -> bool:
        """Whether this worker sends ``command`` (its record being its to send)."""
        if self.count == 1 or not self.by_slot:
            return True
        at = first_key_at(command)
        if at is None:
            return self.index == 0
        return self.owns_slot(key_slot(command[at]))

    def file_name(self, path: str) -> str:
        """This worker's own file for what the run writes to ``path``."""
        return path if self.count == 1 else f"{path}.worker{self.index}"


# Where the first key is, and whether it is the only one, by (name as
# spelled, argument count), for commands whose key specs find keys by
# position alone (SET k v, RPUSH k a b...): every worker asks for each of a
# million commands.
_KEYS_BY_SHAPE: dict[tuple[Any, int], tuple[int | None, bool]] = {}
_CACHE_LIMIT = 4096


def first_key_at(command: Sequence[Any]) -> int | None:
    """The index of ``command``'s first key, or None: no key (or not known)."""
    return key_shape(command)[0]


def key_shape(command: Sequence[Any]) -> tuple[int | None, bool]:
    """The index of ``command``'s first key (None: none, or not known), and whether it is alone."""
    shape = (command[0], len(command))
    found = _KEYS_BY_SHAPE.get(shape)
    if found is not None:
        return found
    try:
        positions = key_positions(command)
    except TriopipeError:
        positions = []
    found = (positions[0] if positions else None, len(positions) == 1)
    if len(_KEYS_BY_SHAPE) < _CACHE_LIMIT and _keys_found_by_position(command):
        _KEYS_BY_SHAPE[shape] = found
    return found


def _keys_found_by_position(command: Sequence[Any]) -> bool:
    """Whether the name and the argument count alone decide where ``command``'s keys are."""
    try:
        name = command_key(command)
    except TriopipeError:
        return False
    if "|" in name or name in UNKNOWN_KEYS or name == "MIGRATE":
        return False  # a subcommand's name, or hand-written rules, read the arguments
    specs = KEY_SPECS.get(name)
    return bool(specs) and all(spec[0] == INDEX and spec[3] == RANGE for spec in specs or ())


class Counters:
    """Each worker's acknowledged count and read fraction, in shared memory."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("fork")
        self._values = context.RawArray("d", 2 * workers)
        self._workers = workers

    async def publish(
        self, share: Share, tally: Tally, fraction: Callable[[], float | None]
    ) -> None:
        """Keep this worker's figures current until cancelled."""
        while True:
            self._values[2 * share.index] = tally.acknowledged
            self._values[2 * share.index + 1] = fraction() or 0.0
            await anyio.sleep(0.2)

    def acknowledged(self) -> int:
        """The sum over workers."""
        return int(sum(self._values[0::2]))

    def fraction(self) -> float | None:
        """How far the slowest worker has read, or None when nobody knows."""
        fractions = list(self._values[1::2])
        return min(fractions) or None


def _run_share(
    main: Main, args: argparse.Namespace, share: Share, counters: Counters | None
) -> Tally:
    """Run ``main`` for one share in this process, with its own ``--errors`` file."""
    tally = Tally()
    with contextlib.ExitStack() as stack:
        if args.errors:
            path = share.file_name(args.errors)
            tally.errors_file = ErrorLog(stack.enter_context(open(path, "w", encoding="utf-8")))
        try:
            # Ctrl-C (the parent passes SIGTERM on as one) stops the run at
            # an await: raised wherever it lands, it could fall between two
            # updates of the tally, and the counts would not add up.
            run_on_backend(
                lambda: stop_on_signals(
                    lambda: main(args, share, counters, tally), tally, signal.SIGINT
                ),
                args.backend,
            )
        except BaseException as exc:
            if not _interrupted(exc):
                raise
            # What was answered before Ctrl-C is still worth a summary (with
            # workers, the parent adds this one to the others).
            tally.interrupted = True
    return tally


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C, alone or among a task group's exceptions.

    (trio raises it in whichever task runs, so it may come out of a group.)
    """
    if isinstance(exc, KeyboardInterrupt):
        return True
    inner: Sequence[BaseException] = getattr(exc, "exceptions", ())
    return any(_interrupted(each) for each in inner)


def _alone(exc: BaseException) -> BaseException:
    """The one exception inside (nested) groups of one, or ``exc`` itself."""
    inner = getattr(exc, "exceptions", None)
    while inner is not None and len(inner) == 1:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


class WorkerFailure(TriopipeError):
    """A worker's failure, as it said it: its message and its exit status."""

    def __init__(self, problem: str, status: ExitStatus) -> None:
        super().__init__(problem)
        self.problem = problem
        self.status = status


def _described(exc: BaseException) -> tuple[str, ExitStatus] | None:
    """A failure of a run as one line and an exit status (None: a bug, left to raise)."""
    if _interrupted(exc):
        return "interrupted", ExitStatus.INTERRUPTED
    exc = _alone(exc)
    if isinstance(exc, WorkerFailure):
        return exc.problem, exc.status
    if isinstance(exc, CliError):
        return str(exc), exc.status
    if isinstance(exc, ConnectError):
        return f"cannot connect: {exc}", ExitStatus.CANNOT_CONNECT
    if isinstance(exc, AuthenticationError):
        return f"the server refused the credentials: {exc}", ExitStatus.CANNOT_CONNECT
    if isinstance(exc, CommandNotAllowedError):
        return f"a command that cannot be pumped: {exc}", ExitStatus.USAGE
    if isinstance(exc, INPUT_ERRORS):  # the input, unreadable midway
        return input_problem(exc), ExitStatus.BAD_INPUT
    if isinstance(exc, TriopipeError):
        return str(exc), ExitStatus.CONNECTION_LOST
    return None


def _child(
    main: Main, args: argparse.Namespace, share: Share, counters: Counters, results: Any
) -> None:
    # Only plain data crosses to the parent: a tally, or a failure described
    # (an exception might not survive pickling).
    # Ctrl-C stops a worker, even one started from a shell that ignores it
    # (a background job); the parent passes SIGTERM on as Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        tally = _run_share(main, args, share, counters)
    except BaseException as exc:
        described = _described(exc) or (
            f"{type(exc).__name__}: {exc}",
            ExitStatus.CONNECTION_LOST,
        )
        results.put((share.index, None, described))
    else:
        tally.errors_file = None
        results.put((share.index, tally, None))


def run_reported(
    name: str, args: argparse.Namespace, main: Main, *, unit: str, by_slot: bool = False
) -> Tally | ExitStatus:
    """The tally of :func:`run_workers`, or the exit status of a failure, said in one line."""
    try:
        return run_workers(name, args, main, unit=unit, by_slot=by_slot)
    except BaseException as exc:
        described = _described(exc)
        if described is None:
            raise
    problem, status = described
    print(f"triopipe {name}: {problem}", file=sys.stderr)
    return status


def run_workers(
    name: str, args: argparse.Namespace, main: Main, *, unit: str, by_slot: bool = False
) -> Tally:
    """Run ``main`` in ``args.workers`` processes (or here, for one) and add up their tallies.

    Raises:
        KeyboardInterrupt: a worker was interrupted.
        Exception: the first failure a worker raised (after every worker ended).
    """
    if args.workers <= 1:
        return _run_share(main, args, Share(), None)
    by_slot = by_slot or bool(getattr(args, "shards", None) or getattr(args, "cluster", None))
    context = multiprocessing.get_context("fork")
    counters = Counters(args.workers)
    results = context.Queue()
    processes = [
        context.Process(
            target=_child,
            args=(main, args, Share(index, args.workers, by_slot), counters, results),
            daemon=True,
        )
        for index in range(args.workers)
    ]
    for process in processes:
        process.start()
    previous_handler = _forward_sigterm(processes)
    progress = Progress(
        counters.acknowledged,
        counters.fraction,
        mode=choose_mode(args.quiet),
        label=name,
        unit=unit,
        # pump's --progress-interval (the others print at the default pace)
        line_interval=getattr(args, "progress_interval", LINE_INTERVAL),
    )
    outcomes: dict[int, tuple[Tally | None, Any]] = {}
    interrupted_at: float | None = None
    try:
        while len(outcomes) < len(processes):
            try:
                _collect(processes, results, outcomes, progress)
            except KeyboardInterrupt:
                if interrupted_at is not None:
                    raise  # a second Ctrl-C: stop waiting for the workers' counts
                # The workers got it too (one process group): their counts come.
                interrupted_at = time.monotonic()
            if interrupted_at is not None and time.monotonic() - interrupted_at > 1:
                _stop_workers(processes, outcomes)  # those the Ctrl-C did not reach
                interrupted_at = -1e9
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        for process in processes:
            process.join(timeout=1)
            if process.is_alive():
                process.kill()
        progress.close()
    return _combined(args, outcomes)


def _collect(
    processes: list[Any],
    results: Any,
    outcomes: dict[int, tuple[Tally | None, Any]],
    progress: Progress,
) -> None:
    """Take the workers' results for one period of the progress display, then show it."""
    deadline = time.monotonic() + progress.period
    while len(outcomes) < len(processes) and time.monotonic() < deadline:
        try:
            index, tally, failure = results.get(timeout=0.05)
        except queue.Empty:
            if _lost(processes, outcomes):
                raise TriopipeError("a worker process died without a result") from None
            continue
        outcomes[index] = (tally, failure)
    if len(outcomes) < len(processes):
        progress.tick()


def _stop_workers(processes: list[Any], outcomes: dict[int, Any]) -> None:
    """Send Ctrl-C (SIGINT) to every worker still running without a result."""
    for index, process in enumerate(processes):
        if index not in outcomes and process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGINT)


def _forward_sigterm(processes: list[Any]) -> Any:
    """Pass SIGTERM on to every worker (which stops as at Ctrl-C); returns the old handler.

    (Ctrl-C reaches the whole process group; a SIGTERM only this process,
    whose workers would otherwise run on, orphaned.) None: not the main thread.
    """

    def forward(signum: int, frame: Any) -> None:
        _stop_workers(processes, {})

    try:
        return signal.signal(signal.SIGTERM, forward)
    except ValueError:
        return None


def _lost(processes: list[Any], outcomes: dict[int, Any]) -> bool:
    return any(
        not process.is_alive() and process.exitcode != 0 and index not in outcomes
        for index, process in enumerate(processes)
    )


def _combined(args: argparse.Namespace, outcomes: dict[int, tuple[Tally | None, Any]]) -> Tally:
    if getattr(args, "errors", None):
        with open(args.errors, "w", encoding="utf-8") as joined:
            for index in sorted(outcomes):
                part = Share(index, args.workers).file_name(args.errors)
                if os.path.exists(part):
                    with open(part, encoding="utf-8") as piece:
                        joined.write(piece.read())
                    os.remove(part)
    total = Tally()
    for index in sorted(outcomes):
        tally, failure = outcomes[index]
        if failure is not None:
            raise WorkerFailure(*failure)
        assert tally is not None
        total.merge(tally)
    return total


def add_run_options(parser: argparse.ArgumentParser, workers_help: str) -> None:
    """Add the options of how a run goes and reports (``--workers``, ``--json``, ...)."""
    add_report_options(
        parser,
        errors_help="write every failure to FILE, one JSON object a line with its record "
        "or key "
        f"(default: only the first {SHOWN_ERRORS}, in the summary)",
    )
    add_workers_option(parser, workers_help)
    add_backend_option(parser)


def add_workers_option(parser: argparse.ArgumentParser, workers_help: str) -> None:
    """Add ``--workers N``, ``workers_help`` saying how the work is split."""
    parser.add_argument(
        "--workers",
        type=positive,
        default=1,
        metavar="N",
        help=f"split the work over N processes: {workers_help} (default: 1)",
    )


def positive(text: str) -> int:
    """An option's whole number, at least 1 (for argparse)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
