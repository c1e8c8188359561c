"""``triopipe import``: CSV, TSV or JSON Lines records to commands, pumped.

Rules that live here: everything that can be refused is refused before a
connection opens (templates, URLs, the file, a CSV header lacking a field);
commands go through ``pump`` (no reply kept) in the records' order; a bad
record stops the run after every command before it has been answered, or,
with ``--skip-bad``, is reported and skipped; every failure is named by its
record number. With ``--workers N`` each process reads the whole input and
sends its share (see :mod:`._workers`).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import gzip
import io
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import anyio

from ._accounting import Tally
from ._exits import INPUT_ERRORS, CliError, ExitStatus, input_problem, statuses_help
from ._options import Target, add_target_options, target_from_args
from ._progress import Progress, choose_mode
from ._records import (
    BadRecord,
    CommandTemplate,
    Record,
    RecordError,
    csv_records,
    jsonl_records,
    parse_templates,
)
from ._workers import Counters, Share, add_run_options, run_reported

__all__ = ["add_parser", "run"]

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_GZIP_MAGIC = b"\x1f\x8b"
# --json's names of the counts: pump's, where they mean the same.
_SUMMARY_NAMES = {
    "items": "records",
    "skipped": "bad_records",
    "commands": "commands",
    "sent": "sent",
    "acknowledged": "acknowledged",
    "errors": "error_replies",
    "unknown": "unknown",
    "not_sent": "not_sent",
}


class _Input:
    """The input file opened as text, and how far into it reading has got."""

    def __init__(self, path: str, form: str, encoding: str) -> None:
        self.form = form if form != "auto" else _form_of(path)
        self._stack = contextlib.ExitStack()
        if path == "-":
            raw: Any = sys.stdin.buffer
            self.size: int | None = None
        else:
            raw = self._stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by close()
            self.size = os.fstat(raw.fileno()).st_size or None
        self._raw = raw
        binary: BinaryIO | gzip.GzipFile = raw
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            binary = self._stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"  # a byte-order mark (spreadsheets write one) is not data
        self.text = io.TextIOWrapper(binary, encoding=encoding, newline="")

    def fraction(self) -> float | None:
        """How much of the file has been read (of the compressed bytes for gzip)."""
        if self.size is None:
            return None
        position: int = self._raw.tell()
        return min(position / self.size, 1.0)

    def close(self) -> None:
        # Detached, the text layer leaves stdin open when it is collected.
        self.text.detach()
        self._stack.close()


def _form_of(path: str) -> str:
    if path == "-":
        raise ValueError("reading stdin: say which format it is with --format csv|tsv|jsonl")
    base, extension = os.path.splitext(path.lower())
    if extension == ".gz":
        extension = os.path.splitext(base)[1]
    if extension not in _FORMATS:
        raise ValueError(
            f"cannot tell the format of {path} from its name: say --format csv|tsv|jsonl"
        )
    return _FORMATS[extension]


def _records(
    source: _Input, templates: CommandTemplate, delimiter: str | None
) -> Iterator[Record | BadRecord]:
    """The input's records; a CSV header is read and checked against the templates first."""
    if source.form == "jsonl":
        return jsonl_records(source.text, templates.fields)
    separator = delimiter or ("\t" if source.form == "tsv" else ",")
    header, records = csv_records(source.text, templates.fields, separator)
    templates.check(header)
    return records


