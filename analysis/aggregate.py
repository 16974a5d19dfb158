"""Blocking patterns over time: rates per target × time bucket × vantage, method mix, first/last seen.

Every function takes a verdicts DataFrame (``censorscope.analysis.verdicts``
output, which carries ``measurement_start_time``) and returns a DataFrame.
Only conclusive verdicts count towards a blocking rate: ``blocking_rate =
blocked / (blocked + ok)``. ``down`` (the site fails from the control too) and
``inconclusive`` are counted in their own columns and never as blocking.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

VERDICTS = ("ok", "down", "blocked", "inconclusive")
DEFAULT_BY = ("input", "vantage_cc", "vantage_asn")


def _check(verdicts: pd.DataFrame, by: Sequence[str]) -> None:
    missing = [c for c in (*by, "verdict", "measurement_start_time") if c not in verdicts.columns]
    if missing:
        raise ValueError(f"verdicts lack column(s) {missing}; pass the output of censorscope.analysis.verdicts")


def _bucketed(verdicts: pd.DataFrame, freq: str) -> pd.DataFrame:
    df = verdicts.copy()
    t = pd.to_datetime(df["measurement_start_time"], utc=True, format="ISO8601")
    df["period"] = t.dt.tz_localize(None).dt.to_period(freq).dt.start_time.dt.tz_localize("UTC")
    return df


def blocking_matrix(verdicts: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, freq: str = "D") -> pd.DataFrame:
    """Counts per verdict, blocking rate and dominant method per (by…, period).

    Columns: ``*by, period, n, ok, down, blocked, inconclusive, blocking_rate, method``
    (``blocking_rate`` is NaN when the bucket has no conclusive verdict).
    """
    by = list(by)
    _check(verdicts, by)
    df = _bucketed(verdicts, freq)
    keys = [*by, "period"]
    counts = (
        df.groupby(keys, dropna=False, observed=True)["verdict"].value_counts().unstack(fill_value=0)
        .reindex(columns=list(VERDICTS), fill_value=0)
    )
    counts.columns.name = None
    counts["n"] = counts[list(VERDICTS)].sum(axis=1)
    conclusive = counts["ok"] + counts["blocked"]
    counts["blocking_rate"] = (counts["blocked"] / conclusive).where(conclusive > 0)
    blocked = df[df["verdict"] == "blocked"]
    if len(blocked):
        top = blocked.groupby(keys, dropna=False, observed=True)["method"].agg(lambda s: s.value_counts().index[0])
        counts["method"] = top.reindex(counts.index)
    else:
        counts["method"] = None
    out = counts.reset_index()
    return out[[*keys, "n", *VERDICTS, "blocking_rate", "method"]]


def method_mix(verdicts: pd.DataFrame, by: Sequence[str] = ("vantage_cc", "vantage_asn")) -> pd.DataFrame:
    """How blocking is done: count and share of each method among ``blocked`` verdicts per group."""
    by = list(by)
    blocked = verdicts[verdicts["verdict"] == "blocked"]
    counts = blocked.groupby([*by, "method"], dropna=False, observed=True).size().rename("count").reset_index()
    totals = counts.groupby(by, dropna=False, observed=True)["count"].transform("sum")
    counts["share"] = counts["count"] / totals
    return counts.sort_values([*by, "count"], ascending=[True] * len(by) + [False], ignore_index=True)


def first_last_blocked(verdicts: pd.DataFrame, by: Sequence[str] = DEFAULT_BY) -> pd.DataFrame:
    """First and last time each target was seen blocked from each vantage, with counts."""
    by = list(by)
    _check(verdicts, by)
    df = verdicts[verdicts["verdict"] == "blocked"].copy()
    df["t"] = pd.to_datetime(df["measurement_start_time"], utc=True, format="ISO8601")
    g = df.groupby(by, dropna=False, observed=True)
    return g.agg(first_blocked=("t", "min"), last_blocked=("t", "max"), n_blocked=("t", "size")).reset_index()


def compare_vantages(verdicts: pd.DataFrame, vantage: str = "vantage_asn", target: str = "input") -> pd.DataFrame:
    """Blocking rate of each target (rows) from each vantage (columns) over the whole period."""
    conclusive = verdicts[verdicts["verdict"].isin(["ok", "blocked"])]
    rate = (conclusive["verdict"] == "blocked").groupby([conclusive[target], conclusive[vantage]]).mean()
    return rate.unstack(vantage)
