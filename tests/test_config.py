"""URL and option parsing: no server, no event loop."""

from __future__ import annotations

import ssl

import pytest

from triopipe._config import ClientConfig, mask_password, parse_url


def test_defaults() -> None:
    config = parse_url("redis://localhost")
    assert (config.host, config.port, config.db, config.tls) == ("localhost", 6379, 0, False)
    assert (config.protocol, config.connections, config.decode) == (3, 1, False)
    assert config.max_in_flight == 10_000
    assert config.connect_timeout == 5.0


def test_full_url() -> None:
    config = parse_url("rediss://alice:p%40ss@cache.example:6380/4?client_name=app&decode=yes")
    assert config.tls
    assert (config.host, config.port, config.db) == ("cache.example", 6380, 4)
    assert (config.username, config.password) == ("alice", "p@ss")
    assert config.client_name == "app"
    assert config.decode is True
    assert config.url == "rediss://cache.example:6380/4"


def test_password_without_user_and_ipv6() -> None:
    config = parse_url("redis://:secret@[::1]:7000")
    assert config.username is None
    assert config.password == "secret"
    assert config.address == "[::1]:7000"


def test_unix_url() -> None:
    config = parse_url("unix:///run/redis.sock?db=3&protocol=2")
    assert config.unix_path == "/run/redis.sock"
    assert (config.db, config.protocol) == (3, 2)
    assert config.url == "unix:///run/redis.sock?db=3"


def test_options_override_the_url() -> None:
    config = parse_url("redis://:fromurl@host/1", {"password": "fromcode", "db": 2})
    assert (config.password, config.db) == ("fromcode", 2)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost",
        "redis://localhost/notanumber",
        "redis://localhost:99999",
        "unix://",
        "redis://localhost?protocol=4",
        "redis://localhost?connections=0",
        "redis://localhost?nosuchoption=1",
        "redis://localhost?decode=maybe",
    ],
)
def test_invalid_urls(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        parse_url(url)


@pytest.mark.parametrize(
    "option", ["ssl_cert_reqs=none", "ssl_check_hostname=false", "insecure=1", "verify=0"]
)
def test_a_url_cannot_turn_tls_verification_off(option: str) -> None:
    with pytest.raises(ValueError, match="never by a URL"):
        parse_url(f"rediss://localhost?{option}")


def test_unknown_keyword_option() -> None:
    with pytest.raises(TypeError, match="nosuch"):
        parse_url("redis://localhost", {"nosuch": 1})


def test_ssl_context_needs_tls() -> None:
    with pytest.raises(ValueError, match="rediss"):
        parse_url("redis://localhost", {"ssl_context": ssl.create_default_context()})
    assert parse_url("rediss://h", {"ssl_context": ssl.create_default_context()}).tls


def test_password_never_in_repr_or_errors() -> None:
    secret = "hunter2-very-secret"
    config = parse_url(f"redis://bob:{secret}@host:1/2")
    assert secret not in repr(config)
    assert secret not in str(config)
    for bad in (
        f"redis://bob:{secret}@host:notaport",
        f"redis://bob:{secret}@host/xx",
        f"redis://bob:{secret}@host?nosuch=1",
        f"redis://bob:{secret}@host?decode=maybe",
    ):
        with pytest.raises(ValueError) as info:  # noqa: PT011
            parse_url(bad)
        chain: BaseException | None = info.value
        while chain is not None:
            assert secret not in str(chain)
            chain = chain.__cause__ or chain.__context__


def test_mask_password() -> None:
    assert mask_password("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert mask_password("redis://:pw@h") == "redis://:***@h"
    assert mask_password("redis://h:1") == "redis://h:1"
    assert mask_password("nonsense") == "nonsense"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        ClientConfig(max_in_flight=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        ClientConfig(connect_timeout=0)
    with pytest.raises(ValueError, match="db"):
        ClientConfig(db=-1)
