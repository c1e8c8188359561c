"""Counting outcomes, adding up workers, exit statuses and the progress line (no server)."""

from __future__ import annotations

import io
import time

from triopipe._cli._tally import (
    EXIT_BAD_INPUT,
    EXIT_CONNECTION_LOST,
    EXIT_DIFFERENT,
    EXIT_ERROR_REPLIES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Progress,
    Tally,
)
from triopipe._exceptions import ConnectError, ConnectionLostError, ResponseError


def test_outcomes_are_counted_by_kind_and_failures_named() -> None:
    written = io.StringIO()
    tally = Tally(errors_file=written)
    outcomes = [
        b"OK",
        ResponseError("WRONGTYPE", "Operation against a key holding the wrong kind of value"),
        ResponseError("BUSYKEY", "Target key name already exists."),
        ConnectionLostError("link lost", sent=True),
        ConnectionLostError("link lost", sent=False),
        ConnectError("could not connect"),
        7,
    ]
    tally.outcomes(10, outcomes, lambda index: f"command {index}")
    assert (tally.commands, tally.acknowledged, tally.errors) == (7, 2, 1)
    assert (tally.busy, tally.unknown, tally.not_sent) == (1, 1, 2)
    lines = written.getvalue().splitlines()
    assert [line.split(": ")[:2] for line in lines] == [
        ["command 11", "error reply"],
        ["command 13", "unknown outcome (its link broke)"],
        ["command 14", "not sent"],
        ["command 15", "not sent"],
    ]
    assert tally.quoted == lines  # the first five are quoted in the summary
    assert tally.exit_status() == EXIT_CONNECTION_LOST


def test_exit_status_first_match_wins() -> None:
    assert Tally().exit_status() == EXIT_OK
    assert Tally(busy=3).exit_status() == EXIT_OK
    assert Tally(errors=1).exit_status() == EXIT_ERROR_REPLIES
    assert Tally(source_errors=1).exit_status() == EXIT_ERROR_REPLIES
    assert Tally(errors=1, different=1).exit_status() == EXIT_DIFFERENT
    assert Tally(different=1, stopped_at="record 3").exit_status() == EXIT_BAD_INPUT
    assert Tally(stopped_at="record 3", broken_scans=1).exit_status() == EXIT_CONNECTION_LOST
    assert Tally(unknown=1, interrupted=True).exit_status() == EXIT_INTERRUPTED


def test_workers_tallies_add_up() -> None:
    total = Tally(items=10, acknowledged=9, errors=1, quoted=["a", "b", "c"])
    total.merge(
        Tally(
            items=5, acknowledged=5, busy=2, checked=4, stopped_at="record 7", quoted=list("xyz")
        )
    )
    assert (total.items, total.acknowledged, total.errors) == (15, 14, 1)
    assert (total.busy, total.checked, total.stopped_at) == (2, 4, "record 7")
    assert total.quoted == ["a", "b", "c", "x", "y"]


def test_the_progress_line_has_percent_rate_and_eta() -> None:
    done = [0]
    progress = Progress(lambda: done[0], lambda: 1000, "keys", quiet=True)
    assert progress.line().startswith("0 keys, 0/s")
    time.sleep(0.05)
    done[0] = 400
    line = progress.line()
    assert line.startswith(" 40% 400 keys, ")
    assert line.endswith(" s")
    assert "ETA" in line
    read = Progress(lambda: 5, lambda: None, "commands", quiet=True, fraction=lambda: 0.5)
    assert read.line().startswith(" 50% 5 commands")
