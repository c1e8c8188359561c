"""Servers that the harness did not start: a CI service container, a local server.

Theory of operation: the pytest plugin can point its URL fixtures at servers
that already run (``--redis-url`` and friends) instead of starting throwaway
ones. Such a server may hold someone's data, and the fixtures empty it before
every test, so:

1. on first use, :meth:`ExistingServer.prepare` reads ``INFO keyspace``; a
   server that holds any key is refused (:class:`ExistingServerError`) unless
   the user said the data may go (``allow_flush``). A refusal is remembered:
   later tests are refused with the same message, without asking again;
2. before each test it empties the server: ``FLUSHALL`` and ``SCRIPT FLUSH``,
   or only ``FLUSHDB`` when the URL names a database other than 0 (then only
   that database is checked in step 1, too).

An :class:`ExistingCluster` is found from one seed URL: ``CLUSTER NODES``
names every node; the URLs handed to tests are all of them (with the seed's
scheme and credentials), and steps 1 and 2 apply to every primary.

The harness talks to these servers like to its own, over a plain blocking
socket (TCP, Unix or TLS with the default, verifying context) with the URL's
credentials and database; passwords never appear in messages.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import ssl
import threading
from collections.abc import Sequence

from .._config import ClientConfig, mask_password, parse_url
from ._binary import ServerInfo
from ._server import _ErrorReplyError, _exchange

__all__ = ["ExistingCluster", "ExistingServer", "ExistingServerError"]

_TIMEOUT = 10.0
_KEYSPACE_LINE = re.compile(r"^db(\d+):keys=(\d+)", re.MULTILINE)


class ExistingServerError(RuntimeError):
    """Raised when an existing server cannot be used for tests.

    It does not answer, answers with an error, or holds data that the user
    did not allow the fixtures to delete.
    """


def _version(text: str) -> tuple[int, int, int]:
    parts = [int(part) for part in re.findall(r"\d+", text)[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _fields(info: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in info.splitlines() if ":" in line)


class ExistingServer:
    """One running server, given by its URL, that tests may use and empty.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL (credentials and
            database included), e.g. ``redis://localhost:6379``.
        allow_flush: empty it even if it holds data.
        given_by: how the user gave the URL, for messages (``--redis-url``).

    Raises:
        ValueError: the URL is not a valid server URL.
    """

    def __init__(self, url: str, *, allow_flush: bool, given_by: str) -> None:
        self.url = url
        self._config: ClientConfig = parse_url(url)
        self._allow_flush = allow_flush
        self._given_by = given_by
        self._lock = threading.Lock()
        self._prepared = False
        self._refusal: str | None = None
        self._info: ServerInfo | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.masked_url}>"

    @property
    def masked_url(self) -> str:
        """The URL with any password masked, for messages."""
        return mask_password(self.url)

    def run(self, *commands: tuple[str, ...]) -> list[bytes]:
        """Run ``commands`` over a fresh connection; return their replies.

        Raises:
            ExistingServerError: the server cannot be reached or refuses a
                command.
        """
        config = self._config
        setup: list[tuple[str, ...]] = []
        if config.password is not None:
            user = (config.username,) if config.username else ()
            setup.append(("AUTH", *user, config.password))
        if config.db:
            setup.append(("SELECT", str(config.db)))
        try:
            with self._connect() as sock:
                return _exchange(sock, [*setup, *commands])[len(setup) :]
        except (OSError, _ErrorReplyError) as exc:
            raise ExistingServerError(
                f"the existing server at {self.masked_url} (from {self._given_by}) "
                f"could not be used: {exc}"
            ) from exc

    def _connect(self) -> socket.socket:
        config = self._config
        if config.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(_TIMEOUT)
                sock.connect(config.unix_path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((config.host, config.port), timeout=_TIMEOUT)
        if not config.tls:
            return sock
        try:
            return ssl.create_default_context().wrap_socket(sock, server_hostname=config.host)
        except BaseException:
            sock.close()
            raise

    def info(self) -> ServerInfo:
        """What the server says it is (kind, version, cluster mode), from ``INFO``; asked once."""
        if self._info is None:
            self._info = self._ask_info()
        return self._info

    def _ask_info(self) -> ServerInfo:
        server, cluster = (
            _fields(reply.decode(errors="replace"))
            for reply in self.run(("INFO", "server"), ("INFO", "cluster"))
        )
        kind = server.get("server_name", "redis").strip()
        version = server.get(f"{kind}_version", server.get("redis_version", "0"))
        return ServerInfo(
            kind=kind,
            version=_version(version),
            tls=self._config.tls,
            cluster=cluster.get("cluster_enabled", "0").strip() == "1",
            location=self.masked_url,
            source="existing",
        )

    def prepare(self) -> str:
        """Make the server ready for the next test: check it once, then empty it.

        Returns:
            The URL, for the test.

        Raises:
            ExistingServerError: the server holds data (and flushing it was not
                allowed), or cannot be reached.
        """
        with self._lock:
            if self._refusal is not None:
                raise ExistingServerError(self._refusal)
            if not self._prepared:
                self._check_empty()
                self._prepared = True
            self.flush()
        return self.url

    def keys(self) -> dict[int, int]:
        """How many keys each non-empty database holds (only the URL's one if not 0)."""
        [keyspace] = self.run(("INFO", "keyspace"))
        counts = {
            int(db): int(keys)
            for db, keys in _KEYSPACE_LINE.findall(keyspace.decode(errors="replace"))
            if int(keys)
        }
        if self._config.db:
            return {db: n for db, n in counts.items() if db == self._config.db}
        return counts

    def _check_empty(self) -> None:
        if self._allow_flush:
            return
        counts = self.keys()
        if counts:
            held = ", ".join(
                f"db{db}: {n} key{'s' if n > 1 else ''}" for db, n in sorted(counts.items())
            )
            self._refusal = (
                f"the existing server at {self.masked_url} (from {self._given_by}) holds "
                f"data ({held}), and the triopipe fixtures empty it before every test. "
                "Use an empty server, or allow the fixtures to delete that data with "
                "--redis-allow-flush (or TRIOPIPE_TEST_REDIS_ALLOW_FLUSH=1)."
            )
            raise ExistingServerError(self._refusal)

    def flush(self) -> None:
        """Empty the server: every database and the script cache, or the URL's database."""
        if self._config.db:
            self.run(("FLUSHDB",))
        else:
            self.run(("FLUSHALL",), ("SCRIPT", "FLUSH"))


@dataclasses.dataclass(frozen=True)
class _Node:
    host: str
    port: int
    primary: bool


def _cluster_nodes(text: str) -> list[_Node]:
    """The reachable nodes in a ``CLUSTER NODES`` reply."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = set(fields[2].split(","))
        if flags & {"fail", "noaddr", "handshake"}:
            continue
        address = fields[1].split("@", 1)[0].split(",", 1)[0]
        host, _, port = address.rpartition(":")
        nodes.append(_Node(host, int(port), "master" in flags))
    return nodes


class ExistingCluster:
    """A running Redis Cluster, found from one seed URL, that tests may use and empty.

    Args:
        url: a seed node's URL (its scheme and credentials serve every node).
        allow_flush: empty it even if it holds data.
        given_by: how the user gave the URL, for messages.

    Raises:
        ValueError: the URL is not a valid server URL.
    """

    def __init__(self, url: str, *, allow_flush: bool, given_by: str) -> None:
        self._seed = ExistingServer(url, allow_flush=allow_flush, given_by=given_by)
        self._allow_flush = allow_flush
        self._given_by = given_by
        self._lock = threading.Lock()
        self._nodes: list[ExistingServer] | None = None
        self._primaries: list[ExistingServer] = []
        self._refusal: str | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._seed.masked_url}>"

    def info(self) -> ServerInfo:
        """What the seed node says it is."""
        return self._seed.info()

    def _discover(self) -> list[ExistingServer]:
        seed = self._seed
        [text] = seed.run(("CLUSTER", "NODES"))
        config = parse_url(seed.url)
        scheme = "rediss" if config.tls else "redis"
        userinfo = ""
        if config.password is not None:
            userinfo = f"{config.username or ''}:{config.password}@"
        nodes = []
        for node in _cluster_nodes(text.decode(errors="replace")):
            host = f"[{node.host}]" if ":" in node.host else (node.host or config.host)
            server = ExistingServer(
                f"{scheme}://{userinfo}{host}:{node.port}",
                allow_flush=self._allow_flush,
                given_by=self._given_by,
            )
            nodes.append(server)
            if node.primary:
                self._primaries.append(server)
        if not self._primaries:
            raise ExistingServerError(
                f"the existing cluster at {seed.masked_url} (from {self._given_by}) "
                "has no reachable primary in CLUSTER NODES"
            )
        return nodes

    def prepare(self) -> list[str]:
        """Check the cluster once, then empty every primary.

        Returns:
            Every node's URL (any of them is a seed).

        Raises:
            ExistingServerError: a primary holds data (and flushing it was not
                allowed), or a node cannot be reached.
        """
        with self._lock:
            if self._refusal is not None:
                raise ExistingServerError(self._refusal)
            if self._nodes is None:
                nodes = self._discover()
                try:
                    for primary in self._primaries:
                        primary.prepare()
                except ExistingServerError as exc:
                    self._refusal = str(exc)
                    raise
                self._nodes = nodes
            else:
                for primary in self._primaries:
                    primary.flush()
            return [node.url for node in self._nodes]


def existing_servers(
    urls: Sequence[str], *, allow_flush: bool, given_by: str
) -> list[ExistingServer]:
    """One :class:`ExistingServer` per URL (shards)."""
    return [ExistingServer(url, allow_flush=allow_flush, given_by=given_by) for url in urls]
