"""Malformed bytes from a (fake) server: fail the waiters, drop the connection, reconnect.

Each case makes the fake server of :mod:`triopipe.testing._fake` answer a few
concurrent commands with broken RESP, then checks: every waiter fails with the
expected error (none hangs), the client closes the socket, its statistics show
it, the next command reconnects, and the process's peak RSS stays small.

Which error, and why:

Every waiter of the broken link gets its own ``ConnectionLostError``, with
``sent`` telling whether its command was written (the cases below wait until
all are written, so ``sent=True``), and a cause:

* a ``ProtocolError``: the reader found bytes that are not RESP (a bad type
  byte, a bad or negative length, nesting past the cap, a bulk over
  ``max_bulk_length``);
* none of that kind: the bytes so far were a valid prefix of a reply, and
  then the server closed the connection (truncated frames, or a header that
  one reader accepts as a promise of more bytes).

Both readers run every case: hiredis (the default) and the pure-Python one
(patched into the connection's reader factory, and once through the real
``TRIOPIPE_PURE_PYTHON=1`` switch in a subprocess). Where they differ the
case says so; the differences come from the readers' documented rules (see
``tests/resp/test_read.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import triopipe
import triopipe._connection
from triopipe._resp import HAVE_HIREDIS, make_reader
from triopipe.testing._fake import FakeServer, Script, fake_server

CONCURRENT = 4
# Peak RSS growth allowed for one case: the attacks below would need GBs.
RSS_LIMIT = 50 * 1024 * 1024
# A case whose waiters are not all failed by then has hung.
WAIT_LIMIT = 2.0


# --- helpers -----------------------------------------------------------------


def use_reader(monkeypatch: pytest.MonkeyPatch, implementation: str) -> None:
    """Make every new connection read replies with ``implementation``."""
    if implementation == "hiredis" and not HAVE_HIREDIS:
        pytest.skip("hiredis is not installed")
    monkeypatch.setattr(
        triopipe._connection,
        "make_reader",
        functools.partial(make_reader, implementation=implementation),
    )


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


class PeakRss:
    """Growth of the process's peak RSS over a block (Linux ``/proc``)."""

    def __init__(self) -> None:
        self.available = Path("/proc/self/status").exists()
        self.before = 0

    def start(self) -> None:
        if not self.available:
            return
        self.before = _status_kib("VmRSS") * 1024
        # "5" resets VmHWM (the peak) to the current RSS; if that is refused,
        # VmHWM holds an older, higher peak: the check is only stricter.
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")

    def growth(self) -> int:
        if not self.available:
            return 0
        return max(0, _status_kib("VmHWM") * 1024 - self.before)


async def run_concurrently(redis: triopipe.Client, count: int) -> list[object]:
    """Run ``count`` PINGs at once; return each reply or exception, in order."""
    outcomes: list[object] = [None] * count

    async def one(index: int) -> None:
        try:
            outcomes[index] = await redis.execute("PING", f"n{index}")
        except Exception as exc:
            outcomes[index] = exc

    async with anyio.create_task_group() as task_group:
        for index in range(count):
            task_group.start_soon(one, index)
    return outcomes


async def wait_disconnected(redis: triopipe.Client, server: FakeServer) -> None:
    """Wait until the client has dropped its first connection (both ends agree)."""
    with anyio.fail_after(WAIT_LIMIT):
        await server.connections[0].closed.wait()
        while redis.statistics().connected:
            await anyio.sleep(0.005)
    stats = redis.statistics()
    assert stats.commands_in_flight == 0
    assert stats.commands_queued == 0


async def assert_reconnects(redis: triopipe.Client, server: FakeServer) -> None:
    """The next command opens a new connection, and it works."""
    with anyio.fail_after(WAIT_LIMIT):
        assert await redis.execute("PING", "again") == b"again"
    assert len(server.connections) == 2
    stats = redis.statistics()
    assert stats.connects == 2
    assert stats.connected == 1
    assert stats.commands_in_flight == 0


