"""``triopipe pump --workers N`` against real servers: the data and counts of one worker.

Each run is the real program (worker processes), on each event loop where
the loop matters. The data is compared key by key with what one worker
leaves; the counts and named lines with what the input holds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import hiredis
import pytest
from cli_runner import run_breaking_links, triopipe
from helpers import Control
from keyspace import keyspace

from triopipe._cli._accounting import Tally
from triopipe._cli._options import run_on_backend, stop_on_signals
from triopipe._cli._workers import first_key_at
from triopipe._routing import key_positions

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def report(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert result.stdout, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def mixed_lines(count: int) -> bytes:
    """Commands whose result depends on their order per key, and keyless ones."""
    lines = []
    for i in range(count):
        lines.append(b"RPUSH order:%d %d" % (i % 97, i))
        lines.append(b"SET last:%d %d" % (i % 89, i))
        if i % 1000 == 0:
            lines.append(b"PING")  # no key: worker 0 sends it
            lines.append(b"")  # a blank line shifts the lines after it
    return b"\n".join(lines) + b"\n"


def pump_twice(path: Path, target: list[str], urls: list[str], backend: str) -> None:
    """Pump ``path`` with one worker, then with two: the same keys, values and counts."""
    results = []
    for workers in ("1", "2"):
        for url in urls:
            Control(url).flushall()
        result = triopipe(
            "pump", str(path), *target, "--workers", workers, "--json", "--backend", backend,
            subprocess_=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        results.append((report(result), [keyspace([url]) for url in urls]))
    (alone, alone_keys), (split, split_keys) = results
    assert split_keys == alone_keys  # server by server: each key where one worker put it
    assert len(keyspace(urls)) == 97 + 89
    for name in ("read", "sent", "acknowledged", "error_replies", "unknown", "not_sent"):
        assert split[name] == alone[name], name
    assert split["acknowledged"] == 2 * 30_000 + 30
    assert split["workers"] == 2


@BACKENDS
def test_two_workers_into_two_or_three_shards_leave_the_keys_of_one(
    redis_shard_urls: list[str], tmp_path: Path, backend: str
) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(mixed_lines(30_000))
    # Two shards: a worker per shard; three: a range of slots per worker.
    for shards in (redis_shard_urls[:2], redis_shard_urls[:3]):
        pump_twice(path, ["--shards", *shards], shards, backend)
        assert all(Control(url).dbsize() for url in shards)  # every shard got keys


def test_two_workers_into_a_cluster_leave_the_keys_of_one(
    redis_cluster_urls: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(mixed_lines(30_000))
    pump_twice(path, ["--cluster", redis_cluster_urls[0]], redis_cluster_urls, "trio")


@BACKENDS
def test_error_replies_and_a_malformed_line_are_counted_exactly(
    redis_url: str, redis_shard_urls: list[str], tmp_path: Path, backend: str
) -> None:
    # 25,000 SETs; LPUSH on three of those strings (error replies), then a
    # line with an unclosed quote, then more SETs that must not be sent.
    lines = [b"SET s:%d v" % i for i in range(25_000)]
    wrong_at = []
    for i in (5, 12_345, 24_999):
        lines.insert(i + len(wrong_at), b"LPUSH s:%d x" % (i - 1))
        wrong_at.append(i + len(wrong_at) + 1)
    lines.append(b'SET broken "no closing quote')
    malformed = len(lines)
    lines += [b"SET after:%d v" % i for i in range(5_000)]
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    errors = tmp_path / "errors.jsonl"
    shards = redis_shard_urls[:2]
    for target, urls in ((["--url", redis_url], [redis_url]), (["--shards", *shards], shards)):
        result = triopipe(
            "pump", str(path), *target, "--workers", "2", "--json", "--errors", str(errors),
            "--backend", backend, subprocess_=True,
        )  # fmt: skip
        assert result.returncode == 3, result.stderr
        counts = report(result)
        assert counts["stopped_at"] == f"line {malformed}"
        assert counts["stop_reason"].startswith("unbalanced quotes")
        assert (counts["read"], counts["sent"]) == (25_003, 25_003)
        assert (counts["acknowledged"], counts["error_replies"]) == (25_000, 3)
        assert counts["unknown"] == counts["not_sent"] == 0
        logged = [json.loads(line) for line in errors.read_text().splitlines()]
        assert sorted(entry["line"] for entry in logged) == wrong_at
        assert all(entry["error"].startswith("error reply: WRONGTYPE") for entry in logged)
        stderr = result.stderr.decode()
        assert f"stopped at line {malformed}: unbalanced quotes" in stderr, stderr
        assert f"line {wrong_at[0]}: error reply: WRONGTYPE" in stderr
        assert sum(int(Control(url).dbsize()) for url in urls) == 25_000  # type: ignore[call-overload]
        assert all(Control(url).get("after:0") is None for url in urls)


def test_what_workers_cannot_do_is_refused_before_sending(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "few.txt"
    path.write_bytes(b"SET a 1\n")
    refused = {
        "--checkpoint": ["--checkpoint", str(tmp_path / "cp.json")],
        "--wait-replicas": ["--wait-replicas", "0"],
    }
    for option, extra in refused.items():
        result = triopipe("pump", str(path), "--url", redis_url, "--workers", "2", *extra)
        assert result.returncode == 2, result.stderr
        assert option.encode() in result.stderr
        assert result.stderr.count(b"\n") == 1
    piped = triopipe("pump", "--url", redis_url, "--workers", "2", data=b"SET a 1\n")
    assert piped.returncode == 2
    assert b"--workers needs an input file" in piped.stderr
    assert Control(redis_url).dbsize() == 0


def test_the_first_key_found_by_shape_is_the_one_the_key_specs_find() -> None:
    commands = [
        (b"SET", b"k", b"v"),
        (b"set", b"k2", b"v"),
        (b"RPUSH", b"list", b"a", b"b"),
        (b"MSET", b"a", b"1", b"b", b"2"),
        (b"EVAL", b"return 1", b"1", b"key"),
        (b"EVAL", b"return 1", b"0"),
        (b"XREAD", b"COUNT", b"2", b"STREAMS", b"s1", b"s2", b"0", b"0"),
        (b"OBJECT", b"ENCODING", b"k"),
        (b"SORT", b"k", b"STORE", b"dest"),
        (b"PING",),
    ]
    for _ in range(2):  # the second time from the cache, where it may be cached
        for command in commands:
            positions = key_positions(command)
            assert first_key_at(command) == (positions[0] if positions else None), command
    # EVAL's keys depend on its key count, not only on its length.
    assert first_key_at((b"EVAL", b"s", b"0", b"x")) is None
    assert first_key_at((b"EVAL", b"s", b"1", b"x")) == 3


def test_a_truncated_resp_file_stops_every_worker_at_its_last_command(
    redis_shard_urls: list[str], tmp_path: Path
) -> None:
    data = b"".join(hiredis.pack_command(("SET", f"k:{i}", "v" * 50)) for i in range(30_000))
    path = tmp_path / "cut.resp"
    path.write_bytes(data[: len(data) - 20])  # inside command 30,000
    shards = redis_shard_urls[:2]
    result = triopipe(
        "pump", str(path), "--shards", *shards, "--workers", "2", "--json", subprocess_=True
    )
    assert result.returncode == 3, result.stderr
    counts = report(result)
    assert counts["format"] == "resp"
    assert counts["stopped_at"] == "command 30000"
    assert counts["read"] == counts["acknowledged"] == 29_999
    assert sum(int(Control(url).dbsize()) for url in shards) == 29_999  # type: ignore[call-overload]


async def test_broken_links_leave_acknowledged_le_keys_le_acknowledged_plus_unknown(
    redis_url: str, tmp_path: Path, anyio_backend_name: str
) -> None:
    count = 300_000
    path = tmp_path / "many.txt"
    path.write_bytes(b"".join(b"SET k:%d %d\n" % (i, i) for i in range(count)))
    args = ["pump", str(path), "--url", "{proxy}", "--workers", "2"]
    args += ["--backend", anyio_backend_name]
    status, counts = await run_breaking_links(args, redis_url, redis_url, count // 4)
    stored = int(Control(redis_url).dbsize())  # type: ignore[call-overload]
    assert counts["unknown"] > 0
    assert counts["read"] == counts["sent"] + counts["not_sent"] < count  # reading stopped
    assert counts["acknowledged"] + counts["unknown"] + counts["not_sent"] == counts["read"]
    assert counts["acknowledged"] <= stored <= counts["acknowledged"] + counts["unknown"]
    assert status == counts["exit_status"] == 5


def test_one_progress_display_for_every_worker(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"".join(b"SET k:%d %d\n" % (i, i) for i in range(200_000)))
    result = triopipe(
        "pump", str(path), "--url", redis_url, "--workers", "2", "--progress-interval", "0.05",
        subprocess_=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith(b"pump: ")]
    assert progress, result.stderr
    assert b" commands, " in progress[0]
    assert re.search(rb"acknowledged +200,000\n", result.stderr), result.stderr


@BACKENDS
def test_sigterm_stops_every_worker_and_their_counts_add_up(
    redis_url: str, tmp_path: Path, backend: str
) -> None:
    count = 1_000_000
    path = tmp_path / "many.txt"
    path.write_bytes(b"".join(b"SET k:%d %d\n" % (i, i) for i in range(count)))
    command = [sys.executable, "-m", "triopipe", "pump", str(path), "--url", redis_url]
    command += ["--workers", "2", "--json", "--backend", backend]
    control = Control(redis_url)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        while int(control.dbsize()) == 0:  # type: ignore[call-overload]
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert b"interrupted" in stderr
    counts = json.loads(stdout)
    assert counts["interrupted"] is True
    assert counts["exit_status"] == 130
    stored = int(control.dbsize())  # type: ignore[call-overload]
    time.sleep(0.5)  # no worker runs on
    assert stored == int(control.dbsize()) < count  # type: ignore[call-overload]
    assert counts["read"] == counts["acknowledged"] + counts["unknown"] < count
    assert counts["acknowledged"] <= stored <= counts["acknowledged"] + counts["unknown"]


@BACKENDS
def test_ctrl_c_in_a_worker_stops_it_at_an_await_with_its_counts_whole(backend: str) -> None:
    """Ctrl-C arriving while a worker counts outcomes waits for the next await.

    Raised where it lands, KeyboardInterrupt would stop the counting half
    way: commands counted, their outcomes not yet sorted.
    """
    import anyio.lowlevel

    tally = Tally()
    ctrl_c = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT))

    async def count_forever() -> None:
        ctrl_c.start()
        while True:
            tally.commands += 512
            time.sleep(0.05)  # noqa: ASYNC251 - Ctrl-C arrives here, far from any await
            tally.acknowledged += 512
            await anyio.lowlevel.checkpoint()

    run_on_backend(lambda: stop_on_signals(count_forever, tally, signal.SIGINT), backend)
    assert tally.interrupted
    assert tally.commands == tally.acknowledged >= 512
