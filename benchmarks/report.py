"""Reporting: ratios against targets, the text table, the JSON file and the chart.

Ratios are taken between best-of-N figures (the fastest run of each side: on
a shared machine, slower runs measure the neighbours); the ratio of medians
is kept in the JSON next to it. Limits (B6's memory) are judged on the worst
run instead: a bound must hold every time.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .plan import Comparison, Measurement
from .runner import MeasurementResult, RunResult

__all__ = [
    "Verdict",
    "evaluate",
    "format_table",
    "link_summary",
    "machine_info",
    "write_json",
]

_LIBRARIES = (
    "triopipe",
    "anyio",
    "trio",
    "hiredis",
    "redis",
    "coredis",
    "valkey-glide",
    "uvloop",
    "matplotlib",
)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A comparison, evaluated.

    Attributes:
        comparison: what was compared.
        ratio: best-of-N ratio (or, for limits, the worst value in MiB); None
            when a side did not run.
        ratio_of_medians: the same from the medians.
        met: whether the target is met; None for ``info`` rows and missing sides.
        note: why there is no ratio (a skipped or failed side), else empty.
    """

    comparison: Comparison
    ratio: float | None
    ratio_of_medians: float | None
    met: bool | None
    note: str = ""


def _ratio(subject: float | None, reference: float | None) -> float | None:
    if subject is None or reference is None or reference == 0:
        return None
    return subject / reference


def evaluate(comparison: Comparison, results: dict[str, MeasurementResult]) -> Verdict:
    subject = results[comparison.subject]
    if subject.status != "ok":
        return Verdict(comparison, None, None, None, subject.status)
    if comparison.kind == "limit":
        if comparison.limit_of == "server_peak":
            value = subject.server_peak_mib
        elif comparison.limit_of == "child_rss":
            value = max(
                run.extra.get("child_peak_rss_mib", 0.0)
                for run in subject.runs
                if run.seconds is not None
            )
        else:
            value = max(run.rss_peak_mib or 0.0 for run in subject.runs if run.seconds is not None)
        within = None if value is None or comparison.target is None else value <= comparison.target
        return Verdict(comparison, value, value, within)
    assert comparison.reference is not None
    reference = results[comparison.reference]
    if reference.status != "ok":
        return Verdict(comparison, None, None, None, f"reference {reference.status}")
    if comparison.kind == "cost":
        # Time per operation of two rate measurements: the inverse ratio of rates.
        ratio = _ratio(reference.best, subject.best)
        medians = _ratio(reference.median, subject.median)
    else:
        ratio = _ratio(subject.best, reference.best)
        medians = _ratio(subject.median, reference.median)
    met: bool | None = None
    if ratio is not None and comparison.target is not None:
        if comparison.kind in ("latency", "cost"):
            met = ratio <= comparison.target
        elif comparison.kind == "speedup":
            met = ratio >= comparison.target
    return Verdict(comparison, ratio, medians, met)


# -- the text table -------------------------------------------------------------------------------


def _format_value(value: float | None, measurement: Measurement) -> str:
    if value is None:
        return "-"
    if measurement.metric == "rate":
        return f"{value:,.0f} {measurement.op}/s"
    if measurement.metric == "latency":
        return f"{value:.1f} us/{measurement.op}"
    return f"{value:.0f} MiB"


def _format_target(comparison: Comparison) -> str:
    if comparison.target is None:
        return "-"
    if comparison.kind in ("latency", "cost"):
        return f"<= {comparison.target:g}x"
    if comparison.kind == "limit":
        return f"<= {comparison.target:g} MiB"
    return f">= {comparison.target:g}x"


def _format_ratio(verdict: Verdict) -> str:
    if verdict.ratio is None:
        return "-"
    if verdict.comparison.kind == "limit":
        return f"{verdict.ratio:.1f} MiB"
    return f"{verdict.ratio:.2f}x"


def _format_met(verdict: Verdict) -> str:
    if verdict.met is None:
        return "n/a" if verdict.comparison.target is not None else "-"
    return "yes" if verdict.met else "NO"


