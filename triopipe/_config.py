"""Client options: URL parsing and validation, with no I/O.

A URL and keyword options become one frozen :class:`ClientConfig`. Keyword
options win over the URL. The URL may set only non-security options in its
query string: TLS verification can be relaxed by code (an explicit
``ssl_context``), never by a URL. Nothing here ever puts a password into an
exception message or a repr: errors quote the URL with its password masked.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._observe import Observer

__all__ = ["ClientConfig", "Credentials", "mask_password", "parse_url"]

#: A credential provider: called (awaited if it returns an awaitable) before
#: every connect, it gives ``(username, password)``; ``username`` may be None.
Credentials: TypeAlias = "Callable[[], tuple[str | None, str] | Awaitable[tuple[str | None, str]]]"

DEFAULT_URL = "redis://localhost:6379"
_DEFAULT_PORT = 6379

# Options a URL query string may carry, with the type each one is parsed to.
_QUERY_OPTIONS: dict[str, type] = {
    "client_name": str,
    "protocol": int,
    "connections": int,
    "decode": bool,
    "connect_timeout": float,
    "max_in_flight": int,
    "db": int,
    "retries": int,
    "at_least_once": bool,
    "max_bulk_length": int,
    "health_check_interval": float,
    "keepalive": float,
    "max_dedicated": int,
    "dedicated_idle_timeout": float,
}
_SECURITY_QUERY_OPTIONS = frozenset(
    {"ssl_cert_reqs", "ssl_check_hostname", "ssl_ca_certs", "ssl", "tls", "verify", "insecure"}
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Everything needed to open connections to one server.

    The password is kept out of ``repr`` and comparisons of configs are by
    value, so a config can be logged safely.
    """

    host: str = "localhost"
    port: int = _DEFAULT_PORT
    unix_path: str | None = None
    tls: bool = False
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    db: int = 0
    client_name: str | None = None
    protocol: int = 3
    connections: int = 1
    decode: bool = False
    connect_timeout: float = 5.0
    max_in_flight: int = 10_000
    retries: int = 3
    at_least_once: bool = False
    max_bulk_length: int = 512 * 1024 * 1024
    ssl_context: ssl.SSLContext | None = dataclasses.field(default=None, repr=False)
    health_check_interval: float | None = 5.0
    keepalive: float | None = 10.0
    max_dedicated: int = 50
    dedicated_idle_timeout: float = 30.0
    credentials: Credentials | None = dataclasses.field(default=None, repr=False, compare=False)
    observer: Observer | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.protocol not in (2, 3):
            raise ValueError(f"protocol must be 2 or 3, not {self.protocol!r}")
        if self.connections < 1:
            raise ValueError(f"connections must be at least 1, not {self.connections!r}")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {self.max_in_flight!r}")
        if self.connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, not {self.connect_timeout!r}")
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, not {self.retries!r}")
        if self.max_bulk_length < 1:
            raise ValueError(f"max_bulk_length must be positive, not {self.max_bulk_length!r}")
        if self.db < 0:
            raise ValueError(f"db must not be negative, not {self.db!r}")
        if self.ssl_context is not None and not self.tls:
            raise ValueError("ssl_context given for a connection without TLS (use rediss://)")
        for name in ("health_check_interval", "keepalive"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or None: off), not {value!r}")
        if self.max_dedicated < 1:
            raise ValueError(f"max_dedicated must be at least 1, not {self.max_dedicated!r}")
        if not self.dedicated_idle_timeout > 0:
            raise ValueError(
                f"dedicated_idle_timeout must be positive, not {self.dedicated_idle_timeout!r}"
            )
        if self.credentials is not None and not callable(self.credentials):
            raise TypeError("credentials must be a callable returning (username, password)")

    @property
    def address(self) -> str:
        """Where the server is, for messages and logs (never with credentials)."""
        if self.unix_path is not None:
            return f"unix://{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The server's URL without credentials, e.g. for ``shard_for``."""
        if self.unix_path is not None:
            return f"unix://{self.unix_path}" + (f"?db={self.db}" if self.db else "")
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.address}" + (f"/{self.db}" if self.db else "")


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """Split ``scheme://userinfo@rest`` into (``scheme://rest``, userinfo).

    The user information ends at the *last* ``@``, so a password may hold
    unencoded ``/``, ``?``, ``#`` or ``@`` (base64 passwords contain ``/``);
    urllib would read such a password as a port or a path, and quote it in
    its error messages.
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at:
        return url, None
    return f"{scheme}://{hostpart}", userinfo


def mask_password(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages."""
    bare, userinfo = _split_userinfo(url)
    if userinfo is None:
        return url
    user, colon, _ = userinfo.partition(":")
    scheme, _, hostpart = bare.partition("://")
    return f"{scheme}://{user}:***@{hostpart}" if colon else f"{scheme}://***@{hostpart}"


def _convert(name: str, value: str, kind: type, url: str) -> Any:
    if kind is bool:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    elif kind is str:
        return value
    else:
        try:
            return kind(value)
        except ValueError:
            pass
    raise ValueError(f"invalid value for {name!r} in URL {mask_password(url)!r}")


def parse_url(url: str, options: Mapping[str, Any] | None = None) -> ClientConfig:
    """Build a :class:`ClientConfig` from a Redis URL and keyword options.

    Forms: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``
    (TLS) and ``unix:///path/to/socket[?db=N]``.

    Raises:
        ValueError: the URL or an option is invalid (the message masks the
            password).
        TypeError: an unknown keyword option was given.
    """
    fields: dict[str, Any] = {}
    bare, userinfo = _split_userinfo(url)
    if userinfo is not None:
        username, colon, password = userinfo.partition(":")
        if not colon:  # redis://secret@host: a lone word is the password
            username, password = "", username
        if username:
            fields["username"] = unquote(username)
        fields["password"] = unquote(password)
    try:
        parts = urlsplit(bare)
        scheme = parts.scheme.lower()
        if scheme in ("redis", "rediss"):
            fields["tls"] = scheme == "rediss"
            if parts.hostname:
                fields["host"] = parts.hostname
            if parts.port is not None:
                fields["port"] = parts.port
            path = parts.path.strip("/")
            if path:
                fields["db"] = int(path)
        elif scheme == "unix":
            if not parts.path:
                raise ValueError("unix URL without a socket path")
            fields["unix_path"] = unquote(parts.path)
        else:
            raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        # The user information was cut off before urllib saw the URL, so its
        # message cannot hold the password; it may hold everything else.
        raise ValueError(f"invalid Redis URL {mask_password(url)!r}: {exc}") from None
    for name, value in query:
        if name in _SECURITY_QUERY_OPTIONS:
            raise ValueError(
                f"URL option {name!r} is not accepted: TLS settings are set in code, "
                "with an ssl_context, never by a URL"
            )
        kind = _QUERY_OPTIONS.get(name)
        if kind is None:
            raise ValueError(f"unknown URL option {name!r} in {mask_password(url)!r}")
        fields[name] = _convert(name, value, kind, url)
    if options:
        known = {f.name for f in dataclasses.fields(ClientConfig)}
        known -= {"host", "port", "unix_path", "tls"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(unknown)}")
        fields.update(options)
    return ClientConfig(**fields)
