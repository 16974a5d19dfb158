"""Export measurements: Parquet (partitioned by date), CSV, or OONI's data format.

- ``parquet``: the same archive format ``gc`` writes (``censorscope.measure.records``),
  one file per date under ``OUT/date=YYYY-MM-DD/``, readable by pandas,
  DuckDB, Dask or Spark as a hive-partitioned dataset, and by ``load``.
- ``csv``: the flat measurements table of ``load`` (docs/analysis.md).
- ``ooni``: one OONI measurement per line (data format 0.2.0). ``web``
  measurements become ``web_connectivity`` with ``test_keys.queries``,
  ``tcp_connect``, ``tls_handshakes`` and ``requests`` (newest first, as OONI
  orders them) so OONI's tools can read them; other probes are exported as
  ``censorscope_<probe>`` tests carrying our observations verbatim.
  OONI-imported measurements keep their original test name.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from censorscope import __version__
from censorscope.analysis.records import PathLike, Problem, iter_records
from censorscope.analysis.tables import MEASUREMENT_COLUMNS, measurement_row
from censorscope.measure.records import parquet_schema, to_row

FORMATS = ("parquet", "csv", "ooni")
PARQUET_BATCH = 10_000


def _ooni_time(iso: str | None) -> str | None:
    return iso[:19].replace("T", " ") if iso else None


def _queries(obs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for o in obs:
        if o.get("operation") != "dns_query":
            continue
        first = (o.get("responses") or [{}])[0]
        answers = []
        for a in first.get("answers") or []:
            kind = a.get("type")
            entry: dict[str, Any] = {"answer_type": kind, "ttl": a.get("ttl")}
            key = {"A": "ipv4", "AAAA": "ipv6"}.get(kind, "hostname")
            entry[key] = a.get("data")
            answers.append(entry)
        out.append({
            "answers": answers or None, "engine": o.get("transport") or "udp", "failure": o.get("failure"),
            "hostname": o.get("query_name"), "query_type": o.get("query_type"),
            "resolver_address": o.get("resolver") or "", "t0": o.get("t0"), "t": o.get("t"),
            "censorscope_all_responses": o.get("responses"),  # every response, injected ones included
        })
    return out


def _split(address: str) -> tuple[str, int | None]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def _tcp(obs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for o in obs:
        if o.get("operation") != "connect" or o.get("proto", "tcp") != "tcp":
            continue
        ip, port = _split(o.get("address") or "")
        out.append({"ip": ip, "port": port, "t0": o.get("t0"), "t": o.get("t"),
                    "status": {"failure": o.get("failure"), "success": o.get("failure") is None,
                               "blocked": None}})
    return out


def _tls(obs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for o in obs:
        if o.get("operation") != "tls_handshake":
            continue
        verification = o.get("verification") or {}
        failure = o.get("failure") or (verification.get("failure") if verification.get("ok") is False else None)
        certs = [{"format": "base64", "data": c["der_b64"]} for c in o.get("peer_certificates") or []
                 if c.get("der_b64")]
        out.append({"address": o.get("address"), "server_name": o.get("server_name"), "failure": failure,
                    "tls_version": o.get("tls_version"), "cipher_suite": o.get("cipher"),
                    "negotiated_protocol": o.get("alpn"), "peer_certificates": certs or None,
                    "no_tls_verify": False, "t0": o.get("t0"), "t": o.get("t")})
    return out


def _requests(obs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for o in obs:
        if o.get("operation") != "http_round_trip":
            continue
        hops = o.get("hops") or [{"url": o.get("url"), "status": o.get("status"), "headers": o.get("headers")}]
        for i, hop in enumerate(hops):
            final = i == len(hops) - 1
            headers = hop.get("headers") or []
            body = (o.get("body_head") or "") if final else ""
            out.append({
                "failure": o.get("failure") if final else None,
                "request": {"url": hop.get("url"), "method": o.get("method", "GET"),
                            "headers": dict(o.get("request_headers") or {})},
                "response": {
                    "code": hop.get("status") or 0,
                    "headers": {k: v for k, v in headers},
                    "headers_list": headers,
                    "body": {"format": "base64", "data": base64.b64encode(body.encode()).decode()} if body else None,
                    "body_is_truncated": bool(o.get("body_truncated")) if final else False,
                },
                "t": o.get("t"),
            })
    return list(reversed(out))  # OONI lists the newest request first


def to_ooni(m: dict[str, Any]) -> dict[str, Any]:
    """One censorscope measurement in OONI's data format."""
    ann = m.get("annotations") or {}
    ooni_ann = ann.get("ooni") or {}
    obs = m.get("observations") or []
    vantage = m.get("vantage") or {}
    test = ooni_ann.get("test_name") or ("web_connectivity" if m.get("probe") == "web" else f"censorscope_{m.get('probe')}")
    tk: dict[str, Any] = {"queries": _queries(obs), "tcp_connect": _tcp(obs), "tls_handshakes": _tls(obs),
                          "requests": _requests(obs)}
    if test.startswith("censorscope_"):
        tk["censorscope_observations"] = obs
    for k, v in ooni_ann.items():
        if k != "test_name":
            tk[k] = v
    return {
        "data_format_version": "0.2.0",
        "measurement_uid": m.get("measurement_id"),
        "report_id": m.get("run_id"),
        "input": m.get("input"),
        "test_name": test,
        "test_version": m.get("probe_version"),
        "measurement_start_time": _ooni_time(m.get("measurement_start_time")),
        "test_runtime": m.get("runtime"),
        "probe_cc": vantage.get("cc") or "ZZ",
        "probe_asn": vantage.get("asn") or "AS0",
        "probe_network_name": vantage.get("network"),
        "resolver_ip": (vantage.get("resolver") or "").rsplit(":", 1)[0] or None,
        "software_name": "censorscope",
        "software_version": __version__,
        "annotations": {"censorscope_campaign": m.get("campaign") or "", "censorscope_probe": m.get("probe")},
        "test_keys": tk,
    }


def export(paths: PathLike | Iterable[PathLike], fmt: str, out: Path, on_problem: Problem | None = None) -> int:
    """Write every measurement under ``paths`` to ``out`` in ``fmt``; return the count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    records = iter_records(paths, on_problem)
    n = 0
    if fmt == "csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(MEASUREMENT_COLUMNS))
            w.writeheader()
            for m in records:
                w.writerow(measurement_row(m))
                n += 1
        return n
    if fmt == "ooni":
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as f:
            for m in records:
                f.write(json.dumps(to_ooni(m), ensure_ascii=False) + "\n")
                n += 1
        return n
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Stream: one open writer per date, rows flushed in batches, so memory stays bounded.
    schema = parquet_schema()
    writers: dict[str, Any] = {}
    pending: dict[str, list[dict[str, Any]]] = {}

    def flush(date: str) -> None:
        if date not in writers:
            d = out / f"date={date}"
            d.mkdir(parents=True, exist_ok=True)
            writers[date] = pq.ParquetWriter(d / "part-0.parquet", schema, compression="zstd")
        writers[date].write_table(pa.Table.from_pylist(pending.pop(date), schema=schema))

    try:
        for m in records:
            date = str(m.get("measurement_start_time") or "")[:10] or "unknown"
            pending.setdefault(date, []).append(to_row(m))
            n += 1
            if len(pending[date]) >= PARQUET_BATCH:
                flush(date)
        for date in list(pending):
            flush(date)
    finally:
        for w in writers.values():
            w.close()
    return n
