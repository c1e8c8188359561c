"""Running measurements: fresh servers and a fresh child process for every run.

For each run of a :class:`~benchmarks.plan.Measurement` the harness starts
the throwaway ``redis-server`` processes it needs
(:func:`triopipe.testing.redis_server_process`), samples their ``INFO
memory`` from a thread while a child interpreter (``python -m
benchmarks.run_one``) does the timed work, then stops them. Fresh servers
make every run start from an empty dataset, and make ``used_memory_peak`` the
peak of that one run. B8's runs get their one server behind a delayed link
instead (:mod:`benchmarks.link`); the link's kind, its measured round trip
and its proxy's CPU time are kept with each run.

Repeats are interleaved: round 1 runs every measurement of a workload once,
then round 2, and so on, so that a slow patch on a shared machine hurts all
sides of a ratio alike instead of one of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from triopipe.testing import redis_server_process

from ._raw import RawConnection, address_of
from .link import open_link
from .plan import Measurement

__all__ = ["MeasurementResult", "RunResult", "run_measurements"]

REPO_ROOT = Path(__file__).resolve().parent.parent
_SAMPLE_INTERVAL = 0.05
_MIB = 2**20


@dataclasses.dataclass
class RunResult:
    """One run of a measurement, as the child reported it (plus server memory).

    Exactly one of ``seconds``/``skipped``/``error`` tells what happened.
    ``load_average`` is the machine's 1-minute load average as the run
    started: on a shared machine, it says how busy the neighbours were.
    """

    seconds: float | None = None
    ops: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    rss_peak_mib: float | None = None
    server_used_memory_max_mib: float | None = None
    server_used_memory_peak_mib: float | None = None
    wall_seconds: float = 0.0
    load_average: float | None = None
    skipped: str | None = None
    error: str | None = None

    def value(self, metric: str) -> float | None:
        """The run's figure for ``metric`` (ops/s, µs per op, or MiB)."""
        if self.seconds is None or not self.ops:
            return None
        if metric == "rate":
            return self.ops / self.seconds
        if metric == "latency":
            return self.seconds / self.ops * 1e6
        return self.rss_peak_mib


@dataclasses.dataclass
class MeasurementResult:
    """Every run of one measurement, and the figures drawn from them."""

    measurement: Measurement
    runs: list[RunResult] = dataclasses.field(default_factory=list)

    @property
    def values(self) -> list[float]:
        metric = self.measurement.metric
        return [v for v in (run.value(metric) for run in self.runs) if v is not None]

    @property
    def higher_is_better(self) -> bool:
        return self.measurement.metric == "rate"

    @property
    def best(self) -> float | None:
        values = self.values
        if not values:
            return None
        return max(values) if self.higher_is_better else min(values)

    @property
    def median(self) -> float | None:
        values = self.values
        return statistics.median(values) if values else None

    @property
    def worst(self) -> float | None:
        values = self.values
        if not values:
            return None
        return min(values) if self.higher_is_better else max(values)

    @property
    def server_peak_mib(self) -> float | None:
        """The highest ``used_memory_peak`` of any server in any run."""
        peaks = [r.server_used_memory_peak_mib for r in self.runs]
        known = [p for p in peaks if p is not None]
        return max(known) if known else None

    @property
    def status(self) -> str:
        """``ok``, ``skipped: why`` or ``error: what`` (the first error of any run)."""
        if self.values:
            return "ok"
        for run in self.runs:
            if run.error:
                return f"error: {run.error}"
            if run.skipped:
                return f"skipped: {run.skipped}"
        return "not run"


