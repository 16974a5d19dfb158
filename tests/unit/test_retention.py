"""gc: JSONL -> Parquet, verified row by row before any raw file is deleted."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import censorscope.measure.retention as retention
from censorscope.measure.retention import from_row, gc
from censorscope.measure.store import iter_measurements

DAY = 86400


def _m(i: int, date: str) -> dict:
    return {
        "measurement_id": f"m{i}", "campaign": "c", "run_id": "20261001T000000Z-abcdef", "probe": "web",
        "probe_version": "0.1.0", "input": f"https://ex{i}.example/ü", "repetition": i % 3, "attempt": 0,
        "measurement_start_time": f"{date}T23:59:59.{i:06d}Z", "runtime": 0.1 + i / 7,
        "vantage": {"cc": "ZZ", "asn": "AS64496", "network": None, "resolver": "203.0.113.10:53"},
        "software": {"name": "censorscope", "version": "0.1.0"},
        "observations": [{"id": 1, "operation": "connect", "t0": 0.0, "t": 1e-6 * i, "failure": None,
                          "nested": {"list": [1, 2.5, None, "x"]}}],
        "control": None if i % 2 else {"observations": []},
        "annotations": {"confirms": None},
        **({"future_key": {"k": i}} if i == 3 else {}),
    }


def _write_run(res: Path, name: str, ms: list[dict], tail: bytes = b"", age: float = 200 * DAY) -> Path:
    p = res / f"{name}.jsonl"
    with open(p, "wb") as f:
        for m in ms:
            f.write(json.dumps(m, ensure_ascii=False).encode() + b"\n")
        f.write(tail)
    (res / f"{name}.meta.json").write_text("{}")
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_gc_compacts_verifies_and_deletes(tmp_path: Path):
    res = tmp_path / "results"
    res.mkdir()
    ms = [_m(i, "2026-10-01" if i < 5 else "2026-10-02") for i in range(9)]
    _write_run(res, "20261001T000000Z-abcdef", ms, tail=b'{"torn": ')
    recent = _write_run(res, "20261120T000000Z-111111", [_m(1, "2026-11-20")], age=1 * DAY)
    rep = gc(res, keep_seconds=90 * DAY)
    assert rep.compacted == ["20261001T000000Z-abcdef.jsonl"] and rep.rows == 9
    assert any("torn last line" in p for p in rep.problems)
    assert not (res / "20261001T000000Z-abcdef.jsonl").exists()
    assert recent.exists()
    assert (res / "parquet" / "_runs" / "20261001T000000Z-abcdef.meta.json").exists()
    rows = []
    for date in ("2026-10-01", "2026-10-02"):
        rows += pq.read_table(res / "parquet" / f"date={date}" / "20261001T000000Z-abcdef.parquet").to_pylist()
    assert [from_row(r) for r in rows] == ms
    assert rows[0]["vantage_cc"] == "ZZ" and rows[0]["probe"] == "web"
    # idempotent: nothing left to do
    assert gc(res, keep_seconds=90 * DAY).compacted == []


def test_gc_keeps_corrupt_busy_and_unverifiable_files(tmp_path: Path, monkeypatch):
    res = tmp_path / "results"
    res.mkdir()
    corrupt = _write_run(res, "20261001T000000Z-000001", [_m(1, "2026-10-01")])
    with open(corrupt, "ab") as f:
        f.write(b"not json\n" + json.dumps(_m(2, "2026-10-01")).encode() + b"\n")
    old = time.time() - 200 * DAY
    os.utime(corrupt, (old, old))
    busy = _write_run(res, "20261001T000000Z-000002", [_m(3, "2026-10-01")])
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        rep = gc(res, keep_seconds=90 * DAY)
    finally:
        os.close(fd)
    assert rep.kept_corrupt == ["20261001T000000Z-000001.jsonl"] and corrupt.exists()
    assert rep.kept_busy == ["20261001T000000Z-000002.jsonl"] and busy.exists()

    # a Parquet copy that does not match its source is caught and the JSONL stays
    real = retention.to_row

    def lossy(m):
        row = real(m)
        row["input"] = row["input"] + "x"
        return row

    monkeypatch.setattr(retention, "to_row", lossy)
    rep = gc(res, keep_seconds=90 * DAY)
    assert "20261001T000000Z-000002.jsonl" in rep.kept_corrupt and busy.exists()
    assert any("differs" in p for p in rep.problems)
    assert len(list(iter_measurements(busy))) == 1


def test_gc_refuses_a_missing_directory(tmp_path: Path):
    with pytest.raises(retention.StoreError):
        gc(tmp_path / "nope", keep_seconds=1)
