"""Plots draw what they promise (checked on the figure objects, not on pixels)."""

from __future__ import annotations

import pandas as pd

from censorscope.analysis.episodes import episodes
from censorscope.analysis.plots import heatmap, method_breakdown, timeline

DAY0 = pd.Timestamp("2026-01-01T00:00:00Z")


def _v(target: str, days: list[str], method: str = "dns.injection") -> list[dict]:
    return [{"measurement_id": f"{target}{d}", "input": target, "probe": "web", "vantage_cc": "ZZ",
             "vantage_asn": "AS1", "verdict": v, "method": method if v == "blocked" else None,
             "measurement_start_time": (DAY0 + pd.Timedelta(days=d)).isoformat()} for d, v in enumerate(days)]


def _frame() -> pd.DataFrame:
    rows = _v("a", ["ok"] * 4 + ["blocked"] * 4) + _v("b", ["ok"] * 8) + _v("c", ["down", "inconclusive"] * 4)
    rows += _v("d", ["blocked"] * 8, method="tcp.reset")
    return pd.DataFrame(rows)


def test_timeline_draws_one_line_per_target_and_shades_episodes():
    v = _frame()
    fig = timeline(v, episodes(v), max_lines=3)
    ax = fig.axes[0]
    assert len(ax.lines) == 3  # the three most blocked of four targets
    assert {"a", "d"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    assert len(ax.patches) == 2  # episodes of a and d


def test_heatmap_cells_and_method_breakdown():
    v = _frame()
    fig = heatmap(v)
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (4, 8)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "d" and set(labels) == {"a", "b", "c", "d"}
    fig = method_breakdown(v)
    bars = fig.axes[0].patches
    assert sorted(b.get_width() for b in bars) == [4, 8]
