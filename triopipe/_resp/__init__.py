"""Sans-io RESP: command encoding and reply reading, no I/O at all.

The connection layer encodes commands with :func:`encode_command` /
:func:`encode_commands` and reads replies with a :class:`Reader` from
:func:`make_reader`. hiredis does the work when installed; the pure-Python
twins produce and accept exactly the same bytes and values.
"""

from __future__ import annotations

from ._encode import HAVE_HIREDIS as HAVE_HIREDIS
from ._encode import Arg as Arg
from ._encode import encode_alike as encode_alike
from ._encode import encode_command as encode_command
from ._encode import encode_commands as encode_commands
from ._encode import encode_each as encode_each
from ._encode import encode_requests as encode_requests
from ._encode import group_requests as group_requests
from ._encode import python_encode_command as python_encode_command
from ._pyreader import NEED_DATA as NEED_DATA
from ._pyreader import Push as Push
from ._pyreader import PythonReader as PythonReader
from ._read import HiredisReader as HiredisReader
from ._read import Reader as Reader
from ._read import make_reader as make_reader

__all__ = [
    "HAVE_HIREDIS",
    "NEED_DATA",
    "Arg",
    "HiredisReader",
    "Push",
    "PythonReader",
    "Reader",
    "encode_alike",
    "encode_command",
    "encode_commands",
    "encode_each",
    "encode_requests",
    "group_requests",
    "make_reader",
    "python_encode_command",
]
