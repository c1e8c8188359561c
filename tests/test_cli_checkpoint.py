"""``triopipe pump --checkpoint``: a killed pump resumes where its answered prefix ended."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Control

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def _pump(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "triopipe", "pump", *args],
        capture_output=True,
        timeout=90,
        check=False,
    )


def _read_checkpoint(path: Path) -> dict[str, object] | None:
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def test_kill_9_then_resume_applies_every_line(redis_url: str, tmp_path: Path) -> None:
    # Killed on one event loop, resumed on the other.
    lines = 600_000  # long enough to be stopped midway on a fast machine
    source = tmp_path / "input.txt"
    source.write_bytes(b"".join(b"SET k:%d %d\n" % (i, i) for i in range(lines)))
    checkpoint = tmp_path / "pump.checkpoint"
    command = [sys.executable, "-m", "triopipe", "pump", "--url", redis_url, "--quiet"]
    command += ["--backend", "asyncio", "--checkpoint", str(checkpoint), str(source)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        state = _read_checkpoint(checkpoint)
        if state is not None and int(state["answered"]) >= 20_000:  # type: ignore[call-overload]
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    keys_at_kill = int(Control(redis_url).dbsize())  # type: ignore[call-overload]
    state = _read_checkpoint(checkpoint)
    assert state is not None
    assert not state["closed"]
    answered = int(state["answered"])  # type: ignore[call-overload]
    assert 20_000 <= answered < lines
    assert answered <= keys_at_kill

    result = _pump("--url", redis_url, "--json", "--backend", "trio",
                   "--checkpoint", str(checkpoint), str(source))  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resumed_after"] == answered
    # Applied past the answered prefix before the kill, within what is reported.
    assert keys_at_kill - answered <= report["may_apply_twice"]
    assert report["acknowledged"] == lines - answered
    assert b"may be applied twice" in result.stderr
    assert Control(redis_url).dbsize() == lines
    for i in random.sample(range(lines), 200):
        assert Control(redis_url).get(f"k:{i}") == str(i).encode()
    finished = _read_checkpoint(checkpoint)
    assert finished is not None
    assert finished["finished"]
    assert finished["answered"] == lines

    again = _pump("--url", redis_url, "--json", "--checkpoint", str(checkpoint), str(source))
    assert again.returncode == 0
    assert json.loads(again.stdout)["read"] == 0


def test_resume_of_resp_input_and_exact_in_doubt_after_a_clean_stop(
    redis_url: str, tmp_path: Path
) -> None:
    import hiredis

    source = tmp_path / "input.resp"
    commands = [hiredis.pack_command(("SET", f"k:{i}", i)) for i in range(50_000)]
    source.write_bytes(b"".join(commands[:30_000]) + b"*1\r\n:1\r\n" + b"".join(commands[30_000:]))
    checkpoint = tmp_path / "resp.checkpoint"
    first = _pump("--url", redis_url, "--json", "--checkpoint", str(checkpoint), str(source))
    assert first.returncode == 3, first.stderr
    state = _read_checkpoint(checkpoint)
    assert state is not None
    assert state["closed"]
    assert state["answered"] == 30_000
    assert state["in_doubt"] == 0
    # The bad command is still there: a rerun stops at it again, sending nothing.
    second = _pump("--url", redis_url, "--json", "--checkpoint", str(checkpoint), str(source))
    assert second.returncode == 3
    report = json.loads(second.stdout)
    assert report["stopped_at"] == "command 30001"
    assert report["read"] == 0
    assert report["may_apply_twice"] == 0
    assert Control(redis_url).dbsize() == 30_000


def test_checkpoint_refuses_commands_that_are_not_idempotent(
    redis_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "counters.txt"
    source.write_bytes(b"SET a 1\nSET b 2\nINCR a\nSET c 3\n")
    refused = _pump("--url", redis_url, "--checkpoint", str(tmp_path / "cp"), str(source))
    assert refused.returncode == 7
    assert b"line 3: INCR is not idempotent" in refused.stderr
    assert b"--at-least-once" in refused.stderr
    assert Control(redis_url).get("a") == b"1"
    assert Control(redis_url).get("c") is None
    accepted = _pump("--url", redis_url, "--checkpoint", str(tmp_path / "cp2"),
                     "--at-least-once", str(source))  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert Control(redis_url).get("a") == b"2"


def test_checkpoint_of_another_input_is_refused(redis_url: str, tmp_path: Path) -> None:
    first, second = tmp_path / "one.txt", tmp_path / "two.txt"
    first.write_bytes(b"SET a 1\n")
    second.write_bytes(b"SET b 2\nSET c 3\n")
    checkpoint = str(tmp_path / "cp")
    assert _pump("--url", redis_url, "--checkpoint", checkpoint, str(first)).returncode == 0
    other = _pump("--url", redis_url, "--checkpoint", checkpoint, str(second))
    assert other.returncode == 2
    assert b"is for" in other.stderr
    assert Control(redis_url).get("b") is None


@BACKENDS
def test_sigterm_closes_the_checkpoint_with_an_exact_count(
    redis_url: str, tmp_path: Path, backend: str
) -> None:
    lines = 600_000  # long enough to be stopped midway on a fast machine
    source = tmp_path / "input.txt"
    source.write_bytes(b"".join(b"SET k:%d %d\n" % (i, i) for i in range(lines)))
    checkpoint = tmp_path / "pump.checkpoint"
    command = [sys.executable, "-m", "triopipe", "pump", "--url", redis_url, "--json"]
    command += ["--backend", backend, "--checkpoint", str(checkpoint), str(source)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        state = _read_checkpoint(checkpoint)
        if state is not None and int(state["answered"]) >= 20_000:  # type: ignore[call-overload]
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    report = json.loads(stdout)
    assert report["exit_status"] == 130
    assert b"interrupted" in stderr
    state = _read_checkpoint(checkpoint)
    assert state is not None
    assert state["closed"]
    assert not state["finished"]
    assert state["in_doubt"] == report["checkpoint_in_doubt"]
    answered = int(state["answered"])  # type: ignore[call-overload]
    assert answered == report["acknowledged"]
    keys = int(Control(redis_url).dbsize())  # type: ignore[call-overload]
    assert answered <= keys <= answered + int(state["in_doubt"])  # type: ignore[call-overload]

    resumed = _pump("--url", redis_url, "--json", "--checkpoint", str(checkpoint), str(source))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["may_apply_twice"] == state["in_doubt"]
    assert Control(redis_url).dbsize() == lines


def test_unwritable_checkpoint_and_empty_input(redis_url: str, tmp_path: Path) -> None:
    source = tmp_path / "input.txt"
    source.write_bytes(b"SET a 1\n")
    unwritable = _pump(
        "--url", redis_url, "--checkpoint", str(tmp_path / "no" / "cp"), str(source)
    )
    assert unwritable.returncode == 2
    assert unwritable.stderr.count(b"\n") == 1
    assert b"cannot write checkpoint" in unwritable.stderr
    assert Control(redis_url).get("a") is None
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = _pump("--url", redis_url, "--json", "--checkpoint", str(tmp_path / "cp"), str(empty))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["read"] == 0
