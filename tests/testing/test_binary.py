"""Finding the server binary, and what it says it can do, checked against what it does.

The discovery tests build a PATH of their own in a temporary directory
(links to the real binaries), so they hold whatever the machine has
installed. The capability tests run on every binary this machine has (the
one on PATH, the extra's), so both servers are covered in every session.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import sys
from pathlib import Path

import pytest
import trustme

from triopipe.testing import (
    EXTRA,
    RedisServerError,
    RedisServerNotFoundError,
    ServerInfo,
    _binary,
    bundled_redis_server,
    find_redis_server,
    redis_server_process,
    server_info,
)


def _installed() -> list[str]:
    found = [shutil.which(name) for name in ("redis-server", "valkey-server")]
    return [path for path in [*found, bundled_redis_server()] if path is not None]


# Looked up once, before any test changes PATH.
INSTALLED = _installed()
BINARIES = [pytest.param(path, id=Path(path).name + f"-{i}") for i, path in enumerate(INSTALLED)]
needs_bundle = pytest.mark.skipif(
    bundled_redis_server() is None, reason=f"the {EXTRA} extra is not installed"
)


@pytest.fixture
def bare_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A PATH of one empty directory, and no TRIOPIPE_REDIS_SERVER."""
    monkeypatch.delenv("TRIOPIPE_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


@pytest.fixture
def no_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the extra were not installed."""
    monkeypatch.setattr(_binary, "_BUNDLE_PACKAGE", "triopipe_no_such_package")


def _link(directory: Path, name: str, target: str) -> str:
    link = directory / name
    link.symlink_to(target)
    return str(link)


def _assert_names_three_ways(message: str) -> None:
    assert "TRIOPIPE_REDIS_SERVER=/path/to/redis-server" in message
    assert "redis-server or valkey-server on PATH" in message
    assert "apt-get install redis-server" in message
    assert "brew install redis" in message
    assert 'pip install "triopipe[server]"' in message


@pytest.mark.usefixtures("no_bundle")
def test_nothing_found_names_all_three_ways(bare_path: Path) -> None:
    with pytest.raises(RedisServerNotFoundError) as excinfo:
        find_redis_server()
    message = str(excinfo.value)
    _assert_names_three_ways(message)
    assert "neither redis-server nor valkey-server is on PATH" in message
    assert "extra is not installed" in message
    with pytest.raises(RedisServerNotFoundError), redis_server_process():
        pytest.fail("the server must not start")


def test_a_wrong_env_var_is_an_error_not_a_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Even though other binaries may be on PATH or installed by the extra.
    monkeypatch.setenv("TRIOPIPE_REDIS_SERVER", str(tmp_path / "no-such-redis-server"))
    with pytest.raises(RedisServerNotFoundError) as excinfo:
        find_redis_server()
    assert "no-such-redis-server" in str(excinfo.value)
    assert "is not an executable file" in str(excinfo.value)
    _assert_names_three_ways(str(excinfo.value))


@pytest.mark.usefixtures("no_bundle")
def test_redis_server_comes_before_valkey_server_on_path(bare_path: Path) -> None:
    real = find_real_binary()
    valkey = _link(bare_path, "valkey-server", real)
    assert find_redis_server() == valkey
    assert server_info().source == "PATH"
    redis = _link(bare_path, "redis-server", real)
    assert find_redis_server() == redis


@needs_bundle
def test_the_extra_comes_last(bare_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = bundled_redis_server()
    assert bundled is not None
    assert find_redis_server() == bundled
    info = server_info()
    assert (info.kind, info.source, info.location) == ("valkey", EXTRA, bundled)
    assert f"from the {EXTRA} extra" in str(info)
    on_path = _link(bare_path, "redis-server", find_real_binary())
    assert find_redis_server() == on_path
    monkeypatch.setenv("TRIOPIPE_REDIS_SERVER", bundled)
    assert find_redis_server() == bundled
    assert server_info().source == "TRIOPIPE_REDIS_SERVER"


def find_real_binary() -> str:
    if not INSTALLED:
        pytest.skip("no server binary on this machine")
    return INSTALLED[0]


def test_a_program_that_is_no_server_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIOPIPE_REDIS_SERVER", sys.executable)
    with pytest.raises(ValueError, match="is not a Redis-compatible server"):
        server_info()
    with (
        pytest.raises(ValueError, match="is not a Redis-compatible server"),
        redis_server_process(),
    ):
        pytest.fail("the server must not start")


@pytest.mark.parametrize("binary", BINARIES)
def test_kind_and_version_match_the_running_server(
    binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = server_info(binary)
    assert info.kind in ("redis", "valkey")
    monkeypatch.setenv("TRIOPIPE_REDIS_SERVER", binary)
    with redis_server_process() as server:
        assert server.info.version == info.version
        [text] = server.run(("INFO", "server"), timeout=5)
    fields = dict(line.split(":", 1) for line in text.decode().splitlines() if ":" in line)
    # Valkey also reports redis_version (7.2.4, for old clients): not its own.
    assert fields.get("server_name", "redis") == info.kind
    assert fields[f"{info.kind}_version"] == info.version_string


@pytest.mark.parametrize("binary", BINARIES)
def test_tls_claim_matches_what_the_binary_does(
    binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = server_info(binary)
    monkeypatch.setenv("TRIOPIPE_REDIS_SERVER", binary)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls_port = _free_port()
    settings = {
        "tls_port": tls_port,
        "tls_cert_file": tmp_path / "server.pem",
        "tls_key_file": tmp_path / "server.key",
        "tls_ca_cert_file": tmp_path / "ca.pem",
        "tls_auth_clients": "no",
    }
    if not info.tls:
        with pytest.raises(RedisServerError, match="TLS"), redis_server_process(**settings):
            pytest.fail(f"{info} claims no TLS but started with a TLS port")
        return
    with redis_server_process(**settings):
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with (
            socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as sock,
        ):
            sock.sendall(b"PING\r\n")
            assert sock.recv(100) == b"+PONG\r\n"


@pytest.mark.parametrize("binary", BINARIES)
def test_cluster_claim_matches_the_version(binary: str) -> None:
    info = server_info(binary)
    since = {"redis": (7, 0, 0), "valkey": (7, 2, 0)}[info.kind]
    assert info.cluster is (info.version >= since)


def test_probe_is_cached_per_binary() -> None:
    binary = find_real_binary()
    first = server_info(binary)
    assert server_info(binary) == first
    assert _binary._probe.cache_info().hits >= 1


INFO = ServerInfo(
    kind="valkey",
    version=(9, 1, 2),
    tls=False,
    cluster=True,
    location="/opt/valkey-server",
    source="PATH",
)


@pytest.mark.parametrize(
    ("requirements", "reason"),
    [
        ({}, None),
        ({"cluster": True}, None),
        ({"valkey": "9.0"}, None),
        ({"valkey": "9.1.2"}, None),
        ({"redis": "7.4", "valkey": "9"}, None),
        ({"tls": True}, "needs TLS; Valkey 9.1.2 at /opt/valkey-server (from PATH; "),
        ({"valkey": "9.2"}, "needs Valkey 9.2+; Valkey 9.1.2"),
        ({"redis": "7.0"}, "needs Redis 7.0+; Valkey 9.1.2"),
        ({"redis": "6.2", "valkey": "10"}, "needs Redis 6.2+ or Valkey 10+; Valkey 9.1.2"),
    ],
)
def test_unmet_requirements_give_a_reason(
    requirements: dict[str, object], reason: str | None
) -> None:
    found = INFO.unmet(**requirements)  # type: ignore[arg-type]
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(reason)


def test_cluster_requirement() -> None:
    old = ServerInfo("redis", (6, 2, 14), True, False, "/usr/bin/redis-server", "PATH")
    assert old.unmet(cluster=True) == (
        "needs a server that can run a cluster; Redis 6.2.14 at /usr/bin/redis-server "
        "(from PATH; TLS: yes, cluster: no)"
    )


@pytest.mark.parametrize("version", ["", "7.x", "7.0.0.1", "v7"])
def test_bad_versions_are_refused(version: str) -> None:
    with pytest.raises(ValueError, match="a server version is like"):
        INFO.unmet(redis=version)


# --- helpers ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
