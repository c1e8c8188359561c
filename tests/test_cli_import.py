"""``triopipe import`` against real servers: records to commands, counted exactly.

The command line runs in a subprocess, on each event loop (``--backend``).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli_runner import run_breaking_links, triopipe
from helpers import Control
from keyspace import keyspace

from triopipe.testing import RedisServer

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
# Slower tests run on one event loop each, both loops being covered.
ON_TRIO = pytest.mark.parametrize("backend", ["trio"])
ON_ASYNCIO = pytest.mark.parametrize("backend", ["asyncio"])

USER_TEMPLATES = (
    "-c",
    "HSET user:{id} name {name} age {age:int} city {city}",
    "-c",
    "EXPIRE user:{id} 3600",
    "-c",
    "SADD users {id}",
    "-c",
    "ZADD by-age {age:int} {id}",
)


def summary(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert result.stdout, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def logged(errors: Path) -> list[dict[str, Any]]:
    """The entries of an ``--errors`` file (one JSON object a line)."""
    return [json.loads(line) for line in errors.read_text().splitlines()]


def users(count: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"User {i}, the {i % 7}th", "age": 18 + i % 60, "city": "Zürich"}
        for i in range(1, count + 1)
    ]


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    return path


@BACKENDS
def test_csv_records_become_commands(redis_url: str, tmp_path: Path, backend: str) -> None:
    source = write_csv(tmp_path / "users.csv", users(2500))
    result = triopipe(
        "import", str(source), *USER_TEMPLATES, "--url", redis_url, "--json", "--backend", backend
    )
    assert result.returncode == 0, result.stderr
    assert summary(result) | {"seconds": 0, "rate": 0} == {
        "target": f"{redis_url.rstrip('/')} (one server)",
        "input": str(source),
        "seconds": 0,
        "rate": 0,
        "records": 2500,
        "bad_records": 0,
        "commands": 10_000,
        "sent": 10_000,
        "acknowledged": 10_000,
        "error_replies": 0,
        "unknown": 0,
        "not_sent": 0,
        "stopped_at": None,
        "stop_reason": None,
        "first_errors": [],
        "interrupted": False,
        "exit_status": 0,
    }
    data = keyspace([redis_url])
    assert len(data) == 2500 + 2
    assert data[b"user:17"] == (
        b"hash",
        {b"name": b"User 17, the 3th", b"age": b"35", b"city": "Zürich".encode()},
        True,
    )
    assert len(data[b"users"][1]) == 2500
    ages = data[b"by-age"][1]
    assert dict(zip(ages[0::2], ages[1::2], strict=True))[b"17"] == b"35"


@BACKENDS
def test_jsonl_gzip_into_a_cluster_equals_csv_into_one_server(
    redis_url: str, redis_cluster_urls: list[str], tmp_path: Path, backend: str
) -> None:
    rows = users(3000)
    plain = write_csv(tmp_path / "users.tsv", rows, delimiter="\t")
    packed = write_jsonl(tmp_path / "users.jsonl.gz", rows)
    first = triopipe("import", str(plain), *USER_TEMPLATES, "--url", redis_url, "--quiet")
    assert first.returncode == 0, first.stderr
    second = triopipe(
        "import", str(packed), *USER_TEMPLATES, "--cluster", redis_cluster_urls[0],
        "--backend", backend,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert b"-> cluster at " in second.stderr
    assert b"imported 3,000 records (0 bad) as 12,000 commands" in second.stderr
    single, spread = keyspace([redis_url]), keyspace(redis_cluster_urls)
    assert len(single) == 3002
    assert single == spread
    assert all(Control(url).dbsize() for url in redis_cluster_urls)


def test_templates_are_checked_before_anything_is_sent(redis_url: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "users.csv", users(10))
    unknown = triopipe("import", str(source), "-c", "SET k:{id} {nmae}", "--url", redis_url)
    assert unknown.returncode == 2
    assert b"no field 'nmae' in the input (its fields: 'id', 'name', 'age', 'city')" in (
        unknown.stderr
    )
    assert unknown.stderr.count(b"\n") == 1  # one line, no traceback
    for template, problem in [
        ("SET k:{id {name}", b"a '{' is not closed"),
        ("SET k:{id:integer} x", b"unknown type 'integer' for field 'id'"),
        ('SET "k {id}', b"a double quote is not closed"),
        ("   ", b"it is empty"),
    ]:
        result = triopipe("import", str(source), "-c", template, "--url", redis_url)
        assert result.returncode == 2
        assert problem in result.stderr
    blocking = triopipe("import", str(source), "-c", "BLPOP q:{id} 0", "--url", redis_url)
    assert blocking.returncode == 2
    assert b"a command that cannot be pumped: BLPOP cannot be pipelined" in blocking.stderr
    missing = triopipe("import", str(tmp_path / "nope.csv"), "-c", "SET a b")
    assert missing.returncode == 6
    assert b"cannot read %s: No such file or directory" % bytes(tmp_path / "nope.csv") in (
        missing.stderr
    )
    assert missing.stderr.count(b"\n") == 1
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfid,name\r\n1,x\r\n")
    from_excel = triopipe("import", str(bom), "-c", "SET k:{id} {name}", "--url", redis_url)
    assert from_excel.returncode == 0, from_excel.stderr
    assert Control(redis_url).get("k:1") == b"x"
    Control(redis_url).flushall()
    (tmp_path / "users.txt").write_text("id\n1\n")
    unnamed = triopipe("import", str(tmp_path / "users.txt"), "-c", "SET a b")
    assert unnamed.returncode == 2
    assert b"say --format" in unnamed.stderr
    assert Control(redis_url).dbsize() == 0


@ON_TRIO
def test_a_bad_record_stops_after_everything_before_it_is_applied(
    redis_url: str, tmp_path: Path, backend: str
) -> None:
    rows: list[dict[str, Any]] = [{"id": i, "n": i} for i in range(1, 30_001)]
    rows[21_233]["n"] = "twelve"  # record 21,234, line 21,235
    source = write_csv(tmp_path / "counts.csv", rows)
    errors = tmp_path / "errors.txt"
    args = ("import", str(source), "-c", "SET n:{id} {n:int}", "--url", redis_url, "--json")
    result = triopipe(*args, "--errors", str(errors), "--backend", backend)
    assert result.returncode == 3
    report = summary(result)
    assert report["stopped_at"] == "record 21234 (line 21235)"
    assert report["stop_reason"] == "field 'n' is not an integer: 'twelve'"
    stopped = [{"record": 21234, "line": 21235, "error": report["stop_reason"]}]
    assert report["acknowledged"] == report["commands"] == 21_233
    assert Control(redis_url).dbsize() == 21_233
    assert Control(redis_url).get("n:21233") == b"21233"
    assert logged(errors) == stopped

    # Split over two workers (blocks of records), both stop at the bad record.
    Control(redis_url).flushall()
    split = triopipe(
        *args, "--workers", "2", "--errors", str(errors), "--backend", backend, subprocess_=True
    )
    assert split.returncode == 3
    assert summary(split)["stopped_at"] == report["stopped_at"]
    assert summary(split)["acknowledged"] == 21_233
    assert Control(redis_url).dbsize() == 21_233
    assert logged(errors) == stopped

    skipping = triopipe(*args, "--skip-bad", "--backend", backend)
    assert skipping.returncode == 0, skipping.stderr
    assert summary(skipping)["bad_records"] == 1
    assert summary(skipping)["acknowledged"] == 29_999
    assert Control(redis_url).dbsize() == 29_999


def test_bad_jsonl_lines_are_named_and_skipped(redis_url: str, tmp_path: Path) -> None:
    lines = (
        b'{"id": 1, "v": "a"}\n\n{"id": 2}\n{"id": 3, "v": null}\n[4]\n{oops\n'
        b'{"id": 6, "v": [1, {"x": 2}]}\n'
    )
    errors = tmp_path / "errors.txt"
    result = triopipe(
        "import", "-", "--format", "jsonl", "-c", "SET j:{id} {v}", "--url", redis_url,
        "--skip-bad", "--errors", str(errors), data=lines,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"imported 6 records (4 bad) as 2 commands" in result.stderr
    assert b"stopped at" not in result.stderr
    assert logged(errors)[:3] == [
        {"record": 2, "line": 3, "error": "field 'v' is missing"},
        {"record": 3, "line": 4, "error": "field 'v' is null"},
        {"record": 4, "line": 5, "error": "a line must hold a JSON object"},
    ]
    assert logged(errors)[3]["error"].startswith("malformed JSON")
    assert Control(redis_url).get("j:1") == b"a"
    assert Control(redis_url).get("j:6") == b'[1,{"x":2}]'


@ON_ASYNCIO
def test_error_replies_are_reported_with_their_records(
    redis_url: str, tmp_path: Path, backend: str
) -> None:
    Control(redis_url).execute_command("SET", "list:7", "not a list")
    Control(redis_url).execute_command("SET", "list:4242", "not a list")
    source = write_csv(
        tmp_path / "items.csv", [{"id": i % 5000, "item": i} for i in range(10_000)]
    )
    errors = tmp_path / "errors.txt"
    result = triopipe(
        "import", str(source), "-c", "RPUSH list:{id} {item}", "--url", redis_url,
        "--errors", str(errors), "--backend", backend,
    )  # fmt: skip
    assert result.returncode == 1
    assert b"as 10,000 commands" in result.stderr
    stderr = result.stderr.decode()
    assert re.search(r"acknowledged +9,996\n +error replies +4\n", stderr), stderr
    entries = logged(errors)
    assert [entry["record"] for entry in entries] == [8, 4243, 5008, 9243]
    assert all(entry["error"].startswith("error reply: WRONGTYPE") for entry in entries)
    assert Control(redis_url).execute_command("LRANGE", "list:8", 0, -1) == [b"8", b"5008"]


def test_an_unreachable_server_is_exit_4_without_its_password(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "users.csv", users(3))
    result = triopipe(
        "import", str(source), "-c", "SADD users {id}", "--url", "redis://:secret@127.0.0.1:1"
    )
    assert result.returncode == 4
    assert b"cannot connect" in result.stderr
    assert b"secret" not in result.stderr
    split = triopipe(
        "import", str(source), "-c", "SADD users {id}", "--shards", "redis://127.0.0.1:1",
        "--workers", "2", subprocess_=True,
    )  # fmt: skip
    assert split.returncode == 4
    assert split.stderr.startswith(b"triopipe import: cannot connect")
    assert split.stderr.count(b"\n") == 1
    bad_url = triopipe("import", str(source), "-c", "SADD users {id}", "--url", "http://x")
    assert bad_url.returncode == 2
    assert b"unsupported URL scheme" in bad_url.stderr


@ON_TRIO
def test_workers_split_by_slot_over_shards_and_by_block_on_one_server(
    redis_url: str, redis_shard_urls: list[str], tmp_path: Path, backend: str
) -> None:
    rows = [{"id": i, "n": i % 100} for i in range(25_000)]
    source = write_csv(tmp_path / "counts.csv", rows)
    templates = ("-c", "INCRBY total:{n} {id:int}", "-c", "RPUSH order:{n} {id}")
    shards = ",".join(redis_shard_urls)
    for target in (["--url", redis_url], ["--shards", shards]):
        result = triopipe(
            "import", str(source), *templates, *target, "--workers", "2", "--json",
            "--backend", backend, subprocess_=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        report = summary(result)
        assert (report["records"], report["acknowledged"]) == (25_000, 50_000)
    single = keyspace([redis_url])
    spread = keyspace(redis_shard_urls)
    for n in range(100):
        expected_total = str(sum(range(n, 25_000, 100))).encode()
        assert single[b"total:%d" % n][1] == spread[b"total:%d" % n][1] == expected_total
        # By slot, each key's commands keep the input's order.
        assert spread[b"order:%d" % n][1] == tuple(b"%d" % i for i in range(n, 25_000, 100))
        assert sorted(single[b"order:%d" % n][1], key=int) == list(spread[b"order:%d" % n][1])


async def test_a_broken_link_leaves_acknowledged_le_keys_le_acknowledged_plus_unknown(
    redis_url: str, tmp_path: Path, anyio_backend_name: str
) -> None:
    count = 200_000
    source = write_csv(tmp_path / "many.csv", [{"id": i} for i in range(count)])
    args = ["import", str(source), "-c", "SET k:{id} {id}", "--url", "{proxy}"]
    args += ["--backend", anyio_backend_name]
    status, report = await run_breaking_links(args, redis_url, redis_url, count // 4)
    control = Control(redis_url)
    stored = int(control.dbsize())  # type: ignore[call-overload]
    assert report["records"] == report["commands"] == count
    assert report["unknown"] > 0
    assert report["acknowledged"] + report["unknown"] + report["not_sent"] == count
    assert report["acknowledged"] <= stored <= report["acknowledged"] + report["unknown"]
    assert status == report["exit_status"] == 5


def test_the_password_comes_from_the_environment(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url
    Control(url).execute_command("ACL", "SETUSER", "importer", "on", ">s3cret", "~*", "+@all")
    source = write_csv(tmp_path / "users.csv", users(20))
    # A user name without a password: the password comes from REDISCLI_AUTH.
    as_importer = url.replace("redis://", "redis://importer:@")
    argv = [sys.executable, "-m", "triopipe", "import", str(source), "-c", "SADD users {id}"]
    for variable in ("REDISCLI_AUTH", "TRIOPIPE_PASSWORD"):
        Control(url).execute_command("DEL", "users")
        result = subprocess.run(
            [*argv, "--url", as_importer],
            env={**os.environ, variable: "s3cret"},
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert Control(url).execute_command("SCARD", "users") == 20
    refused = subprocess.run(
        [*argv, "--url", as_importer],
        env={**os.environ, "REDISCLI_AUTH": "wrong"},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 4
    assert b"wrong" not in refused.stderr
    assert b"refused the credentials" in refused.stderr


async def test_ctrl_c_still_prints_what_was_acknowledged(
    redis_url: str, tmp_path: Path, anyio_backend_name: str
) -> None:
    count = 300_000
    source = write_csv(tmp_path / "many.csv", [{"id": i} for i in range(count)])
    control = Control(redis_url)
    argv = [sys.executable, "-m", "triopipe", "import", str(source), "-c", "SET k:{id} {id}"]
    argv += ["--url", redis_url, "--json", "--backend", anyio_backend_name]
    async with await anyio.open_process(argv) as process:
        while int(await anyio.to_thread.run_sync(control.dbsize)) < count // 10:
            await anyio.sleep(0.01)
        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        output = b"".join([chunk async for chunk in process.stdout])
        status = await process.wait()
    report = json.loads(output)
    assert status == report["exit_status"] == 130
    assert report["interrupted"] is True
    assert 0 < report["acknowledged"] <= int(control.dbsize()) < count  # type: ignore[call-overload]


def test_quiet_still_says_where_a_bad_record_stopped_the_run(
    redis_url: str, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "n.csv", [{"id": 1, "n": 1}, {"id": 2, "n": "two"}])
    result = triopipe(
        "import", str(source), "-c", "SET n:{id} {n:int}", "--url", redis_url, "--quiet"
    )
    assert result.returncode == 3
    assert result.stderr == (
        b"triopipe import: stopped at record 2 (line 3): field 'n' is not an integer: 'two'\n"
    )
    assert Control(redis_url).get("n:1") == b"1"


def test_every_subcommand_has_the_same_report_and_target_options() -> None:
    for command in ("pump", "import", "copy"):
        shown = b" ".join(triopipe(command, "--help").stdout.split())
        for option in (b"--errors", b"--json", b"--quiet", b"--backend", b"--askpass"):
            assert option in shown, (command, option)
        assert b"4 cannot connect or credentials refused" in shown
    assert b"9 --verify found differences" in b" ".join(triopipe("copy", "--help").stdout.split())
