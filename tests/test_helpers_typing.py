"""The typed helpers type-check: mypy --strict on a user module, line by line.

The module below calls a sample of helpers on the async client, a batch and
the blocking client. Lines ending in ``# error`` call them wrongly; mypy
must report an error on exactly those lines, and nowhere else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

USER_MODULE = """
from __future__ import annotations

import triopipe
import triopipe.sync


async def right(redis: triopipe.Client) -> None:
    value: bytes | str | None = await redis.get("k")
    count: int = await redis.incr("counter")
    await redis.incrby("counter", amount=5)
    await redis.set("k", "v", ex=10, nx=True)
    fields: dict[bytes | str, bytes | str] = await redis.hgetall("h")
    members: set[bytes | str] = await redis.smembers("s")
    values: list[bytes | str | None] = await redis.mget(["a", "b"])
    values = await redis.mget("a", "b")
    deleted: int = await redis.delete(["a", "b"])
    deleted = await redis.unlink("a", "b")
    added: int = await redis.hset("h", mapping={"f": "v", "n": 1})
    added = await redis.zadd("z", {"m": 1.5, "n": 2}, gt=True)
    ranked = await redis.zrange("z", 0, -1, withscores=True)
    score: float | None = await redis.zscore("z", "m")
    expired: bool = await redis.expire("k", 10, nx=True)
    popped: tuple[bytes | str, bytes | str] | None = await redis.blpop(["a", "b"], 1.5)
    entries = await redis.xrange("stream", "-", "+", count=10)
    for entry_id, entry_fields in entries:
        print(entry_id, entry_fields.get("f"))
    read = await redis.xread({"stream": "0"}, count=1)
    await redis.xadd("stream", {"f": "v"}, maxlen=1000, approximately=True)
    await redis.geosearch("g", frommember="m", byradius=(10, "km"), withdist=True)
    await redis.linsert("l", "BEFORE", "pivot", "element")
    await redis.zunionstore("dest", ["z1", "z2"], weights=[1, 2.5], aggregate="MAX")
    cursor, keys = await redis.scan(0, match="user:*", count=100)
    await redis.eval("return ARGV[1]", keys=["k"], args=["v"])
    await redis.publish("channel", "message")
    await redis.client_list(type="normal")
    async with redis.batch() as batch:
        pending: triopipe.Pending[int] = batch.incr("counter")
        later: triopipe.Pending[bytes | str | None] = batch.get("k")
    print(value, count, fields, members, values, deleted, added, ranked, score, expired,
          popped, read, cursor, keys, pending.result(), later.result())


async def wrong(redis: triopipe.Client) -> None:
    await redis.get("k", "extra")  # error
    await redis.incrby("counter", "5")  # error
    await redis.expire("k", 10, nx="yes")  # error
    number: int = await redis.get("k")  # error
    await redis.zadd("z", {"m": []})  # error
    await redis.linsert("l", "MIDDLE", "pivot", "element")  # error
    await redis.hgetall()  # error
    await redis.lrange("l", 0)  # error
    await redis.xadd("stream", {"f": "v"}, nosuchflag=True)  # error
    text: str = await redis.smembers("s")  # error
    await redis.mget({"a": 1})  # error
    await redis.zunionstore("dest", ["z1"], aggregate="AVERAGE")  # error
    await redis.geosearch("g", byradius=(10, "parsecs"))  # error
    async with redis.batch() as batch:
        result: triopipe.Pending[str] = batch.incr("counter")  # error
    print(number, text, result)


def blocking(redis: triopipe.sync.SyncClient) -> None:
    value: bytes | str | None = redis.get("k")
    count: int = redis.incr("counter")
    members: set[bytes | str] = redis.sinter(["a", "b"])
    wrong: int = redis.get("k")  # error
    redis.hset("h", {"f": object()})  # error
    print(value, count, members, wrong)
"""


def test_mypy_accepts_right_calls_and_reports_each_wrong_one(tmp_path: Path) -> None:
    module = tmp_path / "user_module.py"
    module.write_text(USER_MODULE)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(module),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    errors: dict[int, list[str]] = {}
    for line in result.stdout.splitlines():
        found = re.match(rf"{re.escape(str(module))}:(\d+): error: (.*)", line)
        if found:
            errors.setdefault(int(found[1]), []).append(found[2])
    expected = {
        number
        for number, line in enumerate(USER_MODULE.splitlines(), start=1)
        if line.endswith("# error")
    }
    assert len(expected) == 16
    unexpected = {n: e for n, e in errors.items() if n not in expected}
    missed = sorted(expected - errors.keys())
    lines = USER_MODULE.splitlines()
    assert not unexpected, (unexpected, result.stdout, result.stderr)
    assert not missed, ([lines[n - 1] for n in missed], result.stdout)
