"""Reply readers: every vector through both implementations, fed every way."""

from __future__ import annotations

import math
import pickle
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triopipe._exceptions import MovedError, ProtocolError, ResponseError
from triopipe._resp import (
    HAVE_HIREDIS,
    NEED_DATA,
    HiredisReader,
    Push,
    PythonReader,
    Reader,
    make_reader,
)
from triopipe._resp._encode import USE_HIREDIS

from .vectors import PURE_ONLY_VECTORS, VECTORS, Vector, assert_same

IMPLEMENTATIONS = [
    "python",
    pytest.param("hiredis", marks=pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")),
]

MakeReader = Callable[..., Reader]


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(implementation: str) -> MakeReader:
    def factory(**kwargs: Any) -> Reader:
        return make_reader(implementation=implementation, **kwargs)

    return factory


def drain(reader: Reader) -> list[object]:
    replies = []
    while (reply := reader.next_reply()) is not NEED_DATA:
        replies.append(reply)
    return replies


def split_feeds(wire: bytes) -> Iterator[list[bytes]]:
    """Every way of feeding tested: whole, byte by byte, split in two at each position."""
    yield [wire]
    yield [wire[i : i + 1] for i in range(len(wire))]
    for i in range(1, len(wire)):
        yield [wire[:i], wire[i:]]


def ids(vectors: list[Vector]) -> list[str]:
    return [v.name for v in vectors]


# --- vectors ---------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_vector_whole(make: MakeReader, vector: Vector) -> None:
    reader = make(decode=vector.decode)
    assert reader.next_reply() is NEED_DATA
    reader.feed(vector.wire)
    assert_same(reader.next_reply(), vector.expected)
    assert reader.next_reply() is NEED_DATA


# Splitting at every pair of positions is quadratic: large vectors are fed
# byte by byte instead (test_large_bulk_byte_by_byte).
SPLITTABLE = [vector for vector in VECTORS if len(vector.wire) <= 200]


@pytest.mark.parametrize("vector", SPLITTABLE, ids=ids(SPLITTABLE))
def test_vector_split_every_way(make: MakeReader, vector: Vector) -> None:
    for feeds in split_feeds(vector.wire):
        reader = make(decode=vector.decode)
        replies = []
        for chunk in feeds:
            reader.feed(chunk)
            replies.extend(drain(reader))
        assert len(replies) == 1, feeds
        assert_same(replies[0], vector.expected)


@pytest.mark.parametrize("vector", SPLITTABLE, ids=ids(SPLITTABLE))
def test_vector_read_replies_split_every_way(make: MakeReader, vector: Vector) -> None:
    for feeds in split_feeds(vector.wire):
        reader = make(decode=vector.decode)
        replies = [reply for chunk in feeds for reply in reader.read_replies(chunk)]
        assert len(replies) == 1, feeds
        assert_same(replies[0], vector.expected)


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_vector_with_trailing_reply(make: MakeReader, vector: Vector) -> None:
    # The next reply's bytes (or part of them) arrive with this one.
    follow = b"*2\r\n$4\r\nnext\r\n:1\r\n"
    follow_value = ["next", 1] if vector.decode else [b"next", 1]
    wire = vector.wire + follow
    reader = make(decode=vector.decode)
    reader.feed(wire[: len(vector.wire) + 7])
    assert_same(reader.next_reply(), vector.expected)
    assert reader.next_reply() is NEED_DATA
    reader.feed(wire[len(vector.wire) + 7 :])
    assert_same(reader.next_reply(), follow_value)
    assert reader.next_reply() is NEED_DATA

    reader = make(decode=vector.decode)
    replies = reader.read_replies(vector.wire * 3 + follow)
    assert len(replies) == 4
    for reply in replies[:3]:
        assert_same(reply, vector.expected)
    assert_same(replies[3], follow_value)


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_vector_input_types(make: MakeReader, vector: Vector) -> None:
    for data in (bytearray(vector.wire), memoryview(vector.wire)):
        reader = make(decode=vector.decode)
        replies = reader.read_replies(data)
        assert len(replies) == 1
        assert_same(replies[0], vector.expected)


def test_all_vectors_back_to_back(make: MakeReader) -> None:
    for decode in (False, True):
        chosen = [v for v in VECTORS if v.decode == decode]
        wire = b"".join(v.wire for v in chosen)
        reader = make(decode=decode)
        replies = []
        for i in range(0, len(wire), 7):
            replies.extend(reader.read_replies(wire[i : i + 7]))
        assert len(replies) == len(chosen)
        for reply, vector in zip(replies, chosen, strict=True):
            assert_same(reply, vector.expected)


@pytest.mark.parametrize("vector", PURE_ONLY_VECTORS, ids=ids(PURE_ONLY_VECTORS))
def test_pure_only_vector(vector: Vector) -> None:
    for feeds in split_feeds(vector.wire):
        reader = PythonReader(decode=vector.decode)
        replies = [reply for chunk in feeds for reply in reader.read_replies(chunk)]
        assert len(replies) == 1
        assert_same(replies[0], vector.expected)


def test_moved_error_fields(make: MakeReader) -> None:
    (reply,) = make().read_replies(b"-MOVED 3999 127.0.0.1:6381\r\n")
    assert isinstance(reply, MovedError)
    assert (reply.slot, reply.host, reply.port) == (3999, "127.0.0.1", 6381)


def test_error_replies_are_returned_not_raised(make: MakeReader) -> None:
    reader = make()
    reader.feed(b"-ERR one\r\n:1\r\n")
    assert isinstance(reader.next_reply(), ResponseError)
    assert reader.next_reply() == 1


def test_push_is_not_a_plain_list(make: MakeReader) -> None:
    reply, other = make().read_replies(b">1\r\n:1\r\n*1\r\n:1\r\n")
    assert type(reply) is Push
    assert type(other) is list
    assert repr(reply) == "Push([1])"


def test_need_data_sentinel() -> None:
    assert repr(NEED_DATA) == "NEED_DATA"
    assert pickle.loads(pickle.dumps(NEED_DATA)) is NEED_DATA
    assert NEED_DATA is not None


def test_large_bulk_byte_by_byte(make: MakeReader) -> None:
    # Linear in the size: a quadratic reader would take hours here.
    payload = bytes(range(256)) * 2048  # 512 KiB
    wire = b"*2\r\n$%d\r\n%s\r\n+%s\r\n" % (len(payload), payload, b"x" * 100_000)
    reader = make()
    replies = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        if (reply := reader.next_reply()) is not NEED_DATA:
            replies.append(reply)
    assert replies == [[payload, b"x" * 100_000]]


def test_many_replies_in_one_read(make: MakeReader) -> None:
    replies = make().read_replies(b":1\r\n" * 10_000 + b"$3\r\nabc")
    assert replies == [1] * 10_000


def test_a_read_of_many_large_replies(make: MakeReader) -> None:
    """A 290 KiB read, which hiredis is fed in pieces: every reply whole and in order.

    The replies straddle every piece's boundary; the last is cut by the end of
    the read and completed by the next one.
    """
    values = [bytes([i]) * (4096 + i) for i in range(70)]
    wire = b"".join(b"$%d\r\n%s\r\n" % (len(value), value) for value in values)
    cut = len(wire) - 100
    reader = make()
    assert reader.read_replies(memoryview(wire)[:cut]) == values[:-1]
    assert reader.read_replies(wire[cut:]) == values[-1:]
    assert not reader.has_partial()


def test_a_large_read_keeps_pushes_and_decode_errors_in_place(make: MakeReader) -> None:
    filler = b"$20000\r\n" + b"a" * 20_000 + b"\r\n"
    push = b">2\r\n$7\r\nmessage\r\n:1\r\n"
    wire = filler + push + filler + b"$2\r\n\xff\xfe\r\n" + filler
    replies = make(decode=True).read_replies(wire)
    assert [type(reply) for reply in replies] == [str, Push, str, UnicodeDecodeError, str]
    assert replies[1] == Push(["message", 1])
    assert replies[0] == replies[2] == replies[4] == "a" * 20_000


# --- decode errors ---------------------------------------------------------

BAD_UTF8 = [
    pytest.param(b"$2\r\n\xff\xfe\r\n", id="bulk"),
    pytest.param(b"+\xff\r\n", id="simple"),
    pytest.param(b"*2\r\n$2\r\n\xff\xfe\r\n:1\r\n", id="in-array"),
    pytest.param(b"*2\r\n*1\r\n$1\r\n\xff\r\n$2\r\n\xfe\xfe\r\n", id="nested-twice"),
    pytest.param(b"%1\r\n$1\r\n\xff\r\n:1\r\n", id="map-key"),
    pytest.param(b"=5\r\ntxt:\xff\r\n", id="verbatim"),
]


@pytest.mark.parametrize("wire", BAD_UTF8)
def test_invalid_utf8_consumed_then_raised_once(make: MakeReader, wire: bytes) -> None:
    for feeds in split_feeds(wire + b":7\r\n"):
        reader = make(decode=True)
        outcomes: list[object] = []
        for chunk in feeds:
            reader.feed(chunk)
            while True:
                try:
                    reply = reader.next_reply()
                except UnicodeDecodeError as exc:
                    outcomes.append(exc)
                    continue
                if reply is NEED_DATA:
                    break
                outcomes.append(reply)
        assert len(outcomes) == 2
        assert isinstance(outcomes[0], UnicodeDecodeError)
        assert outcomes[1] == 7


@pytest.mark.parametrize("wire", BAD_UTF8)
def test_invalid_utf8_in_read_replies_is_a_value(make: MakeReader, wire: bytes) -> None:
    replies = make(decode=True).read_replies(b":1\r\n" + wire + b":7\r\n")
    assert len(replies) == 3
    assert replies[0] == 1
    assert isinstance(replies[1], UnicodeDecodeError)
    assert replies[2] == 7


def test_invalid_utf8_is_fine_without_decode(make: MakeReader) -> None:
    assert make().read_replies(b"$2\r\n\xff\xfe\r\n") == [b"\xff\xfe"]


# --- malformed input -------------------------------------------------------

MALFORMED = [
    pytest.param(b"?\r\n", id="unknown-type"),
    pytest.param(b"\r\n", id="empty-line"),
    pytest.param(b"$abc\r\n", id="bulk-length-text"),
    pytest.param(b"$\r\n", id="bulk-length-empty"),
    pytest.param(b"$+1\r\na\r\n", id="bulk-length-plus"),
    pytest.param(b"$01\r\na\r\n", id="bulk-length-leading-zero"),
    pytest.param(b"$-2\r\n", id="bulk-length-negative"),
    pytest.param(b"*-2\r\n", id="array-length-negative"),
    pytest.param(b"%-2\r\n", id="map-length-negative"),
    pytest.param(b"*1.5\r\n", id="array-length-float"),
    pytest.param(b":abc\r\n", id="integer-text"),
    pytest.param(b": 5\r\n", id="integer-space"),
    pytest.param(b":1_0\r\n", id="integer-underscore"),
    pytest.param(b":9223372036854775808\r\n", id="integer-over-int64"),
    pytest.param(b",abc\r\n", id="double-text"),
    pytest.param(b",1e400\r\n", id="double-overflow"),
    pytest.param(b",+1\r\n", id="double-plus"),
    pytest.param(b"#x\r\n", id="boolean"),
    pytest.param(b"_x\r\n", id="null-with-data"),
    pytest.param(b"(12a\r\n", id="big-number"),
    pytest.param(b"+a\rb\r\n", id="simple-with-cr"),
    pytest.param(b"=3\r\ntxt\r\n", id="verbatim-short"),
    pytest.param(b"*2\r\n:1\r\n?\r\n", id="unknown-type-nested"),
    pytest.param(b"%1\r\n*1\r\n:1\r\n:2\r\n", id="map-unhashable-key"),
]


@pytest.mark.parametrize("wire", MALFORMED)
def test_malformed_raises_and_poisons(make: MakeReader, wire: bytes) -> None:
    reader = make()
    reader.feed(b":1\r\n" + wire)
    assert reader.next_reply() == 1
    with pytest.raises(ProtocolError):
        reader.next_reply()
    # Poisoned: valid bytes afterwards do not revive it.
    reader.feed(b":2\r\n")
    for _ in range(3):
        with pytest.raises(ProtocolError):
            reader.next_reply()
        with pytest.raises(ProtocolError):
            reader.read_replies(b":3\r\n")


@pytest.mark.parametrize("wire", MALFORMED)
def test_malformed_byte_by_byte(make: MakeReader, wire: bytes) -> None:
    reader = make()
    with pytest.raises(ProtocolError):
        for i in range(len(wire)):
            reader.read_replies(wire[i : i + 1])


def test_bulk_not_followed_by_crlf_pure() -> None:
    reader = PythonReader()
    with pytest.raises(ProtocolError):
        reader.read_replies(b"$1\r\nab\r\n")


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_bulk_not_followed_by_crlf_hiredis() -> None:
    # hiredis skips the two bytes after a bulk body without looking at them;
    # the stream still fails, one element later.
    reader = HiredisReader()
    reader.feed(b"$1\r\nab\r\n")
    assert reader.next_reply() == b"a"
    with pytest.raises(ProtocolError):
        reader.next_reply()


def test_bulk_over_limit_pure_rejected_from_header() -> None:
    reader = PythonReader(max_bulk_length=10)
    assert reader.read_replies(b"$10\r\n0123456789\r\n") == [b"0123456789"]
    with pytest.raises(ProtocolError, match="max_bulk_length"):
        reader.read_replies(b"$11\r\n")


def test_bulk_over_default_limit_rejected_from_header() -> None:
    # 2 GiB declared, nothing of it sent: refused at once, nothing allocated.
    tracemalloc.start()
    try:
        reader = PythonReader()
        with pytest.raises(ProtocolError):
            reader.read_replies(b"$2147483648\r\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_bulk_over_limit_hiredis_rejected_once_buffered() -> None:
    # hiredis has no header hook: the limit trips on its buffer size.
    reader = HiredisReader(max_bulk_length=10)
    assert reader.read_replies(b"$200000\r\n") == []
    with pytest.raises(ProtocolError, match="max_bulk_length"):
        reader.read_replies(b"x" * 100_000)
    with pytest.raises(ProtocolError):
        reader.read_replies(b":1\r\n")


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_bulk_over_limit_hiredis_rejected_within_one_large_read() -> None:
    reader = HiredisReader(max_bulk_length=10)
    with pytest.raises(ProtocolError, match="max_bulk_length"):
        reader.read_replies(b":1\r\n$200000\r\n" + b"x" * 150_000)


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_bulk_2gib_header_hiredis_waits_without_allocating() -> None:
    reader = HiredisReader()
    assert reader.read_replies(b"$2147483648\r\n") == []


def test_line_over_limit_pure() -> None:
    reader = PythonReader(max_bulk_length=100)
    with pytest.raises(ProtocolError):
        reader.read_replies(b"+" + b"x" * 200)


def test_huge_array_header_pure_allocates_nothing() -> None:
    tracemalloc.start()
    try:
        # Refused at the header: no element count that large fits in
        # max_bulk_length bytes; nothing is allocated for it.
        for header in (b"*3333333333\r\n:1\r\n", b"%3333333333\r\n:1\r\n"):
            with pytest.raises(ProtocolError, match="max_bulk_length"):
                PythonReader().read_replies(header)
        assert PythonReader().read_replies(b"*100000000\r\n:1\r\n") == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_huge_array_header_hiredis_is_protocol_error() -> None:
    # hiredis pre-allocates from the header; the MemoryError becomes a
    # ProtocolError and the reader stays poisoned.
    reader = HiredisReader()
    with pytest.raises(ProtocolError):
        reader.read_replies(b"*3333333333\r\n")
    with pytest.raises(ProtocolError):
        reader.read_replies(b":1\r\n")


def test_depth_limit_pure() -> None:
    reader = PythonReader(max_depth=3)
    assert reader.read_replies(b"*1\r\n*1\r\n*1\r\n:1\r\n") == [[[[1]]]]
    assert reader.read_replies(b"*1\r\n*1\r\n*1\r\n*0\r\n") == [[[[[]]]]]
    with pytest.raises(ProtocolError, match="max_depth"):
        reader.read_replies(b"*1\r\n*1\r\n%1\r\n*1\r\n")


def test_depth_default_pure() -> None:
    assert PythonReader().read_replies(b"*1\r\n" * 64 + b":1\r\n") != []
    with pytest.raises(ProtocolError):
        PythonReader().read_replies(b"*1\r\n" * 65 + b":1\r\n")


def test_deep_nesting_is_not_recursion(make: MakeReader) -> None:
    # Far deeper than the interpreter's recursion limit, with the pure
    # reader's cap lifted: a value or a ProtocolError, never RecursionError.
    depth = sys.getrecursionlimit() * 10
    try:
        replies = make(max_depth=depth).read_replies(b"*1\r\n" * depth + b":1\r\n")
    except ProtocolError:
        return
    assert len(replies) == 1


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_depth_hiredis_has_its_own_cap() -> None:
    # max_depth is not enforced by HiredisReader; hiredis allows 1024 levels.
    assert HiredisReader(max_depth=3).read_replies(b"*1\r\n" * 1024 + b":1\r\n") != []
    with pytest.raises(ProtocolError):
        HiredisReader().read_replies(b"*1\r\n" * 1025 + b":1\r\n")


def test_deep_nesting_pure_within_limit() -> None:
    depth = sys.getrecursionlimit() * 2
    (reply,) = PythonReader(max_depth=depth).read_replies(b"*1\r\n" * depth + b":1\r\n")
    for _ in range(depth):
        assert isinstance(reply, list)
        (reply,) = reply
    assert reply == 1


# --- hiredis quirks the pure reader does not copy --------------------------


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_hiredis_rejects_blob_error() -> None:
    with pytest.raises(ProtocolError):
        HiredisReader().read_replies(b"!3\r\nERR\r\n")


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
def test_hiredis_returns_attributes_as_replies() -> None:
    assert HiredisReader().read_replies(b"|1\r\n+ttl\r\n:3600\r\n:5\r\n") == [[b"ttl", 3600], 5]


# --- factory ---------------------------------------------------------------


def test_make_reader_choices() -> None:
    assert isinstance(make_reader(implementation="python"), PythonReader)
    if HAVE_HIREDIS:
        assert isinstance(make_reader(implementation="hiredis"), HiredisReader)
        assert isinstance(make_reader(), HiredisReader if USE_HIREDIS else PythonReader)
    with pytest.raises(ValueError, match="implementation"):
        make_reader(implementation="rust")


# --- property: random values round-trip through both readers ---------------


def serialize(value: object) -> bytes:
    """Test-only RESP3 serializer."""
    if value is None:
        return b"_\r\n"
    if isinstance(value, bool):
        return b"#t\r\n" if value else b"#f\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, float):
        text = repr(value).encode() if math.isfinite(value) else str(value).encode()
        return b",%s\r\n" % text
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(serialize(v) for v in value)
    if isinstance(value, dict):
        return b"%%%d\r\n" % len(value) + b"".join(
            serialize(k) + serialize(v) for k, v in value.items()
        )
    raise AssertionError(value)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=40)
)
keys = st.binary(max_size=10) | st.integers(min_value=-(2**63), max_value=2**63 - 1)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=4), st.data())
def test_random_values_round_trip(replies: list[object], data: st.DataObject) -> None:
    wire = b"".join(serialize(value) for value in replies)
    cut = data.draw(st.integers(min_value=0, max_value=len(wire)))
    readers: list[Reader] = [PythonReader()]
    if HAVE_HIREDIS:
        readers.append(HiredisReader())
    for reader in readers:
        got = reader.read_replies(wire[:cut]) + reader.read_replies(wire[cut:])
        assert len(got) == len(replies)
        for reply, value in zip(got, replies, strict=True):
            assert_same(reply, value)


# --- property: scalar grammars agree with hiredis --------------------------


@pytest.mark.skipif(not HAVE_HIREDIS, reason="no hiredis")
@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(b":,($*#_"),
    st.text(alphabet="0123456789-+.eEinfaINFtTx_ ", max_size=8),
)
def test_scalar_grammar_matches_hiredis(kind: int, text: str) -> None:
    wire = bytes((kind,)) + text.encode() + b"\r\n"
    if kind in b"$*":
        # An empty bulk body, or an (invalid) empty element line.
        wire += b"\r\n"
    outcomes = []
    for reader in (PythonReader(), HiredisReader()):
        try:
            outcome: object = reader.next_reply() if reader.feed(wire) is None else None
        except ProtocolError:
            outcome = ProtocolError
        outcomes.append(outcome)
    pure, fast = outcomes
    if isinstance(fast, float) and math.isnan(fast):
        assert isinstance(pure, float)
        assert math.isnan(pure)
    else:
        assert pure == fast, wire
