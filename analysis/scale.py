"""The same analysis beyond memory: verdicts and aggregations on Dask over the Parquet archive.

Install with ``pip install 'censorscope[dask]'``. The archive (``gc`` or
``export --format parquet``) is read lazily, shuffled so that each run's
measurements share a partition (confirmation attempts and residual-blocking
context live within a run), judged partition by partition with the same
rules as ``censorscope.analysis.verdicts``, and aggregated with the additive
``verdict_counts`` whose small result is finished by the same pandas code
(``matrix_from_counts``): results are identical to the pandas path.

Known limit: context *across* runs (a residual-blocking window left by one
run and met by another run that started within seconds of it) is not seen on
this path; the pandas path sees it when both runs are loaded together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from censorscope.analysis.aggregate import DEFAULT_BY, matrix_from_counts, verdict_counts
from censorscope.measure.records import from_row

VERDICT_META_COLUMNS = ("measurement_id", "input", "probe", "vantage_cc", "vantage_asn", "verdict", "method",
                        "confidence", "evidence", "rules_version", "measurement_start_time")


def _judge_partition(part: pd.DataFrame) -> pd.DataFrame:
    from censorscope.analysis.verdicts import verdicts

    rows = part.drop(columns=[c for c in part.columns if c == "date"]).to_dict("records")
    measurements = [from_row(r) for r in rows]
    v = verdicts(measurements)
    if "measurement_start_time" not in v.columns:
        times = {m["measurement_id"]: m["measurement_start_time"] for m in measurements}
        v["measurement_start_time"] = v["measurement_id"].map(times)
    out = v.reindex(columns=list(VERDICT_META_COLUMNS))
    return out.astype({"confidence": "float64"})


def _meta() -> pd.DataFrame:
    cols = {c: pd.Series(dtype="object") for c in VERDICT_META_COLUMNS}
    cols["confidence"] = pd.Series(dtype="float64")
    return pd.DataFrame(cols)


def read_archive(path: str | Path) -> Any:
    """The Parquet archive as a Dask DataFrame (one row per measurement)."""
    import dask.dataframe as dd

    return dd.read_parquet(str(path))


def verdicts_dask(path: str | Path) -> Any:
    """A lazy Dask DataFrame of verdicts for every measurement in the archive at ``path``."""
    ddf = read_archive(path)
    ddf = ddf.shuffle(on="run_id")
    return ddf.map_partitions(_judge_partition, meta=_meta())


def blocking_matrix_dask(verdicts: Any, by: Sequence[str] = DEFAULT_BY, freq: str = "D") -> pd.DataFrame:
    """``blocking_matrix`` of a Dask verdicts frame, computed piecewise and finished in pandas."""
    by = list(by)
    meta = verdict_counts(_meta(), by, freq)
    partial = verdicts.map_partitions(verdict_counts, by, freq, meta=meta)
    # The partial counts are tiny (one row per bucket, verdict and method per partition): gather them
    # and add them up in pandas rather than shuffling them.
    keys = [*by, "period", "verdict", "method"]
    counts = partial.compute().groupby(keys, dropna=False, observed=True)["count"].sum().reset_index()
    return matrix_from_counts(counts, by)
