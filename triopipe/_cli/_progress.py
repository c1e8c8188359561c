"""The progress display of long runs: a live bar on a terminal, plain lines otherwise.

- On a terminal, with ``rich`` installed (``pip install "triopipe[cli]"``): a
  bar with the percent done (of the input's size when known), the rate and
  the time left, redrawn several times a second.
- Otherwise (output piped to a file or a log, or no ``rich``): one plain
  line every few seconds, so logs show the run moving without filling up.
- ``--quiet``: nothing.

What it shows is read from callables the run provides (commands settled,
fraction done), sampled by :meth:`Progress.run`'s own task (or by
:meth:`Progress.tick` from a loop that is not async: the parent of
``--workers``): the hot path pays nothing for the display.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import anyio

__all__ = ["BAR_INTERVAL", "LINE_INTERVAL", "Progress", "choose_mode"]

#: Seconds between redraws of the bar, and between plain lines.
BAR_INTERVAL = 0.2
LINE_INTERVAL = 5.0


def choose_mode(quiet: bool, stream: TextIO = sys.stderr) -> str:
    """``off`` when quiet, ``bar`` on a terminal with rich installed, else ``lines``."""
    if quiet:
        return "off"
    if stream.isatty():
        try:
            import rich  # noqa: F401
        except ImportError:
            return "lines"
        return "bar"
    return "lines"


class Progress:
    """Shows ``done()`` commands of a run and ``fraction()`` of it done (None: unknown).

    Args:
        done: commands settled so far.
        fraction: how much of the whole is done, between 0 and 1, or None
            when the total is unknown (standard input).
        mode: ``bar``, ``lines`` or ``off`` (see :func:`choose_mode`).
        label: what the run does, e.g. ``pump``.
        unit: what ``done`` counts (``commands``, ``keys``).
    """

    def __init__(
        self,
        done: Callable[[], int],
        fraction: Callable[[], float | None],
        *,
        mode: str,
        label: str,
        unit: str = "commands",
        stream: TextIO = sys.stderr,
        line_interval: float = LINE_INTERVAL,
    ) -> None:
        self._unit = unit
        self._done = done
        self._fraction = fraction
        self.mode = mode
        self._label = label
        self._stream = stream
        self._line_interval = line_interval
        self._started = time.perf_counter()
        self._last_line = self._started
        self._bar: Any = None
        self._task: Any = None

    async def run(self) -> None:
        """Redraw until cancelled (run it in a task next to the work)."""
        if self.mode == "off":
            return
        while True:
            self.tick()
            await anyio.sleep(BAR_INTERVAL if self.mode == "bar" else self._line_interval)

    @property
    def period(self) -> float:
        """Seconds between two calls of :meth:`tick` worth making."""
        return BAR_INTERVAL if self.mode == "bar" else self._line_interval

    def tick(self) -> None:
        """Redraw the bar, or print a line when one is due."""
        if self.mode == "bar":
            if self._bar is None:
                self._start_bar()
            self._draw_bar()
        elif self.mode == "lines":
            now = time.perf_counter()
            if now - self._last_line >= self._line_interval * 0.99:
                self._last_line = now
                print(f"{self._label}: {self.line()}", file=self._stream, flush=True)

    def line(self) -> str:
        """The state as one line: commands, rate, percent and time left when known."""
        done = self._done()
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        text = f"{done:,} {self._unit}, {done / elapsed:,.0f}/s"
        fraction = self._fraction()
        if fraction is not None:
            text += f", {fraction:.1%}"
            if fraction > 0:
                text += f", {elapsed * (1 - fraction) / fraction:.0f} s left"
        return text

    def close(self) -> None:
        """Draw the final state and leave the terminal clean for the summary."""
        if self._bar is not None:
            self._draw_bar()
            self._bar.stop()
            self._bar = None

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn(f"{{task.fields[commands]}} {self._unit}, {{task.fields[rate]}}/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=self._stream),
            auto_refresh=False,
        )
        self._task = self._bar.add_task(self._label, total=None, commands="0", rate="0")
        self._bar.start()

    def _draw_bar(self) -> None:
        done = self._done()
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        fraction = self._fraction()
        self._bar.update(
            self._task,
            total=None if fraction is None else 1000,
            completed=0 if fraction is None else round(fraction * 1000),
            commands=f"{done:,}",
            rate=f"{done / elapsed:,.0f}",
        )
        self._bar.refresh()
