"""``triopipe copy`` of N keys, side by side with ``redis-cli --pipe`` fed the same RESTOREs.

``python -m benchmarks.copy_vs_pipe [--keys 1000000] [--rounds 3] [--workers 2]``

Starts three throwaway servers: a source filled with N small string keys
(every tenth with a time to live), and two targets. Each round empties the
targets, then times, on the same machine and in the same run:

* ``triopipe copy SOURCE TARGET`` (SCAN, DUMP + PTTL, RESTORE: the whole job);
* ``redis-cli --pipe`` fed a file of the same ``RESTORE`` commands, built
  beforehand from the source's DUMP payloads (writing only: its reading side
  is not timed, so the ratio flatters redis-cli);
* with ``--workers``, the copy again with that many worker processes.

Prints the best of the rounds for each, keys per second and the ratio.
``--import-too`` adds ``triopipe import`` of a CSV file of N records
(``SET key:{id} {value}``), against ``redis-cli --pipe`` fed the same SETs.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hiredis

from triopipe.testing import redis_server_processes


class _Link:
    """A blocking pipelined connection (hiredis), to fill and read servers quickly."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("redis://").split(":")
        self._sock = socket.create_connection((host, int(port)))
        self._reader = hiredis.Reader()

    def run(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self._sock.sendall(b"".join(hiredis.pack_command(c) for c in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                self._reader.feed(self._sock.recv(1 << 20))
            else:
                replies.append(reply)
        return replies


def _fill(url: str, keys: int) -> None:
    link = _Link(url)
    for base in range(0, keys, 20_000):
        commands: list[tuple[Any, ...]] = []
        for i in range(base, min(keys, base + 20_000)):
            commands.append(("SET", f"key:{i}", f"value-{i:08d}"))
            if i % 10 == 0:
                commands.append(("PEXPIRE", f"key:{i}", 3_600_000))
        link.run(commands)


def _restore_file(url: str, path: Path) -> int:
    """Write a RESTORE per source key (its DUMP and TTL) as RESP; returns how many."""
    link = _Link(url)
    written = 0
    cursor = b"0"
    with path.open("wb") as file:
        while True:
            cursor, keys = link.run([("SCAN", cursor, "COUNT", 5000)])[0]
            replies = link.run([c for key in keys for c in (("DUMP", key), ("PTTL", key))])
            for key, payload, ttl in zip(keys, replies[0::2], replies[1::2], strict=True):
                file.write(hiredis.pack_command(("RESTORE", key, max(ttl, 0), payload)))
                written += 1
            if cursor == b"0":
                return written


def _timed(argv: list[str], stdin: Path | None = None) -> float:
    with stdin.open("rb") if stdin else open("/dev/null", "rb") as source:
        start = time.perf_counter()
        result = subprocess.run(argv, stdin=source, capture_output=True, check=False)
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {result.returncode}: {result.stderr[-300:]!r}")
    return seconds


def _compare_import(args: argparse.Namespace, target: Any, redis_cli: str, tmp: Path) -> None:
    table, sets = tmp / "records.csv", tmp / "sets.resp"
    with table.open("w") as csv_file, sets.open("wb") as resp_file:
        csv_file.write("id,value\n")
        for i in range(args.keys):
            csv_file.write(f"{i},value-{i:08d}\n")
            resp_file.write(hiredis.pack_command(("SET", f"key:{i}", f"value-{i:08d}")))
    host, port = target.url.removeprefix("redis://").split(":")
    argv = [sys.executable, "-m", "triopipe", "import", str(table), "--url", target.url]
    runs: dict[str, list[float]] = {"triopipe import (CSV)": [], "redis-cli --pipe (SET)": []}
    for _ in range(args.rounds):
        target.flush()
        runs["triopipe import (CSV)"].append(
            _timed([*argv, "-c", "SET key:{id} {value}", "--quiet"])
        )
        target.flush()
        runs["redis-cli --pipe (SET)"].append(
            _timed([redis_cli, "-h", host, "-p", port, "--pipe"], sets)
        )
    reference = min(runs["redis-cli --pipe (SET)"])
    print(f"{args.keys:,} records, best of {args.rounds} rounds")
    for name, times in runs.items():
        best = min(times)
        print(
            f"  {name:<28} {best:6.2f} s  {args.keys / best:>10,.0f} records/s  "
            f"{reference / best:4.2f}x redis-cli --pipe"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--import-too", action="store_true")
    args = parser.parse_args()
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        sys.exit("redis-cli is not installed")
    with redis_server_processes(3) as (source, target, _), tempfile.TemporaryDirectory() as tmp:
        _fill(source.url, args.keys)
        restores = Path(tmp) / "restores.resp"
        count = _restore_file(source.url, restores)
        host, port = target.url.removeprefix("redis://").split(":")
        copy = [sys.executable, "-m", "triopipe", "copy", source.url, target.url, "--quiet"]
        runs: dict[str, list[float]] = {"triopipe copy": [], "redis-cli --pipe": []}
        if args.workers > 1:
            runs[f"triopipe copy --workers {args.workers}"] = []
        for _ in range(args.rounds):
            for name in runs:
                target.flush()
                if name == "redis-cli --pipe":
                    argv = [redis_cli, "-h", host, "-p", port, "--pipe"]
                    runs[name].append(_timed(argv, restores))
                else:
                    extra = ["--workers", str(args.workers)] if "workers" in name else []
                    runs[name].append(_timed(copy + extra))
                stored = _Link(target.url).run([("DBSIZE",)])[0]
                if stored != count:
                    raise RuntimeError(f"{name}: {stored} keys at the target, not {count}")
        if args.import_too:
            _compare_import(args, target, redis_cli, Path(tmp))
        reference = min(runs["redis-cli --pipe"])
        print(f"{count:,} keys, best of {args.rounds} rounds")
        for name, times in runs.items():
            best = min(times)
            print(
                f"  {name:<28} {best:6.2f} s  {count / best:>10,.0f} keys/s  "
                f"{reference / best:4.2f}x redis-cli --pipe"
            )


if __name__ == "__main__":
    main()
