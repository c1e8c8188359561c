"""``triopipe pump --workers N``: one worker's share of the input, exactly accounted.

Rules that live here (the process pool itself is :mod:`._workers`):

- every worker reads and checks the whole input with its own
  :class:`~._input.CommandSource`, so a malformed or refused command stops
  every worker at the same place, after every command before it is answered;
- a worker sends only its share: to shards or a cluster, the commands whose
  first key's slot is one of its slots (a range of slots, as
  :meth:`~._workers.Share.sends`; into as many shards as workers, the slots
  of one shard), commands without a key going through worker 0; to one
  server, whole blocks of :data:`~._workers.BLOCK` commands. So each command
  is sent, and counted, by exactly one worker, and each key's commands keep
  their order;
- a worker with a shard of its own sends the single-key commands of its
  slots straight to that shard's client, in runs (one ``pump`` call per run,
  each answered before the next), and every other command through the
  sharded client: the sharded client's routing of every command is what
  makes one process slow into shards;
- outcomes are named by their place in the input (``line 17``, ``command
  17``), as one process names them; a broken link stops that worker's
  reading, as it stops a single run's.

``--checkpoint`` and ``--wait-replicas``/``--wait-aof`` are refused with
``--workers``: a checkpoint records one answered prefix of one input, which
several processes answering in their own orders do not have.
"""

from __future__ import annotations

import argparse
from binascii import crc_hqx
from collections import deque
from collections.abc import Iterator
from typing import Any

import anyio

from .._exceptions import TriopipeError
from .._routing import hash_tag
from .._routing._keys import SLOTS
from .._routing._shards import slot_table
from ._accounting import Tally
from ._exits import CliError, ExitStatus
from ._input import Command, CommandSource
from ._options import Target
from ._refusals import CommandCheck
from ._workers import Counters, Share, key_shape

__all__ = ["check_workers", "pump_share"]

_LAST_SLOT = SLOTS - 1


def check_workers(args: argparse.Namespace) -> None:
    """Refuse what ``--workers`` cannot do, before anything is sent.

    Raises:
        CliError: standard input, ``--checkpoint`` or a durability wait with
            several workers (:attr:`~ExitStatus.USAGE`).
    """
    if args.workers <= 1:
        return
    if args.file == "-":
        raise CliError(
            "--workers needs an input file: each worker reads all of it", ExitStatus.USAGE
        )
    if args.checkpoint is not None:
        raise CliError(
            "--checkpoint cannot be used with --workers: workers answer their shares in "
            "their own order, so the input has no single answered prefix to resume from",
            ExitStatus.USAGE,
        )
    if args.wait_replicas is not None or args.wait_aof:
        raise CliError(
            "--wait-replicas and --wait-aof cannot be used with --workers (use one worker)",
            ExitStatus.USAGE,
        )


