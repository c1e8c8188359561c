"""Exit statuses of the command line, and the error that carries one.

Every subcommand ends with one of :class:`ExitStatus`'s values, so scripts can
tell what happened without parsing messages. A :class:`CliError` is a failure
the user can act on: it is printed as one line (never a traceback) and turned
into its status. Statuses are listed in ``docs/cli.rst``; never renumber one.
"""

from __future__ import annotations

import enum

__all__ = ["CliError", "ExitStatus"]


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
    INTERRUPTED = 130
    """Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)."""


class CliError(Exception):
    """A failure reported as one line and an exit status, never as a traceback."""

    def __init__(self, message: str, status: ExitStatus) -> None:
        super().__init__(message)
        self.status = status