def table_rows(
    results: Sequence[MeasurementResult], verdicts: Sequence[Verdict]
) -> list[list[str]]:
    """One row per comparison, plus one per measurement that is only a reference."""
    by_subject: dict[str, list[Verdict]] = {}
    referenced_by: dict[str, str] = {}  # a reference's row takes the label it is used under
    for verdict in verdicts:
        by_subject.setdefault(verdict.comparison.subject, []).append(verdict)
        if verdict.comparison.reference is not None:
            referenced_by.setdefault(verdict.comparison.reference, verdict.comparison.label)
    rows: list[list[str]] = []
    for result in results:
        m = result.measurement
        head = [
            m.client,
            m.backend,
            _format_value(result.best, m),
            _format_value(result.median, m),
        ]
        subject_verdicts = by_subject.get(m.key)
        if not subject_verdicts:
            note = "reference" if result.status == "ok" else result.status
            rows.append([referenced_by.get(m.key, m.workload), *head, "", note, "", ""])
            continue
        for verdict in subject_verdicts:
            c = verdict.comparison
            versus = verdict.note or c.versus
            if c.kind == "limit":
                versus = f"{c.versus} (worst run)" if not verdict.note else verdict.note
            rows.append(
                [
                    c.label,
                    *head,
                    _format_ratio(verdict),
                    versus,
                    _format_target(c),
                    _format_met(verdict),
                ]
            )
    return rows


_HEADER = ["workload", "client", "backend", "best", "median", "ratio", "vs", "target", "met"]


def format_table(results: Sequence[MeasurementResult], verdicts: Sequence[Verdict]) -> str:
    """The results as an aligned plain-text table."""
    rows = [_HEADER, *table_rows(results, verdicts)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def link_summary(results: Sequence[MeasurementResult]) -> list[str]:
    """B8's links, one line per delay: the round trip measured and what the proxy cost.

    The proxy's CPU time is set against the wall time of the runs it served
    (its share of one core), and the worst single run is named, so that a
    reader can tell whether the proxy, not the client, set a figure.
    """
    by_delay: dict[int, list[tuple[MeasurementResult, RunResult]]] = {}
    for result in results:
        for run in result.runs:
            if "delay_us" in run.extra:
                by_delay.setdefault(run.extra["delay_us"], []).append((result, run))
    lines = []
    for delay, runs in sorted(by_delay.items()):
        rtts = sorted(run.extra["rtt_us"] for _, run in runs)
        line = (
            f"B8 at {delay} us one way: PING round trip {rtts[len(rtts) // 2]:,.0f} us "
            f"(median of {len(rtts)} runs, {rtts[0]:,.0f}-{rtts[-1]:,.0f})"
        )
        proxied = [(r, run) for r, run in runs if "proxy_cpu_seconds" in run.extra]
        if proxied:
            cpu = sum(run.extra["proxy_cpu_seconds"] for _, run in proxied)
            chunks = sum(run.extra["proxy_chunks"] for _, run in proxied)
            wall = sum(run.seconds or 0.0 for _, run in proxied)
            worst_result, worst = max(
                proxied,
                key=lambda item: item[1].extra["proxy_cpu_seconds"] / (item[1].seconds or 1.0),
            )
            share = worst.extra["proxy_cpu_seconds"] / (worst.seconds or 1.0)
            line += (
                f"; proxy CPU {cpu:.2f} s in all ({cpu / max(chunks, 1) * 1e6:.0f} us per "
                f"chunk forwarded) for {wall:.2f} s of timed work "
                f"(at most {share:.0%} of a core: {worst_result.measurement.client}, "
                f"{worst_result.measurement.params.get('shape', 'fan-in')})"
            )
        lines.append(line)
    return lines


# -- machine info and JSON ------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _program_version(name: str) -> str | None:
    binary = shutil.which(name)
    if binary is None:
        return None
    result = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    return result.stdout.strip() or None


def _git_revision() -> str | None:
    """The checkout's commit, with ``-dirty`` when it has uncommitted changes."""
    git = shutil.which("git")
    if git is None:
        return None
    result = subprocess.run(
        [git, "describe", "--always", "--dirty"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.stdout.strip() or None


def _library_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Where the figures come from: CPU, OS, Python, Redis and library versions."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "redis_server": _program_version("redis-server"),
        "redis_benchmark": _program_version("redis-benchmark"),
        "libraries": {name: _library_version(name) for name in _LIBRARIES},
        "triopipe_revision": _git_revision(),
    }


def _measurement_json(result: MeasurementResult) -> dict[str, Any]:
    m = result.measurement
    return {
        "key": m.key,
        "workload": m.workload,
        "client": m.client,
        "backend": m.backend,
        "function": m.function,
        "params": dict(m.params),
        "metric": m.metric,
        "unit": {"rate": f"{m.op}/s", "latency": f"us/{m.op}", "rss": "MiB"}[m.metric],
        "status": result.status,
        "best": result.best,
        "median": result.median,
        "worst": result.worst,
        "server_used_memory_peak_mib": result.server_peak_mib,
        "runs": [dataclasses.asdict(run) for run in result.runs],
    }


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        **dataclasses.asdict(verdict.comparison),
        "ratio": verdict.ratio,
        "ratio_of_medians": verdict.ratio_of_medians,
        "met": verdict.met,
        "note": verdict.note,
    }


def write_json(
    path: Path,
    *,
    results: Sequence[MeasurementResult],
    verdicts: Sequence[Verdict],
    settings: dict[str, Any],
    machine: dict[str, Any],
) -> None:
    """Save everything to ``path`` (written to a temporary file, then renamed)."""
    document = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "machine": machine,
        "measurements": [_measurement_json(r) for r in results],
        "comparisons": [_verdict_json(v) for v in verdicts],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)


