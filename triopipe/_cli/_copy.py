"""``triopipe copy``: a snapshot of keys from one deployment to another.

Theory of operation: each source server (the one server, every shard, every
cluster primary) is walked by its own task with ``SCAN MATCH``; keys are
gathered into batches (``--batch``), and each batch is read with one
pipeline of ``DUMP`` and ``PTTL`` per key, then written by ``pump`` as
``RESTORE key ttl payload`` (``REPLACE`` under ``--replace``) to the
target, which routes each key. Scanning, reading and
writing run as three tasks, a batch apart at most, so memory stays bounded.
A key gone between ``SCAN`` and ``DUMP`` is counted as gone, not as a
failure; without ``--replace`` a key already at the target answers
``BUSYKEY`` and is counted as kept.

As with ``SCAN`` itself, keys written to the source during the copy may or
may not be copied: it is a snapshot only of a source at rest.
``--verify`` then counts the matching keys on both sides and compares a
sample of copied keys: their ``DUMP`` payloads, or, when those differ (a big
set or hash is serialised in its own table's order on each server), their
whole values read by type, and whether both have a time to live.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from .._client import Client
from .._exceptions import TransportError
from .._routing import key_slot
from ._accounting import Tally, count_lines
from ._exits import CliError, ExitStatus, statuses_help
from ._options import Kind, add_two_target_options, two_targets_from_args
from ._progress import Progress, choose_mode
from ._workers import Counters, Share, add_run_options, positive, run_reported

__all__ = ["add_parser", "run"]

# Batches read, and batches written, at once for each source server.
_IN_FLIGHT = 2
# SCAN's COUNT hint: big, so that few round trips go to walking the keys.
_SCAN_COUNT = 5_000
# --json's names of the counts: pump's, where they mean the same.
_SUMMARY_NAMES = {
    "items": "keys",
    "skipped": "gone",
    "commands": "restores",
    "sent": "sent",
    "acknowledged": "acknowledged",
    "busy": "kept_existing",
    "errors": "error_replies",
    "unknown": "unknown",
    "not_sent": "not_sent",
    "source_errors": "unreadable",
    "source_link_errors": "unreadable_link_broken",
    "broken_scans": "broken_scans",
    "checked": "verified_sample",
    "different": "different",
}


class _Servers:
    """The servers of one side (the one server, every shard, every cluster primary)."""

    def __init__(self, client: Any, kind: Kind) -> None:
        self._client = client
        self._kind = kind
        servers: Mapping[str, Client] = (
            client.nodes if kind == "cluster" else client.shards if kind == "shards" else {}
        )
        self.clients: list[Client] = list(servers.values()) or [client]
        self._numbers = {name: number for number, name in enumerate(servers)}

    def number_of(self, key: bytes) -> int:
        """The number (in :attr:`clients`) of the server that holds ``key``."""
        if self._kind == "cluster":
            return self._numbers[self._client.node_for(key)]
        if self._kind == "shards":
            return self._numbers[self._client.shard_for(key)]
        return 0


def _name(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


class _Copier:
    """One process's copy: its share of every source server's keys."""

    def __init__(
        self, args: argparse.Namespace, share: Share, tally: Tally, target_kind: Kind
    ) -> None:
        self._args = args
        self._target_kind = target_kind
        self._share = share
        self._tally = tally
        self._restore_tail: tuple[str, ...] = ("REPLACE",) if args.replace else ()
        # A uniform sample of the copied keys (reservoir sampling), for --verify.
        self.sample: list[tuple[int, bytes]] = []  # (source server, key)
        # Each worker samples its share of the keys.
        self._sample_size = -(-args.verify_sample // share.count) if args.verify else 0
        self._offered = 0
        #: Whether this process walks whole source servers (see take_servers).
        self.whole_servers = False

    def take_servers(self, count: int) -> list[int]:
        """The source servers (by number) this process walks, of ``count``.

        With enough source servers for every worker, each worker takes whole
        servers, so no key is scanned twice; otherwise every worker walks
        every server for the keys of its slots.
        """
        share = self._share
        self.whole_servers = 1 < share.count <= count
        if self.whole_servers:
            return list(range(share.index, count, share.count))
        return list(range(count))

    async def scan(self, source: Client) -> AsyncIterator[list[bytes]]:
        """The matching keys of this share on ``source``, as SCAN returns them."""
        cursor: Any = 0
        share = self._share
        while True:
            cursor, keys = await source.execute(
                "SCAN", cursor, "MATCH", self._args.match, "COUNT", _SCAN_COUNT
            )
            if share.count > 1 and not self.whole_servers:
                keys = [key for key in keys if share.owns_slot(key_slot(key))]
            yield keys
            if int(cursor) == 0:
                return

    async def copy_server(self, server: int, source: Client, target: Any) -> None:
        """Copy the matching keys of source server number ``server``.

        This task scans; reader tasks turn batches of keys into RESTORE
        commands (DUMP, PTTL); writer tasks pump them to the target.
        """
        keys_in, keys_out = anyio.create_memory_object_stream[list[bytes]](1)
        restores_in, restores_out = anyio.create_memory_object_stream[list[tuple[Any, ...]]](1)
        async with anyio.create_task_group() as group, keys_out, restores_in, restores_out:
            # Several batches in flight each way: a round trip waits on two
            # servers and the scheduler, and the order of keys does not matter.
            for _ in range(_IN_FLIGHT):
                group.start_soon(self._write, target, restores_out.clone())
                group.start_soon(
                    self._read_all, server, source, keys_out.clone(), restores_in.clone()
                )
            async with keys_in:
                batch: list[bytes] = []
                try:
                    async for keys in self.scan(source):
                        batch += keys
                        if len(batch) >= self._args.batch:
                            await keys_in.send(batch)
                            batch = []
                except TransportError as exc:
                    # What was found is still copied and counted; the rest is not.
                    self._tally.broken_scans += 1
                    self._tally.failure(f"source {source.config.url}", f"SCAN broke off: {exc}")
                if batch:
                    await keys_in.send(batch)

    async def _read_all(
        self,
        server: int,
        source: Client,
        batches: ObjectReceiveStream[list[bytes]],
        restores: ObjectSendStream[list[tuple[Any, ...]]],
    ) -> None:
        async with batches, restores:
            async for keys in batches:
                await restores.send(await self._read(server, source, keys))

    async def _read(self, server: int, source: Client, keys: list[bytes]) -> list[tuple[Any, ...]]:
        tally = self._tally
        tally.items += len(keys)
        replies = await _dump_and_ttl(source, keys)
        restores: list[tuple[Any, ...]] = []
        keep = restores.append
        tail = self._restore_tail
        sampling = self._sample_size > 0
        for key, payload, ttl in zip(keys, replies[0::2], replies[1::2], strict=True):
            # The common case first, cheaply: a payload, and a TTL (-1: none).
            if payload.__class__ is bytes and ttl.__class__ is int and ttl != -2:
                keep(("RESTORE", key, ttl if ttl > 0 else 0, payload, *tail))
                if sampling:
                    self._keep_in_sample(server, key)
            elif isinstance(payload, Exception) or isinstance(ttl, Exception):
                failure = payload if isinstance(payload, Exception) else ttl
                tally.source_errors += 1
                if isinstance(failure, TransportError):
                    tally.source_link_errors += 1
                tally.failure(f"key {_name(key)}", f"cannot read it from the source: {failure}")
            else:
                tally.skipped += 1  # expired or deleted since SCAN saw it
        return restores

    def _keep_in_sample(self, server: int, key: bytes) -> None:
        self._offered += 1
        if len(self.sample) < self._sample_size:
            self.sample.append((server, key))
        elif self._sample_size and random.random() * self._offered < self._sample_size:
            self.sample[random.randrange(self._sample_size)] = (server, key)

    async def _write(
        self, target: Any, batches: ObjectReceiveStream[list[tuple[Any, ...]]]
    ) -> None:
        tally = self._tally
        async with batches:
            async for restores in batches:

                def where(index: int, restores: list[tuple[Any, ...]] = restores) -> str:
                    return f"key {_name(restores[index][1])}"

                def counted(first: int, outcomes: list[Any]) -> None:
                    tally.outcomes(first, outcomes, where)

                await target.pump(restores, on_outcomes=counted)

    async def verify(self, sources: _Servers, mine: list[int], target: Any) -> None:
        """Compare key counts and the sample of copied keys; count what differs.

        Each process compares its own share: the keys of its slots, or of
        its source servers (the target's keys are told apart by where the
        source would hold them).
        """
        tally = self._tally
        match = self._args.match
        source_count = target_count = 0
        for number in mine:
            async for keys in self.scan(sources.clients[number]):
                source_count += len(keys)
        owned = set(mine)
        for node in _Servers(target, self._target_kind).clients:
            async for keys in self.scan(node):
                if self.whole_servers:
                    keys = [key for key in keys if sources.number_of(key) in owned]
                target_count += len(keys)
        if source_count != target_count:
            tally.different += 1
            tally.failure(
                "verify",
                f"{source_count:,} keys match {match!r} on the source, "
                f"{target_count:,} on the target",
            )
        by_server: dict[int, list[bytes]] = {}
        for server, key in self.sample:
            by_server.setdefault(server, []).append(key)
        for server, keys in by_server.items():
            source = sources.clients[server]
            theirs = await _snapshot(source, keys)
            ours = await _snapshot(target, keys)
            for key, original, copied in zip(keys, theirs, ours, strict=True):
                tally.checked += 1
                if original != copied and not await _same_value(source, target, key):
                    tally.different += 1
                    tally.failure(f"key {_name(key)}", "verify: differs on the target")


async def _dump_and_ttl(client: Any, keys: list[bytes]) -> list[Any]:
    """DUMP and PTTL replies of every key, in order, in one pipeline.

    (A script doing both for a whole batch would save the client work, but
    costs the server twice the time per key, and the source is often a
    server in use.)
    """
    reads: list[Any] = [None] * (2 * len(keys))
    reads[0::2] = [("DUMP", key) for key in keys]
    reads[1::2] = [("PTTL", key) for key in keys]
    replies: list[Any] = await client.execute_many(reads, raise_on_error=False)
    return replies


async def _snapshot(client: Any, keys: list[bytes]) -> list[tuple[Any, bool]]:
    """Each key's DUMP payload and whether it has a time to live."""
    replies = await _dump_and_ttl(client, keys)
    return [
        (payload, isinstance(ttl, int) and ttl > 0)
        for payload, ttl in zip(replies[0::2], replies[1::2], strict=True)
    ]


