"""The pytest plugin as a user's project sees it: pytester runs small test suites.

Each inner suite runs in a subprocess (its own event loops and plugin
state), with every installed plugin loaded as it would be for a user: anyio's,
pytest-asyncio (strict mode), pytest-trio, and the extra's own. The inner
suites treat warnings as errors. The servers they start are those of the
outer session (TRIOPIPE_REDIS_SERVER passes through), so both CI sessions
check the plugin on their server.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from triopipe.testing import (
    RedisServerProcess,
    redis_cluster_processes,
    redis_server_process,
    redis_server_processes,
    server_info,
)
from triopipe.testing._existing import ExistingServer

INI = """
[pytest]
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""

# The same test for each runner: only the marker differs.
THREE_LINES = """
import pytest

@pytest.mark.{marker}
async def test_counter(redis_client):
    assert await redis_client.incr("n") == 1
"""

RUNNERS = {
    "anyio": "anyio",
    "pytest-asyncio": "asyncio",
    "pytest-trio": "trio",
}


# anyio's tests run on both of its backends (as anyio's recent default does).
CONFTEST = """
import pytest

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An empty project with strict warnings."""
    pytester.makefile(".ini", pytest=INI)
    pytester.makeconftest(CONFTEST)
    return pytester


def _passed(runner: str, tests: int) -> int:
    """How many tests pass: anyio's run once per backend."""
    return 2 * tests if runner == "anyio" else tests


def _three_line_tests(pytester: pytest.Pytester, marker: str, copies: int = 2) -> None:
    # Several copies: each must find the server emptied by the fixtures.
    source = THREE_LINES.format(marker=marker)
    pytester.makepyfile(**{f"test_copy{i}": source for i in range(copies)})


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args, timeout=120)


@pytest.mark.parametrize("runner", RUNNERS)
def test_three_lines_pass_under_each_runner(project: pytest.Pytester, runner: str) -> None:
    _three_line_tests(project, RUNNERS[runner])
    result = run(project)
    result.assert_outcomes(passed=_passed(runner, 2))
    # The header says which server the fixtures ran.
    result.stdout.fnmatch_lines(["triopipe: server binary: * at * (*TLS: *, cluster: *)"])


def test_runners_mixed_in_one_session(project: pytest.Pytester) -> None:
    # Used to cascade into an AssertionError inside pytest's fixture code.
    project.makepyfile(
        test_mixed=textwrap.dedent(
            """
            import pytest
            import triopipe

            @pytest.mark.anyio
            async def test_anyio(redis_client, redis_server):
                assert await redis_client.incr("n") == 1
                async with triopipe.open_client(redis_server.url) as own:
                    await redis_server.restart()
                    assert await own.ping() is True

            @pytest.mark.asyncio
            async def test_asyncio(redis_client, redis_server):
                assert await redis_client.incr("n") == 1
                async with triopipe.open_client(redis_server.url) as own:
                    await redis_server.restart()
                    assert await own.ping() is True

            @pytest.mark.trio
            async def test_trio(redis_client, redis_server):
                assert await redis_client.incr("n") == 1
                async with triopipe.open_client(redis_server.url) as own:
                    await redis_server.restart()
                    assert await own.ping() is True

            def test_sync(redis_sync_client, redis_url, redis_server_info):
                assert redis_sync_client.incr("n") == 1
                assert redis_url.startswith("redis://127.0.0.1:")
                assert redis_server_info.kind in ("redis", "valkey")
            """
        )
    )
    run(project).assert_outcomes(passed=5)


