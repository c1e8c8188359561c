"""Redis's inline syntax (``triopipe._cli._inline``): vectors, and what redis-cli stores."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import urllib.parse

import hiredis
import pytest

from triopipe._cli._inline import InlineSyntaxError, split_inline

# (line, arguments) as Redis's sdssplitargs splits them.
VECTORS = [
    (b"SET k v", [b"SET", b"k", b"v"]),
    (b"  SET\tk \t v  ", [b"SET", b"k", b"v"]),
    (b"", []),
    (b" \t ", []),
    (rb'SET k "a\x41b"', [b"SET", b"k", b"aAb"]),
    (rb'SET k "\x4a\x6B"', [b"SET", b"k", b"Jk"]),
    (rb'SET k "\xZZ"', [b"SET", b"k", b"xZZ"]),  # not hex: the x is kept
    (rb'SET k "\x4"', [b"SET", b"k", b"x4"]),
    (rb'SET k "\n\r\t\b\a"', [b"SET", b"k", b"\n\r\t\b\a"]),
    (rb'SET k "back\\slash \"quoted\""', [b"SET", b"k", b'back\\slash "quoted"']),
    (rb'SET k "\q\z"', [b"SET", b"k", b"qz"]),
    (rb"SET k 'it\'s'", [b"SET", b"k", b"it's"]),
    (rb"SET k 'no \x41 \n escapes'", [b"SET", b"k", rb"no \x41 \n escapes"]),
    (rb"SET k a\x41b", [b"SET", b"k", rb"a\x41b"]),  # unquoted: literal
    (b'SET k a"b c"', [b"SET", b"k", b"ab c"]),  # a quote may open mid-argument
    (b"SET k \"\" ''", [b"SET", b"k", b"", b""]),
    (b'SET "a key" \'a "value"\'', [b"SET", b"a key", b'a "value"']),
    (b"SET k caf\xc3\xa9", [b"SET", b"k", b"caf\xc3\xa9"]),
    (rb'SET k "\xff\x00end"', [b"SET", b"k", b"\xff\x00end"]),
    (b"SET k v\r", [b"SET", b"k", b"v"]),
    (b'SET k "v"\x0bw', [b"SET", b"k", b"v", b"w"]),  # \v after a quote: a blank
    (b"SET k a\x0bb", [b"SET", b"k", b"a\x0bb"]),  # \v inside an argument: kept
    (b"SET k a\0 ignored", [b"SET", b"k", b"a"]),  # NUL ends the line, as in C
]

MALFORMED = [
    (b'SET k "unclosed', "double quote is not closed"),
    (b"SET k 'unclosed", "single quote is not closed"),
    (b'SET k "a"b', "followed by a space"),
    (b"SET k 'a'b", "followed by a space"),
    (b'SET k "ends in a backslash\\', "double quote is not closed"),
    (b'SET k "a\0"', "double quote is not closed"),  # NUL ends the line, quote open
]


@pytest.mark.parametrize(("line", "expected"), VECTORS)
def test_vectors(line: bytes, expected: list[bytes]) -> None:
    assert split_inline(line) == expected


@pytest.mark.parametrize(("line", "message"), MALFORMED)
def test_malformed_lines(line: bytes, message: str) -> None:
    with pytest.raises(InlineSyntaxError, match=message):
        split_inline(line)


@pytest.mark.parametrize(("line", "expected"), VECTORS)
def test_every_prefix_splits_or_is_refused_cleanly(line: bytes, expected: list[bytes]) -> None:
    # A line cut anywhere (a truncated file) is either split or refused with
    # InlineSyntaxError, never another exception.
    for cut in range(len(line) + 1):
        with contextlib.suppress(InlineSyntaxError):
            split_inline(line[:cut])
    assert split_inline(line) == expected


def _values(url: str, db: int, keys: list[bytes]) -> list[object]:
    parts = urllib.parse.urlsplit(url)
    reader = hiredis.Reader()
    payload = hiredis.pack_command(("SELECT", db)) + hiredis.pack_command(("MGET", *keys))
    replies: list[object] = []
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(payload)
        while len(replies) < 2:
            reply = reader.gets()
            if reply is False:
                reader.feed(sock.recv(65536))
            else:
                replies.append(reply)
    assert replies[0] == b"OK"
    values = replies[1]
    assert isinstance(values, list)
    return values


def test_pump_stores_what_redis_cli_stores(redis_url: str) -> None:
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        pytest.skip("redis-cli is not installed (Debian's redis-tools has it)")
    lines, keys = [], []
    for number, (line, arguments) in enumerate(VECTORS):
        if len(arguments) != 3 or b"\0" in line or b" k " not in line:
            continue  # redis-cli --pipe sends the line's bytes; NUL is the C view only
        key = b"key:%d" % number
        keys.append(key)
        lines.append(line.replace(b" k ", b" " + key + b" ", 1))
    lines.append(b'SET "key with spaces" "\\x41\\x42 \\"c\\""')
    keys.append(b"key with spaces")
    data = b"\n".join(lines) + b"\n"
    port = str(urllib.parse.urlsplit(redis_url).port)
    by_cli = subprocess.run(
        [redis_cli, "-p", port, "-n", "1", "--pipe"], input=data, capture_output=True, timeout=30
    )
    assert by_cli.returncode == 0, by_cli.stdout + by_cli.stderr
    # Without --pipe, redis-cli splits each line itself (the server does with --pipe).
    by_cli_lines = subprocess.run(
        [redis_cli, "-p", port, "-n", "3"], input=data, capture_output=True, timeout=30
    )
    assert by_cli_lines.returncode == 0, by_cli_lines.stdout + by_cli_lines.stderr
    by_pump = subprocess.run(
        [sys.executable, "-m", "triopipe", "pump", "--url", f"{redis_url}/2", "--quiet"],
        input=data,
        capture_output=True,
        timeout=30,
    )
    assert by_pump.returncode == 0, by_pump.stderr
    stored = _values(redis_url, 1, keys)
    assert None not in stored
    assert _values(redis_url, 2, keys) == stored
    assert _values(redis_url, 3, keys) == stored