# -- the docs' results table ----------------------------------------------------------------------


def _rst_figure(measurement: dict[str, Any] | None) -> str:
    if measurement is None or measurement["best"] is None:
        return "-"
    best, unit = measurement["best"], measurement["unit"]
    if unit.endswith("/s"):
        return f"{best:,.0f} {unit}"
    if unit.startswith("us/"):
        return f"{best:.1f} {unit}"
    return f"{best:.0f} {unit}"


def rst_table(document: dict[str, Any]) -> str:
    """The comparisons of a saved ``latest.json`` as an RST ``list-table`` for the docs."""
    measurements = {m["key"]: m for m in document["measurements"]}
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - Workload",
        "     - triopipe (loop): best",
        "     - versus: best",
        "     - Ratio",
        "     - Target",
        "     - Met",
    ]
    for row in document["comparisons"]:
        subject = measurements[row["subject"]]
        reference = measurements.get(row["reference"] or "")
        if row["kind"] == "limit":
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.0f} MiB"
            target = f"<= {row['target']:g} MiB"
            versus = f"{row['versus']} (worst run)"
        else:
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            if row["target"] is None:
                target = "-"
            else:
                sign = "<=" if row["kind"] in ("latency", "cost") else ">="
                target = f"{sign} {row['target']:g}x"
            versus = f"{row['versus']}: {_rst_figure(reference)}"
        met = {True: "yes", False: "**no**", None: "n/a" if row["target"] else "-"}[row["met"]]
        if row["note"]:
            # Notes quote code in Markdown style (`x`); RST wants ``x``.
            ratio = re.sub(r"`([^`]+)`", r"``\1``", row["note"])
        lines += [
            f"   * - {row['label']}",
            f"     - {subject['client']} ({subject['backend']}): {_rst_figure(subject)}",
            f"     - {versus}",
            f"     - {ratio}",
            f"     - {target}",
            f"     - {met}",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m benchmarks.report [latest.json]: print the docs' table of a saved run.
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("benchmarks/results/latest.json")
    print(rst_table(json.loads(source.read_text())))