def test_shard_and_cluster_fixtures_under_each_runner(project: pytest.Pytester) -> None:
    body = """
    @pytest.mark.{marker}
    async def test_{marker}(redis_shard_urls, redis_cluster_urls, redis_shards):
        async with triopipe.open_sharded_client(redis_shard_urls) as shards:
            assert await shards.dbsize() == 0
            await shards.mset({{"a": 1, "b": 2, "c": 3}})
        async with triopipe.open_cluster_client(redis_cluster_urls) as cluster:
            assert await cluster.dbsize() == 0
            await cluster.set("k", "v")
        await redis_shards[0].stop()
        assert not redis_shards[0].running
    """
    source = "import pytest\nimport triopipe\n" + "".join(
        textwrap.dedent(body).format(marker=marker) for marker in RUNNERS.values()
    )
    project.makepyfile(test_many=source)
    result = run(project)
    # Skipped only where the binary cannot form a cluster, with that reason.
    outcomes = result.parseoutcomes()
    if outcomes.get("skipped"):
        result.stdout.fnmatch_lines(["*needs a server that can run a cluster*"])
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 4, outcomes


@pytest.fixture
def existing() -> Iterator[RedisServerProcess]:
    """A server started out here, which the inner suites are told to use."""
    with redis_server_process() as server:
        yield server


def _keys(server: RedisServerProcess) -> list[bytes]:
    return server.run(("KEYS", "*"), timeout=5)


@pytest.mark.parametrize("runner", RUNNERS)
def test_existing_server_from_the_environment(
    project: pytest.Pytester,
    existing: RedisServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    runner: str,
) -> None:
    monkeypatch.setenv("TRIOPIPE_TEST_REDIS_URL", existing.url)
    _three_line_tests(project, RUNNERS[runner])
    result = run(project)
    result.assert_outcomes(passed=_passed(runner, 2))
    result.stdout.fnmatch_lines([f"triopipe: existing server: {existing.url}"])
    # The last test's key is still there: it used this server.
    assert existing.run(("GET", "n"), timeout=5) == [b"1"]


def test_existing_server_that_holds_data_is_refused(
    project: pytest.Pytester, existing: RedisServerProcess
) -> None:
    existing.run(("SET", "precious", "data"), ("SELECT", "3"), ("SET", "more", "1"), timeout=5)
    _three_line_tests(project, "anyio")
    result = run(project, f"--redis-url={existing.url}")
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        ["*holds data (db0: 1 key, db3: 1 key), and the triopipe fixtures empty it before *"]
    )
    assert existing.run(("GET", "precious"), timeout=5) == [b"data"]
    # Told that the data may go, the fixtures empty it and the tests run.
    result = run(project, f"--redis-url={existing.url}", "--redis-allow-flush")
    result.assert_outcomes(passed=4)
    assert existing.run(("EXISTS", "precious"), timeout=5) == [b"0"]


def test_existing_database_is_the_only_one_checked_and_emptied(
    project: pytest.Pytester, existing: RedisServerProcess
) -> None:
    existing.run(("SET", "elsewhere", "kept"), timeout=5)
    _three_line_tests(project, "asyncio")
    run(project, f"--redis-url={existing.url}/5").assert_outcomes(passed=2)
    assert existing.run(("GET", "elsewhere"), timeout=5) == [b"kept"]
    assert existing.run(("SELECT", "5"), ("GET", "n"), timeout=5) == [b"OK", b"1"]


def test_existing_server_without_a_binary(
    project: pytest.Pytester, existing: RedisServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inner session finds no binary at all (nothing on PATH, no extra):
    # URL and client fixtures work, fixtures that start servers skip.
    project.makeconftest(
        """
        import os
        from triopipe.testing import _binary

        os.environ["PATH"] = os.devnull
        os.environ.pop("TRIOPIPE_REDIS_SERVER", None)
        _binary._BUNDLE_PACKAGE = "triopipe_no_such_package"
        """
    )
    project.makepyfile(
        test_needs_binary="""
        import pytest

        @pytest.mark.anyio
        async def test_restarts(redis_server):
            await redis_server.restart()
        """
    )
    _three_line_tests(project, "trio")
    monkeypatch.setenv("TRIOPIPE_TEST_REDIS_URL", existing.url)
    result = run(project)
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "triopipe: no server binary: *(1) the environment variable*(3) the binary of the "
            "extra*",
            "*redis_server starts throwaway servers and no server binary was found*",
        ]
    )