class _Feed:
    """Commands from records for ``pump``, remembering each in-flight command's record."""

    def __init__(
        self, templates: CommandTemplate, share: Share, tally: Tally, skip_bad: bool
    ) -> None:
        self._templates = templates
        self._share = share
        self._tally = tally
        self._skip_bad = skip_bad
        # The record number of each command taken by pump and not yet
        # answered; the first is command number self._first.
        self._numbers: list[int] = []
        self._first = 0

    def commands(self, records: Iterator[Record | BadRecord]) -> Iterator[tuple[str, ...]]:
        """The commands of the records, up to the first bad one unless bad ones are skipped."""
        if self._share.count == 1:
            return self._every_command(records)
        return self._shared_commands(records)

    def _every_command(self, records: Iterator[Record | BadRecord]) -> Iterator[tuple[str, ...]]:
        # One process: the common case, kept lean (a million records pass here).
        render, numbers, tally = self._templates.render, self._numbers, self._tally
        for record in records:
            tally.items += 1
            if isinstance(record, Record):
                try:
                    commands = render(record.values)
                except RecordError as exc:
                    if self._bad(record, str(exc), counted=True):
                        return
                    continue
                numbers.extend([record.number] * len(commands))
                yield from commands
            elif self._bad(record, record.reason, counted=True):
                return

    def _shared_commands(self, records: Iterator[Record | BadRecord]) -> Iterator[tuple[str, ...]]:
        share, tally, numbers = self._share, self._tally, self._numbers
        for record in records:
            counted = share.counts_record(record.number)
            if counted:
                tally.items += 1
            problem: str | None = None
            if isinstance(record, BadRecord):
                problem = record.reason
            elif share.owns_record(record.number):
                try:
                    commands = self._templates.render(record.values)
                except RecordError as exc:
                    problem = str(exc)
                else:
                    for command in commands:
                        if share.sends(command):
                            numbers.append(record.number)
                            yield command
            elif not self._skip_bad:
                # Another worker sends it, but every worker must stop at it.
                problem = self._templates.problem(record.values)
            if problem is not None and self._bad(record, problem, counted):
                return

    def _bad(self, record: Record | BadRecord, problem: str, counted: bool) -> bool:
        """Report a bad record; whether the run stops at it."""
        where = f"record {record.number} (line {record.line})"
        if counted:
            self._tally.skipped += 1
            self._tally.failure(where, problem)
        if self._skip_bad:
            return False
        self._tally.stopped_at = where
        self._tally.stop_reason = problem
        return True

    def outcomes(self, first: int, outcomes: list[Any]) -> None:
        """Count the outcomes of pump's commands ``first``, ... (in order, each once)."""
        numbers, base = self._numbers, self._first
        self._tally.outcomes(first, outcomes, lambda index: f"record {numbers[index - base]}")
        self._first = first + len(outcomes)
        del numbers[: self._first - base]


async def _import(
    args: argparse.Namespace, share: Share, counters: Counters | None, tally: Tally
) -> None:
    templates = parse_templates(args.templates)
    target: Target = args.target_chosen
    source = _Input(args.file, args.format, args.encoding)
    try:
        records = _records(source, templates, args.delimiter)
        feed = _Feed(templates, share, tally, args.skip_bad)
        progress = Progress(
            lambda: tally.commands,
            source.fraction,
            mode=choose_mode(args.quiet or counters is not None),
            label="import",
        )
        try:
            async with target.open() as client, anyio.create_task_group() as group:
                if counters is not None:
                    group.start_soon(counters.publish, share, tally, source.fraction)
                group.start_soon(progress.run)
                await client.pump(feed.commands(records), on_outcomes=feed.outcomes)
                group.cancel_scope.cancel()
        finally:
            progress.close()
    finally:
        source.close()


def _check_first(args: argparse.Namespace) -> None:
    """Everything that can be refused without a connection (raises ValueError or OSError)."""
    templates = parse_templates(args.templates)
    if args.workers > 1 and args.file == "-":
        raise ValueError("--workers needs a file: each worker reads the whole input")
    if args.file == "-":
        if args.format == "auto":
            _form_of(args.file)  # refuses: stdin has no name to tell its format by
        return  # read once, by the run itself
    source = _Input(args.file, args.format, args.encoding)
    try:
        if source.form != "jsonl":
            _records(source, templates, args.delimiter)  # the header against the templates
    finally:
        source.close()


