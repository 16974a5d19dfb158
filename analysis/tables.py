"""Measurements and observations as pandas DataFrames (columns in docs/analysis.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from censorscope.analysis.records import PathLike, Problem, iter_records

MEASUREMENT_COLUMNS = (
    "measurement_id", "source", "campaign", "run_id", "probe", "probe_version", "input", "repetition",
    "attempt", "confirms", "measurement_start_time", "date", "runtime", "vantage_cc", "vantage_asn",
    "vantage_network", "vantage_resolver", "n_observations", "failure", "failed_operation", "incomplete",
    "has_control", "control_failure", "ooni_test_name", "ooni_blocking", "ooni_accessible",
)
OBSERVATION_COLUMNS = (
    "measurement_id", "input", "probe", "id", "operation", "parent_id", "t0", "t", "failure", "address",
    "query_name", "server_name", "status", "detail",
)
_OBS_BASE = frozenset(("id", "operation", "parent_id", "t0", "t", "failure"))


def _first_failure(observations: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    for o in observations:
        if o.get("failure"):
            return o["failure"], o.get("operation")
    return None, None


def _blocking_text(v: Any) -> str | None:
    # OONI's `blocking` is false, null or a string ("dns", "tcp_ip", "http-failure", "http-diff"):
    # keep one type per column (PERF-NOTES: type-unstable fields break columnar readers).
    if v is None:
        return None
    if v is False:
        return "false"
    return str(v)


def measurement_row(m: dict[str, Any]) -> dict[str, Any]:
    """The flat row of one measurement dict."""
    vantage = m.get("vantage") or {}
    ann = m.get("annotations") or {}
    ooni = ann.get("ooni") or {}
    obs = m.get("observations") or []
    failure, op = _first_failure(obs)
    control = m.get("control")
    return {
        "measurement_id": m.get("measurement_id"),
        "source": ann.get("source", "censorscope"),
        "campaign": m.get("campaign"),
        "run_id": m.get("run_id"),
        "probe": m.get("probe"),
        "probe_version": m.get("probe_version"),
        "input": m.get("input"),
        "repetition": m.get("repetition") or 0,
        "attempt": m.get("attempt") or 0,
        "confirms": ann.get("confirms"),
        "measurement_start_time": m.get("measurement_start_time"),
        "runtime": m.get("runtime"),
        "vantage_cc": vantage.get("cc"),
        "vantage_asn": vantage.get("asn"),
        "vantage_network": vantage.get("network"),
        "vantage_resolver": vantage.get("resolver"),
        "n_observations": len(obs),
        "failure": failure,
        "failed_operation": op,
        "incomplete": bool(ann.get("incomplete") or ann.get("runner_failure") or ann.get("probe_error")),
        "has_control": control is not None,
        "control_failure": (control or {}).get("failure") if isinstance(control, dict) else None,
        "ooni_test_name": ooni.get("test_name"),
        "ooni_blocking": _blocking_text(ooni.get("blocking")) if "blocking" in ooni else None,
        "ooni_accessible": ooni.get("accessible"),
    }


def measurements_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """A measurements DataFrame from flat rows (typed columns, UTC times, a ``date`` column)."""
    df = pd.DataFrame.from_records(list(rows), columns=list(MEASUREMENT_COLUMNS))
    df["measurement_start_time"] = pd.to_datetime(df["measurement_start_time"], utc=True, format="ISO8601")
    df["date"] = df["measurement_start_time"].dt.floor("D")
    for col in ("repetition", "attempt", "n_observations"):
        df[col] = df[col].astype("int64")
    df["runtime"] = pd.to_numeric(df["runtime"], errors="coerce")
    df["has_control"] = df["has_control"].astype(bool)
    df["incomplete"] = df["incomplete"].astype(bool)
    return df


def load(paths: PathLike | Iterable[PathLike], on_problem: Problem | None = None) -> pd.DataFrame:
    """One row per measurement, from censorscope JSONL/Parquet and OONI files (docs/analysis.md)."""
    return measurements_frame(measurement_row(m) for m in iter_records(paths, on_problem))


def observation_rows(m: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """The flat rows of one measurement's observations."""
    for o in m.get("observations") or []:
        yield {
            "measurement_id": m.get("measurement_id"),
            "input": m.get("input"),
            "probe": m.get("probe"),
            "id": o.get("id"),
            "operation": o.get("operation"),
            "parent_id": o.get("parent_id"),
            "t0": o.get("t0"),
            "t": o.get("t"),
            "failure": o.get("failure"),
            "address": o.get("address"),
            "query_name": o.get("query_name"),
            "server_name": o.get("server_name"),
            "status": o.get("status"),
            "detail": {k: v for k, v in o.items() if k not in _OBS_BASE},
        }


def observations(paths: PathLike | Iterable[PathLike], on_problem: Problem | None = None) -> pd.DataFrame:
    """One row per observation (the nested table of ``load``), linked by ``measurement_id``."""
    rows = (r for m in iter_records(paths, on_problem) for r in observation_rows(m))
    return pd.DataFrame.from_records(list(rows), columns=list(OBSERVATION_COLUMNS))