_READERS: dict[bytes, tuple[Any, ...]] = {
    b"string": ("GET",),
    b"hash": ("HGETALL",),
    b"list": ("LRANGE", 0, -1),
    b"set": ("SMEMBERS",),
    b"zset": ("ZRANGE", 0, -1, "WITHSCORES"),
    b"stream": ("XRANGE", "-", "+"),
}


async def _same_value(source: Any, target: Any, key: bytes) -> bool:
    """Whether ``key`` holds the same value on both sides, read whole by type.

    Sets and hashes compare as unordered; a type without a reader here (a
    module's) cannot be compared and counts as different.
    """
    values = []
    for client in (source, target):
        kind = await client.execute("TYPE", key)
        reader = _READERS.get(kind.encode() if isinstance(kind, str) else kind)
        if reader is None:
            return False
        value = await client.execute(reader[0], key, *reader[1:])
        if isinstance(value, dict):
            value = frozenset(value.items())
        elif reader[0] == "HGETALL":
            value = frozenset(zip(value[0::2], value[1::2], strict=True))
        elif reader[0] == "SMEMBERS":
            value = frozenset(value)
        has_ttl = (await client.execute("PTTL", key)) > 0
        values.append((kind, value, has_ttl))
    return values[0] == values[1]


async def _copy(
    args: argparse.Namespace, share: Share, counters: Counters | None, tally: Tally
) -> None:
    source_target, target_target = two_targets_from_args(args)
    copier = _Copier(args, share, tally, target_target.kind)
    async with source_target.open() as source, target_target.open() as target:
        sources = _Servers(source, source_target.kind)
        mine = copier.take_servers(len(sources.clients))
        total: float | None = None
        if args.match == "*":
            sizes = [await sources.clients[number].execute("DBSIZE") for number in mine]
            total = sum(sizes) if copier.whole_servers else sum(sizes) / share.count
        progress = Progress(
            lambda: tally.acknowledged + tally.busy,
            lambda: _fraction(tally, total),
            mode=choose_mode(args.quiet or counters is not None),
            label="copy",
            unit="keys",
        )
        try:
            async with anyio.create_task_group() as group:
                if counters is not None:
                    group.start_soon(
                        counters.publish, share, tally, lambda: _fraction(tally, total)
                    )
                group.start_soon(progress.run)
                async with anyio.create_task_group() as copies:
                    for number in mine:
                        copies.start_soon(
                            copier.copy_server, number, sources.clients[number], target
                        )
                group.cancel_scope.cancel()
        finally:
            progress.close()
        if args.verify:
            await copier.verify(sources, mine, target)


