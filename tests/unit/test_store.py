"""The JSONL store: one line per measurement, torn/corrupt lines reported, resume done-set."""

from __future__ import annotations

import json
import os

import pytest

from censorscope.measure.records import build_measurement
from censorscope.measure.store import (
    JsonlWriter,
    check_run_id,
    iter_measurements,
    new_run_id,
    read_meta,
    scan_done,
    truncate_torn_tail,
    write_json_atomic,
)
from censorscope.probes.errors import ConfigError, StoreError


def _m(inp: str, rep: int = 0, attempt: int = 0, resolver: str | None = None) -> dict:
    from censorscope.measure.records import Vantage

    return build_measurement(
        probe="tcp", probe_version="1", input=inp, start_time=1_700_000_000.0, runtime=0.1,
        observations=[{"id": 1, "operation": "connect", "failure": None}], repetition=rep, attempt=attempt,
        vantage=Vantage(resolver=resolver), annotations={"url": f"http://{inp}/"},
    )


def test_run_ids_sort_by_time_and_are_checked():
    a, b = new_run_id(1_700_000_000), new_run_id(1_700_000_001)
    assert a < b and check_run_id(a) == a
    assert len({new_run_id(1_700_000_000) for _ in range(50)}) == 50
    for bad in ("../etc", "20261128T153000Z", "20261128T153000Z-ABCDEF", "x" * 23):
        with pytest.raises(ConfigError):
            check_run_id(bad)


def test_one_line_per_measurement_roundtrip(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as w:
        for i in range(5):
            w.write(_m(f"h{i}:80"))
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 6
    got = list(iter_measurements(path))
    assert [m["input"] for m in got] == [f"h{i}:80" for i in range(5)]
    assert got[0]["annotations"] == {"url": "http://h0:80/"}


def test_appending_reopens_without_rewriting(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as w:
        w.write(_m("a:1"))
    before = path.read_bytes()
    with JsonlWriter(path) as w:
        w.write(_m("b:1"))
    assert path.read_bytes().startswith(before)
    assert [m["input"] for m in iter_measurements(path)] == ["a:1", "b:1"]


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path):
        with pytest.raises(StoreError, match="another censorscope process"):
            JsonlWriter(path)
    JsonlWriter(path).close()  # released on close


def test_torn_last_line_is_skipped_and_reported(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as w:
        w.write(_m("a:1"))
        w.write(_m("b:1"))
    with open(path, "ab") as f:
        f.write(json.dumps(_m("c:1")).encode()[:40])  # killed mid-write (e.g. disk full / power loss)
    problems = []
    got = list(iter_measurements(path, problems.append))
    assert [m["input"] for m in got] == ["a:1", "b:1"]
    assert len(problems) == 1 and problems[0].line == 3 and "torn last line (40 bytes" in problems[0].reason
    assert str(problems[0]).startswith(f"{path}:3: ")


def test_corrupt_middle_line_is_skipped_and_reported(tmp_path):
    path = tmp_path / "r.jsonl"
    good = json.dumps(_m("a:1")) + "\n"
    path.write_text(good + "\x00\x00{not json\n" + "[1, 2]\n" + "\n" + json.dumps(_m("b:1")) + "\n", encoding="utf-8")
    problems = []
    got = list(iter_measurements(path, problems.append))
    assert [m["input"] for m in got] == ["a:1", "b:1"]
    assert [(p.line, p.reason.split(":")[0]) for p in problems] == [(2, "corrupt line"), (3, "corrupt line")]
    assert "not an object" in problems[1].reason


def test_default_reporting_logs_a_warning(tmp_path, caplog):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"{oops\n")
    assert list(iter_measurements(path)) == []
    assert f"{path}:1: corrupt line" in caplog.text


def test_done_set_counts_first_attempts_only(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as w:
        w.write(_m("a:1", rep=0))
        w.write(_m("a:1", rep=1))
        w.write(_m("b:1", rep=0, attempt=1))  # a re-test is not a first measurement
        w.write(_m("c:53", rep=0, resolver="127.0.0.1:53"))
    done, n = scan_done(path)
    assert n == 4
    assert done == {("tcp", "a:1", 0, None), ("tcp", "a:1", 1, None), ("tcp", "c:53", 0, "127.0.0.1:53")}
    assert scan_done(tmp_path / "missing.jsonl") == (set(), 0)


def test_truncate_torn_tail_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlWriter(path) as w:
        w.write(_m("a:1"))
    intact = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"measurement_id": "torn')
    assert truncate_torn_tail(path) == len(b'{"measurement_id": "torn')
    assert path.read_bytes() == intact
    assert truncate_torn_tail(path) == 0  # idempotent
    # without the repair, the next line would be glued to the fragment; with it, all lines parse
    with JsonlWriter(path) as w:
        w.write(_m("b:1"))
    problems = []
    assert [m["input"] for m in iter_measurements(path, problems.append)] == ["a:1", "b:1"]
    assert problems == []


def test_truncate_file_that_is_only_a_fragment(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"x" * 200_000)  # longer than one read block, no newline at all
    assert truncate_torn_tail(path) == 200_000
    assert path.read_bytes() == b""


def test_meta_is_replaced_atomically(tmp_path):
    run_id = new_run_id()
    path = tmp_path / f"{run_id}.meta.json"
    write_json_atomic(path, {"run_id": run_id, "status": "running"})
    write_json_atomic(path, {"run_id": run_id, "status": "complete"})
    assert read_meta(tmp_path, run_id)["status"] == "complete"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    with pytest.raises(ConfigError, match="no run"):
        read_meta(tmp_path, new_run_id())


def test_sync_policy_counts_lines(tmp_path, monkeypatch):
    calls = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd)))
    with JsonlWriter(tmp_path / "r.jsonl", sync_every=3, sync_interval=3600) as w:
        for i in range(7):
            w.write(_m(f"h{i}:1"))
        assert len(calls) == 2  # after lines 3 and 6
    assert len(calls) == 3  # and on close
