"""Exit statuses of the command line, and the error that carries one.

Every subcommand ends with one of :class:`ExitStatus`'s values, so scripts can
tell what happened without parsing messages. A :class:`CliError` is a failure
the user can act on: it is printed as one line (never a traceback) and turned
into its status. An input that cannot be read or used is described by
:func:`input_problem`. Statuses are listed in ``docs/cli.rst``; never renumber one.
"""

from __future__ import annotations

import enum
import textwrap

__all__ = ["INPUT_ERRORS", "CliError", "ExitStatus", "input_problem", "statuses_help"]


class ExitStatus(enum.IntEnum):
    """What a run of a subcommand ended with, as its process exit status."""

    OK = 0
    """Every command was acknowledged without an error reply."""
    ERROR_REPLIES = 1
    """Every command was answered, some with an error reply."""
    USAGE = 2
    """A bad option or URL (argparse's own status): nothing was sent."""
    BAD_INPUT = 3
    """A malformed command stopped the run; every command before it was applied."""
    CANNOT_CONNECT = 4
    """The target could not be reached or refused the credentials: nothing was sent."""
    CONNECTION_LOST = 5
    """A connection broke midway: some commands have an unknown outcome or were not sent."""
    NO_INPUT = 6
    """The input file is missing or unreadable: nothing was sent."""
    REFUSED = 7
    """The input holds a command the options forbid (e.g. not idempotent, with a checkpoint)."""
    UNCONFIRMED = 8
    """Every command was acknowledged, but some windows were not confirmed durable."""
    DIFFERENT = 9
    """``copy --verify`` found keys that differ between the source and the target."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)."""


_SHORT = {
    ExitStatus.OK: "all acknowledged",
    ExitStatus.ERROR_REPLIES: "error replies",
    ExitStatus.USAGE: "bad option, URL or template (nothing sent)",
    ExitStatus.BAD_INPUT: "bad input stopped the run (the summary names where)",
    ExitStatus.CANNOT_CONNECT: "cannot connect or credentials refused",
    ExitStatus.CONNECTION_LOST: "a connection broke midway",
    ExitStatus.NO_INPUT: "input file unreadable",
    ExitStatus.REFUSED: "refused command",
    ExitStatus.UNCONFIRMED: "windows not confirmed durable",
    ExitStatus.DIFFERENT: "--verify found differences",
    ExitStatus.INTERRUPTED: "interrupted",
}


def statuses_help(*statuses: ExitStatus) -> str:
    """The ``--help`` line listing ``statuses``, in the words every subcommand shares."""
    listed = "; ".join(f"{int(status)} {_SHORT[status]}" for status in statuses)
    return textwrap.fill(f"exit status: {listed}", width=79)


class CliError(Exception):
    """A failure reported as one line and an exit status, never as a traceback."""

    def __init__(self, message: str, status: ExitStatus) -> None:
        super().__init__(message)
        self.status = status


#: What reading or using an input may raise (EOFError: a cut gzip stream).
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