def _fraction(tally: Tally, total: float | None) -> float | None:
    if not total:
        return None
    return min((tally.acknowledged + tally.busy) / total, 1.0)


def run(args: argparse.Namespace) -> int:
    """Run ``triopipe copy`` with parsed arguments; returns the exit status."""
    try:
        source, target = two_targets_from_args(args)
    except CliError as exc:
        print(f"triopipe copy: {exc}", file=sys.stderr)
        return exc.status
    started = time.perf_counter()
    tally = run_reported("copy", args, _copy, unit="keys", by_slot=True)
    if isinstance(tally, ExitStatus):
        return tally
    elapsed = time.perf_counter() - started
    names = f"{source.describe()} -> {target.describe()}"
    kept_note = "" if args.replace else "--replace overwrites them"
    lines = [
        f"triopipe copy: {names}",
        f"  copied {tally.items:,} keys matching {args.match!r}",
        *count_lines(
            [
                ("gone before DUMP", tally.skipped, "expired or deleted since SCAN"),
                ("unreadable", tally.source_errors, "at the source"),
                ("scans broken off", tally.broken_scans, "source servers not walked to the end"),
                ("restores", tally.commands, ""),
                (
                    "kept",
                    tally.busy,
                    f"already at the target; {kept_note}"
                    if kept_note
                    else "already at the target",
                ),
            ]
        ),
        *tally.outcome_lines(),
        f"  {elapsed:.2f} s, {(tally.acknowledged + tally.busy) / max(elapsed, 1e-9):,.0f} keys/s",
    ]
    if args.verify:
        lines.append(
            f"  verified: key counts and {tally.checked:,} sampled keys, "
            f"{tally.different:,} differences"
        )
    tally.print_summary(
        "copy",
        None if args.quiet else lines,
        tally.as_dict(_SUMMARY_NAMES, elapsed, source=source.describe(), target=target.describe())
        if args.json
        else None,
    )
    return tally.exit_status()


