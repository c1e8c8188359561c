"""Tests of the real-server harness itself (triopipe.testing), on trio and asyncio."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import pytest

import triopipe.testing
from triopipe.testing import (
    RedisServer,
    RedisServerError,
    RedisServerProcess,
    _server,
    redis_server,
    redis_server_process,
)

from .raw_resp import RawErrorReplyError, assert_refused, command, process_exists


async def test_server_answers_ping() -> None:
    async with redis_server() as server:
        assert server.host == "127.0.0.1"
        assert server.url == f"redis://127.0.0.1:{server.port}"
        assert server.running
        assert server.directory.is_dir()
        assert await command(server.port, "PING") == b"PONG"
        with pytest.raises(RawErrorReplyError, match="unknown command"):
            await command(server.port, "NO-SUCH-COMMAND")
        info = await command(server.port, "INFO", "server")
        assert isinstance(info, bytes)
        assert f"process_id:{server.pid}\r\n".encode() in info


async def test_default_settings() -> None:
    async with redis_server() as server:
        assert await command(server.port, "CONFIG", "GET", "save") == [b"save", b""]
        assert await command(server.port, "CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
        assert await command(server.port, "CONFIG", "GET", "dir") == [
            b"dir",
            os.fsencode(server.directory.resolve()),
        ]
        assert server.log_file.is_file()


async def test_stop_then_connect_fails() -> None:
    async with redis_server() as server:
        pid = server.pid
        await server.stop()
        assert not server.running
        assert not process_exists(pid)
        await assert_refused(server.port)
        with pytest.raises(RuntimeError, match="not running"):
            _ = server.pid
        await server.stop()  # stopping twice is fine


async def test_restart_keeps_port_and_directory() -> None:
    async with redis_server() as server:
        port, directory, pid = server.port, server.directory, server.pid
        await command(port, "SET", "k", "v")
        await server.restart()
        assert (server.port, server.directory) == (port, directory)
        assert server.pid != pid
        assert await command(port, "PING") == b"PONG"
        assert await command(port, "GET", "k") is None  # no persistence by default


async def test_restart_after_stop() -> None:
    async with redis_server() as server:
        await server.stop()
        await server.restart()
        assert await command(server.port, "PING") == b"PONG"


async def test_kill() -> None:
    async with redis_server() as server:
        pid = server.pid
        await server.kill()
        assert not server.running
        assert not process_exists(pid)
        await assert_refused(server.port)
        await server.restart()
        assert await command(server.port, "PING") == b"PONG"


async def test_config_passthrough() -> None:
    async with redis_server(
        maxclients=7,
        client_output_buffer_limit="normal 1mb 0 0",
        lazyfree_lazy_user_del=True,
    ) as server:
        port = server.port
        assert await command(port, "CONFIG", "GET", "maxclients") == [b"maxclients", b"7"]
        reply = await command(port, "CONFIG", "GET", "client-output-buffer-limit")
        assert isinstance(reply, list)
        assert isinstance(reply[1], bytes)
        assert reply[1].startswith(b"normal 1048576 0 0 ")
        assert await command(port, "CONFIG", "GET", "lazyfree-lazy-user-del") == [
            b"lazyfree-lazy-user-del",
            b"yes",
        ]
        argv = server.process.argv
        assert argv[argv.index("--maxclients") + 1] == "7"


async def test_settings_override_defaults() -> None:
    async with redis_server(appendonly=True) as server:
        assert await command(server.port, "CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]


@pytest.mark.parametrize(
    ("value", "args"),
    [
        ("normal 1mb 0 0", ["normal", "1mb", "0", "0"]),
        ("HELLO ''", ["HELLO", ""]),
        ('"two words"', ["two words"]),
        ("", [""]),
        (("HELLO", ""), ["HELLO", ""]),
        (Path("/a b/c"), ["/a b/c"]),
        (True, ["yes"]),
        (False, ["no"]),
        (7, ["7"]),
        (0.5, ["0.5"]),
    ],
)
def test_setting_values_become_arguments(value: _server.ConfigValue, args: list[str]) -> None:
    assert _server._setting_args("x", value) == args


async def test_multi_argument_settings() -> None:
    async with redis_server(rename_command="HELLO ''", save=("900", "1")) as server:
        with pytest.raises(RawErrorReplyError, match="unknown command"):
            await command(server.port, "HELLO", "3")
        assert await command(server.port, "CONFIG", "GET", "save") == [b"save", b"900 1"]


async def test_password_protected_server() -> None:
    async with redis_server(requirepass="s3cret") as server:
        with pytest.raises(RawErrorReplyError, match="NOAUTH"):
            await command(server.port, "PING")
        await server.restart()
        assert server.running


async def test_server_without_default_user_counts_as_answering() -> None:
    async with redis_server(user="default off") as server:
        with pytest.raises(RawErrorReplyError, match="NOAUTH"):
            await command(server.port, "PING")


async def test_debug_command_enabled() -> None:
    async with redis_server() as server:
        assert await command(server.port, "DEBUG", "SLEEP", "0") == b"OK"


@pytest.mark.parametrize("name", ["port", "bind", "dir", "daemonize", "logfile"])
def test_managed_settings_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"managed by triopipe\.testing"):
        RedisServerProcess(**{name: "1"})


def test_bad_setting_value_type() -> None:
    with pytest.raises(TypeError, match="maxclients"):
        RedisServerProcess(maxclients=[1, 2])  # type: ignore[list-item]


async def test_bad_setting_reports_the_log() -> None:
    with pytest.raises(RedisServerError, match="Bad directive") as excinfo:
        async with redis_server(no_such_setting="1"):
            pytest.fail("the server must not start")
    assert "exited with status" in str(excinfo.value)


async def test_two_servers_at_once() -> None:
    async with redis_server() as one, redis_server() as two:
        assert one.port != two.port
        assert one.directory != two.directory
        await command(one.port, "SET", "k", "one")
        assert await command(two.port, "GET", "k") is None


async def test_port_taken_by_someone_else_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        probes = iter([taken])
        real_probe = _server._probe_free_port
        monkeypatch.setattr(
            _server, "_probe_free_port", lambda: next(probes, None) or real_probe()
        )
        async with redis_server() as server:
            assert server.port != taken
            assert await command(server.port, "PING") == b"PONG"


async def test_restart_fails_when_port_was_taken() -> None:
    async with redis_server() as server:
        await server.stop()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", server.port))
            squatter.listen()
            with pytest.raises(RedisServerError, match="Address already in use"):
                await server.restart()
        await server.restart()
        assert await command(server.port, "PING") == b"PONG"


async def test_env_var_names_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    binary = triopipe.testing.find_redis_server()
    monkeypatch.setenv("TRIOPIPE_REDIS_SERVER", binary)
    monkeypatch.setenv("PATH", "")
    async with redis_server() as server:
        assert server.process.argv[0] == binary
        assert await command(server.port, "PING") == b"PONG"


async def test_directory_removed_and_process_stopped_on_exit() -> None:
    async with redis_server() as server:
        directory, pid = server.directory, server.pid
        assert directory.is_dir()
    assert not directory.exists()
    assert not process_exists(pid)
    await assert_refused(server.port)


async def test_cleanup_when_the_body_raises() -> None:
    seen: list[tuple[Path, int]] = []

    async def use_and_fail() -> None:
        async with redis_server() as server:
            seen.append((server.directory, server.pid))
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await use_and_fail()
    [(directory, pid)] = seen
    assert not directory.exists()
    assert not process_exists(pid)


async def test_cleanup_when_the_body_is_cancelled() -> None:
    with anyio.CancelScope() as scope:
        async with redis_server() as server:
            directory, pid = server.directory, server.pid
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert not directory.exists()
    assert not process_exists(pid)


async def test_start_can_be_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[int] = []
    real_spawn = RedisServerProcess._spawn

    def spawn(self: RedisServerProcess) -> object:
        process = real_spawn(self)
        spawned.append(process.pid)
        return process

    def never_answers(*commands: object, timeout: float) -> list[bytes]:
        raise ConnectionRefusedError

    monkeypatch.setattr(RedisServerProcess, "_spawn", spawn)
    monkeypatch.setattr(_server, "_run_commands", never_answers)
    # Without cancellation the wait would last the full 10 s start timeout.
    started = False
    with anyio.fail_after(5), anyio.move_on_after(0.3) as scope:
        async with redis_server():
            started = True
    assert scope.cancelled_caught
    assert not started
    assert spawned
    assert not any(process_exists(pid) for pid in spawned)


def test_sync_context_manager() -> None:
    with redis_server_process(maxclients=9) as server:
        directory = server.directory
        assert server.url == f"redis://127.0.0.1:{server.port}"
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert sock.recv(64) == b"+PONG\r\n"
        server.restart()
        assert process_exists(server.pid)
        server.kill()
        assert not server.running
    assert not directory.exists()


async def test_redis_server_fixture(redis_server: RedisServer) -> None:
    assert await command(redis_server.port, "PING") == b"PONG"
    await redis_server.kill()
    await assert_refused(redis_server.port)
    await redis_server.restart()
    assert await command(redis_server.port, "DBSIZE") == 0


async def test_redis_url_fixture_starts_empty(redis_url: str) -> None:
    # Runs once per backend against the same session server: the second run
    # sees an empty database only if the fixture flushed the first run's key.
    port = int(redis_url.rsplit(":", 1)[1])
    assert redis_url == f"redis://127.0.0.1:{port}"
    assert await command(port, "DBSIZE") == 0
    await command(port, "SET", "left-behind", "1")
    assert await command(port, "DBSIZE") == 1


def test_redis_url_fixture_is_shared(
    redis_url: str, redis_session_server: RedisServerProcess
) -> None:
    assert redis_url == redis_session_server.url
    assert redis_session_server.running
