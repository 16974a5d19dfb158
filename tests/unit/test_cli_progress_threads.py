"""The terminal progress bar starts no thread (so the bulk DNS engine may fork its worker) and still
redraws from the event loop."""

from __future__ import annotations

import asyncio
import io
import threading

from rich.console import Console

from censorscope.measure import cli_progress, dns_bulk
from censorscope.measure.cli_progress import BarProgress


def test_bar_starts_no_thread_and_redraws_from_the_loop(monkeypatch) -> None:
    monkeypatch.setattr(cli_progress, "REFRESH", 0.02)
    out = io.StringIO()
    bar = BarProgress(console=Console(file=out, force_terminal=True, width=160))
    seen: dict[str, object] = {}

    async def run() -> None:
        before = threading.active_count()
        bar.start(10, 0)
        seen["threads"] = threading.active_count() - before
        seen["worker_allowed"] = dns_bulk._use_worker()
        bar.advance({}, False)
        bar.advance({}, True)
        size = len(out.getvalue())
        await asyncio.sleep(0.2)  # no measurement ends: the loop's timer redraws (elapsed time moves)
        seen["redrawn"] = len(out.getvalue()) > size
        bar.close()

    asyncio.run(run())
    assert seen["threads"] == 0
    assert seen["redrawn"] is True
    if hasattr(dns_bulk.os, "fork") and (dns_bulk.os.cpu_count() or 1) >= 2 and threading.active_count() == 1:
        assert seen["worker_allowed"] is True
    text = out.getvalue()
    assert "2/10" in text and "1 with failures" in text


def test_bar_outside_a_loop_redraws_at_each_step() -> None:
    out = io.StringIO()
    bar = BarProgress(console=Console(file=out, force_terminal=True, width=160))
    bar.start(3, 0)
    bar.advance({}, False)
    assert "1/3" in out.getvalue()
    bar.close()
