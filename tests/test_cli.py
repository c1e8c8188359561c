"""The ``triopipe`` command line against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import hiredis
from helpers import Control

import triopipe
from triopipe._cli._options import PASSWORD_VARIABLES
from triopipe.testing import RedisServerProcess, redis_server_process


def _pump(*args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "triopipe", "pump", *args],
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _get(server: RedisServerProcess, *command: str) -> bytes:
    # Looked at from outside, without redis-cli: a user's machine may have
    # only the server of the triopipe[server] extra.
    reply = Control(server.url).execute_command(*command)
    return reply if isinstance(reply, bytes) else str(reply).encode()


def test_pump_text_with_quotes_and_comments(
    redis_session_server: RedisServerProcess, redis_url: str
) -> None:
    data = b'# a comment\nSET plain value\n\nSET "spaced key" "a b c"\nRPUSH list x y z\n'
    result = _pump("--url", redis_url, data=data)
    assert result.returncode == 0, result.stderr
    assert b"acknowledged                 3" in result.stderr
    assert _get(redis_session_server, "GET", "plain") == b"value"
    assert _get(redis_session_server, "GET", "spaced key") == b"a b c"
    assert _get(redis_session_server, "LLEN", "list") == b"3"


def test_pump_resp_input_from_a_file(
    redis_session_server: RedisServerProcess, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "input.resp"
    path.write_bytes(b"".join(hiredis.pack_command(("SET", f"k{i}", i)) for i in range(5000)))
    result = _pump("--url", redis_url, "--quiet", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert _get(redis_session_server, "DBSIZE") == b"5000"
    assert _get(redis_session_server, "GET", "k4999") == b"4999"


def test_pump_reports_error_replies_and_exits_1(redis_url: str) -> None:
    result = _pump("--url", redis_url, data=b"SET k v\nLPUSH k x\nINCR k\n")
    assert result.returncode == 1
    assert b"error replies                2" in result.stderr
    assert b"WRONGTYPE" in result.stderr


def test_pump_truncated_resp_and_unreachable_server(redis_url: str) -> None:
    truncated = hiredis.pack_command(("SET", "k", "v"))[:-3]
    result = _pump("--url", redis_url, data=truncated)
    assert result.returncode == 3
    assert b"middle of this command" in result.stderr
    result = _pump("--url", "redis://:secret@127.0.0.1:1", data=b"PING\n")
    assert result.returncode == 4
    assert b"cannot connect" in result.stderr
    assert b"secret" not in result.stderr
    result = _pump("--url", "redis://127.0.0.1:1", "--json", data=b"PING\n")
    assert result.returncode == 4
    assert json.loads(result.stdout)["exit_status"] == 4


def test_pump_over_shards(redis_shard_urls: list[str]) -> None:
    lines = b"".join(b"SET key:%d %d\n" % (i, i) for i in range(300))
    result = _pump("--shards", *redis_shard_urls, data=lines)
    assert result.returncode == 0, result.stderr
    counts = [Control(url).dbsize() for url in redis_shard_urls]
    assert sum(counts) == 300
    assert all(count > 0 for count in counts)


def test_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "triopipe", "pump", "--help"], capture_output=True, check=False
    )
    assert result.returncode == 0
    assert b"--pipe" in result.stdout


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "triopipe", "--version"], capture_output=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"triopipe {triopipe.__version__}"


def test_every_option_has_help_text() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "triopipe", "pump", "--help"],
        capture_output=True,
        check=False,
        env={**os.environ, "COLUMNS": "300"},
    )
    options = re.findall(rb"^  (-[-\w]+(?:, --[-\w]+)?)(.*)$", result.stdout, re.MULTILINE)
    assert len(options) > 10
    for name, rest in options:
        assert rest.strip(), f"{name.decode()} has no help text"
    for documented in (b"exit status", b"--checkpoint", b"--errors", b"--wait-replicas"):
        assert documented in result.stdout


def test_missing_file_and_bad_url_are_one_line_errors(redis_url: str, tmp_path: Path) -> None:
    missing = _pump("--url", redis_url, str(tmp_path / "nowhere.txt"))
    assert missing.returncode == 6
    assert missing.stderr.count(b"\n") == 1
    assert b"nowhere.txt: No such file or directory" in missing.stderr
    bad_url = _pump("--url", "redis://:secret@localhost:port", data=b"PING\n")
    assert bad_url.returncode == 2
    assert bad_url.stderr.count(b"\n") == 1
    assert b"invalid Redis URL" in bad_url.stderr
    assert b"secret" not in bad_url.stderr


def test_a_file_after_shards_is_the_input(redis_shard_urls: list[str], tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"".join(b"SET key:%d %d\n" % (i, i) for i in range(100)))
    result = _pump("--shards", *redis_shard_urls, str(path))
    assert result.returncode == 0, result.stderr
    assert b"3 shards: redis://127.0.0.1:" in result.stderr
    assert sum(int(Control(url).dbsize()) for url in redis_shard_urls) == 100  # type: ignore[call-overload]


def test_password_from_the_environment_or_a_prompt(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"SET k v\n")
    with redis_server_process(requirepass="s3cret") as server:
        command = [sys.executable, "-m", "triopipe", "pump", "--url", server.url, str(path)]
        environment = {k: v for k, v in os.environ.items() if k not in PASSWORD_VARIABLES}

        def run(*extra: str, **variables: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [*command, *extra],
                input=b"s3cret\n",
                capture_output=True,
                env={**environment, **variables},
                start_new_session=True,  # no terminal: --askpass reads standard input
                check=False,
            )

        for variable in PASSWORD_VARIABLES:
            good = run(**{variable: "s3cret"})
            assert good.returncode == 0, good.stderr
            assert b"acknowledged                 1" in good.stderr
        # TRIOPIPE_PASSWORD comes first.
        assert run(TRIOPIPE_PASSWORD="s3cret", REDISCLI_AUTH="wrong").returncode == 0
        wrong = run(REDISCLI_AUTH="wrong")
        assert wrong.returncode == 4
        assert b"cannot connect to redis://127.0.0.1:" in wrong.stderr
        assert b"wrong" not in wrong.stderr.replace(b"WRONGPASS", b"")
        asked = run("--askpass", REDISCLI_AUTH="wrong")
        assert asked.returncode == 0, asked.stderr
