"""The handshake as data: which batches are sent and when RESP2 takes over.

The error replies below are the ones real servers give (quoted from Redis
5, Redis 7.0 and Valkey 9); ``tests/integration/test_client.py`` checks the
same fallbacks against the real server the suite runs on.
"""

from __future__ import annotations

import pytest

import triopipe
from triopipe._exceptions import error_from_reply
from triopipe._resp._handshake import Handshake, HandshakeResult, hello_not_served

UNKNOWN_REDIS5 = "ERR unknown command `HELLO`, with args beginning with: `3`, "
UNKNOWN_REDIS7 = "ERR unknown command 'HELLO', with args beginning with: '3' "
NOAUTH_VALKEY = "NOAUTH Authentication required."
NOPROTO = "NOPROTO sorry, this protocol version is not supported."
NOAUTH_HELLO_REDIS7 = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)
WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


def test_hello_batch_carries_credentials_name_and_db() -> None:
    handshake = Handshake(username="alice", password="pw", client_name="app", db=2)
    assert handshake.commands(hello=True) == [
        ("HELLO", 3, "AUTH", "alice", "pw", "SETNAME", "app"),
        ("SELECT", 2),
    ]
    assert handshake.commands(hello=False) == [
        ("AUTH", "alice", "pw"),
        ("CLIENT", "SETNAME", "app"),
        ("SELECT", 2),
    ]


def test_password_alone_authenticates_the_default_user() -> None:
    handshake = Handshake(password="pw")
    assert handshake.commands(hello=True) == [("HELLO", 3, "AUTH", "default", "pw")]
    assert handshake.commands(hello=False) == [("AUTH", "pw")]


def test_protocol_2_starts_with_the_resp2_batch() -> None:
    assert not Handshake(protocol=2).first_batch_uses_hello
    assert Handshake(protocol=3).first_batch_uses_hello
    assert Handshake(protocol=2).commands(hello=False) == []


def test_success_settles_the_protocol() -> None:
    handshake = Handshake(password="pw", db=1)
    assert handshake.check([{b"proto": 3}, b"OK"], hello=True) == HandshakeResult(protocol=3)
    assert handshake.check([b"OK", b"OK"], hello=False) == HandshakeResult(protocol=2)


@pytest.mark.parametrize(
    ("reply", "password"),
    [
        pytest.param(UNKNOWN_REDIS5, None, id="unknown-redis5"),
        pytest.param(UNKNOWN_REDIS7, "pw", id="unknown-renamed-redis7"),
        pytest.param(NOAUTH_VALKEY, "pw", id="noauth-renamed-valkey"),
        pytest.param(NOPROTO, None, id="noproto"),
        pytest.param(NOPROTO, "pw", id="noproto-with-auth"),
    ],
)
def test_hello_not_run_falls_back_to_resp2(reply: str, password: str | None) -> None:
    handshake = Handshake(password=password, db=1)
    error = error_from_reply(reply)
    # SELECT after a refused HELLO fails too when a password is needed.
    second = error_from_reply(NOAUTH_VALKEY) if password else b"OK"
    assert handshake.check([error, second], hello=True) is None


@pytest.mark.parametrize(
    ("reply", "password", "expected"),
    [
        # No credentials to offer: the server wants a password we do not have.
        pytest.param(NOAUTH_VALKEY, None, triopipe.AuthenticationError, id="noauth-no-password"),
        pytest.param(
            NOAUTH_HELLO_REDIS7, None, triopipe.AuthenticationError, id="noauth-hello-redis7"
        ),
        pytest.param(WRONGPASS, "pw", triopipe.AuthenticationError, id="wrongpass"),
        pytest.param("ERR Protocol error: bad", None, triopipe.ResponseError, id="other-error"),
        pytest.param("NOPERM no HELLO for you", "pw", triopipe.ResponseError, id="noperm"),
    ],
)
def test_other_hello_errors_are_raised(
    reply: str, password: str | None, expected: type[triopipe.ResponseError]
) -> None:
    handshake = Handshake(password=password)
    with pytest.raises(expected) as caught:
        handshake.check([error_from_reply(reply)], hello=True)
    assert str(caught.value) == reply.rstrip()


def test_errors_of_the_resp2_batch_are_raised() -> None:
    handshake = Handshake(password="pw")
    # "Unknown command" is a fallback only for HELLO, never for the RESP2 batch.
    with pytest.raises(triopipe.ResponseError, match="unknown command"):
        handshake.check([error_from_reply(UNKNOWN_REDIS7)], hello=False)
    with pytest.raises(triopipe.AuthenticationError):
        handshake.check([error_from_reply(WRONGPASS)], hello=False)


def test_a_later_error_is_raised_even_after_hello_succeeds() -> None:
    handshake = Handshake(db=99)
    with pytest.raises(triopipe.ResponseError, match="DB index is out of range"):
        handshake.check(
            [{b"proto": 3}, error_from_reply("ERR DB index is out of range")], hello=True
        )


@pytest.mark.parametrize("with_auth", [True, False])
def test_hello_not_served_reads_the_code_not_the_wording(with_auth: bool) -> None:
    assert hello_not_served(error_from_reply(UNKNOWN_REDIS7), with_auth=with_auth)
    assert hello_not_served(error_from_reply("ERR UNKNOWN COMMAND 'hello'"), with_auth=with_auth)
    assert hello_not_served(error_from_reply(NOPROTO), with_auth=with_auth)
    assert hello_not_served(error_from_reply(NOAUTH_VALKEY), with_auth=with_auth) is with_auth
    assert not hello_not_served(error_from_reply("ERR syntax error"), with_auth=with_auth)


def test_password_stays_out_of_repr() -> None:
    assert "s3cret" not in repr(Handshake(password="s3cret"))
