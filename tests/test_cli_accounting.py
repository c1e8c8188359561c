"""Accounting of pump (``Accounting``), import and copy (``Tally``), fed outcomes directly."""

from __future__ import annotations

import io
import json
import time

from triopipe import ConnectError, ConnectionLostError, ResponseError, WrongTypeError
from triopipe._cli._accounting import Accounting, ErrorLog, Tally
from triopipe._cli._exits import ExitStatus
from triopipe._cli._progress import Progress


def _wrongtype() -> WrongTypeError:
    return WrongTypeError("WRONGTYPE", "Operation against a key holding the wrong kind of value")


def test_every_outcome_in_one_count_and_errors_located() -> None:
    log = io.StringIO()
    answered: list[int] = []
    accounting = Accounting(
        lambda index: f"line {index * 2 + 1}",
        error_log=ErrorLog(log),
        on_answered=answered.append,
    )
    accounting.add(0, [b"OK", _wrongtype(), b"OK"])
    accounting.add(3, [b"OK"] * 10 + [ResponseError("ERR", "unknown command 'NOPE'")])
    assert accounting.counts() == {
        "read": 14,
        "sent": 14,
        "acknowledged": 12,
        "error_replies": 2,
        "unknown": 0,
        "not_sent": 0,
    }
    assert accounting.answered_prefix == 14
    assert answered == [3, 14]
    assert accounting.status() is ExitStatus.ERROR_REPLIES
    entries = [json.loads(line) for line in log.getvalue().splitlines()]
    assert [entry["line"] for entry in entries] == [3, 27]
    assert accounting.first_errors[0] == ("line 3", f"error reply: {_wrongtype()}")


def test_a_broken_link_ends_the_answered_prefix() -> None:
    broken: list[bool] = []
    accounting = Accounting(
        lambda index: f"command {index + 1}", start=100, on_broken=lambda: broken.append(True)
    )
    lost = ConnectionLostError("connection reset", sent=True)
    unsent = ConnectError("cannot connect")
    accounting.add(0, [b"OK", b"OK", lost, lost, b"OK", unsent])
    accounting.add(6, [b"OK"])
    assert accounting.answered_prefix == 102  # from the input's start
    assert broken == [True]
    assert (accounting.acknowledged, accounting.unknown, accounting.not_sent) == (4, 2, 1)
    assert accounting.status() is ExitStatus.CONNECTION_LOST
    accounting.interrupted(taken=100 + 7 + 5)  # five taken, never settled
    assert accounting.unknown == 7
    assert accounting.settled == 12


def test_a_tally_counts_outcomes_by_kind_and_names_failures() -> None:
    written = io.StringIO()
    tally = Tally(errors_file=ErrorLog(written))
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
    logged = [json.loads(line) for line in written.getvalue().splitlines()]
    assert [(entry["command"], entry["error"].split(": ")[0]) for entry in logged] == [
        (11, "error reply"),
        (13, "unknown outcome (its link broke)"),
        (14, "not sent"),
        (15, "not sent"),
    ]
    # The first five are quoted in the summary.
    assert [(f"command {entry['command']}", entry["error"]) for entry in logged] == tally.quoted
    assert tally.exit_status() == ExitStatus.CONNECTION_LOST


def test_a_tally_exit_status_first_match_wins() -> None:
    assert Tally().exit_status() == ExitStatus.OK
    assert Tally(busy=3).exit_status() == ExitStatus.OK
    assert Tally(errors=1).exit_status() == ExitStatus.ERROR_REPLIES
    assert Tally(source_errors=1).exit_status() == ExitStatus.ERROR_REPLIES
    assert Tally(errors=1, different=1).exit_status() == ExitStatus.DIFFERENT
    assert Tally(different=1, stopped_at="record 3").exit_status() == ExitStatus.BAD_INPUT
    assert Tally(stopped_at="record 3", broken_scans=1).exit_status() == ExitStatus.CONNECTION_LOST
    assert Tally(unknown=1, interrupted=True).exit_status() == ExitStatus.INTERRUPTED


def test_workers_tallies_add_up() -> None:
    total = Tally(items=10, acknowledged=9, errors=1, quoted=[("a", "1"), ("b", "2"), ("c", "3")])
    total.merge(
        Tally(
            items=5,
            acknowledged=5,
            busy=2,
            checked=4,
            stopped_at="record 7",
            quoted=[("x", "7"), ("y", "8"), ("z", "9")],
        )
    )
    assert (total.items, total.acknowledged, total.errors) == (15, 14, 1)
    assert (total.busy, total.checked, total.stopped_at) == (2, 4, "record 7")
    assert [where for where, _ in total.quoted] == ["a", "b", "c", "x", "y"]


def test_the_progress_line_has_unit_rate_percent_and_time_left() -> None:
    done = [0]
    progress = Progress(
        lambda: done[0], lambda: done[0] / 1000, mode="off", label="copy", unit="keys"
    )
    assert progress.line().startswith("0 keys, 0/s, 0.0%")
    time.sleep(0.05)
    done[0] = 400
    line = progress.line()
    assert line.startswith("400 keys, ")
    assert ", 40.0%, " in line
    assert line.endswith(" s left")
    unknown_total = Progress(lambda: 5, lambda: None, mode="off", label="import").line()
    assert unknown_total.startswith("5 commands, ")
    assert "%" not in unknown_total


def test_the_errors_file_names_positions_as_fields() -> None:
    written = io.StringIO()
    log = ErrorLog(written)
    log.write("line 17", "error reply: WRONGTYPE a")
    log.write("record 4 (line 5)", "field 'n' is missing")
    log.write("key user:1 x", "error reply: b")
    log.write("key 42", "error reply: c")
    log.write("verify", "3 keys on the source, 2 on the target")
    assert [json.loads(line) for line in written.getvalue().splitlines()] == [
        {"line": 17, "error": "error reply: WRONGTYPE a"},
        {"record": 4, "line": 5, "error": "field 'n' is missing"},
        {"key": "user:1 x", "error": "error reply: b"},
        {"key": "42", "error": "error reply: c"},
        {"at": "verify", "error": "3 keys on the source, 2 on the target"},
    ]


def test_pump_import_and_copy_say_an_error_reply_the_same_way() -> None:
    pump_log, import_log = io.StringIO(), io.StringIO()
    outcomes = [b"OK", _wrongtype(), b"OK"]
    accounting = Accounting(lambda index: f"line {index + 1}", error_log=ErrorLog(pump_log))
    accounting.add(0, outcomes)
    tally = Tally(errors_file=ErrorLog(import_log))
    tally.outcomes(0, outcomes, lambda index: f"line {index + 1}")
    said = f"line 2: error reply: {_wrongtype()}"
    assert f"  {said}" in accounting.summary()
    assert tally.quoted == accounting.first_errors == [("line 2", said.split(": ", 1)[1])]
    assert pump_log.getvalue() == import_log.getvalue()
    assert json.loads(pump_log.getvalue()) == {"line": 2, "error": said.split(": ", 1)[1]}
