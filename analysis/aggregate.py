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


def with_period(verdicts: pd.DataFrame, freq: str) -> pd.DataFrame:
    """``verdicts`` plus a ``period`` column: the UTC start of each row's time bucket."""
    t = pd.to_datetime(verdicts["measurement_start_time"], utc=True, format="ISO8601")
    return verdicts.assign(period=t.dt.tz_localize(None).dt.to_period(freq).dt.start_time.dt.tz_localize("UTC"))


def verdict_counts(verdicts: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, freq: str = "D") -> pd.DataFrame:
    """Partial aggregate: rows per (by…, period, verdict, method) as ``count``.

    Counts add up across partitions, so a distributed engine can compute them
    piecewise (``censorscope.analysis.scale``) and ``matrix_from_counts``
    finishes both paths identically.
    """
    by = list(by)
    _check(verdicts, by)
    df = with_period(verdicts, freq)
    df = df.assign(method=df["method"].astype(object).where(df["verdict"] == "blocked", None))
    return df.groupby([*by, "period", "verdict", "method"], dropna=False, observed=True).size().rename(
        "count").reset_index()


def matrix_from_counts(counts: pd.DataFrame, by: Sequence[str] = DEFAULT_BY) -> pd.DataFrame:
    """The blocking matrix from ``verdict_counts`` output (see ``blocking_matrix``)."""
    keys = [*by, "period"]
    totals = counts.groupby([*keys, "verdict"], dropna=False, observed=True)["count"].sum().unstack(
        "verdict", fill_value=0).reindex(columns=list(VERDICTS), fill_value=0)
    totals.columns.name = None
    totals = totals.astype("int64")
    totals["n"] = totals[list(VERDICTS)].sum(axis=1)
    conclusive = totals["ok"] + totals["blocked"]
    totals["blocking_rate"] = (totals["blocked"] / conclusive).where(conclusive > 0)
    blocked = counts[(counts["verdict"] == "blocked") & counts["method"].notna()]
    per_method = blocked.groupby([*keys, "method"], dropna=False, observed=True)["count"].sum().reset_index()
    # dominant method: most frequent, ties broken alphabetically so every engine agrees
    per_method = per_method.sort_values([*keys, "count", "method"], ascending=[True] * len(keys) + [False, True])
    top = per_method.drop_duplicates(keys).set_index(keys)["method"]
    totals["method"] = top.reindex(totals.index).astype(object)
    totals["method"] = totals["method"].where(totals["method"].notna(), None)
    out = totals.reset_index().sort_values(keys, ignore_index=True)
    return out[[*keys, "n", *VERDICTS, "blocking_rate", "method"]]


def blocking_matrix(verdicts: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, freq: str = "D") -> pd.DataFrame:
    """Counts per verdict, blocking rate and dominant method per (by…, period).

    Columns: ``*by, period, n, ok, down, blocked, inconclusive, blocking_rate, method``
    (``blocking_rate`` is NaN when the bucket has no conclusive verdict).
    """
    return matrix_from_counts(verdict_counts(verdicts, by, freq), by)


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
