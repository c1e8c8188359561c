"""Command encoding: literal vectors for both encoders, and agreement with hiredis."""

from __future__ import annotations

import enum
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triopipe._resp import (
    HAVE_HIREDIS,
    Arg,
    encode_alike,
    encode_command,
    encode_commands,
    encode_each,
    encode_requests,
    python_encode_command,
)

Encoder = Callable[[Sequence[Arg]], bytes]


def hiredis_pack(args: tuple[object, ...]) -> bytes:
    import hiredis

    # The stub types the argument as a 1-tuple.
    return cast("bytes", hiredis.pack_command(args))  # type: ignore[arg-type]


ENCODERS = [
    pytest.param(encode_command, id="encode_command"),
    pytest.param(python_encode_command, id="python"),
]


class Color(enum.IntEnum):
    RED = 5


ENCODE_VECTORS: list[tuple[str, tuple[Arg, ...], bytes]] = [
    ("ping", ("PING",), b"*1\r\n$4\r\nPING\r\n"),
    ("set", ("SET", "key", "value"), b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"),
    (
        "bytes-binary",
        ("SET", b"k", b"\r\n\x00"),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\r\n\x00\r\n",
    ),
    ("empty-arg", ("SET", b"", ""), b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n"),
    ("unicode", ("SET", "caf\u00e9"), b"*2\r\n$3\r\nSET\r\n$5\r\ncaf\xc3\xa9\r\n"),
    ("int", ("INCRBY", "k", 42), b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$2\r\n42\r\n"),
    ("int-negative", ("X", -7), b"*2\r\n$1\r\nX\r\n$2\r\n-7\r\n"),
    ("int-big", ("X", 2**70), b"*2\r\n$1\r\nX\r\n$22\r\n1180591620717411303424\r\n"),
    ("float", ("X", 1.5), b"*2\r\n$1\r\nX\r\n$3\r\n1.5\r\n"),
    ("float-integral", ("X", 2.0), b"*2\r\n$1\r\nX\r\n$3\r\n2.0\r\n"),
    ("float-exponent", ("X", 1e16), b"*2\r\n$1\r\nX\r\n$5\r\n1e+16\r\n"),
    ("float-small", ("X", 1e-7), b"*2\r\n$1\r\nX\r\n$5\r\n1e-07\r\n"),
    (
        "float-inf",
        ("X", float("inf"), float("-inf")),
        b"*3\r\n$1\r\nX\r\n$3\r\ninf\r\n$4\r\n-inf\r\n",
    ),
    ("bytearray", ("X", bytearray(b"ab")), b"*2\r\n$1\r\nX\r\n$2\r\nab\r\n"),
    ("memoryview", ("X", memoryview(b"abc")[1:]), b"*2\r\n$1\r\nX\r\n$2\r\nbc\r\n"),
    ("int-enum", ("X", Color.RED), b"*2\r\n$1\r\nX\r\n$1\r\n5\r\n"),
]


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize(
    ("args", "expected"), [v[1:] for v in ENCODE_VECTORS], ids=[v[0] for v in ENCODE_VECTORS]
)
def test_encode_vectors(encoder: Encoder, args: tuple[Arg, ...], expected: bytes) -> None:
    assert encoder(args) == expected
    assert encoder(list(args)) == expected


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("bad", [True, False])
def test_bool_rejected(encoder: Encoder, bad: bool) -> None:
    with pytest.raises(TypeError, match="bool"):
        encoder(("SET", "k", bad))


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize(
    "bad", [None, [1], {"a": 1}, object(), 1j], ids=["None", "list", "dict", "object", "complex"]
)
def test_unsupported_type_rejected(encoder: Encoder, bad: object) -> None:
    with pytest.raises(TypeError, match=type(bad).__name__):
        encoder(("SET", "k", bad))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "encoder", [*ENCODERS, pytest.param(lambda c: encode_commands([c]), id="encode_commands")]
)
def test_empty_command_rejected(encoder: Encoder) -> None:
    with pytest.raises(ValueError, match="empty"):
        encoder(())


def test_encode_commands_concatenates() -> None:
    commands: list[Sequence[Arg]] = [("SET", f"k{i}", i) for i in range(1000)]
    expected = b"".join(python_encode_command(c) for c in commands)
    assert encode_commands(commands) == expected
    assert encode_commands(iter(commands)) == expected
    assert encode_commands([]) == b""


def test_encode_commands_mixed_slow_path() -> None:
    # Lists, bytearrays and enums leave hiredis's fast path; order is kept.
    commands: list[Sequence[Arg]] = [("A", 1), ["B", bytearray(b"x")], ("C", Color.RED)]
    assert encode_commands(commands) == b"".join(python_encode_command(c) for c in commands)
    with pytest.raises(TypeError, match="bool"):
        encode_commands([("A", 1), ("B", True)])
    with pytest.raises(ValueError, match="empty"):
        encode_commands([("A", 1), ()])


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
@pytest.mark.parametrize(
    "big",
    [
        pytest.param(os.urandom(64 * 1024 + 1), id="bytes"),
        pytest.param(bytearray(os.urandom(300_000)), id="bytearray"),
        pytest.param(memoryview(os.urandom(1024 * 1024)), id="memoryview"),
        pytest.param("é" * 40_000, id="str"),
    ],
)
def test_big_arguments_take_the_python_encoder_with_the_same_bytes(big: Arg) -> None:
    # Past 64 KiB the encoders hand the command to python_encode_command,
    # which packs big values far faster than hiredis; the bytes are the same.
    small: tuple[Arg, ...] = ("SET", "small", "v")
    command: tuple[Arg, ...] = ("SET", "big", big, "EX", 10)
    expected = python_encode_command(command)
    if isinstance(big, (bytes, str)):  # hiredis refuses bytearray and memoryview
        assert expected == hiredis_pack(command)
    assert encode_command(command) == expected
    # A window whose first command is big, another whose first is small.
    packed_small = hiredis_pack(small)
    assert encode_commands([command, small]) == expected + packed_small
    assert encode_commands([small, command]) == packed_small + expected
    assert encode_each([command, small, command]) == [expected, packed_small, expected]
    with pytest.raises(TypeError, match="bool"):
        encode_commands([command, ("SET", "k", True)])


args_strategy = st.lists(
    st.binary(max_size=30)
    | st.text(max_size=30)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True),
    min_size=1,
    max_size=8,
)


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
@settings(max_examples=500, deadline=None)
@given(args_strategy)
def test_python_encoder_matches_hiredis(args: list[Arg]) -> None:
    assert python_encode_command(args) == hiredis_pack(tuple(args))
    assert encode_command(args) == hiredis_pack(tuple(args))


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_hiredis_rejects_bool_itself() -> None:
    # encode_command relies on this instead of checking every argument.
    with pytest.raises(TypeError):
        hiredis_pack(("SET", "k", True))


def test_pure_python_environment_variable() -> None:
    root = Path(__file__).resolve().parents[2]
    code = (
        "from triopipe._resp import _encode, make_reader, PythonReader; "
        "assert not _encode.USE_HIREDIS and _encode._pack is None; "
        "assert isinstance(make_reader(), PythonReader); "
        "print(_encode.encode_command(('PING',)))"
    )
    env = {**os.environ, "TRIOPIPE_PURE_PYTHON": "1", "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(b"*1\r\n$4\r\nPING\r\n")


# -- windows of one shape: encode_alike ---------------------------------------------------------

bytes_argument = st.binary(max_size=40) | st.binary(min_size=1000, max_size=1100)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5).flatmap(lambda arity: st.lists(
    st.tuples(*[bytes_argument] * arity), min_size=1, max_size=30)))  # fmt: skip
def test_a_window_of_one_shape_encodes_to_the_same_bytes(window: list[tuple[bytes, ...]]) -> None:
    expected = b"".join(map(python_encode_command, window))
    encoded = encode_alike(window)  # type: ignore[arg-type]
    # None only for an argument of 1 KiB or more; else the same bytes.
    if any(len(argument) >= 1024 for command in window for argument in command):
        assert encoded is None
    else:
        assert encoded == expected
    assert encode_requests(window) == [(expected, len(window))]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "window",
    [
        [(b"SET", b"a", b"1"), (b"GET", b"a")],  # lengths differ
        [(b"SET", b"a", "1")],  # a str
        [(b"SET", b"a", 1)],  # an int
        [(b"SET", b"a", memoryview(b"abcd")[::2])],  # a strided view: hiredis would misread it
        [(b"SET", b"a", bytearray(b"1"))],
        [()],
    ],
)
def test_other_windows_are_left_to_the_command_by_command_path(
    window: list[tuple[Arg, ...]],
) -> None:
    assert encode_alike(window) is None
    if window[0]:
        assert encode_requests(window) == [
            (b"".join(map(python_encode_command, window)), len(window))
        ]
