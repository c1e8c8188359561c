"""``triopipe pump``'s exact accounting, against real servers.

Each test runs the command line in a subprocess, as users do, and compares
what it reports with what the server holds. The backend is a parameter where
the event loop matters (the pump's own loop), so both run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hiredis
import pytest
from helpers import Control

from triopipe.testing import redis_server_process

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def pump(
    *args: str, data: bytes = b"", timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "triopipe", "pump", *args],
        input=data,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def counts(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def set_lines(start: int, stop: int) -> bytes:
    return b"".join(b"SET k:%d %d\n" % (i, i) for i in range(start, stop))


def test_malformed_line_at_500001_of_a_million(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "million.txt"
    path.write_bytes(
        set_lines(0, 500_000) + b'SET broken "no closing quote\n' + set_lines(500_001, 1_000_000)
    )
    result = pump("--url", redis_url, "--json", str(path))
    assert result.returncode == 3, result.stderr
    assert b"line 500001: unbalanced quotes" in result.stderr
    report = counts(result)
    assert report["stopped_at"] == "line 500001"
    assert report["acknowledged"] == 500_000
    assert report["unknown"] == report["error_replies"] == report["not_sent"] == 0
    assert Control(redis_url).dbsize() == 500_000
    assert Control(redis_url).get("k:499999") == b"499999"


@BACKENDS
def test_malformed_resp_command_in_the_middle(redis_url: str, backend: str) -> None:
    good = [hiredis.pack_command(("SET", f"k:{i}", i)) for i in range(20_000)]
    # Command 12,001 is a nested array: RESP, but not a command.
    data = b"".join(good[:12_000]) + b"*1\r\n*1\r\n$1\r\nx\r\n" + b"".join(good[12_000:])
    result = pump("--url", redis_url, "--json", "--backend", backend, data=data)
    assert result.returncode == 3, result.stderr
    report = counts(result)
    assert report["format"] == "resp"
    assert report["stopped_at"] == "command 12001"
    assert report["acknowledged"] == 12_000
    assert Control(redis_url).dbsize() == 12_000


@BACKENDS
def test_truncated_resp_file(redis_url: str, tmp_path: Path, backend: str) -> None:
    data = b"".join(hiredis.pack_command(("SET", f"k:{i}", "v" * 50)) for i in range(1000))
    path = tmp_path / "cut.resp"
    path.write_bytes(data[: len(data) - 20])  # inside command 1000
    result = pump("--url", redis_url, "--json", "--backend", backend, str(path))
    assert result.returncode == 3, result.stderr
    assert b"command 1000: the input ends in the middle of this command" in result.stderr
    assert counts(result)["acknowledged"] == 999
    assert Control(redis_url).dbsize() == 999


@BACKENDS
def test_error_replies_each_with_its_line(redis_url: str, tmp_path: Path, backend: str) -> None:
    lines = [b"# strings first, then a list command on some of them", b""]
    lines += [b"SET s:%d v" % i for i in range(30_000)]
    wrong = {1_000, 15_000, 29_999}
    expected_lines = []
    for i in sorted(wrong):
        lines.append(b"")  # a blank line shifts every line after it
        lines.append(b"LPUSH s:%d x" % i)
        expected_lines.append(len(lines))
    lines.append(b"SET last v")
    errors = tmp_path / "errors.jsonl"
    result = pump(
        "--url", redis_url, "--json", "--errors", str(errors), "--backend", backend,
        data=b"\n".join(lines) + b"\n",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    report = counts(result)
    assert report["error_replies"] == 3
    assert report["acknowledged"] == 30_001
    logged = [json.loads(line) for line in errors.read_text().splitlines()]
    assert [entry["line"] for entry in logged] == expected_lines
    assert all(entry["error"].startswith("error reply: WRONGTYPE") for entry in logged)
    for line in expected_lines:
        assert f"line {line}: error reply: WRONGTYPE".encode() in result.stderr
    assert Control(redis_url).get("last") == b"v"


def test_error_replies_in_resp_input_are_named_by_command_number(redis_url: str) -> None:
    commands = [("SET", "s", "v"), ("SET", "t", "v"), ("INCR", "s"), ("SET", "u", "v")]
    data = b"".join(hiredis.pack_command(command) for command in commands)
    result = pump("--url", redis_url, "--json", data=data)
    assert result.returncode == 1
    assert counts(result)["first_errors"][0]["at"] == "command 3"


def test_a_server_killed_midway(tmp_path: Path) -> None:
    # appendfsync always: every acknowledged write is on disk before its
    # reply, so the keys after a restart count what the server applied.
    path = tmp_path / "big.txt"
    path.write_bytes(set_lines(0, 1_500_000))
    with redis_server_process(appendonly=True, appendfsync="always") as server:
        control = Control(server.url)
        process = subprocess.Popen(
            [sys.executable, "-m", "triopipe", "pump", "--url", server.url, "--json", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while int(control.dbsize()) < 100_000:  # type: ignore[call-overload]
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.kill()
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 5, stderr
        report = json.loads(stdout)
        server.restart()
        keys = int(control.dbsize())  # type: ignore[call-overload]
    assert report["acknowledged"] > 0
    assert report["unknown"] + report["not_sent"] > 0
    assert report["acknowledged"] <= keys <= report["acknowledged"] + report["unknown"]
    assert report["acknowledged"] + report["unknown"] + report["not_sent"] == report["read"]
    assert b"may or may not have been applied" in stderr or report["unknown"] == 0


def test_progress_lines_when_not_a_terminal(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(set_lines(0, 100_000))
    result = pump("--url", redis_url, "--progress-interval", "0.02", str(path))
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith(b"pump: ")]
    assert progress, result.stderr
    assert b" commands, " in progress[0]
    assert b"%" in progress[-1]
    quiet = pump("--url", redis_url, "--quiet", "--progress-interval", "0.02", str(path))
    assert quiet.stderr == b""


def test_progress_bar_on_a_terminal(redis_url: str, tmp_path: Path) -> None:
    pytest.importorskip("rich", reason="the bar needs the cli extra (rich)")
    import pty

    path = tmp_path / "input.txt"
    path.write_bytes(set_lines(0, 100_000))
    # Standard error on a pseudo-terminal, as in an interactive shell.
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "triopipe", "pump", "--url", redis_url, str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
    )
    output = _terminal_output(leader, follower)
    assert process.wait(timeout=60) == 0, output
    assert b"100%" in output
    assert b"ETA" in output
    assert b"100,000 commands" in output
    assert b"acknowledged" in output


@BACKENDS
def test_cluster_stops_exactly_before_a_malformed_line(
    redis_cluster_urls: list[str], backend: str
) -> None:
    data = set_lines(0, 70_000) + b"SET k 'open\n" + set_lines(70_001, 90_000)
    result = pump("--cluster", *redis_cluster_urls, "--json", "--backend", backend, data=data)
    assert result.returncode == 3, result.stderr
    report = counts(result)
    assert report["stopped_at"] == "line 70001"
    assert report["acknowledged"] == 70_000
    assert b"cluster at redis://" in result.stderr
    keys = sum(int(Control(url).dbsize()) for url in redis_cluster_urls)  # type: ignore[call-overload]
    assert keys == 70_000


def test_quiet_still_says_why_the_run_stopped(redis_url: str) -> None:
    result = pump("--url", redis_url, "--quiet", data=b"SET a 1\nSET b 'open\n")
    assert result.returncode == 3
    assert result.stderr.count(b"\n") == 1
    assert b"stopped at line 2: unbalanced quotes" in result.stderr


def test_a_terminal_without_rich_gets_plain_lines(redis_url: str, tmp_path: Path) -> None:
    import pty

    path = tmp_path / "input.txt"
    path.write_bytes(set_lines(0, 100_000))
    # As after `pip install triopipe` without the cli extra: rich cannot be imported.
    without_rich = "import sys; sys.modules['rich'] = None; from triopipe._cli import main; "
    without_rich += "sys.exit(main())"
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", without_rich, "pump", "--url", redis_url,
         "--progress-interval", "0.02", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )  # fmt: skip
    output = _terminal_output(leader, follower)
    assert process.wait(timeout=60) == 0, output
    assert b"pump: " in output
    assert b"acknowledged           100,000" in output


def _terminal_output(leader: int, follower: int) -> bytes:
    """Everything written to a pseudo-terminal until the process holding it exits."""
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes with the process
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return output
