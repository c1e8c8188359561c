"""The docs' charts: one horizontal bar chart per workload, every client side by side.

Each chart shows what each client measured in one workload of one saved run
(``latest.json``): throughput in operations per second (longer is better), or
microseconds per operation for latency and MiB for memory (shorter is
better), with the value written on every bar and triopipe's bars coloured.
Charts are drawn for the docs' page width: one bar per line, labels in full,
text no smaller than the page's own. This module only draws; what was
measured, and how, lives in :mod:`benchmarks.plan` and :mod:`benchmarks.runner`.

``python -m benchmarks.charts [latest.json] [--out docs/_static]`` redraws
them from a saved run.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["chart_groups", "write_charts"]

#: Figure width in inches and resolution: 8 in at 150 dpi is 1,200 pixels,
#: shown at the page's width (about 750 CSS pixels) with 11-point text
#: rendered at about 14 pixels.
_WIDTH_INCHES = 8.0
_DPI = 150
_TRIOPIPE = "#1f6f8b"
#: Bars are grouped by event loop, so that the clients compared on one loop
#: stand together; within a loop, the run's order.
_LOOP_ORDER = {"trio": 0, "asyncio": 1, "uvloop": 2}
_OTHER = "#9aa5ad"


def _label(measurement: dict[str, Any]) -> str:
    backend = measurement["backend"]
    client = str(measurement["client"])
    return client if backend in ("sync", "C") else f"{client} ({backend})"


def _lower_is_better(unit: str) -> bool:
    return not unit.endswith("/s")


#: B8's added one-way delay, as its measurement keys name it ("... 250us/trio").
_DELAY = re.compile(r" (\d+)us/")


def _b8_shape(measurement: dict[str, Any]) -> str:
    shape = measurement["params"].get("shape")
    return str(shape) if shape else "fan-in"


def chart_groups(document: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """``(chart name, unit, measurements)`` for each chart, in the run's order.

    A workload measured in two units (B4's SINTER and SUNION) gets two
    charts, and B8 one per shape of work (its delays drawn side by side);
    measurements that produced no figure are left out.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for measurement in document["measurements"]:
        if measurement.get("best") is None:
            continue
        name = measurement["workload"]
        if name == "B8":
            name = f"B8-{_b8_shape(measurement)}"
        key = (name, measurement["unit"])
        groups.setdefault(key, []).append(measurement)
    return [
        (workload, unit, sorted(rows, key=lambda row: _LOOP_ORDER.get(row["backend"], 3)))
        for (workload, unit), rows in groups.items()
    ]


def _file_name(workload: str, unit: str, units_of_workload: int) -> str:
    if units_of_workload == 1:
        return f"bench-{workload}.png"
    slug = unit.split("/")[0].replace("+", "-").lower()
    return f"bench-{workload}-{slug}.png"


def _format(value: float, unit: str) -> str:
    if unit.endswith("/s"):
        return f"{value:,.0f}"
    if unit.startswith("us/"):
        return f"{value:.1f}"
    return f"{value:.0f}"


def write_charts(document: dict[str, Any], directory: Path) -> list[Path]:
    """Draw every workload's chart into ``directory``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    groups = chart_groups(document)
    units: dict[str, int] = {}
    for workload, _unit, _rows in groups:
        units[workload] = units.get(workload, 0) + 1
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for workload, unit, rows in groups:
        if workload.startswith("B8-"):
            path = directory / f"bench-{workload}.png"
            _draw_delays(plt, matplotlib, rows, unit, path)
            written.append(path)
            continue
        labels = [_label(row) for row in rows]
        values = [float(row["best"]) for row in rows]
        colours = [_TRIOPIPE if row["client"].startswith("triopipe") else _OTHER for row in rows]
        height = 0.9 + 0.42 * len(rows)
        figure, axes = plt.subplots(figsize=(_WIDTH_INCHES, height), dpi=_DPI)
        positions = list(range(len(rows)))
        axes.barh(positions, values, color=colours, height=0.7)
        axes.set_yticks(positions)
        axes.set_yticklabels(labels, fontsize=11)
        axes.invert_yaxis()
        top = max(values)
        for position, value in zip(positions, values, strict=True):
            axes.text(
                value + top * 0.01,
                position,
                _format(value, unit),
                va="center",
                fontsize=11,
            )
        axes.set_xlim(0, top * 1.22)
        better = "shorter is better" if _lower_is_better(unit) else "longer is better"
        axes.set_xlabel(f"{unit} (best run; {better})", fontsize=11)
        axes.tick_params(axis="x", labelsize=10)
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
        axes.xaxis.set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")
        )
        axes.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        path = directory / _file_name(workload, unit, units[workload])
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def _draw_delays(
    plt: Any, matplotlib: Any, rows: list[dict[str, Any]], unit: str, path: Path
) -> None:
    """B8: one group of bars per client, one bar per added delay."""
    delays = sorted({int(_DELAY.search(row["key"]).group(1)) for row in rows})  # type: ignore[union-attr]
    clients: dict[str, dict[int, float]] = {}
    for row in rows:
        delay = int(_DELAY.search(row["key"]).group(1))  # type: ignore[union-attr]
        clients.setdefault(_label(row), {})[delay] = float(row["best"])
    shades = ["#9ecae1", "#4292c6", "#08306b"]
    bar = 0.8 / len(delays)
    height = 1.2 + 0.55 * len(clients)
    figure, axes = plt.subplots(figsize=(_WIDTH_INCHES, height), dpi=_DPI)
    top = max(float(row["best"]) for row in rows)
    for index, delay in enumerate(delays):
        positions = [n + (index - (len(delays) - 1) / 2) * bar for n in range(len(clients))]
        values = [by_delay.get(delay, 0.0) for by_delay in clients.values()]
        label = "no added delay" if delay == 0 else f"{delay:,} µs one way"
        axes.barh(positions, values, height=bar, color=shades[index % len(shades)], label=label)
        for position, value in zip(positions, values, strict=True):
            axes.text(value + top * 0.01, position, _format(value, unit), va="center", fontsize=8)
    axes.set_yticks(range(len(clients)))
    axes.set_yticklabels(list(clients), fontsize=11)
    axes.invert_yaxis()
    axes.set_xlim(0, top * 1.22)
    axes.set_xlabel(f"{unit} (best run; longer is better)", fontsize=11)
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
    axes.xaxis.set_major_formatter(
        matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")
    )
    axes.legend(fontsize=9, loc="lower right")
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.charts", description=__doc__)
    parser.add_argument("source", nargs="?", default="benchmarks/results/latest.json")
    parser.add_argument("--out", default="docs/_static", help="directory for the PNG files")
    args = parser.parse_args(argv)
    document = json.loads(Path(args.source).read_text())
    for path in write_charts(document, Path(args.out)):
        print(path)


if __name__ == "__main__":
    main()
