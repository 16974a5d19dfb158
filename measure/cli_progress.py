"""Progress reporting for ``censorscope run``: a rich bar on a terminal, log lines elsewhere."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: seconds between redraws of the bar
REFRESH = 0.25


class BarProgress:
    """done/total, rate, ETA and failures so far, redrawn in place (stderr).

    Redrawn from the run's event loop, not by rich's refresh thread: a campaign process must stay
    single-threaded so that the bulk DNS engine may fork its worker (measure/dns_bulk.py refuses to
    fork while other threads run)."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]measuring"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]:>7.1f}/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("[red]{task.fields[failures]} with failures"),
            console=console or Console(stderr=True),
            transient=False,
            auto_refresh=False,
        )
        self._timer: asyncio.TimerHandle | None = None
        self._task: Any = None
        self._failures = 0
        self._done = 0
        self._t0 = time.monotonic()

    def start(self, total: int, already_done: int) -> None:
        """Show the bar for ``total`` remaining units."""
        self._progress.start()
        self._t0 = time.monotonic()
        self._task = self._progress.add_task("run", total=total, failures=0, rate=0.0)
        self._progress.refresh()
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # no loop (a caller outside asyncio): redrawn at each advance only
        if loop is not None:
            self._timer = loop.call_later(REFRESH, self._redraw, loop)

    def _redraw(self, loop: asyncio.AbstractEventLoop) -> None:
        self._progress.refresh()  # elapsed time and ETA move even while no measurement ends
        self._timer = loop.call_later(REFRESH, self._redraw, loop)

    def advance(self, measurement: dict[str, Any], failed: bool) -> None:
        """One more measurement stored."""
        self._done += 1
        self._failures += failed
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        self._progress.update(self._task, advance=1, failures=self._failures, rate=self._done / elapsed)
        if self._timer is None:
            self._progress.refresh()

    def note(self, text: str) -> None:
        """A message above the bar (printing directly would tear the bar)."""
        self._progress.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        """Stop redrawing."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._progress.refresh()
        self._progress.stop()


class LogProgress:
    """One plain line every ``interval`` seconds (for logs, pipes and CI)."""

    def __init__(self, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self._stream = stream or sys.stderr
        self._interval = interval
        self._total = 0
        self._done = 0
        self._failures = 0
        self._t0 = time.monotonic()
        self._last = self._t0

    def start(self, total: int, already_done: int) -> None:
        """Log what is planned."""
        self._total = total
        self._t0 = self._last = time.monotonic()
        self._line(f"progress: {total} to measure ({already_done} already done)")

    def advance(self, measurement: dict[str, Any], failed: bool) -> None:
        """Count one stored measurement; log when the interval has passed."""
        self._done += 1
        self._failures += failed
        now = time.monotonic()
        if now - self._last >= self._interval or self._done == self._total:
            self._last = now
            rate = self._done / max(now - self._t0, 1e-6)
            eta = (self._total - self._done) / rate if rate > 0 else float("inf")
            self._line(
                f"progress: {self._done}/{self._total} ({100 * self._done / max(self._total, 1):.1f} %), "
                f"{rate:.1f}/s, ETA {eta:.0f} s, {self._failures} with failures"
            )

    def note(self, text: str) -> None:
        """A message between the progress lines."""
        self._line(text)

    def close(self) -> None:
        """Nothing to release."""

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
