"""Pure routing knowledge: which connection or server a command needs.

No I/O here: the facades ask, the connections act.
"""

from __future__ import annotations

from ._commands import CommandKind as CommandKind
from ._commands import check_pipelinable as check_pipelinable
from ._commands import command_kind as command_kind
from ._commands import command_name as command_name
from ._keys import SLOTS as SLOTS
from ._keys import UnknownCommandError as UnknownCommandError
from ._keys import hash_tag as hash_tag
from ._keys import key_positions as key_positions
from ._keys import key_slot as key_slot
from ._shards import Broadcast as Broadcast
from ._shards import Route as Route
from ._shards import Router as Router
from ._shards import ShardRouter as ShardRouter
from ._shards import SlotRouter as SlotRouter
from ._shards import Split as Split
from ._shards import slot_table as slot_table

__all__ = [
    "SLOTS",
    "Broadcast",
    "CommandKind",
    "Route",
    "Router",
    "ShardRouter",
    "SlotRouter",
    "Split",
    "UnknownCommandError",
    "check_pipelinable",
    "command_kind",
    "command_name",
    "hash_tag",
    "key_positions",
    "key_slot",
    "slot_table",
]