def run(args: argparse.Namespace) -> int:
    """Run ``triopipe import`` with parsed arguments; returns the exit status."""
    try:
        # Found once, here: --askpass prompts once, and workers inherit it.
        args.target_chosen = target_from_args(args)
        _check_first(args)
    except CliError as exc:
        print(f"triopipe import: {exc}", file=sys.stderr)
        return exc.status
    except INPUT_ERRORS as exc:  # TemplateError and RecordError included
        print(f"triopipe import: {input_problem(exc)}", file=sys.stderr)
        if isinstance(exc, OSError):
            return ExitStatus.NO_INPUT
        if isinstance(exc, UnicodeError | EOFError):
            return ExitStatus.BAD_INPUT
        return ExitStatus.USAGE
    started = time.perf_counter()
    tally = run_reported("import", args, _import, unit="commands")
    if isinstance(tally, ExitStatus):
        return tally
    elapsed = time.perf_counter() - started
    target = args.target_chosen.describe()
    name = "standard input" if args.file == "-" else args.file
    lines = [
        f"triopipe import: {name} -> {target}",
        f"  imported {tally.items:,} records ({tally.skipped:,} bad) "
        f"as {tally.commands:,} commands",
        *tally.outcome_lines(),
        f"  {elapsed:.2f} s, {tally.commands / max(elapsed, 1e-9):,.0f} commands/s",
    ]
    tally.print_summary(
        "import",
        None if args.quiet else lines,
        tally.as_dict(_SUMMARY_NAMES, elapsed, target=target, input=args.file)
        if args.json
        else None,
    )
    return tally.exit_status()


_DESCRIPTION = """\
Turn each record of a CSV, TSV or JSON Lines file (plain or gzip) into commands
by templates, and send them pipelined, keeping no reply. In a template,
{field} is the record's value of a field (one argument, spaces and all),
{field:int}, {field:float} and {field:nonempty} check the value first, {{ and
}} are literal braces, and "double quotes" group words into one argument. A
CSV or TSV file starts with a header line naming the fields.
"""


def add_parser(commands: Any) -> None:
    """Add ``import`` and its options to the command line's subcommands."""
    parser = commands.add_parser(
        "import",
        help="turn CSV/TSV/JSON Lines records into commands by templates",
        description=_DESCRIPTION,
        epilog=statuses_help(
            ExitStatus.OK,
            ExitStatus.ERROR_REPLIES,
            ExitStatus.USAGE,
            ExitStatus.BAD_INPUT,
            ExitStatus.CANNOT_CONNECT,
            ExitStatus.CONNECTION_LOST,
            ExitStatus.NO_INPUT,
            ExitStatus.INTERRUPTED,
        )
        + " (a bad record stops the run unless --skip-bad)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    parser.add_argument("file", help="input file, .gz allowed; - for stdin (needs --format)")
    parser.add_argument(
        "-c",
        "--command",
        dest="templates",
        action="append",
        required=True,
        metavar="TEMPLATE",
        help="a command template, e.g. 'HSET user:{id} name {name} age {age:int}'; "
        "repeat for several commands per record",
    )
    parser.add_argument(
        "--format",
        choices=["auto", "csv", "tsv", "jsonl"],
        default="auto",
        help="input format (default: auto, from the file name's extension)",
    )
    parser.add_argument(
        "--delimiter",
        type=_one_character,
        help="CSV field separator (default: ',' for csv, TAB for tsv)",
    )
    parser.add_argument(
        "--encoding", type=_encoding, default="utf-8", help="the input's text encoding"
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="report bad records and go on (default: stop at the first one, once every "
        "command before it is answered)",
    )
    add_target_options(parser)
    add_run_options(
        parser,
        "to shards or a cluster, by slot (each key's commands keep their order); to one "
        "server, by blocks of 10,000 records (commands on one key may be reordered)",
    )


def _encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown text encoding {name!r}") from None
    return name


def _one_character(text: str) -> str:
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"must be one character, not {text!r}")
    return text
