"""Throwaway ``redis-server`` processes for tests.

Theory of operation: :class:`RedisServerProcess` is the one implementation of
process management, written with blocking calls (``subprocess``, a plain
socket, ``time.sleep``). :func:`redis_server_process` drives it from plain
``with`` code; :func:`redis_server` drives the very same object from async
code by running each blocking step in a worker thread
(:func:`anyio.to_thread.run_sync`), so it works unchanged on trio and asyncio.

Starting a server:

1. pick a free port by binding port 0 on 127.0.0.1 (and remember it, so two
   servers of this process never race for the same port);
2. spawn ``redis-server`` with every setting on the command line, a fresh
   temporary directory as ``dir`` and a log file in it;
3. poll every 10 ms: if the process has exited, it failed (when its log says
   the port was taken by someone else in the meantime, go back to 1 with a new
   port; otherwise raise :class:`RedisServerError` with the log's tail); else
   send ``PING`` and ``INFO server`` over a plain socket; the server is ready
   when ``PING`` answers ``PONG`` and ``INFO`` reports our child's pid (so
   another server that grabbed the port cannot be mistaken for ours).

Stopping sends SIGTERM and waits, then SIGKILL after 5 s. ``restart`` stops and
starts again on the same port and directory. Every child is always reaped.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

import anyio
import anyio.from_thread
import anyio.to_thread

from ._binary import ENV_VAR as ENV_VAR
from ._binary import RedisServerNotFoundError as RedisServerNotFoundError
from ._binary import ServerInfo, describe_binary, locate_redis_server
from ._binary import find_redis_server as find_redis_server

__all__ = [
    "ENV_VAR",
    "ConfigValue",
    "RedisServer",
    "RedisServerError",
    "RedisServerNotFoundError",
    "RedisServerProcess",
    "find_redis_server",
    "redis_server",
    "redis_server_process",
    "redis_server_processes",
    "redis_servers",
]

#: The value of a ``redis-server`` setting: see :class:`RedisServerProcess`.
ConfigValue: TypeAlias = "str | int | float | bool | os.PathLike[str] | Sequence[str]"

_HOST = "127.0.0.1"
_POLL_INTERVAL = 0.01
_READY_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
# A fresh server answers in microseconds; a listener that never answers is not
# our server (it may be whoever took the port), so do not wait long for it.
_PROBE_TIMEOUT = 0.2
_COMMAND_TIMEOUT = 30.0
_PORT_ATTEMPTS = 10
_LOG_TAIL_LINES = 20
_LOG_NAME = "redis.log"
# Anything the server prints before it opens its log file (a bad setting, for
# one) goes to stdout/stderr, which land here.
_OUTPUT_NAME = "redis-output.log"

# Settings the harness owns: changing them would break finding or stopping
# the server.
_MANAGED_SETTINGS = frozenset({"port", "bind", "dir", "daemonize", "logfile"})


class RedisServerError(RuntimeError):
    """Raised when a ``redis-server`` process fails to start or to restart.

    The message ends with the tail of the server's log, which usually names
    the cause (a bad setting, a port already in use, ...).
    """


def _setting_args(name: str, value: ConfigValue) -> list[str]:
    """The command-line arguments that follow ``--name`` for ``value``."""
    if isinstance(value, bool):
        return ["yes" if value else "no"]
    if isinstance(value, str):
        # Like a line of redis.conf: "normal 1mb 0 0" is four arguments and
        # "HELLO ''" two; an empty string is one empty argument (save "").
        return shlex.split(value) or [""]
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, os.PathLike):
        return [os.fspath(value)]
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return list(value)
    raise TypeError(
        f"setting {name!r}: expected str, int, float, bool, path or a sequence of str, "
        f"got {value!r}"
    )


def _user_settings(config: Mapping[str, ConfigValue]) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for key, value in config.items():
        name = key.replace("_", "-")
        if name in _MANAGED_SETTINGS:
            raise ValueError(f"setting {name!r} is managed by triopipe.testing")
        settings[name] = _setting_args(name, value)
    return settings


def _default_settings(info: ServerInfo) -> dict[str, list[str]]:
    """Settings of every test server, unless the caller overrides them."""
    settings = {"save": [""], "appendonly": ["no"]}
    if info.version >= (7, 0, 0):
        # Fault tests need DEBUG SLEEP and friends; Redis 7 refuses DEBUG by
        # default, and older versions do not know this setting.
        settings["enable-debug-command"] = ["local"]
    return settings


# Ports handed to servers of this process that are still open, so that a
# concurrent start cannot take the port of a stopped server awaiting restart.
_reserved_ports: set[int] = set()
_reserved_ports_lock = threading.Lock()


def _probe_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _reserve_port() -> int:
    while True:
        port = _probe_free_port()
        with _reserved_ports_lock:
            if port not in _reserved_ports:
                _reserved_ports.add(port)
                return port


def _release_port(port: int) -> None:
    with _reserved_ports_lock:
        _reserved_ports.discard(port)


class _ErrorReplyError(Exception):
    """An error reply to one of the harness's own commands."""


