"""Every data command's typed helper, against a real server, under RESP2 and RESP3.

Each case prepares the same data, calls the helper once on a ``protocol=2``
client and once on a ``protocol=3`` client (and again through a batch, and
on the blocking client), and checks that:

- both results have the same Python type, all the way down (and, for
  deterministic commands, the same value);
- both match the helper's declared return type (its ``Command[...]``
  annotation), checked at run time.

The sweep then counts the server's data commands (its ``COMMAND DOCS``
groups string, bitmap, hash, list, set, sorted_set, stream, geo,
hyperloglog and generic; subcommands counted one by one, their HELP texts
aside) that have a helper and a passing case here: at least 95% must.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from command_cases import (
    CASES,
    DATA_GROUPS,
    OTHER_CASES,
    STRINGS,
    Case,
    case,
    conforms,
    groups_of,
    helper_of,
    helpers_of,
    returns,
    runs_on,
    server_facts,
    shape,
)

import triopipe
import triopipe.sync
import triopipe.testing
from triopipe._commands import Commands
from triopipe._routing import CommandClass, command_class
from triopipe.testing import RedisServer


async def _run(
    clients: dict[int, triopipe.Client], case: Case, call: Callable[[triopipe.Client], Any]
) -> dict[int, Any]:
    """The case's result on each client; the same through a batch, or an AssertionError.

    A blocking command runs alone only (a batch refuses it); ``WAIT`` and
    ``WAITAOF`` in a batch only (alone they would count no writes, and are
    refused).
    """
    kind = command_class(getattr(Commands, case.helper)(*case.args, **case.kwargs).args)
    ways = {CommandClass.BLOCKING: (False,), CommandClass.PINNED: (True,)}.get(kind, (False, True))
    results = {}
    for protocol, redis in clients.items():
        for through_batch in ways:
            await redis.execute("FLUSHALL")
            await redis.execute("CONFIG", "SET", "maxmemory-policy", "noeviction")
            for command in case.setup:
                await redis.execute(*command)
            if not through_batch:
                results[protocol] = await call(redis)
                continue
            async with redis.batch() as batch:
                pending = getattr(batch, case.helper)(*case.args, **case.kwargs)
            batched = pending.result()
            if protocol not in results:
                results[protocol] = batched
            assert shape(batched) == shape(results[protocol]), (batched, results[protocol])
            assert not case.same_value or batched == results[protocol], batched
    return results


@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decode"])
async def test_every_data_command_has_the_same_types_under_resp2_and_resp3(
    redis_server: RedisServer, decode: bool
) -> None:
    failures: list[str] = []
    passed: set[str] = set()
    async with (
        triopipe.open_client(redis_server.url, protocol=2, decode=decode) as resp2,
        triopipe.open_client(redis_server.url, protocol=3, decode=decode) as resp3,
        triopipe.testing.redis_server() as target,
    ):
        async with triopipe.open_client(redis_server.url, protocol=2) as plain:
            product, version, groups = await server_facts(plain)
            dump = await _dump_of(plain)
        known = helpers_of(groups)
        clients = {2: resp2, 3: resp3}
        special = [
            Case("restore", ("k", 0, dump), {"replace": True}, ()),
            Case(
                "migrate",
                ("127.0.0.1", target.port, "s", 0, 5000),
                {"copy": True, "replace": True},
                STRINGS,
            ),
        ]
        for item in [*CASES, *special, *OTHER_CASES]:
            if not runs_on(item, product, version, known):
                continue
            if item.binary and decode:
                passed.add(item.helper)  # the bytes variant of the sweep checks it
                continue

            async def call(redis: triopipe.Client, item: Case = item) -> Any:
                return await getattr(redis, item.helper)(*item.args, **item.kwargs)

            try:
                with anyio.fail_after(10):
                    results = await _run(clients, item, call)
            except Exception as exc:
                failures.append(f"{item.helper}{item.args}{item.kwargs}: {exc!r}")
                continue
            declared = returns(item.helper)
            problems = [
                f"RESP{p} gave {r!r}, not a {declared}"
                for p, r in results.items()
                if not conforms(r, declared)
            ]
            differ = shape(results[2]) != shape(results[3])
            if differ or (item.same_value and results[2] != results[3]):
                problems.append(f"RESP2 gave {results[2]!r}, RESP3 {results[3]!r}")
            if problems:
                failures.append(f"{item.helper}{item.args}{item.kwargs}: " + "; ".join(problems))
            else:
                passed.add(item.helper)
    assert not failures, "\n".join(failures)
    data = sorted(
        command
        for command, group in groups.items()
        if group in DATA_GROUPS and not command.endswith(" HELP")
    )
    covered = [command for command in data if helper_of(command) in passed]
    missing = sorted(set(data) - set(covered))
    share = len(covered) / len(data)
    server = f"{product} {'.'.join(map(str, version))}"
    counts = f"{len(covered)} of {len(data)} data commands ({share:.1%})"
    others = len({item.helper for item in OTHER_CASES} & passed)
    print(f"{server}: {counts}, and {others} other helpers; without a passing case: {missing}")
    assert share >= 0.95, missing


async def _dump_of(redis: triopipe.Client) -> bytes:
    await redis.execute("SET", "dumped", "value")
    value: bytes = await redis.execute("DUMP", "dumped")
    await redis.execute("DEL", "dumped")
    return value


def test_every_case_names_a_helper() -> None:
    for item in [*CASES, *OTHER_CASES]:
        assert hasattr(Commands, item.helper), item.helper


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_blocking_client_gives_the_same_types(redis_url: str, backend: str) -> None:
    results: dict[int, dict[int, Any]] = {2: {}, 3: {}}
    for protocol in (2, 3):
        with triopipe.sync.open_client(redis_url, backend=backend, protocol=protocol) as redis:
            known = helpers_of(groups_of(redis.execute("COMMAND", "DOCS")))
            for index, item in enumerate(CASES):
                if item.helper not in known or item.since is not None:
                    continue
                redis.execute("FLUSHALL")
                redis.execute("CONFIG", "SET", "maxmemory-policy", "noeviction")
                for command in item.setup:
                    redis.execute(*command)
                built = getattr(Commands, item.helper)(*item.args, **item.kwargs)
                if command_class(built.args) is CommandClass.PINNED:
                    # WAIT and WAITAOF run after the writes they count, in a batch.
                    with redis.batch() as batch:
                        pending = getattr(batch, item.helper)(*item.args, **item.kwargs)
                    results[protocol][index] = pending.result()
                    continue
                results[protocol][index] = getattr(redis, item.helper)(*item.args, **item.kwargs)
    assert results[2].keys() == results[3].keys()
    assert len(results[2]) > 180
    for index, reply in results[2].items():
        item = CASES[index]
        assert shape(reply) == shape(results[3][index]), item
        assert conforms(reply, returns(item.helper)), (item, reply)
        assert conforms(results[3][index], returns(item.helper)), (item, results[3][index])


async def test_the_cluster_helpers_on_a_cluster_node(redis_cluster_urls: list[str]) -> None:
    cases = [
        case("cluster_info", same_value=False),
        case("cluster_nodes", same_value=False),
        case("cluster_slots", same_value=False),
        case("cluster_shards", same_value=False),
        case("cluster_links", same_value=False),
        case("cluster_myid"),
        case("cluster_keyslot", "user:{42}:name"),
        case("cluster_countkeysinslot", 0),
        case("cluster_getkeysinslot", 0, 10),
    ]
    # READONLY changes the connection it runs on: no helper.
    assert not hasattr(Commands, "readonly")
    url = redis_cluster_urls[0]
    async with (
        triopipe.open_client(url, protocol=2) as resp2,
        triopipe.open_client(url, protocol=3) as resp3,
    ):
        for item in cases:
            results = {
                protocol: await getattr(redis, item.helper)(*item.args)
                for protocol, redis in ((2, resp2), (3, resp3))
            }
            declared = returns(item.helper)
            assert shape(results[2]) == shape(results[3]), (item.helper, results)
            for reply in results.values():
                assert conforms(reply, declared), (item.helper, reply, declared)
            assert not item.same_value or results[2] == results[3], item.helper