_DESCRIPTION = """Copy the keys matching a pattern from SOURCE to TARGET: SCAN, then pipelined
DUMP and PTTL on the source and RESTORE (pumped, keeping no reply) on the
target, with their time to live. SOURCE and TARGET are a server's URL, or
comma-separated URLs with --source-shards/--target-shards (shards) or
--source-cluster/--target-cluster (a cluster's seed nodes). Passwords may
come from TRIOPIPE_PASSWORD or REDISCLI_AUTH, or --askpass. A snapshot of a source at
rest: keys written meanwhile may or may not be copied.
"""


def add_parser(commands: Any) -> None:
    """Add ``copy`` and its options to the command line's subcommands."""
    parser = commands.add_parser(
        "copy",
        help="copy keys between servers, shards or clusters (DUMP/RESTORE)",
        description=_DESCRIPTION,
        epilog=statuses_help(
            ExitStatus.OK,
            ExitStatus.ERROR_REPLIES,
            ExitStatus.USAGE,
            ExitStatus.CANNOT_CONNECT,
            ExitStatus.CONNECTION_LOST,
            ExitStatus.DIFFERENT,
            ExitStatus.INTERRUPTED,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    add_two_target_options(parser)
    parser.add_argument(
        "--match", default="*", help="copy the keys matching this SCAN pattern (default: *)"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="overwrite keys that exist at the target (default: keep them, counted)",
    )
    parser.add_argument(
        "--batch",
        type=positive,
        default=5000,
        metavar="N",
        help="keys read and written together; the source holds a batch's values at once, "
        "so lower it for keys of many megabytes (default: %(default)s)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="afterwards, compare key counts and a sample of copied keys on both sides",
    )
    parser.add_argument(
        "--verify-sample",
        type=positive,
        default=1000,
        metavar="N",
        help="keys compared by --verify (default: %(default)s)",
    )
    add_run_options(
        parser,
        "each takes whole source servers (shards, cluster primaries) when there are as "
        "many as workers, else the keys of a range of slots",
    )