def _encode_command(args: tuple[str, ...]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(sock: socket.socket, buffer: bytearray) -> bytes:
    """Read one simple, integer or bulk string reply and return its payload.

    ``buffer`` holds bytes received but not consumed yet; a null bulk string
    comes back as ``b""``.
    """
    while True:
        end = buffer.find(b"\r\n")
        if end >= 0:
            kind, line = buffer[0], bytes(buffer[1:end])
            if kind in b"+:-":
                del buffer[: end + 2]
                if kind == ord("-"):
                    raise _ErrorReplyError(line.decode(errors="replace"))
                return line
            if kind != ord("$"):
                raise _ErrorReplyError(f"unexpected reply {bytes(buffer[: end + 2])!r}")
            length = int(line)
            size = end + 2 + (length + 2 if length >= 0 else 0)
            if len(buffer) >= size:
                payload = bytes(buffer[end + 2 : size - 2]) if length >= 0 else b""
                del buffer[:size]
                return payload
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        buffer += chunk


def _run_commands(port: int, *commands: tuple[str, ...], timeout: float) -> list[bytes]:
    """Send ``commands`` in one write over a fresh connection; return the replies.

    Raises:
        OSError: if the server cannot be reached or drops the connection.
        _ErrorReplyError: if a command gets an error reply.
    """
    with socket.create_connection((_HOST, port), timeout=timeout) as sock:
        return _exchange(sock, commands)


def _exchange(sock: socket.socket, commands: Sequence[tuple[str, ...]]) -> list[bytes]:
    """Send ``commands`` in one write on ``sock``; return their replies."""
    sock.sendall(b"".join(_encode_command(command) for command in commands))
    buffer = bytearray()
    return [_read_reply(sock, buffer) for _ in commands]


def _tail(path: Path, offset: int = 0) -> str:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _reap(process: subprocess.Popen[bytes], *, kill: bool) -> None:
    """End ``process`` (SIGKILL if ``kill``, else SIGTERM then SIGKILL) and reap it."""
    try:
        if process.poll() is None:
            if kill:
                process.kill()
            else:
                process.terminate()
                try:
                    process.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
    finally:
        # Never leave a child behind, even when interrupted above.
        if process.poll() is None:
            process.kill()
        process.wait()


class RedisServerProcess:
    """One ``redis-server`` process in its own temporary directory (blocking API).

    Get one from :func:`redis_server_process`, which starts it and owns it;
    :class:`RedisServer` is the async face of the same object. Settings are
    passed on the command line as ``--name value...``; underscores in names
    become dashes. A string value is split like a line of ``redis.conf``
    (``"normal 1mb 0 0"`` gives four arguments, ``"HELLO ''"`` two, and
    ``'"a b"'`` one), a sequence of strings gives one argument per item, a
    path one argument, and booleans become ``yes``/``no``.

    Persistence is off (``save ""``, ``appendonly no``) and, on Redis 7 and
    later, ``enable-debug-command`` is ``local``, unless ``config`` says
    otherwise. With ``requirepass`` set, the harness authenticates its own
    connections.

    Args:
        **config: ``redis-server`` settings, e.g. ``maxclients=7``,
            ``client_output_buffer_limit="normal 1mb 0 0"`` or
            ``rename_command=("HELLO", "")``. ``port``, ``bind``, ``dir``,
            ``daemonize`` and ``logfile`` belong to the harness.

    Raises:
        RedisServerNotFoundError: if there is no ``redis-server`` binary.
        ValueError: if ``config`` sets a setting that the harness owns.
        TypeError: if a setting's value is not a str, int, float, bool, path or
            sequence of str.
    """

    def __init__(self, **config: ConfigValue) -> None:
        self._executable, self._source = locate_redis_server()
        self._settings = _user_settings(config)
        self._defaults: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._directory: Path | None = None
        self._port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"

    @property
    def host(self) -> str:
        """The address the server listens on, always ``127.0.0.1``."""
        return _HOST

    @property
    def port(self) -> int:
        """The server's TCP port; it stays the same across restarts."""
        return self._port

    @property
    def url(self) -> str:
        """The server's URL, ``redis://127.0.0.1:PORT``."""
        return f"redis://{_HOST}:{self._port}"

    @property
    def directory(self) -> Path:
        """The server's temporary working directory, removed on exit."""
        if self._directory is None:
            raise RuntimeError("the server has not been opened")
        return self._directory

    @property
    def log_file(self) -> Path:
        """The server's log file, inside :attr:`directory`."""
        return self.directory / _LOG_NAME

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        process = self._process
        return process is not None and process.poll() is None

    @property
    def pid(self) -> int:
        """The process id of the running server.

        Raises:
            RuntimeError: if the server is not running.
        """
        process = self._process
        if process is None or process.poll() is not None:
            raise RuntimeError("the server is not running")
        return process.pid

    @property
    def info(self) -> ServerInfo:
        """What the server binary is and can do (kind, version, TLS, cluster)."""
        return describe_binary(self._executable, self._source)

    @property
    def argv(self) -> list[str]:
        """The command line that starts the server."""
        directory = self.directory
        settings = {
            "port": [str(self._port)],
            "bind": [_HOST],
            "dir": [str(directory)],
            "daemonize": ["no"],
            "logfile": [str(directory / _LOG_NAME)],
            **self._defaults,
            **self._settings,
        }
        argv = [self._executable]
        for name, args in settings.items():
            argv += [f"--{name}", *args]
        return argv

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited within 5 s.

        Does nothing if it is not running. :meth:`restart` starts it again.
        """
        with self._lock:
            self._stop(kill=False)

    def kill(self) -> None:
        """Kill the server with SIGKILL, without letting it shut down cleanly.

        Does nothing if it is not running. :meth:`restart` starts it again.
        """
        with self._lock:
            self._stop(kill=True)

    def restart(self, checkpoint: Callable[[], object] | None = None) -> None:
        """Stop the server if it runs, then start it again on the same port.

        Data is lost unless persistence was switched on in the settings.
        ``checkpoint`` is called while waiting and may raise to abort.

        Raises:
            RedisServerError: if the server does not come back, e.g. because
                another process took its port meanwhile.
        """
        with self._lock:
            if self._directory is None:
                raise RuntimeError("the server has not been opened")
            self._stop(kill=False)
            self._start(checkpoint, new_port=False)

    def open(self, checkpoint: Callable[[], object] | None = None) -> None:
        """Create the directory and start the server; undo everything on failure.

        ``checkpoint`` is called while waiting and may raise to abort (the async
        face passes :func:`anyio.from_thread.check_cancelled`).
        """
        with self._lock:
            if self._directory is not None:
                raise RuntimeError("the server has already been opened")
            self._directory = Path(tempfile.mkdtemp(prefix="triopipe-redis-"))
            try:
                self._defaults = _default_settings(self.info)
                self._start(checkpoint, new_port=True)
            except BaseException:
                self._close()
                raise

    def _close(self) -> None:
        """Stop the server, give back its port and remove its directory.

        Safe to call more than once, and after a failed or partial open.
        """
        try:
            self._stop(kill=False)
        finally:
            if self._port:
                _release_port(self._port)
            directory, self._directory = self._directory, None
            if directory is not None:
                shutil.rmtree(directory)

    def close(self) -> None:
        """Stop the server, give back its port and remove its directory (idempotent)."""
        with self._lock:
            self._close()

    def _stop(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is not None:
            _reap(process, kill=kill)

    def _start(self, checkpoint: Callable[[], object] | None, *, new_port: bool) -> None:
        for _ in range(_PORT_ATTEMPTS if new_port else 1):
            if new_port:
                if self._port:
                    _release_port(self._port)
                    self._port = 0
                self._port = _reserve_port()
            log_offset = _file_size(self.log_file)
            output_offset = _file_size(self.directory / _OUTPUT_NAME)
            process = self._spawn()
            try:
                ready = self._wait_ready(process, checkpoint)
            except BaseException:
                _reap(process, kill=True)
                raise
            if ready:
                self._process = process
                return
            _reap(process, kill=True)
            log = self._log_tail(log_offset, output_offset)
            if new_port and "Address already in use" in log:
                # Someone took the port between our probe and the server's bind.
                continue
            raise RedisServerError(
                f"redis-server exited with status {process.returncode} before answering "
                f"on port {self._port}:\n{log}"
            )
        raise RedisServerError(
            f"redis-server could not find a free port in {_PORT_ATTEMPTS} attempts"
        )

    def _spawn(self) -> subprocess.Popen[bytes]:
        directory = self.directory
        with (directory / _OUTPUT_NAME).open("ab") as output:
            return subprocess.Popen(
                self.argv,
                cwd=directory,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def _wait_ready(
        self, process: subprocess.Popen[bytes], checkpoint: Callable[[], object] | None
    ) -> bool:
        """Poll until ``process`` answers (True) or exits (False).

        Raises:
            RedisServerError: if it neither answers nor exits within 10 s.
        """
        our_pid = f"process_id:{process.pid}\r\n".encode()
        deadline = time.monotonic() + _READY_TIMEOUT
        while process.poll() is None:
            try:
                pong, info = self.run(("PING",), ("INFO", "server"), timeout=_PROBE_TIMEOUT)
            except OSError:
                pass  # not listening yet
            except _ErrorReplyError as exc:
                # It answers but wants credentials we do not have (ACL users):
                # we cannot ask for its pid, so trust that it is ours if our
                # process still runs.
                if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
                    return process.poll() is None
            else:
                if pong == b"PONG" and our_pid in info:
                    return True
            if time.monotonic() > deadline:
                raise RedisServerError(
                    f"redis-server did not answer on port {self._port} within "
                    f"{_READY_TIMEOUT:g} s:\n{self._log_tail(0, 0)}"
                )
            if checkpoint is not None:
                checkpoint()
            time.sleep(_POLL_INTERVAL)
        return False

    def _log_tail(self, log_offset: int, output_offset: int) -> str:
        parts = [
            _tail(self.directory / _OUTPUT_NAME, output_offset),
            _tail(self.log_file, log_offset),
        ]
        return "\n".join(part for part in parts if part) or "(the log is empty)"

    def run(self, *commands: tuple[str, ...], timeout: float) -> list[bytes]:
        """Run ``commands`` over a plain socket, authenticated with ``requirepass``."""
        password = self._settings.get("requirepass", [])
        if len(password) == 1 and password[0]:
            return _run_commands(self._port, ("AUTH", password[0]), *commands, timeout=timeout)[1:]
        return _run_commands(self._port, *commands, timeout=timeout)

    def flush(self) -> None:
        """Empty every database and the script cache, over a plain socket."""
        self.run(("FLUSHALL",), ("SCRIPT", "FLUSH"), timeout=_COMMAND_TIMEOUT)


@contextlib.contextmanager
def redis_server_process(**config: ConfigValue) -> Iterator[RedisServerProcess]:
    """Run a throwaway ``redis-server`` for the duration of a ``with`` block.

    The blocking counterpart of :func:`redis_server` (the same
    :class:`RedisServerProcess` underneath), for code that is not async; the
    session-wide pytest fixture uses it::

        with redis_server_process(maxclients=7) as server:
            print(server.url)

    On exit the server is stopped and its temporary directory removed,
    whatever happened in the block.

    Args:
        **config: ``redis-server`` settings, see :class:`RedisServerProcess`.

    Yields:
        The running server.

    Raises:
        RedisServerNotFoundError: if there is no ``redis-server`` binary.
        RedisServerError: if the server does not start.
    """
    process = RedisServerProcess(**config)
    try:
        process.open()
        yield process
    finally:
        process.close()


class RedisServer:
    """A throwaway ``redis-server``, as yielded by :func:`redis_server`.

    The async face of a :class:`RedisServerProcess` (available as
    :attr:`process`): its blocking steps run in worker threads.
    """

    def __init__(self, process: RedisServerProcess) -> None:
        self._process = process

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url} {state}>"

    @property
    def process(self) -> RedisServerProcess:
        """The underlying blocking process manager."""
        return self._process

    @property
    def host(self) -> str:
        """The address the server listens on, always ``127.0.0.1``."""
        return self._process.host

    @property
    def port(self) -> int:
        """The server's TCP port; it stays the same across restarts."""
        return self._process.port

    @property
    def url(self) -> str:
        """The server's URL, ``redis://127.0.0.1:PORT``."""
        return self._process.url

    @property
    def directory(self) -> Path:
        """The server's temporary working directory, removed on exit."""
        return self._process.directory

    @property
    def log_file(self) -> Path:
        """The server's log file, inside :attr:`directory`."""
        return self._process.log_file

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process.running

    @property
    def pid(self) -> int:
        """The process id of the running server.

        Raises:
            RuntimeError: if the server is not running.
        """
        return self._process.pid

    async def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited within 5 s.

        Does nothing if it is not running. :meth:`restart` starts it again.
        """
        await anyio.to_thread.run_sync(self._process.stop)

    async def kill(self) -> None:
        """Kill the server with SIGKILL, without letting it shut down cleanly.

        Does nothing if it is not running. :meth:`restart` starts it again.
        """
        await anyio.to_thread.run_sync(self._process.kill)

    async def restart(self) -> None:
        """Stop the server if it runs, then start it again on the same port.

        Data is lost unless persistence was switched on in the settings.

        Raises:
            RedisServerError: if the server does not come back, e.g. because
                another process took its port meanwhile.
        """
        await anyio.to_thread.run_sync(
            functools.partial(self._process.restart, anyio.from_thread.check_cancelled)
        )


@contextlib.asynccontextmanager
async def redis_server(**config: ConfigValue) -> AsyncIterator[RedisServer]:
    """Run a throwaway ``redis-server`` for the duration of an ``async with`` block.

    ::

        async with triopipe.testing.redis_server(maxclients=7) as server:
            async with triopipe.open_client(server.url) as redis:
                ...

    The server listens on a free port of 127.0.0.1 and works in a fresh
    temporary directory. On exit it is stopped and the directory removed,
    whatever happened in the block, even on cancellation. Waiting for the
    server to start can be cancelled.

    Args:
        **config: ``redis-server`` settings, e.g. ``maxclients=7`` or
            ``client_output_buffer_limit="normal 1mb 0 0"``; see
            :class:`RedisServerProcess`.

    Yields:
        The running server.

    Raises:
        RedisServerNotFoundError: if there is no ``redis-server`` binary.
        RedisServerError: if the server does not start.
    """
    process = RedisServerProcess(**config)
    try:
        await anyio.to_thread.run_sync(process.open, anyio.from_thread.check_cancelled)
        yield RedisServer(process)
    finally:
        # Cleanup must run to the end even when the block was cancelled.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(process.close)


def _in_parallel(steps: Sequence[Callable[[], object]]) -> None:
    """Run blocking ``steps`` in threads at once; wait for all, then raise the first failure."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(steps))) as pool:
        futures = [pool.submit(step) for step in steps]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


def _poll_until(
    ready: Callable[[], bool],
    timeout: float,
    interval: float,
    failure: Callable[[str], Exception],
    what: str,
) -> None:
    """Call ``ready`` every ``interval`` seconds until it says True.

    A process starting or busy (``OSError``, ``RuntimeError``) counts as not
    ready yet.

    Raises:
        Exception: ``failure(message)`` when ``timeout`` seconds pass first,
            the message naming ``what`` and the last error seen.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (OSError, RuntimeError) as exc:
            last_error = exc
        time.sleep(interval)
    raise failure(
        f"{what} did not settle within {timeout:g} s"
        + (f" (last error: {last_error!r})" if last_error else "")
    )


def _check_count(count: int) -> None:
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")


@contextlib.contextmanager
def redis_server_processes(
    count: int, **config: ConfigValue
) -> Iterator[list[RedisServerProcess]]:
    """Run ``count`` throwaway servers, started in parallel, for a ``with`` block.

    The blocking counterpart of :func:`redis_servers`, for a session-wide
    fixture::

        with redis_server_processes(3) as servers:
            urls = [server.url for server in servers]

    Args:
        count: how many servers.
        **config: ``redis-server`` settings for each of them, see
            :class:`RedisServerProcess`.

    Yields:
        The running servers, each on its own port and directory.

    Raises:
        RedisServerNotFoundError: if there is no ``redis-server`` binary.
        RedisServerError: if a server does not start (the others are stopped).
    """
    _check_count(count)
    processes = [RedisServerProcess(**config) for _ in range(count)]
    try:
        _in_parallel([process.open for process in processes])
        yield processes
    finally:
        _in_parallel([process.close for process in processes])


@contextlib.asynccontextmanager
async def redis_servers(count: int, **config: ConfigValue) -> AsyncIterator[list[RedisServer]]:
    """Run ``count`` throwaway servers, started in parallel, for an ``async with`` block.

    ::

        async with triopipe.testing.redis_servers(3) as servers:
            async with triopipe.open_sharded_client([s.url for s in servers]) as redis:
                ...

    Each server is what :func:`redis_server` gives (its own free port and
    temporary directory); starting them at once takes about as long as one.
    On exit all are stopped, in parallel, whatever happened in the block.

    Args:
        count: how many servers.
        **config: ``redis-server`` settings for each of them, see
            :class:`RedisServerProcess`.

    Yields:
        The running servers.

    Raises:
        RedisServerNotFoundError: if there is no ``redis-server`` binary.
        RedisServerError: if a server does not start (the others are stopped).
    """
    _check_count(count)
    processes = [RedisServerProcess(**config) for _ in range(count)]
    errors: list[BaseException] = []

    async def open_one(process: RedisServerProcess) -> None:
        try:
            await anyio.to_thread.run_sync(process.open, anyio.from_thread.check_cancelled)
        except Exception as exc:  # reported unwrapped below, not in a group
            errors.append(exc)

    try:
        async with anyio.create_task_group() as task_group:
            for process in processes:
                task_group.start_soon(open_one, process)
        if errors:
            raise errors[0]
        yield [RedisServer(process) for process in processes]
    finally:
        # Cleanup must run to the end even when the block was cancelled.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_in_parallel, [process.close for process in processes])
