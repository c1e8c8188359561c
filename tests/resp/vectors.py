"""Shared RESP test vectors: wire bytes and the value both readers must return."""

from __future__ import annotations

import math
from typing import NamedTuple

from triopipe._exceptions import MovedError, ResponseError, WrongTypeError
from triopipe._resp import Push


class Vector(NamedTuple):
    name: str
    wire: bytes
    expected: object
    decode: bool = False


BIG_BINARY = bytes(range(256)) * 40 + b"\r\n\r\n*1\r\n"

VECTORS: list[Vector] = [
    Vector("simple", b"+OK\r\n", b"OK"),
    Vector("simple-empty", b"+\r\n", b""),
    Vector("simple-decoded", b"+OK\r\n", "OK", decode=True),
    Vector("integer", b":42\r\n", 42),
    Vector("integer-zero", b":0\r\n", 0),
    Vector("integer-negative", b":-7\r\n", -7),
    Vector("integer-int64-max", b":9223372036854775807\r\n", 2**63 - 1),
    Vector("integer-int64-min", b":-9223372036854775808\r\n", -(2**63)),
    Vector("bulk", b"$5\r\nhello\r\n", b"hello"),
    Vector("bulk-empty", b"$0\r\n\r\n", b""),
    Vector("bulk-empty-decoded", b"$0\r\n\r\n", "", decode=True),
    Vector("bulk-binary-crlf-inside", b"$6\r\na\r\n\x00\xffz\r\n", b"a\r\n\x00\xffz"),
    Vector("bulk-large-binary", b"$%d\r\n%s\r\n" % (len(BIG_BINARY), BIG_BINARY), BIG_BINARY),
    Vector(
        "bulk-unicode-decoded",
        "$10\r\nh\u00e9\u2603\U0001f600\r\n".encode(),
        "h\u00e9\u2603\U0001f600",
        decode=True,
    ),
    Vector("bulk-unicode-raw", "$3\r\n\u2603\r\n".encode(), "\u2603".encode()),
    Vector("null-bulk", b"$-1\r\n", None),
    Vector("null-array", b"*-1\r\n", None),
    Vector("null-resp3", b"_\r\n", None),
    Vector("array-empty", b"*0\r\n", []),
    Vector("array", b"*3\r\n:1\r\n$1\r\na\r\n+b\r\n", [1, b"a", b"b"]),
    Vector("array-with-nulls", b"*3\r\n$-1\r\n*-1\r\n_\r\n", [None, None, None]),
    Vector(
        "array-nested",
        b"*2\r\n*2\r\n:1\r\n*0\r\n*1\r\n*1\r\n$3\r\nabc\r\n",
        [[1, []], [[b"abc"]]],
    ),
    Vector("array-decoded", b"*2\r\n$1\r\na\r\n+b\r\n", ["a", "b"], decode=True),
    Vector("map-empty", b"%0\r\n", {}),
    Vector(
        "map",
        b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n*2\r\n:2\r\n:3\r\n",
        {b"first": 1, b"second": [2, 3]},
    ),
    Vector(
        "map-nested-decoded",
        b"%1\r\n$5\r\nouter\r\n%1\r\n+inner\r\n#t\r\n",
        {"outer": {"inner": True}},
        decode=True,
    ),
    Vector("map-integer-keys", b"%2\r\n:1\r\n+a\r\n:2\r\n_\r\n", {1: b"a", 2: None}),
    Vector("set", b"~3\r\n:1\r\n:2\r\n:3\r\n", [1, 2, 3]),
    Vector("set-empty", b"~0\r\n", []),
    Vector("double", b",1.5\r\n", 1.5),
    Vector("double-negative-exponent", b",-2.5e-3\r\n", -0.0025),
    Vector("double-integral", b",10\r\n", 10.0),
    Vector("double-inf", b",inf\r\n", math.inf),
    Vector("double-minus-inf", b",-inf\r\n", -math.inf),
    Vector("double-nan", b",nan\r\n", math.nan),
    Vector("boolean-true", b"#t\r\n", True),
    Vector("boolean-false", b"#f\r\n", False),
    Vector("booleans-in-array", b"*2\r\n#f\r\n#t\r\n", [False, True]),
    Vector(
        "big-number",
        b"(3492890328409238509324850943850943825024385\r\n",
        b"3492890328409238509324850943850943825024385",
    ),
    Vector(
        "big-number-negative-decoded",
        b"(-12345678901234567890\r\n",
        "-12345678901234567890",
        decode=True,
    ),
    Vector("verbatim", b"=15\r\ntxt:Some string\r\n", b"Some string"),
    Vector(
        "verbatim-decoded",
        "=10\r\nmkd:\u00e9\u00e9\u00e9\r\n".encode(),
        "\u00e9\u00e9\u00e9",
        decode=True,
    ),
    Vector("verbatim-empty", b"=4\r\ntxt:\r\n", b""),
    Vector(
        "error", b"-ERR unknown command 'FOO'\r\n", ResponseError("ERR", "unknown command 'FOO'")
    ),
    Vector("error-code-only", b"-ERR\r\n", ResponseError("ERR", "")),
    Vector(
        "error-wrongtype",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        WrongTypeError("WRONGTYPE", "Operation against a key holding the wrong kind of value"),
    ),
    Vector(
        "error-moved",
        b"-MOVED 3999 127.0.0.1:6381\r\n",
        MovedError("MOVED", "3999 127.0.0.1:6381"),
    ),
    Vector(
        "error-decoded",
        b"-ERR bad\r\n",
        ResponseError("ERR", "bad"),
        decode=True,
    ),
    Vector(
        "error-invalid-utf8-replaced",
        b"-ERR \xff\r\n",
        ResponseError("ERR", "\ufffd"),
        decode=True,
    ),
    Vector(
        "exec-reply-with-nested-error",
        b"*3\r\n+OK\r\n-WRONGTYPE Operation against a key\r\n:7\r\n",
        [b"OK", WrongTypeError("WRONGTYPE", "Operation against a key"), 7],
    ),
    Vector(
        "error-deep-in-map",
        b"%1\r\n+k\r\n*1\r\n-ERR deep\r\n",
        {b"k": [ResponseError("ERR", "deep")]},
    ),
    Vector(
        "push-message",
        b">3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n",
        Push([b"message", b"chan", b"hello"]),
    ),
    Vector(
        "push-invalidate-decoded",
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n",
        Push(["invalidate", ["key"]]),
        decode=True,
    ),
]

# Vectors that only the pure reader reads as the contract says; see the
# comments in triopipe/_resp/_pyreader.py for what hiredis does instead.
PURE_ONLY_VECTORS: list[Vector] = [
    Vector(
        "blob-error",
        b"!21\r\nSYNTAX invalid syntax\r\n",
        ResponseError("SYNTAX", "invalid syntax"),
    ),
    Vector("attribute-top-level", b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n:5\r\n", 5),
    Vector("attribute-in-array", b"*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n", [1, 2]),
    Vector("attribute-empty", b"|0\r\n+OK\r\n", b"OK"),
]


def assert_same(actual: object, expected: object) -> None:
    """Assert equal values of exactly the same types, all the way down (NaN == NaN)."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float)
        assert math.isnan(actual)
    elif isinstance(expected, list):
        assert isinstance(actual, list)
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict)
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    else:
        assert actual == expected
