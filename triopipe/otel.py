"""OpenTelemetry for triopipe: spans and metrics, as an :class:`~triopipe.Observer`.

Install the extra (``pip install "triopipe[otel]"``, which brings
``opentelemetry-api``) and pass an observer to any ``open_*`` function::

    from triopipe.otel import OpenTelemetryObserver

    async with triopipe.open_client(url, observer=OpenTelemetryObserver()) as redis:
        ...

Nothing here is imported by ``import triopipe``: a program that does not use
it pays nothing, and does not need OpenTelemetry installed.

What is recorded follows OpenTelemetry's semantic conventions for database
clients (Redis):

- a ``CLIENT`` span per command (named after it: ``GET``) and per pipeline
  window, batch or transaction (``PIPELINE``, ``MULTI``), with
  ``db.system.name`` = ``redis``, ``db.operation.name``, ``server.address``,
  ``server.port``, ``db.operation.batch.size`` for two commands or more, and
  on failure ``error.type``, ``db.response.status_code`` (the error reply's
  prefix, ``WRONGTYPE``) and an error status. A span's parent is the span
  current where the command was issued;
- ``db.client.operation.duration``: a histogram of the same operations, in
  seconds, with the same attributes but the batch size;
- ``db.client.connection.count``: connections up, by server
  (``db.client.connection.pool.name``; triopipe's connections are
  multiplexed, so an open one is counted as ``used``);
- ``triopipe.client.events``: what else happens, by ``triopipe.event``:
  ``disconnected``, ``connect_failed``, ``retried``, ``redirected``,
  ``waited_for_room``, ``primary_changed`` (a Sentinel failover, with the
  new primary's address);
- ``triopipe.client.commands.unknown_outcome``: commands written before
  their connection broke (the server may or may not have applied them).
"""

from __future__ import annotations

import time
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "triopipe.otel needs OpenTelemetry's API: pip install 'triopipe[otel]'"
    ) from exc

from ._exceptions import ResponseError
from ._observe import Observer

__all__ = ["OpenTelemetryObserver"]

_SCOPE = "triopipe"
# Seconds: the boundaries the database conventions advise for this histogram.
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
_BATCH_NAMES = frozenset({"PIPELINE", "MULTI"})


def _server_attributes(server: str) -> dict[str, Any]:
    """``server.address`` and ``server.port`` of ``host:port``, ``[v6]:port`` or ``unix://path``."""
    if server.startswith("unix://"):
        return {"server.address": server[len("unix://") :]}
    host, _, port = server.rpartition(":")
    try:
        return {"server.address": host.strip("[]"), "server.port": int(port)}
    except ValueError:
        return {"server.address": server}


def _error_type(error: BaseException) -> str:
    """The error's class, as ``error.type`` wants it: fully qualified, public names for ours."""
    kind = type(error)
    module = kind.__module__
    if module == "triopipe" or module.startswith("triopipe."):
        module = "triopipe"
    return f"{module}.{kind.__qualname__}"


class _Operation:
    """One command or window being traced: its span, attributes and start time."""

    __slots__ = ("_attributes", "_observer", "_span", "_start")

    def __init__(
        self, observer: OpenTelemetryObserver, span: Span, attributes: dict[str, Any]
    ) -> None:
        self._observer = observer
        self._span = span
        self._attributes = attributes
        self._start = time.perf_counter()

    def end(self, error: BaseException | None) -> None:
        duration = time.perf_counter() - self._start
        attributes = self._attributes
        span = self._span
        if error is not None:
            attributes = {**attributes, "error.type": _error_type(error)}
            if isinstance(error, ResponseError) and error.code:
                attributes["db.response.status_code"] = error.code
            span.set_attributes(attributes)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        attributes.pop("db.operation.batch.size", None)
        self._observer.operation_duration.record(duration, attributes)
        span.end()


class OpenTelemetryObserver(Observer):
    """An :class:`~triopipe.Observer` that records OpenTelemetry spans and metrics.

    One observer may serve any number of clients.

    Args:
        tracer_provider: where spans go (default: the global one, from
            :func:`opentelemetry.trace.set_tracer_provider`).
        meter_provider: where metrics go (default: the global one).
        spans: False records metrics only (with the Python SDK a span
            costs tens of microseconds, more than most commands take).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        spans: bool = True,
    ) -> None:
        from . import __version__

        self._tracer = (
            trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
            if spans
            else None
        )
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self.operation_duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._connections = meter.create_up_down_counter(
            "db.client.connection.count",
            unit="{connection}",
            description="The number of connections that are currently open.",
        )
        self._events = meter.create_counter(
            "triopipe.client.events",
            unit="{event}",
            description="Disconnects, failed connects, retries, redirects and waits for room.",
        )
        self._unknown = meter.create_counter(
            "triopipe.client.commands.unknown_outcome",
            unit="{command}",
            description="Commands written before their connection broke: maybe applied.",
        )
        self._servers: dict[str, dict[str, Any]] = {}

    def _server(self, server: str) -> dict[str, Any]:
        attributes = self._servers.get(server)
        if attributes is None:
            attributes = self._servers[server] = {
                "db.system.name": "redis",
                **_server_attributes(server),
            }
        return attributes

    def _event(self, event: str, server: str, error: BaseException | None = None) -> None:
        attributes = {**self._server(server), "triopipe.event": event}
        if error is not None:
            attributes["error.type"] = _error_type(error)
        self._events.add(1, attributes)

    def command(self, server: str, name: str, commands: int) -> _Operation:
        """Start a span (and the duration measurement) for a command or a window."""
        attributes = {**self._server(server), "db.operation.name": name}
        if commands > 1 or name in _BATCH_NAMES:
            attributes["db.operation.batch.size"] = commands
        if self._tracer is None:
            span: Span = trace.INVALID_SPAN
        else:
            span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        return _Operation(self, span, attributes)

    def connected(self, server: str, protocol: int) -> None:
        self._connections.add(1, self._pool(server))

    def disconnected(self, server: str, error: BaseException) -> None:
        self._connections.add(-1, self._pool(server))
        self._event("disconnected", server, error)

    def _pool(self, server: str) -> dict[str, Any]:
        return {
            "db.system.name": "redis",
            "db.client.connection.pool.name": server,
            "db.client.connection.state": "used",
        }

    def connect_failed(self, server: str, error: BaseException, retry_in: float) -> None:
        self._event("connect_failed", server, error)

    def retried(self, server: str, command: str, error: BaseException, attempt: int) -> None:
        self._event("retried", server, error)

    def redirected(self, command: str, error: BaseException) -> None:
        attributes = {"db.system.name": "redis", "triopipe.event": "redirected"}
        self._events.add(1, {**attributes, "error.type": _error_type(error)})

    def waited_for_room(self, server: str, commands: int) -> None:
        self._event("waited_for_room", server)

    def primary_changed(self, service: str, old: str, new: str) -> None:
        self._event("primary_changed", new)

    def outcome_unknown(self, server: str, commands: int, error: BaseException) -> None:
        self._unknown.add(commands, {**self._server(server), "error.type": _error_type(error)})
