"""The command line: ``python -m benchmarks [--only B1,B2] [--quick] [--backends ...]``.

Runs the chosen workloads, prints progress to stderr and the results table to
stdout, saves ``latest.json`` in ``--out`` and draws the charts. The exit
status is 1 when a measurement failed (a crash or a timeout), else 0: a
missed target is a result, not a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .charts import write_charts
from .link import describe, link_kind
from .plan import BACKENDS, WORKLOADS, build_plan
from .report import evaluate, format_table, link_summary, machine_info, write_json
from .runner import REPO_ROOT, MeasurementResult, RunResult, run_measurements

__all__ = ["main", "parse_args"]

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
DEFAULT_CHARTS = REPO_ROOT / "docs" / "_static"


def _csv(choices: Sequence[str]) -> type[list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if all(choice.isupper() for choice in choices):
            items = [item.upper() for item in items]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}; got {text!r}"
            )
        return items

    return parse  # type: ignore[return-value]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="triopipe's comparative benchmarks (BENCHMARKS.md workloads B1-B8).",
    )
    parser.add_argument(
        "--only",
        type=_csv(WORKLOADS),
        default=list(WORKLOADS),
        metavar="B1,B2,...",
        help="workloads to run (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tenth of every workload, one run each unless --repeat says otherwise",
    )
    parser.add_argument(
        "--backends",
        type=_csv(BACKENDS),
        default=list(BACKENDS),
        metavar="trio,asyncio,uvloop",
        help="event loops for triopipe; the first one also runs B4-B6 (default: all three)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="runs per measurement; ratios use the best run (default: 3, 1 with --quick)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"directory for latest.json (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})",
    )
    parser.add_argument(
        "--charts",
        type=Path,
        default=DEFAULT_CHARTS,
        help="directory for the charts, one PNG per workload "
        f"(default: {DEFAULT_CHARTS.relative_to(REPO_ROOT)})",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw the charts")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _progress(result: MeasurementResult, round_number: int, run: RunResult) -> None:
    m = result.measurement
    if run.skipped:
        outcome = f"skipped: {run.skipped}"
    elif run.error:
        outcome = f"FAILED: {run.error}"
    else:
        value = run.value(m.metric)
        assert value is not None
        unit = {"rate": f"{m.op}/s", "latency": f"us/{m.op}", "rss": "MiB peak RSS"}[m.metric]
        outcome = f"{value:,.1f} {unit}"
        if "rtt_us" in run.extra:
            outcome += f" (PING round trip {run.extra['rtt_us']:,.0f} us"
            if "proxy_cpu_seconds" in run.extra:
                outcome += f", proxy CPU {run.extra['proxy_cpu_seconds'] * 1e3:,.0f} ms"
            outcome += ")"
    what = m.client
    if m.delay_us is not None:
        what = f"{m.params.get('shape', 'fan-in')} at {m.delay_us} us, {what}"
    print(
        f"[{m.workload} run {round_number}] {what} ({m.backend}): {outcome}"
        f"  [{run.wall_seconds:.1f} s]",
        file=sys.stderr,
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = build_plan(args.only, args.backends, quick=args.quick)
    machine = machine_info()
    started = time.perf_counter()
    print(
        f"{len(plan.measurements)} measurements x {args.repeat} runs on "
        f"{machine['cpu_count']} CPUs ({machine['redis_server'] or 'no redis-server?'})",
        file=sys.stderr,
    )
    link = None
    if "B8" in args.only:
        link = describe(link_kind())
        print(f"B8 link: {link}", file=sys.stderr)
    results = run_measurements(plan.measurements, args.repeat, progress=_progress)
    elapsed = time.perf_counter() - started
    by_key = {result.measurement.key: result for result in results}
    verdicts = [evaluate(comparison, by_key) for comparison in plan.comparisons]

    print(format_table(results, verdicts))
    if link is not None:
        print(f"\nB8 link: {link}.")
        for line in link_summary(results):
            print(line)
    judged = [v for v in verdicts if v.met is not None]
    loads = [run.load_average for r in results for run in r.runs if run.load_average is not None]
    print(
        f"\n{sum(bool(v.met) for v in judged)} of {len(judged)} targets met; "
        f"{args.repeat} run(s) each, best of runs; {elapsed:.0f} s in all; "
        f"1-minute load average {min(loads, default=0):.1f}-{max(loads, default=0):.1f} "
        f"on {machine['cpu_count']} CPUs."
    )

    settings = {
        "argv": list(sys.argv[1:] if argv is None else argv),
        "only": args.only,
        "backends": args.backends,
        "quick": args.quick,
        "repeat": args.repeat,
        "elapsed_seconds": elapsed,
        "load_average_range": [min(loads, default=0.0), max(loads, default=0.0)],
        "b8_link": link,
    }
    json_path = args.out / "latest.json"
    write_json(json_path, results=results, verdicts=verdicts, settings=settings, machine=machine)
    print(f"results: {json_path}")
    if not args.no_chart:
        for path in write_charts(json.loads(json_path.read_text()), args.charts):
            print(f"chart: {path}")
    return 1 if any(r.status.startswith("error") for r in results) else 0
