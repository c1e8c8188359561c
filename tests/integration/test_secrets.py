"""Passwords never show: not in repr, str, exceptions, tracebacks or logs.

A real server with ``requirepass`` and an ACL user. Every text a user or an
operator could see is collected (reprs, exception messages, full chained
tracebacks, every log record at DEBUG, through ``caplog`` and a root handler)
and scanned for the passwords, whole or in pieces, raw or percent-encoded.
"""

from __future__ import annotations

import io
import logging
import socket
import traceback
from collections.abc import Iterator
from urllib.parse import quote

import anyio
import pytest

import triopipe
from triopipe._config import mask_password, parse_url
from triopipe._link import new_handshake
from triopipe.testing import RedisServerProcess, redis_server_process

# Two halves each, so that a leak of half a password is caught too.
DEFAULT_PASSWORD = "DefPw7kq-Half2zx"
ALICE_PASSWORD = "AlicePw3mn-Half9vb"
WRONG_PASSWORD = "WrongPw5ty-Half4rw"
NEW_PASSWORD = "NewPw8gh-Half6jd"
PASSWORDS = (DEFAULT_PASSWORD, ALICE_PASSWORD, WRONG_PASSWORD, NEW_PASSWORD)


def fragments(password: str) -> list[str]:
    """The password, its halves, and their percent-encoded forms."""
    parts = [password, *password.split("-"), *password.split("/")]
    parts += [quote(part, safe="") for part in parts]
    return sorted({part for part in parts if len(part) >= 4})


def assert_clean(text: str, passwords: tuple[str, ...] = PASSWORDS) -> None:
    for password in passwords:
        for fragment in fragments(password):
            assert fragment not in text, f"{fragment!r} leaked in:\n{text}"


def exception_texts(error: BaseException) -> str:
    """Everything an exception shows: str, repr, args, the chained traceback."""
    return "\n".join(
        [
            str(error),
            repr(error),
            repr(error.args),
            "".join(traceback.format_exception(error, chain=True)),
            *(repr(note) for note in getattr(error, "__notes__", ())),
        ]
    )


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServerProcess]:
    with redis_server_process(
        requirepass=DEFAULT_PASSWORD,
        user=f"alice on >{ALICE_PASSWORD} ~* &* +@all",
    ) as process:
        yield process


