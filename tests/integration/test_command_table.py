"""The generated command table against the live server it runs with.

- every command and subcommand of the server's ``COMMAND`` list has a class;
- the rule that classes commands the table lacks (:func:`class_from_info`),
  applied to the commands the table has, is never looser than the table,
  except for the two it cannot see (listed below);
- the key positions of the table agree with the server's ``COMMAND GETKEYS``
  for every call of the helper sweep, and ``COMMAND INFO`` entries, read in
  RESP2 and RESP3, give the table's key specs;
- the commands the table says reply with a RESP3 set do, byte for byte.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from command_cases import CASES, OTHER_CASES, helpers_of, runs_on, server_facts

import triopipe
from triopipe import ResponseError
from triopipe._commands import Commands
from triopipe._routing import CommandClass, class_from_info, command_class, key_positions
from triopipe._routing._keys import _convert_key_spec, key_bytes
from triopipe._routing._keyspecs import KEY_SPECS, UNKNOWN_KEYS
from triopipe.testing import RedisServer

# Commands the table knows but whose COMMAND INFO does not show what they do
# to the connection: MONITOR turns it into a stream of every command,
# REPLCONF is the replication protocol. The table classes them by hand.
BEYOND_THE_RULE = {"MONITOR", "REPLCONF"}

# Commands whose key spec is flagged NOT_KEY: a channel that decides the slot
# (sharded pub/sub) without being a key. Routing needs it; Valkey's GETKEYS
# leaves it out.
NOT_KEYS = {"SPUBLISH"}


def _entries(commands: list[Any]) -> dict[str, list[Any]]:
    entries = {}
    for entry in commands:
        name = entry[0].decode().upper()
        entries[name] = entry
        for sub in entry[9]:
            entries[sub[0].decode().upper()] = sub
    return entries


async def test_every_command_of_the_server_has_a_class(redis_url: str) -> None:
    async with triopipe.open_client(redis_url) as redis:
        entries = _entries(await redis.execute("COMMAND"))
    unknown = [
        name for name in entries if command_class(tuple(name.split("|"))) is CommandClass.UNKNOWN
    ]
    assert len(entries) > 300
    assert unknown == []


@pytest.mark.parametrize("protocol", [2, 3])
async def test_the_rule_for_unknown_commands_is_never_looser_than_the_table(
    redis_url: str, protocol: int
) -> None:
    async with triopipe.open_client(redis_url, protocol=protocol) as redis:
        entries = _entries(await redis.execute("COMMAND"))
    looser = sorted(
        name
        for name, entry in entries.items()
        if command_class(tuple(name.split("|"))) is not CommandClass.SHARED
        and class_from_info(entry) is CommandClass.SHARED
    )
    assert set(looser) == BEYOND_THE_RULE


@pytest.mark.parametrize("protocol", [2, 3])
async def test_command_info_key_specs_read_as_the_table_has_them(
    redis_url: str, protocol: int
) -> None:
    async with triopipe.open_client(redis_url, protocol=protocol) as redis:
        entries = _entries(await redis.execute("COMMAND"))
    differ = []
    for name, entry in entries.items():
        if name not in KEY_SPECS or name in UNKNOWN_KEYS:
            continue
        specs = tuple(spec for spec in map(_convert_key_spec, entry[8]) if spec is not None)
        if specs != KEY_SPECS[name]:
            differ.append((name, specs, KEY_SPECS[name]))
    # The specifications and the servers agree, except where a newer server
    # describes a command better; none of those today.
    assert differ == []


async def test_key_positions_agree_with_command_getkeys(redis_url: str) -> None:
    checked = 0
    async with triopipe.open_client(redis_url) as redis:
        product, version, groups = await server_facts(redis)
        known = helpers_of(groups)
        for item in [*CASES, *OTHER_CASES]:
            if not runs_on(item, product, version, known):
                continue
            args = getattr(Commands, item.helper)(*item.args, **item.kwargs).args
            if args[0] in NOT_KEYS:
                continue
            try:
                keys = await redis.execute("COMMAND", "GETKEYS", *args)
            except ResponseError as exc:
                # No key at all (or, for a bare command name, the wrong
                # number of arguments for GETKEYS itself).
                if "no key arguments" in str(exc) or "command|getkeys" in str(exc):
                    assert key_positions(args) == [], args
                    continue
                raise
            assert [key_bytes(args[p]) for p in key_positions(args)] == keys, args
            checked += 1
    assert checked > 150


def _skip_reply(data: bytes, at: int) -> int:
    """The index after the RESP3 reply that starts at ``at``."""
    end = data.index(b"\r\n", at)
    kind, header = data[at : at + 1], data[at + 1 : end]
    at = end + 2
    if kind in b"$!=":
        return at + int(header) + 2
    if kind in b"*~>":
        for _ in range(int(header)):
            at = _skip_reply(data, at)
    elif kind in b"%|":
        for _ in range(2 * int(header)):
            at = _skip_reply(data, at)
    return at


async def _raw_resp3_kind(server: RedisServer, *args: str | int) -> bytes:
    """The RESP3 type byte of the reply to ``args``, read off the socket."""
    command = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        command.append(b"$%d\r\n%b\r\n" % (len(data), data))
    async with await anyio.connect_tcp("127.0.0.1", server.port) as sock:
        await sock.send(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n" + b"".join(command))
        stream = BufferedByteReceiveStream(sock)
        data = b""
        while True:
            data += await stream.receive()
            try:
                start = _skip_reply(data, 0)
                _skip_reply(data, start)
            except (ValueError, IndexError):
                continue
            return data[start : start + 1]


async def test_the_commands_said_to_reply_with_a_set_do(redis_server: RedisServer) -> None:
    async with triopipe.open_client(redis_server.url) as redis:
        await redis.execute("SADD", "s1", "a", "b")
        await redis.execute("SADD", "s2", "b", "c")
        await redis.execute("ZADD", "z", 1, "a")
        await redis.execute("HSET", "h", "f", "v")
    sets = [
        ("SMEMBERS", "s1"),
        ("SINTER", "s1", "s2"),
        ("SUNION", "s1", "s2"),
        ("SDIFF", "s1", "s2"),
        ("SPOP", "s1", 1),
    ]
    arrays = [("ZRANGE", "z", 0, -1), ("HKEYS", "h"), ("KEYS", "*"), ("SRANDMEMBER", "s2", 2)]
    for args in sets:
        assert await _raw_resp3_kind(redis_server, *args) == b"~", args
    for args in arrays:
        assert await _raw_resp3_kind(redis_server, *args) == b"*", args
    # The helpers return a set for the first, a list for the others.
    for args in sets:
        assert "set[" in str(getattr(Commands, args[0].lower()).builder.__annotations__["return"])
