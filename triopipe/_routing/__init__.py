"""Pure routing knowledge: which connection or server a command needs.

No I/O here: the facades ask, the connections act. Every command's class,
key specs and cluster policies come from the generated table in
:mod:`._keyspecs`; commands the table lacks are learned from the server
(:func:`learn_command`).
"""

from __future__ import annotations

from ._commands import CommandClass as CommandClass
from ._commands import CommandKind as CommandKind
from ._commands import CommandNotAllowedError as CommandNotAllowedError
from ._commands import UnknownCommandClassError as UnknownCommandClassError
from ._commands import Where as Where
from ._commands import check_commands as check_commands
from ._commands import check_pipelinable as check_pipelinable
from ._commands import class_from_info as class_from_info
from ._commands import command_class as command_class
from ._commands import command_kind as command_kind
from ._commands import command_name as command_name
from ._commands import forget_learned_commands as forget_learned_commands
from ._commands import learn_command as learn_command
from ._commands import refusal as refusal
from ._commands import unknown_commands as unknown_commands
from ._keys import SLOTS as SLOTS
from ._keys import UnknownCommandError as UnknownCommandError
from ._keys import hash_tag as hash_tag
from ._keys import key_positions as key_positions
from ._keys import key_slot as key_slot
from ._keys import needs_getkeys as needs_getkeys
from ._keys import positions_from_getkeys as positions_from_getkeys
from ._keys import request_policy as request_policy
from ._keys import response_policy as response_policy
from ._shards import AnyServer as AnyServer
from ._shards import Broadcast as Broadcast
from ._shards import Route as Route
from ._shards import Router as Router
from ._shards import ShardRouter as ShardRouter
from ._shards import SlotRouter as SlotRouter
from ._shards import Split as Split
from ._shards import slot_table as slot_table

__all__ = [
    "SLOTS",
    "AnyServer",
    "Broadcast",
    "CommandClass",
    "CommandKind",
    "CommandNotAllowedError",
    "Route",
    "Router",
    "ShardRouter",
    "SlotRouter",
    "Split",
    "UnknownCommandClassError",
    "UnknownCommandError",
    "Where",
    "check_commands",
    "check_pipelinable",
    "class_from_info",
    "command_class",
    "command_kind",
    "command_name",
    "forget_learned_commands",
    "hash_tag",
    "key_positions",
    "key_slot",
    "learn_command",
    "needs_getkeys",
    "positions_from_getkeys",
    "refusal",
    "request_policy",
    "response_policy",
    "slot_table",
    "unknown_commands",
]