def test_existing_cluster_and_shards(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = server_info().unmet(cluster=True)
    if reason is not None:
        pytest.skip(reason)
    project.makepyfile(
        test_cluster="""
        import pytest
        import triopipe

        @pytest.mark.asyncio
        async def test_cluster(redis_cluster_urls, redis_shard_urls):
            assert len(redis_shard_urls) == 2
            async with triopipe.open_cluster_client(redis_cluster_urls) as redis:
                assert await redis.dbsize() == 0
                await redis.mset({"{a}1": 1, "{b}2": 2, "{c}3": 3})
            async with triopipe.open_sharded_client(redis_shard_urls) as redis:
                assert await redis.dbsize() == 0
                await redis.set("k", "v")
        """
    )
    with (
        redis_cluster_processes(masters=3) as cluster,
        redis_server_processes(2) as shards,
    ):
        monkeypatch.setenv("TRIOPIPE_TEST_REDIS_CLUSTER_URL", cluster.urls[1])
        urls = ",".join(shard.url for shard in shards)
        run(project, f"--redis-shard-urls={urls}").assert_outcomes(passed=1)
        # Every primary got its key: the inner test used this cluster.
        assert sum(int(node.run(("DBSIZE",), timeout=5)[0]) for node in cluster.primaries()) == 3
        # Data in one primary is found and refused.
        result = run(project, f"--redis-shard-urls={urls}")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*existing server at redis://127.0.0.1:* holds data*"])


def test_requires_server_marker(project: pytest.Pytester) -> None:
    project.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.requires_server(redis="99", valkey="99")
        def test_future(redis_url):
            raise AssertionError("must be skipped")

        @pytest.mark.requires_server(redis="2.0", valkey="7.2")
        def test_any_current(redis_url):
            pass
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * needs Redis 99+ or Valkey 99+; * at *"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('requires_server(tls=True, vaklay="9")', "unknown requirement(s) vaklay"),
        ('requires_server("9.0")', "positional args"),
        ('requires_server(redis="seven")', "a server version is like '7', '7.4'"),
    ],
)
def test_requires_server_refuses_bad_arguments(
    project: pytest.Pytester, marker: str, message: str
) -> None:
    project.makepyfile(
        test_bad=f"""
        import pytest

        @pytest.mark.{marker}
        def test_it():
            pass
        """
    )
    result = run(project)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*@pytest.mark.requires_server: *{message}*"])


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--redis-url=http://localhost"], {}, "--redis-url: invalid Redis URL"),
        ([], {"TRIOPIPE_TEST_REDIS_CLUSTER_URL": "redis://h:port"}, "TRIOPIPE_TEST_REDIS_"),
        ([], {"TRIOPIPE_TEST_REDIS_ALLOW_FLUSH": "maybe"}, "expected 1/true/yes/on"),
        (["--redis-shard-urls= , "], {}, "--redis-shard-urls: no URL given"),
    ],
)
def test_bad_settings_are_usage_errors(
    project: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _three_line_tests(project, "anyio", copies=1)
    result = run(project, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_requires_server_checks_the_existing_server(
    project: pytest.Pytester, existing: RedisServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIOPIPE_TEST_REDIS_URL", existing.url)
    project.makepyfile(
        test_marked="""
        import pytest

        @pytest.mark.requires_server(redis="99", valkey="99")
        def test_future(redis_url):
            raise AssertionError("must be skipped")
        """
    )
    result = run(project)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED * at {existing.url} (an existing server; *"])


def test_existing_server_describes_itself_like_its_binary(existing: RedisServerProcess) -> None:
    described = ExistingServer(existing.url, allow_flush=False, given_by="a test").info()
    binary = existing.info
    assert (described.kind, described.version) == (binary.kind, binary.version)
    assert (described.tls, described.cluster, described.source) == (False, False, "existing")
