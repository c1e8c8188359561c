"""The OpenTelemetry observer against a real server, read back by the SDK's in-memory readers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import triopipe
from triopipe.otel import OpenTelemetryObserver


class _Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.observer = OpenTelemetryObserver(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.spans.get_finished_spans()
        return [span for span in spans if name is None or span.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for found in scope.metrics
            if found.name == metric
            for point in found.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[_Telemetry]:
    telemetry = _Telemetry()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


def _port(url: str) -> int:
    return int(url.rpartition(":")[2].split("/")[0])


async def test_a_span_per_command_with_the_database_conventions(
    redis_url: str, telemetry: _Telemetry
) -> None:
    async with triopipe.open_client(redis_url, observer=telemetry.observer) as redis:
        await redis.set("otel:k", "v")
        assert await redis.get("otel:k") == b"v"
    [span] = telemetry.finished("GET")
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "db.system.name": "redis",
        "db.operation.name": "GET",
        "server.address": "127.0.0.1",
        "server.port": _port(redis_url),
    }
    assert {span.name for span in telemetry.finished()} == {"SET", "GET"}


async def test_an_error_reply_marks_the_span_and_the_histogram(
    redis_url: str, telemetry: _Telemetry
) -> None:
    async with triopipe.open_client(redis_url, observer=telemetry.observer) as redis:
        await redis.set("otel:str", "v")
        with pytest.raises(triopipe.WrongTypeError):
            await redis.lpush("otel:str", "x")
    [span] = telemetry.finished("LPUSH")
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "triopipe.WrongTypeError"
    assert attributes["db.response.status_code"] == "WRONGTYPE"
    by_operation = {
        point.attributes["db.operation.name"]: point
        for point in telemetry.points("db.client.operation.duration")
    }
    assert by_operation["LPUSH"].count == 1
    assert by_operation["LPUSH"].attributes["error.type"] == "triopipe.WrongTypeError"
    assert by_operation["SET"].count == 1
    assert "error.type" not in by_operation["SET"].attributes
    assert 0 < by_operation["SET"].sum < 5


async def test_pipelines_batches_and_transactions_are_one_span_each(
    redis_url: str, telemetry: _Telemetry
) -> None:
    async with triopipe.open_client(redis_url, observer=telemetry.observer) as redis:
        await redis.execute_many([("INCR", "otel:n")] * 3)
        async with redis.batch() as batch:
            batch.incr("otel:n")
            batch.incr("otel:n")
        async with redis.transaction() as tx:
            tx.incr("otel:n")
            tx.incr("otel:n")
            tx.get("otel:n")
        assert await redis.get("otel:n") == b"7"
    pipelines = telemetry.finished("PIPELINE")
    sizes = sorted(dict(span.attributes or {})["db.operation.batch.size"] for span in pipelines)
    assert sizes == [2, 3]
    [multi] = telemetry.finished("MULTI")
    assert dict(multi.attributes or {})["db.operation.batch.size"] == 3
    assert dict(multi.attributes or {})["db.operation.name"] == "MULTI"


async def test_the_caller_span_is_the_parent(redis_url: str, telemetry: _Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")
    async with triopipe.open_client(redis_url, observer=telemetry.observer) as redis:
        with tracer.start_as_current_span("request") as parent:
            await redis.ping()
    [ping] = telemetry.finished("PING")
    assert ping.parent is not None
    assert ping.parent.span_id == parent.get_span_context().span_id


async def test_connections_and_broken_links_are_counted(
    redis_url: str, telemetry: _Telemetry
) -> None:
    async with (
        triopipe.open_client(redis_url, observer=telemetry.observer, connections=2) as redis,
        triopipe.open_client(redis_url) as admin,
    ):
        [up] = telemetry.points("db.client.connection.count")
        assert up.value == 2
        assert up.attributes["db.client.connection.pool.name"] == f"127.0.0.1:{_port(redis_url)}"
        killed = await admin.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed == 2
        await redis.ping()  # a new link
        events = {
            point.attributes["triopipe.event"]: point.value
            for point in telemetry.points("triopipe.client.events")
        }
        assert events["disconnected"] == 2
        [count] = telemetry.points("db.client.connection.count")
        assert count.value == 1  # two broke, one came back for the PING


async def test_spans_can_be_left_out(redis_url: str, telemetry: _Telemetry) -> None:
    observer = OpenTelemetryObserver(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        spans=False,
    )
    async with triopipe.open_client(redis_url, observer=observer) as redis:
        await redis.ping()
    assert telemetry.finished() == []
    [point] = telemetry.points("db.client.operation.duration")
    assert point.count == 1


def test_nothing_is_imported_unless_asked() -> None:
    code = (
        "import sys, triopipe\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
        "sys.modules['opentelemetry'] = None\n"
        "try:\n"
        "    import triopipe.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install 'triopipe[otel]'" in result.stdout
