"""TLS against a real ``redis-server --tls-port``, with certificates made in the test.

The server gets a certificate for ``localhost`` only, signed by a throwaway
CA (trustme). So, on one server: ``rediss://localhost`` trusting that CA
works; the default context (system CAs) refuses it; ``rediss://127.0.0.1``
is a hostname mismatch; no URL can switch verification off; only an explicit
``ssl_context`` can.
"""

from __future__ import annotations

import ssl

import anyio
import pytest
import trustme
from helpers import trusting

import triopipe
from triopipe._config import parse_url
from triopipe.testing import RedisServerProcess


@pytest.fixture
def tls_port(tls_server: tuple[RedisServerProcess, int]) -> int:
    server, port = tls_server
    server.flush()
    return port


def unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def verification_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error in ``error``'s chain, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def test_trusted_ca_round_trip(tls_port: int, ca: trustme.CA) -> None:
    url = f"rediss://localhost:{tls_port}"
    async with triopipe.open_client(url, ssl_context=trusting(ca)) as redis:
        assert redis.config.tls
        assert await redis.set("k", "v") is True
        assert await redis.get("k") == b"v"
        values = [f"v{i}".encode() for i in range(200)]
        await redis.execute_many([("RPUSH", "l", v) for v in values])
        assert await redis.lrange("l", 0, -1) == values
        assert redis.statistics().connected == 1


async def test_plain_port_is_not_tls(
    tls_server: tuple[RedisServerProcess, int], ca: trustme.CA
) -> None:
    # Sanity: the TLS port is where TLS is; the harness's plain port is not
    # (the server takes the ClientHello for an incomplete inline command and
    # waits: connect_timeout ends it).
    server, _ = tls_server
    with anyio.fail_after(10), pytest.raises(triopipe.ConnectError):
        async with triopipe.open_client(
            f"rediss://localhost:{server.port}", ssl_context=trusting(ca), connect_timeout=0.5
        ):
            pass


async def test_default_context_refuses_self_signed(tls_port: int) -> None:
    with anyio.fail_after(10), pytest.raises(triopipe.ConnectError) as caught:
        async with triopipe.open_client(f"rediss://localhost:{tls_port}"):
            pass
    failure = verification_failure(caught.value)
    assert failure is not None, caught.value
    # 19: self-signed certificate in the chain; 20: unknown issuer.
    assert failure.verify_code in (19, 20)


async def test_hostname_mismatch_is_refused(tls_port: int, ca: trustme.CA) -> None:
    # The certificate names localhost only; 127.0.0.1 is the same server.
    with anyio.fail_after(10), pytest.raises(triopipe.ConnectError) as caught:
        async with triopipe.open_client(
            f"rediss://127.0.0.1:{tls_port}", ssl_context=trusting(ca)
        ):
            pass
    failure = verification_failure(caught.value)
    assert failure is not None, caught.value
    assert "mismatch" in failure.verify_message


async def test_certificate_for_another_name_is_refused(
    tls_port: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A CA that signed a certificate for someone else is no help either.
    other = trustme.CA()
    other.issue_cert("other.example")
    with anyio.fail_after(10), pytest.raises(triopipe.ConnectError) as caught:
        async with triopipe.open_client(
            f"rediss://localhost:{tls_port}", ssl_context=trusting(other)
        ):
            pass
    assert verification_failure(caught.value) is not None


INSECURE_QUERIES = [
    "ssl_cert_reqs=none",
    "ssl_cert_reqs=CERT_NONE",
    "ssl_cert_reqs=optional",
    "ssl_check_hostname=false",
    "ssl_check_hostname=0",
    "ssl_ca_certs=/etc/ssl/certs/ca-certificates.crt",
    "ssl=false",
    "tls=0",
    "verify=no",
    "insecure=1",
    "ssl%5Fcert%5Freqs=none",
    "SSL_CERT_REQS=none",
    "ssl_verify=false",
    "tls_insecure=true",
    "sslmode=disable",
    "client_name=x&ssl_cert_reqs=none",
    "ssl_cert_reqs=required&ssl_cert_reqs=none",
]


@pytest.mark.parametrize("query", INSECURE_QUERIES)
def test_url_cannot_turn_verification_off(query: str) -> None:
    for scheme in ("rediss", "redis"):
        with pytest.raises(ValueError, match="URL option"):
            parse_url(f"{scheme}://localhost:6380/0?{query}")
        with pytest.raises(ValueError, match="URL option"):
            parse_url(f"{scheme}://localhost:6380/0?{query}", {"ssl_context": unverified()})


async def test_url_option_refused_before_connecting(tls_port: int, ca: trustme.CA) -> None:
    with anyio.fail_after(5), pytest.raises(ValueError, match="ssl_cert_reqs"):
        async with triopipe.open_client(
            f"rediss://127.0.0.1:{tls_port}?ssl_cert_reqs=none", ssl_context=trusting(ca)
        ):
            pass


async def test_only_an_explicit_context_can_skip_verification(tls_port: int) -> None:
    # The same self-signed server, and a hostname mismatch on top: code can
    # decide to trust it.
    for host in ("localhost", "127.0.0.1"):
        async with triopipe.open_client(
            f"rediss://{host}:{tls_port}", ssl_context=unverified()
        ) as redis:
            assert await redis.ping() is True
            assert await redis.execute("ECHO", host) == host.encode()


async def test_hostname_check_off_but_chain_verified(tls_port: int, ca: trustme.CA) -> None:
    context = trusting(ca)
    context.check_hostname = False
    async with triopipe.open_client(
        f"rediss://127.0.0.1:{tls_port}", ssl_context=context
    ) as redis:
        assert await redis.ping() is True
    # Without the CA, the chain still fails even with the hostname check off.
    context = ssl.create_default_context()
    context.check_hostname = False
    with anyio.fail_after(10), pytest.raises(triopipe.ConnectError):
        async with triopipe.open_client(f"rediss://localhost:{tls_port}", ssl_context=context):
            pass


def test_ssl_context_needs_rediss() -> None:
    with pytest.raises(ValueError, match="rediss"):
        parse_url("redis://localhost:6380", {"ssl_context": unverified()})