class _MemorySampler:
    """Polls ``INFO memory`` of some servers from a thread until stopped."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = list(urls)
        self._stop = threading.Event()
        self.used_max = [0] * len(self._urls)
        self._thread = threading.Thread(target=self._run, name="info-memory", daemon=True)

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                connections = [
                    stack.enter_context(RawConnection(*address_of(url), timeout=30.0))
                    for url in self._urls
                ]
                while True:
                    for index, connection in enumerate(connections):
                        used = int(connection.info("memory")["used_memory"])
                        self.used_max[index] = max(self.used_max[index], used)
                    if self._stop.wait(_SAMPLE_INTERVAL):
                        return
        except OSError:
            return  # a server went away: the run itself will say why


def _peak_memory(urls: Sequence[str]) -> list[int]:
    peaks = []
    for url in urls:
        with RawConnection(*address_of(url), timeout=30.0) as connection:
            peaks.append(int(connection.info("memory")["used_memory_peak"]))
    return peaks


def _child_spec(measurement: Measurement, urls: Sequence[str]) -> str:
    return json.dumps(
        {
            "function": measurement.function,
            "urls": list(urls),
            "backend": measurement.backend,
            "params": dict(measurement.params),
        }
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
    return env


@contextlib.contextmanager
def _servers(
    measurement: Measurement, link_facts: dict[str, Any]
) -> Iterator[tuple[list[str], list[str]]]:
    """Fresh servers for one run: ``(urls for the client, urls of the servers themselves)``.

    For B8 the one server sits behind a link with a delay (:mod:`benchmarks.link`);
    what the link was and what its proxy cost go into ``link_facts`` on exit.
    """
    if measurement.delay_us is None:
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(redis_server_process()) for _ in range(measurement.servers)
            ]
            urls = [server.url for server in servers]
            yield urls, urls
        return
    with open_link(measurement.delay_us) as link:
        link_facts.update(link=link.kind, delay_us=link.delay_us, rtt_us=link.rtt_us)
        yield [link.client_url], [link.server_url]
    if link.proxy is not None:
        link_facts.update(
            proxy_cpu_seconds=link.proxy["cpu_seconds"], proxy_chunks=link.proxy["chunks"]
        )


def run_once(measurement: Measurement) -> RunResult:
    """One run: fresh servers, a fresh child, server memory sampled meanwhile."""
    started = time.perf_counter()
    load = os.getloadavg()[0]
    link_facts: dict[str, Any] = {}
    with _servers(measurement, link_facts) as (urls, server_urls):
        argv = [sys.executable, "-m", "benchmarks.run_one", _child_spec(measurement, urls)]
        try:
            with _MemorySampler(server_urls) as sampler:
                child = subprocess.run(
                    argv,
                    cwd=REPO_ROOT,
                    env=_child_env(),
                    capture_output=True,
                    text=True,
                    timeout=measurement.timeout,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            return RunResult(
                error=f"timed out after {measurement.timeout:g} s",
                wall_seconds=time.perf_counter() - started,
                load_average=load,
            )
        peaks = _peak_memory(server_urls)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines() or ["(no output)"]
        return RunResult(error=lines[-1][:300], wall_seconds=wall, load_average=load)
    report = json.loads(child.stdout.strip().splitlines()[-1])
    if "skipped" in report:
        return RunResult(skipped=report["skipped"], wall_seconds=wall, load_average=load)
    return RunResult(
        seconds=report["seconds"],
        ops=report["ops"],
        extra={**report["extra"], **link_facts},
        rss_peak_mib=report["rss_peak_mib"],
        server_used_memory_max_mib=max(sampler.used_max) / _MIB,
        server_used_memory_peak_mib=max(peaks) / _MIB,
        wall_seconds=wall,
        load_average=load,
    )


def run_measurements(
    measurements: Sequence[Measurement],
    repeat: int,
    *,
    progress: Callable[[MeasurementResult, int, RunResult], None] | None = None,
) -> list[MeasurementResult]:
    """Run each measurement ``repeat`` times, interleaved within each workload.

    A measurement with a ``rounds_factor`` runs that many times more often. A
    measurement that reports itself skipped is not run again.
    """
    results = [MeasurementResult(m) for m in measurements]
    workloads = list(dict.fromkeys(m.workload for m in measurements))
    for workload in workloads:
        group = [r for r in results if r.measurement.workload == workload]
        rounds = repeat * max(r.measurement.rounds_factor for r in group)
        for round_number in range(1, rounds + 1):
            for result in group:
                if round_number > repeat * result.measurement.rounds_factor:
                    continue
                if any(run.skipped for run in result.runs):
                    continue
                run = run_once(result.measurement)
                result.runs.append(run)
                if progress is not None:
                    progress(result, round_number, run)
    return results