# --- the cases -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """Broken bytes, and what each reader makes of them.

    ``answered`` leading commands get a reply (``b"PONG"``); the others fail
    with ``ConnectionLostError(sent=True)``, caused by a ``ProtocolError`` when
    ``errors[reader]`` is ``ProtocolError`` (the reader refused the bytes), by
    nothing of the kind when it is ``ConnectionLostError`` (the server closed
    the connection before the reader could tell).
    """

    name: str
    data: bytes
    then: str = "hang"
    errors: tuple[tuple[str, type[Exception]], ...] = (
        ("hiredis", triopipe.ProtocolError),
        ("python", triopipe.ProtocolError),
    )
    answered: int = 0
    # Reader -> reason: the case hangs with that reader (a known deviation).
    hangs: tuple[tuple[str, str], ...] = ()


LOST = triopipe.ConnectionLostError
PROTO = triopipe.ProtocolError

HIREDIS_2GB_HANG = (
    "HiredisReader enforces max_bulk_length by its buffer size, not from the header: "
    "'$2147483648' followed by silence leaves every waiter blocked (until its own "
    "timeout) instead of failing with ProtocolError like PythonReader; "
    "see triopipe/_resp/_read.py"
)
CASES = [
    Case("unknown-type-byte", b"?what\r\n"),
    Case("binary-garbage", b"\x00\x01\xfe\xff garbage\r\n"),
    Case("negative-bulk-length", b"$-5\r\n"),
    Case("negative-array-length", b"*-7\r\n"),
    Case("bulk-length-not-a-number", b"$five\r\nhello\r\n"),
    Case("bulk-length-over-int64", b"$99999999999999999999\r\nx\r\n"),
    Case("integer-not-a-number", b":12x\r\n"),
    # Valid replies read together with the bad bytes are lost with the
    # connection (Reader.read_replies raises): all four waiters fail.
    Case("error-after-valid-replies", b"$4\r\nPONG\r\n$4\r\nPONG\r\n?\r\n"),
    # The declared length is 2, the body 5 bytes: the pure reader checks the
    # CRLF after the body; hiredis skips two bytes blindly ("ll") and fails
    # one element later, on "o" (see test_bulk_terminator for the rest).
    Case("bulk-length-lies", b"$2\r\nhello\r\n"),
    # hiredis: MemoryError from its pre-allocation; the pure reader: more
    # elements than max_bulk_length bytes could hold. Both at the header.
    Case("huge-array-header-then-eof", b"*3333333333\r\n:1\r\n", then="close"),
    Case("huge-array-header-then-silence", b"*3333333333\r\n:1\r\n"),
    Case("2gb-bulk-then-eof", b"$2147483648\r\nabc", then="close",
         errors=(("hiredis", LOST), ("python", PROTO))),
    Case("2gb-bulk-then-silence", b"$2147483648\r\nabc",
         errors=(("hiredis", PROTO), ("python", PROTO)),
         hangs=(("hiredis", HIREDIS_2GB_HANG),)),
    # 10**8 elements: hiredis allocates the list up front (800 MB of virtual
    # memory, untouched), the pure reader nothing; both wait for the elements.
    Case("large-array-header-then-eof", b"*100000000\r\n:1\r\n", then="close",
         errors=(("hiredis", LOST), ("python", LOST))),
    Case("100k-nesting-levels", b"*1\r\n" * 100_000),
    Case("truncated-bulk-then-eof", b"$10\r\nabc", then="close",
         errors=(("hiredis", LOST), ("python", LOST))),
    Case("truncated-crlf-then-eof", b"$5\r\nhello\r", then="close",
         errors=(("hiredis", LOST), ("python", LOST))),
    Case("truncated-array-then-eof", b"*2\r\n:1\r\n", then="close",
         errors=(("hiredis", LOST), ("python", LOST))),
    Case("truncated-map-then-eof", b"%1\r\n+k\r\n", then="close",
         errors=(("hiredis", LOST), ("python", LOST))),
    Case("truncated-line-then-eof", b"+PON", then="close",
         errors=(("hiredis", LOST), ("python", LOST))),
    Case("truncated-after-two-replies", b"+PONG\r\n+PONG\r\n$4\r\nPO", then="close",
         answered=2, errors=(("hiredis", LOST), ("python", LOST))),
]  # fmt: skip


def case_params() -> list[object]:
    params = []
    for case in CASES:
        hangs = dict(case.hangs)
        for reader in ("hiredis", "python"):
            marks = []
            if reader in hangs:
                marks.append(
                    pytest.mark.xfail(strict=True, raises=TimeoutError, reason=hangs[reader])
                )
            params.append(pytest.param(case, reader, id=f"{case.name}-{reader}", marks=marks))
    return params


@pytest.mark.parametrize(("case", "reader"), case_params())
async def test_malformed_reply_fails_every_waiter(
    monkeypatch: pytest.MonkeyPatch, case: Case, reader: str
) -> None:
    use_reader(monkeypatch, reader)
    expected = dict(case.errors)[reader]
    script = Script(case.data, after=CONCURRENT, then="close" if case.then == "close" else "hang")
    rss = PeakRss()
    async with fake_server([script]) as server, triopipe.open_client(server.url) as redis:
        rss.start()
        # A case known to hang (marked xfail) need not burn the full limit.
        with anyio.fail_after(0.5 if reader in dict(case.hangs) else WAIT_LIMIT):
            outcomes = await run_concurrently(redis, CONCURRENT)
        growth = rss.growth()
        # Replies go to the commands in the order they were written, which
        # is the scheduler's: count them rather than pick them by index.
        answered = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
        assert answered == [b"PONG"] * case.answered, outcomes
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                # Every waiter of a broken link learns that its command was
                # written; a protocol error is the cause, not the error.
                assert type(outcome) is LOST, outcomes
                assert outcome.sent is True
                assert isinstance(outcome.__cause__, PROTO) == (expected is PROTO), outcome
        # All of them were written (the order is the scheduler's).
        assert sorted(server.connections[0].commands[-CONCURRENT:]) == [
            (b"PING", b"n%d" % i) for i in range(CONCURRENT)
        ]
        await wait_disconnected(redis, server)
        await assert_reconnects(redis, server)
    assert growth < RSS_LIMIT, f"peak RSS grew by {growth / 2**20:.1f} MiB"


@pytest.mark.parametrize("reader", ["hiredis", "python"])
@pytest.mark.parametrize("protocol", [2, 3])
async def test_malformed_under_both_protocols(
    monkeypatch: pytest.MonkeyPatch, reader: str, protocol: int
) -> None:
    # protocol=2 sends no handshake at all; hello=False makes a RESP3 client
    # fall back to RESP2 after "unknown command", like against Redis 5.
    use_reader(monkeypatch, reader)
    script = Script(b"$-5\r\n", after=2)
    async with (
        fake_server([script], hello=False) as server,
        triopipe.open_client(server.url, protocol=protocol) as redis,
    ):
        assert redis.statistics().per_connection[0].protocol == 2
        with anyio.fail_after(WAIT_LIMIT):
            outcomes = await run_concurrently(redis, 2)
        assert [type(outcome) for outcome in outcomes] == [LOST] * 2
        assert all(isinstance(outcome.__cause__, PROTO) for outcome in outcomes)
        await wait_disconnected(redis, server)
        await assert_reconnects(redis, server)


# --- replies nobody asked for -------------------------------------------------


@pytest.mark.parametrize("reader", ["hiredis", "python"])
async def test_reply_with_no_command_waiting_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    use_reader(monkeypatch, reader)
    # Sent on its own, well after the handshake, while nothing is pending.
    script = Script(b"+SURPRISE\r\n", after=0, delay=0.05)
    async with fake_server([script]) as server, triopipe.open_client(server.url) as redis:
        await wait_disconnected(redis, server)
        await assert_reconnects(redis, server)


@pytest.mark.parametrize("reader", ["hiredis", "python"])
async def test_one_reply_too_many_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    use_reader(monkeypatch, reader)
    script = Script(b"+EXTRA\r\n", after=CONCURRENT, answer=True)
    async with fake_server([script]) as server, triopipe.open_client(server.url) as redis:
        with anyio.fail_after(WAIT_LIMIT):
            outcomes = await run_concurrently(redis, CONCURRENT)
        # Each waiter got its own reply; the extra one broke the connection.
        assert outcomes == [b"n%d" % i for i in range(CONCURRENT)]
        await wait_disconnected(redis, server)
        await assert_reconnects(redis, server)


@pytest.mark.parametrize("reader", ["hiredis", "python"])
async def test_reply_glued_to_the_handshake_reaches_nobody(
    monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    use_reader(monkeypatch, reader)
    script = Script(b"+SURPRISE\r\n", with_handshake=True, then="serve")
    async with fake_server([script]) as server:
        # The extra reply fails the handshake: it reaches no caller.
        with anyio.fail_after(WAIT_LIMIT), pytest.raises(triopipe.ProtocolError):
            async with triopipe.open_client(server.url):
                pass  # pragma: no cover
        # The next connection has no script: every reply is its caller's.
        async with triopipe.open_client(server.url) as redis:
            with anyio.fail_after(WAIT_LIMIT):
                assert await redis.execute("PING", "mine") == b"mine"


# --- the real switch to the pure reader ----------------------------------------

_PURE_SCRIPT = textwrap.dedent(
    """
    import anyio, triopipe
    from triopipe._resp import PythonReader, make_reader
    from triopipe.testing._fake import Script, fake_server

    assert isinstance(make_reader(), PythonReader)

    async def main():
        scripts = [Script(b"$2147483648\\r\\nabc", after=2, then="hang")]
        async with fake_server(scripts) as server:
            async with triopipe.open_client(server.url) as redis:
                results = []
                async def one():
                    try:
                        await redis.execute("PING")
                    except Exception as exc:
                        results.append((type(exc).__name__, type(exc.__cause__).__name__))
                with anyio.fail_after(5):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(one)
                        tg.start_soon(one)
                assert results == [("ConnectionLostError", "ProtocolError")] * 2, results
                assert await redis.execute("PING") == b"PONG"

    for backend in ("asyncio", "trio"):
        anyio.run(main, backend=backend)
    print("ok")
    """
)


def test_pure_python_switch_in_a_subprocess() -> None:
    env = {**os.environ, "TRIOPIPE_PURE_PYTHON": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _PURE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- a known difference between the readers ---------------------------------------


@pytest.mark.parametrize("reader", ["hiredis", "python"])
async def test_bulk_terminator(monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    # "$2\r\nheXY": two bytes of body, then "XY" where CRLF belongs. The pure
    # reader refuses it. hiredis skips the two bytes without looking (its
    # documented lax terminator, tests/resp/test_read.py): the stream stays in
    # step, the waiter gets b"he", the connection lives on.
    use_reader(monkeypatch, reader)
    script = Script(b"$2\r\nheXY", after=1, then="serve")
    async with fake_server([script]) as server, triopipe.open_client(server.url) as redis:
        with anyio.fail_after(WAIT_LIMIT):
            if reader == "hiredis":
                assert await redis.execute("GET", "k") == b"he"
                assert await redis.execute("PING", "next") == b"next"
                assert len(server.connections) == 1
            else:
                with pytest.raises(LOST) as lost:
                    await redis.execute("GET", "k")
                assert lost.value.sent
                assert isinstance(lost.value.__cause__, PROTO)
                await wait_disconnected(redis, server)
                await assert_reconnects(redis, server)
