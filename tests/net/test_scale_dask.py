"""Dask over the Parquet archive gives the same verdicts and matrix as pandas (local cluster on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from censorscope.analysis.aggregate import blocking_matrix
from censorscope.analysis.export import export
from censorscope.analysis.records import iter_records
from censorscope.analysis.scale import blocking_matrix_dask, verdicts_dask
from censorscope.analysis.verdicts import verdicts

pytestmark = pytest.mark.net


def _measurement(run: int, i: int, day: int, reset: bool) -> dict:
    target = f"https://site{i % 7}.example/"
    obs = [
        {"id": 1, "operation": "dns_query", "parent_id": None, "t0": 0.0, "t": 0.01, "failure": None,
         "query_name": f"site{i % 7}.example", "query_type": "A", "transport": "udp",
         "resolver": "203.0.113.10:53", "addresses": ["203.0.113.100"],
         "responses": [{"t": 0.01, "source": "203.0.113.10:53", "rcode": "NOERROR", "flags": ["QR", "RD", "RA"],
                        "answers": [{"name": f"site{i % 7}.example.", "type": "A", "ttl": 60,
                                     "data": "203.0.113.100"}], "addresses": ["203.0.113.100"]}]},
        {"id": 2, "operation": "connect", "parent_id": 1, "t0": 0.01, "t": 0.02, "failure": None,
         "address": "203.0.113.100:443", "ip": "203.0.113.100", "port": 443, "proto": "tcp"},
        {"id": 3, "operation": "tls_handshake", "parent_id": 2, "t0": 0.02, "t": 0.03,
         "failure": "connection_reset" if reset else None, "address": "203.0.113.100:443",
         "server_name": f"site{i % 7}.example"},
    ]
    control = {"observations": [dict(o, failure=None) for o in obs]}
    return {"measurement_id": f"r{run}-m{i}", "campaign": "c", "run_id": f"20261101T00000{run}Z-aaaaaa",
            "probe": "web", "probe_version": "1", "input": target, "repetition": 0, "attempt": 0,
            "measurement_start_time": f"2026-11-{day:02d}T0{run}:{i % 60:02d}:00.000000Z", "runtime": 0.1,
            "vantage": {"cc": "ZZ", "asn": f"AS6449{run % 2}", "network": None, "resolver": "203.0.113.10:53"},
            "software": {"name": "censorscope", "version": "0"}, "observations": obs, "control": control,
            "annotations": {}}


def test_dask_matches_pandas(tmp_path: Path):
    from dask.distributed import Client, LocalCluster

    src = tmp_path / "raw.jsonl"
    with open(src, "w") as f:
        for run in range(4):
            for i in range(60):
                day = 1 + run % 3
                f.write(json.dumps(_measurement(run, i, day, reset=(i % 7 == 3 and run >= 2))) + "\n")
    export(src, "parquet", tmp_path / "archive")
    want_v = verdicts(list(iter_records(src)))
    times = {m["measurement_id"]: m["measurement_start_time"] for m in iter_records(src)}
    if "measurement_start_time" not in want_v.columns:
        want_v["measurement_start_time"] = want_v["measurement_id"].map(times)
    want_m = blocking_matrix(want_v)
    assert (want_v["verdict"] == "blocked").sum() > 0 and (want_v["verdict"] == "ok").sum() > 0

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        lazy = verdicts_dask(tmp_path / "archive").persist()
        got_v = lazy.compute()
        got_m = blocking_matrix_dask(lazy)

    cols = ["measurement_id", "verdict", "method", "confidence", "evidence"]
    a = want_v[cols].sort_values("measurement_id", ignore_index=True)
    b = got_v[cols].sort_values("measurement_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    pd.testing.assert_frame_equal(want_m, got_m, check_dtype=False)
