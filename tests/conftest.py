"""Test-suite configuration: every ``async def`` test runs on trio and on asyncio.

The fixtures of :mod:`triopipe.testing` come from the package's pytest plugin
(entry point ``triopipe``), so install the package first:
``pip install -e '.[test]'``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
import trustme
from helpers import free_port

from triopipe.testing import RedisServerProcess, redis_server_process, server_info

# The plugin's own tests run small test suites of a user's project.
pytest_plugins = ["pytester"]

# One parameter per event loop. Module scope, like anyio's own default: tests
# are grouped by backend, and module-scoped async fixtures remain possible.
# asyncio runs in debug mode, which reports never-awaited coroutines and
# unclosed transports.
_BACKENDS = [
    pytest.param(("asyncio", {"debug": True}), id="asyncio"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(scope="module", params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """The event loop (and its options) that async tests and fixtures run on."""
    return request.param


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> None:
    """Mark every ``async def`` test with ``pytest.mark.anyio``.

    This must happen while the test is collected, before pytest works out its
    fixtures: marking in ``pytest_collection_modifyitems`` would be too late
    to parametrize it over ``anyio_backend`` (anyio then rebuilds the item and
    loses the test's own ``parametrize`` arguments).
    """
    if not collector.istestfunction(obj, name):
        return
    # Hypothesis wraps the test; look at the coroutine function inside.
    inner = getattr(getattr(obj, "hypothesis", None), "inner_test", obj)
    if not inspect.iscoroutinefunction(inner):
        return
    own_marks = getattr(obj, "pytestmark", [])
    if collector.get_closest_marker("trio") or any(m.name == "trio" for m in own_marks):
        return  # left to pytest-trio
    pytest.mark.anyio(obj)
    pytest.mark.usefixtures("anyio_backend")(obj)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(
    ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RedisServerProcess, int]]:
    """A redis-server with a plain port (for the harness) and a TLS port, certified by ``ca``."""
    # The binary is asked itself: a build without TLS still knows the tls-*
    # settings' names, and fails only when told to listen with TLS.
    reason = server_info().unmet(tls=True)
    if reason is not None:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("localhost")
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    ca_file = directory / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    tls_port = free_port()
    with redis_server_process(
        tls_port=tls_port,
        tls_cert_file=cert_file,
        tls_key_file=key_file,
        tls_ca_cert_file=ca_file,
        tls_auth_clients="no",
    ) as server:
        yield server, tls_port
