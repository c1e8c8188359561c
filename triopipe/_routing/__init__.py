"""Pure routing knowledge: which connection or server a command needs.

No I/O here: the facades ask, the connections act.
"""

from __future__ import annotations

from ._commands import CommandKind as CommandKind
from ._commands import check_pipelinable as check_pipelinable
from ._commands import command_kind as command_kind
from ._commands import command_name as command_name

__all__ = ["CommandKind", "check_pipelinable", "command_kind", "command_name"]