@pytest.fixture
def log_text(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Every log record of the test, formatted with tracebacks, in one buffer."""
    caplog.set_level(logging.DEBUG, logger="triopipe")
    caplog.set_level(logging.DEBUG)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(args)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        for record in caplog.records:
            buffer.write(f"{record.getMessage()} {record.args!r} {record.exc_text}\n")
        assert_clean(buffer.getvalue())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- a working client ------------------------------------------------------------


async def test_client_objects_hide_the_password(
    server: RedisServerProcess, log_text: io.StringIO
) -> None:
    for url, options in [
        (f"redis://:{DEFAULT_PASSWORD}@127.0.0.1:{server.port}/0", {}),
        (f"redis://alice:{ALICE_PASSWORD}@127.0.0.1:{server.port}", {"client_name": "c"}),
        (f"redis://127.0.0.1:{server.port}", {"username": "alice", "password": ALICE_PASSWORD}),
    ]:
        async with triopipe.open_client(url, connections=2, **options) as redis:
            assert await redis.ping() is True
            config = redis.config
            assert config.password in (DEFAULT_PASSWORD, ALICE_PASSWORD)
            texts = [
                repr(redis),
                str(redis),
                repr(config),
                str(config),
                config.url,
                config.address,
                repr(redis.statistics()),
                str(redis.statistics()),
                repr(redis._group.connections),
                repr(await new_handshake(config)),
                mask_password(url),
            ]
            assert_clean("\n".join(texts))
    assert "connected to" in log_text.getvalue()


# --- refused credentials -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options"),
    [
        pytest.param("redis://:{wrong}@127.0.0.1:{port}", {}, id="default-user"),
        pytest.param("redis://alice:{wrong}@127.0.0.1:{port}", {}, id="acl-user"),
        pytest.param("redis://bob:{wrong}@127.0.0.1:{port}", {}, id="unknown-user"),
        pytest.param("redis://127.0.0.1:{port}", {"password": WRONG_PASSWORD}, id="option"),
        pytest.param("redis://:{wrong}@127.0.0.1:{port}", {"protocol": 2}, id="resp2-auth"),
    ],
)
async def test_wrong_password(
    server: RedisServerProcess, log_text: io.StringIO, url: str, options: dict[str, object]
) -> None:
    url = url.format(wrong=WRONG_PASSWORD, port=server.port)
    with anyio.fail_after(5), pytest.raises(triopipe.AuthenticationError) as caught:
        async with triopipe.open_client(url, **options):
            pass
    assert caught.value.code == "WRONGPASS"
    assert_clean(exception_texts(caught.value))


async def test_missing_password(server: RedisServerProcess, log_text: io.StringIO) -> None:
    with anyio.fail_after(5), pytest.raises(triopipe.AuthenticationError) as caught:
        async with triopipe.open_client(f"redis://127.0.0.1:{server.port}"):
            pass
    assert caught.value.code == "NOAUTH"
    assert_clean(exception_texts(caught.value))


# --- unreachable servers -----------------------------------------------------------


async def test_unreachable_server(log_text: io.StringIO) -> None:
    port = free_port()  # nobody listens there
    with anyio.fail_after(5), pytest.raises(triopipe.ConnectError) as caught:
        async with triopipe.open_client(f"redis://alice:{ALICE_PASSWORD}@127.0.0.1:{port}"):
            pass
    assert_clean(exception_texts(caught.value))


async def test_handshake_timeout(log_text: io.StringIO) -> None:
    # A listener that accepts (in its backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        for scheme in ("redis", "rediss"):
            url = f"{scheme}://:{DEFAULT_PASSWORD}@127.0.0.1:{port}"
            with anyio.fail_after(5), pytest.raises(triopipe.ConnectError) as caught:
                async with triopipe.open_client(url, connect_timeout=0.2):
                    pass
            assert_clean(exception_texts(caught.value))


# --- losing the connection, reconnecting, and being refused on reconnect ----------


async def test_reconnects_and_refusals_on_reconnect(
    server: RedisServerProcess, log_text: io.StringIO
) -> None:
    admin_url = f"redis://:{DEFAULT_PASSWORD}@127.0.0.1:{server.port}"
    url = f"redis://alice:{ALICE_PASSWORD}@127.0.0.1:{server.port}"
    async with (
        triopipe.open_client(admin_url) as admin,
        triopipe.open_client(url, client_name="victim") as redis,
    ):
        errors: list[BaseException] = []
        # 1. The connection is killed under a pending command; then reconnects.
        async with anyio.create_task_group() as task_group:

            async def blocked() -> None:
                try:
                    await redis.execute("BLPOP", "nothing", 0)
                except triopipe.ConnectionLostError as exc:
                    errors.append(exc)

            task_group.start_soon(blocked)
            with anyio.fail_after(5):
                while b"blocked_clients:1" not in await admin.execute("INFO", "clients"):
                    await anyio.sleep(0.01)
                assert await admin.execute("CLIENT", "KILL", "USER", "alice", "SKIPME", "yes")
        with anyio.fail_after(5):
            while True:
                try:
                    assert await redis.ping() is True
                    break
                except triopipe.ConnectionLostError as exc:
                    errors.append(exc)
        assert errors
        # 2. The password changes under the client: the reconnect is refused.
        await admin.execute("ACL", "SETUSER", "alice", "resetpass", f">{NEW_PASSWORD}")
        try:
            await admin.execute("CLIENT", "KILL", "USER", "alice", "SKIPME", "yes")
            with anyio.fail_after(5):
                while True:
                    try:
                        await redis.ping()
                    except triopipe.AuthenticationError as exc:
                        errors.append(exc)
                        break
                    except triopipe.ConnectionLostError as exc:
                        errors.append(exc)
                    await anyio.sleep(0.01)
        finally:
            await admin.execute("ACL", "SETUSER", "alice", "resetpass", f">{ALICE_PASSWORD}")
        assert isinstance(errors[-1], triopipe.AuthenticationError)
        for error in errors:
            assert_clean(exception_texts(error))
        assert_clean(repr(redis) + repr(redis.statistics()))
    logged = log_text.getvalue()
    assert "connection to" in logged
    assert "lost" in logged


# --- URL parsing errors --------------------------------------------------------


def bad_urls(password: str) -> list[str]:
    quoted = quote(password, safe="")
    return [
        f"redis://:{quoted}@localhost:99999",
        f"redis://:{quoted}@localhost:-1",
        f"redis://:{quoted}@localhost:port",
        f"redis://alice:{quoted}@localhost:6379/abc",
        f"redis://alice:{quoted}@localhost:6379/-1",
        f"redis://alice:{quoted}@localhost:6379/0?protocol=7",
        f"redis://alice:{quoted}@localhost:6379/0?decode=maybe",
        f"redis://alice:{quoted}@localhost:6379/0?connections=0",
        f"redis://alice:{quoted}@localhost:6379/0?bogus=1",
        f"redis://alice:{quoted}@localhost:6379/0?ssl_cert_reqs=none",
        f"http://alice:{quoted}@localhost:6379",
        f"redis://alice:{quoted}@[::1:6379",
        f"unix://alice:{quoted}@/tmp/redis.sock?db=x",
        f"redis://{quoted}:{quoted}@localhost:99999",
    ]


@pytest.mark.parametrize("url", bad_urls(DEFAULT_PASSWORD))
def test_url_errors_hide_the_password(url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|must") as caught:
        parse_url(url)
    # The username position is not secret; the password's position is.
    text = exception_texts(caught.value)
    if url.startswith(f"redis://{DEFAULT_PASSWORD}:"):
        text = text.replace(f"redis://{DEFAULT_PASSWORD}:", "redis://USER:")
    assert_clean(text)


def test_option_errors_hide_the_password() -> None:
    for options in (
        {"password": DEFAULT_PASSWORD, "protocol": 7},
        {"password": DEFAULT_PASSWORD, "db": -1},
        {"password": DEFAULT_PASSWORD, "bogus": 1},
        {"password": DEFAULT_PASSWORD, "ssl_context": object()},
    ):
        with pytest.raises((ValueError, TypeError)) as caught:
            parse_url("redis://localhost", options)
        assert_clean(exception_texts(caught.value))


# Real passwords hold characters that a URL reserves: base64 ones hold "/"
# and "+", others "?", "#", "@" or "[". Written into a URL without
# percent-encoding, they break the parse: the error must not show them.
RESERVED_PASSWORDS = [
    pytest.param("Res7wq@Half3nd", id="at"),
    pytest.param("Res7wq:Half3nd", id="colon"),
    pytest.param("Res7wq+Half3nd", id="plus"),
    pytest.param("Res7wq%Half3nd", id="percent"),
    pytest.param("Res7wq[Half3nd", id="bracket"),
    pytest.param("Res7wq#Half3nd", id="hash"),
    pytest.param("Res7wq?Half3nd", id="question-mark"),
    pytest.param("Res7wq/Half3nd", id="slash"),
]


def _pieces(password: str) -> tuple[str, ...]:
    return (password, password[:6], password[7:])


@pytest.mark.parametrize("password", RESERVED_PASSWORDS)
def test_unencoded_reserved_characters_do_not_leak(password: str) -> None:
    for url in (
        f"redis://:{password}@localhost:6379/0",
        f"redis://alice:{password}@localhost:6379/abc",
        f"redis://alice:{password}@localhost:99999",
    ):
        try:
            config = parse_url(url)
        except ValueError as exc:
            text = exception_texts(exc)
        else:
            text = repr(config) + config.url + config.address + mask_password(url)
        for piece in _pieces(password):
            assert piece not in text, f"{piece!r} leaked for {url!r}:\n{text}"
