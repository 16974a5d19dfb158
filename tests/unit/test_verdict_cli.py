"""`censorscope report` and `censorscope export` on synthetic run files (no network)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from test_verdicts import conn, meas

from censorscope.measure.cli import cli


def _run_file(tmp_path):
    ok_m = meas("tcp", "203.0.113.120:443", [conn(1, "203.0.113.120:443")], control_obs=[conn(1, "203.0.113.120:443")])
    bad = meas("tcp", "203.0.113.121:443", [conn(1, "203.0.113.121:443", "generic_timeout_error")],
               control_obs=[conn(1, "203.0.113.121:443")], start=10)
    f = tmp_path / "run.jsonl"
    f.write_text(json.dumps(ok_m) + "\n" + json.dumps(bad) + "\n")
    return f, ok_m, bad


def test_report_json_and_table(tmp_path):
    f, ok_m, bad = _run_file(tmp_path)
    r = CliRunner().invoke(cli, ["report", "--json", str(f)])
    assert r.exit_code == 0
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["measurement_id"], x["verdict"], x["method"]) for x in rows] == [
        (ok_m["measurement_id"], "ok", None), (bad["measurement_id"], "blocked", "tcp.blackhole")]
    r = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert r.exit_code == 0 and "tcp.blackhole" in r.stdout and "2 verdicts: 1 ok, 0 down, 1 blocked" in r.stdout


def test_export_formats(tmp_path):
    f, ok_m, _ = _run_file(tmp_path)
    runner = CliRunner()
    r = runner.invoke(cli, ["export", str(f), "--format", "ooni", "--out", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 0 and "exported 2 measurements" in r.stdout
    first = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert first["test_name"] == "censorscope_tcp" and first["input"] == ok_m["input"]
    r = runner.invoke(cli, ["export", str(f), "--format", "csv", "--out", str(tmp_path / "m.csv")])
    assert r.exit_code == 0 and (tmp_path / "m.csv").read_text().count("\n") == 3
    r = runner.invoke(cli, ["export", str(f), "--format", "parquet", "--out", str(tmp_path / "pq")])
    assert r.exit_code == 0 and list((tmp_path / "pq").glob("date=*/*.parquet"))
    # the Parquet archive is judged like the JSONL it came from
    r = runner.invoke(cli, ["report", "--json", str(tmp_path / "pq")])
    assert [json.loads(x)["verdict"] for x in r.stdout.splitlines()] == ["ok", "blocked"]
    assert runner.invoke(cli, ["export", str(f), "--format", "xml", "--out", "x"]).exit_code == 2
