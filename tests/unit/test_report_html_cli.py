"""`censorscope report --html` writes one self-contained page with the verdict table."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import censorscope.analysis as ca
from censorscope.measure.cli import cli


def _m(i: int, reset: bool) -> dict:
    obs = [{"id": 1, "operation": "connect", "parent_id": None, "t0": 0.0, "t": 0.01, "failure": None,
            "address": "203.0.113.100:443", "ip": "203.0.113.100", "port": 443, "proto": "tcp"},
           {"id": 2, "operation": "tls_handshake", "parent_id": 1, "t0": 0.01, "t": 0.02,
            "failure": "connection_reset" if reset else None, "address": "203.0.113.100:443",
            "server_name": "site.example"}]
    return {"measurement_id": f"m{i}", "campaign": None, "run_id": "r", "probe": "tls",
            "probe_version": "1", "input": "203.0.113.100:443", "repetition": i, "attempt": 0,
            "measurement_start_time": f"2026-11-0{1 + i}T00:00:00.000000Z", "runtime": 0.1,
            "vantage": {"cc": "ZZ", "asn": "AS64496"}, "software": {}, "observations": obs,
            "control": {"observations": [dict(o, failure=None) for o in obs]}, "annotations": {}}


def test_report_html(tmp_path: Path):
    run = tmp_path / "run.jsonl"
    run.write_text("".join(json.dumps(_m(i, reset=i >= 2)) + "\n" for i in range(4)))
    page = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", str(run), "--html", str(page), "--json"])
    assert r.exit_code == 0, r.output
    html = page.read_text()
    assert '<table id="verdicts">' in html and html.count("<img") >= 2 and "data:image/png;base64," in html
    got = [json.loads(line)["verdict"] for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(got) == 4
    assert got.count("blocked") == html.count('class="v-blocked"') - 1  # minus the summary row


def test_package_exports():
    for name in ("load", "observations", "verdicts", "blocking_matrix", "episodes", "plots"):
        assert hasattr(ca, name), name
