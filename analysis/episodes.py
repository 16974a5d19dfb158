"""Blocking episodes: when blocking of a target from a vantage started and ended.

A series of blocking rates per time bucket (``blocking_matrix``) is cut into
segments of constant level by CUSUM change-point detection (Page 1954; the
same family OONI's pipeline runs over hourly country/network/domain buckets):
two one-sided cumulative sums of the deviations from the current segment's
mean, less a ``drift`` allowance, signal a change when one exceeds
``threshold``; the change is placed where that sum last left zero. Segments
whose mean rate reaches ``level`` are blocking; adjacent blocking segments
merge into one episode. An episode still blocking in the last bucket has no
``end``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from censorscope.analysis.aggregate import DEFAULT_BY, blocking_matrix


def change_points(x: Sequence[float], *, drift: float = 0.1, threshold: float = 0.8, min_size: int = 2) -> list[int]:
    """Indices where a new level starts in ``x`` (two-sided CUSUM, restarted after each change)."""
    values = np.asarray(x, dtype=float)
    points: list[int] = []
    start = 0
    n = len(values)
    while start < n - 1:
        mean = values[start]
        pos = neg = 0.0
        pos_origin = neg_origin = start
        found = None
        for i in range(start + 1, n):
            seg_len = i - start
            dev = values[i] - mean
            if pos == 0.0:
                pos_origin = i
            if neg == 0.0:
                neg_origin = i
            pos = max(0.0, pos + dev - drift)
            neg = max(0.0, neg - dev - drift)
            if pos > threshold or neg > threshold:
                found = pos_origin if pos > threshold else neg_origin
                break
            mean += (values[i] - mean) / (seg_len + 1)  # running mean of the current segment
        if found is None:
            break
        if found - start >= min_size or not points:
            points.append(found)
        start = found
    return points


def segments(x: Sequence[float], **kw: float) -> list[tuple[int, int, float]]:
    """(start, end-exclusive, mean) of each constant-level segment of ``x``."""
    values = np.asarray(x, dtype=float)
    cuts = [0, *change_points(values, **kw), len(values)]
    return [(a, b, float(values[a:b].mean())) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def episodes(
    verdicts: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, freq: str = "D", *, level: float = 0.5,
    drift: float = 0.1, threshold: float = 0.8,
) -> pd.DataFrame:
    """Blocking episodes per group: ``*by, start, end, periods, mean_rate, method``.

    Buckets without a conclusive verdict carry the previous rate forward (no
    data is not evidence of a change); groups that never have one are skipped.
    """
    by = list(by)
    matrix = blocking_matrix(verdicts, by=by, freq=freq)
    rows = []
    for key, g in matrix.groupby(by, dropna=False, observed=True):
        g = g.sort_values("period")
        full = pd.date_range(g["period"].min(), g["period"].max(), freq=freq)
        series = g.set_index("period")["blocking_rate"].reindex(full).ffill()
        methods = g.set_index("period")["method"].reindex(full)
        if series.isna().all():
            continue
        series = series.fillna(0.0)
        segs = segments(series.to_numpy(), drift=drift, threshold=threshold)
        merged: list[list[float]] = []
        for a, b, mean in segs:
            if mean < level:
                continue
            if merged and merged[-1][1] == a:
                merged[-1][1] = b
            else:
                merged.append([a, b, 0.0])
        key = key if isinstance(key, tuple) else (key,)
        for a, b, _ in merged:
            a, b = int(a), int(b)
            window = methods.iloc[a:b].dropna()
            rows.append({
                **dict(zip(by, key, strict=True)),
                "start": full[a],
                "end": full[b] if b < len(full) else pd.NaT,
                "periods": b - a,
                "mean_rate": float(series.iloc[a:b].mean()),
                "method": window.value_counts().index[0] if len(window) else None,
            })
    return pd.DataFrame(rows, columns=[*by, "start", "end", "periods", "mean_rate", "method"])
