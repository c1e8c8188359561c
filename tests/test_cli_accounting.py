"""The pump's accounting (``triopipe._cli._accounting``), fed outcomes directly."""

from __future__ import annotations

import io
import json

from triopipe import ConnectError, ConnectionLostError, ResponseError, WrongTypeError
from triopipe._cli._accounting import Accounting, ErrorLog
from triopipe._cli._exits import ExitStatus


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
    assert accounting.first_errors[0] == ("line 3", str(_wrongtype()))


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