class _ShareFeed:
    """This worker's commands of a source, remembering each in-flight one's input index.

    ``slots`` flags this worker's slots (one byte each; None: split by
    blocks). Commands go through ``client`` (the target's), or, in runs,
    straight to ``own_server`` when it owns the one key they name.
    """

    def __init__(
        self, source: CommandSource, share: Share, tally: Tally, slots: bytes | None
    ) -> None:
        self._source = source
        self._share = share
        self._tally = tally
        self._slots = slots
        # The input index of each command handed to pump and not yet
        # answered; the first of them is command number self._first of this
        # worker (counted over its runs of pump calls).
        self._indexes: deque[int] = deque()
        self._first = 0

    def _mine(self, own_server: bool) -> Iterator[tuple[bool, Command]]:
        """This worker's commands, each with whether it may go straight to its own server."""
        share, indexes, slots = self._share, self._indexes, self._slots
        if slots is None:
            owns = share.owns_record
            for index, command in enumerate(self._source):
                if owns(index + 1):
                    indexes.append(index)
                    yield False, command
            return
        # Share.sends, unrolled: every worker judges every command of the input.
        keyless = share.index == 0
        for index, command in enumerate(self._source):
            at, alone = key_shape(command)
            if at is None:
                if not keyless:
                    continue
                alone = False  # the target's client knows where it goes
            else:
                key = command[at]
                if b"{" in key:
                    key = hash_tag(key)
                if not slots[crc_hqx(key, 0) & _LAST_SLOT]:
                    continue
            indexes.append(index)
            yield alone and own_server, command

    async def pump(self, client: Any, own_server: Any | None) -> None:
        """Pump this worker's commands, each run of them through one client, in input order."""
        pairs = self._mine(own_server is not None)
        ahead = next(pairs, None)
        while ahead is not None:
            direct = ahead[0]
            handed = 0

            def run(direct: bool = direct) -> Iterator[Command]:
                nonlocal ahead, handed
                while ahead is not None and ahead[0] is direct:
                    # The next one is looked at before this one is handed over:
                    # a command handed over is never handed again.
                    command = ahead[1]
                    ahead = next(pairs, None)
                    handed += 1
                    yield command

            before = self._first  # every earlier run is answered

            def counted(first: int, outcomes: list[Any], before: int = before) -> None:
                self.outcomes(before + first, outcomes)

            through = client if own_server is None or not direct else own_server
            await through.pump(run(), on_outcomes=counted)
            if not handed:
                return  # the pump took nothing more: what is left is cut off

    def cut_off(self) -> None:
        """Count the commands taken and still unanswered as of unknown outcome."""
        unanswered = len(self._indexes)
        self._tally.commands += unanswered
        self._tally.unknown += unanswered
        self._indexes.clear()

    def outcomes(self, first: int, outcomes: list[Any]) -> None:
        """Count the outcomes of pump's commands ``first``, ... (in order, each once)."""
        indexes, base, tally = self._indexes, self._first, self._tally
        locate = self._source.locate
        tally.outcomes(first, outcomes, lambda number: locate(indexes[number - base]))
        self._first = first + len(outcomes)
        for _ in outcomes:
            indexes.popleft()
        if indexes:
            self._source.release(indexes[0])
        if tally.unknown or tally.not_sent:
            self._source.halted = True  # a link broke: read no more, as one process does


def _split(target: Target, client: Any, share: Share) -> tuple[bytes | None, Any | None]:
    """This worker's slots (a flag each; None: by blocks), and its own server, if it has one.

    With as many shards as workers, each worker takes the slots of one shard
    (and sends its single-key commands straight to it, the sharded client's
    routing skipped); otherwise, to shards or a cluster, a range of slots.
    """
    if not share.by_slot:
        return None, None
    if target.kind == "shards" and len(client.shards) == share.count:
        names = tuple(client.shards)
        table = slot_table(names)
        slots = bytes(owner == share.index for owner in table)
        return slots, client.shards[names[share.index]]
    low, high = share.slot_range()
    return bytes(low <= slot < high for slot in range(SLOTS)), None


async def pump_share(
    args: argparse.Namespace, share: Share, counters: Counters | None, tally: Tally
) -> None:
    """Pump this worker's share of ``args.file``, counting into ``tally``."""
    target: Target = args.target_chosen
    # Read with blocking calls, as one process reads its input: a local file.
    with open(args.file, "rb") as stream:  # noqa: ASYNC230
        size = args.input_size
        source = CommandSource(stream, args.format, check=CommandCheck(idempotent=False))

        def fraction() -> float | None:
            return min(source.bytes_read / size, 1.0) if size else None

        async with target.open() as client, anyio.create_task_group() as group:
            if counters is not None:
                group.start_soon(counters.publish, share, tally, fraction)
            slots, own_server = _split(target, client, share)
            feed = _ShareFeed(source, share, tally, slots)
            try:
                await feed.pump(client, own_server)
            except (TriopipeError, TypeError, ValueError) as exc:
                where = source.locate(source.taken - 1)
                raise CliError(f"after {where}: {exc}", ExitStatus.BAD_INPUT) from None
            finally:
                # Interrupted, the commands taken and unanswered may have
                # been applied: counted as unknown, as one process counts them.
                feed.cut_off()
                tally.items = tally.commands  # each command read is sent by one worker
            group.cancel_scope.cancel()
    if source.failure is not None:
        tally.stopped_at = source.failure.where
        tally.stop_reason = source.failure.reason
        tally.stop_status = source.failure.status
