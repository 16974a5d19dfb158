"""Plots for notebooks and reports; every function returns a matplotlib Figure.

Figures are drawn with the non-interactive Agg canvas (no display needed):
a notebook shows a returned Figure as it is, and ``report`` embeds them as
PNG. Colours are fixed per verdict so plots read the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from censorscope.analysis.aggregate import blocking_matrix

VERDICT_COLOURS = {"ok": "#4caf50", "down": "#9e9e9e", "inconclusive": "#ffc107", "blocked": "#d32f2f"}
_ORDER = ("none", "ok", "down", "inconclusive", "blocked")  # "none": no measurement that day


def _day_verdict(g: pd.Series) -> str:
    # The worst conclusive verdict of the bucket, as a reader wants to see it: blocked if
    # any measurement was judged blocked, else inconclusive, down, ok.
    for v in ("blocked", "inconclusive", "down", "ok"):
        if (g == v).any():
            return v
    return "none"


def heatmap(verdicts: pd.DataFrame, *, target: str = "input", freq: str = "D", max_targets: int = 60) -> Figure:
    """Targets × time buckets, each cell coloured by its verdict (blocked cells labelled by method)."""
    df = verdicts.copy()
    t = pd.to_datetime(df["measurement_start_time"], utc=True, format="ISO8601")
    df["period"] = t.dt.tz_localize(None).dt.to_period(freq).dt.start_time
    cell = df.groupby([target, "period"])["verdict"].agg(_day_verdict).unstack("period")
    blocked = df[df["verdict"] == "blocked"]
    methods = (blocked.groupby([target, "period"])["method"].agg(lambda s: s.value_counts().index[0])
               .unstack("period") if len(blocked) else None)
    cell = cell.reindex(columns=pd.date_range(df["period"].min(), df["period"].max(), freq=freq)).fillna("none")
    order = (cell == "blocked").sum(axis=1).sort_values(ascending=False).index[:max_targets]
    cell = cell.loc[order]
    codes = cell.apply(lambda col: col.map(_ORDER.index)).to_numpy(dtype=float)
    cmap = ListedColormap(["#ffffff", *(VERDICT_COLOURS[v] for v in _ORDER[1:])])
    fig = Figure(figsize=(max(6.0, 0.35 * cell.shape[1] + 3), max(2.5, 0.3 * cell.shape[0] + 1.5)))
    ax = fig.add_subplot()
    ax.imshow(codes, aspect="auto", cmap=cmap, vmin=0, vmax=len(_ORDER) - 1, interpolation="nearest")
    ax.set_yticks(range(len(cell.index)), [str(s)[:48] for s in cell.index], fontsize=7)
    step = max(1, cell.shape[1] // 15)
    ax.set_xticks(range(0, cell.shape[1], step), [c.strftime("%m-%d") for c in cell.columns[::step]],
                  rotation=45, fontsize=7)
    if methods is not None:
        methods = methods.reindex(index=cell.index, columns=cell.columns)
        if cell.shape[0] * cell.shape[1] <= 600:
            for (i, j), m in np.ndenumerate(methods.to_numpy()):
                if isinstance(m, str):
                    ax.text(j, i, m.split(".")[0], ha="center", va="center", fontsize=5, color="white")
    handles = [Patch(color=VERDICT_COLOURS[v], label=v) for v in _ORDER[1:]]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ax.set_title("Verdict per target and day (worst verdict of the day)")
    fig.tight_layout()
    return fig


def timeline(verdicts: pd.DataFrame, episodes: pd.DataFrame | None = None, *,
             by: Sequence[str] = ("input",), freq: str = "D", max_lines: int = 8) -> Figure:
    """Blocking rate over time per group (the ``max_lines`` most blocked), episodes shaded in its colour."""
    by = list(by)
    m = blocking_matrix(verdicts, by=by, freq=freq)
    totals = m.groupby(by, dropna=False)["blocked"].sum().sort_values(ascending=False)
    top = {k if isinstance(k, tuple) else (k,) for k in totals.index[:max_lines]}
    fig = Figure(figsize=(9, 3.5))
    ax = fig.add_subplot()
    for key, g in m.groupby(by, dropna=False):
        parts = key if isinstance(key, tuple) else (key,)
        if parts not in top:
            continue
        label = " ".join(str(k)[:40] for k in parts)
        rate = g.set_index("period")["blocking_rate"]
        (line,) = ax.plot(rate.index.tz_localize(None), rate.to_numpy(), marker="o", markersize=3, label=label)
        if episodes is None or not len(episodes):
            continue
        mine = episodes
        for col, value in zip(by, parts, strict=True):
            mine = mine[mine[col] == value]
        for _, e in mine.iterrows():
            end = e["end"] if not pd.isna(e["end"]) else m["period"].max()
            ax.axvspan(pd.Timestamp(e["start"]).tz_localize(None), pd.Timestamp(end).tz_localize(None),
                       color=line.get_color(), alpha=0.12)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("blocking rate")
    ax.set_title("Share of conclusive measurements judged blocked (shaded: detected episodes)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def method_breakdown(verdicts: pd.DataFrame) -> Figure:
    """How blocking is done: number of blocked verdicts per method."""
    counts = verdicts.loc[verdicts["verdict"] == "blocked", "method"].value_counts()
    fig = Figure(figsize=(7, max(2.0, 0.35 * len(counts) + 1)))
    ax = fig.add_subplot()
    if len(counts):
        ax.barh(counts.index[::-1], counts.to_numpy()[::-1], color=VERDICT_COLOURS["blocked"])
    else:
        ax.text(0.5, 0.5, "no blocked verdicts", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("blocked verdicts")
    ax.set_title("Blocking methods")
    fig.tight_layout()
    return fig
