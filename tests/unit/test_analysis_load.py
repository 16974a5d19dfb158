"""load/observations over censorscope JSONL and Parquet and OONI JSON, JSONL and API wrappers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from censorscope.analysis.ooni import from_ooni
from censorscope.analysis.records import iter_records
from censorscope.analysis.tables import MEASUREMENT_COLUMNS, OBSERVATION_COLUMNS, load, observations
from censorscope.measure.records import parquet_schema, to_row

FIX = Path(__file__).parent.parent / "fixtures"


def _m(i: int, **kw) -> dict:
    m = {
        "measurement_id": f"m{i}", "campaign": "c", "run_id": "r", "probe": "web", "probe_version": "1",
        "input": f"https://s{i}.example/", "repetition": 0, "attempt": 0,
        "measurement_start_time": f"2026-11-0{1 + i % 3}T12:00:00.000000Z", "runtime": 0.5,
        "vantage": {"cc": "ZZ", "asn": "AS64496", "network": "n", "resolver": None},
        "software": {"name": "censorscope", "version": "0.1.0"},
        "observations": [
            {"id": 1, "operation": "dns_query", "parent_id": None, "t0": 0, "t": 0.01, "failure": None,
             "query_name": f"s{i}.example", "addresses": ["203.0.113.5"]},
            {"id": 2, "operation": "connect", "parent_id": 1, "t0": 0.01, "t": 0.2,
             "failure": "connection_reset" if i % 2 else None, "address": "203.0.113.5:443"},
        ],
        "control": None, "annotations": {},
    }
    m.update(kw)
    return m


def test_cut_off_measurement_is_marked_incomplete(tmp_path: Path):
    f = tmp_path / "r.jsonl"
    cut = _m(1, annotations={"incomplete": True, "runner_failure": "generic_timeout_error",
                             "unfinished_operations": ["tls_handshake"]})
    crashed = _m(3, annotations={"probe_error": "bug: KeyError: 'x'"})
    f.write_text("".join(json.dumps(m) + "\n" for m in (_m(0), cut, crashed, _m(5))))
    df = load(f)
    assert df["incomplete"].dtype == bool
    assert df["incomplete"].tolist() == [False, True, True, False]
    assert df.loc[1, "failure"] == "connection_reset"  # from the partial observations, kept beside the mark


def test_load_censorscope_jsonl_dir_with_torn_line(tmp_path: Path):
    d = tmp_path / "results"
    d.mkdir()
    with open(d / "20261101T000000Z-aaaaaa.jsonl", "w") as f:
        for i in range(5):
            f.write(json.dumps(_m(i)) + "\n")
        f.write('{"measurement_id": "torn", "pro')
    (d / "20261101T000000Z-aaaaaa.meta.json").write_text('{"status": "complete"}')
    problems: list[str] = []
    df = load(d, on_problem=problems.append)
    assert list(df.columns) == list(MEASUREMENT_COLUMNS)
    assert len(df) == 5 and len(problems) == 1 and "torn last line" in problems[0] and ":6:" in problems[0]
    assert df.loc[1, "failure"] == "connection_reset" and df.loc[1, "failed_operation"] == "connect"
    assert pd.isna(df.loc[0, "failure"])
    assert str(df["measurement_start_time"].dt.tz) == "UTC"
    assert df.loc[0, "date"].isoformat().startswith("2026-11-01")
    obs = observations(d)
    assert list(obs.columns) == list(OBSERVATION_COLUMNS) and len(obs) == 10
    assert obs.loc[1, "address"] == "203.0.113.5:443" and obs.loc[0, "detail"]["addresses"] == ["203.0.113.5"]


def test_load_parquet_archive(tmp_path: Path):
    part = tmp_path / "parquet" / "date=2026-11-01"
    part.mkdir(parents=True)
    ms = [_m(i) for i in range(4)]
    pq.write_table(pa.Table.from_pylist([to_row(m) for m in ms], schema=parquet_schema()), part / "r.parquet")
    assert list(iter_records(tmp_path / "parquet")) == ms
    df = load(tmp_path)
    assert sorted(df["measurement_id"]) == ["m0", "m1", "m2", "m3"]


def test_ooni_web_connectivity_mapping():
    raw = json.loads((FIX / "ooni_web_connectivity.json").read_text())
    m = from_ooni(raw)
    assert m["probe"] == "web" and m["input"] == "https://www.example.org/"
    assert m["measurement_start_time"] == "2026-03-01T10:00:00.000000Z"
    assert m["vantage"] == {"cc": "ZZ", "asn": "AS64500", "network": "Example ISP", "resolver": "203.0.113.10"}
    ops = [o["operation"] for o in m["observations"]]
    assert ops == ["dns_query", "connect", "http_round_trip"]
    dns, conn, http = m["observations"]
    assert dns["addresses"] == ["198.51.100.200"] and dns["responses"][0]["addresses"] == ["198.51.100.200"]
    assert conn["failure"] == "generic_timeout_error" and conn["address"] == "198.51.100.200:443"
    assert http["failure"] == "generic_timeout_error"
    ctrl = m["control"]["observations"]
    assert [o["operation"] for o in ctrl] == ["dns_query", "connect", "http_round_trip"]
    assert ctrl[0]["addresses"] == ["203.0.113.80"] and ctrl[2]["body_length"] == 1256
    assert m["annotations"]["ooni"]["blocking"] == "dns" and m["annotations"]["ooni"]["accessible"] is False


@pytest.mark.parametrize("layout", ["object", "array", "jsonl", "wrapper"])
def test_ooni_layouts_load_the_same(tmp_path: Path, layout: str):
    raw = json.loads((FIX / "ooni_web_connectivity.json").read_text())
    if layout == "object":
        (tmp_path / "m.json").write_text(json.dumps(raw, indent=2))
    elif layout == "array":
        (tmp_path / "m.json").write_text(json.dumps([raw, raw]))
    elif layout == "jsonl":
        (tmp_path / "m.jsonl").write_text(json.dumps(raw) + "\n" + json.dumps(raw) + "\n")
    else:
        (tmp_path / "m.json").write_text((FIX / "ooni_api_wrapper.json").read_text())
    df = load(tmp_path)
    assert set(df["source"]) == {"ooni"} and set(df["ooni_blocking"]) == {"dns"}
    assert set(df["vantage_asn"]) == {"AS64500"} and bool(df["has_control"].all())
    if layout == "wrapper":
        assert df.loc[0, "measurement_id"] == "20260301100000.000000_ZZ_webconnectivity_0123456789abcdef"


def test_ooni_circumvention_tests_and_unsupported_ones(tmp_path: Path):
    base = json.loads((FIX / "ooni_web_connectivity.json").read_text())
    tor = {**base, "test_name": "tor", "input": None,
           "test_keys": {"tcp_connect": [{"ip": "203.0.113.9", "port": 9001,
                                          "status": {"success": False, "failure": "connection_refused"}}],
                         "or_port_total": 1, "or_port_accessible": 0}}
    other = {**base, "test_name": "ndt"}
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in (tor, other)) + "\n")
    df = load(tmp_path)
    assert list(df["probe"]) == ["ooni.tor"] and df.loc[0, "failure"] == "connection_refused"
    assert pd.isna(df.loc[0, "ooni_blocking"])


def test_missing_path_is_an_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope")
