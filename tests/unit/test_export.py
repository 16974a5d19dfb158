"""export: Parquet round-trips exactly, CSV has the documented columns, OONI format re-imports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import censorscope.analysis.export as export_mod
from censorscope.analysis.export import export, to_ooni
from censorscope.analysis.ooni import from_ooni
from censorscope.analysis.records import iter_records
from censorscope.analysis.tables import MEASUREMENT_COLUMNS, load


def _web(i: int) -> dict:
    return {
        "measurement_id": f"m{i}", "campaign": "c", "run_id": "r1", "probe": "web", "probe_version": "0.1.0",
        "input": "https://site.example/", "repetition": 0, "attempt": 0,
        "measurement_start_time": f"2026-11-{10 + i % 2}T08:00:00.000001Z", "runtime": 1.5,
        "vantage": {"cc": "ZZ", "asn": "AS64496", "network": "lab", "resolver": "203.0.113.10:53"},
        "software": {"name": "censorscope", "version": "0.1.0"},
        "observations": [
            {"id": 1, "operation": "dns_query", "parent_id": None, "t0": 0.0, "t": 0.01, "failure": None,
             "query_name": "site.example", "query_type": "A", "transport": "udp", "resolver": "203.0.113.10:53",
             "addresses": ["198.51.100.200"],
             "responses": [
                 {"t": 0.005, "source": "203.0.113.10:53", "rcode": "NOERROR", "flags": ["QR"],
                  "answers": [{"name": "site.example.", "type": "A", "ttl": 60, "data": "198.51.100.200"}],
                  "addresses": ["198.51.100.200"]},
                 {"t": 0.009, "source": "203.0.113.10:53", "rcode": "NOERROR", "flags": ["QR", "RD", "RA"],
                  "answers": [{"name": "site.example.", "type": "A", "ttl": 300, "data": "203.0.113.100"}],
                  "addresses": ["203.0.113.100"]}]},
            {"id": 2, "operation": "connect", "parent_id": 1, "t0": 0.01, "t": 0.02, "failure": None,
             "address": "203.0.113.100:443", "proto": "tcp"},
            {"id": 3, "operation": "tls_handshake", "parent_id": 2, "t0": 0.02, "t": 0.05,
             "failure": "connection_reset", "address": "203.0.113.100:443", "server_name": "site.example"},
            {"id": 4, "operation": "http_round_trip", "parent_id": 2, "t0": 0.05, "t": 0.09, "failure": None,
             "url": "http://site.example/", "method": "GET", "status": 200, "headers": [["Server", "nginx"]],
             "hops": [{"url": "http://site.example/", "status": 302, "headers": [["Location", "https://x/"]],
                       "location": "https://x/"},
                      {"url": "https://x/", "status": 200, "headers": [["Server", "nginx"]], "location": None}],
             "body_head": "<title>Hi</title>", "body_truncated": False},
        ],
        "control": None, "annotations": {},
    }


def _src(tmp_path: Path) -> Path:
    p = tmp_path / "run.jsonl"
    p.write_text("".join(json.dumps(_web(i)) + "\n" for i in range(5)))
    return p


def test_parquet_export_round_trips_and_partitions(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(export_mod, "PARQUET_BATCH", 2)  # exercise batched writing
    n = export(_src(tmp_path), "parquet", tmp_path / "pq")
    assert n == 5
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == ["date=2026-11-10", "date=2026-11-11"]
    back = sorted(iter_records(tmp_path / "pq"), key=lambda m: m["measurement_id"])
    assert back == [_web(i) for i in range(5)]


def test_csv_export(tmp_path: Path):
    export(_src(tmp_path), "csv", tmp_path / "m.csv")
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert len(rows) == 5 and list(rows[0]) == list(MEASUREMENT_COLUMNS)
    assert rows[0]["failure"] == "connection_reset" and rows[0]["failed_operation"] == "tls_handshake"


def test_ooni_export_shape_and_reimport(tmp_path: Path):
    o = to_ooni(_web(0))
    assert o["test_name"] == "web_connectivity" and o["measurement_start_time"] == "2026-11-10 08:00:00"
    assert o["probe_cc"] == "ZZ" and o["resolver_ip"] == "203.0.113.10"
    tk = o["test_keys"]
    assert tk["queries"][0]["answers"] == [{"answer_type": "A", "ttl": 60, "ipv4": "198.51.100.200"}]
    assert len(tk["queries"][0]["censorscope_all_responses"]) == 2  # the injected and the real answer
    assert tk["tcp_connect"] == [{"ip": "203.0.113.100", "port": 443, "t0": 0.01, "t": 0.02,
                                  "status": {"failure": None, "success": True, "blocked": None}}]
    assert tk["tls_handshakes"][0]["failure"] == "connection_reset"
    assert [r["response"]["code"] for r in tk["requests"]] == [200, 302]  # newest first
    export(_src(tmp_path), "ooni", tmp_path / "o.jsonl")
    df = load(tmp_path / "o.jsonl")
    assert len(df) == 5 and set(df["source"]) == {"ooni"} and set(df["probe"]) == {"web"}
    back = from_ooni(json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0]))
    assert [x["operation"] for x in back["observations"]] == ["dns_query", "connect", "tls_handshake",
                                                              "http_round_trip"]
    assert back["observations"][3]["hops"][0]["status"] == 302
